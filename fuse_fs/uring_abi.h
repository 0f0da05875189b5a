// The kernel's FUSE-over-io_uring interface (FUSE protocol 7.42, Linux 6.14+), declared here because the
// system's <linux/fuse.h> predates it. Layouts follow the kernel's uapi header; each size is checked.
#pragma once

#include <cstddef>
#include <cstdint>

namespace hamirror::fs::uring_abi {

// INIT flag (64-bit flag word: bit 41, i.e. bit 9 of flags2): the kernel offers the ring transport
// (module parameter enable_uring on); a daemon that sets it in its reply may register ring entries.
inline constexpr uint64_t kInitOverIoUring = uint64_t{1} << 41;

// Sizes of the two fixed areas at the start of an entry's header buffer.
inline constexpr size_t kInOutAreaSize = 128;  // fuse_in_header (request) / fuse_out_header (reply)
inline constexpr size_t kOpAreaSize = 128;     // the opcode's own argument struct (request only)

// Per-entry bookkeeping exchanged in both directions. Request: commit_id (the request's unique) and the
// number of payload bytes the kernel wrote. Reply: the number of payload bytes the daemon wrote.
struct EntInOut {
  uint64_t flags;
  uint64_t commit_id;
  uint32_t payload_sz;
  uint32_t padding;
  uint64_t reserved;
};
static_assert(sizeof(EntInOut) == 32);

// The header buffer of one ring entry (the first of its two registered iovecs).
struct ReqHeader {
  char in_out[kInOutAreaSize];
  char op_in[kOpAreaSize];
  EntInOut ent_in_out;
};
static_assert(sizeof(ReqHeader) == 288);
static_assert(offsetof(ReqHeader, op_in) == 128 && offsetof(ReqHeader, ent_in_out) == 256);

// IORING_OP_URING_CMD command numbers (sqe->cmd_op) on a /dev/fuse descriptor.
inline constexpr uint32_t kCmdRegister = 1;        // hand an entry's buffers over, wait for a request
inline constexpr uint32_t kCmdCommitAndFetch = 2;  // answer the entry's request, wait for the next one

// The command area of a 128-byte SQE (its last 80 bytes).
struct CmdReq {
  uint64_t flags;
  uint64_t commit_id;  // COMMIT_AND_FETCH: the unique of the request answered
  uint16_t qid;        // the queue (= possible CPU index) the entry belongs to
  uint8_t padding[6];
};
static_assert(sizeof(CmdReq) == 24);

// The kernel refuses a payload buffer below this (and below its max_write / max_pages limit).
inline constexpr size_t kMinReadBuffer = 8192;

}  // namespace hamirror::fs::uring_abi
