// MariaDbServer: a private mariadbd for tests and benchmarks. It runs as a child of the test (stopped
// by PID), on its own datadir and its own unix socket in a run directory, without networking, with
// full durability (innodb_flush_log_at_trx_commit=1, sync_binlog=1, binary log on) and a small
// buffer pool so it starts in about a second. It never touches the system instance.
//
// It runs as root (--user=root): files created through a FUSE mount belong to the caller, and a
// root-mounted FUSE file system without allow_other is reachable by root only.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "common/status.h"
#include "tests/support/daemon.h"

namespace hamirror::itest {

struct MariaDbOptions {
  std::string datadir;  // the data directory (may be a hamirror-fs mount)
  std::string rundir;   // socket, pid file and error log live here (short path: sun_path is 108 bytes)
  std::string buffer_pool_size = "64M";
  std::string log_file_size = "48M";
  // Empty: MariaDB's default (O_DIRECT in 10.11). The env var HAMIRROR_TEST_FLUSH_METHOD overrides.
  std::string flush_method;
  std::vector<std::string> extra_args;  // appended as they are, e.g. "--innodb-fast-shutdown=0"
};

class MariaDbServer {
 public:
  explicit MariaDbServer(MariaDbOptions options);
  ~MariaDbServer();  // SIGKILLs a server still running

  // Creates the system tables in options.datadir (mariadb-install-db, bounded).
  Status InstallDb();
  // Starts mariadbd and waits until it answers a query, at most timeout (crash recovery included).
  Status Start(std::chrono::milliseconds timeout = std::chrono::seconds(120));
  // Clean shutdown (SIGTERM), waits at most timeout; Ok only if mariadbd exited with status 0.
  Status Stop(std::chrono::milliseconds timeout = std::chrono::seconds(120));
  // SIGKILL, as a crash.
  void Kill();
  // Sends SIGKILL without reaping (to kill several processes at the same instant); call Kill() after.
  void SignalKill();

  pid_t pid() const { return process_.pid(); }
  bool running() const { return process_.running(); }
  std::string socket_path() const { return options_.rundir + "/mysqld.sock"; }
  std::string error_log() const { return options_.rundir + "/error.log"; }
  std::string ErrorLogTail(size_t max_bytes = 4000) const { return test::FileTail(error_log(), max_bytes); }
  const MariaDbOptions& options() const { return options_; }

 private:
  MariaDbOptions options_;
  test::Daemon process_;
};

}  // namespace hamirror::itest
