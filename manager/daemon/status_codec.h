// Payload codec of the core's PeerStatus inside a heartbeat packet (manager/heartbeat): every field of
// the status, so the state machine's promises hold on the wire (want_serve carries the connected
// promotion handshake: without it both nodes could promote at once).
//
// The heartbeat packet already authenticates (HMAC under the cluster key), names sender and
// receiver, carries the cluster id and drops replays; this is only the opaque payload it carries.
//
// Layout: one text line "HMST2 <incarnation> <from> <state> <readiness> <data> <cur.counter>
// <cur.author> <base.counter> <base.author> <last_role> <split_brain 0|1> <data.incarnation> <seq>
// <echo_incarnation> <echo_seq> <flags>\n" ("-" for an empty name; flags: 1 handing_over,
// 2 swap_request, 4 split_brain, 8 want_serve, 16 prefer_second). Text keeps it debuggable with tcpdump; it
// stays far below heartbeat::kMaxPayload (names are at most heartbeat::kMaxNodeName bytes).
#pragma once

#include <string>
#include <string_view>

#include "manager/core/node_machine.h"

namespace hamirror::daemon {

std::string EncodeStatus(const manager::core::PeerStatus& status);
// False for anything that is not a well-formed HMST2 line (*out is then untouched).
bool DecodeStatus(std::string_view data, manager::core::PeerStatus* out);

}  // namespace hamirror::daemon
