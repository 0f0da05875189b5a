// MirrorPair: a hamirror-fs secondary and primary on one machine, replicating over 127.0.0.1, each
// mounted over its own directory (base/primary and base/secondary). The primary has a control socket
// (base/primary.ctl) through which the pair waits until the peer is connected.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "common/status.h"
#include "proto/fs_control.pb.h"
#include "tests/support/daemon.h"

namespace hamirror::itest {

// Path of the hamirror-fs binary: env HAMIRROR_FS_BIN, else the one this build produced.
std::string HamirrorFsBinary();

class MirrorPair {
 public:
  explicit MirrorPair(std::string base_dir);
  ~MirrorPair();  // kills both daemons still running and lazily unmounts

  // Starts the secondary, then the primary, and waits until both are mounted and connected.
  Status Start(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // Extra flags for the primary's command line (e.g. {"--direct-io", "all"}), before Start.
  void set_primary_flags(std::vector<std::string> flags) { primary_flags_ = std::move(flags); }

  std::string primary_dir() const { return base_ + "/primary"; }
  std::string secondary_dir() const { return base_ + "/secondary"; }
  std::string control_socket() const { return base_ + "/primary.ctl"; }
  std::string secondary_control_socket() const { return base_ + "/secondary.ctl"; }
  pid_t primary_pid() const { return primary_.pid(); }
  pid_t secondary_pid() const { return secondary_.pid(); }
  int port() const { return port_; }

  // Clean stop (SIGTERM): the daemon must exit 0 and leave its directory unmounted.
  Status StopPrimary(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  Status StopSecondary(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // Sends SIGKILL to the primary without reaping it (pair it with other kills at the same instant).
  void SignalKillPrimary();
  // Reaps a killed primary and lazily unmounts its dead mount.
  void ReapKilledPrimary();

  // The status (role, peer connection, counters) from the primary's or the secondary's control endpoint.
  Status PrimaryStatus(proto::FsStatus* out) const { return ControlStatus(control_socket(), out); }
  Status SecondaryStatus(proto::FsStatus* out) const {
    return ControlStatus(secondary_control_socket(), out);
  }

  std::string LogTails() const;

 private:
  static Status ControlStatus(const std::string& socket, proto::FsStatus* out);

  std::string base_;
  std::vector<std::string> primary_flags_;
  int port_ = -1;
  test::Daemon secondary_;
  test::Daemon primary_;
};

}  // namespace hamirror::itest
