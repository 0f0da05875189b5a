// VIP keeper: a hamirrord that leaves the module running (SIGUSR2) while serving keeps the VIP only
// under its lease (node_machine.h "Daemon restart"). It leaves this small process behind: at the
// lease's end, unless a new hamirrord consumed the adoption record first, it removes the VIP (the peer
// may take over from then on) and the record (so that the next hamirrord takes the crash path), and
// logs it. Both sides take flock on the record, so exactly one of them acts on it.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "common/status.h"
#include "manager/vip/vip.h"

namespace hamirror::daemon {

struct VipKeeperArgs {
  std::string record;                 // the adoption record's path
  uint64_t record_inode = 0;          // the record it guards (a later record is not its business)
  uint64_t deadline_boottime_ms = 0;  // CLOCK_BOOTTIME
  std::string log_path;               // the module log
  std::vector<vip::VipAddress> vips;
};

// Starts `exe --vip-keeper ...` detached (own session, reparented); *pid: its PID.
Status SpawnVipKeeper(const std::string& exe, const VipKeeperArgs& args, pid_t* pid);

// main() of `hamirrord --vip-keeper RECORD INODE DEADLINE_MS LOG VIP...` (VIP: addr/prefix/interface).
int RunVipKeeper(int argc, char** argv);

}  // namespace hamirror::daemon
