// Rendering of admin replies for the `hamirror` CLI, kept apart from I/O so it is unit-tested.
#pragma once

#include <string>

#include "proto/admin.pb.h"

namespace hamirror::cli {

// SafeKit's `state -lq` exit codes: STOP 0, WAIT 1, ALONE 2, PRIM 3, SECOND 4; 5 for a state it cannot
// tell (common/exit_codes.h).
int StateExitCode(proto::NodeState state);
const char* StateName(proto::NodeState state);
const char* SubStateName(proto::SubState sub);

// Human text for `state` (one summary line per node) and `state -v` (plus resources).
std::string FormatState(const proto::StateReply& reply, bool verbose);
// `state --json`.
std::string FormatStateJson(const proto::StateReply& reply);

}  // namespace hamirror::cli
