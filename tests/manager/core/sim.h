// Deterministic simulator for two NodeMachines, a witness and a faulty network (etcd-raft style).
//
// Everything (message loss and delay, partitions, witness reachability, crashes, script durations and
// results, resync, application writes, operator commands) is drawn from one seeded PRNG, so a seed
// replays exactly. The simulator also keeps the TRUTH the machines cannot see: which writes each
// node's disk holds (a tree of writes, each with the time it was acknowledged), who holds the VIP,
// which heartbeats each node received. Invariants are checked after every event; the first violation
// ends the run.
//
// Model of the parts around the core (what the daemon and hamirror-fs promise):
// - time: one global virtual clock in ms; every node ticks every 50 ms (nodes offset by 25 ms).
// - heartbeats: every pulse (100 ms) and on ActSendStatus, one message per direction; a message is
//   lost with the current loss rate, delayed 1..max_delay ms, dropped if the link is down at send or
//   delivery time. Heartbeats flow while the module is STOP (the daemon is running).
// - fs: a write on a serving node with fs role primary needs the peer alive, the link up both ways and
//   the peer's fs secondary; otherwise the fs reports EvDataLinkLost first (sendtimeout) and the write
//   is acknowledged alone. ActSetFsRole(primary) brings an in-sync secondary up to date from the
//   record, links to a SECOND that waits for a resync (writes then go on live), or reports
//   EvDataLinkLost. A resync ends only once the source has linked its fs (role primary); it copies the
//   source's whole tree at the end (the target is inconsistent meanwhile) and fails if the source
//   stopped serving or the link broke (or at random under chaos: an interrupted or refused resync).
// - witness: ActProbeWitness is answered within 10..90 ms (never: 3 %; after the machine's 100 ms
//   timeout: 5 %), with the reachability at answer time.
// - crash: the node loses everything but its persisted facts and its disk; the VIP goes with it.
// - daemon restart (adoption): only the machine goes for a gap; the VIP, the fs and the application stay
//   (writes go on), no heartbeat is sent or received meanwhile; the new machine gets EvAdopt. Under a
//   lease (witness, or peer connected) the daemon's keeper removes the VIP when the lease ends first;
//   the new daemon then takes the crash path (new machine, `start`).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <string>
#include <vector>

#include "manager/core/node_machine.h"

namespace hamirror::manager::core::sim {

struct SimOptions {
  uint64_t seed = 1;
  bool witness = true;
  // Fault model honours the witness precondition: while the nodes cannot hear each other (any
  // impaired link) and for 300 ms (> pulse + max delay + tick) after the link is perfect again, the
  // witness is reachable by at most one node, the same one for the whole episode; impaired episodes
  // are separated by perfect periods of >= 400 ms.
  bool safe_witness = true;
  bool failover = true;
  DefaultPrimKind defaultprim = DefaultPrimKind::kAlone;
  std::string defaultprim_node;
  bool net_faults = true;
  bool crashes = true;
  bool commands = true;
  bool script_failures = true;
  bool check_failures = true;
  // `hamirror failover on|off` typed at random in the chaos phase (EvSetFailover). A restart gives a
  // node `failover` again (the daemon would keep the toggle: safety does not depend on either).
  bool toggle_failover = false;
  // hamirrord restarted at random in the chaos phase (handoff, a gap of 0-1500 ms, EvAdopt).
  bool daemon_restarts = false;
  uint64_t chaos_ms = 0;  // random faults (0: 3-15 s drawn from the seed), then heal, liveness check
  bool trace = false;
};

// Timing constants shared by the simulator and the machines' Config (lease < T - pulse - delay - tick).
constexpr uint64_t kPulseMs = 100;
constexpr uint64_t kTickMs = 50;
constexpr uint64_t kMaxDelayMs = 100;
constexpr uint64_t kHeartbeatTimeoutMs = 1000;
constexpr uint64_t kLeaseMs = 600;

class Sim {
 public:
  explicit Sim(SimOptions options);
  ~Sim();

  // ---- Manual driving (unit tests) ----
  // Sends a command to node i (0 = "A", 1 = "B") now; returns the reply.
  ActCommandReply Command(int i, core::Command cmd);
  void RunFor(uint64_t ms);
  void SetLink(bool a_to_b, bool b_to_a, double loss = 0);
  void SetWitness(bool a_reaches, bool b_reaches);
  void Crash(int i);
  void Restart(int i);  // new machine from the persisted facts, then `start`
  // hamirrord on node i leaves the module running (handoff) and a new one adopts it gap_ms later.
  // Returns the machine's refusal ("" when the restart began).
  std::string BeginDaemonRestart(int i, uint64_t gap_ms);
  bool daemon_down(int i) const;
  // The next run of `script` on node i ends with `result`.
  void FailNextScript(int i, Script script, ScriptResult result);
  // The next run of `script` on node i takes ms (instead of 0-300 ms).
  void SlowNextScript(int i, Script script, uint64_t ms);
  // The application's writes on the serving node (every 100 ms; on by default). Off, a primary cut
  // from its peer sees no write fail before its lease runs out (as with a sendtimeout longer than it).
  void SetAppWrites(bool on) { app_writes_ = on; }
  void CheckFailure(int i, FailAction action);
  void Deliver(int i, const Event& e);  // any event, now

  // ---- Randomised run ----
  // Chaos phase, heal, operator procedure, liveness check. Returns "" or the violation.
  std::string RunRandom();

  // ---- Observation ----
  NodeState state(int i) const;
  Readiness readiness(int i) const;
  bool vip(int i) const;
  bool alive(int i) const;
  const Persisted& disk(int i) const;
  const NodeMachine* machine(int i) const;
  uint64_t now() const { return now_; }
  const std::string& violation() const { return violation_; }
  const std::vector<std::string>& trace() const { return trace_; }
  std::string Describe() const;  // one line: both nodes' states
  uint64_t writes() const { return writes_.size() - 1; }

 private:
  struct Node;
  struct Item;
  struct Later {
    bool operator()(const Item& a, const Item& b) const;
  };
  enum class Kind : uint8_t {
    kTick,
    kPulse,
    kDeliver,
    kWrite,
    kChaos,
    kRestart,
    kResyncEnd,
    kAdopt,
    kKeeper
  };
  struct Write {
    uint32_t parent;
    uint32_t depth;
    uint64_t ack_time;
  };

  void Schedule(uint64_t at, Kind kind, int node, std::optional<Event> ev = std::nullopt,
                uint64_t send_time = 0, uint64_t token = 0);
  void ProcessUntil(uint64_t t);
  void Process(Item& it);
  void StepNode(int i, const Event& e);
  void Execute(int i, const std::vector<Action>& actions, const std::optional<uint64_t>& cmd_id);
  void CheckAfterStep(int i, NodeState before);
  void FinishDaemonRestart(int i);
  void CheckGlobal();
  void SendHeartbeat(int i);
  void DoWrite(int i);
  void ChaosStep();
  void Fail(const std::string& what);
  bool LinkUp(int from) const { return link_up_[from]; }
  bool BothLinks() const { return link_up_[0] && link_up_[1]; }
  bool Impaired() const { return !link_up_[0] || !link_up_[1] || loss_ > 0; }
  bool ServingNow(int i) const;
  std::string StaleReason(int i) const;
  Config MakeConfig(int i) const;
  void Tr(const std::string& line);

  SimOptions o_;
  std::mt19937_64 rng_;
  uint64_t now_ = 0;
  uint64_t seq_ = 0;
  std::priority_queue<Item, std::vector<Item>, Later>* q_;
  std::unique_ptr<Node> n_[2];
  bool link_up_[2] = {true, true};  // [0]: A->B, [1]: B->A
  double loss_ = 0;
  bool witness_reach_[2] = {true, true};
  std::vector<Write> writes_;  // index 0: the empty tree
  std::string violation_;
  std::vector<std::string> trace_;
  uint64_t next_cmd_id_ = 1;
  bool dual_check_ = true;  // cleared after a primforce in the chaos phase
  bool chaos_ = false;
  bool app_writes_ = true;
  bool ever_impaired_ = false;
  uint64_t impaired_since_ = 0, perfect_since_ = 0;
};

// Runs until cond holds (checked every 10 ms) or max_ms passed; false on any invariant violation.
template <class Cond>
bool RunUntil(Sim& s, Cond cond, uint64_t max_ms) {
  for (uint64_t t = 0; t < max_ms; t += 10) {
    if (cond()) return true;
    s.RunFor(10);
    if (!s.violation().empty()) return false;
  }
  return cond();
}

// The simulation's state, its first violation and the last 300 trace lines: a failing test's message.
inline std::string Dump(const Sim& s) {
  std::string out = s.Describe() + "\n" + s.violation() + "\n";
  size_t from = s.trace().size() > 300 ? s.trace().size() - 300 : 0;
  for (size_t i = from; i < s.trace().size(); ++i) out += s.trace()[i] + "\n";
  return out;
}

}  // namespace hamirror::manager::core::sim
