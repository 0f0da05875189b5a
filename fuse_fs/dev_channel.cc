#include "fuse_fs/dev_channel.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstring>

namespace hamirror::fs {
namespace {

// libfuse hands its callbacks the session's userdata (the Filesystem), not ours: one channel per
// process, so the extension is reached through this pointer.
std::atomic<InitExtension*> g_extension{nullptr};

ssize_t ChannelRead(int fd, void* buf, size_t len, void* /*userdata*/) {
  ssize_t n = read(fd, buf, len);
  if (n > 0) {
    if (InitExtension* ext = g_extension.load(std::memory_order_acquire))
      ext->OnRequest(buf, static_cast<size_t>(n));
  }
  return n;
}

ssize_t ChannelWritev(int fd, struct iovec* iov, int count, void* /*userdata*/) {
  InitExtension* ext = g_extension.load(std::memory_order_acquire);
  // Only the INIT reply is changed; it has two parts (header, argument).
  if (ext != nullptr && count == 2 && ext->granted() == 0) {
    alignas(8) std::array<char, InitExtension::kMaxInitOut> patched;
    if (size_t len = ext->PatchReply(iov, count, patched.data(), patched.size()); len != 0) {
      struct iovec out[2] = {iov[0], {patched.data(), len}};
      return writev(fd, out, 2);
    }
  }
  return writev(fd, iov, count);
}

ssize_t ChannelSpliceSend(int fdin, off_t* offin, int fdout, off_t* offout, size_t len, unsigned int flags,
                          void* /*userdata*/) {
  return splice(fdin, offin, fdout, offout, len, flags);
}

}  // namespace

Status InstallDevChannel(fuse_session* se, InitExtension* ext) {
  static const fuse_custom_io io = {.writev = ChannelWritev,
                                    .read = ChannelRead,
                                    .splice_receive = nullptr,
                                    .splice_send = ChannelSpliceSend};
  g_extension.store(ext, std::memory_order_release);
  if (fuse_session_custom_io(se, &io, fuse_session_fd(se)) != 0)
    return Status::Internal("libfuse refused the custom /dev/fuse channel");
  return Status::Ok();
}

}  // namespace hamirror::fs
