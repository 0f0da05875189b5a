// FsDriver: drives hamirror-fs (one per replicated directory) through its control socket
// (proto/fs_control.proto): role switches in place, status for `hamirror state -v`.
// When no hamirror-fs answers for a directory, it is started (detached: it must outlive a manager
// crash, or the application's files would vanish) in the requested role; a dead FUSE mount left on the
// directory by a crash is detached first. Release() stops them and leaves the directories unmounted.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "manager/admin/module_log.h"
#include "manager/core/node_machine.h"
#include "manager/daemon/adopt_store.h"
#include "proto/admin.pb.h"

namespace hamirror::daemon {

struct FsDir {
  std::string dir;
  std::string control;         // control socket path
  std::string listen;          // HOST:PORT for the secondary role (this node's flow address)
  std::string peer;            // HOST:PORT of the peer's secondary endpoint (for the primary role)
  std::string log_path;        // hamirror-fs output when started by us
  bool direct_io_all = false;  // --direct-io all (config: <replicated directio="all">)
};

struct FsLaunch {
  std::string fs_bin;               // hamirror-fs binary
  std::string node_name;            // --node-name
  std::string tls_dir;              // ca.pem, node.pem, node.key for the replication link (mutual TLS)
  bool encryption = true;           // false only on the explicit opt-out <rfs encryption="off">: --insecure
  std::string peer_name;            // the name the peer's certificate must carry (--tls-server-name)
  std::string state_dir;            // --state-dir: the record of what the peer may lack (module state dir)
  uint64_t zone_size = 1 << 20;     // --zone-size (ruzone_blocksize)
  uint64_t resync_rate_bps = 0;     // --resync-rate (reiallowedbw), 0: unlimited
  int resync_workers = 3;           // --resync-workers (nbrei)
  int64_t send_timeout_ms = 30000;  // --send-timeout-ms (sendtimeout): peer lost, primary goes alone
  // --manager-grace-ms: how long without a control call means "no manager" to hamirror-fs. The monitor
  // polls every 2 s, between checkers it runs inline (each bounded by its timeout): ManagerGraceMs().
  int64_t manager_grace_ms = 10000;
};

// The hamirror-fs command line that serves directory d (argv, the binary first).
std::vector<std::string> FsCommandLine(const FsDir& d, const FsLaunch& launch);

// A resync into this node as its hamirror-fs (secondary) reports it, per directory.
struct ResyncTargetView {
  bool known = false;  // the fs answered as secondary
  uint64_t id = 0;
  std::string phase;  // none, running, done, failed, interrupted
  bool operator==(const ResyncTargetView&) const = default;
};

class FsDriver {
 public:
  FsDriver(std::vector<FsDir> dirs, FsLaunch launch, admin::ModuleLog* log)
      : dirs_(std::move(dirs)), launch_(std::move(launch)), log_(log) {}
  bool empty() const { return dirs_.empty(); }
  // Every directory to `role`; starts hamirror-fs where none runs. Bounded (~5 s to start, 5 s per
  // role change). Runs on the event loop: heartbeat packets keep flowing from the heartbeat thread but
  // repeat the last status, so the peer's core hears no news meanwhile (far below production timeouts).
  Status SetRole(manager::core::FsRole role);
  // Module stopped: every directory's hamirror-fs marks its record (writes made to the plain directory
  // are not recorded: the next resync rescans) and is stopped (SIGTERM: clean unmount), bounded; then
  // no hamirror mount may be left on the directory. A hamirror-fs that cannot mark its record is left
  // running (the caller keeps it mounted read-only instead).
  Status Release();
  // Detaches a dead FUSE mount (its daemon gone: "transport endpoint is not connected") from every
  // directory, logged. Live mounts are left alone.
  Status CleanDeadMounts();
  // Status of every directory (1 s deadline each).
  void FillStatus(proto::StateReply* reply);
  // Tells every directory's hamirror-fs (secondary) that a resync into it is about to be asked for;
  // quarantine: this node is the discarded side of a split brain (what the resync changes is saved).
  Status ExpectResync(bool quarantine, bool full);
  // Starts an online verify in every directory's hamirror-fs (primary).
  Status Verify(bool repair);
  // The resync into this node of every directory, in order (1 s deadline each).
  std::vector<ResyncTargetView> ResyncTargets();
  // Every directory's hamirror-fs as it answers now (pid 0: none answers), in order (1 s deadline
  // each): what an adoption record names, and what the next daemon compares with.
  std::vector<FsSession> Sessions();

 private:
  Status Spawn(const FsDir& d);
  Status CleanDeadMount(const FsDir& d);
  // SIGTERM, then up to 10 s for in-flight requests and the unmount.
  Status StopProcess(const FsDir& d, pid_t pid);
  std::vector<FsDir> dirs_;
  FsLaunch launch_;
  admin::ModuleLog* log_;
};

}  // namespace hamirror::daemon
