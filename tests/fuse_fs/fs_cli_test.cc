// hamirror-fs refuses bad starts with a clear message and a non-zero exit status.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <thread>

#include "common/fuse_mount.h"
#include "tests/fuse_fs/fs_fixture.h"

using namespace hamirror::test;
using namespace std::chrono_literals;

namespace {
void ExpectFailure(const std::vector<std::string>& args, const std::string& expect) {
  std::vector<std::string> argv = {FsBinary()};
  argv.insert(argv.end(), args.begin(), args.end());
  int code = 0;
  std::string out;
  REQUIRE(RunCommand(argv, 20s, &code, &out).ok());
  INFO("output: " << out);
  REQUIRE(code != 0);
  REQUIRE(out.find(expect) != std::string::npos);
}
}  // namespace

TEST_CASE("hamirror-fs: missing directory", "[fuse_fs][cli]") {
  TempDir tmp;
  ExpectFailure({"alone", "--dir", tmp.Sub("missing"), "--control", tmp.Sub("c.sock")}, "does not exist");
}

TEST_CASE("hamirror-fs: bad flags", "[fuse_fs][cli]") {
  TempDir tmp;
  ExpectFailure({"primary", "--dir", tmp.path()}, "--peer");
  ExpectFailure({"secondary", "--dir", tmp.path()}, "--listen");
  ExpectFailure({"sideways", "--dir", tmp.path()}, "subcommand");
  ExpectFailure({}, "subcommand");
  ExpectFailure({"primary", "--dir", tmp.path(), "--peer", "127.0.0.1:1", "--send-timeout-ms", "-3"},
                "--send-timeout-ms");
  ExpectFailure({"primary", "--dir", tmp.path(), "--peer", "127.0.0.1:1", "--tls-cert", "/nonexistent.pem"},
                "--tls-cert");
  ExpectFailure({"primary", "--dir", tmp.path(), "--peer", "nonsense-without-port"}, "nonsense-without-port");
}

TEST_CASE("hamirror-fs: directory already a hamirror mount", "[fuse_fs][cli]") {
  TempDir tmp;
  mkdir(tmp.Sub("d").c_str(), 0755);
  FsProcess fs;
  REQUIRE(fs.Start(tmp.Sub("d"), tmp.Sub("c1.sock"), {"alone"}, tmp.Sub("log1")).ok());
  ExpectFailure({"alone", "--dir", tmp.Sub("d"), "--control", tmp.Sub("c2.sock")},
                "already a hamirror mount");
  // The first daemon is unharmed.
  hamirror::proto::FsStatus st;
  REQUIRE(fs.GetStatus(&st).ok());
  REQUIRE(st.pid() == static_cast<uint32_t>(fs.pid()));
  REQUIRE(fs.Stop().ok());
}

TEST_CASE("hamirror-fs: listen address in use", "[fuse_fs][cli]") {
  TempDir tmp;
  int sock = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(sock >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  REQUIRE(bind(sock, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  REQUIRE(listen(sock, 1) == 0);
  REQUIRE(getsockname(sock, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  std::string listen_addr = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  ExpectFailure({"secondary", "--dir", tmp.path(), "--listen", listen_addr, "--control", tmp.Sub("c.sock")},
                "in use");
  close(sock);
  REQUIRE(!IsMountedAs(tmp.path()));
}

TEST_CASE("hamirror-fs: a dead hamirror mount (hamirror-fs killed) is cleaned at the next start",
          "[fuse_fs][cli]") {
  // Alone (like a primary) the kernel caches the root's attributes for a day: stat() of the dead mount
  // may still succeed from that cache, which made the old check refuse "already a hamirror mount" in
  // most tries. Every restart on the dead mount must succeed.
  TempDir tmp;
  const std::string dir = tmp.Sub("d");
  mkdir(dir.c_str(), 0755);
  for (int round = 0; round < 5; ++round) {
    INFO("round " << round);
    Daemon d;
    REQUIRE(d.Start({FsBinary(), "alone", "--dir", dir, "--control", tmp.Sub("c.sock")},
                    tmp.Sub("log" + std::to_string(round)))
                .ok());
    // Live once statfs() is answered by a FUSE daemon (mountinfo lists the dead mount as well).
    bool live = false;
    for (int i = 0; i < 400 && !live && !d.Exited(); ++i) {
      struct statfs sfs;
      live = statfs(dir.c_str(), &sfs) == 0 && static_cast<long>(sfs.f_type) == hamirror::kFuseSuperMagic;
      if (!live) std::this_thread::sleep_for(50ms);
    }
    INFO(d.LogTail());
    REQUIRE(live);
    const std::string file = dir + "/round-" + std::to_string(round);
    {
      std::ofstream out(file);
      out << round;
    }
    struct stat st;
    REQUIRE(stat(dir.c_str(), &st) == 0);
    REQUIRE(stat(file.c_str(), &st) == 0);
    d.Kill();  // SIGKILL: the mount stays, dead ("transport endpoint is not connected")
    struct statfs sfs;
    REQUIRE(statfs(dir.c_str(), &sfs) != 0);
    INFO("statfs: " << strerror(errno));
    REQUIRE(hamirror::DeadMountErrno(errno));  // ENOTCONN; ECONNABORTED over io_uring
  }
  REQUIRE(Unmount(dir).ok());
  // Every round's file is in the directory itself.
  for (int round = 0; round < 5; ++round) {
    struct stat st;
    CHECK(stat((dir + "/round-" + std::to_string(round)).c_str(), &st) == 0);
  }
}
