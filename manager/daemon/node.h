// Node: hamirrord's runtime for one module. A single-threaded event loop owns the core state
// machine (manager/core/node_machine.h): timers (tick, heartbeat pulse), peer status datagrams,
// admin commands, script completions, watchdog/checker failures and witness probes come in as
// events through one queue; the machine's actions are executed in order by the effects (scripts
// on worker threads, VIP via netlink + gratuitous ARP, hamirror-fs role via its control socket,
// persisted facts via StateStore, heartbeats via HeartbeatBridge). Heartbeats are sent by the
// heartbeat service's own thread every pulse; each carries a fresh core status taken between steps.
// Implements admin::NodeControl for the admin server (thread-safe snapshot + command queue).
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "manager/admin/module_log.h"
#include "manager/admin/node_control.h"
#include "manager/config/config.h"
#include "manager/core/node_machine.h"
#include "manager/daemon/adopt_store.h"
#include "manager/daemon/failover_store.h"
#include "manager/daemon/fs_driver.h"
#include "manager/daemon/heartbeat_bridge.h"
#include "manager/daemon/state_store.h"
#include "manager/daemon/toggle_store.h"
#include "manager/scripts/script_runner.h"
#include "manager/vip/garp.h"
#include "manager/vip/vip.h"

namespace hamirror::daemon {

struct NodeOptions {
  config::ModuleConfig cfg;
  std::string self;          // this node's name in cluster.xml
  std::string admin_socket;  // exported to scripts (HAMIRROR_SOCKET)
  std::string safe_dir;      // where the hamirror CLI lives (SAFE)
  std::string fs_bin;        // hamirror-fs binary
  std::string run_dir;       // the admin socket's directory; fs control sockets go in its fs/
  std::string log_dir;       // fs logs
};

class Node : public admin::NodeControl {
 public:
  Node(NodeOptions options, admin::ModuleLog* log);
  ~Node() override;

  // Resolves peer, networks and VIPs, loads the persisted facts, adopts the module a previous hamirrord
  // left running (adoption record, see RequestLeave) or else removes a stale VIP left by a crash, opens
  // the peer link. Errors are fatal for the daemon.
  Status Init();
  // Runs the loop until RequestExit()/RequestLeave(). A first SIGTERM stops the module (bounded), then
  // exits.
  void Run();
  // Thread-safe; `graceful` stops the module first (stop scripts, VIP removed).
  void RequestExit(bool graceful);
  // Thread-safe (SIGUSR2): exit leaving the module running (hamirror-fs, application, VIP) once the
  // machine can hand over (no transition under way; bounded), with an adoption record for the next
  // hamirrord in <statedir>/adopt. Ignored after RequestExit.
  void RequestLeave();
  // After Run(): the module was left running for the next hamirrord.
  bool left_running() const { return left_running_; }
  // Init() adopted the module a previous hamirrord left running.
  bool adopted() const { return machine_ && machine_->adopted(); }
  // After Run(): a script was still running at exit (its thread was left behind): the process must
  // end with _exit rather than run destructors under it.
  bool left_workers() const { return left_workers_; }

  // admin::NodeControl
  void FillState(bool verbose, proto::StateReply* reply) override;
  admin::CommandResult Execute(admin::Command cmd) override;
  void Print(admin::ModuleLog::Level level, const std::string& msg) override;
  admin::CommandResult Verify(bool repair) override;
  admin::CommandResult SetToggle(admin::Toggle what, admin::ToggleSetting how) override;
  std::string LogPath() override { return log_->path(); }

 private:
  using Event = manager::core::Event;
  void Post(Event ev);
  uint64_t NowMs() const;
  void Step(const Event& ev);
  // Steps every queued event (bounded), before a tick may judge the peer lost.
  void StepPendingEvents();
  void StepLocked(const Event& ev);
  // False: a persist failed (the caller skips what follows).
  bool Apply(const manager::core::Action& a);
  // ActStartResync: tells the fs what to expect, notes what it reports now (WatchResync waits for news).
  void StartResyncWait();
  // Monitor thread: turns what this node's hamirror-fs reports of a resync into it into EvResyncDone.
  void WatchResync();
  // Monitor thread: polls every hamirror-fs; a link it dropped, or a peer it reports behind while
  // PRIM (prim_ready), becomes EvDataLinkLost. *not_in_sync_polls: consecutive polls not in sync.
  void WatchFs(bool prim_ready, int* not_in_sync_polls);
  void RunScriptAsync(manager::core::Script script, bool force);
  // Runs a module script on the calling thread (bounded by nicestoptimeout/forcestoptimeout), its
  // output and result logged. RunScriptAsync runs it on a worker and posts EvScriptDone.
  scripts::ScriptResult RunScriptNow(manager::core::Script script, bool force);
  void ProbeWitnessAsync(uint64_t probe_id);
  bool MakeStatus(manager::core::PeerStatus* out);  // heartbeat thread; false while a step runs
  void UpdateSnapshot();
  // A failover the machine just completed: stored (<statedir>/last_failover) and shown by FillState.
  void RecordFailover();
  // Time in state, last failover and VIP holder of the reply (under snap_mu_).
  void FillTimes(proto::StateReply* reply);
  // This node's TLS certificate (subject, expiry) when the module replicates over TLS.
  void FillCertificate(proto::StateReply* reply);
  // The monitor thread: errd + checkers + VIP check + fs status, off the event loop (node.cc).
  struct Watch;
  struct MonitorState;
  struct MonitorTick;
  void MonitorLoop();
  void PollErrd(const MonitorTick& t, MonitorState* m);
  void RunCheckers(const MonitorTick& t, MonitorState* m);
  // Runs the checks of one kind that are due and active; probe(check, &detail) says up or down.
  template <typename Check, typename Probe>
  void RunDueChecks(const MonitorTick& t, const char* kind, const std::vector<Check>& checks,
                    std::vector<Watch>* watches, Probe probe);
  // Stores a checker's result for `state -v`; a failure while active is reported once per epoch.
  void ReportCheck(const MonitorTick& t, const std::string& kind, const std::string& ident,
                   config::RoleClass when, config::RecoveryAction action, bool ok, const std::string& detail,
                   Watch* watch);
  void RestoreVips();  // check="on": adds back a held VIP that vanished from its interface

  // Init's parts.
  Status InitHeartbeatNetworks(std::vector<heartbeat::NetworkEndpoint>* nets, std::string* self_flow,
                               std::string* peer_flow);
  void InitVips();
  manager::core::Config MachineConfig() const;
  void InitFs(const std::string& self_flow, const std::string& peer_flow);
  // Adopts the module the previous hamirrord left running (node_adopt.cc), or cleans what a crash left
  // (VIP, dead mounts). True: adopted.
  bool AdoptOrClean();
  // The adoption record, consumed and checked against what runs now; nullopt (logged why) when the
  // module must not be adopted.
  std::optional<manager::core::Handoff> CheckAdoption();
  // Why `r` does not describe what runs now ("" when it does).
  std::string AdoptionMismatch(const AdoptionRecord& r);
  std::string ApplicationMismatch(manager::core::NodeState s);
  // Crash path: a hamirror-fs still primary or alone, with no hamirrord watching (this daemon
  // crashed, not it), may have the application writing on it. Stopped as a module stop would stop
  // it (stop_prim force, stop_both, directories released): a starting node never serves.
  void FenceUnwatchedApplication();
  // Run(): RequestLeave is pending; true when the loop must end (record written, or gave up).
  bool LeaveStep(uint64_t* deadline);
  // Writes the adoption record (and spawns the VIP keeper when the VIP stays under a lease).
  Status LeaveModuleRunning(const manager::core::Handoff& h);
  void ReapWorkers(bool all);
  // `swap nosync`: why it is refused ("" when no resync would follow the swap).
  std::string SwapNosyncRefusal();
  // errd on|off|suspend|resume (not stored: lasts until the daemon restarts).
  admin::CommandResult SetErrd(admin::ToggleSetting how);
  // boot/failover: stored in <statedir>/toggles first, then applied.
  admin::CommandResult SetStoredToggle(admin::Toggle what, bool on);

  NodeOptions opt_;
  admin::ModuleLog* log_;
  std::string peer_;
  std::unique_ptr<manager::core::NodeMachine> machine_;
  std::unique_ptr<StateStore> store_;
  std::unique_ptr<FailoverStore> failover_store_;
  uint64_t failovers_seen_ = 0;  // machine_->failovers() already recorded (event loop)
  std::unique_ptr<HeartbeatBridge> link_;
  // Held by the event loop for a whole step (core step + its actions), so that a heartbeat never
  // carries a state whose persisted facts are not stored yet; the heartbeat thread only try-locks it.
  std::mutex machine_mu_;
  bool send_pending_ = false;  // an ActSendStatus was applied during the current step
  std::unique_ptr<FsDriver> fs_;
  std::vector<vip::VipAddress> vips_;
  std::vector<bool> vip_arp_;
  vip::GarpAnnouncer garp_;
  scripts::ScriptEnv script_env_;
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();

  // Event queue.
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Event> events_;
  std::map<uint64_t, std::promise<admin::CommandResult>> pending_;
  uint64_t next_cmd_id_ = 1;
  bool exit_requested_ = false;
  bool graceful_exit_ = false;
  bool leave_requested_ = false;  // SIGUSR2 (under mu_)
  bool left_running_ = false;
  std::unique_ptr<AdoptStore> adopt_store_;

  // Worker threads (scripts, witness probes), joined when done.
  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::vector<Worker> workers_;
  bool left_workers_ = false;

  // Snapshot for the admin API and the monitor thread.
  std::mutex snap_mu_;
  proto::StateReply snapshot_;
  std::atomic<int> state_{0};  // core::NodeState
  std::atomic<bool> ready_{true};
  std::atomic<uint64_t> epoch_{0};                    // +1 on every state/readiness change
  std::vector<proto::ProcessWatch> proc_status_;      // under snap_mu_
  std::vector<proto::CheckerStatus> checker_status_;  // under snap_mu_
  std::vector<proto::FsInfo> fs_status_;              // under snap_mu_
  std::vector<bool> vip_held_;                        // under snap_mu_
  // Under snap_mu_: NowMs() when the local node / the peer entered its state (peer: 0 = not heard;
  // peer_state_entered_ false = already in it when heard), and the last failover (unset: none).
  uint64_t local_state_since_ms_ = 0, peer_state_since_ms_ = 0;
  bool peer_state_entered_ = false;
  std::optional<proto::Failover> last_failover_;

  // A resync into this node (ActStartResync until EvResyncDone or ActStopResync): what the fs reported
  // when it was asked for, so that only a resync reported after that counts.
  std::mutex resync_mu_;
  bool resync_waiting_ = false;
  std::vector<ResyncTargetView> resync_baseline_;
  std::atomic<bool> fs_linked_{false};         // the last fs role set was primary (replicating to the peer)
  bool persist_failed_ = false;                // event loop only
  std::atomic<bool> fullsync_pending_{false};  // `second fullsync`: the next resync compares everything

  // Runtime toggles. boot/failover: the stored ones (toggles_, under toggle_mu_) override the config.
  enum ErrdMode : int { kErrdOn = 0, kErrdOff = 1, kErrdSuspended = 2 };
  std::unique_ptr<ToggleStore> toggle_store_;
  std::mutex toggle_mu_;
  Toggles toggles_;
  std::atomic<bool> boot_{false};
  std::atomic<bool> failover_{true};
  std::atomic<int> errd_mode_{kErrdOn};  // off: not polled; suspended: polled, failures not acted on
  std::atomic<bool> checkers_on_{true};  // off: <check> tcp/custom/ping/intf not run

  std::thread monitor_;
  std::atomic<bool> stop_monitor_{false};
};

}  // namespace hamirror::daemon
