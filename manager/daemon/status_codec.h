// Wire format of the node status datagram that hamirrord sends every pulse on every heartbeat
// network: the core's PeerStatus (state, data generations, lease echo, swap/split-brain flags),
// authenticated with HMAC-SHA256 under the cluster's heartbeat key.
//
// Why not the heartbeat module's packet: its PeerSummary has room for a few small integers only,
// while the state machine needs generations (counter + author), heartbeat echo numbers for the lease
// and handover flags. Until the heartbeat packet grows an opaque payload, this datagram is the
// heartbeat: the core detects peer loss from its silence.
//
// Layout: one text line "HMST2 <cluster_id> <incarnation> <to> <from> <state> <readiness> <data>
// <cur.counter> <cur.author> <base.counter> <base.author> <last_role> <seq> <echo_seq> <flags>
// <echo_incarnation> <split_brain_persisted>\n"
// (flags: 1 handing_over, 2 swap_request, 4 split_brain, 8 want_serve, 16 prefer_second)
// ("-" for an empty author) followed by a 32-byte HMAC tag over the line. Text keeps it debuggable
// with tcpdump; the size stays far below any MTU.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "manager/core/node_machine.h"

namespace hamirror::daemon {

struct StatusDatagram {
  uint64_t cluster_id = 0;
  std::string to;
  manager::core::PeerStatus status;  // every field is carried; status.from is the sender
};

std::string EncodeStatus(const StatusDatagram& d, const std::string& key);

enum class StatusDecode { kOk, kGarbage, kBadTag, kWrongCluster };
StatusDecode DecodeStatus(std::string_view data, const std::string& key, uint64_t expected_cluster_id,
                          StatusDatagram* out);

}  // namespace hamirror::daemon
