#include "manager/process/checkers.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

using namespace hamirror::process;
using namespace std::chrono_literals;

TEST_CASE("checkers: tcp up and down on loopback", "[process]") {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(listen(fd, 4) == 0);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  int port = ntohs(a.sin_port);
  std::string detail;
  CHECK(CheckTcp("127.0.0.1", port, 1000ms, &detail));
  close(fd);
  CHECK_FALSE(CheckTcp("127.0.0.1", port, 1000ms, &detail));
  CHECK(detail.find("refused") != std::string::npos);
  CHECK_FALSE(CheckTcp("not-an-address", port, 100ms, &detail));
}

TEST_CASE("checkers: ping and witness on loopback", "[process]") {
  CHECK(CheckPing("127.0.0.1", 1000ms));
  std::string detail;
  // An invalid name fails without sending anything (tests send traffic to loopback only).
  CHECK_FALSE(CheckPing("invalid..name", 1000ms));
  CHECK(CheckWitness({"invalid..name", "127.0.0.1"}, 1000ms, &detail));
  CHECK(detail == "127.0.0.1 reached");
  CHECK_FALSE(CheckWitness({}, 1000ms, &detail));
}

TEST_CASE("checkers: custom script exit status and timeout", "[process]") {
  std::string detail;
  CHECK(CheckCustom("/bin/sh", "-c true", {}, 2000ms, &detail));
  CHECK_FALSE(CheckCustom("/bin/false", "", {}, 2000ms, &detail));
  CHECK(detail == "exit 1");
  CHECK_FALSE(CheckCustom("/bin/sleep", "5", {}, 200ms, &detail));
  CHECK(detail == "timed out");
}
