// Node: restart of hamirrord without the module noticing. The exiting daemon (SIGUSR2) writes an
// adoption record once its machine can hand over; the next daemon's Init adopts the module from it when
// everything it says still holds, else takes the crash path. docs/operations.md "Restarting hamirrord".
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "manager/daemon/node.h"
#include "manager/daemon/role_class.h"
#include "manager/daemon/vip_keeper.h"
#include "manager/process/checkers.h"
#include "manager/process/proc_scan.h"
#include "proto/fs_control.pb.h"

namespace hamirror::daemon {

namespace core = manager::core;

namespace {

// How long SIGUSR2 waits for a state the machine can hand over (a transition, a resync, a fresh lease).
constexpr uint64_t kLeaveWaitMs = 60000;

std::string SelfExe() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, n) : std::string();
}

std::string Describe(const core::Handoff& h) {
  return std::string(core::ToString(h.state)) + " (ready)" + (h.vip_held ? ", VIP held" : "") +
         (h.peer ? std::string(", peer ") + core::ToString(h.peer->state) : ", peer not connected") +
         (h.lease_left_ms ? ", lease " + std::to_string(h.lease_left_ms) + " ms left" : "");
}

}  // namespace

bool Node::LeaveStep(uint64_t* deadline) {
  if (*deadline == 0) {
    *deadline = NowMs() + kLeaveWaitMs;
    log_->Info("SIGUSR2: leaving the module running for the next hamirrord once it can be handed over");
  }
  std::string why;
  {
    std::lock_guard<std::mutex> lock(machine_mu_);
    why = machine_->HandoffRefusal(NowMs());
    if (why.empty()) {
      const core::Handoff h = machine_->MakeHandoff(NowMs());
      Status s = LeaveModuleRunning(h);
      if (s.ok()) {
        left_running_ = true;
        return true;
      }
      why = s.ToString();
    }
  }
  if (NowMs() < *deadline) return false;
  // Never hang a restart: exit as after a crash (the VIP is removed on the way out, Run()).
  log_->Error("SIGUSR2: the module could not be handed over within " + std::to_string(kLeaveWaitMs / 1000) +
              " s (" + why +
              "): exiting without an adoption record; the next hamirrord takes the crash path");
  return true;
}

Status Node::LeaveModuleRunning(const core::Handoff& h) {
  AdoptionRecord r;
  r.module = opt_.cfg.module_name;
  r.node = opt_.self;
  r.boot_id = BootId();
  r.daemon_pid = static_cast<uint32_t>(getpid());
  r.handoff = h;
  r.generation = machine_->persisted().current;
  r.fs = fs_->Sessions();
  r.written_ms = BoottimeMs();
  if (Status s = adopt_store_->Save(r); !s.ok()) return s;
  // Under a lease the VIP outlives this process only until the lease's end (vip_keeper.h).
  const bool lease_applies = h.vip_held && !h.forced && (opt_.cfg.has_splitbrain || h.peer);
  std::string keeper;
  if (lease_applies) {
    struct stat st {};
    VipKeeperArgs k;
    k.record = adopt_store_->path();
    k.record_inode = stat(k.record.c_str(), &st) == 0 ? st.st_ino : 0;
    k.deadline_boottime_ms = r.written_ms + h.lease_left_ms;
    k.log_path = log_->path();
    k.vips = vips_;
    pid_t pid = 0;
    if (Status s = SpawnVipKeeper(SelfExe(), k, &pid); !s.ok()) {
      (void)unlink(adopt_store_->path().c_str());
      return Status::Unavailable("VIP keeper: " + s.ToString());
    }
    keeper = "; VIP keeper pid " + std::to_string(pid) + " removes the VIP in " +
             std::to_string(h.lease_left_ms) + " ms unless a new hamirrord adopts the module first";
  }
  std::string fs;
  for (const auto& f : r.fs) fs += ", " + f.dir + " pid " + std::to_string(f.pid);
  log_->Info("hamirrord leaves the module running: " + Describe(h) + ", generation " +
             std::to_string(r.generation.counter) + ":" + r.generation.author + fs + "; adoption record " +
             adopt_store_->path() + keeper);
  return Status::Ok();
}

bool Node::AdoptOrClean() {
  if (std::optional<core::Handoff> h = CheckAdoption()) {
    {
      std::lock_guard<std::mutex> lock(machine_mu_);
      StepLocked(core::EvAdopt{*h});
    }
    send_pending_ = false;  // the heartbeat service is not up yet; its first heartbeat says it all
    if (machine_->adopted()) {
      std::lock_guard<std::mutex> lock(snap_mu_);
      vip_held_.assign(vips_.size(), h->vip_held);
      fs_linked_ = h->fs_linked;
      log_->Info("adopted the module left running by the previous hamirrord: " + Describe(*h) +
                 "; no script run, VIP and hamirror-fs untouched");
      return true;
    }
    log_->Warning("adoption refused by the state machine (see above): crash path");
  }
  // After a crash the address may still be configured here: a stopped node never holds it.
  for (const auto& v : vips_) {
    if (vip::Held(v)) {
      log_->Warning("removing VIP " + v.addr + " left over from a previous run");
      if (Status s = vip::Remove(v); !s.ok()) log_->Error("VIP " + v.addr + ": " + s.ToString());
    }
  }
  FenceUnwatchedApplication();
  // A mount left by a crash (its hamirror-fs killed) is cleaned now: the module is STOP, and a stopped
  // module's directory is the plain one. A live secondary hamirror-fs is kept (nothing local writes
  // through it).
  if (Status s = fs_->CleanDeadMounts(); !s.ok()) log_->Error("data directory: " + s.ToString());
  return false;
}

void Node::FenceUnwatchedApplication() {
  std::string serving;
  for (const FsSession& s : fs_->Sessions()) {
    if (s.pid == 0 || (s.role != proto::FS_ROLE_PRIMARY && s.role != proto::FS_ROLE_ALONE)) continue;
    serving += (serving.empty() ? "" : ", ") + s.dir + " (hamirror-fs pid " + std::to_string(s.pid) +
               (s.role == proto::FS_ROLE_PRIMARY ? ", primary)" : ", alone)");
  }
  if (serving.empty()) return;
  // Left running, the application would go on acknowledging writes that nobody fences: once the peer
  // takes over (it hears no heartbeat from us), they would be lost when this node rejoins as SECOND.
  log_->Warning("still serving with no hamirrord watching (the previous one ended without handing over): " +
                serving + "; the application may be writing on it: stopping it as a module stop does");
  if (!RunScriptNow(core::Script::kStopPrim, /*force=*/true).ok)
    log_->Error("stop_prim force failed: the application may still run; releasing the directories anyway");
  (void)RunScriptNow(core::Script::kStopBoth, /*force=*/false);
  if (Status s = fs_->Release(); !s.ok()) log_->Error("data directory: " + s.ToString());
}

std::optional<core::Handoff> Node::CheckAdoption() {
  AdoptionRecord r;
  Status s = adopt_store_->Consume(&r);
  if (s.code() == Status::Code::kNotFound) {
    HLOG_DEBUG("%s", s.ToString().c_str());
    return std::nullopt;  // an ordinary start
  }
  const std::string crash = "; not adopting the running module: crash path (start as after a crash)";
  if (!s.ok()) {
    log_->Warning("adoption record: " + s.ToString() + crash);
    return std::nullopt;
  }
  if (std::string why = AdoptionMismatch(r); !why.empty()) {
    log_->Warning("adoption record " + adopt_store_->path() + " (" + Describe(r.handoff) + "): " + why +
                  crash);
    return std::nullopt;
  }
  core::Handoff h = r.handoff;
  const uint64_t age = BoottimeMs() - r.written_ms;
  h.lease_left_ms = h.lease_left_ms > age ? h.lease_left_ms - age : 0;
  log_->Info("adoption record " + adopt_store_->path() + " from hamirrord pid " +
             std::to_string(r.daemon_pid) + ", " + std::to_string(age) + " ms old: " + Describe(r.handoff) +
             ": matches what runs");
  return h;
}

std::string Node::AdoptionMismatch(const AdoptionRecord& r) {
  if (r.module != opt_.cfg.module_name || r.node != opt_.self)
    return "written for module " + r.module + " on node " + r.node;
  if (r.boot_id.empty() || r.boot_id != BootId()) return "written before the node rebooted (boot id differs)";
  const uint64_t now = BoottimeMs(), timeout = opt_.cfg.heart.timeout.count();
  if (r.written_ms > now) return "written in the future";
  if (now - r.written_ms >= timeout)
    return std::to_string(now - r.written_ms) + " ms old, not younger than the heartbeat timeout (" +
           std::to_string(timeout) + " ms): the peer may have taken over";
  if (!(r.generation == machine_->persisted().current))
    return "generation " + std::to_string(r.generation.counter) + " differs from the stored one";
  if (r.handoff.peer && r.handoff.peer->from != peer_) return "its peer status is not from " + peer_;
  const std::vector<FsSession> now_fs = fs_->Sessions();
  if (now_fs.size() != r.fs.size()) return "it names other replicated directories";
  for (size_t i = 0; i < now_fs.size(); ++i) {
    const FsSession &was = r.fs[i], &is = now_fs[i];
    if (was.dir != is.dir) return "it names other replicated directories";
    if (!(was == is))
      return "hamirror-fs for " + is.dir + " was pid " + std::to_string(was.pid) + " (start " +
             std::to_string(was.start_time) + ", role " + std::to_string(was.role) + "), is pid " +
             std::to_string(is.pid) + " (start " + std::to_string(is.start_time) + ", role " +
             std::to_string(is.role) + ")";
  }
  for (const auto& v : vips_) {
    if (vip::Held(v) != r.handoff.vip_held)
      return "VIP " + v.addr + (r.handoff.vip_held ? " is gone" : " is configured though it was not held");
  }
  return ApplicationMismatch(r.handoff.state);
}

std::string Node::ApplicationMismatch(core::NodeState s) {
  const auto& cfg = opt_.cfg;
  if (errd_mode_.load() == kErrdOn && !cfg.errd.procs.empty()) {
    const std::vector<process::ProcEntry> procs = process::ScanProcesses();
    for (const auto& w : cfg.errd.procs) {
      if (!ClassActive(w.klass, s)) continue;
      const int count = process::CountMatching(procs, process::ProcMatcher(w.name, w.nameregex, w.argregex));
      if (count < w.atleast || (w.atmax >= 0 && count > w.atmax))
        return "errd: process " + (w.name.empty() ? w.nameregex : w.name) + ": " + std::to_string(count) +
               " running";
    }
  }
  // TCP checkers, quickly: the peer counts the gap against its heartbeat timeout.
  for (const auto& c : cfg.check.tcp) {
    if (!ClassActive(c.when, s)) continue;
    std::string detail;
    if (!process::CheckTcp(c.addr, c.port, std::min(c.timeout, config::Millis(500)), &detail))
      return "tcp checker " + c.ident + " fails: " + detail;
  }
  return "";
}

}  // namespace hamirror::daemon
