// LocalDirectWrites: a primary's large aligned writes reach its backing files with O_DIRECT, around
// this node's page cache, as the secondary applies them (replicator/direct_writer.h) and as DRBD
// writes both copies.
//
// Why: through the page cache, the daemon's pwrite of a 1 MiB write copies it into fresh page-cache
// pages (a third of the primary's CPU under sequential writes: docs/benchmarks.md), pages that only
// duplicate what the mount's own page cache holds; the disk gets the same bytes either way. A
// request's payload sits in libfuse's buffer behind its header, at an address no disk accepts for
// direct I/O, so it is copied into an aligned buffer of a small pool first (a reused, warm buffer).
// When no buffer is free the write goes through the page cache: a write never waits for a buffer.
//
// The kernel keeps the page cache of the backing file coherent (a direct write flushes and drops the
// cached pages it covers), so buffered reads, writes and flushes of the same file stay correct; the
// caller orders writes of one file as before (Filesystem holds the inode's data_mu).
//
// Thread-safe.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

namespace hamirror::fs {

class LocalDirectWrites {
 public:
  static constexpr size_t kMinBytes = 256 << 10;   // smaller writes: the page cache is cheaper
  static constexpr size_t kAlign = 4096;           // offset, length and memory: enough for any disk
  static constexpr size_t kBufferBytes = 1 << 20;  // the largest FUSE write (max_write)

  // enabled false: Write() always declines. buffers: the most writes in flight at once this way.
  LocalDirectWrites(bool enabled, size_t buffers);
  ~LocalDirectWrites();
  LocalDirectWrites(const LocalDirectWrites&) = delete;
  LocalDirectWrites& operator=(const LocalDirectWrites&) = delete;

  // Writes size bytes of data at offset through a descriptor reopened from fd with O_DIRECT. Returns
  // false, having written nothing, when it declines: off, too small or unaligned, no buffer free, or
  // the file cannot be reopened (with EINVAL, no direct I/O there: direct writes then stop, with a
  // log line); the caller writes through the page cache. Otherwise true, with PwriteAll's contract:
  // *err 0 (all written) or the errno that stopped it, *done the bytes written. A file system that
  // refuses a direct write gets that write through the page cache and no direct write after it.
  bool Write(int fd, const char* data, size_t size, uint64_t offset, size_t* done, int* err);

  bool enabled() const { return enabled_.load(std::memory_order_relaxed); }

 private:
  char* Acquire();  // nullptr: none free
  void Release(char* buffer);
  void Disable(const char* what, int err);

  std::atomic<bool> enabled_;
  const size_t max_buffers_;
  std::mutex mu_;
  std::vector<char*> free_;
  std::vector<char*> all_;  // every buffer allocated (on first use), freed by the destructor
};

}  // namespace hamirror::fs
