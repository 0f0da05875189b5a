// Waiting for long operations in the `hamirror` CLI (`verify`, `resync --wait`, `second --wait`):
// polls the node's state until the operation ends, with a progress line (a bar on a terminal).
// The state comes through `fetch`, so the logic is unit-tested without a daemon.
#pragma once

#include <chrono>
#include <functional>
#include <ostream>

#include "proto/admin.pb.h"

namespace hamirror::cli {

// Fills *out with the current verbose state; false when the daemon cannot be reached (the wait ends).
using FetchState = std::function<bool(proto::StateReply* out)>;

struct WaitOptions {
  bool tty = false;                                       // redraw one line in place
  std::chrono::milliseconds poll{500};                    // between two fetches
  std::chrono::milliseconds timeout{24LL * 3600 * 1000};  // then give up (exit 2)
};

// Exit codes of the waits: 0 done (verify: no difference), 1 differences found or the operation
// failed, 2 the daemon became unreachable or the timeout passed.
inline constexpr int kWaitOk = 0, kWaitFailed = 1, kWaitUnreachable = 2;

// Verify: `before` is the state fetched before the verify was started (its verify ids are old). Waits
// until every primary directory's verify is new and ended, then lists the differences.
int WaitVerify(const FetchState& fetch, const proto::StateReply& before, std::ostream& out,
               const WaitOptions& options);

// Resync into this node: waits until it is SECOND (ready) with every directory's resync into it done
// after `before`; fails when the node leaves SECOND or a resync into it fails.
int WaitSecondReady(const FetchState& fetch, const proto::StateReply& before, std::ostream& out,
                    const WaitOptions& options);

}  // namespace hamirror::cli
