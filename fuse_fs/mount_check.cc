#include "fuse_fs/mount_check.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

namespace hamirror::fs {
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

bool IsHamirrorMount(const std::string& canonical_path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  bool top_is_ours = false;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::vector<std::string> f;
    std::string w;
    while (ls >> w) f.push_back(w);
    if (f.size() < 7) continue;
    size_t dash = 6;
    while (dash < f.size() && f[dash] != "-") ++dash;
    if (dash + 2 >= f.size()) continue;
    if (Unescape(f[4]) != canonical_path) continue;
    // Later lines are mounted on top of earlier ones: the last match is what the path shows.
    top_is_ours = f[dash + 1] == kFsType || f[dash + 2] == kFsName;
  }
  return top_is_ours;
}

Status CheckMountPoint(const std::string& dir, std::string* canonical) {
  struct stat st;
  if (stat(dir.c_str(), &st) < 0) {
    int err = errno;
    if (err == ENOENT) return Status::NotFound("directory " + dir + " does not exist");
    if (err == ENOTCONN) {
      return Status::InvalidArgument(dir +
                                     " is a dead FUSE mount (transport endpoint is not connected); "
                                     "unmount it first: umount -l " +
                                     dir);
    }
    return Status::FromErrno("stat " + dir, err);
  }
  if (!S_ISDIR(st.st_mode)) return Status::InvalidArgument(dir + " is not a directory");
  char buf[PATH_MAX];
  if (realpath(dir.c_str(), buf) == nullptr) return Status::FromErrno("realpath " + dir, errno);
  *canonical = buf;
  if (IsHamirrorMount(*canonical)) {
    return Status::InvalidArgument(*canonical + " is already a hamirror mount; stop its hamirror-fs first");
  }
  return Status::Ok();
}

}  // namespace hamirror::fs
