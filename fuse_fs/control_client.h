// `hamirror-fs ctl`: a command line for one hamirror-fs's control socket (what hamirrord does through
// it), for running a pair by hand, benchmarks and diagnosis. Prints the FsStatus as JSON.
//   hamirror-fs ctl --control SOCK status
//   hamirror-fs ctl --control SOCK role primary --peer HOST:PORT | role alone
//   hamirror-fs ctl --control SOCK resync [--full] | verify [--repair] | expect-resync [--quarantine]
//   [--full]
//   ... [--wait]: resync/verify: until it ended (exit 1 if it failed or verify found differences)
#pragma once

#include <cstdint>
#include <string>

namespace hamirror::fs {

struct CtlRequest {
  std::string control;  // socket path
  std::string verb;     // status, role, resync, verify, expect-resync, wait
  std::string role;     // role: primary, alone
  std::string peer;
  bool full = false;
  bool repair = false;
  bool quarantine = false;
  bool wait = false;
  uint64_t after_id = 0;      // wait: the resync to wait for is one with another id
  int timeout_s = 24 * 3600;  // --wait (and wait) bound
};

// Runs the request; returns the process exit code (0 ok, 1 refused/failed/differences, 2 unreachable).
int RunCtl(const CtlRequest& request);

}  // namespace hamirror::fs
