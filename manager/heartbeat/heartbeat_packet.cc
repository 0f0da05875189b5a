#include "manager/heartbeat/heartbeat_packet.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstring>

namespace hamirror::heartbeat {
namespace {

constexpr uint32_t kMagic = 0x42484D48;  // "HMHB" little-endian
constexpr uint8_t kVersion = 1;
constexpr size_t kFixedHeader = 4 + 4 + 8 + 8 + 8 + 4 + 8;  // up to and including data_generation

void PutU64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void PutU32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t GetU64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
uint32_t GetU32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

void ComputeTag(const HeartbeatKey& key, const uint8_t* data, size_t len, uint8_t tag[kTagSize]) {
  unsigned char full[EVP_MAX_MD_SIZE];
  unsigned int full_len = 0;
  HMAC(EVP_sha256(), key.secret().data(), static_cast<int>(key.secret().size()), data, len, full, &full_len);
  std::memcpy(tag, full, kTagSize);
}

}  // namespace

const char* DecodeErrorName(DecodeError e) {
  switch (e) {
    case DecodeError::kNone: return "ok";
    case DecodeError::kGarbage: return "garbage";
    case DecodeError::kWrongCluster: return "wrong cluster";
    case DecodeError::kBadTag: return "bad tag";
  }
  return "?";
}

size_t EncodeHeartbeat(const HeartbeatPacket& packet, const HeartbeatKey& key, uint8_t* out, size_t cap) {
  if (packet.sender.size() > kMaxNodeName || packet.receiver.size() > kMaxNodeName ||
      packet.payload.size() > kMaxPayload) {
    return 0;
  }
  const size_t size = kFixedHeader + 1 + packet.sender.size() + 1 + packet.receiver.size() + 2 +
                      packet.payload.size() + kTagSize;
  if (cap < size) return 0;
  uint8_t* p = out;
  PutU32(p, kMagic);
  p[4] = kVersion;
  p[5] = p[6] = p[7] = 0;
  PutU64(p + 8, packet.cluster_id);
  PutU64(p + 16, packet.incarnation);
  PutU64(p + 24, packet.sequence);
  p[32] = packet.summary.state;
  p[33] = packet.summary.sub_state;
  p[34] = static_cast<uint8_t>((packet.summary.up_to_date ? 1 : 0) | (packet.summary.last_primary ? 2 : 0));
  p[35] = 0;
  PutU64(p + 36, packet.summary.data_generation);
  p += kFixedHeader;
  *p++ = static_cast<uint8_t>(packet.sender.size());
  std::memcpy(p, packet.sender.data(), packet.sender.size());
  p += packet.sender.size();
  *p++ = static_cast<uint8_t>(packet.receiver.size());
  std::memcpy(p, packet.receiver.data(), packet.receiver.size());
  p += packet.receiver.size();
  *p++ = static_cast<uint8_t>(packet.payload.size());
  *p++ = static_cast<uint8_t>(packet.payload.size() >> 8);
  if (!packet.payload.empty()) std::memcpy(p, packet.payload.data(), packet.payload.size());
  p += packet.payload.size();
  ComputeTag(key, out, static_cast<size_t>(p - out), p);
  return size;
}

DecodeError DecodeHeartbeat(const uint8_t* data, size_t len, uint64_t expected_cluster_id,
                            const HeartbeatKey& key, HeartbeatPacket* out) {
  if (len < kFixedHeader + 4 + kTagSize || len > kMaxPacketSize) return DecodeError::kGarbage;
  if (GetU32(data) != kMagic || data[4] != kVersion) return DecodeError::kGarbage;
  if ((data[34] & ~3u) != 0) return DecodeError::kGarbage;
  size_t pos = kFixedHeader;
  const size_t sender_len = data[pos++];
  if (sender_len > kMaxNodeName || pos + sender_len + 1 > len) return DecodeError::kGarbage;
  const size_t sender_pos = pos;
  pos += sender_len;
  const size_t receiver_len = data[pos++];
  if (receiver_len > kMaxNodeName || pos + receiver_len + 2 + kTagSize > len) return DecodeError::kGarbage;
  const size_t receiver_pos = pos;
  pos += receiver_len;
  const size_t payload_len = data[pos] | (static_cast<size_t>(data[pos + 1]) << 8);
  pos += 2;
  if (payload_len > kMaxPayload || pos + payload_len + kTagSize != len) return DecodeError::kGarbage;
  const size_t payload_pos = pos;
  pos += payload_len;

  const uint64_t cluster_id = GetU64(data + 8);
  if (cluster_id != expected_cluster_id) return DecodeError::kWrongCluster;
  uint8_t tag[kTagSize];
  ComputeTag(key, data, pos, tag);
  if (CRYPTO_memcmp(tag, data + pos, kTagSize) != 0) return DecodeError::kBadTag;

  out->cluster_id = cluster_id;
  out->incarnation = GetU64(data + 16);
  out->sequence = GetU64(data + 24);
  out->summary.state = data[32];
  out->summary.sub_state = data[33];
  out->summary.up_to_date = (data[34] & 1) != 0;
  out->summary.last_primary = (data[34] & 2) != 0;
  out->summary.data_generation = GetU64(data + 36);
  out->sender.assign(reinterpret_cast<const char*>(data + sender_pos), sender_len);
  out->receiver.assign(reinterpret_cast<const char*>(data + receiver_pos), receiver_len);
  out->payload.assign(reinterpret_cast<const char*>(data + payload_pos), payload_len);
  return DecodeError::kNone;
}

bool ReplayFilter::Accept(uint64_t incarnation, uint64_t sequence) {
  if (seen_) {
    if (incarnation < incarnation_) return false;
    if (incarnation == incarnation_ && sequence <= sequence_) return false;
  }
  seen_ = true;
  incarnation_ = incarnation;
  sequence_ = sequence;
  return true;
}

}  // namespace hamirror::heartbeat
