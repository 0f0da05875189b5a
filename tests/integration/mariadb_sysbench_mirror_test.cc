// Acceptance test (issue 2): MariaDB runs sysbench oltp_write_only with its datadir on a hamirror-fs
// primary mount replicating to a secondary on 127.0.0.1. After a clean stop of everything, the
// secondary's underlying copy must equal the primary's file for file, and a MariaDB started on it must
// open every table and report the same CHECKSUM TABLE for every sysbench table.
#include <catch2/catch.hpp>
#include <iostream>
#include <map>

#include "tests/integration/mirrored_mariadb.h"
#include "tests/integration/require_ok.h"
#include "tests/integration/sql_client.h"
#include "tests/integration/sysbench_runner.h"
#include "tests/integration/test_env.h"
#include "tests/support/tree_compare.h"

namespace hamirror::itest {
namespace {

// "schema.table" -> CHECKSUM TABLE result, for the sysbench tables.
Status SysbenchChecksums(const std::string& socket_path, int tables,
                         std::map<std::string, std::string>* out) {
  SqlClient c;
  Status s = c.Connect(socket_path);
  if (!s.ok()) return s;
  for (int i = 1; i <= tables; ++i) {
    std::string name = "sbtest.sbtest" + std::to_string(i);
    std::vector<Row> rows;
    if (s = c.Query("CHECKSUM TABLE " + name, &rows); !s.ok()) return s;
    if (rows.empty() || rows[0].size() < 2 || rows[0][1].empty())
      return Status::Corruption("no checksum for " + name);
    (*out)[name] = rows[0][1];
    std::string count;
    if (s = c.QueryValue("SELECT COUNT(*) FROM " + name, &count); !s.ok()) return s;
    (*out)[name + " rows"] = count;
  }
  return Status::Ok();
}

// CHECK TABLE on every base table outside the virtual schemas; every one must say OK.
Status CheckAllTables(const std::string& socket_path, int* checked) {
  SqlClient c;
  Status s = c.Connect(socket_path);
  if (!s.ok()) return s;
  std::vector<Row> tables;
  s = c.Query(
      "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
      "AND table_schema NOT IN ('information_schema', 'performance_schema')",
      &tables);
  if (!s.ok()) return s;
  for (const auto& t : tables) {
    std::vector<Row> rows;
    std::string name = "`" + t[0] + "`.`" + t[1] + "`";
    if (s = c.Query("CHECK TABLE " + name, &rows); !s.ok()) return s;
    for (const auto& r : rows) {
      // Rows are (Table, Op, Msg_type, Msg_text); the final status row has Msg_type "status".
      if (r.size() >= 4 && r[2] == "status" && r[3] != "OK") {
        return Status::Corruption("CHECK TABLE " + name + ": " + r[3]);
      }
      if (r.size() >= 4 && r[2] == "error") return Status::Corruption("CHECK TABLE " + name + ": " + r[3]);
    }
    ++*checked;
  }
  return Status::Ok();
}

TEST_CASE("MariaDB sysbench on a hamirror primary: the secondary's copy has identical tables",
          "[mariadb][hamirror]") {
  MirroredMariaDb env("hm-sb");
  const test::TempDir& tmp = env.tmp;
  MirrorPair& pair = env.pair;
  MariaDbServer& primary_db = env.primary_db;
  REQUIRE_OK(env.StartPrimary());

  SysbenchOptions sb;
  sb.seconds = static_cast<int>(EnvLong("HAMIRROR_SYSBENCH_SECONDS", 20));
  sb.tables = 4;
  sb.table_size = 10000;
  sb.threads = 4;
  REQUIRE_OK(SysbenchPrepare(primary_db.socket_path(), sb, tmp.Sub("sysbench-prepare.log")));
  double tps = 0;
  REQUIRE_OK(SysbenchRun(primary_db.socket_path(), sb, tmp.Sub("sysbench-run.log"), &tps));
  std::cout << "sysbench oltp_write_only on hamirror primary: " << tps << " tps (" << sb.seconds << " s, "
            << sb.threads << " threads)" << std::endl;
  CHECK(tps > 0);

  std::map<std::string, std::string> want;
  REQUIRE_OK(SysbenchChecksums(primary_db.socket_path(), sb.tables, &want));
  proto::FsStatus st;
  Status s = pair.PrimaryStatus(&st);
  INFO(s.ToString() << " last_error=" << st.last_error());
  CHECK(s.ok());
  CHECK(st.peer_connected());  // the peer stayed connected through the run: nothing went to the dirty record
                               // only
  CHECK(st.ops_shipped() > 0);
  CHECK(st.peer_errors() == 0);  // the peer applied every op

  REQUIRE_OK(primary_db.Stop());
  REQUIRE_OK(pair.StopPrimary());
  REQUIRE_OK(pair.StopSecondary());

  // Both underlying trees, entry for entry: content, sizes, modes, owners, links, xattrs, mtimes.
  const std::string tree_diff = hamirror::test::CompareTrees(pair.primary_dir(), pair.secondary_dir());
  INFO("first difference between the two copies: " << tree_diff);
  CHECK(tree_diff.empty());

  MariaDbServer& secondary_db = env.secondary_db;
  REQUIRE_OK(secondary_db.Start());
  int checked = 0;
  CHECK_OK(CheckAllTables(secondary_db.socket_path(), &checked));
  CHECK(checked >= sb.tables);
  std::map<std::string, std::string> got;
  REQUIRE_OK(SysbenchChecksums(secondary_db.socket_path(), sb.tables, &got));
  CHECK(got == want);
  CHECK_OK(secondary_db.Stop());
}

}  // namespace
}  // namespace hamirror::itest
