// Two heartbeat services in two node namespaces joined by two lans (tests/support NetLab). Needs root.
// The peer is lost only when BOTH networks are silent, within timeout (± one pulse) of the cut.
#include <catch2/catch.hpp>
#include <csignal>
#include <cstdio>
#include <thread>

#include "manager/heartbeat/heartbeat_service.h"
#include "tests/manager/heartbeat/recording_listener.h"
#include "tests/support/netns.h"

namespace hb = hamirror::heartbeat;
using hamirror::test::NetLab;
using hamirror::test::NetnsScope;
using namespace std::chrono_literals;
using What = hb::testing::RecordingListener::What;

namespace {

constexpr auto kPulse = 100ms;
constexpr auto kTimeout = 1000ms;

hb::HeartbeatConfig Config(int me, int peer) {
  hb::HeartbeatConfig c;
  c.cluster_id = hb::ComputeClusterId("<cluster/>", "netns");
  c.key = hb::HeartbeatKey::DeriveFromConfig("<cluster/>", "netns");
  c.local_node = "node" + std::to_string(me);
  c.peer_node = "node" + std::to_string(peer);
  for (int lan = 0; lan < 2; ++lan) {
    c.networks.push_back({"lan" + std::to_string(lan), NetLab::NodeAddr(me, lan), NetLab::NodeAddr(peer, lan),
                          hb::kDefaultHeartbeatPort});
  }
  c.pulse = kPulse;
  c.timeout = kTimeout;
  return c;
}

double Ms(hb::Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// Starts a heartbeat service inside a node's namespace (its sockets stay bound there).
void StartIn(const hamirror::test::NetNamespace& ns, hb::HeartbeatService& service) {
  NetnsScope in(ns);
  REQUIRE(service.Start().ok());
}

}  // namespace

TEST_CASE("peer lost only when all heartbeat networks are silent", "[heartbeat][netns]") {
  if (!hamirror::test::IsRoot()) {
    WARN("needs root (network namespaces): skipped");
    return;
  }
  NetLab lab({.nodes = 2, .lans = 2});
  hb::testing::RecordingListener l1, l2;
  hb::HeartbeatService s1(Config(1, 2), &l1);
  hb::HeartbeatService s2(Config(2, 1), &l2);
  StartIn(lab.node(1), s1);
  StartIn(lab.node(2), s2);
  // Both networks up on both sides.
  for (auto* l : {&l1, &l2}) {
    REQUIRE(l->WaitFor(0, What::kPeerAlive, 3s) >= 0);
    for (size_t net : {0u, 1u}) {
      REQUIRE(l->WaitFor(
                  0, [net](const auto& e) { return e.what == What::kNetworkUp && e.network == net; }, 3s) >=
              0);
    }
  }

  // Cut lan0 of node 2: node 1 sees lan0 go down but keeps the peer.
  size_t mark = l1.size();
  lab.CutLink(2, 0);
  REQUIRE(l1.WaitFor(
              mark, [](const auto& e) { return e.what == What::kNetworkDown && e.network == 0; },
              kTimeout + 1s) >= 0);
  std::this_thread::sleep_for(kTimeout + 2 * kPulse);  // observation window: the loss must NOT come
  CHECK(l1.Count(mark, What::kPeerLost) == 0);
  CHECK(l2.Count(mark, What::kPeerLost) == 0);
  CHECK(s1.peer_alive());
  const size_t hb_before = l1.Count(mark, What::kHeartbeat);
  CHECK(hb_before >= 10);  // lan1 still carries heartbeats

  // Cut lan1 as well: lost within timeout ± pulse.
  mark = l1.size();
  const size_t mark2 = l2.size();
  const auto cut = hb::Clock::now();
  lab.CutLink(2, 1);
  const int lost = l1.WaitFor(mark, What::kPeerLost, kTimeout + 2s);
  REQUIRE(lost >= 0);
  const int lost2 = l2.WaitFor(mark2, What::kPeerLost, kTimeout + 2s);
  REQUIRE(lost2 >= 0);
  const double d1 = Ms(l1.at(lost).at - cut), d2 = Ms(l2.at(lost2).at - cut);
  std::printf(
      "heartbeat netns: peer lost %.1f ms / %.1f ms after cutting both lans (timeout %lld, pulse %lld)\n", d1,
      d2, static_cast<long long>(kTimeout.count()), static_cast<long long>(kPulse.count()));
  for (double d : {d1, d2}) {
    CHECK(d >= Ms(kTimeout - kPulse) - 20);
    CHECK(d <= Ms(kTimeout + kPulse) + 100);  // +100 ms: scheduling slack on a loaded 2-core CI box
  }

  // Heal one lan: the peer is back.
  mark = l1.size();
  lab.HealLink(2, 1);
  REQUIRE(l1.WaitFor(mark, What::kPeerAlive, 3s) >= 0);
  CHECK(s1.drops().total() == 0);
  CHECK(s2.drops().total() == 0);
}

TEST_CASE("heavy loss on one lan does not lose the peer", "[heartbeat][netns]") {
  if (!hamirror::test::IsRoot()) {
    WARN("needs root (network namespaces): skipped");
    return;
  }
  NetLab lab({.nodes = 2, .lans = 2});
  hb::testing::RecordingListener l1, l2;
  hb::HeartbeatService s1(Config(1, 2), &l1);
  hb::HeartbeatService s2(Config(2, 1), &l2);
  StartIn(lab.node(1), s1);
  StartIn(lab.node(2), s2);
  REQUIRE(l1.WaitFor(0, What::kPeerAlive, 3s) >= 0);
  const size_t mark = l1.size();
  if (!lab.SetLoss(2, 0, 100) || !lab.SetLoss(2, 1, 50)) {
    WARN("kernel without sch_netem: loss test skipped");
    return;
  }
  std::this_thread::sleep_for(3 * kTimeout);  // observation window
  // With 50 % loss, ten silent pulses in a row (p = 1/1024 per window) would be needed for a loss.
  CHECK(l1.Count(mark, What::kPeerLost) == 0);
  CHECK(l1.Count(mark, What::kHeartbeat) >= 5);
  lab.SetLoss(2, 0, 0);
  lab.SetLoss(2, 1, 0);
}

TEST_CASE("NetNamespace runs commands and processes inside, and cleans up", "[netns]") {
  if (!hamirror::test::IsRoot()) {
    WARN("needs root (network namespaces): skipped");
    return;
  }
  std::string name;
  {
    hamirror::test::NetNamespace ns(hamirror::test::UniqueName("probe"));
    name = ns.name();
    CHECK(ns.Exec("ip -o link show lo").output.find("UP") != std::string::npos);
    const pid_t pid = ns.Spawn({"sleep", "30"});
    REQUIRE(pid > 0);
    // The child joins the namespace before exec; wait (bounded) until it is visible there.
    bool inside = false;
    for (int i = 0; i < 100 && !inside; ++i) {
      inside = hamirror::test::RunCommand("ip netns identify " + std::to_string(pid)).output.find(name) !=
               std::string::npos;
      if (!inside) std::this_thread::sleep_for(10ms);
    }
    CHECK(inside);
    CHECK(ns.Kill(pid, SIGTERM));
    CHECK(hamirror::test::RunCommand("kill -0 " + std::to_string(pid)).status != 0);
    ns.Spawn({"sleep", "30"});  // left running on purpose: the destructor must kill it
  }
  CHECK(hamirror::test::RunCommand("ip netns list").output.find(name) == std::string::npos);
}
