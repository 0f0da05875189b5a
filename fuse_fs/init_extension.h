// InitExtension: asks the kernel, in FUSE's INIT handshake, for features libfuse 3.14 does not know.
//
// libfuse 3.14 answers INIT itself and only sets the flags it knows. The kernel offers more (this
// machine's 6.x: HANDLE_KILLPRIV_V2, DIRECT_IO_ALLOW_MMAP, ...). With the session's /dev/fuse traffic
// routed through our own read/writev (dev_channel.h), this class looks at the INIT request as it is
// read (what the kernel offers) and extends libfuse's INIT reply as it is written (what we accept).
// A flag is only ever accepted when the kernel offered it. Pure byte handling: no I/O, testable with
// buffers; a short or malformed request or reply is left alone.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace hamirror::fs {

// Flags of the 64-bit INIT flag word (flags | flags2 << 32), as in the kernel's uapi header.
inline constexpr uint64_t kInitHandleKillprivV2 = uint64_t{1} << 28;
inline constexpr uint64_t kInitExt = uint64_t{1} << 30;  // flags2 present
inline constexpr uint64_t kInitDirectIoAllowMmap = uint64_t{1} << 36;

class InitExtension {
 public:
  // wanted: flags to accept when the kernel offers them.
  explicit InitExtension(uint64_t wanted) : wanted_(wanted) {}

  // A request just read from /dev/fuse (len bytes): an INIT is remembered (its unique, the offer).
  void OnRequest(const void* buf, size_t len);

  // A reply about to be written (iov[0] the out header, iov[1] the argument). If it is the successful
  // answer to the INIT seen, copies the argument into patched (at least patched_size bytes of room,
  // kMaxInitOut suffices) with the accepted flags set, and returns its length; 0 otherwise (write the
  // reply as it is).
  size_t PatchReply(const struct iovec* iov, int count, void* patched, size_t patched_size);
  static constexpr size_t kMaxInitOut = 256;

  uint64_t offered() const { return offered_.load(std::memory_order_acquire); }
  // Wanted flags the kernel offered: what the INIT reply will carry (known once INIT was read).
  uint64_t accepted() const { return wanted_ & offered(); }
  // Wanted flags that the INIT reply which went out carries (0 before it).
  uint64_t granted() const { return granted_.load(std::memory_order_acquire); }

 private:
  const uint64_t wanted_;
  std::atomic<uint64_t> init_unique_{0};
  std::atomic<uint64_t> offered_{0};
  std::atomic<uint64_t> granted_{0};
};

}  // namespace hamirror::fs
