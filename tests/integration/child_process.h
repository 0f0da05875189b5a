// ChildProcess: a program the integration tests start, watch and stop by PID (never by name).
// stdout and stderr go to a log file so a failing test can show what the program said.
// The child gets PR_SET_PDEATHSIG(SIGKILL): if the test binary dies, no daemon is left behind.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "common/status.h"

namespace hamirror::itest {

class ChildProcess {
 public:
  ChildProcess() = default;
  ~ChildProcess();  // SIGKILLs and reaps a child still running
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Starts argv[0] (looked up in PATH) with stdout+stderr appended to log_path.
  Status Start(const std::vector<std::string>& argv, const std::string& log_path);

  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }
  // Exit status as returned by waitpid (valid once the child was reaped).
  int wait_status() const { return wait_status_; }
  const std::string& log_path() const { return log_path_; }

  // True (and the child reaped) if it has exited; never blocks.
  bool Exited();
  // Sends sig to the child (no-op if it was reaped already).
  void Signal(int sig);
  // Waits for the child to exit, at most timeout. Timeout status if it is still running.
  Status WaitExit(std::chrono::milliseconds timeout);
  // SIGTERM, wait up to timeout, then SIGKILL. Ok only if the child exited by itself with status 0.
  Status Stop(std::chrono::milliseconds timeout);
  // SIGKILL and reap.
  void Kill();

  // Last `max_bytes` of the log, for failure messages.
  std::string LogTail(size_t max_bytes = 4000) const;

 private:
  void Reap(int status);
  pid_t pid_ = -1;
  int pidfd_ = -1;
  int wait_status_ = 0;
  std::string log_path_;
};

// Runs a program to completion (bounded by timeout), output appended to log_path.
// Ok only on exit status 0.
Status RunProgram(const std::vector<std::string>& argv, const std::string& log_path,
                  std::chrono::milliseconds timeout);

// Reads the last max_bytes of a file ("" if it cannot be read).
std::string FileTail(const std::string& path, size_t max_bytes = 4000);

}  // namespace hamirror::itest
