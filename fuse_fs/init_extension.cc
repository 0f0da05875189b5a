#include "fuse_fs/init_extension.h"

#include <linux/fuse.h>

#include <algorithm>
#include <cstring>

namespace hamirror::fs {

void InitExtension::OnRequest(const void* buf, size_t len) {
  if (len < sizeof(fuse_in_header)) return;
  fuse_in_header in;
  memcpy(&in, buf, sizeof(in));
  if (in.opcode != FUSE_INIT || in.len > len) return;
  const size_t arg_len = in.len - sizeof(in);
  // The oldest INIT carries major, minor, max_readahead, flags; flags2 only with FUSE_INIT_EXT.
  if (arg_len < offsetof(fuse_init_in, flags2)) return;
  fuse_init_in init{};
  memcpy(&init, static_cast<const char*>(buf) + sizeof(in), std::min(arg_len, sizeof(init)));
  uint64_t offer = init.flags;
  if ((offer & FUSE_INIT_EXT) && arg_len >= offsetof(fuse_init_in, flags2) + sizeof(init.flags2))
    offer |= uint64_t{init.flags2} << 32;
  offered_.store(offer, std::memory_order_release);
  init_unique_.store(in.unique, std::memory_order_release);
}

size_t InitExtension::PatchReply(const struct iovec* iov, int count, void* patched, size_t patched_size) {
  const uint64_t unique = init_unique_.load(std::memory_order_acquire);
  if (unique == 0 || count < 2 || iov[0].iov_len < sizeof(fuse_out_header)) return 0;
  fuse_out_header out;
  memcpy(&out, iov[0].iov_base, sizeof(out));
  if (out.unique != unique) return 0;
  init_unique_.store(0, std::memory_order_release);  // the INIT is answered once
  const size_t arg_len = iov[1].iov_len;
  if (out.error != 0 || arg_len < offsetof(fuse_init_out, max_background) || arg_len > patched_size) return 0;
  fuse_init_out init{};
  memcpy(&init, iov[1].iov_base, std::min(arg_len, sizeof(init)));
  const uint64_t accept = wanted_ & offered_.load(std::memory_order_acquire);
  init.flags |= static_cast<uint32_t>(accept & 0xffffffffu);
  const uint64_t accept2 = accept >> 32;
  // flags2 is read by the kernel only from a reply long enough to hold it and with FUSE_INIT_EXT set.
  if (accept2 != 0 && arg_len >= offsetof(fuse_init_out, flags2) + sizeof(init.flags2)) {
    init.flags2 |= static_cast<uint32_t>(accept2);
    init.flags |= FUSE_INIT_EXT;
  }
  memcpy(patched, iov[1].iov_base, arg_len);
  memcpy(patched, &init, std::min(arg_len, sizeof(init)));
  granted_.store(wanted_ & (uint64_t{init.flags} | uint64_t{init.flags2} << 32), std::memory_order_release);
  return arg_len;
}

}  // namespace hamirror::fs
