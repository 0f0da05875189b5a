#include "fuse_fs/local_direct_writes.h"

#include <fcntl.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/log.h"
#include "common/proc_path.h"
#include "common/unique_fd.h"
#include "replicator/direct_writer.h"

namespace hamirror::fs {

LocalDirectWrites::LocalDirectWrites(bool enabled, size_t buffers)
    : enabled_(enabled), max_buffers_(buffers < 1 ? 1 : buffers) {}

LocalDirectWrites::~LocalDirectWrites() {
  for (char* b : all_) std::free(b);
}

bool LocalDirectWrites::Write(int fd, const char* data, size_t size, uint64_t offset, size_t* done,
                              int* err) {
  if (!enabled() || size < kMinBytes || size > kBufferBytes || size % kAlign != 0 || offset % kAlign != 0)
    return false;
  char* buffer = Acquire();
  if (buffer == nullptr) return false;
  UniqueFd direct(open(ProcPath(fd).buf, O_WRONLY | O_DIRECT | O_CLOEXEC));
  if (!direct) {
    // EINVAL: this file system has no direct I/O. Anything else (out of descriptors...): this once.
    if (errno == EINVAL) Disable("open with O_DIRECT", errno);
    Release(buffer);
    return false;
  }
  memcpy(buffer, data, size);
  bool refused = false;
  *err = replicator::WriteAligned(direct.get(), buffer, size, offset, &refused, done);
  Release(buffer);
  if (refused) Disable("a direct write", EINVAL);
  return true;
}

char* LocalDirectWrites::Acquire() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!free_.empty()) {
    char* b = free_.back();
    free_.pop_back();
    return b;
  }
  if (all_.size() >= max_buffers_) return nullptr;
  char* b = static_cast<char*>(std::aligned_alloc(kAlign, kBufferBytes));
  if (b != nullptr) all_.push_back(b);
  return b;
}

void LocalDirectWrites::Release(char* buffer) {
  std::lock_guard<std::mutex> lock(mu_);
  free_.push_back(buffer);
}

void LocalDirectWrites::Disable(const char* what, int err) {
  if (enabled_.exchange(false, std::memory_order_relaxed))
    HLOG_INFO("large writes go through this node's page cache from now on: %s failed (%s)", what,
              strerror(err));
}

}  // namespace hamirror::fs
