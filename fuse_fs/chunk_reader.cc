#include "fuse_fs/chunk_reader.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <new>

#include "common/proc_path.h"

namespace hamirror::fs {

namespace {

constexpr size_t kAlign = 4096;  // enough for any logical block size and memory alignment asked

// cachestat(2) (Linux 6.5; no glibc wrapper in Debian 12): 1 when every page of [off, off+len) is in
// the page cache, 0 when some is not, -1 when the kernel cannot tell.
int WhollyCached(int fd, uint64_t off, size_t len) {
#ifndef SYS_cachestat
  constexpr long SYS_cachestat = 451;  // the same number on every architecture
#endif
  static std::atomic<bool> unsupported{false};  // ENOSYS once: not asked again (any worker thread)
  if (unsupported.load(std::memory_order_relaxed)) return -1;
  struct {
    uint64_t off, len;
  } range{off, len};
  struct {
    uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
  } cs{};
  if (syscall(SYS_cachestat, fd, &range, &cs, 0) != 0) {
    if (errno == ENOSYS) unsupported.store(true, std::memory_order_relaxed);
    return -1;
  }
  const uint64_t first = off / kAlign, last = (off + len + kAlign - 1) / kAlign;
  return cs.nr_cache >= last - first ? 1 : 0;
}

}  // namespace

void ChunkReader::FreeDeleter::operator()(char* p) const { std::free(p); }

ChunkReader::ChunkReader(size_t capacity) : capacity_((capacity + kAlign - 1) / kAlign * kAlign) {
  buf_.reset(static_cast<char*>(std::aligned_alloc(kAlign, capacity_)));
  if (!buf_) throw std::bad_alloc();
}

void ChunkReader::Open(int fd) {
  Close();
  fd_ = fd;
}

void ChunkReader::Close() {
  fd_ = -1;
  direct_fd_.Reset();
  direct_ok_ = true;
}

bool ChunkReader::WantDirect(uint64_t off, size_t len) {
  if (!direct_ok_ || off % kAlign != 0) return false;
  if (WhollyCached(fd_, off, len) == 1) return false;
  if (!direct_fd_) {
    direct_fd_.Reset(open(ProcPath(fd_).buf, O_RDONLY | O_DIRECT | O_CLOEXEC | O_NOATIME));
    if (!direct_fd_) direct_fd_.Reset(open(ProcPath(fd_).buf, O_RDONLY | O_DIRECT | O_CLOEXEC));
    if (!direct_fd_) direct_ok_ = false;
  }
  return direct_ok_;
}

ssize_t ChunkReader::Read(uint64_t off, size_t len) {
  if (len > capacity_) len = capacity_;
  if (WantDirect(off, len)) {
    // The length rounded up to the alignment (the buffer has room): the read stops at the end of the
    // file anyway, and a file grown meanwhile gives no more than asked.
    const size_t aligned = (len + kAlign - 1) / kAlign * kAlign;
    ssize_t n;
    do {
      n = pread(direct_fd_.get(), buf_.get(), aligned, static_cast<off_t>(off));
    } while (n < 0 && errno == EINTR);
    if (n >= 0) {
      ++direct_reads_;
      return n > static_cast<ssize_t>(len) ? static_cast<ssize_t>(len) : n;
    }
    if (errno != EINVAL) return -errno;
    direct_ok_ = false;  // this file system wants another alignment, or no O_DIRECT: the page cache
  }
  ssize_t n;
  do {
    n = pread(fd_, buf_.get(), len, static_cast<off_t>(off));
  } while (n < 0 && errno == EINTR);
  if (n < 0) return -errno;
  ++buffered_reads_;
  return n;
}

}  // namespace hamirror::fs
