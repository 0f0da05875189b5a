// Heartbeat wire format: one small UDP datagram per pulse and network, authenticated with a
// truncated HMAC-SHA256 under the shared cluster key. Pure encode/decode, no I/O.
//
// Layout (all integers little-endian):
//   u32 magic "HMHB" | u8 version | u8 x3 reserved | u64 cluster_id | u64 incarnation | u64 sequence
//   | u8 state | u8 sub_state | u8 flags (bit0 up_to_date, bit1 last_primary) | u8 reserved
//   | u64 data_generation | u8 sender_len | sender | u8 receiver_len | receiver
//   | u16 payload_len | payload | 16-byte tag
// The tag covers every byte before it. Names are at most kMaxNodeName bytes. The payload is opaque
// to this module (the daemon puts the state machine's full PeerStatus there); at most kMaxPayload.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "manager/heartbeat/heartbeat_key.h"

namespace hamirror::heartbeat {

inline constexpr size_t kMaxNodeName = 64;
inline constexpr size_t kTagSize = 16;
inline constexpr size_t kMaxPayload = 1024;  // the whole packet stays below a 1280-byte IPv6 MTU
inline constexpr size_t kMaxPacketSize =
    4 + 4 + 8 + 8 + 8 + 4 + 8 + 1 + kMaxNodeName + 1 + kMaxNodeName + 2 + kMaxPayload + kTagSize;

// What a node tells its peer about itself. Deliberately generic: the state machine ("core") maps its
// own enums to these small integers, this module never interprets them.
struct PeerSummary {
  uint8_t state = 0;
  uint8_t sub_state = 0;
  uint64_t data_generation = 0;
  bool up_to_date = false;
  bool last_primary = false;

  bool operator==(const PeerSummary&) const = default;
};

struct HeartbeatPacket {
  uint64_t cluster_id = 0;
  // Incarnation: chosen once per sender process start, strictly larger than any earlier one (wall
  // clock in ns). Sequence: starts at 1 within an incarnation, +1 per packet. Together they let the
  // receiver reject replays of recorded packets.
  uint64_t incarnation = 0;
  uint64_t sequence = 0;
  std::string sender;
  std::string receiver;
  PeerSummary summary;
  std::string payload;  // opaque, authenticated

  bool operator==(const HeartbeatPacket&) const = default;
};

// Writes the packet into out[0..cap) and returns its size, or 0 if cap is too small or a name is
// longer than kMaxNodeName or the payload longer than kMaxPayload.
size_t EncodeHeartbeat(const HeartbeatPacket& packet, const HeartbeatKey& key, uint8_t* out, size_t cap);

enum class DecodeError {
  kNone = 0,
  kGarbage,       // truncated, bad magic/version, inconsistent lengths
  kWrongCluster,  // well-formed, but for another cluster id (checked before the tag on purpose: a
                  // neighbour cluster with another key is reported as such, not as a forgery)
  kBadTag,        // authentication failed
};
const char* DecodeErrorName(DecodeError e);

// Parses and authenticates. On kNone, *out holds the packet.
DecodeError DecodeHeartbeat(const uint8_t* data, size_t len, uint64_t expected_cluster_id,
                            const HeartbeatKey& key, HeartbeatPacket* out);

// Rejects replays: accepts (incarnation, sequence) only if it is newer than everything accepted so
// far from that sender. Not thread-safe; one per peer.
class ReplayFilter {
 public:
  bool Accept(uint64_t incarnation, uint64_t sequence);
  void Reset() { seen_ = false; }

 private:
  bool seen_ = false;
  uint64_t incarnation_ = 0;
  uint64_t sequence_ = 0;
};

}  // namespace hamirror::heartbeat
