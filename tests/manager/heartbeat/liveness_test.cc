#include "manager/heartbeat/liveness.h"

#include <catch2/catch.hpp>

namespace hb = hamirror::heartbeat;
using namespace std::chrono_literals;
using Kind = hb::Liveness::Change::Kind;

namespace {
std::vector<Kind> Kinds(const std::vector<hb::Liveness::Change>& changes) {
  std::vector<Kind> k;
  for (const auto& c : changes) k.push_back(c.kind);
  return k;
}
}  // namespace

TEST_CASE("liveness: peer lost only when all networks are silent", "[heartbeat]") {
  const auto t0 = hb::Clock::time_point{} + 1000s;
  hb::Liveness l(2, 1000ms, t0);
  std::vector<hb::Liveness::Change> ch;

  l.OnPacket(0, t0 + 10ms, &ch);
  CHECK(Kinds(ch) == std::vector<Kind>{Kind::kNetworkUp, Kind::kPeerAlive});
  ch.clear();
  l.OnPacket(1, t0 + 20ms, &ch);
  CHECK(Kinds(ch) == std::vector<Kind>{Kind::kNetworkUp});
  CHECK(ch[0].network == 1);
  ch.clear();

  // Network 0 keeps talking, network 1 goes silent.
  for (int i = 1; i <= 30; ++i) {
    l.OnPacket(0, t0 + i * 100ms, &ch);
    l.Tick(t0 + i * 100ms + 1ms, &ch);
  }
  REQUIRE(Kinds(ch) == std::vector<Kind>{Kind::kNetworkDown});
  CHECK(ch[0].network == 1);
  CHECK(l.peer_alive());
  ch.clear();

  // Now network 0 goes silent too: lost exactly `timeout` after its last packet, not before.
  const auto last = t0 + 3000ms;
  CHECK(l.NextDeadline() == last + 1000ms);
  l.Tick(last + 999ms, &ch);
  CHECK(ch.empty());
  l.Tick(last + 1000ms, &ch);
  CHECK(Kinds(ch) == std::vector<Kind>{Kind::kNetworkDown, Kind::kPeerLost});
  ch.clear();
  l.Tick(last + 5000ms, &ch);  // lost is an edge
  CHECK(ch.empty());
  CHECK(l.NextDeadline() == hb::Clock::time_point::max());

  l.OnPacket(1, last + 6000ms, &ch);
  CHECK(Kinds(ch) == std::vector<Kind>{Kind::kNetworkUp, Kind::kPeerAlive});
}

TEST_CASE("liveness: a peer never seen is reported lost once after timeout", "[heartbeat]") {
  const auto t0 = hb::Clock::time_point{} + 50s;
  hb::Liveness l(1, 500ms, t0);
  std::vector<hb::Liveness::Change> ch;
  CHECK(l.NextDeadline() == t0 + 500ms);
  l.Tick(t0 + 499ms, &ch);
  CHECK(ch.empty());
  l.Tick(t0 + 500ms, &ch);
  CHECK(Kinds(ch) == std::vector<Kind>{Kind::kPeerLost});
  ch.clear();
  l.Tick(t0 + 900ms, &ch);
  CHECK(ch.empty());
}
