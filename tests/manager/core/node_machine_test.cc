// Unit tests of specific transitions, driven through the simulator with no random faults (the
// simulator still checks every invariant after every step; a violation fails the test).
#include <catch2/catch.hpp>
#include <memory>

#include "tests/manager/core/sim.h"

using namespace hamirror::manager::core;
using namespace hamirror::manager::core::sim;

namespace {

constexpr int A = 0, B = 1;

std::unique_ptr<Sim> MakeSim(bool witness = false, bool failover = true,
                             DefaultPrimKind dp = DefaultPrimKind::kAlone, const char* dp_node = "") {
  SimOptions o;
  o.seed = 7;
  o.witness = witness;
  o.failover = failover;
  o.defaultprim = dp;
  o.defaultprim_node = dp_node;
  o.trace = true;
  return std::make_unique<Sim>(o);
}

bool Is(const Sim& s, int i, NodeState st, Readiness r = Readiness::kReady) {
  return s.state(i) == st && s.readiness(i) == r;
}


#define WAIT_FOR(sim, cond, ms)                    \
  do {                                             \
    if (!RunUntil(                                 \
            sim, [&] { return cond; }, ms))        \
      FAIL("waited for " #cond "\n" << Dump(sim)); \
  } while (0)

// First start, as the SafeKit procedure says: start both, prim on A, second on B.
void BringUp(Sim& s) {
  REQUIRE(s.Command(A, Command::kStart).accepted);
  REQUIRE(s.Command(B, Command::kStart).accepted);
  s.RunFor(2000);
  INFO(Dump(s));
  // Fresh data is never promoted by itself.
  REQUIRE(Is(s, A, NodeState::kWait));
  REQUIRE(Is(s, B, NodeState::kWait));
  REQUIRE(s.Command(A, Command::kPrim).accepted);
  WAIT_FOR(s, Is(s, A, NodeState::kAlone) && s.vip(A), 1000);
  REQUIRE(s.Command(B, Command::kSecond).accepted);
  WAIT_FOR(s, Is(s, A, NodeState::kPrim) && Is(s, B, NodeState::kSecond), 5000);
  WAIT_FOR(s, s.disk(B).data == DataState::kUpToDate, 1000);
  s.RunFor(300);  // the primary hears that the secondary is synchronous
  REQUIRE(s.violation().empty());
}

}  // namespace

TEST_CASE("first start: WAIT, prim -> ALONE, second -> SECOND transient then ready, PRIM", "[core]") {
  auto s = MakeSim();
  BringUp(*s);
  CHECK(s->vip(A));
  CHECK_FALSE(s->vip(B));
  CHECK(s->disk(A).data == DataState::kUpToDate);
  CHECK(s->disk(A).current == s->disk(B).current);
  CHECK(s->disk(A).last_role == Role::kPrim);
  CHECK(s->disk(B).last_role == Role::kSecond);
}

TEST_CASE("SECOND is transient while resyncing and inconsistent on disk", "[core]") {
  auto s = MakeSim();
  s->Command(A, Command::kStart);
  s->Command(B, Command::kStart);
  s->RunFor(1500);
  s->Command(A, Command::kPrim);
  WAIT_FOR(*s, Is(*s, A, NodeState::kAlone), 1000);
  s->Command(B, Command::kSecond);
  WAIT_FOR(*s, s->disk(B).data == DataState::kInconsistent, 2000);
  CHECK(Is(*s, B, NodeState::kSecond, Readiness::kTransient));
  CHECK(Is(*s, A, NodeState::kAlone));  // the primary stays ALONE until the secondary is in sync
}

TEST_CASE("failover: the secondary takes over when the primary crashes - no swap back by default", "[core]") {
  auto s = MakeSim();
  BringUp(*s);
  Generation before = s->disk(B).current;
  s->Crash(A);
  INFO(Dump(*s));
  WAIT_FOR(*s, Is(*s, B, NodeState::kAlone) && s->vip(B), kHeartbeatTimeoutMs + 2000);
  CHECK(s->disk(B).current.counter == before.counter + 1);  // a new generation: B writes alone
  s->Restart(A);
  WAIT_FOR(*s, Is(*s, B, NodeState::kPrim) && Is(*s, A, NodeState::kSecond), 8000);
  s->RunFor(3000);
  CHECK(Is(*s, B, NodeState::kPrim));  // defaultprim="alone": the survivor stays primary
}

TEST_CASE("failover off: the secondary goes WAIT when the primary is lost - prim takes it", "[core]") {
  auto s = MakeSim(false, /*failover=*/false);
  BringUp(*s);
  s->Crash(A);
  s->RunFor(kHeartbeatTimeoutMs + 3000);
  INFO(Dump(*s));
  CHECK(Is(*s, B, NodeState::kWait));
  CHECK_FALSE(s->vip(B));
  CHECK(s->machine(B)->wait_reason().find("failover is off") != std::string::npos);
  REQUIRE(s->Command(B, Command::kPrim).accepted);
  WAIT_FOR(*s, Is(*s, B, NodeState::kAlone) && s->vip(B), 2000);
}

TEST_CASE("failover switched off at runtime: the secondary waits - switched on: it takes over", "[core]") {
  auto s = MakeSim();  // failover="on" in the configuration
  BringUp(*s);
  s->Deliver(B, EvSetFailover{false});
  s->Crash(A);
  s->RunFor(kHeartbeatTimeoutMs + 3000);
  INFO(Dump(*s));
  CHECK(Is(*s, B, NodeState::kWait));
  CHECK_FALSE(s->vip(B));
  CHECK(s->machine(B)->wait_reason().find("failover is off") != std::string::npos);
  s->Deliver(B, EvSetFailover{true});
  WAIT_FOR(*s, Is(*s, B, NodeState::kAlone) && s->vip(B), 2000);
}

TEST_CASE("failover switched on at runtime overrides failover=off of the configuration", "[core]") {
  auto s = MakeSim(false, /*failover=*/false);
  BringUp(*s);
  s->Deliver(B, EvSetFailover{true});
  s->Crash(A);
  INFO(Dump(*s));
  WAIT_FOR(*s, Is(*s, B, NodeState::kAlone) && s->vip(B), kHeartbeatTimeoutMs + 2000);
}

TEST_CASE("a stopped primary hands over - the stopped node is outdated and cannot promote itself", "[core]") {
  auto s = MakeSim();
  BringUp(*s);
  REQUIRE(s->Command(A, Command::kStop).accepted);
  INFO(Dump(*s));
  WAIT_FOR(*s, Is(*s, A, NodeState::kStop) && Is(*s, B, NodeState::kAlone), 5000);
  CHECK(s->disk(A).data == DataState::kOutdated);
  // B dies; A alone must not come up with old data.
  s->Crash(B);
  REQUIRE(s->Command(A, Command::kStart).accepted);
  s->RunFor(kHeartbeatTimeoutMs + 3000);
  CHECK(Is(*s, A, NodeState::kWait));
  ActCommandReply r = s->Command(A, Command::kPrim);
  CHECK_FALSE(r.accepted);
  CHECK(r.reason.find("primforce") != std::string::npos);
  // primforce overrides.
  REQUIRE(s->Command(A, Command::kPrimForce).accepted);
  WAIT_FOR(*s, Is(*s, A, NodeState::kAlone) && s->vip(A), 2000);
  CHECK(s->disk(A).data == DataState::kUpToDate);
}

TEST_CASE("swap: stop_prim on the primary completes before start_prim on the other", "[core]") {
  auto s = MakeSim();
  BringUp(*s);
  SECTION("typed on the primary") { REQUIRE(s->Command(A, Command::kSwap).accepted); }
  SECTION("typed on the secondary") { REQUIRE(s->Command(B, Command::kSwap).accepted); }
  INFO(Dump(*s));
  bool both = false;
  REQUIRE(RunUntil(
      *s,
      [&] {
        both |= s->vip(A) && s->vip(B);
        return Is(*s, B, NodeState::kPrim) && Is(*s, A, NodeState::kSecond);
      },
      6000));
  CHECK_FALSE(both);
  CHECK(s->vip(B));
  // stop_prim on A ran (and ended) before B ran start_prim.
  int stop_a = -1, start_b = -1, done_a = -1;
  for (size_t i = 0; i < s->trace().size(); ++i) {
    const std::string& l = s->trace()[i];
    if (l.find("A -> run stop_prim") != std::string::npos) stop_a = static_cast<int>(i);
    if (l.find("A <- script stop_prim ok") != std::string::npos) done_a = static_cast<int>(i);
    if (l.find("B -> run start_prim") != std::string::npos) start_b = static_cast<int>(i);
  }
  REQUIRE(stop_a >= 0);
  REQUIRE(start_b >= 0);
  CHECK(stop_a < done_a);
  CHECK(done_a < start_b);
}

TEST_CASE("swap is refused unless PRIM and SECOND ready", "[core]") {
  auto s = MakeSim();
  s->Command(A, Command::kStart);
  s->RunFor(500);
  ActCommandReply r = s->Command(A, Command::kSwap);
  CHECK_FALSE(r.accepted);
  CHECK_FALSE(r.reason.empty());
}

TEST_CASE("defaultprim names a node: swap back to it once it is in sync", "[core]") {
  auto s = MakeSim(false, true, DefaultPrimKind::kNode, "B");
  BringUp(*s);  // A is made primary first
  INFO(Dump(*s));
  WAIT_FOR(*s, Is(*s, B, NodeState::kPrim) && Is(*s, A, NodeState::kSecond), 6000);
  s->RunFor(3000);
  CHECK(Is(*s, B, NodeState::kPrim));  // and it stays there: no swap loop
}

TEST_CASE("defaultprim lastprim: after both crash in sync, the last primary comes back primary", "[core]") {
  auto s = MakeSim(false, true, DefaultPrimKind::kLastPrim);
  BringUp(*s);
  s->Command(A, Command::kSwap);
  WAIT_FOR(*s, Is(*s, B, NodeState::kPrim) && Is(*s, A, NodeState::kSecond), 6000);
  s->RunFor(500);
  s->Crash(A);
  s->Crash(B);  // both at once: both disks hold the same generation, up to date
  s->Restart(A);
  s->Restart(B);
  INFO(Dump(*s));
  WAIT_FOR(*s, Is(*s, B, NodeState::kPrim) && Is(*s, A, NodeState::kSecond), 8000);
}

TEST_CASE("both WAIT with equal data: exactly one promotes (lower name without a preference)", "[core]") {
  auto s = MakeSim();
  BringUp(*s);
  s->Crash(A);
  s->Crash(B);
  s->Restart(B);
  s->Restart(A);
  INFO(Dump(*s));
  WAIT_FOR(*s, Is(*s, A, NodeState::kPrim) && Is(*s, B, NodeState::kSecond), 8000);
}

TEST_CASE("maxloop: restarts within loop_interval, then the module stops locally", "[core]") {
  auto s = MakeSim();
  BringUp(*s);
  for (int k = 0; k < 3; ++k) {
    s->CheckFailure(A, FailAction::kRestart);
    WAIT_FOR(*s, Is(*s, A, NodeState::kPrim) && s->vip(A), 2000);
  }
  s->CheckFailure(A, FailAction::kRestart);  // the 4th within 5 s (the sim's loop_interval)
  INFO(Dump(*s));
  WAIT_FOR(*s, Is(*s, A, NodeState::kStop), 3000);
  WAIT_FOR(*s, Is(*s, B, NodeState::kAlone) && s->vip(B), 3000);
}

TEST_CASE("maxloop counts only failures within loop_interval", "[core]") {
  auto s = MakeSim();
  BringUp(*s);
  for (int k = 0; k < 6; ++k) {
    s->CheckFailure(A, FailAction::kRestart);
    WAIT_FOR(*s, Is(*s, A, NodeState::kPrim) && s->vip(A), 2000);
    s->RunFor(2000);  // at most 3 failures ever fall in one 5 s window
  }
  CHECK(Is(*s, A, NodeState::kPrim));
}

TEST_CASE("checker action stopstart: the peer takes over and the node comes back as SECOND", "[core]") {
  auto s = MakeSim();
  BringUp(*s);
  s->CheckFailure(A, FailAction::kStopStart);
  INFO(Dump(*s));
  WAIT_FOR(*s, Is(*s, B, NodeState::kPrim) && Is(*s, A, NodeState::kSecond), 8000);
}

TEST_CASE("split brain without witness: both ALONE - on reconnection neither side's data is discarded",
          "[core]") {
  auto s = MakeSim();
  BringUp(*s);
  s->SetLink(false, false);
  INFO(Dump(*s));
  WAIT_FOR(*s, Is(*s, A, NodeState::kAlone) && Is(*s, B, NodeState::kAlone), 4000);
  s->RunFor(500);  // both write
  s->SetLink(true, true);
  // One steps down (A wins: lower name, same counter) and waits; nobody joins automatically.
  WAIT_FOR(*s, Is(*s, B, NodeState::kWait), 3000);
  s->RunFor(3000);
  CHECK(Is(*s, A, NodeState::kAlone));
  CHECK(Is(*s, B, NodeState::kWait));
  CHECK(s->disk(B).split_brain);
  CHECK(s->machine(B)->wait_reason().find("split brain") != std::string::npos);
  // After a restart B still must not serve its side by itself.
  s->Crash(A);
  s->RunFor(kHeartbeatTimeoutMs + 2000);
  CHECK(Is(*s, B, NodeState::kWait));
  s->Restart(A);
  s->RunFor(3000);
  // A restarted: it remembers the split brain too, so nobody serves until the operator chooses.
  CHECK(Is(*s, A, NodeState::kWait));
  CHECK(s->disk(A).split_brain);
  // The operator keeps A's side (prim on A) and discards B's (second on B).
  REQUIRE(s->Command(A, Command::kPrim).accepted);
  REQUIRE(s->Command(B, Command::kSecond).accepted);
  WAIT_FOR(*s, Is(*s, A, NodeState::kPrim) && Is(*s, B, NodeState::kSecond), 8000);
  CHECK_FALSE(s->disk(A).split_brain);
  CHECK_FALSE(s->disk(B).split_brain);
}

TEST_CASE("witness on the secondary's side: the primary steps down before the secondary serves", "[core]") {
  auto s = MakeSim(/*witness=*/true);
  BringUp(*s);
  s->SetLink(false, false);
  s->SetWitness(false, true);
  INFO(Dump(*s));
  WAIT_FOR(*s, Is(*s, B, NodeState::kAlone) && s->vip(B), 5000);
  CHECK_FALSE(s->vip(A));
  CHECK(Is(*s, A, NodeState::kWait));
}

TEST_CASE("witness on the primary's side: the primary stays, the secondary waits", "[core]") {
  auto s = MakeSim(/*witness=*/true);
  BringUp(*s);
  s->SetLink(false, false);
  s->SetWitness(true, false);
  s->RunFor(kHeartbeatTimeoutMs + 4000);
  INFO(Dump(*s));
  CHECK(Is(*s, A, NodeState::kAlone));
  CHECK(s->vip(A));
  CHECK(Is(*s, B, NodeState::kWait));
}

TEST_CASE("asymmetric partition with the witness on the secondary's side", "[core]") {
  auto s = MakeSim(/*witness=*/true);
  BringUp(*s);
  s->SetLink(/*a_to_b=*/false, /*b_to_a=*/true);  // A still hears B; B hears nothing
  s->SetWitness(false, true);
  INFO(Dump(*s));
  WAIT_FOR(*s, Is(*s, B, NodeState::kAlone) && s->vip(B), 6000);
  CHECK_FALSE(s->vip(A));
}

TEST_CASE("stop scripts that fail are run again with force - a failing start script stops the module",
          "[core]") {
  auto s = MakeSim();
  BringUp(*s);
  s->FailNextScript(A, Script::kStopPrim, ScriptResult::kTimeout);
  REQUIRE(s->Command(A, Command::kStop).accepted);
  WAIT_FOR(*s, Is(*s, A, NodeState::kStop), 5000);
  bool forced = false;
  for (const auto& l : s->trace()) forced |= l.find("A -> run stop_prim force") != std::string::npos;
  CHECK(forced);
  // B is ALONE now; make its next start_prim fail after a restart command.
  WAIT_FOR(*s, Is(*s, B, NodeState::kAlone), 3000);
  s->FailNextScript(B, Script::kStartPrim, ScriptResult::kFailed);
  REQUIRE(s->Command(B, Command::kRestart).accepted);
  INFO(Dump(*s));
  WAIT_FOR(*s, Is(*s, B, NodeState::kStop), 5000);
  CHECK_FALSE(s->vip(B));
}

TEST_CASE("every command is answered - refusals carry a reason", "[core]") {
  auto s = MakeSim();
  ActCommandReply r = s->Command(A, Command::kStop);
  CHECK_FALSE(r.accepted);
  CHECK(r.reason == "already stopped");
  CHECK(s->Command(A, Command::kStart).accepted);
  r = s->Command(A, Command::kStart);
  CHECK_FALSE(r.accepted);
  CHECK_FALSE(r.reason.empty());
  s->RunFor(1000);
  r = s->Command(A, Command::kRestart);
  CHECK_FALSE(r.accepted);
  CHECK_FALSE(r.reason.empty());
}

TEST_CASE("data link lost on the primary: ALONE with a new generation, the secondary resyncs", "[core]") {
  auto s = MakeSim();
  BringUp(*s);
  Generation g = s->disk(A).current;
  s->Deliver(A, EvDataLinkLost{});
  CHECK(Is(*s, A, NodeState::kAlone));
  CHECK(s->disk(A).current.counter == g.counter + 1);
  INFO(Dump(*s));
  WAIT_FOR(*s, Is(*s, A, NodeState::kPrim) && Is(*s, B, NodeState::kSecond), 6000);
  CHECK(s->disk(B).current == s->disk(A).current);
}

TEST_CASE("prim typed on both nodes at once: exactly one serves, the other joins", "[core]") {
  auto s = MakeSim();
  s->Command(A, Command::kStart);
  s->Command(B, Command::kStart);
  s->RunFor(1500);
  REQUIRE(s->Command(A, Command::kPrim).accepted);
  REQUIRE(s->Command(B, Command::kPrim).accepted);
  bool both = false;
  WAIT_FOR(*s, (both |= s->vip(A) && s->vip(B), Is(*s, A, NodeState::kPrim) && Is(*s, B, NodeState::kSecond)),
           8000);
  CHECK_FALSE(both);
  CHECK(s->violation().empty());
}

TEST_CASE("connected promotion waits for the peer's acknowledgement of the intent", "[core]") {
  auto s = MakeSim();
  BringUp(*s);
  s->Crash(A);
  s->Crash(B);
  s->Restart(A);
  s->Restart(B);
  s->SetLink(false, true);  // B's heartbeats reach A, A's never reach B: B cannot acknowledge
  s->RunFor(700);           // both started and exchanged (one way) for a while
  // A (the last primary) announces its intent but never sees it echoed: it must not serve.
  CHECK(s->machine(A)->want_serve());
  CHECK_FALSE(s->vip(A));
  CHECK_FALSE(s->vip(B));
  s->SetLink(true, true);
  WAIT_FOR(*s,
           (Is(*s, A, NodeState::kPrim) && Is(*s, B, NodeState::kSecond)) ||
               (Is(*s, B, NodeState::kPrim) && Is(*s, A, NodeState::kSecond)),
           8000);
}

TEST_CASE("a restarted peer (new incarnation, lower seq) is heard at once, its old process is not",
          "[core]") {
  Config c;
  c.self = std::string("a");  // (a plain literal trips GCC 12's false -Wrestrict here)
  c.peer = std::string("b");
  c.incarnation = 4242;
  NodeMachine m(c, Persisted{});
  auto status = [](uint64_t inc, uint64_t seq, NodeState st) {
    PeerStatus p;
    p.from = std::string("b");
    p.state = st;
    p.incarnation = inc;
    p.seq = seq;
    return p;
  };
  uint64_t now = 1000;
  m.Step(now, EvPeerStatus{status(100, 5000, NodeState::kPrim)});
  REQUIRE(m.last_peer_status());
  CHECK(m.last_peer_status()->seq == 5000);
  m.Step(now += 10, EvPeerStatus{status(100, 4999, NodeState::kWait)});  // reordered: ignored
  CHECK(m.last_peer_status()->seq == 5000);
  CHECK(m.last_peer_status()->state == NodeState::kPrim);

  // The peer restarts: its seqs start low again, and must be taken at once.
  m.Step(now += 10, EvPeerStatus{status(200, 3, NodeState::kWait)});
  CHECK(m.last_peer_status()->incarnation == 200);
  CHECK(m.last_peer_status()->seq == 3);
  CHECK(m.last_peer_status()->state == NodeState::kWait);
  // A late datagram of the peer's previous process (higher seq) does not bring back its old state.
  m.Step(now += 10, EvPeerStatus{status(100, 5001, NodeState::kPrim)});
  CHECK(m.last_peer_status()->incarnation == 200);
  CHECK(m.last_peer_status()->state == NodeState::kWait);
  m.Step(now += 10, EvPeerStatus{status(200, 4, NodeState::kWait)});
  CHECK(m.last_peer_status()->seq == 4);

  // Our heartbeats carry our incarnation and echo the peer's current one.
  PeerStatus hb = m.MakeHeartbeat(now);
  CHECK(hb.incarnation == 4242);
  CHECK(hb.echo_incarnation == 200);
  CHECK(hb.echo_seq == 4);
}

// ---- For `state -v`: time in state and the failover record ----------------------------------

TEST_CASE("state -v facts: a crashed primary's secondary records the failover: when, why, how long",
          "[core]") {
  auto s = MakeSim();
  BringUp(*s);
  // Coming up is no failover: A went ALONE on `prim` with B connected and not serving.
  CHECK_FALSE(s->machine(A)->last_failover().has_value());
  CHECK_FALSE(s->machine(B)->last_failover().has_value());
  const uint64_t crash = s->now();
  s->Crash(A);
  INFO(Dump(*s));
  WAIT_FOR(*s, Is(*s, B, NodeState::kAlone), kHeartbeatTimeoutMs + 2000);
  const auto& f = s->machine(B)->last_failover();
  REQUIRE(f.has_value());
  CHECK(s->machine(B)->failovers() == 1);
  CHECK(f->reason == "peer A lost (no heartbeat on any network)");
  CHECK(f->state == NodeState::kAlone);
  CHECK(f->detected_ms >= crash + kHeartbeatTimeoutMs);  // detected when the heartbeats timed out
  CHECK(f->done_ms > f->detected_ms);                    // ... done when start_prim finished
  CHECK(f->done_ms <= s->now());
  // B's time in ALONE counts from when it entered ALONE (before start_prim ended), not from Ready.
  CHECK(s->machine(B)->state_since_ms() > f->detected_ms);
  CHECK(s->machine(B)->state_since_ms() < f->done_ms);
  bool entered = true;
  CHECK_FALSE(s->machine(B)->peer_state_since_ms(&entered).has_value());  // the peer is not heard
}

TEST_CASE("state -v facts: the peer's time in state counts from the change this node saw", "[core]") {
  auto s = MakeSim();
  s->Command(A, Command::kStart);
  s->Command(B, Command::kStart);
  s->RunFor(2000);
  bool entered = true;
  auto since = s->machine(A)->peer_state_since_ms(&entered);
  REQUIRE(since.has_value());
  CHECK_FALSE(entered);  // B was already WAIT when A first heard it: a lower bound
  REQUIRE(s->Command(A, Command::kPrim).accepted);
  REQUIRE(s->Command(B, Command::kSecond).accepted);
  INFO(Dump(*s));
  WAIT_FOR(*s, Is(*s, A, NodeState::kPrim) && Is(*s, B, NodeState::kSecond), 5000);
  since = s->machine(A)->peer_state_since_ms(&entered);
  REQUIRE(since.has_value());
  CHECK(entered);  // A saw B enter SECOND
  CHECK(*since >= s->machine(B)->state_since_ms());
  CHECK(*since <= s->now());
  // Readiness changes do not restart the clock: SECOND transient -> ready kept B's entry time.
  CHECK(s->machine(B)->state() == NodeState::kSecond);
  const uint64_t b_since = s->machine(B)->state_since_ms();
  s->RunFor(1000);
  CHECK(s->machine(B)->state_since_ms() == b_since);
}

TEST_CASE("state -v facts: a swap is recorded on the node that took over, a stop on the survivor", "[core]") {
  auto s = MakeSim();
  BringUp(*s);
  REQUIRE(s->Command(A, Command::kSwap).accepted);
  INFO(Dump(*s));
  WAIT_FOR(*s, Is(*s, B, NodeState::kPrim) && Is(*s, A, NodeState::kSecond), 6000);
  REQUIRE(s->machine(B)->last_failover().has_value());
  CHECK(s->machine(B)->last_failover()->reason == "swap: A handed over");
  CHECK(s->machine(B)->last_failover()->state == NodeState::kPrim);
  CHECK(s->machine(B)->last_failover()->done_ms > s->machine(B)->last_failover()->detected_ms);
  CHECK_FALSE(s->machine(A)->last_failover().has_value());  // A handed over: no failover of its own

  // The primary B is stopped: A takes over (connected, B left PRIM).
  s->RunFor(500);
  REQUIRE(s->Command(B, Command::kStop).accepted);
  WAIT_FOR(*s, Is(*s, A, NodeState::kAlone), 6000);
  REQUIRE(s->machine(A)->last_failover().has_value());
  CHECK(s->machine(A)->last_failover()->reason.rfind("peer B left PRIM (now ", 0) == 0);
  CHECK(s->machine(B)->failovers() == 1);  // stopping recorded nothing on B
}

TEST_CASE(
    "a partition heals: the side that lost the witness waits for the peer's heartbeats, never serves too",
    "[core]") {
  auto s = MakeSim(/*witness=*/true);
  BringUp(*s);
  // A's own network is cut: it hears neither B nor the witness; B takes over.
  s->SetLink(false, false);
  s->SetWitness(false, true);
  WAIT_FOR(*s, Is(*s, B, NodeState::kAlone) && s->vip(B), 6000);
  REQUIRE(Is(*s, A, NodeState::kWait));
  s->RunFor(3000);  // A keeps probing the witness in vain
  // The heal reaches A's witness probe before B's heartbeats (as on a real link: the probe is
  // answered in a few ms, the next heartbeat comes within a pulse).
  s->SetWitness(true, true);
  s->RunFor(kHeartbeatTimeoutMs / 2);
  INFO(Dump(*s));
  CHECK_FALSE(s->vip(A));
  s->SetLink(true, true);
  // A served alone for a moment before its lease ran out (its generation moved): the data diverged,
  // so A waits for the operator; B goes on serving, alone.
  s->RunFor(5000);
  REQUIRE(s->violation().empty());
  CHECK_FALSE(s->vip(A));
  CHECK(Is(*s, A, NodeState::kWait));
  CHECK(s->vip(B));
  CHECK(Is(*s, B, NodeState::kAlone));
}

TEST_CASE("a partition heals: a primary that lost its lease, then its peer while stopping, rejoins as SECOND",
          "[core]") {
  // As in the lab with a sendtimeout longer than the lease: no write of A failed while it held the
  // VIP, so A served nothing alone. Its lease runs out, the VIP goes, and its application's stop
  // outlasts the heartbeat timeout: the fs must finish that stop alone (else it hangs until the
  // sendtimeout), but nothing written then reached a client. No new generation: at the heal B is newer
  // and A joins it as SECOND, no split brain, no operator.
  auto s = MakeSim(/*witness=*/true);
  BringUp(*s);
  s->SetAppWrites(false);
  s->SlowNextScript(A, Script::kStopPrim, kHeartbeatTimeoutMs + 500);
  const Generation before = s->disk(A).current;
  s->SetLink(false, false);
  s->SetWitness(false, true);
  WAIT_FOR(*s, Is(*s, B, NodeState::kAlone) && s->vip(B), 6000);
  WAIT_FOR(*s, Is(*s, A, NodeState::kWait), 4000);
  INFO(Dump(*s));
  bool finished_alone = false;
  for (const auto& l : s->trace())
    finished_alone |=
        l.find("A -> log:") != std::string::npos && l.find("finishes the stop alone") != std::string::npos;
  CHECK(finished_alone);
  CHECK(s->disk(A).current == before);  // nothing acknowledged alone: no generation
  s->SetAppWrites(true);
  s->SetWitness(true, true);
  s->RunFor(kHeartbeatTimeoutMs / 2);
  s->SetLink(true, true);
  WAIT_FOR(
      *s,
      Is(*s, A, NodeState::kSecond) && s->readiness(A) == Readiness::kReady && Is(*s, B, NodeState::kPrim),
      10000);
  REQUIRE(s->violation().empty());
  CHECK_FALSE(s->disk(A).split_brain);
  CHECK_FALSE(s->disk(B).split_brain);
  CHECK(s->vip(B));
}
