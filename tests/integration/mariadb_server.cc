#include "tests/integration/mariadb_server.h"

#include <csignal>
#include <cstdlib>
#include <thread>

#include "tests/integration/sql_client.h"
#include "tests/integration/test_env.h"

namespace hamirror::itest {

MariaDbServer::MariaDbServer(MariaDbOptions options) : options_(std::move(options)) {
  if (options_.flush_method.empty()) {
    if (const char* env = std::getenv("HAMIRROR_TEST_FLUSH_METHOD"); env != nullptr)
      options_.flush_method = env;
  }
}

MariaDbServer::~MariaDbServer() { Kill(); }

Status MariaDbServer::InstallDb() {
  std::vector<std::string> argv = {FindProgram("mariadb-install-db"),
                                   "--no-defaults",
                                   "--datadir=" + options_.datadir,
                                   "--user=root",
                                   "--skip-test-db",
                                   "--auth-root-authentication-method=socket",
                                   "--innodb-buffer-pool-size=" + options_.buffer_pool_size,
                                   "--innodb-log-file-size=" + options_.log_file_size,
                                   "--tmpdir=" + options_.rundir};
  // The bootstrap server opens the system tablespace too: same flush method as the real one.
  if (!options_.flush_method.empty()) argv.push_back("--innodb-flush-method=" + options_.flush_method);
  return test::RunProgram(argv, options_.rundir + "/install-db.log", std::chrono::seconds(180));
}

Status MariaDbServer::Start(std::chrono::milliseconds timeout) {
  std::vector<std::string> argv = {
      FindProgram("mariadbd"), "--no-defaults", "--datadir=" + options_.datadir, "--socket=" + socket_path(),
      "--pid-file=" + options_.rundir + "/mysqld.pid", "--log-error=" + error_log(), "--skip-networking",
      "--user=root", "--server-id=1", "--log-bin=binlog", "--sync-binlog=1",
      "--innodb-flush-log-at-trx-commit=1", "--innodb-buffer-pool-size=" + options_.buffer_pool_size,
      "--innodb-log-file-size=" + options_.log_file_size,
      // A private tmpdir: at start-up mariadbd deletes every "#sql*" file in its tmpdir, so servers
      // sharing /tmp (other tests, other sessions) delete each other's temporary tables. Seen as
      // "Error on delete of '/tmp/#sql-temptable-...MAI'" aborting mariadb-install-db.
      "--tmpdir=" + options_.rundir,
      // The buffer pool dump is a convenience file; the tests compare data, not warm-up hints.
      "--innodb-buffer-pool-dump-at-shutdown=0", "--innodb-buffer-pool-load-at-startup=0"};
  if (!options_.flush_method.empty()) argv.push_back("--innodb-flush-method=" + options_.flush_method);
  for (const auto& a : options_.extra_args) argv.push_back(a);
  Status s = process_.Start(argv, options_.rundir + "/mariadbd.out");
  if (!s.ok()) return s;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  Status last;
  while (std::chrono::steady_clock::now() < deadline) {
    if (process_.Exited()) {
      return Status::IoError("mariadbd exited during start-up (wait status " +
                             std::to_string(process_.wait_status()) + "); error log tail:\n" +
                             ErrorLogTail());
    }
    SqlClient client;
    last = client.Connect(socket_path(), "", 2);
    if (last.ok()) last = client.Exec("SELECT 1");
    if (last.ok()) return Status::Ok();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // poll interval while awaiting the socket
  }
  Kill();
  return Status::Timeout("mariadbd did not answer within " + std::to_string(timeout.count()) +
                         " ms (last: " + last.ToString() + "); error log tail:\n" + ErrorLogTail());
}

Status MariaDbServer::Stop(std::chrono::milliseconds timeout) {
  Status s = process_.Stop(timeout);
  if (!s.ok())
    return Status::IoError("mariadbd stop: " + s.ToString() + "; error log tail:\n" + ErrorLogTail());
  return s;
}

void MariaDbServer::Kill() { process_.Kill(); }
void MariaDbServer::SignalKill() { process_.Signal(SIGKILL); }

}  // namespace hamirror::itest
