// hamirror-fs refuses bad starts with a clear message and a non-zero exit status.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>

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

TEST_CASE("hamirror-fs: directory is a dead hamirror mount", "[fuse_fs][cli]") {
  TempDir tmp;
  mkdir(tmp.Sub("d").c_str(), 0755);
  Daemon d;
  REQUIRE(
      d.Start({FsBinary(), "alone", "--dir", tmp.Sub("d"), "--control", tmp.Sub("c.sock")}, tmp.Sub("log"))
          .ok());
  REQUIRE(WaitForMount(tmp.Sub("d"), d.pid(), 20s).ok());
  d.Kill();  // SIGKILL: the mount stays, dead ("transport endpoint is not connected")
  ExpectFailure({"alone", "--dir", tmp.Sub("d"), "--control", tmp.Sub("c2.sock")}, "umount -l");
  REQUIRE(Unmount(tmp.Sub("d")).ok());
}
