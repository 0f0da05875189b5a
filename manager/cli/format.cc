#include "manager/cli/format.h"

#include <dirent.h>
#include <google/protobuf/util/json_util.h>

#include <cstdlib>
#include <sstream>
#include <vector>

#include "manager/admin/admin_server.h"

namespace hamirror::cli {

int StateExitCode(proto::NodeState state) {
  switch (state) {
    case proto::NODE_STATE_WAIT: return 1;
    case proto::NODE_STATE_ALONE: return 2;
    case proto::NODE_STATE_PRIM: return 3;
    case proto::NODE_STATE_SECOND: return 4;
    default: return 0;
  }
}

const char* StateName(proto::NodeState state) {
  switch (state) {
    case proto::NODE_STATE_STOP: return "STOP";
    case proto::NODE_STATE_WAIT: return "WAIT";
    case proto::NODE_STATE_ALONE: return "ALONE";
    case proto::NODE_STATE_PRIM: return "PRIM";
    case proto::NODE_STATE_SECOND: return "SECOND";
    default: return "UNKNOWN";
  }
}

const char* SubStateName(proto::SubState sub) {
  switch (sub) {
    case proto::SUB_STATE_TRANSIENT: return "Transient";
    case proto::SUB_STATE_READY: return "Ready";
    default: return "";
  }
}

namespace {

std::string NodeLine(const proto::NodeView& v, bool is_peer) {
  std::ostringstream o;
  o << (is_peer ? "peer   " : "local  ") << (v.node().empty() ? "?" : v.node()) << ": ";
  if (is_peer && !v.known()) {
    o << "UNKNOWN (not heard)";
    return o.str();
  }
  o << StateName(v.state());
  if (const char* sub = SubStateName(v.sub_state()); *sub) o << " (" << sub << ")";
  if (!v.reason().empty()) o << "  " << v.reason();
  return o.str();
}

const char* RoleName(proto::FsRole r) {
  switch (r) {
    case proto::FS_ROLE_PRIMARY: return "primary";
    case proto::FS_ROLE_SECONDARY: return "secondary";
    case proto::FS_ROLE_ALONE: return "alone";
    default: return "-";
  }
}

// The resync lines of one replicated directory: into the peer (primary) or into this node.
std::string FormatResync(const proto::FsInfo& f) {
  std::ostringstream o;
  const auto& rs = f.resync();
  const auto& rec = f.record();
  if (rec.full() || rec.tree())
    o << "  record: " << (rec.full() ? "full compare" : "tree rescan") << " needed (" << rec.reason()
      << ")\n";
  if (rs.phase() == "running") {
    const double frac = rs.bytes_total() ? static_cast<double>(rs.bytes_done()) / rs.bytes_total() : 0.0;
    const int width = 30, filled = static_cast<int>(frac * width);
    o << "  resync " << (rs.full() ? "full" : "incremental") << " [" << std::string(filled, '#')
      << std::string(width - filled, '.') << "] " << static_cast<int>(frac * 100) << "% " << rs.bytes_done()
      << "/" << rs.bytes_total() << " bytes, sent " << rs.bytes_sent() << ", files " << rs.files_done() << "/"
      << rs.files_total() << ", " << rs.rate_bps() / 1024 << " KiB/s, ETA " << rs.eta_s() << " s, pass "
      << rs.pass() << "\n";
  } else if (rs.phase() == "done" || rs.phase() == "failed") {
    o << "  resync " << rs.phase() << " (" << (rs.full() ? "full" : "incremental") << ", " << rs.reason()
      << "): compared " << rs.bytes_done() << " bytes, sent " << rs.bytes_sent() << ", " << rs.files_done()
      << " files, " << rs.elapsed_s() << " s" << (rs.error().empty() ? "" : ", error: " + rs.error()) << "\n";
  }
  const auto& v = f.verify();
  if (!v.phase().empty() && v.phase() != "idle") {
    o << "  verify " << v.phase() << (v.repair() ? " (repair)" : "") << ": compared " << v.bytes_done()
      << " bytes, " << v.files_done() << " files, " << v.differences() << " differences"
      << (v.error().empty() ? "" : ", error: " + v.error()) << "\n";
  }
  if (f.role() == proto::FS_ROLE_SECONDARY && !f.resync_target().phase().empty() &&
      f.resync_target().phase() != "none")
    o << "  resync into this node: " << f.resync_target().phase() << " (id " << f.resync_target().id()
      << ")\n";
  return o.str();
}

}  // namespace

std::string FormatToggles(const proto::StateReply& r) {
  auto on_off = [](bool b) { return b ? "on" : "off"; };
  return std::string("boot ") + on_off(r.boot()) + ", failover " + on_off(r.failover()) + ", errd " +
         (r.errd().empty() ? "?" : r.errd()) + ", checker " + on_off(r.checkers_enabled());
}

std::string FormatState(const proto::StateReply& r, bool verbose) {
  std::ostringstream o;
  o << "module " << r.module() << "\n"
    << NodeLine(r.local(), false) << "\n"
    << NodeLine(r.peer(), true) << "\n";
  if (!verbose) return o.str();
  o << "data   " << (r.local().data_uptodate() ? "up to date" : "not up to date");
  if (r.peer().known()) o << "; peer's " << (r.peer().data_uptodate() ? "up to date" : "not up to date");
  o << "\n";
  for (const auto& h : r.heartbeats()) {
    o << "heartbeat " << h.network() << " (" << h.peer_addr() << "): " << (h.up() ? "up" : "down");
    if (h.last_seen_ms_ago() > 0) o << ", last seen " << h.last_seen_ms_ago() << " ms ago";
    o << ", received " << h.received() << ", sent " << h.sent();
    if (h.send_errors() > 0) o << " (" << h.send_errors() << " send errors)";
    o << "\n";
  }
  if (r.has_heartbeat_drops()) {
    const auto& d = r.heartbeat_drops();
    o << "heartbeat drops: garbage " << d.garbage() << ", wrong cluster " << d.wrong_cluster() << ", bad tag "
      << d.bad_tag() << ", wrong node " << d.wrong_node() << ", replayed " << d.replayed() << ", bad payload "
      << d.bad_payload() << "\n";
  }
  for (const auto& v : r.vips())
    o << "vip " << v.addr() << (v.interface().empty() ? "" : " on " + v.interface()) << ": "
      << (v.held() ? "held" : "not held") << "\n";
  for (const auto& f : r.fs()) {
    o << "fs " << f.dir() << ": ";
    if (!f.running()) {
      o << "not running";
    } else {
      o << RoleName(f.role()) << ", peer " << (f.peer_connected() ? "connected" : "not connected")
        << ", dirty files " << f.dirty_files() << " zones " << f.dirty_zones()
        << (f.namespace_dirty() ? ", namespace dirty" : "");
      // Never silent: an op the peer could not apply means its copy is behind (resync needed).
      if (f.peer_errors() > 0) o << ", PEER ERRORS " << f.peer_errors() << " (peer copy behind)";
      if (f.reconnects() > 0) o << ", reconnects " << f.reconnects();
      if (f.role() == proto::FS_ROLE_PRIMARY) o << (f.in_sync() ? ", in sync" : ", NOT in sync");
    }
    if (!f.last_error().empty()) o << " (" << f.last_error() << ")";
    o << "\n";
    if (f.running()) o << FormatResync(f);
  }
  for (const auto& p : r.processes()) {
    o << "errd " << p.name() << ": ";
    if (r.errd() == "off") {  // not polled: the counts would be stale
      o << "not watched (errd off)\n";
      continue;
    }
    o << p.count() << " running (atleast " << p.atleast();
    if (p.atmax() >= 0) o << ", atmax " << p.atmax();
    o << ") "
      << (!p.active() ? "not watched in this state"
          : p.ok()    ? "ok"
                      : "FAILED")
      << ", action " << p.action() << (r.errd() == "suspended" ? " (errd suspended: not acted on)" : "")
      << "\n";
  }
  // checkers_enabled is false from a daemon that predates the toggles too: trust it only with errd set.
  const bool checkers_off = !r.errd().empty() && !r.checkers_enabled();
  for (const auto& c : r.checkers()) {
    o << "check " << c.kind() << " " << c.name() << ": ";
    if (checkers_off && c.kind() != "splitbrain")
      o << "not run (checker off)\n";
    else
      o << (c.ok() ? "ok" : "FAILED") << (c.detail().empty() ? "" : " (" + c.detail() + ")") << "\n";
  }
  o << "restarts " << r.loop_count() << "/" << r.maxloop() << " (maxloop)\n";
  o << FormatToggles(r) << "\n";
  o << "hamirrord pid " << r.pid() << ", up " << r.uptime_s() << " s\n";
  return o.str();
}

std::string FormatStateJson(const proto::StateReply& reply) {
  std::string out;
  google::protobuf::util::JsonPrintOptions opt;
  opt.add_whitespace = true;
  opt.always_print_primitive_fields = true;
  opt.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(reply, &out, opt);
  return out;
}

std::string ResolveSocket(const std::string& socket_opt, const std::string& module_opt, std::string* error) {
  if (!socket_opt.empty()) return socket_opt;
  if (!module_opt.empty()) return admin::DefaultSocketPath(module_opt);
  if (const char* s = getenv("HAMIRROR_SOCKET"); s && *s) return s;
  if (const char* m = getenv("SAFEMODULE"); m && *m) return admin::DefaultSocketPath(m);
  std::vector<std::string> socks;
  if (DIR* d = opendir("/run/hamirror")) {
    while (dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n.size() > 5 && n.compare(n.size() - 5, 5, ".sock") == 0) socks.push_back("/run/hamirror/" + n);
    }
    closedir(d);
  }
  if (socks.size() == 1) return socks[0];
  *error = socks.empty()
               ? "no hamirrord is running (no socket in /run/hamirror); give -m MODULE or --socket PATH"
               : "several modules are running; choose one with -m MODULE";
  return "";
}

}  // namespace hamirror::cli
