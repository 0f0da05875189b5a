// ChunkReader on a file of /var/tmp: cold ranges read with O_DIRECT, cached ones from the page cache,
// dirty pages seen by both, the end of the file, unaligned offsets.
#include "fuse_fs/chunk_reader.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>

#include "common/unique_fd.h"

using hamirror::UniqueFd;
using hamirror::fs::ChunkReader;

namespace {

std::string Pattern(size_t size, char seed) {
  std::string data(size, '\0');
  for (size_t i = 0; i < size; ++i) data[i] = static_cast<char>(seed + i % 251);
  return data;
}

// A file of `data` on disk with none of it left in the page cache.
struct ColdFile {
  explicit ColdFile(const std::string& data) {
    char tmpl[] = "/var/tmp/hamirror-chunk-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    dir = tmpl;
    path = dir + "/f";
    fd.Reset(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    REQUIRE(fd);
    REQUIRE(pwrite(fd.get(), data.data(), data.size(), 0) == static_cast<ssize_t>(data.size()));
    Evict();
  }
  ~ColdFile() {
    fd.Reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  void Evict() {
    REQUIRE(fsync(fd.get()) == 0);
    REQUIRE(posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED) == 0);
  }
  std::string dir, path;
  UniqueFd fd;
};

std::string Got(const ChunkReader& r, ssize_t n) {
  REQUIRE(n >= 0);
  return std::string(r.data(), static_cast<size_t>(n));
}

bool CachestatWorks(int fd) {
  struct {
    uint64_t off, len;
  } range{0, 4096};
  uint64_t cs[5];
  return syscall(451, fd, &range, cs, 0) == 0;
}

}  // namespace

TEST_CASE("chunk reader: cold ranges directly, cached ranges from the page cache, same bytes",
          "[chunk_reader]") {
  const std::string data = Pattern((3 << 20) + 100, 'c');
  ColdFile file(data);
  ChunkReader reader(1 << 20);
  reader.Open(file.fd.get());
  CHECK(Got(reader, reader.Read(0, 1 << 20)) == data.substr(0, 1 << 20));
  // The end: 100 bytes of a chunk asked whole; past the end, nothing.
  CHECK(Got(reader, reader.Read(3 << 20, 1 << 20)) == data.substr(3 << 20));
  CHECK(reader.Read(4 << 20, 1 << 20) == 0);
  // Unaligned: through the page cache.
  CHECK(Got(reader, reader.Read(1000, 5000)) == data.substr(1000, 5000));
  UniqueFd probe(open(file.path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC));
  if (!probe) {
    WARN("this file system refuses O_DIRECT: every read went through the page cache");
    CHECK(reader.direct_reads() == 0);
    return;
  }
  CHECK(reader.direct_reads() == 3);  // the first chunk, the end, past the end
  CHECK(reader.buffered_reads() == 1);
  // A chunk wholly in the page cache is read from it (where the kernel can tell: cachestat).
  std::string warm(1 << 20, '\0');
  REQUIRE(pread(file.fd.get(), warm.data(), warm.size(), 1 << 20) == static_cast<ssize_t>(warm.size()));
  const uint64_t direct_before = reader.direct_reads();
  CHECK(Got(reader, reader.Read(1 << 20, 1 << 20)) == data.substr(1 << 20, 1 << 20));
  if (CachestatWorks(file.fd.get())) {
    CHECK(reader.direct_reads() == direct_before);
  } else {
    WARN("no cachestat(2) in this kernel: cached chunks are read directly too");
  }
  reader.Close();
}

TEST_CASE("chunk reader: a direct read sees what is still dirty in the page cache", "[chunk_reader]") {
  const std::string data = Pattern(2 << 20, 'd');
  ColdFile file(data);
  // Written through the page cache and not flushed: 4 KiB dirty in a chunk otherwise cold.
  const std::string fresh(4096, '!');
  REQUIRE(pwrite(file.fd.get(), fresh.data(), fresh.size(), 8192) == 4096);
  ChunkReader reader(1 << 20);
  reader.Open(file.fd.get());
  std::string expect = data.substr(0, 1 << 20);
  expect.replace(8192, 4096, fresh);
  CHECK(Got(reader, reader.Read(0, 1 << 20)) == expect);
  UniqueFd probe(open(file.path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC));
  if (probe) CHECK(reader.direct_reads() == 1);
  // A length not a multiple of 4 KiB (read rounded up directly): no more than asked.
  CHECK(reader.Read(1 << 20, 5000) == 5000);
  CHECK(Got(reader, 5000) == data.substr(1 << 20, 5000));
  reader.Close();
}
