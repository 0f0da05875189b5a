// hamirror-fs alone: a read-write passthrough that records what a future peer lacks.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "tests/fuse_fs/fs_fixture.h"

using namespace hamirror::test;
using namespace std::chrono_literals;

TEST_CASE("hamirror-fs alone: files reach the directory underneath, owned by their creator",
          "[fuse_fs][alone]") {
  TempDir tmp;
  std::string dir = tmp.Sub("d");
  chmod(tmp.path().c_str(), 0755);  // others may traverse to the mount
  mkdir(dir.c_str(), 0777);
  chmod(dir.c_str(), 0777);
  { std::ofstream(dir + "/before") << "old"; }
  int under = open(dir.c_str(), O_PATH | O_DIRECTORY);  // the real directory, reachable after mounting
  REQUIRE(under >= 0);
  FsProcess fs;
  REQUIRE(fs.Start(dir, tmp.Sub("c.sock"), {"alone"}, tmp.Sub("log")).ok());

  std::string s;
  { std::ifstream(dir + "/before") >> s; }
  REQUIRE(s == "old");  // what was there before the mount stays visible
  { std::ofstream(dir + "/new") << "fresh"; }
  // A non-root caller's file belongs to it.
  pid_t pid = fork();
  if (pid == 0) {
    if (setgid(65534) != 0 || setuid(65534) != 0) _exit(2);
    int fd = open((dir + "/nobody").c_str(), O_CREAT | O_WRONLY, 0640);
    _exit(fd >= 0 ? 0 : 1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);

  struct stat st;
  REQUIRE(fstatat(under, "nobody", &st, 0) == 0);
  REQUIRE(st.st_uid == 65534u);
  REQUIRE(st.st_gid == 65534u);
  REQUIRE((st.st_mode & 07777) == 0640);
  char buf[16] = {};
  int fd = openat(under, "new", O_RDONLY);
  REQUIRE(fd >= 0);
  REQUIRE(read(fd, buf, sizeof(buf)) == 5);
  close(fd);
  REQUIRE(std::string(buf) == "fresh");

  hamirror::proto::FsStatus status_msg;
  REQUIRE(fs.GetStatus(&status_msg).ok());
  REQUIRE(status_msg.role() == hamirror::proto::FS_ROLE_ALONE);
  REQUIRE(status_msg.pid() == static_cast<uint32_t>(fs.pid()));
  REQUIRE(status_msg.dirty_zones() > 0);
  REQUIRE(status_msg.namespace_dirty());

  REQUIRE(fs.Stop().ok());
  close(under);
}

TEST_CASE("hamirror-fs alone: a randomized workload runs and SIGTERM unmounts cleanly", "[fuse_fs][alone]") {
  TempDir tmp;
  std::string dir = tmp.Sub("d");
  mkdir(dir.c_str(), 0755);
  FsProcess fs;
  REQUIRE(fs.Start(dir, tmp.Sub("c.sock"), {"alone"}, tmp.Sub("log")).ok());
  std::string summary = RunRandomWorkload(dir, 42, 300);
  INFO(summary);
  REQUIRE(fs.Stop().ok());
}
