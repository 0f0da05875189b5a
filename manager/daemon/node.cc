#include "manager/daemon/node.h"

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "common/log.h"
#include "common/run_dir.h"
#include "manager/daemon/cert_info.h"
#include "manager/daemon/role_class.h"
#include "manager/heartbeat/heartbeat_key.h"
#include "manager/process/checkers.h"
#include "manager/process/proc_scan.h"

namespace hamirror::daemon {

namespace core = manager::core;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

namespace {

proto::NodeState ToProto(core::NodeState s) {
  switch (s) {
    case core::NodeState::kStop: return proto::NODE_STATE_STOP;
    case core::NodeState::kWait: return proto::NODE_STATE_WAIT;
    case core::NodeState::kAlone: return proto::NODE_STATE_ALONE;
    case core::NodeState::kPrim: return proto::NODE_STATE_PRIM;
    case core::NodeState::kSecond: return proto::NODE_STATE_SECOND;
  }
  return proto::NODE_STATE_UNKNOWN;
}

proto::DataState ToProto(core::DataState d) {
  switch (d) {
    case core::DataState::kUnknown: return proto::DATA_STATE_UNKNOWN;
    case core::DataState::kUpToDate: return proto::DATA_STATE_UP_TO_DATE;
    case core::DataState::kOutdated: return proto::DATA_STATE_OUTDATED;
    case core::DataState::kInconsistent: return proto::DATA_STATE_INCONSISTENT;
  }
  return proto::DATA_STATE_UNKNOWN;
}

// The persisted facts a NodeView shows (this node's, or the peer's as last heard).
void FillData(const core::Persisted& p, proto::NodeView* v) {
  v->set_data_uptodate(p.data == core::DataState::kUpToDate);
  v->set_data_state(ToProto(p.data));
  v->set_generation(p.current.counter);
  v->set_generation_author(p.current.author);
  v->set_split_brain(p.split_brain);
}

uint64_t WallMs() {
  return std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

proto::SubState ToProto(core::Readiness r) {
  return r == core::Readiness::kReady ? proto::SUB_STATE_READY : proto::SUB_STATE_TRANSIENT;
}

scripts::Script ToScript(core::Script s) {
  switch (s) {
    case core::Script::kPrestart: return scripts::Script::kPrestart;
    case core::Script::kStartBoth: return scripts::Script::kStartBoth;
    case core::Script::kStartPrim: return scripts::Script::kStartPrim;
    case core::Script::kStartSecond: return scripts::Script::kStartSecond;
    case core::Script::kStopPrim: return scripts::Script::kStopPrim;
    case core::Script::kStopSecond: return scripts::Script::kStopSecond;
    case core::Script::kStopBoth: return scripts::Script::kStopBoth;
    case core::Script::kPoststop: return scripts::Script::kPoststop;
  }
  return scripts::Script::kPrestart;
}

const std::string& ScriptPath(const config::Scripts& s, core::Script script) {
  switch (script) {
    case core::Script::kPrestart: return s.prestart;
    case core::Script::kStartBoth: return s.start_both;
    case core::Script::kStartPrim: return s.start_prim;
    case core::Script::kStartSecond: return s.start_second;
    case core::Script::kStopPrim: return s.stop_prim;
    case core::Script::kStopSecond: return s.stop_second;
    case core::Script::kStopBoth: return s.stop_both;
    case core::Script::kPoststop: return s.poststop;
  }
  return s.prestart;
}

core::Command ToCore(admin::Command c) {
  switch (c) {
    case admin::Command::kStart: return core::Command::kStart;
    case admin::Command::kStop: return core::Command::kStop;
    case admin::Command::kRestart: return core::Command::kRestart;
    case admin::Command::kForcestop: return core::Command::kForceStop;
    case admin::Command::kPrim: return core::Command::kPrim;
    case admin::Command::kSecond:
    case admin::Command::kSecondFullsync: return core::Command::kSecond;
    case admin::Command::kResync: return core::Command::kResync;
    case admin::Command::kPrimforce: return core::Command::kPrimForce;
    case admin::Command::kSwap:
    case admin::Command::kSwapNosync: return core::Command::kSwap;
    case admin::Command::kStopStart: return core::Command::kStopStart;
  }
  return core::Command::kStart;
}

core::FailAction ToFail(config::RecoveryAction a) {
  switch (a) {
    case config::RecoveryAction::kStopStart: return core::FailAction::kStopStart;
    case config::RecoveryAction::kStop: return core::FailAction::kStop;
    default: return core::FailAction::kRestart;
  }
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

Node::Node(NodeOptions options, admin::ModuleLog* log) : opt_(std::move(options)), log_(log) {}

Node::~Node() {
  stop_monitor_ = true;
  if (monitor_.joinable()) monitor_.join();
  if (link_) link_->Stop();
  ReapWorkers(true);
}

Status Node::Init() {
  const auto& cfg = opt_.cfg;
  // Peer: the other node of cluster.xml.
  auto names = cfg.cluster.NodeNames();
  bool found = false;
  for (const auto& n : names) {
    if (n == opt_.self)
      found = true;
    else if (peer_.empty())
      peer_ = n;
  }
  if (!found) return Status::InvalidArgument("node '" + opt_.self + "' is not in " + cfg.cluster.file);
  if (peer_.empty() || names.size() != 2)
    return Status::InvalidArgument(cfg.cluster.file + ": a mirror module needs exactly two nodes");
  std::vector<heartbeat::NetworkEndpoint> nets;
  std::string self_flow, peer_flow;
  if (Status s = InitHeartbeatNetworks(&nets, &self_flow, &peer_flow); !s.ok()) return s;

  // Key: the shared key file, or (explicit auth="derived" only) derived from cluster.xml. The loader
  // already refused a missing key file; one removed since is an error here, never a silent fallback.
  const std::string cluster_xml = ReadAll(cfg.cluster.file);
  heartbeat::HeartbeatKey key;
  if (cfg.heart.derived_key) {
    log_->Warning(
        "auth=\"derived\": heartbeat key derived from cluster.xml (anyone who can read it can forge "
        "heartbeats)");
    key = heartbeat::HeartbeatKey::DeriveFromConfig(cluster_xml, cfg.module_name);
  } else if (Status ks = heartbeat::HeartbeatKey::FromFile(cfg.heart.key_file, &key); !ks.ok()) {
    return ks;
  }
  const uint64_t cluster_id = heartbeat::ComputeClusterId(cluster_xml, cfg.module_name);

  InitVips();

  // Persisted facts.
  store_ = std::make_unique<StateStore>(cfg.hamirror.state_dir + "/node.state");
  adopt_store_ = std::make_unique<AdoptStore>(cfg.hamirror.state_dir + "/adopt");
  core::Persisted persisted;
  Status ls = store_->Load(&persisted);
  if (!ls.ok() && ls.code() != Status::Code::kNotFound) return ls;
  failover_store_ = std::make_unique<FailoverStore>(cfg.hamirror.state_dir + "/last_failover");
  if (proto::Failover f; failover_store_->Load(&f).ok()) {
    last_failover_ = f;
  }  // else none yet, or unreadable: only `state -v` misses it, not worth refusing to start
  log_->Info(std::string("data ") + core::ToString(persisted.data) + ", generation " +
             std::to_string(persisted.current.counter) + ":" + persisted.current.author);

  // Runtime toggles an operator set before (boot, failover) win over the configuration.
  toggle_store_ = std::make_unique<ToggleStore>(cfg.hamirror.state_dir + "/toggles");
  if (Status ts = toggle_store_->Load(&toggles_); !ts.ok()) return ts;
  boot_ = toggles_.boot.value_or(cfg.service.boot);
  failover_ = toggles_.failover.value_or(cfg.service.failover);
  if (toggles_.boot || toggles_.failover)
    log_->Info(std::string("toggles from ") + toggle_store_->path() + ": boot " + (boot_ ? "on" : "off") +
               ", failover " + (failover_ ? "on" : "off"));

  machine_ = std::make_unique<core::NodeMachine>(MachineConfig(), persisted);
  // The constructor bumped the persisted incarnation: store it before the first heartbeat (contract).
  if (Status s = store_->Save(machine_->persisted()); !s.ok()) return s;

  // Scripts' environment.
  script_env_.safe = opt_.safe_dir;
  script_env_.module_name = cfg.module_name;
  script_env_.safebin = opt_.safe_dir;
  script_env_.safevar = cfg.hamirror.state_dir;
  script_env_.safeuserbin = cfg.module_dir + "/" + config::kScriptsRelDir;
  script_env_.admin_socket = opt_.admin_socket;
  script_env_.vars = cfg.user.vars;
  InitFs(self_flow, peer_flow);
  // Before the first heartbeat: the peer must never hear this process in a state it does not keep.
  const bool adopted = AdoptOrClean();

  heartbeat::HeartbeatConfig hc;
  hc.cluster_id = cluster_id;
  hc.key = key;
  hc.local_node = opt_.self;
  hc.peer_node = peer_;
  hc.networks = std::move(nets);
  hc.pulse = cfg.heart.pulse;
  hc.timeout = cfg.heart.timeout;
  link_ = std::make_unique<HeartbeatBridge>(
      std::move(hc), [this](const core::PeerStatus& s) { Post(core::EvPeerStatus{s}); },
      [this] { Post(core::EvPeerLost{}); }, [this](core::PeerStatus* out) { return MakeStatus(out); });
  if (Status s = link_->Start(); !s.ok()) return s;
  monitor_ = std::thread([this] { MonitorLoop(); });
  if (adopted) {
    log_->Info("module adopted: no boot start");
  } else if (boot_) {
    Post(core::EvCommand{core::Command::kStart, 0});
  } else {
    log_->Info("boot off: the module stays STOP until `hamirror start`");
  }
  UpdateSnapshot();
  return Status::Ok();
}

Status Node::InitHeartbeatNetworks(std::vector<heartbeat::NetworkEndpoint>* nets, std::string* self_flow,
                                   std::string* peer_flow) {
  // Heartbeat networks: this node's and the peer's address on each <heartbeat> lan.
  for (const auto& hb : opt_.cfg.heart.heartbeats) {
    heartbeat::NetworkEndpoint n;
    n.name = hb.name;
    n.port = static_cast<uint16_t>(opt_.cfg.hamirror.heartbeat_port);
    for (const auto& node : hb.nodes) {
      if (node.name == opt_.self) n.local_addr = node.addr;
      if (node.name == peer_) n.peer_addr = node.addr;
    }
    if (n.local_addr.empty() || n.peer_addr.empty())
      return Status::InvalidArgument("heartbeat network " + hb.name + ": missing address of " + opt_.self +
                                     " or " + peer_);
    if (hb.flow) {
      *self_flow = n.local_addr;
      *peer_flow = n.peer_addr;
    }
    nets->push_back(n);
  }
  if (nets->empty()) return Status::InvalidArgument("no heartbeat network configured");
  return Status::Ok();
}

void Node::InitVips() {
  for (const auto& itf : opt_.cfg.vip.interfaces) {
    for (const auto& a : itf.addrs) {
      vip::VipAddress v;
      v.addr = a.addr;
      v.prefix_len = a.prefix_len;
      v.interface = itf.name;
      vips_.push_back(v);
      vip_arp_.push_back(itf.arpreroute);
    }
  }
  vip_held_.assign(vips_.size(), false);
}

core::Config Node::MachineConfig() const {
  const auto& cfg = opt_.cfg;
  core::Config cc;
  cc.self = opt_.self;
  cc.peer = peer_;
  cc.defaultprim = cfg.service.defaultprim == config::DefaultPrim::kNode ? core::DefaultPrimKind::kNode
                   : cfg.service.defaultprim == config::DefaultPrim::kLastPrim
                       ? core::DefaultPrimKind::kLastPrim
                       : core::DefaultPrimKind::kAlone;
  cc.defaultprim_node = cfg.service.defaultprim_node;
  cc.failover = failover_;
  cc.maxloop = cfg.service.maxloop;
  cc.loop_interval_ms = cfg.service.loop_interval.count();
  const uint64_t timeout = cfg.heart.timeout.count(), pulse = cfg.heart.pulse.count();
  cc.heartbeat_timeout_ms = timeout;
  cc.witness = cfg.has_splitbrain;
  // The lease must end before the peer may take over: timeout - pulse - delay margin.
  const uint64_t margin = std::max<uint64_t>(pulse, timeout / 10);
  cc.lease_ms = timeout > pulse + margin + 100 ? timeout - pulse - margin : timeout / 2;
  cc.witness_probe_interval_ms = std::max<uint64_t>(cc.lease_ms / 3, 50);
  cc.witness_probe_timeout_ms = std::min<uint64_t>(3000, std::max<uint64_t>(cc.lease_ms, 1000));
  // Incarnation: this process's start time (ns since epoch). The core only needs it distinct per
  // start: a restarted peer is then heard at once (the heartbeat service drops replays itself).
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  cc.incarnation = uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
  return cc;
}

void Node::InitFs(const std::string& self_flow, const std::string& peer_flow) {
  const auto& cfg = opt_.cfg;
  // hamirror-fs per replicated directory.
  std::vector<FsDir> dirs;
  for (const auto& r : cfg.rfs.replicated) {
    FsDir d;
    d.dir = r.dir;
    std::string base = r.dir.substr(r.dir.rfind('/') + 1);
    d.control = opt_.run_dir + "/" + kFsControlSubdir + "/" + base + ".sock";
    d.listen = self_flow + ":" + std::to_string(cfg.hamirror.replication_port);
    d.peer = peer_flow + ":" + std::to_string(cfg.hamirror.replication_port);
    d.log_path = opt_.log_dir + "/fs-" + base + ".log";
    d.direct_io_all = r.direct_io_all;
    dirs.push_back(d);
  }
  FsLaunch launch;
  launch.fs_bin = opt_.fs_bin;
  launch.node_name = opt_.self;
  launch.tls_dir = cfg.hamirror.tls_dir;
  launch.encryption = cfg.rfs.encryption;
  launch.peer_name = peer_;
  launch.state_dir = cfg.hamirror.state_dir;
  launch.zone_size = cfg.rfs.ruzone_blocksize;
  launch.resync_rate_bps = cfg.rfs.reiallowedbw_kbps * 1024;
  launch.resync_workers = cfg.rfs.nbrei;
  launch.send_timeout_ms = cfg.rfs.sendtimeout.count();
  // The monitor's fs poll (every 2 s) waits behind the checkers it runs inline: 10 s plus their
  // timeouts, so a slow checker is never taken for a dead manager.
  launch.manager_grace_ms = 10000;
  for (const auto& c : cfg.check.tcp) launch.manager_grace_ms += c.timeout.count();
  for (const auto& c : cfg.check.custom) launch.manager_grace_ms += c.timeout.count();
  for (const auto& c : cfg.check.ping) launch.manager_grace_ms += c.timeout.count();
  fs_ = std::make_unique<FsDriver>(std::move(dirs), std::move(launch), log_);
}

uint64_t Node::NowMs() const {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - start_).count() + 1;
}

void Node::StepPendingEvents() {
  // Bounded: events posted while these steps run are taken in the next rounds, up to 16.
  for (int round = 0; round < 16; ++round) {
    std::deque<Event> batch;
    {
      std::lock_guard<std::mutex> lock(mu_);
      batch.swap(events_);
    }
    if (batch.empty()) return;
    for (auto& ev : batch) Step(ev);
  }
}

void Node::Post(Event ev) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(std::move(ev));
  }
  cv_.notify_one();
}

void Node::RequestExit(bool graceful) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (exit_requested_) graceful = false;  // second request: leave now
    exit_requested_ = true;
    graceful_exit_ = graceful;
  }
  cv_.notify_one();
}

void Node::RequestLeave() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (exit_requested_) return;  // SIGTERM came first: it stops the module
    leave_requested_ = true;
  }
  cv_.notify_one();
}

void Node::Run() {
  uint64_t next_tick = 0;
  bool stop_sent = false;
  uint64_t exit_deadline = 0, leave_deadline = 0;
  for (;;) {
    bool exiting, graceful, leaving;
    {
      std::unique_lock<std::mutex> lock(mu_);
      const uint64_t now = NowMs();
      if (events_.empty() && !exit_requested_ && next_tick > now)
        cv_.wait_for(lock, milliseconds(next_tick - now),
                     [&] { return !events_.empty() || exit_requested_; });
      exiting = exit_requested_;
      graceful = graceful_exit_;
      leaving = leave_requested_ && !exit_requested_;
    }
    // Every event queued so far goes before the tick: a step that blocked (an fs role change takes up
    // to seconds) leaves the peer's heartbeats waiting here, and a tick first would time the peer out.
    StepPendingEvents();
    if (const uint64_t now = NowMs(); now >= next_tick) {
      Step(core::EvTick{});
      next_tick = now + 100;
    }
    ReapWorkers(false);
    if (leaving && LeaveStep(&leave_deadline)) break;
    if (exiting) {
      if (!graceful || machine_->state() == core::NodeState::kStop) break;
      if (!stop_sent) {
        log_->Info("hamirrord exiting: stopping the module first");
        Step(core::EvCommand{core::Command::kStop, 0});
        stop_sent = true;
        exit_deadline = NowMs() + opt_.cfg.user.nicestoptimeout.count() * 2 +
                        opt_.cfg.user.forcestoptimeout.count() + 5000;
      } else if (NowMs() > exit_deadline) {
        log_->Error("module did not reach STOP in time; exiting anyway");
        break;
      }
    }
  }
  stop_monitor_ = true;
  if (monitor_.joinable()) monitor_.join();
  link_->Stop();
  // Release the VIP if the machine still holds it (non-graceful exit): never leave an orphan address.
  // Left running (SIGUSR2): the next hamirrord adopts it, or the keeper removes it at the lease's end.
  if (machine_->vip_held() && !left_running_) {
    for (const auto& v : vips_) {
      if (Status s = vip::Remove(v); !s.ok()) log_->Error("VIP " + v.addr + ": " + s.ToString());
    }
  }
  ReapWorkers(true);
}

void Node::Step(const Event& ev) {
  {
    std::lock_guard<std::mutex> lock(machine_mu_);
    StepLocked(ev);
  }
  // After the lock is released, so that the heartbeat thread can take a fresh status.
  if (send_pending_) {
    send_pending_ = false;
    link_->SendNow();
  }
}

void Node::StepLocked(const Event& ev) {
  const auto before_state = machine_->state();
  const auto before_ready = machine_->readiness();
  std::vector<core::Action> actions = machine_->Step(NowMs(), ev);
  for (const auto& a : actions) {
    if (Apply(a)) continue;
    // What follows a persist counts on the facts being on disk (a role, a resync, the VIP): none of
    // it runs. The module is stopped once, so that the node does not act on facts it cannot keep.
    log_->Error("the node's facts could not be stored: the actions after it are skipped");
    if (!persist_failed_) {
      persist_failed_ = true;
      log_->Error("stopping the module: its state cannot be persisted (see above)");
      Post(core::EvCommand{core::Command::kStop, 0});
    }
    break;
  }
  if (machine_->state() != before_state || machine_->readiness() != before_ready) {
    epoch_++;
    state_ = static_cast<int>(machine_->state());
    ready_ = machine_->readiness() == core::Readiness::kReady;
    // The machine logs the change itself (ActLog); this records what caused it.
    HLOG_DEBUG("state %s -> %s (%s) after %s", core::ToString(before_state),
               core::ToString(machine_->state()), core::ToString(machine_->readiness()),
               core::ToString(ev).c_str());
  }
  if (machine_->failovers() != failovers_seen_) RecordFailover();
  if (!actions.empty() || !std::holds_alternative<core::EvTick>(ev)) UpdateSnapshot();
}

void Node::RecordFailover() {
  failovers_seen_ = machine_->failovers();
  const core::Failover& done = *machine_->last_failover();
  proto::Failover f;
  f.set_at_unix_ms(WallMs() - std::min(WallMs(), NowMs() - std::min(NowMs(), done.done_ms)));
  f.set_duration_ms(done.done_ms - done.detected_ms);
  f.set_reason(done.reason);
  f.set_state(ToProto(done.state));
  if (Status s = failover_store_->Save(f); !s.ok())
    log_->Warning("last failover not stored (shown until hamirrord restarts): " + s.ToString());
  std::lock_guard<std::mutex> lock(snap_mu_);
  last_failover_ = f;
}

bool Node::Apply(const core::Action& a) {
  if (auto* s = std::get_if<core::ActRunScript>(&a)) {
    RunScriptAsync(s->script, s->force);
  } else if (std::holds_alternative<core::ActAddVip>(a)) {
    std::lock_guard<std::mutex> lock(snap_mu_);
    for (size_t i = 0; i < vips_.size(); ++i) {
      Status s = vip::Add(vips_[i]);
      if (!s.ok()) {
        log_->Error("VIP " + vips_[i].addr + ": " + s.ToString());
        continue;
      }
      vip_held_[i] = true;
      log_->Info("VIP " + vips_[i].addr + " added");
      vip::VipAddress r;
      if (vip_arp_[i] && vips_[i].addr.find(':') == std::string::npos && vip::ResolveVip(vips_[i], &r).ok()) {
        Status g = garp_.Announce(r.interface, r.addr);
        if (!g.ok()) log_->Warning("gratuitous ARP for " + r.addr + ": " + g.ToString());
      }
    }
  } else if (std::holds_alternative<core::ActRemoveVip>(a)) {
    std::lock_guard<std::mutex> lock(snap_mu_);
    for (size_t i = 0; i < vips_.size(); ++i) {
      garp_.Cancel(vips_[i].addr);
      Status s = vip::Remove(vips_[i]);
      if (!s.ok())
        log_->Error("VIP " + vips_[i].addr + ": " + s.ToString());
      else
        log_->Info("VIP " + vips_[i].addr + " removed");
      vip_held_[i] = false;
    }
  } else if (auto* f = std::get_if<core::ActSetFsRole>(&a)) {
    // The machine asks for secondary ("read-only while stopped") when the module reaches STOP; the
    // state is still STOP after the step unless a start followed at once (restart, stopstart).
    if (!fs_->empty() && f->role == core::FsRole::kSecondary && machine_->state() == core::NodeState::kStop &&
        !opt_.cfg.rfs.keep_mounted) {
      fs_linked_ = false;
      Status s = fs_->Release();
      if (s.ok()) return true;
      log_->Error("release of the data directory: " + s.ToString() + ": kept mounted read-only instead");
    }
    if (!fs_->empty()) {
      Status s = fs_->SetRole(f->role);
      fs_linked_ = s.ok() && f->role == core::FsRole::kPrimary;
      if (!s.ok()) {
        log_->Error(std::string("fs role ") + core::ToString(f->role) + ": " + s.ToString());
        // Without a replicating primary the peer is not in sync: the machine must not claim PRIM.
        if (f->role == core::FsRole::kPrimary) Post(core::EvDataLinkLost{});
      } else {
        log_->Info(std::string("fs role ") + core::ToString(f->role));
      }
    }
  } else if (std::holds_alternative<core::ActStartResync>(a)) {
    StartResyncWait();
  } else if (std::holds_alternative<core::ActStopResync>(a)) {
    std::lock_guard<std::mutex> lock(resync_mu_);
    resync_waiting_ = false;
  } else if (auto* p = std::get_if<core::ActPersist>(&a)) {
    Status s = store_->Save(p->facts);
    if (!s.ok()) {
      log_->Error("persist state: " + s.ToString());
      return false;
    }
    persist_failed_ = false;
  } else if (std::holds_alternative<core::ActSendStatus>(a)) {
    send_pending_ = true;  // sent when the step is over (Step)
  } else if (const auto* pw = std::get_if<core::ActProbeWitness>(&a)) {
    ProbeWitnessAsync(pw->probe_id);
  } else if (auto* r = std::get_if<core::ActCommandReply>(&a)) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = pending_.find(r->id);
    if (it != pending_.end()) {
      it->second.set_value(r->accepted ? admin::CommandResult::Accepted(r->reason)
                                       : admin::CommandResult::Refused(r->reason));
      pending_.erase(it);
    }
  } else if (auto* l = std::get_if<core::ActLog>(&a)) {
    if (l->level <= 0) {
      HLOG_DEBUG("%s", l->message.c_str());
    } else {
      log_->Write(l->level >= 3   ? admin::ModuleLog::Level::kError
                  : l->level == 2 ? admin::ModuleLog::Level::kWarning
                                  : admin::ModuleLog::Level::kInfo,
                  l->message);
    }
  }
  return true;
}

void Node::RunScriptAsync(core::Script script, bool force) {
  auto done = std::make_shared<std::atomic<bool>>(false);
  std::thread th([this, script, force, done] {
    const scripts::ScriptResult r = RunScriptNow(script, force);
    Post(core::EvScriptDone{script, r.ok          ? core::ScriptResult::kOk
                                    : r.timed_out ? core::ScriptResult::kTimeout
                                                  : core::ScriptResult::kFailed});
    *done = true;
  });
  workers_.push_back(Worker{std::move(th), done});
}

scripts::ScriptResult Node::RunScriptNow(core::Script script, bool force) {
  scripts::ScriptTimeouts t;
  t.timeout = opt_.cfg.user.nicestoptimeout;
  t.force_timeout = opt_.cfg.user.forcestoptimeout;
  t.rerun_with_force = false;  // the state machine (or the crash path) decides about the force run
  log_->Info(std::string("running ") + core::ToString(script) + (force ? " force" : ""));
  const bool logging = opt_.cfg.user.logging;
  scripts::ScriptResult r = scripts::RunScript(ToScript(script), ScriptPath(opt_.cfg.scripts, script),
                                               script_env_, t, force, [this, logging](std::string_view line) {
                                                 if (logging) log_->Info(line);
                                               });
  log_->Write(r.ok ? admin::ModuleLog::Level::kInfo : admin::ModuleLog::Level::kWarning, r.Summary());
  return r;
}

void Node::ProbeWitnessAsync(uint64_t probe_id) {
  auto done = std::make_shared<std::atomic<bool>>(false);
  const auto addrs = opt_.cfg.splitbrain.addrs;
  const milliseconds timeout(machine_->config().witness_probe_timeout_ms);
  std::thread th([this, addrs, timeout, done, probe_id] {
    std::string detail;
    bool ok = process::CheckWitness(addrs, timeout, &detail);
    {
      std::lock_guard<std::mutex> lock(snap_mu_);
      checker_status_.erase(
          std::remove_if(checker_status_.begin(), checker_status_.end(),
                         [](const proto::CheckerStatus& c) { return c.kind() == "splitbrain"; }),
          checker_status_.end());
      proto::CheckerStatus c;
      c.set_name(opt_.cfg.splitbrain.ident);
      c.set_kind("splitbrain");
      c.set_ok(ok);
      c.set_detail(detail);
      checker_status_.push_back(c);
    }
    Post(core::EvWitness{ok, probe_id});  // the id lets the core drop a late answer to an older probe
    *done = true;
  });
  workers_.push_back(Worker{std::move(th), done});
}

void Node::ReapWorkers(bool all) {
  for (auto it = workers_.begin(); it != workers_.end();) {
    if (*it->done || all) {
      if (*it->done) {
        it->thread.join();
      } else {
        it->thread.detach();  // exiting: a script still running is not waited for
        left_workers_ = true;
      }
      it = workers_.erase(it);
    } else {
      ++it;
    }
  }
}

bool Node::MakeStatus(core::PeerStatus* out) {
  std::unique_lock<std::mutex> lock(machine_mu_, std::try_to_lock);
  if (!lock.owns_lock()) return false;
  *out = machine_->MakeHeartbeat(NowMs());
  return true;
}

void Node::UpdateSnapshot() {
  proto::StateReply r;
  r.set_module(opt_.cfg.module_name);
  auto* l = r.mutable_local();
  l->set_node(opt_.self);
  l->set_state(ToProto(machine_->state()));
  l->set_sub_state(ToProto(machine_->readiness()));
  std::string reason = machine_->wait_reason();
  if (machine_->split_brain() && reason.find("split brain") == std::string::npos)
    reason += reason.empty() ? "split brain" : "; split brain";
  l->set_reason(reason);
  FillData(machine_->persisted(), l);
  l->set_known(true);
  auto* p = r.mutable_peer();
  p->set_node(peer_);
  bool peer_entered = false;
  const std::optional<uint64_t> peer_since = machine_->peer_state_since_ms(&peer_entered);
  if (auto ps = machine_->last_peer_status(); ps && machine_->peer_connected()) {
    p->set_known(true);
    p->set_state(ToProto(ps->state));
    p->set_sub_state(ToProto(ps->readiness));
    FillData(ps->data, p);
    p->set_split_brain(ps->split_brain);
  }
  r.set_maxloop(opt_.cfg.service.maxloop);
  r.set_loop_count(static_cast<uint32_t>(machine_->loop_count(NowMs())));
  std::lock_guard<std::mutex> lock(snap_mu_);
  snapshot_ = std::move(r);
  local_state_since_ms_ = machine_->state_since_ms();
  peer_state_since_ms_ = peer_since.value_or(0);
  peer_state_entered_ = peer_entered;
}

void Node::FillTimes(proto::StateReply* reply) {
  const uint64_t now = NowMs();
  reply->mutable_local()->set_state_age_ms(now - std::min(now, local_state_since_ms_));
  if (reply->peer().known()) {
    reply->mutable_peer()->set_state_age_ms(now - std::min(now, peer_state_since_ms_));
    reply->mutable_peer()->set_state_age_at_least(!peer_state_entered_);
  }
  if (last_failover_) {
    *reply->mutable_last_failover() = *last_failover_;
    reply->mutable_last_failover()->set_ago_ms(WallMs() - std::min(WallMs(), last_failover_->at_unix_ms()));
  }
  const auto serving = [](proto::NodeState s) {
    return s == proto::NODE_STATE_PRIM || s == proto::NODE_STATE_ALONE;
  };
  proto::VipHolder holder = proto::VIP_HOLDER_UNKNOWN;
  if (vips_.empty())
    holder = proto::VIP_HOLDER_NO_VIP;
  else if (std::find(vip_held_.begin(), vip_held_.end(), true) != vip_held_.end())
    holder = proto::VIP_HOLDER_LOCAL;
  else if (reply->peer().known())
    holder = serving(reply->peer().state()) ? proto::VIP_HOLDER_PEER : proto::VIP_HOLDER_NONE;
  reply->set_vip_holder(holder);
}

void Node::FillState(bool verbose, proto::StateReply* reply) {
  std::lock_guard<std::mutex> lock(snap_mu_);
  *reply = snapshot_;
  reply->set_boot(boot_.load());
  reply->set_failover(failover_.load());
  const int errd = errd_mode_.load();
  reply->set_errd(errd == kErrdOff ? "off" : errd == kErrdSuspended ? "suspended" : "on");
  reply->set_checkers_enabled(checkers_on_.load());
  reply->set_pid(getpid());
  reply->set_uptime_s(std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - start_).count());
  FillTimes(reply);
  if (!verbose) return;
  for (const auto& n : link_->Networks()) {
    auto* h = reply->add_heartbeats();
    h->set_network(n.name);
    h->set_peer_addr(n.peer_addr);
    h->set_up(n.up);
    h->set_last_seen_ms_ago(n.last_seen_ms_ago < 0 ? 0 : n.last_seen_ms_ago + 1);
    h->set_received(n.received);
    h->set_sent(n.sent);
    h->set_send_errors(n.send_errors);
  }
  const heartbeat::DropCounters d = link_->drops();
  auto* hd = reply->mutable_heartbeat_drops();
  hd->set_garbage(d.garbage);
  hd->set_wrong_cluster(d.wrong_cluster);
  hd->set_bad_tag(d.bad_tag);
  hd->set_wrong_node(d.wrong_node);
  hd->set_replayed(d.replayed);
  hd->set_bad_payload(link_->bad_payloads());
  for (size_t i = 0; i < vips_.size(); ++i) {
    auto* v = reply->add_vips();
    v->set_addr(vips_[i].addr);
    v->set_interface(vips_[i].interface);
    v->set_held(vip_held_[i]);
  }
  for (const auto& f : fs_status_) *reply->add_fs() = f;
  for (const auto& pw : proc_status_) *reply->add_processes() = pw;
  if (proc_status_.empty() && errd == kErrdOff) {
    // Switched off before the first poll: still name what is not watched.
    for (const auto& w : opt_.cfg.errd.procs)
      reply->add_processes()->set_name(w.name.empty() ? w.nameregex : w.name);
  }
  for (const auto& c : checker_status_) *reply->add_checkers() = c;
  FillCertificate(reply);
}

void Node::FillCertificate(proto::StateReply* reply) {
  const auto& cfg = opt_.cfg;
  if (cfg.rfs.replicated.empty() || !cfg.rfs.encryption) return;
  auto* c = reply->mutable_tls_certificate();
  c->set_path(cfg.hamirror.tls_dir + "/node.pem");
  CertificateInfo info;
  if (Status st = ReadCertificateInfo(c->path(), &info); !st.ok()) {
    c->set_error(st.message());
    return;
  }
  c->set_subject(info.subject);
  c->set_not_after_unix_s(info.not_after_s);
  c->set_expires_in_s(static_cast<int64_t>(info.not_after_s) - static_cast<int64_t>(WallMs() / 1000));
}

admin::CommandResult Node::Execute(admin::Command cmd) {
  if (cmd == admin::Command::kSwapNosync) {
    if (std::string why = SwapNosyncRefusal(); !why.empty()) return admin::CommandResult::Refused(why);
  }
  std::future<admin::CommandResult> fut;
  uint64_t id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    id = next_cmd_id_++;
    fut = pending_[id].get_future();
    core::Command core_cmd = ToCore(cmd);
    if (cmd == admin::Command::kSecondFullsync) {
      // Used by the next resync into this node: a SECOND already there resyncs again now.
      fullsync_pending_ = true;
      if (state_.load() == static_cast<int>(core::NodeState::kSecond)) core_cmd = core::Command::kResync;
    }
    events_.emplace_back(std::in_place_type<core::EvCommand>, core::EvCommand{core_cmd, id});
  }
  cv_.notify_one();
  log_->Info(std::string("command ") + admin::CommandName(cmd));
  if (fut.wait_for(std::chrono::seconds(15)) != std::future_status::ready) {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.erase(id);
    return admin::CommandResult::Refused("no answer from the daemon's event loop within 15 s");
  }
  auto r = fut.get();
  if (cmd == admin::Command::kSecondFullsync && !r.accepted) fullsync_pending_ = false;
  return r;
}

void Node::Print(admin::ModuleLog::Level level, const std::string& msg) { log_->Write(level, msg); }

admin::CommandResult Node::Verify(bool repair) {
  if (fs_->empty()) return admin::CommandResult::Refused("no replicated directory (<rfs>) in this module");
  if (state_.load() != static_cast<int>(core::NodeState::kPrim) || !ready_.load())
    return admin::CommandResult::Refused("verify runs on the primary (PRIM, ready) with its peer SECOND");
  log_->Info(std::string("verify") + (repair ? " --repair" : "") + " started");
  if (Status s = fs_->Verify(repair); !s.ok()) return admin::CommandResult::Refused(s.ToString());
  return admin::CommandResult::Accepted("verify started: see `hamirror state -v`");
}

std::string Node::SwapNosyncRefusal() {
  // Only the primary's hamirror-fs knows what the peer may lack (its record): typed elsewhere, nobody
  // could promise that no resync follows.
  if (state_.load() != static_cast<int>(core::NodeState::kPrim) || !ready_.load())
    return "swap nosync: type it on the primary (PRIM, ready): only its hamirror-fs can tell that the "
           "peer's copy needs no resync";
  proto::StateReply now;
  fs_->FillStatus(&now);  // fresh, not the last poll: the answer must hold at this instant
  for (const auto& f : now.fs()) {
    if (!f.running()) return "swap nosync: hamirror-fs of " + f.dir() + " is not running";
    const bool clean = f.in_sync() && f.record().zones() == 0 && f.record().files() == 0 &&
                       !f.record().full() && f.peer_errors() == 0;
    if (!clean)
      return "swap nosync: " + f.dir() + ": the peer's copy is not in sync (" +
             std::to_string(f.record().zones()) + " zones, " + std::to_string(f.record().files()) +
             " files recorded, " + std::to_string(f.peer_errors()) +
             " peer errors): a resync would follow; use `swap` or wait until it is in sync";
  }
  return "";
}

admin::CommandResult Node::SetToggle(admin::Toggle what, admin::ToggleSetting how) {
  const bool on = how == admin::ToggleSetting::kOn;
  switch (what) {
    case admin::Toggle::kErrd: return SetErrd(how);
    case admin::Toggle::kChecker:
      checkers_on_ = on;
      log_->Info(std::string("checker ") + (on ? "on" : "off: <check> checkers not run until `checker on`"));
      return admin::CommandResult::Accepted(on ? "checkers run" : "checkers not run until `checker on`");
    case admin::Toggle::kBoot:
    case admin::Toggle::kFailover: return SetStoredToggle(what, on);
  }
  return admin::CommandResult::Refused("unknown toggle");
}

admin::CommandResult Node::SetErrd(admin::ToggleSetting how) {
  int mode = errd_mode_.load();
  switch (how) {
    case admin::ToggleSetting::kOn: mode = kErrdOn; break;
    case admin::ToggleSetting::kOff: mode = kErrdOff; break;
    case admin::ToggleSetting::kSuspend:
      if (mode == kErrdOff) return admin::CommandResult::Refused("errd is off: nothing to suspend");
      mode = kErrdSuspended;
      break;
    case admin::ToggleSetting::kResume:
      if (mode == kErrdOff) return admin::CommandResult::Refused("errd is off: use `errd on`");
      mode = kErrdOn;
      break;
  }
  errd_mode_ = mode;
  const char* what = mode == kErrdOff         ? "processes not watched until `errd on`"
                     : mode == kErrdSuspended ? "processes watched, failures not acted on until `errd resume`"
                                              : "processes watched";
  log_->Info(std::string("errd ") + admin::ToggleSettingName(how) + ": " + what);
  return admin::CommandResult::Accepted(what);
}

admin::CommandResult Node::SetStoredToggle(admin::Toggle what, bool on) {
  const bool boot = what == admin::Toggle::kBoot;
  {
    std::lock_guard<std::mutex> lock(toggle_mu_);
    Toggles next = toggles_;
    (boot ? next.boot : next.failover) = on;
    if (Status s = toggle_store_->Save(next); !s.ok()) {
      log_->Error(std::string(admin::ToggleName(what)) + ": " + s.ToString());
      return admin::CommandResult::Refused("cannot store it: " + s.ToString());
    }
    toggles_ = next;
    (boot ? boot_ : failover_) = on;
  }
  std::string note;
  if (boot) {
    note = on ? "the module starts when hamirrord starts" : "the module stays STOP when hamirrord starts";
  } else {
    Post(core::EvSetFailover{on});
    note = on ? "a lost peer is taken over"
              : "a lost peer is not taken over (WAIT until `prim` or `failover on`)";
  }
  log_->Info(std::string(admin::ToggleName(what)) + (on ? " on: " : " off: ") + note + " (kept in " +
             toggle_store_->path() + ")");
  return admin::CommandResult::Accepted(note);
}

// A periodic watch of the monitor thread: when it runs next, and the state epoch whose failure it
// reported last (a failure is reported once per epoch).
struct Node::Watch {
  Clock::time_point next;
  uint64_t reported = ~0ull;
};

// What the monitor thread keeps between its 100 ms steps.
struct Node::MonitorState {
  std::vector<process::ProcMatcher> matchers;  // one per <errd> proc
  std::vector<Watch> procs, tcp, custom, ping, intf;
  Clock::time_point next_fs, next_vip, next_resync;
  int not_in_sync_polls = 0;  // consecutive fs polls with a primary fs not in sync
  bool any_vip_check = false;
  std::vector<std::string> env;  // custom checkers' environment
  // Failures are judged only once the current state has lasted one poll period: right after
  // start_prim the application may still be starting.
  uint64_t seen_epoch = 0;
  Clock::time_point epoch_since;
};

// One step's view of the node.
struct Node::MonitorTick {
  Clock::time_point now;
  core::NodeState state;
  bool ready;
  uint64_t epoch;
  bool settled;  // the state has lasted one errd poll period
};

void Node::MonitorLoop() {
  const auto& cfg = opt_.cfg;
  MonitorState m;
  const auto now0 = Clock::now();
  for (const auto& p : cfg.errd.procs) m.matchers.emplace_back(p.name, p.nameregex, p.argregex);
  m.procs.assign(cfg.errd.procs.size(), Watch{now0 + cfg.errd.polltimer});
  m.tcp.assign(cfg.check.tcp.size(), Watch{now0});
  m.custom.assign(cfg.check.custom.size(), Watch{now0});
  m.ping.assign(cfg.check.ping.size(), Watch{now0});
  m.intf.assign(cfg.check.intf.size(), Watch{now0});
  m.next_fs = m.next_vip = m.next_resync = m.epoch_since = now0;
  for (const auto& i : cfg.vip.interfaces) m.any_vip_check |= i.check;
  m.env = script_env_.Build();
  m.seen_epoch = epoch_.load();

  while (!stop_monitor_) {
    std::this_thread::sleep_for(milliseconds(100));
    MonitorTick t{Clock::now(), static_cast<core::NodeState>(state_.load()), ready_.load(), epoch_.load(),
                  false};
    if (t.epoch != m.seen_epoch) {
      m.seen_epoch = t.epoch;
      m.epoch_since = t.now;
    }
    t.settled = t.now - m.epoch_since >= cfg.errd.polltimer;

    PollErrd(t, &m);
    if (checkers_on_.load()) RunCheckers(t, &m);  // `checker off`: none runs (the witness is not one)
    // check="on": the VIP must stay configured while the machine holds it; put it back if not.
    if (m.any_vip_check && t.now >= m.next_vip) {
      m.next_vip = t.now + milliseconds(1000);
      RestoreVips();
    }
    if (!fs_->empty() && t.now >= m.next_resync) {
      m.next_resync = t.now + milliseconds(500);
      WatchResync();
    }
    if (!fs_->empty() && t.now >= m.next_fs) {
      m.next_fs = t.now + milliseconds(2000);
      WatchFs(t.state == core::NodeState::kPrim && t.ready, &m.not_in_sync_polls);
    }
  }
}

void Node::PollErrd(const MonitorTick& t, MonitorState* m) {
  // `errd off`: no poll; `errd suspend`: polled (state -v shows the counts) but a failure is not
  // acted on.
  const int errd = errd_mode_.load();
  if (errd == kErrdOff) return;
  const auto& procs_cfg = opt_.cfg.errd.procs;
  bool scanned = false;
  std::vector<process::ProcEntry> procs;
  for (size_t i = 0; i < procs_cfg.size(); ++i) {
    Watch& watch = m->procs[i];
    if (t.now < watch.next) continue;
    watch.next = t.now + opt_.cfg.errd.polltimer;
    const auto& w = procs_cfg[i];
    if (!scanned) {
      procs = process::ScanProcesses();
      scanned = true;
    }
    const int count = process::CountMatching(procs, m->matchers[i]);
    const bool ok = count >= w.atleast && (w.atmax < 0 || count <= w.atmax);
    proto::ProcessWatch pw;
    pw.set_name(w.name.empty() ? w.nameregex : w.name);
    pw.set_count(count);
    pw.set_atleast(w.atleast);
    pw.set_atmax(w.atmax);
    pw.set_ok(ok);
    pw.set_action(config::ToString(w.action));
    pw.set_active(ClassActive(w.klass, t.state));
    {
      std::lock_guard<std::mutex> lock(snap_mu_);
      if (proc_status_.size() != procs_cfg.size()) proc_status_.resize(procs_cfg.size());
      proc_status_[i] = pw;
    }
    if (ok || !t.ready || !t.settled || errd != kErrdOn || !ClassActive(w.klass, t.state) ||
        watch.reported == t.epoch)
      continue;
    watch.reported = t.epoch;
    std::string what = "errd: process " + pw.name() + ": " + std::to_string(count) + " running (atleast " +
                       std::to_string(w.atleast) +
                       (w.atmax >= 0 ? ", atmax " + std::to_string(w.atmax) : "") + "), action " +
                       config::ToString(w.action);
    log_->Warning(what);
    Post(core::EvCheckFailed{ToFail(w.action), what});
  }
}

template <typename Check, typename Probe>
void Node::RunDueChecks(const MonitorTick& t, const char* kind, const std::vector<Check>& checks,
                        std::vector<Watch>* watches, Probe probe) {
  for (size_t i = 0; i < checks.size(); ++i) {
    const Check& c = checks[i];
    Watch& watch = (*watches)[i];
    if (t.now < watch.next || !ClassActive(c.when, t.state)) continue;
    watch.next = t.now + c.interval;
    std::string detail;
    const bool ok = probe(c, &detail);
    ReportCheck(t, kind, c.ident, c.when, c.action, ok, detail, &watch);
  }
}

void Node::RunCheckers(const MonitorTick& t, MonitorState* m) {
  const auto& check = opt_.cfg.check;
  RunDueChecks(t, "tcp", check.tcp, &m->tcp, [](const config::TcpCheck& c, std::string* detail) {
    return process::CheckTcp(c.addr, c.port, c.timeout, detail);
  });
  RunDueChecks(t, "custom", check.custom, &m->custom, [&](const config::CustomCheck& c, std::string* detail) {
    return process::CheckCustom(c.exec, c.arg, m->env, c.timeout, detail);
  });
  RunDueChecks(t, "ping", check.ping, &m->ping, [](const config::PingCheck& c, std::string* detail) {
    return process::CheckWitness(c.addrs, c.timeout, detail);  // up when any address answers
  });
  RunDueChecks(t, "intf", check.intf, &m->intf, [](const config::IntfCheck& c, std::string* detail) {
    // Link state as the kernel reports it (carrier); "unknown" (e.g. loopback, tun) counts as up.
    std::string oper = ReadAll("/sys/class/net/" + c.interface + "/operstate");
    while (!oper.empty() && (oper.back() == '\n' || oper.back() == ' ')) oper.pop_back();
    *detail = c.interface + " " + (oper.empty() ? "missing" : oper);
    return oper == "up" || oper == "unknown";
  });
}

void Node::ReportCheck(const MonitorTick& t, const std::string& kind, const std::string& ident,
                       config::RoleClass when, config::RecoveryAction action, bool ok,
                       const std::string& detail, Watch* watch) {
  proto::CheckerStatus c;
  c.set_name(ident);
  c.set_kind(kind);
  c.set_ok(ok);
  c.set_detail(detail);
  {
    std::lock_guard<std::mutex> lock(snap_mu_);
    bool replaced = false;
    for (auto& x : checker_status_)
      if (x.kind() == kind && x.name() == ident) {
        x = c;
        replaced = true;
      }
    if (!replaced) checker_status_.push_back(c);
  }
  if (ok || !t.ready || !ClassActive(when, t.state) || watch->reported == t.epoch) return;
  watch->reported = t.epoch;
  std::string what = kind + " checker " + ident + " failed: " + detail;
  log_->Warning(what);
  if (action != config::RecoveryAction::kWait) Post(core::EvCheckFailed{ToFail(action), what});
}

void Node::RestoreVips() {
  std::lock_guard<std::mutex> lock(snap_mu_);
  for (size_t i = 0; i < vips_.size(); ++i) {
    if (!vip_held_[i] || vip::Held(vips_[i])) continue;
    log_->Warning("VIP " + vips_[i].addr + " vanished from its interface: adding it again");
    if (Status s = vip::Add(vips_[i]); !s.ok()) log_->Error("VIP " + vips_[i].addr + ": " + s.ToString());
  }
}

void Node::WatchFs(bool prim_ready, int* not_in_sync_polls) {
  proto::StateReply tmp;
  fs_->FillStatus(&tmp);
  bool fs_went_alone = false;
  for (const auto& f : tmp.fs()) fs_went_alone |= f.running() && f.role() == proto::FS_ROLE_ALONE;
  // hamirror-fs drops to alone by itself when the peer stops acknowledging (sendtimeout): tell
  // the machine, once per link, so PRIM becomes ALONE (and an ALONE node links again later).
  if (fs_went_alone && fs_linked_.exchange(false)) {
    log_->Warning("hamirror-fs replicates no more (alone): data link lost");
    Post(core::EvDataLinkLost{});
  }
  // PRIM claims a synchronous peer: the fs must back it (its record empty, its last resync done).
  // A peer that could not apply something (its disk full...) or a local write that failed after
  // shipping leaves the peer behind: PRIM becomes ALONE, and the peer is resynced when it can.
  std::string behind;
  for (const auto& f : tmp.fs()) {
    if (f.running() && f.role() == proto::FS_ROLE_PRIMARY && !f.in_sync() && f.resync().phase() != "running")
      behind = f.dir() + ": " + std::to_string(f.record().zones()) + " zones, " +
               std::to_string(f.record().files()) + " files recorded, " + std::to_string(f.peer_errors()) +
               " peer errors";
  }
  *not_in_sync_polls = behind.empty() ? 0 : *not_in_sync_polls + 1;
  if (prim_ready && *not_in_sync_polls >= 2 && fs_linked_.exchange(false)) {
    log_->Warning("the peer's copy is behind (" + behind + "): no longer a synchronous mirror");
    Post(core::EvDataLinkLost{});
  }
  std::lock_guard<std::mutex> lock(snap_mu_);
  fs_status_.assign(tmp.fs().begin(), tmp.fs().end());
}

void Node::StartResyncWait() {
  if (fs_->empty()) {
    // No replicated directory (<rfs> is optional): nothing to bring up to date, and no fs would ever
    // report a resync (WatchResync does not even run): done at once, else SECOND never gets ready.
    log_->Info("resync requested: no replicated directory, nothing to resync");
    Post(core::EvResyncDone{true});
    return;
  }
  // The peer's hamirror-fs (the source) runs the resync into ours; ours reports it. Done is what it
  // reports after this point, never before (WatchResync). In a split brain this side is the one
  // discarded (`second` typed here): what the resync changes is saved first (docs/reintegration.md);
  // without that, nothing may be overwritten.
  const bool quarantine = machine_->persisted().split_brain;
  const bool full = fullsync_pending_.exchange(false);
  if (full) log_->Info("resync: full compare (second fullsync)");
  if (Status s = fs_->ExpectResync(quarantine, full); !s.ok()) {
    log_->Error("resync: " + s.ToString() + (quarantine ? ": not resyncing without the quarantine" : ""));
    if (quarantine) {
      Post(core::EvResyncDone{false});
      return;
    }
  }
  std::vector<ResyncTargetView> now = fs_->ResyncTargets();
  std::lock_guard<std::mutex> lock(resync_mu_);
  resync_waiting_ = true;
  resync_baseline_ = std::move(now);
  log_->Info("resync requested: waiting for the peer's hamirror-fs to bring this copy up to date");
}

void Node::WatchResync() {
  {
    std::lock_guard<std::mutex> lock(resync_mu_);
    if (!resync_waiting_) return;
  }
  std::vector<ResyncTargetView> now = fs_->ResyncTargets();
  std::lock_guard<std::mutex> lock(resync_mu_);
  if (!resync_waiting_ || now.size() != resync_baseline_.size()) return;
  bool all_done = !now.empty();
  std::string failure;
  for (size_t i = 0; i < now.size(); ++i) {
    const bool changed = !(now[i] == resync_baseline_[i]);
    if (!(now[i].known && changed && now[i].phase == "done")) all_done = false;
    if (now[i].known && changed && (now[i].phase == "failed" || now[i].phase == "interrupted"))
      failure = "resync " + std::to_string(now[i].id) + " " + now[i].phase;
  }
  if (all_done) {
    resync_waiting_ = false;
    log_->Info("resync into this node done");
    Post(core::EvResyncDone{true});
  } else if (!failure.empty()) {
    resync_waiting_ = false;
    log_->Warning(failure + ": this copy stays inconsistent (retried)");
    Post(core::EvResyncDone{false});
  }
}

}  // namespace hamirror::daemon
