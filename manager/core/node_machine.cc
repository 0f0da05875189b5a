// NodeMachine: see node_machine.h for the rules. Everything here is deterministic: no clock, no I/O.
#include "manager/core/node_machine.h"

#include <algorithm>
#include <utility>

namespace hamirror::manager::core {

namespace {

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

constexpr size_t kSentHistory = 256;        // heartbeats remembered for the echo lease
constexpr size_t kRetiredIncarnations = 8;  // peer incarnations remembered to drop their late datagrams
constexpr size_t kMaxProbes = 3;            // witness probes in flight at once

bool IsServingState(NodeState s) { return s == NodeState::kAlone || s == NodeState::kPrim; }
bool IsStopScript(Script s) {
  return s == Script::kStopPrim || s == Script::kStopSecond || s == Script::kStopBoth ||
         s == Script::kPoststop;
}

}  // namespace

const char* ToString(NodeState s) {
  switch (s) {
    case NodeState::kStop: return "STOP";
    case NodeState::kWait: return "WAIT";
    case NodeState::kAlone: return "ALONE";
    case NodeState::kPrim: return "PRIM";
    case NodeState::kSecond: return "SECOND";
  }
  return "?";
}
const char* ToString(Readiness r) { return r == Readiness::kReady ? "ready" : "transient"; }
const char* ToString(DataState d) {
  switch (d) {
    case DataState::kUnknown: return "unknown";
    case DataState::kUpToDate: return "uptodate";
    case DataState::kOutdated: return "outdated";
    case DataState::kInconsistent: return "inconsistent";
  }
  return "?";
}
const char* ToString(Script s) {
  switch (s) {
    case Script::kPrestart: return "prestart";
    case Script::kStartBoth: return "start_both";
    case Script::kStartPrim: return "start_prim";
    case Script::kStartSecond: return "start_second";
    case Script::kStopPrim: return "stop_prim";
    case Script::kStopSecond: return "stop_second";
    case Script::kStopBoth: return "stop_both";
    case Script::kPoststop: return "poststop";
  }
  return "?";
}
const char* ToString(Command c) {
  switch (c) {
    case Command::kStart: return "start";
    case Command::kStop: return "stop";
    case Command::kForceStop: return "forcestop";
    case Command::kRestart: return "restart";
    case Command::kStopStart: return "stopstart";
    case Command::kPrim: return "prim";
    case Command::kSecond: return "second";
    case Command::kPrimForce: return "primforce";
    case Command::kSwap: return "swap";
    case Command::kResync: return "resync";
  }
  return "?";
}
const char* ToString(FsRole r) {
  switch (r) {
    case FsRole::kPrimary: return "primary";
    case FsRole::kSecondary: return "secondary";
    case FsRole::kAlone: return "alone";
  }
  return "?";
}

static std::string GenString(const Generation& g) {
  return std::to_string(g.counter) + (g.author.empty() ? "" : "@" + g.author);
}

std::string ToString(const Action& a) {
  return std::visit(Overloaded{
                        [](const ActRunScript& x) {
                          return std::string("run ") + ToString(x.script) + (x.force ? " force" : "");
                        },
                        [](const ActAddVip&) { return std::string("add vip"); },
                        [](const ActRemoveVip&) { return std::string("remove vip"); },
                        [](const ActSetFsRole& x) { return std::string("fs role ") + ToString(x.role); },
                        [](const ActStartResync&) { return std::string("start resync"); },
                        [](const ActStopResync&) { return std::string("stop resync"); },
                        [](const ActPersist& x) {
                          return std::string("persist ") + ToString(x.facts.data) +
                                 " cur=" + GenString(x.facts.current) + " base=" + GenString(x.facts.base);
                        },
                        [](const ActSendStatus&) { return std::string("send status"); },
                        [](const ActProbeWitness&) { return std::string("probe witness"); },
                        [](const ActCommandReply& x) {
                          return std::string(x.accepted ? "accepted" : "refused: " + x.reason) + " #" +
                                 std::to_string(x.id);
                        },
                        [](const ActLog& x) { return "log: " + x.message; },
                    },
                    a);
}

std::string ToString(const Event& e) {
  return std::visit(
      Overloaded{
          [](const EvTick&) { return std::string("tick"); },
          [](const EvPeerStatus& x) {
            return std::string("status from ") + x.status.from + " " + ToString(x.status.state) + "/" +
                   ToString(x.status.readiness) + " " + ToString(x.status.data.data) +
                   " cur=" + GenString(x.status.data.current) + " base=" + GenString(x.status.data.base) +
                   " seq=" + std::to_string(x.status.seq & 0xffffffff) +
                   " echo=" + std::to_string(x.status.echo_seq & 0xffffffff) +
                   (x.status.want_serve ? " want_serve" : "") + (x.status.handing_over ? " handover" : "") +
                   (x.status.swap_request ? " swapreq" : "");
          },
          [](const EvPeerLost&) { return std::string("peer lost"); },
          [](const EvWitness& x) {
            return std::string("witness ") + (x.reachable ? "reachable" : "unreachable");
          },
          [](const EvCommand& x) {
            return std::string("command ") + ToString(x.cmd) + " #" + std::to_string(x.id);
          },
          [](const EvScriptDone& x) {
            return std::string("script ") + ToString(x.script) + " " +
                   (x.result == ScriptResult::kOk       ? "ok"
                    : x.result == ScriptResult::kFailed ? "failed"
                                                        : "timeout");
          },
          [](const EvCheckFailed& x) { return "check failed " + x.what; },
          [](const EvResyncDone& x) { return std::string("resync ") + (x.ok ? "done" : "failed"); },
          [](const EvDataLinkLost&) { return std::string("data link lost"); },
          [](const EvSetFailover& x) { return std::string("failover ") + (x.on ? "on" : "off"); },
          [](const EvAdopt& x) {
            return std::string("adopt ") + ToString(x.handoff.state) + (x.handoff.vip_held ? " vip" : "") +
                   (x.handoff.peer ? " peer " + std::string(ToString(x.handoff.peer->state)) : "");
          },
      },
      e);
}

NodeMachine::NodeMachine(Config config, Persisted persisted)
    : cfg_(std::move(config)), p_(std::move(persisted)) {
  ++p_.incarnation;
  incarnation_ = cfg_.incarnation != 0 ? cfg_.incarnation : p_.incarnation;
  my_seq_ = p_.incarnation << 32;  // readable in logs; only compared within one incarnation
}

void NodeMachine::Log(int level, std::string msg) { Emit(ActLog{level, std::move(msg)}); }

void NodeMachine::SetState(NodeState s, Readiness r) {
  if (s == state_ && r == readiness_) return;
  if (IsServingState(state_) && !IsServingState(s) && vip_) {
    // Never leave a serving state with the VIP: remove it first (a transition forgot to).
    Emit(ActRemoveVip{});
    vip_ = false;
  }
  if (s != state_) state_since_ = now_;
  if (s == NodeState::kWait || s == NodeState::kStop) leaving_role_ = false;
  state_ = s;
  readiness_ = r;
  if (s != NodeState::kWait) wait_reason_.clear();
  Log(1, std::string("state ") + ToString(s) + " (" + ToString(r) + ")");
  Emit(ActSendStatus{});
}

PeerStatus NodeMachine::MakeHeartbeat(uint64_t now_ms) {
  PeerStatus st;
  st.from = cfg_.self;
  st.state = state_;
  st.readiness = readiness_;
  st.data = p_;
  st.incarnation = incarnation_;
  st.seq = ++my_seq_;
  st.echo_seq = echo_seq_;
  st.echo_incarnation = echo_inc_;
  st.want_serve = want_serve_;
  st.prefer_second = prefer_second_;
  st.handing_over = handing_over_;
  st.swap_request = swap_request_ && now_ms < swap_request_until_;
  st.split_brain = p_.split_brain;
  sent_.emplace_back(st.seq, now_ms);
  if (sent_.size() > kSentHistory) sent_.pop_front();
  return st;
}

std::vector<Action> NodeMachine::Step(uint64_t now_ms, const Event& event) {
  std::vector<Action> out;
  out_ = &out;
  now_ = std::max(now_, now_ms);
  std::visit(Overloaded{
                 [](const EvTick&) {},
                 [this](const EvPeerStatus& e) { OnPeerStatus(e.status); },
                 [this](const EvPeerLost&) { OnPeerLost(); },
                 [this](const EvWitness& e) { OnWitness(e); },
                 [this](const EvCommand& e) { OnCommand(e); },
                 [this](const EvScriptDone& e) { OnScriptDone(e); },
                 [this](const EvCheckFailed& e) { OnCheckFailed(e); },
                 [this](const EvResyncDone& e) { OnResyncDone(e); },
                 [this](const EvDataLinkLost&) {
                   if (state_ == NodeState::kPrim && !handing_over_) {
                     PeerStoppedAcknowledging("data link lost");
                     link_retry_at_ = now_ + cfg_.resync_retry_ms;  // the link failed: not at once
                   }
                   if (state_ == NodeState::kAlone && linked_) {
                     linked_ = false;  // link again later (the resync into the peer stopped)
                     link_retry_at_ = now_ + cfg_.resync_retry_ms;
                   }
                 },
                 [this](const EvSetFailover& e) {
                   if (cfg_.failover == e.on) return;
                   cfg_.failover = e.on;
                   Log(1, std::string("failover ") + (e.on ? "on" : "off") +
                              (e.on ? "" : ": a lost peer is not taken over without `prim`"));
                 },
                 [this](const EvAdopt& e) { OnAdopt(e.handoff); },
             },
             event);
  stepped_ = true;
  CheckTimers();
  Pump();
  if (!Busy()) Reconcile();
  Pump();
  MaybeProbeWitness();
  out_ = nullptr;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Queue of transition steps.

void NodeMachine::Pump() {
  while (!script_running_ && !ops_.empty()) {
    Op op = std::move(ops_.front());
    ops_.pop_front();
    if (op.script) {
      Script s = *op.script;
      if (s == Script::kPrestart) prestart_ran_ = true;
      if (s == Script::kStartBoth) both_started_ = true;
      if (s == Script::kStartPrim) prim_started_ = true;
      if (s == Script::kStartSecond) second_started_ = true;
      if (s == Script::kStopPrim) prim_started_ = false;
      if (s == Script::kStopSecond) second_started_ = false;
      if (s == Script::kStopBoth) both_started_ = false;
      if (s == Script::kPoststop) prestart_ran_ = false;
      script_running_ = true;
      running_script_ = s;
      running_force_ = op.force;
      Emit(ActRunScript{s, op.force});
    } else if (op.fn) {
      op.fn();
    }
  }
}

void NodeMachine::OnScriptDone(const EvScriptDone& d) {
  if (!script_running_ || d.script != running_script_) {
    Log(2, std::string("ignoring unexpected end of script ") + ToString(d.script));
    return;
  }
  script_running_ = false;
  if (d.result == ScriptResult::kOk) return;
  const char* how = d.result == ScriptResult::kTimeout ? "timed out" : "failed";
  if (IsStopScript(d.script)) {
    if (!running_force_) {
      Log(2, std::string(ToString(d.script)) + " " + how + ": running it again with force");
      ops_.push_front(Op{d.script, true, nullptr});
    } else {
      Log(3, std::string(ToString(d.script)) + " force " + how + ": carrying on");
    }
    return;
  }
  Log(3, std::string(ToString(d.script)) + " " + how + ": stopping the module");
  ops_.clear();
  QueueStop(false, false);
}

// ---------------------------------------------------------------------------------------------
// Transitions.

void NodeMachine::QueueStart() {
  stopping_ = false;
  started_at_ = now_;
  resyncing_ = false;
  have_witness_ok_ = false;
  witness_failed_ = false;
  witness_back_at_ = 0;
  lease_until_ = 0;
  SetState(NodeState::kWait, Readiness::kTransient);
  wait_reason_ = "starting";
  ThenScript(Script::kPrestart);
  ThenScript(Script::kStartBoth);
  Then([this] { SetState(NodeState::kWait, Readiness::kReady); });
}

void NodeMachine::QueueLeaveRole() {
  // Leaving PRIM/ALONE/SECOND for WAIT (or before a stop): VIP first, then the role's stop script.
  if (vip_) {
    Emit(ActRemoveVip{});
    vip_ = false;
  }
  SetIntent(false);
  forced_ = false;
  leaving_role_ = true;
  if (state_ != NodeState::kWait && state_ != NodeState::kStop) SetState(state_, Readiness::kTransient);
  if (resyncing_) {
    Emit(ActStopResync{});
    resyncing_ = false;
  }
  if (prim_started_) ThenScript(Script::kStopPrim);
  if (second_started_) ThenScript(Script::kStopSecond);
  handing_over_ = false;
}

void NodeMachine::QueueStop(bool force, bool then_start) {
  stopping_ = true;
  want_prim_ = want_primforce_ = prefer_second_ = discard_mine_ = false;
  swap_request_ = false;
  // Leaving while the peer serves or will take over: from now on the peer's data is newer than ours.
  if (peer_connected_ && peer_ && peer_->data.data == DataState::kUpToDate &&
      p_.data == DataState::kUpToDate &&
      (PeerServing() || (peer_->state == NodeState::kSecond && peer_->readiness == Readiness::kReady &&
                         peer_->data.current == p_.current && IsServingState(state_)))) {
    p_.data = DataState::kOutdated;
    Persist();
    Log(1, "data marked outdated: the peer carries on without us");
  }
  failover_cause_.reset();
  ops_.clear();
  QueueLeaveRole();
  // Force: stop scripts are run with force straight away (forcestop).
  for (auto& op : ops_) op.force = force;
  if (both_started_) ThenScript(Script::kStopBoth, force);
  if (prestart_ran_) ThenScript(Script::kPoststop, force);
  start_after_stop_ = then_start;
  Then([this] {
    Emit(ActSetFsRole{FsRole::kSecondary});  // read-only while stopped
    stopping_ = false;
    SetState(NodeState::kStop, Readiness::kReady);
    if (start_after_stop_) QueueStart();
    start_after_stop_ = false;
  });
}

void NodeMachine::BumpGeneration() {
  uint64_t top = p_.current.counter;
  if (peer_) top = std::max(top, peer_->data.current.counter);
  p_.current = Generation{top + 1, cfg_.self};
  p_.data = DataState::kUpToDate;
  p_.last_role = Role::kPrim;
}

void NodeMachine::AddVipIfAllowed() {
  if (cfg_.witness && !forced_ && !LeaseValid()) {
    StepDown("no lease (neither the peer nor the witness confirmed us): not taking the VIP");
    return;
  }
  Emit(ActAddVip{});
  vip_ = true;
}

void NodeMachine::QueueBecomeAlone() {
  bool force = want_primforce_;
  const std::string how = force ? "; primforce typed" : want_prim_ ? "; prim typed" : "";
  want_prim_ = want_primforce_ = false;
  SetIntent(false);
  Then([this, force] {
    forced_ = force;
    p_.split_brain = false;  // only an operator's choice gets here in a split brain
    BumpGeneration();
    Persist();  // the new generation is durable before the first write without the peer
    Emit(ActSetFsRole{FsRole::kAlone});
    linked_ = false;
    SetState(NodeState::kAlone, Readiness::kTransient);
    AddVipIfAllowed();
  });
  ThenScript(Script::kStartPrim);
  Then([this, how] {
    if (!IsServingState(state_)) return;
    SetState(state_, Readiness::kReady);
    FinishFailover(how);
  });
}

void NodeMachine::QueueBecomeSecond() {
  SetIntent(false);
  discard_mine_ = false;
  failover_cause_.reset();  // the peer serves
  Then([this] {
    Emit(ActSetFsRole{FsRole::kSecondary});
    p_.last_role = Role::kSecond;
    SetState(NodeState::kSecond, Readiness::kTransient);
  });
  ThenScript(Script::kStartSecond);
  Then([this] {
    if (state_ != NodeState::kSecond) return;
    p_.data = DataState::kInconsistent;  // durable before the first block is overwritten
    Persist();
    resyncing_ = true;
    Emit(ActStartResync{});
  });
}

void NodeMachine::PeerStoppedAcknowledging(const char* why) {
  if (!(leaving_role_ && !vip_)) {
    ChangePrimToAlone(why);
    return;
  }
  Log(2, std::string("peer out of sync (") + why +
             ") while leaving PRIM without the VIP: the fs finishes the stop alone, no new generation");
  Emit(ActSetFsRole{FsRole::kAlone});
  linked_ = false;
  SetState(NodeState::kAlone, Readiness::kTransient);
}

void NodeMachine::ChangePrimToAlone(const char* why) {
  Log(2, std::string("peer out of sync (") + why + "): going ALONE");
  BumpGeneration();
  Persist();
  Emit(ActSetFsRole{FsRole::kAlone});
  linked_ = false;  // linked again as soon as the peer waits for a resync
  SetState(NodeState::kAlone, readiness_);
}

void NodeMachine::QueueHandover() {
  Log(1, "swap: handing over to " + cfg_.peer);
  swap_request_ = false;
  if (vip_) {
    Emit(ActRemoveVip{});
    vip_ = false;
  }
  SetState(state_, Readiness::kTransient);
  ThenScript(Script::kStopPrim);
  Then([this] {
    Emit(ActSetFsRole{FsRole::kSecondary});
    p_.last_role = Role::kSecond;
    Persist();
    handing_over_ = true;
    handover_deadline_ = now_ + cfg_.swap_request_ms;
    SetState(NodeState::kSecond, Readiness::kTransient);
  });
}

void NodeMachine::QueueTakeOver() {
  Log(1, "swap: taking over from " + cfg_.peer);
  swap_request_ = false;
  failover_cause_ = FailoverCause{now_, "swap: " + cfg_.peer + " handed over"};
  SetState(NodeState::kSecond, Readiness::kTransient);
  ThenScript(Script::kStopSecond);
  Then([this] {
    p_.base = p_.current;
    p_.data = DataState::kUpToDate;  // the peer stopped writing and its data equals ours
    p_.last_role = Role::kPrim;
    Persist();
    Emit(ActSetFsRole{FsRole::kPrimary});
    SetState(NodeState::kPrim, Readiness::kTransient);
    AddVipIfAllowed();
  });
  ThenScript(Script::kStartPrim);
  Then([this] {
    if (!IsServingState(state_)) return;
    SetState(state_, Readiness::kReady);
    FinishFailover("");
  });
}

void NodeMachine::QueueRestartPrim() {
  // The VIP goes before stop_prim and comes back (lease permitting) before start_prim.
  if (vip_) {
    Emit(ActRemoveVip{});
    vip_ = false;
  }
  SetState(state_, Readiness::kTransient);
  ThenScript(Script::kStopPrim);
  Then([this] {
    if (IsServingState(state_)) AddVipIfAllowed();
  });
  ThenScript(Script::kStartPrim);
  Then([this] {
    if (IsServingState(state_)) SetState(state_, Readiness::kReady);
  });
}

void NodeMachine::StepDown(const std::string& why) {
  Log(2, "stepping down: " + why);
  ops_.clear();
  QueueLeaveRole();
  Then([this, why] {
    SetState(NodeState::kWait, Readiness::kReady);
    wait_reason_ = why;
  });
}

void NodeMachine::MarkSplitBrain() {
  if (p_.split_brain) return;
  p_.split_brain = true;
  Persist();  // after a restart we must still not serve our side as if the peer's writes did not exist
  Log(3, "split brain with " + cfg_.peer + " (ours " + GenString(p_.current) + ", theirs " +
             GenString(peer_->data.current) +
             "): no automatic promotion; prim keeps this side, second discards it");
}

void NodeMachine::NoteFailoverCause(std::string reason) {
  if (IsServingState(state_) || state_ == NodeState::kStop || failover_cause_) return;  // the first cause
  failover_cause_ = FailoverCause{now_, std::move(reason)};
}

void NodeMachine::FinishFailover(const std::string& how) {
  if (!failover_cause_) return;
  last_failover_ = Failover{failover_cause_->detected_ms, now_, failover_cause_->reason + how, state_};
  ++failovers_;
  failover_cause_.reset();
  Log(1, "failover done in " + std::to_string(now_ - last_failover_->detected_ms) +
             " ms: " + last_failover_->reason);
}

std::optional<uint64_t> NodeMachine::peer_state_since_ms(bool* entered) const {
  if (!peer_connected_ || !peer_) return std::nullopt;
  *entered = peer_state_entered_;
  return peer_state_since_;
}

void NodeMachine::SetIntent(bool on) {
  if (on == want_serve_) return;
  want_serve_ = on;
  intent_seq_ = my_seq_ + 1;  // the next heartbeat is the first to carry it
  Emit(ActSendStatus{});
}

// ---------------------------------------------------------------------------------------------
// Inputs.

void NodeMachine::OnPeerStatus(const PeerStatus& st) {
  if (st.from != cfg_.peer) {
    Log(2, "ignoring status from unknown node " + st.from);
    return;
  }
  if (peer_ && st.incarnation == peer_->incarnation && st.seq <= peer_->seq) {  // reordered or repeated
    // The same status again: the peer's daemon is alive, busy in a step (see repeated_status_grace_ms).
    // Counting it only delays a takeover, never hastens one: safe for the leases.
    if (st.seq == peer_->seq && peer_connected_ && now_ < fresh_heard_ + cfg_.repeated_status_grace_ms)
      last_heard_ = now_;
    return;
  }
  if (peer_ && st.incarnation != peer_->incarnation) {
    for (uint64_t old : retired_peer_incs_)
      if (old == st.incarnation) return;  // late datagram of a process the peer already replaced
    retired_peer_incs_.push_back(peer_->incarnation);
    if (retired_peer_incs_.size() > kRetiredIncarnations) retired_peer_incs_.pop_front();
    Log(1, "peer " + cfg_.peer + " restarted (new incarnation)");
  }
  bool was_connected = peer_connected_;
  const NodeState prev_state = peer_ ? peer_->state : NodeState::kStop;
  peer_ = st;
  last_heard_ = now_;
  fresh_heard_ = now_;
  peer_connected_ = true;
  echo_seq_ = st.seq;
  echo_inc_ = st.incarnation;
  if (!was_connected) Log(1, "peer " + cfg_.peer + " reachable (" + ToString(st.state) + ")");
  NotePeerState(was_connected, prev_state);

  // Echo lease: the peer, not serving, has seen our heartbeat `echo_seq`; it will not take over
  // before heartbeat_timeout_ms after that, so we may serve until its send time + lease_ms.
  if (!IsServingState(st.state) && st.echo_seq != 0 && st.echo_incarnation == incarnation_) {
    for (auto it = sent_.rbegin(); it != sent_.rend(); ++it) {
      if (it->first == st.echo_seq) {
        lease_until_ = std::max(lease_until_, it->second + cfg_.lease_ms);
        break;
      }
    }
  }
  if (p_.data == DataState::kUpToDate && CompareWithPeer() == Compare::kIAmBehind) {
    p_.data = DataState::kOutdated;
    Persist();
    Log(2, "peer has newer data (" + GenString(st.data.current) + "): our data is outdated");
  }
  if (CompareWithPeer() == Compare::kSplitBrain) MarkSplitBrain();
  // A serving peer beside a serving us: split brain just healed (or a race). One steps down now.
  if (IsServingState(state_) && vip_ && IsServingState(st.state) && !handing_over_) {
    bool i_win;
    if (cfg_.defaultprim == DefaultPrimKind::kNode && cfg_.defaultprim_node == cfg_.self)
      i_win = true;
    else if (cfg_.defaultprim == DefaultPrimKind::kNode && cfg_.defaultprim_node == cfg_.peer)
      i_win = false;
    else if (p_.current.counter != st.data.current.counter)
      i_win = p_.current.counter > st.data.current.counter;
    else
      i_win = cfg_.self < cfg_.peer;
    if (!i_win) {
      if (CompareWithPeer() == Compare::kSplitBrain) MarkSplitBrain();
      StepDown("peer " + cfg_.peer + " is also serving");
    }
  }
}

// Time in state of the peer, and a failover cause when a serving peer stops serving.
void NodeMachine::NotePeerState(bool was_connected, NodeState prev_state) {
  if (!was_connected || peer_->state != prev_state) {
    peer_state_since_ = now_;
    peer_state_entered_ = was_connected;
  }
  if (IsServingState(peer_->state))
    failover_cause_.reset();
  else if (was_connected && IsServingState(prev_state) && !peer_->handing_over)
    NoteFailoverCause("peer " + cfg_.peer + " left " + ToString(prev_state) + " (now " +
                      ToString(peer_->state) + ")");
}

void NodeMachine::OnPeerLost() {
  if (!peer_connected_) return;
  peer_connected_ = false;
  Log(2, "peer " + cfg_.peer + " lost: no heartbeat on any network");
  NoteFailoverCause("peer " + cfg_.peer + " lost (no heartbeat on any network)");
  SetIntent(false);
  if (state_ == NodeState::kAlone) linked_ = false;  // link again when it is back
  if (state_ == NodeState::kPrim && !handing_over_) PeerStoppedAcknowledging("peer lost");
}

void NodeMachine::OnWitness(const EvWitness& w) {
  // 0: the newest probe; an answer to a probe no longer in flight (timed out) is dropped.
  auto it = probes_.end();
  for (auto p = probes_.begin(); p != probes_.end(); ++p)
    if (w.probe_id == 0 || p->first == w.probe_id) it = p;
  if (it == probes_.end()) return;
  const uint64_t started = it->second;
  probes_.erase(it);
  if (w.reachable) {
    have_witness_ok_ = true;
    witness_ok_at_ = std::max(witness_ok_at_, started);
    if (witness_failed_) witness_back_at_ = now_;  // conservative: when the answer came
    witness_failed_ = false;
    if (IsServingState(state_)) lease_until_ = std::max(lease_until_, started + cfg_.lease_ms);
  } else {
    witness_failed_ = true;
    Log(2, "witness unreachable");
  }
}

void NodeMachine::OnResyncDone(const EvResyncDone& r) {
  if (!resyncing_) return;
  resyncing_ = false;
  if (!r.ok) {
    Log(2, "resync failed: retrying");
    resync_retry_at_ = now_ + cfg_.resync_retry_ms;
    return;
  }
  if (peer_) p_.current = peer_->data.current;
  p_.base = p_.current;
  p_.split_brain = false;  // our side was replaced by the peer's (the fs quarantined what we lost)
  // A snapshot of a source that is still ALONE (acknowledging writes without us): consistent, but
  // only up to date once the source turns PRIM (synchronous) - see the SECOND branch of Reconcile.
  p_.data = DataState::kOutdated;
  Persist();
  Log(1, "resync done: in sync once the primary turns synchronous");
  if (state_ == NodeState::kSecond) SetState(NodeState::kSecond, Readiness::kReady);
}

int NodeMachine::loop_count(uint64_t now_ms) const {
  int n = 0;
  for (uint64_t t : failures_) n += t + cfg_.loop_interval_ms > now_ms ? 1 : 0;
  return n;
}

void NodeMachine::OnCheckFailed(const EvCheckFailed& f) {
  if (state_ == NodeState::kStop || stopping_) return;
  failures_.push_back(now_);
  while (!failures_.empty() && failures_.front() + cfg_.loop_interval_ms <= now_) failures_.pop_front();
  if (static_cast<int>(failures_.size()) > cfg_.maxloop) {
    Log(3, "check failed (" + f.what + "): maxloop " + std::to_string(cfg_.maxloop) + " reached, stopping");
    failures_.clear();
    QueueStop(false, false);
    return;
  }
  switch (f.action) {
    case FailAction::kStop:
      Log(3, "check failed (" + f.what + "): stopping");
      QueueStop(false, false);
      return;
    case FailAction::kStopStart:
      Log(2, "check failed (" + f.what + "): stopstart");
      QueueStop(false, true);
      return;
    case FailAction::kRestart:
      if (Busy()) {
        Log(2, "check failed (" + f.what + "): transition in progress, no restart");
        return;
      }
      Log(2, "check failed (" + f.what + "): restarting locally");
      if (IsServingState(state_)) {
        QueueRestartPrim();
      } else if (state_ == NodeState::kSecond && readiness_ == Readiness::kReady) {
        SetState(state_, Readiness::kTransient);
        ThenScript(Script::kStopSecond);
        ThenScript(Script::kStartSecond);
        Then([this] {
          if (state_ == NodeState::kSecond && !resyncing_) SetState(state_, Readiness::kReady);
        });
      }
      return;
  }
}

void NodeMachine::Accept(uint64_t id) { Emit(ActCommandReply{id, true, ""}); }
void NodeMachine::Refuse(uint64_t id, std::string reason) {
  Log(2, "command refused: " + reason);
  Emit(ActCommandReply{id, false, std::move(reason)});
}

void NodeMachine::OnCommand(const EvCommand& c) {
  const bool stopped = state_ == NodeState::kStop && !Busy();
  switch (c.cmd) {
    case Command::kStop:
    case Command::kForceStop:
      if (stopped) return Refuse(c.id, "already stopped");
      Accept(c.id);
      if (stopping_ && c.cmd == Command::kStop) {
        start_after_stop_ = false;  // a stop typed during a stopstart: stay stopped
        return;
      }
      return QueueStop(c.cmd == Command::kForceStop, false);
    case Command::kStopStart:
      Accept(c.id);
      if (stopped) return QueueStart();
      return QueueStop(false, true);
    default: break;
  }
  // Already there (e.g. the node joined by itself after the peer went ALONE): nothing to do.
  if (!stopping_ && c.cmd == Command::kSecond && state_ == NodeState::kSecond && !handing_over_)
    return Accept(c.id);
  if (!stopping_ && (c.cmd == Command::kPrim || c.cmd == Command::kPrimForce) && IsServingState(state_))
    return Accept(c.id);
  if (Busy() || stopping_) return Refuse(c.id, "a transition is in progress; retry when it is done");
  switch (c.cmd) {
    case Command::kStart:
      if (!stopped) return Refuse(c.id, std::string("already started (") + ToString(state_) + ")");
      Accept(c.id);
      return QueueStart();
    case Command::kPrim:
    case Command::kPrimForce: {
      bool force = c.cmd == Command::kPrimForce;
      if (state_ != NodeState::kStop && state_ != NodeState::kWait)
        return Refuse(c.id, std::string("node is ") + ToString(state_) + "; prim applies to STOP or WAIT");
      if (!force && (p_.data == DataState::kOutdated || p_.data == DataState::kInconsistent))
        return Refuse(c.id, std::string("data is ") + ToString(p_.data) + "; use primforce to override");
      if (peer_connected_ && PeerServing())
        return Refuse(c.id, "peer " + cfg_.peer + " is serving; use swap");
      Accept(c.id);
      want_prim_ = true;
      want_primforce_ = force;
      prim_in_split_ = p_.split_brain;
      prefer_second_ = false;
      if (state_ == NodeState::kStop) QueueStart();
      return;
    }
    case Command::kSecond:
      if (state_ != NodeState::kStop && state_ != NodeState::kWait)
        return Refuse(c.id, std::string("node is ") + ToString(state_) + "; second applies to STOP or WAIT");
      Accept(c.id);
      prefer_second_ = true;
      want_prim_ = want_primforce_ = false;
      discard_mine_ = true;
      SetIntent(false);
      if (state_ == NodeState::kStop) QueueStart();
      return;
    case Command::kSwap: {
      bool peer_second_ready = peer_connected_ && peer_ && peer_->state == NodeState::kSecond &&
                               peer_->readiness == Readiness::kReady && !peer_->handing_over &&
                               peer_->data.data == DataState::kUpToDate;
      bool peer_prim = peer_connected_ && peer_ && peer_->state == NodeState::kPrim;
      if (state_ == NodeState::kPrim && readiness_ == Readiness::kReady && peer_second_ready) {
        Accept(c.id);
        return QueueHandover();
      }
      if (state_ == NodeState::kSecond && readiness_ == Readiness::kReady && peer_prim) {
        Accept(c.id);
        swap_request_ = true;
        swap_request_until_ = now_ + cfg_.swap_request_ms;
        Emit(ActSendStatus{});
        return;
      }
      return Refuse(c.id, "swap needs PRIM and SECOND ready");
    }
    case Command::kResync:
      if (state_ != NodeState::kSecond || readiness_ != Readiness::kReady || handing_over_)
        return Refuse(c.id, std::string("node is ") + ToString(state_) + "/" + ToString(readiness_) +
                                "; resync applies to a SECOND ready node (type it on the secondary)");
      Accept(c.id);
      Log(1, "resync requested: this copy is inconsistent until it is done");
      SetState(NodeState::kSecond, Readiness::kTransient);
      p_.data = DataState::kInconsistent;  // durable before the first block is overwritten
      Persist();
      resyncing_ = true;
      Emit(ActStartResync{});
      return;
    case Command::kRestart:
      if (IsServingState(state_)) {
        Accept(c.id);
        QueueRestartPrim();
        return;
      }
      if (state_ == NodeState::kSecond && readiness_ == Readiness::kReady) {
        Accept(c.id);
        SetState(state_, Readiness::kTransient);
        ThenScript(Script::kStopSecond);
        ThenScript(Script::kStartSecond);
        Then([this] {
          if (state_ == NodeState::kSecond) SetState(state_, Readiness::kReady);
        });
        return;
      }
      return Refuse(c.id, std::string("nothing to restart in ") + ToString(state_));
    default: return Refuse(c.id, "unknown command");
  }
}

// ---------------------------------------------------------------------------------------------
// Daemon restart: handoff and adoption.

std::string NodeMachine::HandoffRefusal(uint64_t now_ms) const {
  if (Busy() || stopping_) return "a transition is in progress";
  if (readiness_ != Readiness::kReady) return std::string(ToString(state_)) + " is transient";
  if (resyncing_) return "a resync into this node is in progress";
  if (handing_over_ || (swap_request_ && now_ms < swap_request_until_)) return "a swap is in progress";
  if (want_prim_ || want_primforce_ || prefer_second_ || discard_mine_)
    return "an operator's prim/second is pending";
  if (want_serve_) return "asking the peer before serving";
  if (IsServingState(state_) != vip_) return "serving state and VIP disagree";
  // The VIP stays during the gap only under a lease (the daemon's keeper removes it when the lease
  // ends before a new daemon adopted the module): hand over with most of one left.
  if (vip_ && !forced_ && (cfg_.witness || peer_connected_) && lease_until_ < now_ms + cfg_.lease_ms * 3 / 4)
    return "waiting for a fresh lease (the peer's echo or the witness)";
  return "";
}

Handoff NodeMachine::MakeHandoff(uint64_t now_ms) const {
  Handoff h;
  h.state = state_;
  h.vip_held = vip_;
  h.fs_linked = linked_;
  h.forced = forced_;
  h.lease_left_ms = lease_until_ > now_ms ? lease_until_ - now_ms : 0;
  if (peer_connected_ && peer_) h.peer = *peer_;
  return h;
}

void NodeMachine::OnAdopt(const Handoff& h) {
  const char* refusal = stepped_ || state_ != NodeState::kStop || Busy() ? "not the first event"
                        : IsServingState(h.state) != h.vip_held          ? "serving state and VIP disagree"
                        : h.peer && h.peer->from != cfg_.peer ? "the peer status is not from the peer"
                                                              : nullptr;
  if (refusal) {
    Log(3, std::string("adoption of the running module refused: ") + refusal);
    return;
  }
  adopted_ = true;
  if (h.state != NodeState::kStop) {
    prestart_ran_ = both_started_ = true;  // what a start ran: a later stop runs stop_both, poststop
    started_at_ = now_;
  }
  if (IsServingState(h.state)) {
    prim_started_ = true;
    vip_ = true;
    linked_ = h.fs_linked;
    forced_ = h.forced;
    lease_until_ = h.lease_left_ms ? now_ + h.lease_left_ms : 0;
  }
  if (h.state == NodeState::kSecond) second_started_ = true;
  if (h.peer) {
    // As if the peer's last status had just arrived: its silence counts from now.
    peer_ = h.peer;
    peer_connected_ = true;
    last_heard_ = fresh_heard_ = now_;
    echo_seq_ = h.peer->seq;
    echo_inc_ = h.peer->incarnation;
    peer_state_since_ = now_;
    peer_state_entered_ = false;
  }
  Log(1, std::string("adopted the running module: ") + ToString(h.state) + " (ready)" +
             (h.vip_held ? ", VIP held" : "") +
             (h.peer ? std::string(", peer ") + ToString(h.peer->state) : ", peer not connected") +
             "; no script run");
  SetState(h.state, Readiness::kReady);
  Emit(ActSendStatus{});
}

// ---------------------------------------------------------------------------------------------
// Timers and decisions.

bool NodeMachine::LeaseValid() const { return now_ < lease_until_; }

void NodeMachine::CheckTimers() {
  if (peer_connected_ && now_ >= last_heard_ + cfg_.heartbeat_timeout_ms) OnPeerLost();
  while (!probes_.empty() && now_ >= probes_.front().second + cfg_.witness_probe_timeout_ms) {
    probes_.pop_front();  // no answer in time: unreachable
    witness_failed_ = true;
    Log(2, "witness probe timed out");
  }
  if (cfg_.witness && vip_ && !forced_ && !LeaseValid()) {
    StepDown("lease expired: neither the peer nor the witness confirmed us");
  }
}

void NodeMachine::MaybeProbeWitness() {
  if (!cfg_.witness || probes_.size() >= kMaxProbes || state_ == NodeState::kStop || stopping_) return;
  bool need;
  if (vip_) {
    // Serving: renew the lease through the witness when the peer's echoes do not.
    need = lease_until_ < now_ + cfg_.lease_ms - cfg_.witness_probe_interval_ms;
  } else {
    // Not serving: a probe only matters when we may take over without the peer.
    need = !peer_connected_ && state_ == NodeState::kWait && !prefer_second_;
  }
  if (!need) return;
  if (probed_once_ && now_ < last_probe_ + cfg_.witness_probe_interval_ms) return;
  probed_once_ = true;
  last_probe_ = now_;
  probes_.emplace_back(++probe_id_, now_);
  Emit(ActProbeWitness{probe_id_});
}

bool NodeMachine::PeerServing() const { return peer_ && IsServingState(peer_->state); }

NodeMachine::Compare NodeMachine::CompareWithPeer() const {
  const Persisted& o = peer_->data;
  bool mine_ok = p_.data == DataState::kUpToDate, theirs_ok = o.data == DataState::kUpToDate;
  if (p_.current == o.current) {
    if (mine_ok && !theirs_ok) return Compare::kPeerBehind;
    if (!mine_ok && theirs_ok) return Compare::kIAmBehind;
    return Compare::kSame;
  }
  // A resync target keeps its old generation until it is done: its data state decides.
  bool mine_inc = p_.data == DataState::kInconsistent, theirs_inc = o.data == DataState::kInconsistent;
  if (mine_inc != theirs_inc) return mine_inc ? Compare::kIAmBehind : Compare::kPeerBehind;
  // Otherwise generations decide when one is where the other parted from (outdated flags are
  // predictions made at a graceful stop; a generation that moved on is a fact).
  if (p_.current == o.base) return Compare::kIAmBehind;
  if (o.current == p_.base) return Compare::kPeerBehind;
  if (mine_ok && !theirs_ok) return Compare::kPeerBehind;
  if (!mine_ok && theirs_ok) return Compare::kIAmBehind;
  return Compare::kSplitBrain;
}

bool NodeMachine::IPreferred() const {
  if (cfg_.defaultprim == DefaultPrimKind::kNode) {
    if (cfg_.defaultprim_node == cfg_.self) return true;
    if (cfg_.defaultprim_node == cfg_.peer) return false;
  }
  if (peer_) {
    bool me = p_.last_role == Role::kPrim, them = peer_->data.last_role == Role::kPrim;
    if (me != them) return me;
  }
  return cfg_.self < cfg_.peer;
}

bool NodeMachine::PeerEchoesIntent() const {
  return peer_ && !IsServingState(peer_->state) && !peer_->want_serve && !peer_->handing_over &&
         peer_->echo_incarnation == incarnation_ && peer_->echo_seq >= intent_seq_ && want_serve_;
}

void NodeMachine::Reconcile() {
  if (stopping_) return;
  if (handing_over_ && state_ == NodeState::kSecond) {
    if (peer_connected_ && peer_ && peer_->state == NodeState::kPrim) {
      handing_over_ = false;
      ThenScript(Script::kStartSecond);
      Then([this] {
        if (state_ == NodeState::kSecond) SetState(NodeState::kSecond, Readiness::kReady);
      });
    } else if (!peer_connected_ || now_ >= handover_deadline_) {
      Log(2, "swap: the peer did not take over");
      handing_over_ = false;
      SetState(NodeState::kWait, Readiness::kReady);
      wait_reason_ = "swap aborted";
    }
    return;
  }
  switch (state_) {
    case NodeState::kStop: return;
    case NodeState::kWait: return ReconcileWait();
    case NodeState::kSecond:
      if (!peer_connected_) {
        Log(2, "primary lost");
        QueueLeaveRole();
        Then([this] { SetState(NodeState::kWait, Readiness::kReady); });
        return;
      }
      if (peer_->handing_over && peer_->state == NodeState::kSecond && readiness_ == Readiness::kReady &&
          peer_->data.current == p_.current) {
        return QueueTakeOver();
      }
      if (!PeerServing()) {
        Log(2, std::string("peer is ") + ToString(peer_->state) + ": leaving SECOND");
        QueueLeaveRole();
        Then([this] { SetState(NodeState::kWait, Readiness::kReady); });
        return;
      }
      if (readiness_ == Readiness::kReady && peer_->data.current == p_.current) {
        if (peer_->state == NodeState::kPrim && p_.data != DataState::kUpToDate) {
          p_.data = DataState::kUpToDate;  // the primary mirrors synchronously now
          Persist();
          Log(1, "primary is synchronous: data up to date");
        }
      } else if (readiness_ == Readiness::kReady) {
        Log(2, "primary's data moved on: resynchronising");
        SetState(NodeState::kSecond, Readiness::kTransient);
        p_.data = DataState::kInconsistent;
        Persist();
        resyncing_ = true;
        Emit(ActStartResync{});
        return;
      }
      if (readiness_ == Readiness::kTransient && !resyncing_ && now_ >= resync_retry_at_) {
        p_.data = DataState::kInconsistent;
        Persist();
        resyncing_ = true;
        Emit(ActStartResync{});
      }
      if (swap_request_ && now_ >= swap_request_until_) swap_request_ = false;
      return;
    case NodeState::kAlone:
      if (readiness_ == Readiness::kReady && peer_connected_ && peer_->state == NodeState::kSecond &&
          peer_->readiness == Readiness::kReady && peer_->data.current == p_.current &&
          !peer_->handing_over) {
        p_.base = p_.current;
        p_.last_role = Role::kPrim;
        p_.split_brain = false;  // the peer now holds exactly our data
        Persist();
        Emit(ActSetFsRole{FsRole::kPrimary});
        linked_ = true;
        SetState(NodeState::kPrim, Readiness::kReady);
        return;
      }
      // The peer joined as SECOND and waits for a resync (it persisted itself inconsistent, and only
      // then said so): connect the fs to it, whose resync brings it up to date. This node stays ALONE
      // until the peer reports SECOND ready at our generation.
      if (readiness_ == Readiness::kReady && peer_connected_ && peer_->state == NodeState::kSecond &&
          peer_->data.data == DataState::kInconsistent && !peer_->handing_over && !linked_ &&
          now_ >= link_retry_at_) {
        Log(1, "peer waits for a resync: replicating to it");
        linked_ = true;
        Emit(ActSetFsRole{FsRole::kPrimary});
      }
      return;
    case NodeState::kPrim:
      if (handing_over_) return;
      if (peer_connected_ && (peer_->state != NodeState::kSecond || peer_->data.current != p_.current)) {
        return ChangePrimToAlone("peer no longer SECOND in sync");
      }
      if (peer_connected_ && peer_->data.data == DataState::kInconsistent) {
        // The peer asked for a resync (`resync`, `second fullsync`): no synchronous mirror until it
        // is done; ALONE links the fs to it again, whose resync brings it up to date.
        return ChangePrimToAlone("peer resynchronising");
      }
      if (readiness_ == Readiness::kReady && peer_connected_ && peer_->state == NodeState::kSecond &&
          peer_->readiness == Readiness::kReady && peer_->data.data == DataState::kUpToDate) {
        if (peer_->swap_request) return QueueHandover();
        if (cfg_.defaultprim == DefaultPrimKind::kNode && cfg_.defaultprim_node == cfg_.peer) {
          Log(1, "defaultprim is " + cfg_.peer + ": swapping back");
          return QueueHandover();
        }
      }
      return;
  }
}

void NodeMachine::ReconcileWait() {
  if (readiness_ != Readiness::kReady) return;
  const bool good_data =
      p_.data == DataState::kUpToDate || (want_prim_ && p_.data == DataState::kUnknown) || want_primforce_;
  if (peer_connected_) {
    const Compare cmp = CompareWithPeer();
    if (PeerServing()) {
      SetIntent(false);
      if (want_prim_ || want_primforce_) {
        // The peer won the race to serve (its intent was acknowledged first): this node follows.
        Log(2, "prim not applied: " + cfg_.peer + " serves now; use swap to move the service");
        want_prim_ = want_primforce_ = false;
      }
      if ((cmp == Compare::kSplitBrain || cmp == Compare::kPeerBehind || p_.split_brain) && !discard_mine_) {
        MarkSplitBrain();
        wait_reason_ = "split brain: both nodes wrote since they parted; `second` here discards this side";
        return;
      }
      if (now_ < resync_retry_at_) return;
      prefer_second_ = false;
      return QueueBecomeSecond();
    }
    if (prefer_second_) {
      SetIntent(false);
      wait_reason_ = "second requested: waiting for the peer to serve";
      return;
    }
    bool operator_wish = want_prim_ || want_primforce_;
    if (!good_data) {
      SetIntent(false);
      wait_reason_ = std::string("data ") + ToString(p_.data) + ": waiting for the peer";
      return;
    }
    // `prim` chooses a side of a split brain only if typed knowing it (state -v showed it).
    bool overrides_split = want_primforce_ || (want_prim_ && prim_in_split_);
    if (!overrides_split && (cmp == Compare::kIAmBehind || cmp == Compare::kSplitBrain || p_.split_brain)) {
      SetIntent(false);
      if (cmp == Compare::kSplitBrain) MarkSplitBrain();
      wait_reason_ = cmp == Compare::kIAmBehind ? "peer has newer data" : "split brain: operator must choose";
      return;
    }
    bool peer_eligible = peer_->state == NodeState::kWait && peer_->data.data == DataState::kUpToDate &&
                         !peer_->prefer_second && cmp == Compare::kSame;
    bool should = operator_wish || !peer_eligible || IPreferred();
    // The peer announced it wants to serve: let it, unless we both do and we win the tie.
    // (When both announced at once, the preference alone decides, so both sides agree.)
    if (peer_->want_serve && !(want_serve_ && IPreferred())) should = false;
    if (!should) {
      SetIntent(false);
      wait_reason_ = "the peer will serve";
      return;
    }
    if (!want_serve_) {
      SetIntent(true);
      wait_reason_ = "asking the peer before serving";
      return;
    }
    if (PeerEchoesIntent()) return QueueBecomeAlone();
    return;
  }
  // No peer.
  SetIntent(false);
  if (prefer_second_) {
    wait_reason_ = "second requested: waiting for the peer";
    return;
  }
  if (!good_data) {
    wait_reason_ = std::string("data ") + ToString(p_.data) + ": waiting for the peer (or primforce)";
    return;
  }
  bool operator_wish = want_prim_ || want_primforce_;
  if (!operator_wish && !cfg_.failover) {
    wait_reason_ = "peer absent and failover is off: waiting (or prim)";
    return;
  }
  if (!want_primforce_ && !(want_prim_ && prim_in_split_)) {
    if (p_.split_brain) {
      wait_reason_ = "split brain: operator must choose";
      return;
    }
    if (peer_ && CompareWithPeer() != Compare::kSame && CompareWithPeer() != Compare::kPeerBehind) {
      wait_reason_ = "the peer had newer or diverged data";
      return;
    }
  }
  // Silence for a full heartbeat timeout since we last heard the peer (or started): the peer has then
  // dropped the VIP if it was serving under a lease we granted.
  if (now_ < SilenceStart() + cfg_.heartbeat_timeout_ms) {
    wait_reason_ = "waiting for the peer's heartbeats";
    return;
  }
  if (cfg_.witness && !want_primforce_) {
    if (!have_witness_ok_ || witness_ok_at_ < SilenceStart() + cfg_.heartbeat_timeout_ms) {
      wait_reason_ = "peer lost: waiting for the witness";
      return;
    }
    // Our own network was cut (the witness did not answer): once it is back, the peer's heartbeats
    // get a full timeout to arrive before its silence means anything. Without this, a node healed
    // from a partition reaches the witness a moment before it hears the peer that served meanwhile,
    // and serves too.
    if (witness_failed_ || now_ < witness_back_at_ + cfg_.heartbeat_timeout_ms) {
      wait_reason_ = "network back: waiting for the peer's heartbeats";
      return;
    }
    lease_until_ = witness_ok_at_ + cfg_.lease_ms;
  }
  Log(1, operator_wish ? "prim requested: going ALONE" : "peer absent, data up to date: going ALONE");
  QueueBecomeAlone();
}

}  // namespace hamirror::manager::core
