#include "tests/integration/sysbench_runner.h"

#include <regex>
#include <vector>

#include "tests/integration/sql_client.h"
#include "tests/integration/test_env.h"
#include "tests/support/daemon.h"

namespace hamirror::itest {

namespace {
std::vector<std::string> Args(const std::string& socket_path, const SysbenchOptions& o, const char* command) {
  return {FindProgram("sysbench"),
          "oltp_write_only",
          "--db-driver=mysql",
          "--mysql-socket=" + socket_path,
          "--mysql-user=root",
          "--mysql-db=sbtest",
          "--tables=" + std::to_string(o.tables),
          "--table-size=" + std::to_string(o.table_size),
          "--threads=" + std::to_string(o.threads),
          "--time=" + std::to_string(o.seconds),
          "--report-interval=0",
          command};
}
}  // namespace

Status SysbenchPrepare(const std::string& socket_path, const SysbenchOptions& o,
                       const std::string& log_path) {
  SqlClient c;
  Status s = c.Connect(socket_path);
  if (s.ok()) s = c.Exec("CREATE DATABASE IF NOT EXISTS sbtest");
  if (!s.ok()) return s;
  return test::RunProgram(Args(socket_path, o, "prepare"), log_path, std::chrono::seconds(300));
}

Status SysbenchRun(const std::string& socket_path, const SysbenchOptions& o, const std::string& log_path,
                   double* tps) {
  Status s = test::RunProgram(Args(socket_path, o, "run"), log_path, std::chrono::seconds(o.seconds + 120));
  if (!s.ok()) return s;
  std::string out = test::FileTail(log_path, 1 << 16);
  std::smatch m;
  static const std::regex kTps(R"(transactions:\s+(\d+)\s+\(([0-9.]+) per sec\.\))");
  if (!std::regex_search(out, m, kTps)) return Status::IoError("no transactions line in " + log_path);
  *tps = std::stod(m[2]);
  return Status::Ok();
}

}  // namespace hamirror::itest
