#include "manager/daemon/adopt_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "common/unique_fd.h"
#include "manager/daemon/state_store.h"

namespace hamirror::daemon {
namespace core = manager::core;
namespace {

constexpr const char* kMagic = "hamirror-adopt-1";

std::string Name(const std::string& s) { return s.empty() ? "-" : s; }
std::string Unname(const std::string& s) { return s == "-" ? "" : s; }

uint64_t Fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::string Hex(uint64_t v) {
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

void FormatPeer(const core::PeerStatus& p, std::ostream& o) {
  o << "peer 1 " << Name(p.from) << ' ' << int(p.state) << ' ' << int(p.readiness) << ' ' << int(p.data.data)
    << ' ' << p.data.current.counter << ' ' << Name(p.data.current.author) << ' ' << p.data.base.counter
    << ' ' << Name(p.data.base.author) << ' ' << int(p.data.last_role) << ' ' << int(p.data.split_brain)
    << ' ' << p.data.incarnation << ' ' << p.incarnation << ' ' << p.seq << ' ' << p.echo_seq << ' '
    << p.echo_incarnation << ' ' << int(p.want_serve) << ' ' << int(p.prefer_second) << ' '
    << int(p.handing_over) << ' ' << int(p.swap_request) << ' ' << int(p.split_brain) << '\n';
}

bool InRange(int v, int lo, int hi) { return v >= lo && v <= hi; }

bool ParsePeer(std::istringstream& in, core::PeerStatus* p) {
  std::string from, cur_author, base_author;
  int state, ready, data, role, split, want, prefer, hand, swap, sb;
  if (!(in >> from >> state >> ready >> data >> p->data.current.counter >> cur_author >>
        p->data.base.counter >> base_author >> role >> split >> p->data.incarnation >> p->incarnation >>
        p->seq >> p->echo_seq >> p->echo_incarnation >> want >> prefer >> hand >> swap >> sb))
    return false;
  if (!InRange(state, 0, 4) || !InRange(ready, 0, 1) || !InRange(data, 0, 3) || !InRange(role, 0, 2))
    return false;
  p->from = Unname(from);
  p->state = static_cast<core::NodeState>(state);
  p->readiness = static_cast<core::Readiness>(ready);
  p->data.data = static_cast<core::DataState>(data);
  p->data.current.author = Unname(cur_author);
  p->data.base.author = Unname(base_author);
  p->data.last_role = static_cast<core::Role>(role);
  p->data.split_brain = split != 0;
  p->want_serve = want != 0;
  p->prefer_second = prefer != 0;
  p->handing_over = hand != 0;
  p->swap_request = swap != 0;
  p->split_brain = sb != 0;
  return true;
}

// One line of the record (everything but the checksum). False: unknown key or bad value.
bool ParseLine(const std::string& line, AdoptionRecord* r) {
  std::istringstream in(line);
  std::string key;
  in >> key;
  if (key == "module") return static_cast<bool>(in >> r->module);
  if (key == "node") return static_cast<bool>(in >> r->node);
  if (key == "boot") return static_cast<bool>(in >> r->boot_id);
  if (key == "written") return static_cast<bool>(in >> r->written_ms);
  if (key == "daemon_pid") return static_cast<bool>(in >> r->daemon_pid);
  if (key == "handoff") {
    int state, vip, linked, forced;
    if (!(in >> state >> vip >> linked >> forced >> r->handoff.lease_left_ms) || !InRange(state, 0, 4))
      return false;
    r->handoff.state = static_cast<core::NodeState>(state);
    r->handoff.vip_held = vip != 0;
    r->handoff.fs_linked = linked != 0;
    r->handoff.forced = forced != 0;
    return true;
  }
  if (key == "generation") {
    std::string author;
    if (!(in >> r->generation.counter >> author)) return false;
    r->generation.author = Unname(author);
    return true;
  }
  if (key == "peer") {
    int has = 0;
    if (!(in >> has)) return false;
    if (has == 0) return true;
    core::PeerStatus p;
    if (!ParsePeer(in, &p)) return false;
    r->handoff.peer = p;
    return true;
  }
  if (key == "fs") {
    FsSession f;
    if (!(in >> f.pid >> f.start_time >> f.role)) return false;
    std::getline(in >> std::ws, f.dir);
    if (f.dir.empty()) return false;
    r->fs.push_back(f);
    return true;
  }
  return false;
}

}  // namespace

std::string BootId() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  in >> id;
  return id;
}

uint64_t BoottimeMs() {
  timespec ts{};
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return uint64_t(ts.tv_sec) * 1000 + uint64_t(ts.tv_nsec) / 1000000;
}

uint64_t ProcessStartTime(uint32_t pid) {
  if (pid == 0) return 0;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  std::getline(in, stat);
  // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(stat.substr(close + 1));
  std::string field;
  for (int i = 3; i <= 22; ++i) {
    if (!(rest >> field)) return 0;
  }
  return std::strtoull(field.c_str(), nullptr, 10);
}

std::string FormatAdoptionRecord(const AdoptionRecord& r) {
  std::ostringstream o;
  const core::Handoff& h = r.handoff;
  o << kMagic << '\n'
    << "module " << r.module << '\n'
    << "node " << r.node << '\n'
    << "boot " << Name(r.boot_id) << '\n'
    << "written " << r.written_ms << '\n'
    << "daemon_pid " << r.daemon_pid << '\n'
    << "handoff " << int(h.state) << ' ' << int(h.vip_held) << ' ' << int(h.fs_linked) << ' ' << int(h.forced)
    << ' ' << h.lease_left_ms << '\n'
    << "generation " << r.generation.counter << ' ' << Name(r.generation.author) << '\n';
  if (h.peer)
    FormatPeer(*h.peer, o);
  else
    o << "peer 0\n";
  for (const auto& f : r.fs)
    o << "fs " << f.pid << ' ' << f.start_time << ' ' << f.role << ' ' << f.dir << '\n';
  const std::string body = o.str();
  return body + "checksum " + Hex(Fnv1a(body)) + '\n';
}

Status ParseAdoptionRecord(const std::string& text, AdoptionRecord* out) {
  const size_t at = text.rfind("checksum ");
  if (at == std::string::npos || (at != 0 && text[at - 1] != '\n'))
    return Status::Corruption("adoption record: no checksum line");
  std::string sum = text.substr(at + 9);
  while (!sum.empty() && (sum.back() == '\n' || sum.back() == ' ')) sum.pop_back();
  const std::string body = text.substr(0, at);
  if (sum != Hex(Fnv1a(body))) return Status::Corruption("adoption record: checksum mismatch");
  std::istringstream in(body);
  std::string line;
  if (!std::getline(in, line) || line != kMagic)
    return Status::Corruption("adoption record: not a hamirror-adopt-1 file");
  AdoptionRecord r;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (!ParseLine(line, &r)) return Status::Corruption("adoption record: bad line '" + line + "'");
  }
  if (r.module.empty() || r.node.empty() || r.written_ms == 0)
    return Status::Corruption("adoption record: module, node or time missing");
  *out = std::move(r);
  return Status::Ok();
}

Status AdoptStore::Save(const AdoptionRecord& r) const {
  return WriteFileAtomic(path_, FormatAdoptionRecord(r));
}

Status AdoptStore::Consume(AdoptionRecord* out) const {
  UniqueFd fd(open(path_.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return Status::NotFound(path_ + ": no adoption record");
    return Status::FromErrno("open " + path_, errno);
  }
  // The VIP keeper of the previous daemon takes the same lock, and removes the file when it acts.
  if (flock(fd.get(), LOCK_EX) != 0) return Status::FromErrno("flock " + path_, errno);
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) return Status::FromErrno("fstat " + path_, errno);
  if (st.st_nlink == 0) return Status::NotFound(path_ + ": removed by the VIP keeper (lease ran out)");
  std::string text;
  char buf[4096];
  for (int i = 0; i < 64; ++i) {  // a record is < 4 KiB; bounded anyway
    ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n < 0) return Status::FromErrno("read " + path_, errno);
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  // Used at most once, whatever it says.
  if (unlink(path_.c_str()) != 0) return Status::FromErrno("unlink " + path_, errno);
  const std::string dir = path_.substr(0, path_.rfind('/'));
  if (UniqueFd dfd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)); dfd) (void)fsync(dfd.get());
  return ParseAdoptionRecord(text, out);
}

}  // namespace hamirror::daemon
