#include "manager/cli/format.h"

#include <dirent.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "common/exit_codes.h"

namespace hamirror::cli {

int StateExitCode(proto::NodeState state) {
  switch (state) {
    case proto::NODE_STATE_STOP: return kStateStop;
    case proto::NODE_STATE_WAIT: return kStateWait;
    case proto::NODE_STATE_ALONE: return kStateAlone;
    case proto::NODE_STATE_PRIM: return kStatePrim;
    case proto::NODE_STATE_SECOND: return kStateSecond;
    default: return kStateUnknown;
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

bool UseColour(int fd) {
  const char* no_colour = getenv("NO_COLOR");
  return isatty(fd) != 0 && (no_colour == nullptr || *no_colour == '\0');
}

std::string FormatDuration(uint64_t ms) {
  char buf[32];
  const uint64_t s = ms / 1000;
  if (ms < 1000)
    snprintf(buf, sizeof buf, "%llums", static_cast<unsigned long long>(ms));
  else if (ms < 10000)
    snprintf(buf, sizeof buf, "%.1fs", static_cast<double>(ms) / 1000);
  else if (s < 60)
    snprintf(buf, sizeof buf, "%llus", static_cast<unsigned long long>(s));
  else if (s < 3600)
    snprintf(buf, sizeof buf, "%llum%02llus", static_cast<unsigned long long>(s / 60),
             static_cast<unsigned long long>(s % 60));
  else if (s < 86400)
    snprintf(buf, sizeof buf, "%lluh%02llum", static_cast<unsigned long long>(s / 3600),
             static_cast<unsigned long long>(s % 3600 / 60));
  else
    snprintf(buf, sizeof buf, "%llud%02lluh", static_cast<unsigned long long>(s / 86400),
             static_cast<unsigned long long>(s % 86400 / 3600));
  return buf;
}

std::string ProgressBar(double fraction) {
  constexpr int kWidth = 30;
  const int filled = std::clamp(static_cast<int>(fraction * kWidth), 0, kWidth);
  std::string bar(kWidth + 2, '.');
  bar.front() = '[';
  bar.back() = ']';
  std::fill_n(bar.begin() + 1, filled, '#');
  return bar;
}

namespace {

// ANSI colours, used only when the caller asked for them.
enum class Colour { kNone, kGreen, kYellow, kRed };

class Painter {
 public:
  explicit Painter(bool on) : on_(on) {}
  std::string operator()(const std::string& text, Colour c) const {
    if (!on_ || c == Colour::kNone) return text;
    const char* code = c == Colour::kGreen ? "\033[32m" : c == Colour::kYellow ? "\033[33m" : "\033[1;31m";
    return code + text + "\033[0m";
  }

 private:
  bool on_;
};

Colour StateColour(const proto::NodeView& v) {
  if (!v.known()) return Colour::kRed;
  switch (v.state()) {
    case proto::NODE_STATE_PRIM:
    case proto::NODE_STATE_SECOND:
      return v.sub_state() == proto::SUB_STATE_TRANSIENT ? Colour::kYellow : Colour::kGreen;
    case proto::NODE_STATE_ALONE:
    case proto::NODE_STATE_WAIT: return Colour::kYellow;
    default: return Colour::kRed;
  }
}

std::string StateText(const proto::NodeView& v) {
  if (!v.known()) return "UNKNOWN (not heard)";
  std::string s = StateName(v.state());
  if (const char* sub = SubStateName(v.sub_state()); *sub) s += std::string(" (") + sub + ")";
  return s;
}

std::string NodeLine(const proto::NodeView& v, bool is_peer, const Painter& paint) {
  std::ostringstream o;
  o << (is_peer ? "peer   " : "local  ") << (v.node().empty() ? "?" : v.node()) << ": "
    << paint(StateText(v), StateColour(v));
  if (v.known() && !v.reason().empty()) o << "  " << v.reason();
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

const char* DataName(proto::DataState d) {
  switch (d) {
    case proto::DATA_STATE_UP_TO_DATE: return "up to date";
    case proto::DATA_STATE_OUTDATED: return "outdated";
    case proto::DATA_STATE_INCONSISTENT: return "inconsistent";
    default: return "unknown";
  }
}

// ---- The two nodes side by side --------------------------------------------------------------

constexpr size_t kLabelWidth = 14, kColumnWidth = 28;

struct Cell {
  std::string text;
  Colour colour = Colour::kNone;
};

// Pads by the visible text, then paints: colours never shift the columns.
std::string Row(const std::string& label, const Cell& local, const Cell& peer, const Painter& paint) {
  std::string line = label + std::string(kLabelWidth - std::min(kLabelWidth - 1, label.size()), ' ');
  line += paint(local.text, local.colour);
  if (!peer.text.empty()) {
    line += std::string(kColumnWidth - std::min(kColumnWidth - 1, local.text.size()), ' ');
    line += paint(peer.text, peer.colour);
  }
  return line + "\n";
}

std::string AgeText(const proto::NodeView& v) {
  if (!v.known()) return "-";
  return (v.state_age_at_least() ? ">= " : "") + FormatDuration(v.state_age_ms());
}

std::string GenerationText(const proto::NodeView& v) {
  if (!v.known()) return "-";
  return std::to_string(v.generation()) +
         (v.generation_author().empty() ? "" : " (" + v.generation_author() + ")");
}

Cell SplitBrainCell(const proto::NodeView& v) {
  if (!v.known()) return {"-"};
  return v.split_brain() ? Cell{"YES", Colour::kRed} : Cell{"no"};
}

// The local view, always known (`known` speaks of the peer).
proto::NodeView LocalView(const proto::StateReply& r) {
  proto::NodeView l = r.local();
  l.set_known(true);
  return l;
}

std::string NodeTable(const proto::StateReply& r, const Painter& paint) {
  const proto::NodeView l = LocalView(r);
  const auto& p = r.peer();
  std::string o = Row("", {"local " + l.node()}, {"peer " + p.node()}, paint);
  o += Row("state", {StateText(l), StateColour(l)}, {StateText(p), StateColour(p)}, paint);
  o += Row("in state", {AgeText(l)}, {AgeText(p)}, paint);
  const auto data = [](const proto::NodeView& v) {
    return !v.known()
               ? Cell{"-"}
               : Cell{DataName(v.data_state()),
                      v.data_state() == proto::DATA_STATE_UP_TO_DATE ? Colour::kNone : Colour::kYellow};
  };
  o += Row("data", data(l), data(p), paint);
  o += Row("generation", {GenerationText(l)}, {GenerationText(p)}, paint);
  o += Row("split-brain", SplitBrainCell(l), SplitBrainCell(p), paint);
  if (!l.reason().empty()) o += Row("reason", {l.reason()}, {}, paint);
  return o;
}

// ---- Resources -------------------------------------------------------------------------------

std::string VipLines(const proto::StateReply& r, const Painter& paint) {
  std::string where;
  Colour colour = Colour::kNone;
  switch (r.vip_holder()) {
    case proto::VIP_HOLDER_LOCAL: where = "held by this node (" + r.local().node() + ")"; break;
    case proto::VIP_HOLDER_PEER:
      where = "held by the peer (" + r.peer().node() + ", " + StateName(r.peer().state()) + ")";
      break;
    case proto::VIP_HOLDER_NONE:
      where = "held by no node";
      colour = Colour::kYellow;
      break;
    default: where = "unknown (not held here, peer not heard)"; colour = Colour::kYellow;
  }
  std::string o;
  for (const auto& v : r.vips()) {
    // Each address's own flag wins: this node may hold some and have failed to add another.
    std::string text = where;
    Colour c = colour;
    if (v.held()) {
      text = "held by this node (" + r.local().node() + ")";
      c = Colour::kNone;
    } else if (r.vip_holder() == proto::VIP_HOLDER_LOCAL) {
      text = "NOT held: this node serves but could not add it (see the log)";
      c = Colour::kRed;
    }
    o += "vip " + v.addr() + (v.interface().empty() ? "" : " on " + v.interface()) + ": " + paint(text, c) +
         "\n";
  }
  return o;
}

std::string LocalTime(uint64_t unix_ms) {
  const time_t t = static_cast<time_t>(unix_ms / 1000);
  struct tm tm;
  char buf[32];
  if (localtime_r(&t, &tm) == nullptr || strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm) == 0) return "?";
  return buf;
}

std::string FailoverLine(const proto::StateReply& r) {
  if (!r.has_last_failover()) return "last failover: none recorded on this node\n";
  const auto& f = r.last_failover();
  return "last failover: " + LocalTime(f.at_unix_ms()) + " (" + FormatDuration(f.ago_ms()) + " ago), took " +
         FormatDuration(f.duration_ms()) + " to " + StateName(f.state()) + ": " + f.reason() + "\n";
}

// "tls /etc/hamirror/tls/node.pem: CN=n1, expires 2036-12-02 10:00:00 (in 3649 days)"; yellow within
// 30 days of expiry, red once expired or unreadable. Nothing without TLS.
std::string CertificateLine(const proto::StateReply& r, const Painter& paint) {
  if (!r.has_tls_certificate()) return "";
  const auto& c = r.tls_certificate();
  if (!c.error().empty())
    return "tls " + c.path() + ": " + paint("unreadable: " + c.error(), Colour::kRed) + "\n";
  constexpr int64_t kDay = 86400;
  const int64_t left = c.expires_in_s();
  const std::string when = LocalTime(c.not_after_unix_s() * 1000);
  std::string text;
  if (left < 0)
    text = paint("EXPIRED " + when + " (" + FormatDuration(static_cast<uint64_t>(-left) * 1000) + " ago)",
                 Colour::kRed);
  else if (left < 30 * kDay)
    text = paint("expires " + when + " (in " + FormatDuration(static_cast<uint64_t>(left) * 1000) + ")",
                 Colour::kYellow);
  else
    text = "expires " + when + " (in " + std::to_string(left / kDay) + " days)";
  return "tls " + c.path() + ": " + (c.subject().empty() ? "" : c.subject() + ", ") + text + "\n";
}

std::string HeartbeatLines(const proto::StateReply& r, const Painter& paint) {
  std::ostringstream o;
  for (const auto& h : r.heartbeats()) {
    o << "heartbeat " << h.network() << " (" << h.peer_addr()
      << "): " << (h.up() ? paint("up", Colour::kGreen) : paint("down", Colour::kRed));
    o << ", last packet "
      << (h.last_seen_ms_ago() > 0 ? FormatDuration(h.last_seen_ms_ago()) + " ago" : "never");
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
  return o.str();
}

// The running resync into the peer, with its bar.
std::string ResyncRunning(const proto::FsResync& rs) {
  const double frac = rs.bytes_total() ? static_cast<double>(rs.bytes_done()) / rs.bytes_total() : 0.0;
  std::ostringstream o;
  o << "  resync " << (rs.full() ? "full" : "incremental") << " " << ProgressBar(frac) << " "
    << static_cast<int>(std::min(frac, 1.0) * 100) << "% " << rs.bytes_done() << "/" << rs.bytes_total()
    << " bytes, sent " << rs.bytes_sent() << ", files " << rs.files_done() << "/" << rs.files_total() << ", "
    << rs.rate_bps() / 1024 << " KiB/s, ETA " << rs.eta_s() << " s, pass " << rs.pass() << "\n";
  return o.str();
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
    o << ResyncRunning(rs);
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
  const auto& t = f.resync_target();
  if (f.role() == proto::FS_ROLE_SECONDARY && !t.phase().empty() && t.phase() != "none") {
    o << "  resync into this node: " << t.phase() << " (id " << t.id();
    if (t.phase() == "running" && t.bytes_total() > 0) o << ", " << t.bytes_total() << " bytes to compare";
    o << ")\n";
  }
  return o.str();
}

std::string FsLine(const proto::FsInfo& f, const Painter& paint) {
  std::ostringstream o;
  o << "fs " << f.dir() << ": ";
  if (!f.running()) {
    o << paint("not running", Colour::kRed);
  } else {
    o << RoleName(f.role()) << ", peer " << (f.peer_connected() ? "connected" : "not connected")
      << ", dirty files " << f.dirty_files() << " zones " << f.dirty_zones()
      << (f.namespace_dirty() ? ", namespace dirty" : "");
    // Never silent: an op the peer could not apply means its copy is behind (resync needed).
    if (f.peer_errors() > 0)
      o << ", " << paint("PEER ERRORS " + std::to_string(f.peer_errors()), Colour::kRed)
        << " (peer copy behind)";
    if (f.reconnects() > 0) o << ", reconnects " << f.reconnects();
    if (f.role() == proto::FS_ROLE_PRIMARY)
      o << (f.in_sync() ? ", in sync" : ", " + paint("NOT in sync", Colour::kYellow));
  }
  if (!f.last_error().empty()) o << " (" << f.last_error() << ")";
  o << "\n";
  if (f.running()) o << FormatResync(f);
  return o.str();
}

std::string WatchLines(const proto::StateReply& r, const Painter& paint) {
  std::ostringstream o;
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
                      : paint("FAILED", Colour::kRed))
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
      o << (c.ok() ? "ok" : paint("FAILED", Colour::kRed))
        << (c.detail().empty() ? "" : " (" + c.detail() + ")") << "\n";
  }
  return o.str();
}

}  // namespace

std::string FormatToggles(const proto::StateReply& r) {
  auto on_off = [](bool b) { return b ? "on" : "off"; };
  return std::string("boot ") + on_off(r.boot()) + ", failover " + on_off(r.failover()) + ", errd " +
         (r.errd().empty() ? "?" : r.errd()) + ", checker " + on_off(r.checkers_enabled());
}

std::string FormatState(const proto::StateReply& r, bool verbose, bool colour) {
  const Painter paint(colour);
  if (!verbose)
    return "module " + r.module() + "\n" + NodeLine(LocalView(r), false, paint) + "\n" +
           NodeLine(r.peer(), true, paint) + "\n";
  std::string o = "module " + r.module() + "  (hamirrord pid " + std::to_string(r.pid()) + ", up " +
                  FormatDuration(r.uptime_s() * 1000) + ")\n";
  o += NodeTable(r, paint);
  o += VipLines(r, paint);
  o += FailoverLine(r);
  o += HeartbeatLines(r, paint);
  for (const auto& f : r.fs()) o += FsLine(f, paint);
  o += CertificateLine(r, paint);
  o += WatchLines(r, paint);
  o += "restarts " + std::to_string(r.loop_count()) + "/" + std::to_string(r.maxloop()) + " (maxloop)\n";
  o += FormatToggles(r) + "\n";
  return o;
}

}  // namespace hamirror::cli
