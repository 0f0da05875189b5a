// Acceptance tests of SafeKit's runtime verbs in the two-node netns lab (cluster_lab.h; root, label
// "netns"): errd off, stopstart, failover off/on, boot/failover kept across a daemon restart, swap nosync,
// checker off/on.
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>

#include "tests/manager/daemon/cluster_lab.h"
#include "tests/support/netns.h"

using namespace hamirror::test;
using namespace std::chrono_literals;

namespace {
bool Contains(const std::string& s, const std::string& what) { return s.find(what) != std::string::npos; }
}  // namespace

TEST_CASE("verbs: errd off leaves a killed application alone, stopstart, failover off then on",
          "[netns][daemon]") {
  if (!IsRoot()) {
    WARN("needs root (network namespaces); skipped");
    return;
  }
  Cluster c({});
  c.FirstStart();

  // errd off: the watched process is killed and nothing restarts it. The lab's errd polls every
  // second and restarts within ~2 s when on (failover_test.cc): 4 s without a restart is a real answer.
  CommandResult off = c.Cli(1, "errd off");
  INFO(off.output);
  REQUIRE(off.status == 0);
  const std::string v_off = c.Cli(1, "state -v").output;
  INFO(v_off);
  CHECK(Contains(v_off, "errd " + c.SvcName(1) + ": not watched (errd off)"));
  const int svc = c.ServicePid(1);
  REQUIRE(svc > 0);
  kill(svc, SIGKILL);
  auto restarted = [&] {
    const int now = c.ServicePid(1);
    return now > 0 && now != svc;
  };
  CHECK_FALSE(Cluster::WaitFor(restarted, 4s));
  CHECK(c.State(1) == "PRIM (Ready)");
  CHECK_FALSE(Contains(c.Log(1), "restarting locally"));
  // errd on: watched again, the missing process is restarted.
  REQUIRE(c.Cli(1, "errd on").status == 0);
  {
    const bool ok = Cluster::WaitFor([&] { return restarted() && c.Fetch() == "n1"; }, 15s);
    INFO(c.Log(1) << c.Cli(1, "state -v").output);
    CHECK(ok);
  }

  // errd suspend: still polled (state -v shows the count), a failure is not acted on until resume.
  REQUIRE(c.Cli(1, "errd suspend").status == 0);
  const int svc2 = c.ServicePid(1);
  REQUIRE(svc2 > 0);
  kill(svc2, SIGKILL);
  auto restarted2 = [&] {
    const int now = c.ServicePid(1);
    return now > 0 && now != svc2;
  };
  CHECK(Cluster::WaitFor(
      [&] {
        return Contains(
            c.Cli(1, "state -v").output,
            "errd " + c.SvcName(1) + ": 0 running (atleast 1) FAILED, action restart (errd suspended");
      },
      5s));
  CHECK_FALSE(Cluster::WaitFor(restarted2, 3s));
  REQUIRE(c.Cli(1, "errd resume").status == 0);
  CHECK(Cluster::WaitFor([&] { return restarted2() && c.Fetch() == "n1"; }, 15s));

  // stopstart on the primary: the peer takes over meanwhile, this node comes back as SECOND.
  CommandResult ss = c.Cli(1, "stopstart");
  INFO(ss.output);
  REQUIRE(ss.status == 0);
  REQUIRE(Cluster::WaitFor([&] { return c.Fetch() == "n2"; }, 20s));
  REQUIRE(c.WaitState(1, "SECOND (Ready)", 30s));
  REQUIRE(c.WaitState(2, "PRIM (Ready)", 10s));
  CHECK_FALSE(c.HoldsVip(1));

  // failover off on the secondary, then its primary dies: it goes WAIT and does not take the VIP.
  // (Its data must be up to date first, else it would wait whatever failover says.)
  REQUIRE(Cluster::WaitFor([&] { return c.StateField(1, "local", "data_state") == "up_to_date"; }, 5s));
  REQUIRE(c.Cli(1, "failover off").status == 0);
  CHECK(Contains(c.Cli(1, "state -v").output, "failover off"));
  c.KillService(2);
  c.KillDaemon(2);
  REQUIRE(c.WaitState(1, "WAIT (Ready)", 10s));
  // The lab's heartbeat timeout is 1.5 s: with failover on, n1 would serve within ~2 s of that.
  CHECK_FALSE(Cluster::WaitFor([&] { return c.HoldsVip(1) || c.State(1) != "WAIT (Ready)"; }, 4s));
  CHECK(Contains(c.Cli(1, "state").output, "failover is off"));
  // failover on: it takes over now.
  REQUIRE(c.Cli(1, "failover on").status == 0);
  CHECK(c.WaitState(1, "ALONE (Ready)", 10s));
  CHECK(Cluster::WaitFor([&] { return c.HoldsVip(1) && c.Fetch() == "n1"; }, 10s));
  CHECK(c.StopDaemon(1));
}

TEST_CASE("verbs: boot and failover toggles are kept across a daemon restart", "[netns][daemon]") {
  if (!IsRoot()) {
    WARN("needs root (network namespaces); skipped");
    return;
  }
  Cluster c({.boot = true});  // the configuration says boot="on"
  c.StartDaemon(1);
  REQUIRE(c.WaitState(1, "WAIT (Ready)", 10s));  // started by itself
  REQUIRE(c.Cli(1, "boot off").status == 0);
  REQUIRE(c.Cli(1, "failover off").status == 0);
  CHECK(c.Cli(1, "boot status").output == "boot off\n");

  // Restarted: the toggles win over the configuration; the module stays STOP.
  REQUIRE(c.StopDaemon(1));
  c.StartDaemon(1);
  CHECK(c.State(1) == "STOP (Ready)");
  CHECK_FALSE(Cluster::WaitFor([&] { return c.State(1) != "STOP (Ready)"; }, 2s));
  CHECK(c.Cli(1, "boot status").output == "boot off\n");
  CHECK(Contains(c.Cli(1, "state -v").output, "boot off, failover off"));

  // boot on again: the next daemon starts the module by itself.
  REQUIRE(c.Cli(1, "boot on").status == 0);
  REQUIRE(c.StopDaemon(1));
  c.StartDaemon(1);
  CHECK(c.WaitState(1, "WAIT (Ready)", 10s));
  CHECK(Contains(c.Cli(1, "state -v").output, "boot on, failover off"));
  CHECK(c.StopDaemon(1));
}

TEST_CASE(
    "verbs: swap nosync with replicated data: refused on the secondary, a swap without resync on "
    "the primary",
    "[netns][daemon]") {
  if (!IsRoot()) {
    WARN("needs root (network namespaces); skipped");
    return;
  }
  if (FsBin().empty() || access(FsBin().c_str(), X_OK) != 0) {
    WARN("no hamirror-fs binary (HAMIRROR_FS_BIN); skipped");
    return;
  }
  // The old primary restarts its hamirror-fs as secondary during the swap, its event loop busy for
  // about a second while its heartbeat thread repeats the last status: with the lab's 1.5 s timeout
  // the new primary must count the repeats as heard (it took the old one for lost, 2 runs in 3,
  // before the core did).
  Cluster c({.rfs = true});
  c.FirstStart();
  CommandResult w = c.InFsMounts(1, "head -c 300000 /dev/urandom > " + c.Dir(1) + "/data/f && sync");
  INFO(w.output);
  REQUIRE(w.ok());

  CommandResult on_second = c.Cli(2, "swap nosync");
  INFO(on_second.output);
  CHECK(on_second.status == 1);
  CHECK(Contains(on_second.output, "type it on the primary"));

  // In sync (the primary's fs says so, its record is empty): accepted, and it is a plain swap.
  REQUIRE(Cluster::WaitFor(
      [&] {
        return Contains(c.Cli(1, "state -v").output, ", in sync") &&
               c.StateField(1, "peer", "data_state") == "up_to_date";
      },
      10s));
  CommandResult swap = c.Cli(1, "swap nosync");
  INFO(swap.output << c.Cli(1, "state -v").output << c.Log(1));
  REQUIRE(swap.status == 0);
  if (!c.WaitState(2, "PRIM (Ready)", 20s)) FAIL(c.Cli(1, "log -n 40").output);
  REQUIRE(c.WaitState(1, "SECOND (Ready)", 20s));
  CHECK(Cluster::WaitFor([&] { return c.Fetch() == "n2"; }, 10s));
  // What the new primary's fs ran when its stream to n1 came up: nothing to compare, nothing sent.
  std::string v2;
  CHECK(Cluster::WaitFor(
      [&] {
        v2 = c.Cli(2, "state -v").output;
        return Contains(v2, "  resync done");
      },
      10s));
  INFO(v2);
  CHECK(Contains(v2, "compared 0 bytes, sent 0, 0 files"));

  // second fullsync on the (new) secondary: the primary's fs compares every block of every file by
  // checksum - all 300000 bytes of f - and sends nothing, since both copies are equal.
  CommandResult full = c.Cli(1, "second fullsync");
  INFO(full.output);
  REQUIRE(full.status == 0);
  std::string v3;
  const bool full_done = Cluster::WaitFor(
      [&] {
        v3 = c.Cli(2, "state -v").output;
        return Contains(v3, "  resync done (full, ") &&
               Contains(v3, "full compare asked for (second fullsync)");
      },
      20s);
  INFO(v3 << c.Cli(1, "log -n 30").output << c.Cli(2, "log -n 30").output);
  CHECK(full_done);
  CHECK(Contains(v3, "compared 300000 bytes, sent 0, 1 files"));
  CHECK(c.WaitState(1, "SECOND (Ready)", 20s));
  CHECK(c.StopDaemon(1));
  CHECK(c.StopDaemon(2));
}

TEST_CASE("verbs: checker off leaves a failing tcp checker alone, checker on acts on it", "[netns][daemon]") {
  if (!IsRoot()) {
    WARN("needs root (network namespaces); skipped");
    return;
  }
  Cluster c({.maxloop = 10, .tcp_check = true});
  c.StartDaemon(1);
  // Off from the start: only the checker may react below, and only once it is on again.
  REQUIRE(c.Cli(1, "checker off").status == 0);
  REQUIRE(c.Cli(1, "errd off").status == 0);
  REQUIRE(c.Cli(1, "start").status == 0);
  REQUIRE(c.Cli(1, "prim").status == 0);
  REQUIRE(c.WaitState(1, "ALONE (Ready)", 10s));
  REQUIRE(Cluster::WaitFor([&] { return c.Fetch() == "n1"; }, 10s));
  const int svc = c.ServicePid(1);
  REQUIRE(svc > 0);
  kill(svc, SIGKILL);
  auto restarted = [&] {
    const int now = c.ServicePid(1);
    return now > 0 && now != svc;
  };
  // The checker connects every second: 4 s without a restart is a real answer.
  CHECK_FALSE(Cluster::WaitFor(restarted, 4s));
  CHECK(c.Fetch() == "");
  CHECK(Contains(c.Cli(1, "state -v").output, "checker off"));
  REQUIRE(c.Cli(1, "checker on").status == 0);
  CHECK(Cluster::WaitFor([&] { return restarted() && c.Fetch() == "n1"; }, 15s));
  CHECK(Contains(c.Log(1), "tcp checker svc failed"));
  CHECK(c.StopDaemon(1));
}
