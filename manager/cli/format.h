// Rendering of admin replies for the `hamirror` CLI, kept apart from I/O so it is unit-tested.
#pragma once

#include <string>

#include "proto/admin.pb.h"

namespace hamirror::cli {

// SafeKit's `state -lq` exit codes: STOP 0, WAIT 1, ALONE 2, PRIM 3, SECOND 4 (UNKNOWN: 0).
int StateExitCode(proto::NodeState state);
const char* StateName(proto::NodeState state);
const char* SubStateName(proto::SubState sub);

// Human text for `state` (one summary line per node) and `state -v` (plus resources).
std::string FormatState(const proto::StateReply& reply, bool verbose);
// "boot on, failover on, errd on, checker on": the runtime toggles (a line of `state -v`).
std::string FormatToggles(const proto::StateReply& reply);
// `state --json`.
std::string FormatStateJson(const proto::StateReply& reply);

// Where the CLI finds the admin socket: explicit --socket, else -m MODULE, else $HAMIRROR_SOCKET
// (exported to user scripts by hamirrord), else $SAFEMODULE, else the only socket in /run/hamirror.
// Returns "" and sets *error when it cannot decide.
std::string ResolveSocket(const std::string& socket_opt, const std::string& module_opt, std::string* error);

}  // namespace hamirror::cli
