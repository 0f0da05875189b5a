// Byte handling of FUSE-over-io_uring entries, without I/O: turning what the kernel wrote into a ring
// entry back into the byte stream libfuse parses (as read from /dev/fuse), and writing libfuse's reply
// into the entry's buffers. Anything malformed is refused with an errno, never trusted.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "fuse_fs/uring_abi.h"

namespace hamirror::fs {

// Room an entry keeps in front of its payload buffer so that a request can be rebuilt in place: the
// in header and the opcode's argument struct are written right before the payload (no payload copy).
inline constexpr size_t kRingHeadroom = 256;

// Size range of the argument struct the kernel puts in the op area for `opcode` (a range where the
// size depends on the negotiated protocol: compat sizes). False: not an opcode the kernel sends on a
// ring (or one this daemon does not know).
bool RingOpArgSize(uint32_t opcode, size_t* min_size, size_t* max_size);

// One request, rebuilt.
struct RingRequest {
  const char* data = nullptr;  // fuse_in_header, argument struct, payload: in.len bytes
  size_t size = 0;
  uint64_t unique = 0;
  uint32_t opcode = 0;
};

// Rebuilds the request the kernel wrote into an entry: hdr is its header buffer, payload its payload
// buffer (payload_capacity bytes, with kRingHeadroom writable bytes before it). Returns 0 and fills
// *out, or an errno: EPROTO (sizes out of range or inconsistent, short header, unique and commit id
// differ), ENOSYS (unknown opcode; out->unique is then set so the request can be answered).
int RebuildRingRequest(const uring_abi::ReqHeader& hdr, char* payload, size_t payload_capacity,
                       RingRequest* out);

// The unique of a reply as libfuse hands it to writev (iov[0] starts with a fuse_out_header); 0 when
// iov[0] is too short (notifications also carry 0).
uint64_t ReplyUnique(const struct iovec* iov, int count);

// Writes a reply (iov[0]: fuse_out_header, then the arguments) into an entry's buffers. Returns 0, or
// EPROTO (short header) / EMSGSIZE (arguments larger than the payload buffer): the caller then answers
// with WriteRingError instead.
int WriteRingReply(const struct iovec* iov, int count, uring_abi::ReqHeader* hdr, char* payload,
                   size_t payload_capacity);
// An error answer (err > 0) to request `unique`.
void WriteRingError(uint64_t unique, int err, uring_abi::ReqHeader* hdr);

// Ring requests handed to libfuse and not answered yet, by unique; used from any thread. Routes each
// reply libfuse writes: to the entry of its request (once), or nowhere (a /dev/fuse request's reply,
// a notification).
template <typename Entry>
class RingInFlight {
 public:
  void Add(uint64_t unique, Entry* e) {
    std::lock_guard<std::mutex> lock(mu_);
    by_unique_[unique] = e;
  }
  // The entry the reply answers, forgotten here; null: the reply belongs to /dev/fuse.
  Entry* TakeFor(const struct iovec* iov, int count) {
    const uint64_t unique = ReplyUnique(iov, count);
    if (unique == 0) return nullptr;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = by_unique_.find(unique);
    if (it == by_unique_.end()) return nullptr;
    Entry* e = it->second;
    by_unique_.erase(it);
    return e;
  }
  size_t size() {
    std::lock_guard<std::mutex> lock(mu_);
    return by_unique_.size();
  }

 private:
  std::mutex mu_;
  std::unordered_map<uint64_t, Entry*> by_unique_;
};

// Where a ring request's reply goes when it arrives.
enum class RingReplyPath {
  kStage,         // the handler still runs and may read the request's payload (names, data), where the
                  // reply would be written: keep a copy, written in when the handler returned
  kCommitInline,  // written into the entry now; the queue thread, in the handler, commits it after
  kCommitWake,    // written into the entry now; the queue thread is woken to commit it
};
inline RingReplyPath ChooseRingReplyPath(bool handler_running, bool request_has_payload) {
  if (!handler_running) return RingReplyPath::kCommitWake;
  return request_has_payload ? RingReplyPath::kStage : RingReplyPath::kCommitInline;
}

}  // namespace hamirror::fs
