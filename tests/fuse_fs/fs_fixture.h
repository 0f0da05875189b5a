// Helpers for hamirror-fs integration tests: start the daemon in a role over a directory, talk to its
// control socket, generate a randomized workload.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "proto/fs_control.pb.h"
#include "tests/support/daemon.h"

namespace hamirror::test {

// Path of the hamirror-fs binary this build produced.
std::string FsBinary();

// One hamirror-fs process mounted over dir.
class FsProcess {
 public:
  // role_args: e.g. {"primary", "--peer", "127.0.0.1:1234"} — --dir and --control are added.
  Status Start(const std::string& dir, const std::string& control, std::vector<std::string> role_args,
               const std::string& log_path, std::chrono::milliseconds timeout = std::chrono::seconds(20));
  // SIGTERM; must exit 0 and leave dir unmounted.
  Status Stop(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // SIGKILL by PID, reap, lazily unmount the dead mount.
  void Kill();
  ~FsProcess();

  // keepalive: as a manager's periodic poll (FsStatusRequest.keepalive).
  Status GetStatus(proto::FsStatus* out, bool keepalive = false);
  Status SetRole(proto::FsRole role, const std::string& peer, proto::FsStatus* out = nullptr);

  // Starts the daemon with this RLIMIT_NOFILE (soft and hard; 0: inherited), through prlimit(1).
  void set_open_file_limit(int limit) { open_file_limit_ = limit; }

  pid_t pid() const { return daemon_.pid(); }
  const std::string& dir() const { return dir_; }
  std::string LogTail() const { return daemon_.LogTail(); }

 private:
  Daemon daemon_;
  std::string dir_, control_;
  int open_file_limit_ = 0;
};

// The seed of a randomized test: $HAMIRROR_SEED if set, else a random one; printed ("hamirror-fs
// <what> seed: N") so that a failure can be replayed.
uint64_t TestSeed(const char* what);

// Randomized mutations through `root` (a mount), covering every kind of change hamirror replicates:
// writes (incl. O_DSYNC, to files renamed or unlinked while open), truncate, fallocate (punch hole,
// zero range), create, mknod (fifo), mkdir, symlink, link, unlink, rmdir, rename (NOREPLACE,
// EXCHANGE), chmod/chown/utimens, setxattr/removexattr, copy_file_range, fsync.
// Failing calls (ENOENT, ENOTEMPTY...) are part of the game. Returns a short summary of counts.
std::string RunRandomWorkload(const std::string& root, uint64_t seed, int steps);

}  // namespace hamirror::test
