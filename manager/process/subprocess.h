// RunProcess: runs a program to completion with a deadline, streaming its output line by line.
// The child gets its own process group (so a timeout kills everything it started in the
// foreground), no inherited descriptors beyond 0/1/2 (stdin is /dev/null), and the given
// environment. Completion is the child's exit, not EOF on its output: a script that leaves a daemon
// running in the background (holding the pipe) still completes.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace hamirror::process {

struct ProcessResult {
  bool started = false;    // fork/exec succeeded
  bool timed_out = false;  // killed (SIGKILL to the process group) at the deadline
  int exit_code = -1;      // exit status, or 128+signal when killed by a signal
  std::string error;       // why it did not start
  bool ok() const { return started && !timed_out && exit_code == 0; }
};

struct ProcessSpec {
  std::vector<std::string> argv;  // argv[0] is the path (no PATH lookup unless it has no '/')
  std::vector<std::string> env;   // "NAME=value"; empty: inherit this process's environment
  std::chrono::milliseconds timeout{10000};
  std::string cwd;  // empty: inherit
  // Lines of stdout+stderr (without the newline). Called on the calling thread.
  std::function<void(std::string_view)> on_line;
  // After the child exited: how long to keep reading output still buffered from it. Background
  // descendants that keep the pipe open are not waited for beyond this.
  std::chrono::milliseconds drain{100};
};

// Blocks until the child exits or the deadline passes.
ProcessResult RunProcess(const ProcessSpec& spec);

}  // namespace hamirror::process
