// Small pieces of test plumbing: temporary directories that clean up after themselves (unmounting
// anything a failed test left mounted inside first), mount checks, free loopback ports, env knobs.
#pragma once

#include <chrono>
#include <string>

#include "common/status.h"

namespace hamirror::itest {

class TempDir {
 public:
  // Creates /tmp/<prefix>XXXXXX (short: unix socket paths are limited to 108 bytes).
  explicit TempDir(const std::string& prefix);
  ~TempDir();  // lazily unmounts mounts below it, then removes the tree
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// True if path is a mount point whose file system type starts with fs_type_prefix ("" = any).
bool IsMountPoint(const std::string& path, const std::string& fs_type_prefix = "");
// Waits until IsMountPoint(path, prefix) == mounted, at most timeout.
Status AwaitMount(const std::string& path, const std::string& fs_type_prefix, bool mounted,
                  std::chrono::milliseconds timeout);
// umount2(MNT_DETACH) of path and of every mount below it (deepest first). For dead FUSE mounts
// ("transport endpoint is not connected") after the daemon was killed.
void LazyUnmountTree(const std::string& path);

// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, close).
int FreeLoopbackPort();
// True if something listens on 127.0.0.1:port or 0.0.0.0:port (read from /proc/net/tcp, no connection made).
bool IsListening(int port);

// Integer env knob with a default.
long EnvLong(const char* name, long fallback);

// Full path of a program: PATH first, then the sbin directories (mariadbd lives in /usr/sbin, which a
// non-login root environment may not have on PATH). Returns name unchanged if not found.
std::string FindProgram(const std::string& name);

// mkdir -p.
Status MakeDirs(const std::string& path);

}  // namespace hamirror::itest
