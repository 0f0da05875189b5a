// The secondary gives back the disk space of files the primary deleted, even after a local reader
// looked them up through its mount (a backup reading the secondary copy): its hamirror-fs tells the
// kernel to drop the dead entries, so the O_PATH handles it keeps for them close.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/fuse_fs/fs_fixture.h"

using namespace hamirror::test;
using namespace std::chrono_literals;

namespace {

// Descriptors of process pid that point at a deleted file.
int DeletedFds(pid_t pid) {
  int n = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
    char buf[4096];
    ssize_t len = readlink(e.path().c_str(), buf, sizeof(buf) - 1);
    if (len <= 0) continue;
    buf[len] = '\0';
    if (std::string(buf).find(" (deleted)") != std::string::npos) ++n;
  }
  return n;
}

}  // namespace

TEST_CASE("secondary: a file deleted on the primary does not keep its space after a local read",
          "[fuse_fs][replication]") {
  TempDir tmp;
  const std::string a = tmp.Sub("a"), b = tmp.Sub("b");
  REQUIRE(mkdir(a.c_str(), 0755) == 0);
  REQUIRE(mkdir(b.c_str(), 0755) == 0);
  const std::string addr = "127.0.0.1:" + std::to_string(PickFreePort());
  FsProcess secondary, primary;
  REQUIRE(
      secondary.Start(b, tmp.Sub("s.sock"), {"secondary", "--listen", addr, "--insecure"}, tmp.Sub("s.log"))
          .ok());
  REQUIRE(
      primary.Start(a, tmp.Sub("p.sock"), {"primary", "--peer", addr, "--insecure"}, tmp.Sub("p.log")).ok());
  hamirror::proto::FsStatus st;
  REQUIRE(WaitUntil([&] { return primary.GetStatus(&st).ok() && st.in_sync(); }, 20s));

  {
    std::ofstream out(a + "/big", std::ios::binary);
    std::string block(1 << 20, 'x');
    for (int i = 0; i < 8; ++i) out.write(block.data(), static_cast<std::streamsize>(block.size()));
  }
  REQUIRE(std::filesystem::file_size(a + "/big") == 8u << 20);
  {
    // A local reader of the secondary copy: the kernel looks the file up through the mount.
    std::ifstream in(b + "/big", std::ios::binary);
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    REQUIRE(data.size() == 8u << 20);
  }
  REQUIRE(std::filesystem::remove(a + "/big"));
  // The unlink is replicated synchronously; the secondary then drops the kernel's entry.
  INFO(secondary.LogTail());
  CHECK(WaitUntil([&] { return DeletedFds(secondary.pid()) == 0; }, 5s));
  CHECK(DeletedFds(secondary.pid()) == 0);
}
