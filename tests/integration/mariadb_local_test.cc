// The MariaDB harness on a plain local directory: it installs, starts, answers, survives SIGKILL with
// the bank invariants intact, and stops cleanly. Validates the harness and the bank checker themselves,
// so a failure of the hamirror tests points at hamirror.
#include <signal.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "tests/integration/bank_workload.h"
#include "tests/integration/mariadb_server.h"
#include "tests/integration/sql_client.h"
#include "tests/integration/test_env.h"
#include "tests/support/daemon.h"

namespace hamirror::itest {
namespace {

TEST_CASE("MariaDB harness: install, start, crash, recover, stop on a local directory", "[mariadb]") {
  test::TempDir tmp("hm-db");
  REQUIRE(MakeDirs(tmp.Sub("data")).ok());
  MariaDbOptions opts;
  opts.datadir = tmp.Sub("data");
  opts.rundir = tmp.path();
  MariaDbServer db(opts);
  Status s = db.InstallDb();
  INFO(s.ToString());
  REQUIRE(s.ok());
  s = db.Start();
  INFO(s.ToString());
  REQUIRE(s.ok());
  {
    SqlClient c;
    REQUIRE(c.Connect(db.socket_path()).ok());
    std::string v;
    REQUIRE(c.QueryValue("SELECT @@innodb_flush_log_at_trx_commit * 10 + @@sync_binlog", &v).ok());
    CHECK(v == "11");
    REQUIRE(c.QueryValue("SELECT @@log_bin", &v).ok());
    CHECK(v == "1");
  }

  BankWorkload bank(db.socket_path(), BankOptions());
  s = bank.Setup();
  INFO(s.ToString());
  REQUIRE(s.ok());
  REQUIRE(bank.StartClients().ok());
  // Let some transfers commit (bounded wait for a condition, not a fixed sleep).
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (bank.acknowledged() < 200 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  REQUIRE(bank.acknowledged() >= 200);
  db.Kill();
  bank.Stop();

  s = db.Start();
  INFO(s.ToString());
  REQUIRE(s.ok());
  BankReport report;
  s = bank.Verify(db.socket_path(), &report);
  INFO(s.ToString() << " " << report.ToString());
  CHECK(s.ok());
  CHECK(report.present >= report.acknowledged);

  // The checker must be able to fail: a lost acknowledged transfer, and a torn transfer (balance moved
  // without its log row), are both reported.
  {
    SqlClient c;
    REQUIRE(c.Connect(db.socket_path(), "bank").ok());
    std::string victim;
    REQUIRE(c.QueryValue("SELECT id, src, dst, amount FROM transfers ORDER BY id LIMIT 1", &victim).ok());
    std::vector<Row> row;
    REQUIRE(c.Query("SELECT src, dst, amount FROM transfers WHERE id = " + victim, &row).ok());
    REQUIRE(row.size() == 1);
    // Undo the transfer whole: balances stay consistent, but an acknowledged commit is gone.
    REQUIRE(c.Exec("UPDATE accounts SET balance = balance + " + row[0][2] + " WHERE id = " + row[0][0]).ok());
    REQUIRE(c.Exec("UPDATE accounts SET balance = balance - " + row[0][2] + " WHERE id = " + row[0][1]).ok());
    REQUIRE(c.Exec("DELETE FROM transfers WHERE id = " + victim).ok());
    BankReport r2;
    Status lost = bank.Verify(db.socket_path(), &r2);
    INFO(lost.ToString());
    CHECK(lost.code() == Status::Code::kCorruption);
    CHECK(lost.message().find("acknowledged transfers missing") != std::string::npos);
    // Now a half-applied transfer: money leaves an account without arriving anywhere.
    REQUIRE(c.Exec("UPDATE accounts SET balance = balance - 7 WHERE id = 0").ok());
    Status torn = bank.Verify(db.socket_path(), &r2);
    INFO(torn.ToString());
    CHECK(torn.message().find("total balance") != std::string::npos);
  }
  s = db.Stop();
  INFO(s.ToString());
  CHECK(s.ok());
}

}  // namespace
}  // namespace hamirror::itest
