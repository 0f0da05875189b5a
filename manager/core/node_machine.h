// NodeMachine: the pure state machine of one hamirror node (the manager's brain).
//
// What it offers
// --------------
// A deterministic object with no I/O, no clock, no threads, no randomness. The daemon feeds it
// events (`Step(now_ms, event)`) and executes the actions it returns, IN ORDER. Time is only what the
// caller passes in `now_ms` (a monotonic millisecond clock; the simulator uses a virtual one). The same
// inputs always give the same outputs, so tests/manager/core/ drives two machines, a witness and a
// faulty network with a seeded PRNG and checks invariants after every step (etcd-raft style).
//
// States (SafeKit names, `state -lq` exit code in brackets):
//   STOP(0)  module stopped.            WAIT(1)  started, not serving (peer decides, data stale, ...).
//   ALONE(2) serving without a peer.    PRIM(3)  serving, peer is SECOND ready (synchronous mirror).
//   SECOND(4) holds the copy; Transient while start_second/resync run, Ready when in sync.
//   PRIM/ALONE are Transient while start_prim (or a restart) runs, Ready afterwards.
// "Serving" means PRIM or ALONE with the VIP held. The VIP is added before start_prim and removed
// (RemoveVip emitted) before anything else whenever a node leaves PRIM/ALONE.
//
// Data freshness (persisted, see `Persisted`): kUpToDate, kOutdated (consistent but the peer has, or
// will have, newer data), kInconsistent (a resync into this node began and has not finished) or
// kUnknown (fresh install, never synchronised). Only kUpToDate data is promoted automatically; `prim`
// also accepts kUnknown (operator vouches for it, first start); only `primforce` promotes stale data.
// Generations (DRBD-like): `current` is bumped {counter+1, self} every time the node enters ALONE (it
// may write without the peer); `base` is the last generation both nodes held in sync. On contact:
//   my.current == peer.current            -> same data;
//   my.current == peer.base (and differ)   -> I am behind: mark kOutdated, join as SECOND (resync);
//   peer.current == my.base                -> peer is behind;
//   otherwise                              -> split brain (both wrote since they parted): persisted as
//                                             `split_brain` on both; neither auto-promotes nor auto-
//                                             joins, even after a restart; the one serving (if any)
//                                             keeps serving (if both serve, the defaultprim node, else
//                                             the higher generation, else the lower name keeps the VIP),
//                                             the other WAITs and reports. `second` there discards its
//                                             side (the fs keeps a quarantine copy), `prim` there keeps
//                                             it. (A resync target is compared by its data state.)
// A node that stops gracefully while its peer serves, or while it serves and the peer is SECOND in
// sync, marks itself kOutdated (the peer carries on without it). ResyncDone makes the target a
// consistent copy of a source that is still ALONE: it stays kOutdated until the source turns PRIM
// (synchronous), and only then becomes kUpToDate.
//
// Restarts: every NodeMachine has an incarnation (Config::incarnation, e.g. a random id the daemon
// picks at start). A PeerStatus is ignored if its seq is not above the last one seen from the SAME
// incarnation (reordered or duplicate); a new incarnation of the peer resets that filter at once (a
// restarted peer is heard immediately), except an incarnation the peer already left (a late datagram
// of its previous process). Echoes (lease, promotion intent) count only when they name this
// machine's incarnation, so an echo of an earlier process's heartbeat never confirms anything.
// Peer liveness: any PeerStatus (from any heartbeat network) refreshes the peer; the peer is lost when
// nothing arrived for `heartbeat_timeout_ms` (checked on every Step, Tick included) or on PeerLost.
// Promotion while connected (both WAIT): a node that should serve (only one is eligible, or both are
// and it is preferred: defaultprim node, then last primary for lastprim/alone, then lower name; a node
// where `prim` was typed raises it regardless) sets `want_serve` in its heartbeats and goes ALONE only
// once the peer's LATEST status is not serving, not wanting to serve, and echoes a heartbeat that
// carried the intent. A node that
// saw the peer's intent never raises its own; if both raised one at once, the preferred one keeps it.
// Two connected nodes therefore cannot both promote, whatever the message loss, delay or reordering.
// A `prim` that loses such a race is dropped (logged) and the node joins the winner as SECOND.
// On peer loss: PRIM -> ALONE (a new generation; but a PRIM leaving its role with the VIP already
// gone only lets its fs finish the stop alone: no generation, nothing was acknowledged); SECOND ready
// -> ALONE if failover=on (WAIT if off); SECOND transient
// -> WAIT (inconsistent). failover can be switched at runtime (EvSetFailover): a WAIT node that stayed
// put because it was off takes over at the next step once it is on (same conditions as above). A started WAIT
// node with kUpToDate data and failover=on goes ALONE once the peer has been silent for heartbeat_timeout_ms
// since it started or last heard it.
//
// Witness (`<splitbrain>`): when configured, a node may become serving without the peer only after a
// ProbeWitness whose result was "reachable", and a serving node holds the VIP only under a lease:
// lease_until = max(send time of its own heartbeat echoed by the peer, start of a successful witness
// probe) + lease_ms. A peer that echoes heartbeat s promises not to take over before it has been silent
// heartbeat_timeout_ms since it received s; with lease_ms + pulse + max delay < heartbeat_timeout_ms
// the old primary has dropped the VIP before the other can add it, provided the witness is reachable
// by at most one node while the nodes cannot hear each other (see docs/state-machine.md). `primforce`
// is an override: it ignores data freshness, the witness and the lease.
//
// Scripts: one at a time. start: prestart, start_both, WAIT. Entering ALONE: persist, fs role alone,
// AddVip, start_prim. ALONE -> PRIM: persist, fs role primary. Entering SECOND: fs role secondary,
// start_second, persist kInconsistent, StartResync; ResyncDone(ok) persists kOutdated -> Ready.
// Leaving PRIM/ALONE: RemoveVip, stop_prim. Leaving SECOND: stop_second. stop: leave role, stop_both,
// poststop, STOP. A stop script that fails or times out is run again with force=true (the daemon
// reports kTimeout after nicestoptimeout and enforces forcestoptimeout on the forced run). A failing
// start script stops the module locally.
//
// Checkers/errd failures (`CheckFailed`) are counted within loop_interval; beyond maxloop the module
// stops locally. restart = RemoveVip, stop_prim, AddVip, start_prim (or stop_second+start_second);
// stopstart = full stop then start (the peer takes over meanwhile); stop = stop.
//
// Swap: only with PRIM + SECOND ready. The primary removes the VIP, runs stop_prim, becomes SECOND
// with `handing_over` set; the secondary, seeing that, runs stop_second, fs primary, AddVip, start_prim
// and becomes PRIM; the old primary then runs start_second and is SECOND ready. `swap` typed on the
// secondary is forwarded in its status (`swap_request`). defaultprim=<node>: the primary starts a swap
// by itself when that node is SECOND ready. lastprim: on a tie both-WAIT, the last primary wins.
//
// Failover record (for `state -v`): a node that is not serving notes a cause when the peer is lost,
// when the peer leaves PRIM/ALONE while connected (not handing over), or when it takes over in a swap;
// if it then becomes serving and its start_prim finishes, that is a failover (last_failover(): cause
// time, done time, reason). The cause is dropped when the node becomes SECOND, stops, or the peer
// serves again.
//
// Daemon restart without the module noticing (hamirrord SIGUSR2, then a new hamirrord): the exiting
// daemon asks HandoffRefusal() until it is "" (no transition, script, resync, swap or operator wish
// under way; the state Ready), takes MakeHandoff() and stops stepping (no heartbeat after it). The next
// daemon constructs a machine from the persisted facts and gives it EvAdopt{handoff} as its FIRST event:
// the machine resumes in the handed-over state without running a script, adding or removing the VIP or
// changing the fs role, as if the peer's last status had just arrived (its silence counts from now,
// which only delays a takeover). The witness lease carries over (lease_left_ms minus the gap): one that
// ran out during the gap makes a serving node step down at once, as it would have without the restart.
// The VIP outlives the old daemon only under that lease: a serving node hands over only with at least
// 3/4 of lease_ms left (when a lease applies: witness configured or peer connected, not primforce), and the
// daemon leaves a keeper that removes the VIP when the lease ends before a new daemon adopted it (the
// peer may take over from then on); the new daemon then takes the crash path.
//
// Every Command gets exactly one CommandReply in the same Step: accepted (it takes effect) or refused
// with a reason. `prim`/`second` typed on a node already in that role are accepted as no-ops.
//
// Contract with the daemon (the simulator models exactly this):
// - carry EVERY PeerStatus field on the wire (want_serve and prefer_second included: the connected
//   promotion handshake is unsafe without want_serve); store EVERY Persisted field (split_brain
//   included) durably before executing the actions that follow an ActPersist;
// - deliver EvScriptDone for every ActRunScript, EvWitness (or nothing: the core times the probe out)
//   for every ActProbeWitness, EvResyncDone for every ActStartResync not cancelled by ActStopResync;
// - the fs reports EvDataLinkLost when, in role primary, the peer stops acknowledging (sendtimeout),
//   and when it is set primary but cannot bring the secondary up to date from its dirty-zone record.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace hamirror::manager::core {

enum class NodeState : uint8_t { kStop = 0, kWait = 1, kAlone = 2, kPrim = 3, kSecond = 4 };
enum class Readiness : uint8_t { kReady, kTransient };
enum class DataState : uint8_t { kUnknown, kUpToDate, kOutdated, kInconsistent };
enum class Role : uint8_t { kNone, kPrim, kSecond };  // last role, for defaultprim="lastprim"
enum class FsRole : uint8_t { kPrimary, kSecondary, kAlone };
enum class Script : uint8_t {
  kPrestart,
  kStartBoth,
  kStartPrim,
  kStartSecond,
  kStopPrim,
  kStopSecond,
  kStopBoth,
  kPoststop
};
enum class ScriptResult : uint8_t { kOk, kFailed, kTimeout };
enum class Command : uint8_t {
  kStart,
  kStop,
  kForceStop,
  kRestart,
  kStopStart,
  kPrim,
  kSecond,
  kPrimForce,
  kSwap,
  kResync  // on a SECOND ready node: inconsistent again until a new resync into it is done
};
enum class FailAction : uint8_t { kRestart, kStopStart, kStop };

const char* ToString(NodeState s);  // "STOP", "WAIT", ...
const char* ToString(Readiness r);  // "ready", "transient"
const char* ToString(DataState d);
const char* ToString(Script s);   // "start_prim", ... (the bin/ script name)
const char* ToString(Command c);  // "prim", "swap", ...
const char* ToString(FsRole r);

// Exit code of `state -lq`.
inline int StateExitCode(NodeState s) { return static_cast<int>(s); }

struct Generation {
  uint64_t counter = 0;
  std::string author;  // node that started this generation; "" for the initial one
  bool operator==(const Generation&) const = default;
};

// Facts the daemon must store durably (write + fsync) when a Persist action says so, BEFORE executing
// the following actions, and hand back to the constructor after a restart.
struct Persisted {
  DataState data = DataState::kUnknown;
  Generation current;  // generation of the data this node holds
  Generation base;     // last generation both nodes held in sync
  Role last_role = Role::kNone;
  bool split_brain = false;  // both wrote since they parted: no automatic promotion until resolved
  uint64_t incarnation = 0;  // bumped by every NodeMachine construction (orders heartbeats)
  bool operator==(const Persisted&) const = default;
};

// A failover this node completed (see the file comment). Times are the caller's now_ms.
struct Failover {
  uint64_t detected_ms = 0;  // the peer seen lost, seen leaving PRIM/ALONE, or the swap begun
  uint64_t done_ms = 0;      // start_prim finished
  std::string reason;
  NodeState state = NodeState::kAlone;  // ALONE or PRIM
};

enum class DefaultPrimKind : uint8_t { kAlone, kNode, kLastPrim };

struct Config {
  std::string self;  // this node's name (cluster.xml)
  std::string peer;
  DefaultPrimKind defaultprim = DefaultPrimKind::kAlone;
  std::string defaultprim_node;  // when kNode
  bool failover = true;
  int maxloop = 3;
  uint64_t loop_interval_ms = 24ull * 3600 * 1000;
  uint64_t heartbeat_timeout_ms = 30000;  // <heart timeout>
  bool witness = false;                   // <splitbrain> configured
  uint64_t lease_ms = 20000;              // must be < heartbeat_timeout_ms - pulse - max delay
  // The peer's heartbeat thread repeats its last status while its event loop is busy in a step (an
  // fs role change blocks it for seconds): the repeats count as heard for this long after the last
  // fresh status, so a busy peer is not taken over; a peer whose loop hangs for good still is.
  uint64_t repeated_status_grace_ms = 20000;
  uint64_t witness_probe_interval_ms = 5000;  // < lease_ms
  uint64_t witness_probe_timeout_ms = 3000;   // no answer by then = unreachable
  uint64_t resync_retry_ms = 5000;
  uint64_t swap_request_ms = 60000;  // how long a forwarded swap request stays up
  // Distinct for every construction (the daemon: a random 64-bit id per process start). 0: use the
  // bumped Persisted::incarnation (fine when every ActPersist is stored, as the simulator does).
  uint64_t incarnation = 0;
};

// Payload of every heartbeat (built by MakeHeartbeat, carried by the heartbeat module).
struct PeerStatus {
  std::string from;
  NodeState state = NodeState::kStop;
  Readiness readiness = Readiness::kReady;
  Persisted data;                 // the sender's persisted facts (data state, generations)
  uint64_t incarnation = 0;       // the sender's incarnation (NodeMachine::incarnation())
  uint64_t seq = 0;               // increases within one incarnation
  uint64_t echo_seq = 0;          // last seq the sender received from the receiver (0: none)
  uint64_t echo_incarnation = 0;  // the receiver's incarnation that echo_seq belongs to
  bool want_serve = false;        // intent to become ALONE while connected (needs the receiver's echo)
  bool prefer_second = false;     // `second` typed: will not promote itself
  bool handing_over = false;      // swap: I stopped serving, my data equals yours, take over
  bool swap_request = false;      // swap typed on the secondary: primary, please hand over
  bool split_brain = false;       // I detected a split brain with you
};

// ---- Events ----
struct EvTick {};
struct EvPeerStatus {
  PeerStatus status;
};
struct EvPeerLost {};  // heartbeat module: all networks silent (optional, Tick also detects it)
// Answer to the outstanding ActProbeWitness. probe_id: copy ActProbeWitness::probe_id so that a late
// answer to an earlier probe is never taken for the current one (0: the current probe).
struct EvWitness {
  bool reachable = false;
  uint64_t probe_id = 0;
};
struct EvCommand {
  Command cmd;
  uint64_t id = 0;
};
struct EvScriptDone {
  Script script;
  ScriptResult result = ScriptResult::kOk;
};
struct EvCheckFailed {
  FailAction action = FailAction::kRestart;
  std::string what;
};
struct EvResyncDone {
  bool ok = true;
};
struct EvDataLinkLost {};  // fs: the peer stopped acknowledging (sendtimeout); fs now writes alone
// `hamirror failover on|off`: replaces Config::failover from now on (the daemon persists the choice and
// passes it in Config::failover after a restart).
struct EvSetFailover {
  bool on = true;
};
// What a daemon leaving the module running hands to the next one (see the file comment).
struct Handoff {
  NodeState state = NodeState::kStop;  // Ready in that state
  bool vip_held = false;
  bool fs_linked = false;          // serving: the fs replicates to the peer
  bool forced = false;             // serving through primforce (no lease enforced)
  uint64_t lease_left_ms = 0;      // witness lease left at the handoff (the new daemon subtracts the gap)
  std::optional<PeerStatus> peer;  // the peer's last status, when it was connected
};
// First event of a new machine only (refused, logged, otherwise).
struct EvAdopt {
  Handoff handoff;
};
using Event = std::variant<EvTick, EvPeerStatus, EvPeerLost, EvWitness, EvCommand, EvScriptDone,
                           EvCheckFailed, EvResyncDone, EvDataLinkLost, EvSetFailover, EvAdopt>;

// ---- Actions ----
struct ActRunScript {
  Script script;
  bool force = false;
};  // answer with EvScriptDone
struct ActAddVip {};
struct ActRemoveVip {};
struct ActSetFsRole {
  FsRole role;
};
struct ActStartResync {};  // pull from the peer into this node; answer with EvResyncDone
struct ActStopResync {};
struct ActPersist {
  Persisted facts;
};
struct ActSendStatus {};  // state changed: send a heartbeat now (MakeHeartbeat) instead of at pulse
struct ActProbeWitness {  // answer with EvWitness within witness_probe_timeout_ms (later ones are dropped)
  uint64_t probe_id = 0;
};
struct ActCommandReply {
  uint64_t id = 0;
  bool accepted = false;
  std::string reason;
};
struct ActLog {
  int level = 1;
  std::string message;
};  // 0 debug, 1 info, 2 warning, 3 error
using Action =
    std::variant<ActRunScript, ActAddVip, ActRemoveVip, ActSetFsRole, ActStartResync, ActStopResync,
                 ActPersist, ActSendStatus, ActProbeWitness, ActCommandReply, ActLog>;
std::string ToString(const Action& a);
std::string ToString(const Event& e);

class NodeMachine {
 public:
  // `persisted` is what the last ActPersist stored (default for a fresh node). The constructor bumps
  // persisted().incarnation: store persisted() before sending the first heartbeat. The node is in
  // STOP; send EvCommand{kStart} (boot="on") to start it. Call Step(now, EvTick{}) every ~100 ms.
  NodeMachine(Config config, Persisted persisted);

  // Feed one event at time now_ms (monotonic, never decreasing). Returns the actions, in order.
  std::vector<Action> Step(uint64_t now_ms, const Event& event);

  // Builds the heartbeat to send now (records its seq and send time for the lease).
  PeerStatus MakeHeartbeat(uint64_t now_ms);

  NodeState state() const { return state_; }
  Readiness readiness() const { return readiness_; }
  bool vip_held() const { return vip_; }
  const Persisted& persisted() const { return p_; }
  const Config& config() const { return cfg_; }
  bool peer_connected() const { return peer_connected_; }
  std::optional<PeerStatus> last_peer_status() const { return peer_; }
  bool split_brain() const { return p_.split_brain; }
  const std::string& wait_reason() const { return wait_reason_; }  // why WAIT, for `state -v`

  // now_ms of the step where this node entered its current state (readiness changes do not count).
  uint64_t state_since_ms() const { return state_since_; }
  // While connected: when this node saw the peer enter the state it last reported. *entered is false
  // when the peer was already in that state when (re)heard: the time is then a lower bound.
  std::optional<uint64_t> peer_state_since_ms(bool* entered) const;
  // The last failover since construction (the daemon keeps it across restarts); failovers() counts
  // them, so that a caller sees a new one.
  const std::optional<Failover>& last_failover() const { return last_failover_; }
  uint64_t failovers() const { return failovers_; }

  bool want_serve() const { return want_serve_; }
  uint64_t incarnation() const { return incarnation_; }

  // Daemon restart (see the file comment): why the module cannot be handed over now ("" = it can),
  // and what to hand over.
  std::string HandoffRefusal(uint64_t now_ms) const;
  Handoff MakeHandoff(uint64_t now_ms) const;
  // The last EvAdopt was accepted (the machine resumed the handed-over state).
  bool adopted() const { return adopted_; }
  // Checker/errd failures counted against maxloop at now_ms (within loop_interval), for `state -v`.
  int loop_count(uint64_t now_ms) const;

 private:
  // One queued step of a transition: run a script and wait for its EvScriptDone, or run `fn` now.
  struct Op {
    std::optional<Script> script;
    bool force = false;
    std::function<void()> fn;
  };
  enum class Compare : uint8_t { kSame, kIAmBehind, kPeerBehind, kSplitBrain };

  void Emit(Action a) { out_->push_back(std::move(a)); }
  void Log(int level, std::string msg);
  void Persist() { Emit(ActPersist{p_}); }
  void SetState(NodeState s, Readiness r);
  void Then(std::function<void()> fn) { ops_.push_back(Op{std::nullopt, false, std::move(fn)}); }
  void ThenScript(Script s, bool force = false) { ops_.push_back(Op{s, force, nullptr}); }
  void Pump();
  bool Busy() const { return script_running_ || !ops_.empty(); }

  void OnPeerStatus(const PeerStatus& st);
  void NotePeerState(bool was_connected, NodeState prev_state);
  void OnPeerLost();
  void OnCommand(const EvCommand& c);
  void OnScriptDone(const EvScriptDone& d);
  void OnCheckFailed(const EvCheckFailed& f);
  void OnResyncDone(const EvResyncDone& r);
  void OnWitness(const EvWitness& w);
  void OnAdopt(const Handoff& h);
  void CheckTimers();
  void MaybeProbeWitness();
  void Reconcile();
  void ReconcileWait();

  void QueueStart();
  void QueueLeaveRole();
  void QueueStop(bool force, bool then_start);
  void QueueBecomeAlone();
  void QueueBecomeSecond();
  void QueueHandover();
  void QueueTakeOver();
  void QueueRestartPrim();
  void ChangePrimToAlone(const char* why);
  // The peer stopped acknowledging while PRIM. Serving (VIP held): ALONE with a new generation. Leaving
  // the role with the VIP gone: the fs goes alone only so that the stop can finish, and no generation
  // is made (nothing written from now on was acknowledged to a client); the peer that took over is
  // then newer, and this node rejoins as SECOND without a split brain.
  void PeerStoppedAcknowledging(const char* why);
  void StepDown(const std::string& why);
  void AddVipIfAllowed();
  void BumpGeneration();
  void SetIntent(bool on);
  void MarkSplitBrain();
  void NoteFailoverCause(std::string reason);
  void FinishFailover(const std::string& how);
  void Accept(uint64_t id);
  void Refuse(uint64_t id, std::string reason);

  Compare CompareWithPeer() const;
  bool PeerServing() const;
  bool IPreferred() const;
  bool LeaseValid() const;
  bool PeerEchoesIntent() const;
  uint64_t SilenceStart() const { return last_heard_ > started_at_ ? last_heard_ : started_at_; }

  Config cfg_;
  Persisted p_;
  NodeState state_ = NodeState::kStop;
  Readiness readiness_ = Readiness::kReady;
  bool vip_ = false;
  uint64_t now_ = 0;
  std::vector<Action>* out_ = nullptr;

  std::deque<Op> ops_;
  bool script_running_ = false;
  Script running_script_ = Script::kPrestart;
  bool running_force_ = false;
  bool prestart_ran_ = false, both_started_ = false, prim_started_ = false, second_started_ = false;
  bool stopping_ = false;
  bool start_after_stop_ = false;

  // Peer knowledge (volatile).
  std::optional<PeerStatus> peer_;
  bool peer_connected_ = false;
  uint64_t last_heard_ = 0;   // receipt time of the last PeerStatus (a repeat within the grace too)
  uint64_t fresh_heard_ = 0;  // receipt time of the last PeerStatus with a new sequence number
  uint64_t started_at_ = 0;   // time of the last start command
  uint64_t incarnation_ = 0;
  uint64_t my_seq_ = 0;
  uint64_t echo_seq_ = 0;                           // last seq received from the peer
  uint64_t echo_inc_ = 0;                           // ... and the peer incarnation that sent it
  std::deque<uint64_t> retired_peer_incs_;          // incarnations the peer has left (bounded)
  std::deque<std::pair<uint64_t, uint64_t>> sent_;  // (seq, send time), bounded

  // Witness and lease.
  // Witness probes in flight (id, start time), oldest first. Several may overlap (up to
  // kMaxProbes): one slow probe (a `ping` started under load) must not let a serving node's lease run
  // out while a later one could renew it.
  std::deque<std::pair<uint64_t, uint64_t>> probes_;
  uint64_t probe_id_ = 0;
  bool probed_once_ = false;
  uint64_t last_probe_ = 0;
  bool have_witness_ok_ = false;
  uint64_t witness_ok_at_ = 0;  // start time of the last successful probe
  // A probe failed since the last success: this node's own network was down. The peer's silence
  // counts only from when the witness answers again (witness_back_at_): heartbeats need a moment too.
  bool witness_failed_ = false;
  uint64_t witness_back_at_ = 0;
  uint64_t lease_until_ = 0;
  bool forced_ = false;  // serving through primforce: the lease is not enforced

  // Intents and flags.
  bool want_serve_ = false;
  uint64_t intent_seq_ = 0;  // first heartbeat seq that carried want_serve
  bool prefer_second_ = false;
  bool discard_mine_ = false;  // `second` typed in a split brain: resync from the peer anyway
  bool want_prim_ = false;
  bool want_primforce_ = false;
  bool prim_in_split_ = false;  // `prim` typed while a split brain was reported: it chooses this side
  bool handing_over_ = false;
  // Leaving PRIM/ALONE for good (step down, stop): set by QueueLeaveRole, cleared on reaching WAIT or
  // STOP. With the VIP already gone, what the fs writes from then on (the application's own stop) was
  // never acknowledged through the VIP.
  bool leaving_role_ = false;
  uint64_t handover_deadline_ = 0;
  bool swap_request_ = false;
  uint64_t swap_request_until_ = 0;
  bool resyncing_ = false;
  uint64_t resync_retry_at_ = 0;
  // Serving: the fs replicates to the peer (role primary), so a resync into it can run; while ALONE
  // that is set when the peer waits for a resync, and dropped when the link fails (retried later).
  bool linked_ = false;
  uint64_t link_retry_at_ = 0;
  std::string wait_reason_;
  std::deque<uint64_t> failures_;  // times of CheckFailed, for maxloop

  // For `state -v`: time in state, and the failover record.
  uint64_t state_since_ = 0;
  uint64_t peer_state_since_ = 0;
  bool peer_state_entered_ = false;
  struct FailoverCause {
    uint64_t detected_ms = 0;
    std::string reason;
  };
  std::optional<FailoverCause> failover_cause_;
  std::optional<Failover> last_failover_;
  uint64_t failovers_ = 0;

  bool stepped_ = false;  // a Step ran (EvAdopt is only valid as the first event)
  bool adopted_ = false;
};

}  // namespace hamirror::manager::core
