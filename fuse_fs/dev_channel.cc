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
std::atomic<UringTransport*> g_transport{nullptr};

size_t TotalLength(const struct iovec* iov, int count) {
  size_t total = 0;
  for (int i = 0; i < count; ++i) total += iov[i].iov_len;
  return total;
}

ssize_t ChannelRead(int fd, void* buf, size_t len, void* /*userdata*/) {
  ssize_t n = read(fd, buf, len);
  if (n > 0) {
    if (InitExtension* ext = g_extension.load(std::memory_order_acquire))
      ext->OnRequest(buf, static_cast<size_t>(n));
  }
  return n;
}

ssize_t ChannelWritev(int fd, struct iovec* iov, int count, void* /*userdata*/) {
  UringTransport* transport = g_transport.load(std::memory_order_acquire);
  // A reply to a request that came on the ring goes back through its ring entry.
  if (transport != nullptr && transport->TryReply(iov, count))
    return static_cast<ssize_t>(TotalLength(iov, count));
  InitExtension* ext = g_extension.load(std::memory_order_acquire);
  // Only the INIT reply is changed; it has two parts (header, argument).
  if (ext != nullptr && count == 2 && ext->granted() == 0) {
    alignas(8) std::array<char, InitExtension::kMaxInitOut> patched;
    if (size_t len = ext->PatchReply(iov, count, patched.data(), patched.size()); len != 0) {
      struct iovec out[2] = {iov[0], {patched.data(), len}};
      const ssize_t n = writev(fd, out, 2);
      // The kernel processed the INIT reply in that write: ring entries may be registered now.
      if (n >= 0 && transport != nullptr) transport->OnInitReplied(ext->granted());
      return n;
    }
  }
  return writev(fd, iov, count);
}

ssize_t ChannelSpliceSend(int fdin, off_t* offin, int fdout, off_t* offout, size_t len, unsigned int flags,
                          void* /*userdata*/) {
  // A ring request's reply cannot be spliced into /dev/fuse (Filesystem::Read avoids splice there; this
  // is the safety net).
  UringTransport* transport = g_transport.load(std::memory_order_acquire);
  if (transport != nullptr && HandlingRingRequest() && offin == nullptr && offout == nullptr)
    return transport->SpliceReplyFromPipe(fdin, len, fdout);
  return splice(fdin, offin, fdout, offout, len, flags);
}

}  // namespace

Status InstallDevChannel(fuse_session* se, InitExtension* ext, UringTransport* transport) {
  static const fuse_custom_io io = {.writev = ChannelWritev,
                                    .read = ChannelRead,
                                    .splice_receive = nullptr,
                                    .splice_send = ChannelSpliceSend};
  g_extension.store(ext, std::memory_order_release);
  g_transport.store(transport, std::memory_order_release);
  if (fuse_session_custom_io(se, &io, fuse_session_fd(se)) != 0)
    return Status::Internal("libfuse refused the custom /dev/fuse channel");
  return Status::Ok();
}

}  // namespace hamirror::fs
