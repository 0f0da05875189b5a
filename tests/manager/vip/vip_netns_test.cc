// VIP add/remove/held and gratuitous ARP in a lab of namespaces (tests/support NetLab). Needs root.
// The client namespace pings the VIP and captures ARP with an AF_PACKET socket of its own.
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstring>
#include <future>
#include <thread>

#include "manager/vip/garp.h"
#include "manager/vip/vip.h"
#include "tests/support/netns.h"

namespace vip = hamirror::vip;
using hamirror::test::NetLab;
using hamirror::test::NetnsScope;
using namespace std::chrono_literals;

namespace {

constexpr const char* kVip = "198.18.0.50";

#define SKIP_UNLESS_ROOT()                            \
  if (!hamirror::test::IsRoot()) {                    \
    WARN("needs root (network namespaces): skipped"); \
    return;                                           \
  }

std::string MacString(const unsigned char* m) {
  char buf[18];
  std::snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
  return buf;
}

// Captures ARP packets announcing `ip` on the client's eth0.
class ArpCapture {
 public:
  struct Seen {
    int op;
    std::string sender_mac;
    std::chrono::steady_clock::time_point at;  // when Collect() read it: call Collect while packets arrive
  };
  ArpCapture(hamirror::test::NetNamespace& ns, const std::string& ip) {
    NetnsScope in(ns);
    inet_pton(AF_INET, ip.c_str(), &ip_);
    fd_ = socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_ARP));
    REQUIRE(fd_ >= 0);
    sockaddr_ll bind_to{};
    bind_to.sll_family = AF_PACKET;
    bind_to.sll_protocol = htons(ETH_P_ARP);
    bind_to.sll_ifindex = static_cast<int>(if_nametoindex("eth0"));
    REQUIRE(bind_to.sll_ifindex > 0);
    REQUIRE(bind(fd_, reinterpret_cast<sockaddr*>(&bind_to), sizeof(bind_to)) == 0);
  }
  ~ArpCapture() { close(fd_); }

  // Collects gratuitous packets (sender IP == target IP == ip) until `want` arrived or `timeout`.
  std::vector<Seen> Collect(size_t want, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (seen_.size() < want) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      unsigned char buf[64];
      const ssize_t n = recv(fd_, buf, sizeof(buf), MSG_DONTWAIT);
      if (n < 28) continue;
      if (std::memcmp(buf + 14, &ip_, 4) != 0 || std::memcmp(buf + 24, &ip_, 4) != 0) continue;
      seen_.push_back({buf[7], MacString(buf + 8), std::chrono::steady_clock::now()});
    }
    return seen_;
  }

 private:
  int fd_ = -1;
  in_addr ip_{};
  std::vector<Seen> seen_;
};

std::string NeighMac(NetLab& lab, const std::string& ip) {
  auto r = lab.client().Exec("ip neigh show " + ip + " dev eth0");
  const auto pos = r.output.find("lladdr ");
  return pos == std::string::npos ? "" : r.output.substr(pos + 7, 17);
}

}  // namespace

TEST_CASE("VIP: interface found by subnet, add, held, ping, remove", "[vip][netns]") {
  SKIP_UNLESS_ROOT();
  NetLab lab({.nodes = 2, .lans = 1});
  vip::VipAddress v;
  v.addr = kVip;
  {
    NetnsScope in(lab.node(1));
    std::string ifname;
    int prefix = 0;
    REQUIRE(vip::FindInterfaceForAddress(kVip, &ifname, &prefix).ok());
    CHECK(ifname == "eth0");
    CHECK(prefix == 24);
    CHECK_FALSE(vip::Held(v));
    const hamirror::Status s = vip::Add(v);
    REQUIRE(s.ok());
    CHECK(vip::Held(v));
    CHECK(vip::Add(v).ok());  // idempotent
  }
  auto shown = lab.node(1).Exec("ip -4 addr show dev eth0");
  INFO(shown.output);
  CHECK(shown.output.find("inet 198.18.0.50/24") != std::string::npos);
  CHECK(shown.output.find("eth0:hm") != std::string::npos);
  CHECK(lab.client().Exec("ping -c 1 -W 2 198.18.0.50").ok());
  CHECK(NeighMac(lab, kVip) == lab.NodeMac(1, 0));
  {
    NetnsScope in(lab.node(2));
    CHECK_FALSE(vip::Held(v));  // node 2 does not hold it
  }
  {
    NetnsScope in(lab.node(1));
    REQUIRE(vip::Remove(v).ok());
    CHECK_FALSE(vip::Held(v));
    CHECK(vip::Remove(v).ok());  // idempotent
  }
  CHECK(lab.node(1).Exec("ip -4 addr show dev eth0").output.find("198.18.0.50") == std::string::npos);
  CHECK(lab.node(1).Exec("ip -4 addr show dev eth0").output.find("198.18.0.11/24") != std::string::npos);
  CHECK_FALSE(lab.client().Exec("ping -c 1 -W 1 198.18.0.50").ok());
}

TEST_CASE("VIP: clear errors for unknown subnet, interface and address", "[vip][netns]") {
  SKIP_UNLESS_ROOT();
  NetLab lab({.nodes = 1, .lans = 1});
  NetnsScope in(lab.node(1));
  vip::VipAddress v;
  v.addr = "198.19.7.7";  // no interface in that subnet
  hamirror::Status s = vip::Add(v);
  CHECK(s.code() == hamirror::Status::Code::kNotFound);
  CHECK(s.message().find("198.19.7.7") != std::string::npos);
  v.interface = "nosuch0";
  s = vip::Add(v);
  CHECK(s.code() == hamirror::Status::Code::kNotFound);
  CHECK(s.message().find("nosuch0") != std::string::npos);
  v.addr = "not-an-ip";
  CHECK(vip::Add(v).code() == hamirror::Status::Code::kInvalidArgument);
  // A named interface outside the VIP's subnet gets a /32 (allowed, like `ip addr add x/32`).
  v.addr = "198.19.7.7";
  v.interface = "eth0";
  REQUIRE(vip::Add(v).ok());
  CHECK(vip::Held(v));
  CHECK(lab.node(1).Exec("ip -4 addr show dev eth0").output.find("198.19.7.7/32") != std::string::npos);
  REQUIRE(vip::Remove(v).ok());
  CHECK(vip::SendGratuitousArp("eth0", "2001:db8::1", 1, 0ms).code() ==
        hamirror::Status::Code::kInvalidArgument);
}

TEST_CASE("VIP takeover: gratuitous ARP moves the client's neighbour entry at once", "[vip][netns]") {
  SKIP_UNLESS_ROOT();
  NetLab lab({.nodes = 2, .lans = 1});
  vip::VipAddress v;
  v.addr = kVip;
  {
    NetnsScope in(lab.node(1));
    REQUIRE(vip::Add(v).ok());
  }
  REQUIRE(lab.client().Exec("ping -c 1 -W 2 198.18.0.50").ok());
  const std::string mac1 = lab.NodeMac(1, 0), mac2 = lab.NodeMac(2, 0);
  REQUIRE(NeighMac(lab, kVip) == mac1);

  // Failover: node 1 releases, node 2 takes the VIP and announces it.
  {
    NetnsScope in(lab.node(1));
    REQUIRE(vip::Remove(v).ok());
  }
  ArpCapture capture(lab.client(), kVip);
  // Collected concurrently so that arrival times are measured, not read-out times.
  auto collected = std::async(std::launch::async, [&] { return capture.Collect(6, 3s); });
  const auto t0 = std::chrono::steady_clock::now();
  {
    NetnsScope in(lab.node(2));
    REQUIRE(vip::Add(v).ok());
    REQUIRE(vip::SendGratuitousArp("eth0", kVip, 3, 100ms).ok());
  }
  const auto burst = std::chrono::steady_clock::now() - t0;
  CHECK(burst >= 200ms);  // 3 rounds, 2 gaps
  const auto seen = collected.get();
  REQUIRE(seen.size() == 6);  // request + reply per round
  int requests = 0;
  for (const auto& s : seen) {
    CHECK(s.sender_mac == mac2);
    requests += s.op == 1;
  }
  CHECK(requests == 3);
  const double spread = std::chrono::duration<double, std::milli>(seen.back().at - seen.front().at).count();
  std::printf("vip: 3 gratuitous ARP rounds observed over %.1f ms (100 ms interval)\n", spread);
  CHECK(spread >= 190);
  // The client learned the new MAC without sending anything itself.
  CHECK(NeighMac(lab, kVip) == mac2);
  CHECK(lab.client().Exec("ping -c 1 -W 2 198.18.0.50").ok());
  NetnsScope in(lab.node(2));
  CHECK(vip::Remove(v).ok());
}

TEST_CASE("GarpAnnouncer sends a burst and a later repeat, and stops on Cancel", "[vip][netns]") {
  SKIP_UNLESS_ROOT();
  NetLab lab({.nodes = 1, .lans = 1});
  vip::VipAddress v;
  v.addr = kVip;
  ArpCapture capture(lab.client(), kVip);
  vip::GarpAnnouncer announcer({.count = 2, .interval = 50ms, .repeat_count = 2, .repeat_after = 500ms});
  // The sender counts a round once its last packet is out, so the capture may see that packet first:
  // await the count (bounded) rather than read it at once.
  auto await_rounds = [&](uint64_t n) {
    const auto deadline = std::chrono::steady_clock::now() + 1s;
    while (announcer.rounds_sent() < n && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(1ms);  // poll interval
    }
    return announcer.rounds_sent();
  };
  const auto t0 = std::chrono::steady_clock::now();
  {
    NetnsScope in(lab.node(1));
    REQUIRE(vip::Add(v).ok());
    REQUIRE(announcer.Announce("eth0", kVip).ok());  // returns at once
  }
  CHECK(std::chrono::steady_clock::now() - t0 < 100ms);
  const auto seen = capture.Collect(8, 3s);
  REQUIRE(seen.size() == 8);
  // Second burst starts no earlier than repeat_after.
  CHECK(seen[4].at - seen[0].at >= 450ms);
  CHECK(seen[3].at - seen[0].at < 300ms);
  CHECK(await_rounds(4) == 4);

  // Cancel drops the pending repeat.
  {
    NetnsScope in(lab.node(1));
    REQUIRE(announcer.Announce("eth0", kVip).ok());
  }
  const auto more = capture.Collect(12, 2s);  // the 2 rounds of the first burst
  CHECK(more.size() == 12);
  CHECK(await_rounds(6) == 6);
  announcer.Cancel(kVip);
  const auto rounds = announcer.rounds_sent();
  std::this_thread::sleep_for(700ms);  // observation window past repeat_after: nothing more
  CHECK(announcer.rounds_sent() == rounds);
  CHECK(capture.Collect(13, 10ms).size() == 12);
  NetnsScope in(lab.node(1));
  CHECK(vip::Remove(v).ok());
}
