// Direct use of the NodeMachine API, as the daemon drives it: exact action order of the main
// transitions (persist before the fs role, fs role before the VIP, VIP before start_prim; VIP removed
// before stop_prim).
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "manager/core/node_machine.h"

using namespace hamirror::manager::core;

namespace {

Config TestConfig() {
  Config c;
  c.self = "n1";
  c.peer = "n2";
  c.heartbeat_timeout_ms = 1000;
  c.lease_ms = 600;
  return c;
}

// Actions as short strings, without logs and status sends (they may come anywhere).
std::vector<std::string> Effects(const std::vector<Action>& actions) {
  std::vector<std::string> out;
  for (const Action& a : actions) {
    if (std::holds_alternative<ActLog>(a) || std::holds_alternative<ActSendStatus>(a)) continue;
    out.push_back(ToString(a));
  }
  return out;
}

// `start` and its scripts, from t: the node is then WAIT (t advanced past the steps).
void StartToWait(NodeMachine& m, uint64_t* t) {
  m.Step(*t, EvCommand{Command::kStart, 1});
  m.Step(*t += 10, EvScriptDone{Script::kPrestart});
  m.Step(*t += 10, EvScriptDone{Script::kStartBoth});
}

}  // namespace

TEST_CASE("action order: start, prim alone, stop", "[core]") {
  NodeMachine m(TestConfig(), Persisted{});
  CHECK(m.persisted().incarnation == 1);
  uint64_t t = 1000;
  CHECK(Effects(m.Step(t, EvCommand{Command::kStart, 1})) ==
        std::vector<std::string>{"accepted #1", "run prestart"});
  CHECK(Effects(m.Step(t += 10, EvScriptDone{Script::kPrestart})) ==
        std::vector<std::string>{"run start_both"});
  CHECK(Effects(m.Step(t += 10, EvScriptDone{Script::kStartBoth})).empty());
  CHECK(m.state() == NodeState::kWait);

  // prim on fresh data with no peer: accepted, applied once the peer has been silent for the timeout.
  CHECK(Effects(m.Step(t += 10, EvCommand{Command::kPrim, 2})) == std::vector<std::string>{"accepted #2"});
  CHECK(m.state() == NodeState::kWait);
  std::vector<std::string> e = Effects(m.Step(t = 2100, EvTick{}));
  REQUIRE(e.size() == 4);
  CHECK(e[0].rfind("persist uptodate cur=1@n1", 0) == 0);
  CHECK(e[1] == "fs role alone");
  CHECK(e[2] == "add vip");
  CHECK(e[3] == "run start_prim");
  CHECK(m.state() == NodeState::kAlone);
  CHECK(m.readiness() == Readiness::kTransient);
  CHECK(m.vip_held());
  m.Step(t += 10, EvScriptDone{Script::kStartPrim});
  CHECK(m.readiness() == Readiness::kReady);

  // stop: VIP first, then the role's stop script, stop_both, poststop, fs read-only, STOP.
  CHECK(Effects(m.Step(t += 10, EvCommand{Command::kStop, 3})) ==
        std::vector<std::string>{"accepted #3", "remove vip", "run stop_prim"});
  CHECK_FALSE(m.vip_held());
  CHECK(Effects(m.Step(t += 10, EvScriptDone{Script::kStopPrim, ScriptResult::kTimeout})) ==
        std::vector<std::string>{"run stop_prim force"});
  CHECK(Effects(m.Step(t += 10, EvScriptDone{Script::kStopPrim})) ==
        std::vector<std::string>{"run stop_both"});
  CHECK(Effects(m.Step(t += 10, EvScriptDone{Script::kStopBoth})) ==
        std::vector<std::string>{"run poststop"});
  CHECK(Effects(m.Step(t += 10, EvScriptDone{Script::kPoststop})) ==
        std::vector<std::string>{"fs role secondary"});
  CHECK(m.state() == NodeState::kStop);
}

TEST_CASE("action order: joining as SECOND persists inconsistent before the resync starts", "[core]") {
  NodeMachine m(TestConfig(), Persisted{});
  uint64_t t = 1000;
  StartToWait(m, &t);
  PeerStatus peer;
  peer.from = "n2";
  peer.state = NodeState::kAlone;
  peer.data.data = DataState::kUpToDate;
  peer.data.current = Generation{1, "n2"};
  peer.seq = 1;
  std::vector<std::string> e = Effects(m.Step(t += 10, EvPeerStatus{peer}));
  REQUIRE(e.size() >= 2);
  CHECK(e[0] == "fs role secondary");
  CHECK(e[1] == "run start_second");
  CHECK(m.state() == NodeState::kSecond);
  e = Effects(m.Step(t += 10, EvScriptDone{Script::kStartSecond}));
  REQUIRE(e.size() == 2);
  CHECK(e[0].rfind("persist inconsistent", 0) == 0);
  CHECK(e[1] == "start resync");
  e = Effects(m.Step(t += 10, EvResyncDone{true}));
  REQUIRE(e.size() == 1);
  CHECK(e[0].rfind("persist outdated cur=1@n2 base=1@n2", 0) == 0);  // up to date once the peer is PRIM
  CHECK(m.readiness() == Readiness::kReady);
  peer.state = NodeState::kPrim;
  peer.data.base = peer.data.current;
  peer.seq = 2;
  e = Effects(m.Step(t += 10, EvPeerStatus{peer}));
  REQUIRE(e.size() == 1);
  CHECK(e[0].rfind("persist uptodate cur=1@n2", 0) == 0);
}

TEST_CASE("a status from an unknown node or an older heartbeat is ignored", "[core]") {
  NodeMachine m(TestConfig(), Persisted{});
  PeerStatus s;
  s.from = "intruder";
  s.seq = 5;
  m.Step(10, EvPeerStatus{s});
  CHECK_FALSE(m.peer_connected());
  s.from = "n2";
  m.Step(20, EvPeerStatus{s});
  CHECK(m.peer_connected());
  s.seq = 4;
  s.state = NodeState::kAlone;
  m.Step(30, EvPeerStatus{s});
  CHECK(m.last_peer_status()->state == NodeState::kStop);  // the reordered older one was dropped
}

TEST_CASE("connected promotion: an echo naming another incarnation of this node confirms nothing", "[core]") {
  Config c = TestConfig();
  c.incarnation = 555;
  NodeMachine m(c, Persisted{});
  uint64_t t = 1000;
  StartToWait(m, &t);
  REQUIRE(m.state() == NodeState::kWait);
  PeerStatus p;
  p.from = std::string("n2");  // (a plain literal trips GCC 12's false -Wrestrict here)
  p.state = NodeState::kWait;
  p.incarnation = 9;
  p.seq = 1;
  m.Step(t += 10, EvPeerStatus{p});
  REQUIRE(m.peer_connected());
  m.Step(t += 10, EvCommand{Command::kPrim, 2});
  REQUIRE(m.want_serve());
  const PeerStatus hb = m.MakeHeartbeat(t);
  REQUIRE(hb.want_serve);
  CHECK(hb.incarnation == 555);

  // The peer echoes a higher seq, but one sent by an earlier process of this node: not an ack.
  p.seq = 2;
  p.echo_seq = hb.seq + 1000;
  p.echo_incarnation = 554;
  m.Step(t += 10, EvPeerStatus{p});
  m.Step(t += 10, EvTick{});
  CHECK(m.state() == NodeState::kWait);

  // The echo of this incarnation's heartbeat that carried the intent: now it may promote.
  p.seq = 3;
  p.echo_seq = hb.seq;
  p.echo_incarnation = 555;
  m.Step(t += 10, EvPeerStatus{p});
  m.Step(t += 10, EvTick{});
  CHECK(m.state() == NodeState::kAlone);
}

TEST_CASE("a peer repeating its last status (its daemon busy in a step) is alive for a bounded time",
          "[core]") {
  Config cfg = TestConfig();
  cfg.repeated_status_grace_ms = 5000;
  NodeMachine m(cfg, Persisted{});
  uint64_t t = 1000;
  StartToWait(m, &t);
  PeerStatus peer;
  peer.from = "n2";
  peer.state = NodeState::kWait;
  peer.incarnation = 77;
  peer.seq = 1;
  m.Step(t += 10, EvPeerStatus{peer});
  REQUIRE(m.peer_connected());
  const uint64_t fresh = t;
  // The same status (same seq) every 100 ms for 3 heartbeat timeouts: still connected.
  while (t < fresh + 3000) {
    m.Step(t += 100, EvPeerStatus{peer});
    m.Step(t, EvTick{});
    REQUIRE(m.peer_connected());
  }
  // Repeats past the grace (5 s after the last fresh status) no longer count: lost one timeout later.
  while (t < fresh + 5000 + cfg.heartbeat_timeout_ms + 200 && m.peer_connected()) {
    m.Step(t += 100, EvPeerStatus{peer});
    m.Step(t, EvTick{});
  }
  CHECK_FALSE(m.peer_connected());
  CHECK(t >= fresh + 5000 + cfg.heartbeat_timeout_ms - 100);
  // A fresh status: connected again; silence: lost after one timeout.
  peer.seq = 2;
  m.Step(t += 100, EvPeerStatus{peer});
  REQUIRE(m.peer_connected());
  m.Step(t += cfg.heartbeat_timeout_ms - 100, EvTick{});
  CHECK(m.peer_connected());
  m.Step(t += 200, EvTick{});
  CHECK_FALSE(m.peer_connected());
}

namespace {
// Probe ids asked for by these actions.
std::vector<uint64_t> Probes(const std::vector<Action>& actions) {
  std::vector<uint64_t> ids;
  for (const Action& a : actions)
    if (const auto* p = std::get_if<ActProbeWitness>(&a)) ids.push_back(p->probe_id);
  return ids;
}
}  // namespace

TEST_CASE("witness: one slow probe does not end a serving node's lease while later probes answer", "[core]") {
  Config cfg = TestConfig();
  cfg.witness = true;
  cfg.witness_probe_interval_ms = 200;
  cfg.witness_probe_timeout_ms = 1000;  // longer than the lease (600 ms), as in the daemon
  NodeMachine m(cfg, Persisted{});
  uint64_t t = 1000;
  // Until the node serves, every probe is answered at once.
  auto step = [&](const Event& ev) {
    for (uint64_t id : Probes(m.Step(t, ev))) m.Step(t, EvWitness{true, id});
  };
  step(EvCommand{Command::kStart, 1});
  step(EvScriptDone{Script::kPrestart});
  step(EvScriptDone{Script::kStartBoth});
  step(EvCommand{Command::kPrim, 2});
  for (int i = 0; i < 100 && !m.vip_held(); ++i) {
    t += 50;
    step(EvTick{});
  }
  REQUIRE(m.vip_held());
  t += 10;
  step(EvScriptDone{Script::kStartPrim});
  REQUIRE(m.state() == NodeState::kAlone);
  // The next probe never answers (a ping stuck under load); the ones after it answer in 20 ms.
  bool first = true;
  std::vector<std::pair<uint64_t, uint64_t>> due;  // (time, id)
  const uint64_t until = t + 3000;
  while (t < until) {
    for (uint64_t id : Probes(m.Step(t += 10, EvTick{}))) {
      if (!first) due.emplace_back(t + 20, id);
      first = false;
    }
    for (auto it = due.begin(); it != due.end();) {
      if (it->first > t) {
        ++it;
        continue;
      }
      m.Step(t, EvWitness{true, it->second});
      it = due.erase(it);
    }
    INFO("t=" << t);
    REQUIRE(m.vip_held());
  }
  CHECK_FALSE(first);  // the stuck probe was asked for
}
