// Rendering of admin replies for the `hamirror` CLI, kept apart from I/O so it is unit-tested.
#pragma once

#include <cstdint>
#include <string>

#include "proto/admin.pb.h"

namespace hamirror::cli {

// SafeKit's `state -lq` exit codes: STOP 0, WAIT 1, ALONE 2, PRIM 3, SECOND 4; 5 for a state it cannot
// tell (common/exit_codes.h).
int StateExitCode(proto::NodeState state);
const char* StateName(proto::NodeState state);
const char* SubStateName(proto::SubState sub);

// Colours for output on `fd`: only on a terminal, and not when NO_COLOR is set and not empty.
bool UseColour(int fd);

// Human text for `state` (one summary line per node) and `state -v` (both nodes side by side, the
// last failover, VIP holder, heartbeats, fs and resync with a progress bar, watchdog, checkers).
// `colour`: ANSI colours (UseColour); without it the text has no escape sequence.
std::string FormatState(const proto::StateReply& reply, bool verbose, bool colour = false);
// "boot on, failover on, errd on, checker on": the runtime toggles (a line of `state -v`).
std::string FormatToggles(const proto::StateReply& reply);
// `state --json`: every field of the reply under its proto name, enum values in lower case without
// their type prefix ("prim", "second", "up_to_date"), 64-bit numbers as numbers, an unset message
// as null (manager/cli/state_json.cc; fields documented in docs/operations.md).
std::string FormatStateJson(const proto::StateReply& reply);

// "850ms", "4.1s", "12s", "3m05s", "2h04m", "3d02h".
std::string FormatDuration(uint64_t ms);
// "[#########.....................]": a fraction in [0, 1] (clamped), 30 characters inside.
std::string ProgressBar(double fraction);

}  // namespace hamirror::cli
