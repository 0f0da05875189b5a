// Test helpers for daemons and mounts: spawn a program and stop it by PID (never by name), wait for
// a FUSE mount with a deadline, unmount, temporary directories, free loopback ports.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "common/status.h"

namespace hamirror::test {

// A program started by a test. stdout+stderr go to log_path. The child gets PR_SET_PDEATHSIG(SIGKILL)
// so no daemon outlives a crashed test binary. The destructor SIGKILLs and reaps a child still running.
class Daemon {
 public:
  Daemon() = default;
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Starts argv[0] (looked up in PATH) with stdout+stderr appended to log_path.
  Status Start(const std::vector<std::string>& argv, const std::string& log_path);
  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }
  // Wait status (as from waitpid) of the last reaped child; 0 before any was reaped.
  int wait_status() const { return wait_status_; }

  void Signal(int sig);
  // True (and reaped) if the child has exited; never blocks.
  bool Exited();
  // Waits for exit, at most timeout; *wait_status as from waitpid.
  Status WaitExit(std::chrono::milliseconds timeout, int* wait_status = nullptr);
  // SIGTERM, wait up to timeout, then SIGKILL. Ok only if it exited by itself with status 0.
  Status Stop(std::chrono::milliseconds timeout);
  void Kill();  // SIGKILL + reap

  std::string LogTail(size_t max_bytes = 4000) const;
  const std::string& log_path() const { return log_path_; }

 private:
  void Reaped(int wait_status);
  pid_t pid_ = -1;
  int wait_status_ = 0;
  std::string log_path_;
};

// Runs argv to completion (bounded by timeout); *exit_code is the exit status (128+sig if killed),
// *output the combined stdout+stderr.
Status RunCommand(const std::vector<std::string>& argv, std::chrono::milliseconds timeout, int* exit_code,
                  std::string* output);

// Runs argv to completion (bounded by timeout) with stdout+stderr appended to log_path. Ok only on exit
// status 0; otherwise the status carries the log's tail.
Status RunProgram(const std::vector<std::string>& argv, const std::string& log_path,
                  std::chrono::milliseconds timeout);

// The last max_bytes of a file ("" if it cannot be read), for failure messages.
std::string FileTail(const std::string& path, size_t max_bytes = 4000);

// True if the topmost mount at `dir` (canonical path) has file-system type `fstype`
// ("fuse.hamirror" by default).
bool IsMountedAs(const std::string& dir, const std::string& fstype = "fuse.hamirror");

// Waits until dir is a hamirror mount, at most timeout; fails early if `pid` (when > 0) has exited.
Status WaitForMount(const std::string& dir, pid_t pid, std::chrono::milliseconds timeout);
// Waits until dir is no longer a hamirror mount.
Status WaitForUnmount(const std::string& dir, std::chrono::milliseconds timeout);
// Lazy unmount (umount2 MNT_DETACH) of whatever is mounted at dir; ok if nothing is.
Status Unmount(const std::string& dir);
// Lazy unmount of every mount at or below dir, deepest first (dead FUSE mounts after a daemon was killed
// included: "transport endpoint is not connected").
void UnmountTree(const std::string& dir);

// Polls cond every 10 ms until true or timeout; true if it became true.
template <typename Cond>
bool WaitUntil(Cond cond, std::chrono::milliseconds timeout);

// A port on 127.0.0.1 free at the time of the call.
int PickFreePort();

// mkdtemp under $TMPDIR or /tmp. The destructor lazily unmounts any mount below the directory
// and removes it recursively.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "hamirror-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// --- template definition ---
template <typename Cond>
bool WaitUntil(Cond cond, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (cond()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, nullptr);
  }
}

}  // namespace hamirror::test
