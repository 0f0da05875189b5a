// The acceptance lab of hamirrord (root only, label "netns"), shared by failover_test.cc and
// reintegration_test.cc: two node namespaces and a client on lan 0 (198.18.0.0/24), a VIP 198.18.0.50,
// and a tiny HTTP service started by start_prim on the VIP (stopped by PID file in stop_prim) that
// answers /node with the name of the node serving it. Optionally each node replicates <node dir>/data
// through hamirror-fs (<rfs>), over mutual TLS with certificates made by hamirror-certs.
//
// Mounts: hamirrord and the hamirror-fs it starts share the test's mount namespace (only the network
// namespace differs), so Dir(i)/data is node i's FUSE mount once its hamirror-fs runs. Under(i) is a
// private bind mount of the directory underneath, made before any FUSE mount: the node's real copy.
//
// Everything is killed by PID and removed by the destructor.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>

#include "tests/support/netns.h"

namespace hamirror::test {

inline constexpr const char* kVip = "198.18.0.50";

struct ModuleOptions {
  int maxloop = 3;
  bool witness = false;
  bool rfs = false;                     // replicate <node dir>/data through hamirror-fs
  const char* directio = "odirect";     // <replicated directio>
  const char* errd_action = "restart";  // action of the <errd> watch on the service
  const char* ruzone_blocksize = "";    // <rfs ruzone_blocksize> ("" = the configuration's default, 8M)
  bool keepmounted = false;             // <rfs keepmounted="on">: stopped, the directory stays mounted
  bool boot = false;                    // <service boot="on">: hamirrord starts the module by itself
  bool tcp_check = false;               // <check><tcp ident="svc"> on the service, every second
  // <heart timeout> (ms). Short for quick failovers (a peer busy in a role change of its hamirror-fs
  // repeats its last status, which counts as heard: docs/operations.md).
  int heart_timeout_ms = 1500;
};

// hamirror-fs for the data-path cases: $HAMIRROR_FS_BIN, else the build's own (when built); "" if none.
std::string FsBin();
// True (with a WARN saying why) when a data-path lab case cannot run: not root, or no hamirror-fs.
bool SkipWithoutFs();

class Cluster {
 public:
  using Clock = std::chrono::steady_clock;

  explicit Cluster(ModuleOptions mo);
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  NetLab& lab() { return lab_; }
  std::string Dir(int i) const { return base_ + "/n" + std::to_string(i); }
  std::string Sock(int i) const { return Dir(i) + "/admin.sock"; }
  std::string ClusterFile() const { return base_ + "/cluster.xml"; }
  // What hamirror-certs made for the lab: ca.pem, heartbeat.key (both nodes' keyfile) and n1/, n2/
  // (each node's tlsdir).
  std::string Pki() const { return base_ + "/pki"; }
  // Node i's replicated directory underneath its FUSE mount (rfs only; see the file comment).
  std::string Under(int i) const { return Dir(i) + "/under"; }
  // argv[0] of node i's service, which its <errd> watches: unique per lab, so that a lab running at the
  // same time on this host (another build tree) never counts as ours (the process table is shared).
  std::string SvcName(int i) const {
    return "hmtestsvc-" + base_.substr(base_.rfind('-') + 1) + "-n" + std::to_string(i);
  }

  void StartDaemon(int i);
  // SIGKILL the daemon (it is our child: reaped by NetNamespace::Kill).
  void KillDaemon(int i);
  // SIGTERM: the daemon stops the module (stop_prim, VIP removed) and exits.
  bool StopDaemon(int i);

  int ServicePid(int i) const;
  void KillService(int i);

  // hamirror-fs of node i (detached from the daemon by design), from `state --json`; remembered so
  // the destructor can stop it even after its daemon was killed.
  int FsPid(int i);
  void StopFs(int i);
  // Power failure of node i: SIGKILL its service, its hamirror-fs and its daemon, then detach the dead
  // FUSE mount (a rebooted machine has none) unless keep_dead_mount (a crash of the processes only).
  // The next FsPid(i) learns the new hamirror-fs.
  void PowerOff(int i, bool keep_dead_mount = false);
  // Runs `cmd` in the mount namespace of node i's hamirror-fs (where its mount is visible).
  CommandResult InFsMounts(int i, const std::string& cmd);

  CommandResult Cli(int i, const std::string& args) const;
  // "PRIM (Ready)" etc. from `hamirror state`; `peer` gives node i's view of the other node.
  std::string State(int i, bool peer = false) const;
  // `field` of the top-level object `object` ("local", "peer", "last_failover") in node i's
  // `state -v --json` (quotes removed; "" when absent).
  std::string StateField(int i, const std::string& object, const std::string& field) const;
  bool WaitState(int i, const std::string& want, std::chrono::milliseconds timeout) const;

  // The node named by the service on the VIP, seen from the client namespace ("" when no answer).
  std::string Fetch();
  bool HoldsVip(int i);
  std::string Log(int i) const;

  static bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds timeout);

  // start on both, prim on n1, second on n2 -> n1 PRIM, n2 SECOND.
  void FirstStart();

 private:
  void WriteModule(int i, const ModuleOptions& mo);

  NetLab lab_;
  std::string base_;
  bool under_[3] = {false, false, false};
  pid_t pids_[3] = {-1, -1, -1};
  int fs_pids_[3] = {-1, -1, -1};
};

}  // namespace hamirror::test
