// Acceptance test (issue 2): crash consistency of the synchronous data path. MariaDB runs a bank
// workload on a hamirror-fs primary mount; mariadbd and the primary hamirror-fs are SIGKILLed at the
// same instant (alternating which signal goes first), at a random moment under load. MariaDB started
// on the secondary's copy must recover, keep the total balance, and hold every transfer whose COMMIT
// the client saw acknowledged (promise 1: what was acknowledged as durable survives losing a server).
//
// Rounds: env HAMIRROR_CRASH_ROUNDS (default 3, keeps the test around 1-2 minutes);
// scripts/crash-loop.sh runs more. Seed: env HAMIRROR_CRASH_SEED (printed, to replay a round).
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <random>
#include <thread>

#include "tests/integration/bank_workload.h"
#include "tests/integration/mirrored_mariadb.h"
#include "tests/integration/require_ok.h"
#include "tests/integration/test_env.h"

namespace hamirror::itest {
namespace {

using Clock = std::chrono::steady_clock;

// On a failed round, with HAMIRROR_CRASH_KEEP_DIR set, keeps both underlying trees (the primary's as
// the killed processes left it, the secondary's as recovered) and both daemons' logs for comparison.
void KeepForensics(const MirroredMariaDb& env, long round) {
  const char* keep = std::getenv("HAMIRROR_CRASH_KEEP_DIR");
  if (keep == nullptr || *keep == '\0') return;
  const std::string dest = std::string(keep) + "/round-" + std::to_string(round);
  Status s =
      test::RunProgram({"/bin/cp", "-a", env.tmp.path(), dest}, "/dev/null", std::chrono::seconds(120));
  std::cout << "crash-test: kept the failed round in " << dest << " (" << s.ToString() << ")" << std::endl;
}

long Ms(Clock::duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }

TEST_CASE(
    "MariaDB bank workload: SIGKILL of mariadbd and the primary hamirror-fs loses no acknowledged commit",
    "[mariadb][hamirror][crash]") {
  const long rounds = EnvLong("HAMIRROR_CRASH_ROUNDS", 3);
  const long seed = EnvLong("HAMIRROR_CRASH_SEED", static_cast<long>(std::random_device{}() & 0x7fffffff));
  std::mt19937 rng(static_cast<unsigned>(seed));
  std::uniform_int_distribution<int> extra_load_ms(0, 3000);
  std::cout << "crash-test: rounds=" << rounds << " seed=" << seed << std::endl;
  long passed = 0;

  for (long round = 1; round <= rounds; ++round) {
    INFO("round " << round << " of " << rounds << " (seed " << seed << ")");
    MirroredMariaDb env("hm-crash");
    MirrorPair& pair = env.pair;
    MariaDbServer& primary_db = env.primary_db;
    // Both write paths: rounds 3-4, 7-8, ... with every writable handle in FUSE direct-I/O mode.
    const bool direct_io_all = ((round - 1) / 2) % 2 == 1;
    if (direct_io_all) pair.set_primary_flags({"--direct-io", "all"});
    INFO("primary --direct-io " << (direct_io_all ? "all" : "odirect"));
    REQUIRE_OK(env.StartPrimary());

    BankWorkload bank(primary_db.socket_path(), BankOptions());
    REQUIRE_OK(bank.Setup());
    REQUIRE(bank.StartClients().ok());
    // Await a first batch of commits (a condition, bounded), then pick a random crash instant.
    const auto load_start = Clock::now();
    while (bank.acknowledged() < 100 && Clock::now() - load_start < std::chrono::seconds(60)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    REQUIRE(bank.acknowledged() >= 100);
    std::this_thread::sleep_for(std::chrono::milliseconds(extra_load_ms(rng)));  // the crash instant

    // The pair must be in sync up to the crash: a primary that went alone or got error acks would
    // explain a loss without any ordering bug.
    proto::FsStatus primary_status;
    REQUIRE_OK(pair.PrimaryStatus(&primary_status));
    const bool fs_first = (round % 2) == 0;
    if (fs_first) {
      pair.SignalKillPrimary();
      primary_db.SignalKill();
    } else {
      primary_db.SignalKill();
      pair.SignalKillPrimary();
    }
    const long load_ms = Ms(Clock::now() - load_start);
    INFO("primary before the crash: role=" << primary_status.role()
                                           << " peer_errors=" << primary_status.peer_errors()
                                           << " reconnects=" << primary_status.reconnects());
    CHECK(primary_status.role() == proto::FS_ROLE_PRIMARY);
    CHECK(primary_status.peer_errors() == 0);
    primary_db.Kill();         // reap
    pair.ReapKilledPrimary();  // reap and lazily unmount the dead mount
    bank.Stop();

    // The secondary applied every op it received (an error ack would leave its copy behind).
    proto::FsStatus secondary_status;
    REQUIRE_OK(pair.SecondaryStatus(&secondary_status));
    INFO("secondary: ops_applied=" << secondary_status.ops_applied()
                                   << " peer_errors=" << secondary_status.peer_errors());
    CHECK(secondary_status.peer_errors() == 0);
    // The secondary lost its peer; stop it cleanly so its directory shows the replicated files.
    REQUIRE_OK(pair.StopSecondary());

    MariaDbServer& secondary_db = env.secondary_db;
    if (const char* keep = std::getenv("HAMIRROR_CRASH_KEEP_DIR"); keep != nullptr && *keep != '\0') {
      // Forensics: the replicated tree as the secondary left it, before recovery rewrites it.
      REQUIRE_OK(
          test::RunProgram({"/bin/cp", "-a", pair.secondary_dir(), env.tmp.Sub("secondary-before-recovery")},
                           "/dev/null", std::chrono::seconds(120)));
    }
    const auto recovery_start = Clock::now();
    Status s = secondary_db.Start();
    const long recovery_ms = Ms(Clock::now() - recovery_start);
    INFO(s.ToString());
    REQUIRE(s.ok());
    BankReport report;
    s = bank.Verify(secondary_db.socket_path(), &report);
    std::cout << "crash-round " << round << "/" << rounds << ": " << (s.ok() ? "PASS" : "FAIL") << " "
              << report.ToString() << " kill_first=" << (fs_first ? "hamirror-fs" : "mariadbd")
              << " direct_io=" << (direct_io_all ? "all" : "odirect") << " load_ms=" << load_ms
              << " recovery_ms=" << recovery_ms << " reconnects=" << primary_status.reconnects()
              << (s.ok() ? "" : " reason=" + s.ToString()) << std::endl;
    INFO(s.ToString() << " " << report.ToString());
    CHECK(s.ok());
    if (s.ok()) ++passed;
    CHECK_OK(secondary_db.Stop());
    if (!s.ok()) {
      KeepForensics(env, round);
      // Tells a replication bug from one on the primary's own data path: the primary's tree is what a
      // plain process crash would have left; if MariaDB recovers it consistently, the secondary's copy
      // diverged in replication.
      MariaDbOptions o = secondary_db.options();
      o.datadir = pair.primary_dir();
      o.rundir = env.tmp.Sub("run-primary-copy");
      MariaDbServer primary_copy_db(o);
      BankReport primary_report;
      Status ps = MakeDirs(o.rundir);
      if (ps.ok()) ps = primary_copy_db.Start();
      if (ps.ok()) ps = bank.Verify(primary_copy_db.socket_path(), &primary_report);
      std::cout << "crash-round " << round << ": the primary's own tree after the crash: " << ps.ToString()
                << " " << primary_report.ToString() << std::endl;
      (void)primary_copy_db.Stop();
    }
  }
  std::cout << "crash-summary: passed=" << passed << "/" << rounds << " seed=" << seed << std::endl;
}

}  // namespace
}  // namespace hamirror::itest
