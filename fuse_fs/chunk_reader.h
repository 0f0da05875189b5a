// ChunkReader: reads a file's chunks for the resync, around the page cache where they are not in it.
//
// A resync reads every byte it compares or sends once. Through the page cache each 4 KiB of a cold
// file costs a page allocation and a copy (here 0.66 s of CPU per GiB, against 0.06 s with O_DIRECT:
// the copy went to the vCPUs the resync shares with the peer), and the bulk read would evict the
// database's hot pages. So a range wholly in the page cache (cachestat(2)) is read from it, and any
// other aligned range with O_DIRECT into an aligned buffer. An O_DIRECT read sees the page cache's
// dirty pages (the kernel writes the range back first), so both give the file's current bytes. Where
// cachestat is missing (Linux < 6.5) aligned ranges are read with O_DIRECT; where the file system
// refuses O_DIRECT (tmpfs), every read goes through the page cache.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "common/unique_fd.h"

namespace hamirror::fs {

class ChunkReader {
 public:
  explicit ChunkReader(size_t capacity);  // the most one Read() returns (rounded up to 4 KiB)

  // The file to read: fd (buffered reads) is not owned and must stay open until Close(); an O_DIRECT
  // descriptor of the same file is opened on first need.
  void Open(int fd);
  void Close();

  // Reads up to len (<= capacity) bytes at off into data(): bytes read (0 at the end) or -errno.
  ssize_t Read(uint64_t off, size_t len);
  const char* data() const { return buf_.get(); }
  size_t capacity() const { return capacity_; }

  uint64_t direct_reads() const { return direct_reads_; }
  uint64_t buffered_reads() const { return buffered_reads_; }

 private:
  struct FreeDeleter {
    void operator()(char* p) const;
  };
  bool WantDirect(uint64_t off, size_t len);

  const size_t capacity_;
  std::unique_ptr<char, FreeDeleter> buf_;
  int fd_ = -1;
  UniqueFd direct_fd_;
  bool direct_ok_ = true;  // false once this file (or file system) refused O_DIRECT
  uint64_t direct_reads_ = 0;
  uint64_t buffered_reads_ = 0;
};

}  // namespace hamirror::fs
