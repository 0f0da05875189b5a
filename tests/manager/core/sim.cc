// Simulator: see sim.h for the model and the invariants.
#include "tests/manager/core/sim.h"

#include <cstdio>
#include <utility>

namespace hamirror::manager::core::sim {

namespace {

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

const char* kName[2] = {"A", "B"};

bool ServingState(NodeState s) { return s == NodeState::kAlone || s == NodeState::kPrim; }

}  // namespace

struct Sim::Node {
  std::unique_ptr<NodeMachine> m;
  bool alive = true;
  uint64_t inc = 0;  // sim incarnation: results meant for a dead machine are dropped
  Persisted disk;
  bool vip = false;
  FsRole fs = FsRole::kSecondary;
  bool fs_synced = false;  // fs primary and its catch-up of the secondary succeeded
  bool script_out = false;
  std::vector<std::pair<Script, ScriptResult>> fail_next;
  std::vector<std::pair<Script, uint64_t>> slow_next;  // (script, duration ms) of its next run
  uint32_t head = 0;                                   // last write this disk holds (truth)
  bool inconsistent = false;  // a resync into this disk started and has not finished (truth)
  uint64_t resync_token = 0;
  uint64_t knowledge = 0;  // latest send time of a peer heartbeat this node received
  bool has_knowledge = false;
  bool override_ = false;                // operator override (primforce, or prim on never-synchronised data)
  uint64_t reference_since = 0;          // an override made this disk the reference at this time
  std::optional<core::Command> pending;  // accepted stop/start whose effect is checked
  uint64_t pending_deadline = 0;
  // Daemon restart: the machine is not stepped (the old one is kept for its state) until kAdopt.
  bool daemon_down = false;
  Handoff handoff;
  uint64_t handoff_at = 0;
  bool keeper_fired = false;  // the lease ended during the gap: VIP removed, no adoption
};

struct Sim::Item {
  uint64_t t;
  uint64_t seq;
  Kind kind;
  int node;
  uint64_t inc;
  std::optional<Event> ev;
  uint64_t send_time;
  uint64_t token;
};

bool Sim::Later::operator()(const Item& a, const Item& b) const {
  return a.t != b.t ? a.t > b.t : a.seq > b.seq;
}

Sim::Sim(SimOptions options) : o_(std::move(options)), rng_(o_.seed) {
  q_ = new std::priority_queue<Item, std::vector<Item>, Later>();
  writes_.push_back(Write{0, 0, 0});
  for (int i = 0; i < 2; ++i) {
    n_[i] = std::make_unique<Node>();
    n_[i]->m = std::make_unique<NodeMachine>(MakeConfig(i), Persisted{});
    n_[i]->disk = n_[i]->m->persisted();
    Schedule(i * (kTickMs / 2), Kind::kTick, i);
    Schedule(i * (kPulseMs / 2) + 1, Kind::kPulse, i);
    Schedule(i * 50 + 7, Kind::kWrite, i);
  }
  if (!o_.witness) witness_reach_[0] = witness_reach_[1] = false;
}

Sim::~Sim() { delete q_; }

Config Sim::MakeConfig(int i) const {
  Config c;
  c.self = kName[i];
  c.peer = kName[1 - i];
  c.defaultprim = o_.defaultprim;
  c.defaultprim_node = o_.defaultprim_node;
  c.failover = o_.failover;
  c.maxloop = 3;
  c.loop_interval_ms = 5000;
  c.heartbeat_timeout_ms = kHeartbeatTimeoutMs;
  c.witness = o_.witness;
  c.lease_ms = kLeaseMs;
  c.witness_probe_interval_ms = 150;
  c.witness_probe_timeout_ms = 100;
  c.resync_retry_ms = 300;
  c.swap_request_ms = 2000;
  return c;
}

void Sim::Tr(const std::string& line) {
  if (!o_.trace) return;
  char buf[32];
  std::snprintf(buf, sizeof buf, "t=%6llu ", static_cast<unsigned long long>(now_));
  trace_.push_back(buf + line);
}

void Sim::Fail(const std::string& what) {
  if (!violation_.empty()) return;
  violation_ = "t=" + std::to_string(now_) + ": " + what + " [" + Describe() + "]";
  Tr("VIOLATION: " + what);
}

std::string Sim::Describe() const {
  std::string s;
  for (int i = 0; i < 2; ++i) {
    const Node& n = *n_[i];
    s += std::string(i ? " | " : "") + kName[i] + ": ";
    if (!n.alive) {
      s += "down";
    } else {
      s += std::string(ToString(n.m->state())) + "/" + ToString(n.m->readiness()) + (n.vip ? " vip" : "");
    }
    s += std::string(" data=") + ToString(n.disk.data) + " gen=" + std::to_string(n.disk.current.counter) +
         n.disk.current.author + " head=" + std::to_string(n.head) + (n.inconsistent ? " inconsistent" : "");
  }
  s += std::string(" | link ") + (link_up_[0] ? "A>B " : "") + (link_up_[1] ? "B>A " : "") +
       "loss=" + std::to_string(static_cast<int>(loss_ * 100)) + "% witness " +
       (witness_reach_[0] ? "A" : "") + (witness_reach_[1] ? "B" : "");
  return s;
}

void Sim::Schedule(uint64_t at, Kind kind, int node, std::optional<Event> ev, uint64_t send_time,
                   uint64_t token) {
  q_->push(Item{at, seq_++, kind, node, n_[node] ? n_[node]->inc : 0, std::move(ev), send_time, token});
}

void Sim::RunFor(uint64_t ms) { ProcessUntil(now_ + ms); }

void Sim::ProcessUntil(uint64_t t) {
  while (!q_->empty() && q_->top().t <= t && violation_.empty()) {
    Item it = q_->top();
    q_->pop();
    now_ = it.t;
    Process(it);
  }
  if (violation_.empty()) now_ = t;
}

void Sim::Process(Item& it) {
  Node& n = *n_[it.node];
  switch (it.kind) {
    case Kind::kTick:
      Schedule(now_ + kTickMs, Kind::kTick, it.node);
      if (n.pending && now_ >= n.pending_deadline && n.alive) {
        core::Command c = *n.pending;
        n.pending.reset();
        bool stopped = n.m->state() == NodeState::kStop;
        if ((c == core::Command::kStop || c == core::Command::kForceStop) && !stopped)
          Fail(std::string("accepted ") + ToString(c) + " on " + kName[it.node] + " did not take effect");
        if (c == core::Command::kStart && stopped)
          Fail(std::string("accepted start on ") + kName[it.node] + " did not take effect");
      }
      StepNode(it.node, EvTick{});
      return;
    case Kind::kPulse:
      Schedule(now_ + kPulseMs, Kind::kPulse, it.node);
      SendHeartbeat(it.node);
      return;
    case Kind::kWrite:
      Schedule(now_ + 100, Kind::kWrite, it.node);
      if (app_writes_ && ServingNow(it.node) && n.m->readiness() == Readiness::kReady) DoWrite(it.node);
      return;
    case Kind::kChaos: ChaosStep(); return;
    case Kind::kRestart:
      if (!n.alive) Restart(it.node);
      return;
    case Kind::kAdopt:
      if (n.alive && n.daemon_down && it.inc == n.inc) FinishDaemonRestart(it.node);
      return;
    case Kind::kKeeper:
      if (n.alive && n.daemon_down && it.inc == n.inc) {
        Tr(std::string(kName[it.node]) + " KEEPER: lease over during the daemon restart, VIP removed");
        n.vip = false;
        n.keeper_fired = true;
      }
      return;
    case Kind::kResyncEnd: {
      if (!n.alive || it.token != n.resync_token) return;
      int j = 1 - it.node;
      Node& src = *n_[j];
      const bool reachable = src.alive && BothLinks() && ServingNow(j);
      if (reachable && src.fs != FsRole::kPrimary) {
        // The source has not linked its fs to us yet: the resync has not begun (the daemon waits).
        Schedule(now_ + 100, Kind::kResyncEnd, it.node, std::nullopt, 0, n.resync_token);
        return;
      }
      bool ok = reachable;
      if (ok && chaos_ && o_.script_failures && rng_() % 10 == 0) ok = false;  // a resync that failed
      if (ok) {
        n.head = src.head;
        n.inconsistent = false;
        src.fs_synced = true;  // the source's fs now mirrors synchronously
      }
      ++n.resync_token;
      StepNode(it.node, EvResyncDone{ok});
      return;
    }
    case Kind::kDeliver:
      if (!n.alive || n.daemon_down) return;  // no daemon: nobody reads the datagram
      if (it.ev && std::holds_alternative<EvPeerStatus>(*it.ev)) {
        if (!link_up_[1 - it.node]) return;  // the partition began while it was in flight
        n.knowledge = std::max(n.knowledge, it.send_time);
        n.has_knowledge = true;
      } else if (it.inc != n.inc) {
        return;  // result for a machine that crashed since
      }
      if (it.ev && std::holds_alternative<EvWitness>(*it.ev)) {
        // Reachability at answer time.
        StepNode(it.node, EvWitness{witness_reach_[it.node], std::get<EvWitness>(*it.ev).probe_id});
        return;
      }
      if (it.ev && std::holds_alternative<EvScriptDone>(*it.ev)) n.script_out = false;
      StepNode(it.node, *it.ev);
      return;
  }
}

void Sim::StepNode(int i, const Event& e) {
  Node& n = *n_[i];
  if (!n.alive || n.daemon_down || !violation_.empty()) return;
  NodeState before = n.m->state();
  if (std::holds_alternative<EvAdopt>(e)) before = std::get<EvAdopt>(e).handoff.state;  // it never left
  if (o_.trace && !std::holds_alternative<EvTick>(e)) Tr(std::string(kName[i]) + " <- " + ToString(e));
  std::optional<uint64_t> cmd;
  if (auto* c = std::get_if<EvCommand>(&e)) cmd = c->id;
  std::vector<Action> actions = n.m->Step(now_, e);
  if (o_.trace && std::holds_alternative<EvTick>(e) && !actions.empty())
    Tr(std::string(kName[i]) + " <- tick");
  Execute(i, actions, cmd);
  CheckAfterStep(i, before);
  CheckGlobal();
}

void Sim::Execute(int i, const std::vector<Action>& actions, const std::optional<uint64_t>& cmd_id) {
  Node& n = *n_[i];
  Node& peer = *n_[1 - i];
  int replies = 0;
  for (const Action& a : actions) {
    if (o_.trace) Tr(std::string("   ") + kName[i] + " -> " + ToString(a));
    std::visit(Overloaded{
                   [&](const ActRunScript& x) {
                     if (n.script_out) Fail(std::string("two scripts at once on ") + kName[i]);
                     if (x.script == Script::kStopPrim && n.vip) Fail("stop_prim run while the VIP is held");
                     n.script_out = true;
                     ScriptResult r = ScriptResult::kOk;
                     for (auto it = n.fail_next.begin(); it != n.fail_next.end(); ++it) {
                       if (it->first == x.script) {
                         r = it->second;
                         n.fail_next.erase(it);
                         break;
                       }
                     }
                     if (chaos_ && o_.script_failures) {
                       uint64_t d = rng_() % 100;
                       if (d < 2)
                         r = ScriptResult::kFailed;
                       else if (d < 3)
                         r = ScriptResult::kTimeout;
                     }
                     uint64_t dur = r == ScriptResult::kTimeout ? 300 : rng_() % 300;
                     for (auto it = n.slow_next.begin(); it != n.slow_next.end(); ++it) {
                       if (it->first == x.script) {
                         dur = it->second;
                         n.slow_next.erase(it);
                         break;
                       }
                     }
                     Schedule(now_ + dur, Kind::kDeliver, i, EvScriptDone{x.script, r});
                   },
                   [&](const ActAddVip&) {
                     if (n.vip) Fail(std::string("VIP added twice on ") + kName[i]);
                     n.vip = true;
                   },
                   [&](const ActRemoveVip&) { n.vip = false; },
                   [&](const ActSetFsRole& x) {
                     n.fs = x.role;
                     n.fs_synced = false;
                     if (x.role == FsRole::kPrimary) {
                       // The fs connects and resyncs the peer: at once from its record when the peer
                       // was in sync, or by the resync the peer waits for (kResyncEnd); else it
                       // reports.
                       if (peer.alive && BothLinks() && peer.m->state() == NodeState::kSecond &&
                           peer.fs == FsRole::kSecondary && peer.inconsistent) {
                         n.fs_synced = false;  // resync under way: live writes go on, the end copies
                       } else if (peer.alive && BothLinks() && peer.m->state() == NodeState::kSecond &&
                                  peer.fs == FsRole::kSecondary && !peer.inconsistent) {
                         peer.head = n.head;
                         n.fs_synced = true;
                       } else {
                         n.fs_synced = false;
                         Schedule(now_, Kind::kDeliver, i, EvDataLinkLost{});
                       }
                     }
                   },
                   [&](const ActStartResync&) {
                     n.inconsistent = true;
                     ++n.resync_token;
                     Schedule(now_ + 100 + rng_() % 1400, Kind::kResyncEnd, i, std::nullopt, 0,
                              n.resync_token);
                   },
                   [&](const ActStopResync&) { ++n.resync_token; },
                   [&](const ActPersist& x) { n.disk = x.facts; },
                   [&](const ActSendStatus&) { SendHeartbeat(i); },
                   [&](const ActProbeWitness& x) {
                     uint64_t d = rng_() % 100;
                     if (d < 3) return;  // the probe gets lost: the machine times it out
                     // 5 % answer after the machine's timeout (100 ms): they must be ignored.
                     uint64_t delay = d < 8 ? 100 + rng_() % 300 : 10 + rng_() % 80;
                     Schedule(now_ + delay, Kind::kDeliver, i, EvWitness{false, x.probe_id});
                   },
                   [&](const ActCommandReply& x) {
                     if (!cmd_id || x.id != *cmd_id) {
                       Fail("command reply for an unknown command");
                       return;
                     }
                     ++replies;
                     if (!x.accepted && x.reason.empty()) Fail("command refused without a reason");
                   },
                   [&](const ActLog&) {},
               },
               a);
  }
  if (cmd_id && replies != 1) Fail("command got " + std::to_string(replies) + " replies");
}

bool Sim::ServingNow(int i) const {
  const Node& n = *n_[i];
  return n.alive && n.vip && ServingState(n.m->state());
}

std::string Sim::StaleReason(int i) const {
  const Node& x = *n_[i];
  if (x.inconsistent) return "its data is inconsistent (resync unfinished)";
  const Node& y = *n_[1 - i];
  if (y.disk.data != DataState::kUpToDate || !x.has_knowledge) return "";
  // Oldest write the peer holds and we lack (trees: walk both heads to their common ancestor).
  uint32_t a = x.head, b = y.head, oldest_missing = 0;
  while (writes_[b].depth > writes_[a].depth) {
    oldest_missing = b;
    b = writes_[b].parent;
  }
  while (writes_[a].depth > writes_[b].depth) a = writes_[a].parent;
  while (a != b) {
    oldest_missing = b;
    a = writes_[a].parent;
    b = writes_[b].parent;
  }
  if (oldest_missing != 0 && writes_[oldest_missing].ack_time <= x.knowledge &&
      writes_[oldest_missing].ack_time > x.reference_since) {
    return "it lacks write #" + std::to_string(oldest_missing) +
           " acknowledged by the peer at t=" + std::to_string(writes_[oldest_missing].ack_time) +
           ", before its last news from the peer (sent t=" + std::to_string(x.knowledge) + ")";
  }
  return "";
}

void Sim::CheckAfterStep(int i, NodeState before) {
  Node& n = *n_[i];
  if (!n.alive) return;
  NodeState after = n.m->state();
  if (n.m->vip_held() != n.vip) Fail("VIP bookkeeping of the machine differs from its actions");
  if (n.vip && !ServingState(after))
    Fail(std::string("VIP still held after leaving to ") + ToString(after) + " on " + kName[i]);
  if (!ServingState(before) && ServingState(after) && !n.override_) {
    std::string why = StaleReason(i);
    if (!why.empty()) Fail(std::string("stale node ") + kName[i] + " became " + ToString(after) + ": " + why);
  }
  // The operator declared this data the reference: from now on it is, inconsistent or not.
  if (!ServingState(before) && ServingState(after) && n.override_) {
    n.inconsistent = false;
    n.reference_since = now_;  // the peer's writes up to now are set aside by the operator
  }
  if (ServingState(before) && !ServingState(after)) n.override_ = false;
  if (n.pending) {  // the accepted command took effect
    bool stopped = after == NodeState::kStop;
    if ((*n.pending == core::Command::kStart) != stopped) n.pending.reset();
  }
}

void Sim::CheckGlobal() {
  bool applies = dual_check_ && ((o_.witness && o_.safe_witness) || !ever_impaired_);
  if (applies && ServingNow(0) && ServingNow(1)) Fail("two serving nodes (PRIM/ALONE with the VIP) at once");
  for (int i = 0; i < 2; ++i) {
    const Node& p = *n_[i];
    const Node& s = *n_[1 - i];
    if (p.alive && p.fs == FsRole::kPrimary && p.fs_synced && s.alive && s.m->state() == NodeState::kSecond &&
        s.fs == FsRole::kSecondary && !s.inconsistent && p.head != s.head) {
      Fail("primary and in-sync secondary hold different data");
    }
  }
}

void Sim::SendHeartbeat(int i) {
  Node& n = *n_[i];
  if (!n.alive || n.daemon_down) return;
  PeerStatus st = n.m->MakeHeartbeat(now_);
  if (!link_up_[i]) return;
  if (loss_ > 0 && static_cast<double>(rng_() % 1000) < loss_ * 1000) return;
  Schedule(now_ + 1 + rng_() % kMaxDelayMs, Kind::kDeliver, 1 - i, EvPeerStatus{std::move(st)}, now_);
}

void Sim::DoWrite(int i) {
  Node& x = *n_[i];
  Node& y = *n_[1 - i];
  if (x.fs == FsRole::kPrimary) {
    const bool peer_there =
        y.alive && BothLinks() && y.m->state() == NodeState::kSecond && y.fs == FsRole::kSecondary;
    // A resync into the peer is under way: the write is replicated live and the resync's end copies
    // the source's state (kResyncEnd).
    const bool resyncing = !x.fs_synced && peer_there && y.inconsistent;
    bool ok = resyncing || (x.fs_synced && peer_there && !y.inconsistent);
    if (!ok) {
      StepNode(i, EvDataLinkLost{});  // sendtimeout: the fs carries on alone and says so
      if (!ServingNow(i) || !violation_.empty()) return;
    } else if (!resyncing && y.head != x.head) {
      Fail("secondary diverged from the primary");
      return;
    }
  }
  if (x.fs == FsRole::kSecondary) {
    Fail(std::string("serving node ") + kName[i] + " has fs role secondary");
    return;
  }
  writes_.push_back(Write{x.head, writes_[x.head].depth + 1, now_});
  x.head = static_cast<uint32_t>(writes_.size() - 1);
  if (x.fs == FsRole::kPrimary && x.fs_synced) y.head = x.head;
}

// ---------------------------------------------------------------------------------------------
// Manual driving.

ActCommandReply Sim::Command(int i, core::Command cmd) {
  Node& n = *n_[i];
  uint64_t id = next_cmd_id_++;
  if (!n.alive) return ActCommandReply{id, false, "node down"};
  if (n.daemon_down) return ActCommandReply{id, false, "hamirrord restarting"};
  Tr(std::string(kName[i]) + " operator: " + ToString(cmd));
  NodeState before = n.m->state();
  DataState data_before = n.disk.data;
  bool split_before = n.m->split_brain();
  std::vector<Action> actions = n.m->Step(now_, EvCommand{cmd, id});
  ActCommandReply reply{id, false, "no reply"};
  for (const Action& a : actions)
    if (auto* r = std::get_if<ActCommandReply>(&a)) reply = *r;
  Execute(i, actions, id);
  if (reply.accepted) {
    n.pending.reset();
    if (cmd == core::Command::kStop || cmd == core::Command::kForceStop || cmd == core::Command::kStart) {
      n.pending = cmd;
      n.pending_deadline = now_ + 6000;
    }
    n.override_ = false;
    if (cmd == core::Command::kPrimForce ||
        (cmd == core::Command::kPrim && (data_before == DataState::kUnknown || split_before))) {
      n.override_ = true;
      if (cmd == core::Command::kPrimForce && chaos_) dual_check_ = false;
    }
  }
  CheckAfterStep(i, before);
  CheckGlobal();
  return reply;
}

void Sim::SetLink(bool a_to_b, bool b_to_a, double loss) {
  link_up_[0] = a_to_b;
  link_up_[1] = b_to_a;
  loss_ = loss;
  if (Impaired()) ever_impaired_ = true;
  Tr(std::string("network: ") + (a_to_b ? "A>B " : "") + (b_to_a ? "B>A " : "") + "loss " +
     std::to_string(loss));
}

void Sim::SetWitness(bool a_reaches, bool b_reaches) {
  witness_reach_[0] = a_reaches;
  witness_reach_[1] = b_reaches;
  Tr(std::string("witness reachable by: ") + (a_reaches ? "A " : "") + (b_reaches ? "B" : ""));
}

void Sim::Crash(int i) {
  Node& n = *n_[i];
  if (!n.alive) return;
  Tr(std::string(kName[i]) + " CRASH");
  n.alive = false;
  n.m.reset();
  n.vip = false;
  n.script_out = false;
  n.fs = FsRole::kSecondary;
  n.fs_synced = false;
  ++n.resync_token;
  ++n.inc;
  n.pending.reset();
  n.override_ = false;
  n.daemon_down = false;
}

void Sim::Restart(int i) {
  Node& n = *n_[i];
  if (n.alive) return;
  Tr(std::string(kName[i]) + " RESTART");
  n.alive = true;
  ++n.inc;
  n.m = std::make_unique<NodeMachine>(MakeConfig(i), n.disk);
  n.disk = n.m->persisted();
  Command(i, core::Command::kStart);
}

std::string Sim::BeginDaemonRestart(int i, uint64_t gap_ms) {
  Node& n = *n_[i];
  if (!n.alive || n.daemon_down) return "node down or hamirrord already restarting";
  std::string refusal = n.m->HandoffRefusal(now_);
  if (!refusal.empty()) return refusal;
  n.handoff = n.m->MakeHandoff(now_);
  n.handoff_at = now_;
  n.daemon_down = true;
  n.keeper_fired = false;
  n.pending.reset();
  ++n.inc;  // answers meant for the old machine (witness probes) are dropped
  Tr(std::string(kName[i]) + " DAEMON EXIT (module left running), back in " + std::to_string(gap_ms) + " ms");
  Schedule(now_ + gap_ms, Kind::kAdopt, i);
  const Handoff& h = n.handoff;
  if (h.vip_held && !h.forced && (o_.witness || h.peer)) Schedule(now_ + h.lease_left_ms, Kind::kKeeper, i);
  return "";
}

void Sim::FinishDaemonRestart(int i) {
  Node& n = *n_[i];
  n.daemon_down = false;
  ++n.inc;
  n.m = std::make_unique<NodeMachine>(MakeConfig(i), n.disk);
  n.disk = n.m->persisted();
  if (n.keeper_fired) {  // no record to adopt: the crash path (boot on)
    Tr(std::string(kName[i]) + " DAEMON START (crash path: the keeper released the VIP)");
    Command(i, core::Command::kStart);
    return;
  }
  Handoff h = n.handoff;
  const uint64_t gap = now_ - n.handoff_at;
  h.lease_left_ms = h.lease_left_ms > gap ? h.lease_left_ms - gap : 0;
  Tr(std::string(kName[i]) + " DAEMON START (adopting)");
  StepNode(i, EvAdopt{h});
}

bool Sim::daemon_down(int i) const { return n_[i]->daemon_down; }

void Sim::FailNextScript(int i, Script script, ScriptResult result) {
  n_[i]->fail_next.emplace_back(script, result);
}

void Sim::SlowNextScript(int i, Script script, uint64_t ms) { n_[i]->slow_next.emplace_back(script, ms); }

void Sim::CheckFailure(int i, FailAction action) { StepNode(i, EvCheckFailed{action, "sim checker"}); }

void Sim::Deliver(int i, const Event& e) { StepNode(i, e); }

NodeState Sim::state(int i) const { return n_[i]->alive ? n_[i]->m->state() : NodeState::kStop; }
Readiness Sim::readiness(int i) const { return n_[i]->alive ? n_[i]->m->readiness() : Readiness::kReady; }
bool Sim::vip(int i) const { return n_[i]->vip; }
bool Sim::alive(int i) const { return n_[i]->alive; }
const Persisted& Sim::disk(int i) const { return n_[i]->disk; }
const NodeMachine* Sim::machine(int i) const { return n_[i]->m.get(); }

// ---------------------------------------------------------------------------------------------
// Randomised run.

void Sim::ChaosStep() {
  if (!chaos_) return;
  Schedule(now_ + 100 + rng_() % 700, Kind::kChaos, 0);
  uint64_t r = rng_() % 100;
  if (r < 30 && o_.net_faults) {
    if (Impaired()) {
      SetLink(true, true, 0);
      perfect_since_ = now_;  // the witness keeps its side until both have heard each other again
    } else if (now_ >= perfect_since_ + 400) {
      uint64_t kind = rng_() % 4;
      if (kind == 0)
        SetLink(true, true, 0.1 + static_cast<double>(rng_() % 60) / 100);
      else if (kind == 1)
        SetLink(false, false);
      else if (kind == 2)
        SetLink(false, true);
      else
        SetLink(true, false);
      if (o_.witness) {
        if (o_.safe_witness) {
          uint64_t side = rng_() % 3;
          SetWitness(side == 0, side == 1);
        } else {
          SetWitness(rng_() % 2, rng_() % 2);
        }
      }
    }
    return;
  }
  if (r < 36 && o_.net_faults && o_.witness && !Impaired() &&
      (!o_.safe_witness || now_ >= perfect_since_ + 300)) {
    SetWitness(rng_() % 4 != 0, rng_() % 4 != 0);  // while both hear each other, anything goes
    return;
  }
  if (r < 39 && o_.daemon_restarts) {
    int i = static_cast<int>(rng_() % 2);
    // Mostly quicker than the heartbeat timeout, sometimes not (the peer may then take over); never
    // quicker than a network delay (a process start is not: the incarnations' first heartbeats must
    // not overtake each other, which the core's incarnation filter does not order).
    (void)BeginDaemonRestart(i, kMaxDelayMs + (rng_() % 4 == 0 ? rng_() % 1400 : rng_() % 300));
    return;
  }
  if (r < 42 && o_.crashes) {
    int i = static_cast<int>(rng_() % 2);
    if (n_[i]->alive) {
      Crash(i);
      Schedule(now_ + 200 + rng_() % 2300, Kind::kRestart, i);
    }
    return;
  }
  if (r < 75 && o_.commands) {
    int i = static_cast<int>(rng_() % 2);
    if (o_.toggle_failover && rng_() % 6 == 0) {
      Deliver(i, EvSetFailover{rng_() % 2 == 0});
      return;
    }
    static const core::Command kCmds[] = {
        core::Command::kPrim,      core::Command::kPrim,      core::Command::kSecond,
        core::Command::kSecond,    core::Command::kSwap,      core::Command::kSwap,
        core::Command::kSwap,      core::Command::kStop,      core::Command::kStart,
        core::Command::kStart,     core::Command::kStart,     core::Command::kRestart,
        core::Command::kStopStart, core::Command::kForceStop, core::Command::kPrimForce,
        core::Command::kResync};
    Command(i, kCmds[rng_() % (sizeof kCmds / sizeof kCmds[0])]);
    return;
  }
  if (r < 85 && o_.check_failures) {
    int i = static_cast<int>(rng_() % 2);
    if (n_[i]->alive) {
      uint64_t a = rng_() % 10;
      CheckFailure(i, a < 7 ? FailAction::kRestart : a < 9 ? FailAction::kStopStart : FailAction::kStop);
    }
    return;
  }
}

std::string Sim::RunRandom() {
  // First start, as an operator does it: start both, prim on one, second on the other.
  Command(0, core::Command::kStart);
  Command(1, core::Command::kStart);
  RunFor(600);
  int first = static_cast<int>(rng_() % 2);
  Command(first, core::Command::kPrim);
  Command(1 - first, core::Command::kSecond);
  chaos_ = true;
  Schedule(now_ + 100, Kind::kChaos, 0);
  RunFor(o_.chaos_ms ? o_.chaos_ms : 3000 + rng_() % 12000);
  chaos_ = false;
  if (!violation_.empty()) return violation_;

  // Heal everything, then let the operator bring the pair back and check it converges.
  Tr("---- heal ----");
  SetLink(true, true, 0);
  RunFor(300);  // both hear each other again before the witness answers both
  if (o_.witness) SetWitness(true, true);
  for (int i = 0; i < 2; ++i) {
    n_[i]->fail_next.clear();
    n_[i]->slow_next.clear();
  }
  for (int i = 0; i < 2; ++i) Restart(i);
  RunFor(2500);
  for (int i = 0; i < 2; ++i)
    if (state(i) == NodeState::kStop) Command(i, core::Command::kStart);
  RunFor(3000);
  auto converged = [this] {
    for (int i = 0; i < 2; ++i) {
      if (state(i) == NodeState::kPrim && readiness(i) == Readiness::kReady && vip(i) &&
          state(1 - i) == NodeState::kSecond && readiness(1 - i) == Readiness::kReady &&
          n_[i]->head == n_[1 - i]->head)
        return true;
    }
    return false;
  };
  // Without operator commands in the chaos phase, a pair with no split brain and at least one up-to-date
  // disk must come back on its own.
  if (!o_.commands && violation_.empty() && !disk(0).split_brain && !disk(1).split_brain &&
      (disk(0).data == DataState::kUpToDate || disk(1).data == DataState::kUpToDate)) {
    RunFor(5000);
    if (violation_.empty() && !converged()) Fail("no PRIM/SECOND ready without the operator after healing");
  }
  for (int round = 0; round < 2 && !converged() && violation_.empty(); ++round) {
    Tr("---- operator procedure ----");
    int serving = ServingNow(0) ? 0 : ServingNow(1) ? 1 : -1;
    if (serving >= 0) {
      if (state(1 - serving) == NodeState::kStop) Command(1 - serving, core::Command::kStart);
      Command(1 - serving, core::Command::kSecond);
    } else {
      int pick = disk(0).data == DataState::kUpToDate ? 0 : disk(1).data == DataState::kUpToDate ? 1 : -1;
      bool ok = pick >= 0 && Command(pick, core::Command::kPrim).accepted;
      if (!ok) {
        pick = 0;
        Command(0, core::Command::kPrimForce);
      }
      Command(1 - pick, core::Command::kSecond);
    }
    RunFor(5000);
  }
  if (violation_.empty() && !converged())
    Fail("no PRIM/SECOND ready after healing and the operator procedure");
  if (violation_.empty() && o_.defaultprim == DefaultPrimKind::kNode) {
    RunFor(3000);
    int want = o_.defaultprim_node == "A" ? 0 : 1;
    if (!(state(want) == NodeState::kPrim && converged())) Fail("defaultprim node is not PRIM at the end");
  }
  return violation_;
}

}  // namespace hamirror::manager::core::sim
