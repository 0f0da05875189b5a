#include "common/fuse_mount.h"

#include <dirent.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/vfs.h>

#include <cerrno>
#include <fstream>
#include <future>
#include <memory>
#include <sstream>
#include <thread>
#include <vector>

namespace hamirror {
namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string Unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      int v = 0;
      bool ok = true;
      for (int k = 1; k <= 3; ++k) {
        char c = s[i + k];
        if (c < '0' || c > '7') ok = false;
        v = v * 8 + (c - '0');
      }
      if (ok) {
        out.push_back(static_cast<char>(v));
        i += 3;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

}  // namespace

const char* ToString(MountProbe p) {
  switch (p) {
    case MountProbe::kNotFuse: return "not a FUSE mount";
    case MountProbe::kLive: return "live FUSE mount";
    case MountProbe::kDead: return "dead FUSE mount";
  }
  return "?";
}

bool DeadMountErrno(int err) { return err == ENOTCONN || err == ECONNABORTED; }

Status ProbeMount(const std::string& dir, MountProbe* out) {
  struct statfs sfs;
  if (statfs(dir.c_str(), &sfs) != 0) {
    if (DeadMountErrno(errno)) {
      *out = MountProbe::kDead;
      return Status::Ok();
    }
    if (errno == ENOENT) return Status::NotFound("directory " + dir + " does not exist");
    return Status::FromErrno("statfs " + dir, errno);
  }
  *out = static_cast<long>(sfs.f_type) == kFuseSuperMagic ? MountProbe::kLive : MountProbe::kNotFuse;
  return Status::Ok();
}

Status ProbeMountWithin(const std::string& dir, std::chrono::milliseconds timeout, MountProbe* out) {
  struct Result {
    Status status;
    MountProbe probe = MountProbe::kNotFuse;
  };
  auto promise = std::make_shared<std::promise<Result>>();
  std::future<Result> future = promise->get_future();
  std::thread([dir, promise] {
    Result r;
    r.status = ProbeMount(dir, &r.probe);
    promise->set_value(std::move(r));
  }).detach();
  if (future.wait_for(timeout) != std::future_status::ready)
    return Status::Timeout("statfs " + dir + ": no answer within " + std::to_string(timeout.count()) +
                           " ms (a FUSE daemon that does not answer)");
  Result r = future.get();
  *out = r.probe;
  return r.status;
}

std::string TopMountType(const std::string& canonical_path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line, type;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::vector<std::string> f;
    std::string w;
    while (ls >> w) f.push_back(w);
    if (f.size() < 7) continue;
    size_t dash = 6;
    while (dash < f.size() && f[dash] != "-") ++dash;
    if (dash + 1 >= f.size()) continue;
    // Later lines are mounted on top of earlier ones: the last match is what the path shows.
    if (Unescape(f[4]) == canonical_path) type = f[dash + 1];
  }
  return type;
}

int TopMountId(const std::string& canonical_path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  int id = -1;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::vector<std::string> f;
    std::string w;
    while (ls >> w) f.push_back(w);
    if (f.size() < 5) continue;
    if (Unescape(f[4]) == canonical_path) id = std::atoi(f[0].c_str());  // the last match is on top
  }
  return id;
}

std::vector<std::string> ProcessesWithFilesOn(int mount_id, size_t max_processes) {
  std::vector<std::string> out;
  if (mount_id < 0) return out;
  const std::string want = "mnt_id:\t" + std::to_string(mount_id);
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return out;
  while (dirent* e = readdir(proc)) {
    if (out.size() >= max_processes) break;
    const std::string pid = e->d_name;
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    DIR* fds = opendir(("/proc/" + pid + "/fdinfo").c_str());
    if (fds == nullptr) continue;  // gone, or not ours to see
    bool found = false;
    while (dirent* fd = readdir(fds)) {
      if (fd->d_name[0] == '.') continue;
      std::ifstream info("/proc/" + pid + "/fdinfo/" + fd->d_name);
      std::string l;
      while (!found && std::getline(info, l)) found = l == want;
      if (found) break;
    }
    closedir(fds);
    if (!found) continue;
    std::ifstream comm_in("/proc/" + pid + "/comm");
    std::string comm;
    std::getline(comm_in, comm);
    out.push_back(pid + " (" + comm + ")");
  }
  closedir(proc);
  return out;
}

Status CanonicalMountPoint(const std::string& dir, std::string* out) {
  char buf[PATH_MAX];
  if (realpath(dir.c_str(), buf) != nullptr) {
    *out = buf;
    return Status::Ok();
  }
  if (!DeadMountErrno(errno)) return Status::FromErrno("realpath " + dir, errno);
  // A dead mount point: its parent is resolved, the last component taken as written.
  std::string d = dir;
  while (d.size() > 1 && d.back() == '/') d.pop_back();
  const size_t slash = d.rfind('/');
  const std::string parent = slash == std::string::npos ? "." : slash == 0 ? "/" : d.substr(0, slash);
  const std::string base = slash == std::string::npos ? d : d.substr(slash + 1);
  if (base.empty() || base == "." || base == "..")
    return Status::InvalidArgument(dir + ": transport endpoint is not connected");
  if (realpath(parent.c_str(), buf) == nullptr) return Status::FromErrno("realpath " + parent, errno);
  const std::string p = buf;
  *out = p == "/" ? "/" + base : p + "/" + base;
  return Status::Ok();
}

Status DetachMount(const std::string& dir) {
  if (umount2(dir.c_str(), MNT_DETACH) != 0) return Status::FromErrno("umount2(MNT_DETACH) " + dir, errno);
  return Status::Ok();
}

}  // namespace hamirror
