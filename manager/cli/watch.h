// `hamirror state -w`: the state screen refreshed every interval, like crm_mon. On a terminal the
// screen is cleared and redrawn in place; otherwise one snapshot per interval is appended (a log, a
// pipe). Runs until Ctrl-C (SIGINT ends the process), or `count` refreshes.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <ostream>
#include <string>

#include "manager/cli/wait.h"
#include "proto/admin.grpc.pb.h"

namespace hamirror::cli {

struct WatchOptions {
  bool tty = false;                          // clear and redraw in place
  std::chrono::milliseconds interval{2000};  // between two refreshes
  uint64_t count = 0;                        // refreshes, then return; 0: until interrupted
};

using RenderState = std::function<std::string(const proto::StateReply&)>;

// Returns 0, or 2 (kWaitUnreachable) when the daemon could not be reached at the last refresh (an
// unreachable daemon is reported on screen and asked again at the next refresh).
int WatchState(const FetchState& fetch, const RenderState& render, std::ostream& out, const WatchOptions& o);

// The state (verbose or not) from hamirrord through `stub`, with a 5 s deadline per call.
FetchState FetchFromStub(proto::Admin::Stub* stub, bool verbose);

}  // namespace hamirror::cli
