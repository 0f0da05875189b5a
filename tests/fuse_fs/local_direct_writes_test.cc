// LocalDirectWrites: which writes go direct, what reaches the file, the page cache left alone, and
// the contract when it declines.
#include "fuse_fs/local_direct_writes.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>

#include "common/unique_fd.h"
#include "tests/support/daemon.h"

using hamirror::UniqueFd;
using hamirror::fs::LocalDirectWrites;

namespace {

std::string Pattern(size_t n, char base) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(base + i % 23);
  return s;
}

std::string ReadBack(int fd, size_t n, off_t off) {
  std::string s(n, '\0');
  REQUIRE(pread(fd, s.data(), n, off) == static_cast<ssize_t>(n));
  return s;
}

// A scratch file on a file system that has a page cache to bypass and takes O_DIRECT (tmpfs has
// neither: the tests that need one have nothing to show there, and say so).
struct DirectScratch {
  hamirror::test::TempDir dir{"hamirror-ldw"};
  UniqueFd fd;
  bool Open() {
    struct statfs fs;
    UniqueFd probe(open(dir.Sub("probe").c_str(), O_CREAT | O_WRONLY | O_DIRECT | O_CLOEXEC, 0644));
    if (statfs(dir.path().c_str(), &fs) != 0 || fs.f_type == TMPFS_MAGIC || !probe) {
      WARN("skipped: " << dir.path() << " has no direct I/O to test");
      return false;
    }
    fd.Reset(open(dir.Sub("f").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644));
    REQUIRE(fd);
    return true;
  }
};

}  // namespace

TEST_CASE("LocalDirectWrites: a large aligned write reaches the file around the page cache", "[unit]") {
  DirectScratch scratch;
  if (!scratch.Open()) return;
  const int fd = scratch.fd.get();
  LocalDirectWrites writes(true, 2);
  const std::string data = Pattern(1 << 20, 'a');
  size_t done = 0;
  int err = -1;
  REQUIRE(writes.Write(fd, data.data(), data.size(), 4096, &done, &err));
  CHECK(err == 0);
  CHECK(done == data.size());
  // Not in the page cache: a read that must not wait for the disk finds nothing.
  std::string seen(data.size(), '\0');
  iovec iov{seen.data(), seen.size()};
  CHECK(preadv2(fd, &iov, 1, 4096, RWF_NOWAIT) == -1);
  CHECK(ReadBack(fd, data.size(), 4096) == data);
  CHECK(writes.enabled());
}

TEST_CASE("LocalDirectWrites: small, unaligned, oversized or switched off: declined, nothing written",
          "[unit]") {
  hamirror::test::TempDir dir("hamirror-ldw");
  UniqueFd fd(open(dir.Sub("f").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644));
  REQUIRE(fd);
  const std::string data = Pattern(2 << 20, 'k');
  LocalDirectWrites on(true, 2);
  LocalDirectWrites off(false, 2);
  size_t done = 7;
  int err = 7;
  CHECK_FALSE(on.Write(fd.get(), data.data(), LocalDirectWrites::kMinBytes - 4096, 0, &done, &err));
  CHECK_FALSE(on.Write(fd.get(), data.data(), 1 << 20, 512, &done, &err));        // offset
  CHECK_FALSE(on.Write(fd.get(), data.data(), (1 << 20) - 512, 0, &done, &err));  // length
  CHECK_FALSE(on.Write(fd.get(), data.data(), data.size(), 0, &done, &err));      // > 1 MiB
  CHECK_FALSE(off.Write(fd.get(), data.data(), 1 << 20, 0, &done, &err));
  CHECK(done == 7);
  CHECK(err == 7);
  struct stat st;
  REQUIRE(fstat(fd.get(), &st) == 0);
  CHECK(st.st_size == 0);
}

TEST_CASE("LocalDirectWrites: writes over cached data and cached reads after it stay coherent", "[unit]") {
  DirectScratch scratch;
  if (!scratch.Open()) return;
  const int fd = scratch.fd.get();
  // Dirty page-cache pages first, then a direct write over them, then a small buffered write.
  const std::string old_data = Pattern(1 << 20, 'A');
  REQUIRE(pwrite(fd, old_data.data(), old_data.size(), 0) == static_cast<ssize_t>(old_data.size()));
  CHECK(ReadBack(fd, 4096, 0) == old_data.substr(0, 4096));  // cached
  LocalDirectWrites writes(true, 1);
  const std::string data = Pattern(1 << 20, 'a');
  size_t done = 0;
  int err = -1;
  REQUIRE(writes.Write(fd, data.data(), data.size(), 0, &done, &err));
  REQUIRE(err == 0);
  REQUIRE(pwrite(fd, "tail", 4, 100) == 4);
  std::string expect = data;
  expect.replace(100, 4, "tail");
  CHECK(ReadBack(fd, expect.size(), 0) == expect);
  // The one buffer came back: a second write goes direct too.
  REQUIRE(writes.Write(fd, data.data(), data.size(), 1 << 20, &done, &err));
  CHECK(err == 0);
  CHECK(ReadBack(fd, data.size(), 1 << 20) == data);
}
