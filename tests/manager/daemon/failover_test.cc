// Acceptance test of hamirrord + hamirror in a network-namespace lab (root only, label "netns"; the lab
// is tests/manager/daemon/cluster_lab.h): failover, errd, split-brain witness, admin access and the fs
// data path. Reintegration (resync of a returning node) is in reintegration_test.cc.
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <thread>

#include "tests/manager/daemon/cluster_lab.h"
#include "tests/support/netns.h"

using namespace hamirror::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

uint64_t StateNumber(const Cluster& c, int i, const std::string& object, const std::string& field) {
  return std::strtoull(c.StateField(i, object, field).c_str(), nullptr, 10);
}

}  // namespace

TEST_CASE("failover: kill the primary node then restart it and swap back", "[netns][daemon]") {
  if (!IsRoot()) {
    WARN("needs root (network namespaces); skipped");
    return;
  }
  Cluster c({});
  c.FirstStart();
  CHECK(c.HoldsVip(1));
  CHECK_FALSE(c.HoldsVip(2));
  {
    // state -v shows each heartbeat network with its counters, and the drop counters.
    const std::string v = c.Cli(1, "state -v").output;
    INFO(v);
    CHECK(v.find("heartbeat default (") != std::string::npos);
    CHECK(v.find("): up") != std::string::npos);
    CHECK(v.find(", received ") != std::string::npos);
    CHECK(v.find("heartbeat drops: garbage ") != std::string::npos);
  }

  // The admin API is root only: the CLI run as nobody is refused.
  CommandResult nobody = RunCommand("setpriv --reuid=65534 --regid=65534 --clear-groups " +
                                    std::string(HAMIRROR_CLI_BIN) + " --socket " + c.Sock(1) + " stop 2>&1");
  INFO(nobody.output);
  CHECK(nobody.status == 2);
  CHECK(nobody.output.find("ermission denied") != std::string::npos);
  CHECK(c.State(1) == "PRIM (Ready)");

  // Kill every process of the primary node: hamirrord and the service it started.
  const int svc = c.ServicePid(1);
  REQUIRE(svc > 0);
  const auto t0 = Clock::now();
  kill(svc, SIGKILL);
  c.KillDaemon(1);
  REQUIRE(Cluster::WaitFor([&] { return c.Fetch() == "n2"; }, 20s));
  const auto failover_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
  std::cout << "FAILOVER kill -> answer on the VIP from n2: " << failover_ms << " ms\n";
  CHECK(failover_ms <= 5000);
  CHECK(c.WaitState(2, "ALONE (Ready)", 5s));
  CHECK(c.HoldsVip(2));
  {
    // The survivor's state -v: the failover with its reason and how long it took; time in state grows.
    INFO(c.Cli(2, "state -v").output << c.Cli(2, "state -v --json").output);
    CHECK(c.StateField(2, "last_failover", "reason") == "peer n1 lost (no heartbeat on any network)");
    CHECK(c.StateField(2, "last_failover", "state") == "alone");
    const uint64_t took = StateNumber(c, 2, "last_failover", "duration_ms");
    CHECK(took > 0);
    CHECK(took < static_cast<uint64_t>(failover_ms));  // the heartbeat timeout comes before it
    CHECK(c.StateField(2, "local", "state") == "alone");
    CHECK(c.StateField(2, "peer", "known") == "false");
    CHECK(c.Cli(2, "state -v --json").output.find("\"vip_holder\": \"local\"") != std::string::npos);
    const uint64_t age = StateNumber(c, 2, "local", "state_age_ms");
    CHECK(age > 0);
    CHECK(Cluster::WaitFor([&] { return StateNumber(c, 2, "local", "state_age_ms") > age; }, 3s));
    const std::string v = c.Cli(2, "state -v").output;
    std::cout << "STATE -v on the survivor:\n" << v;
    CHECK(v.find("last failover: ") != std::string::npos);
    CHECK(v.find("to ALONE: peer n1 lost") != std::string::npos);
  }

  // The killed node comes back: it drops the stale VIP at start and rejoins as SECOND.
  c.StartDaemon(1);
  CHECK_FALSE(c.HoldsVip(1));
  REQUIRE(c.Cli(1, "start").status == 0);
  REQUIRE(c.WaitState(1, "SECOND (Ready)", 20s));
  REQUIRE(c.WaitState(2, "PRIM (Ready)", 10s));
  CHECK(c.Fetch() == "n2");

  // swap moves everything back (once n2 has heard that n1 is ready).
  // (swap needs the secondary ready with data up to date, as n2 last heard it).
  REQUIRE(Cluster::WaitFor(
      [&] {
        return c.State(2, true) == "SECOND (Ready)" && c.StateField(2, "peer", "data_state") == "up_to_date";
      },
      5s));
  CommandResult swap = c.Cli(2, "swap");
  INFO(swap.output << c.Cli(1, "state -v").output << c.Cli(2, "state -v").output << c.Log(1) << c.Log(2));
  REQUIRE(swap.status == 0);
  REQUIRE(c.WaitState(1, "PRIM (Ready)", 20s));
  REQUIRE(c.WaitState(2, "SECOND (Ready)", 20s));
  CHECK(Cluster::WaitFor([&] { return c.Fetch() == "n1"; }, 10s));
  CHECK(c.HoldsVip(1));
  CHECK_FALSE(c.HoldsVip(2));
  // The swap is n1's last failover; n2 saw n1 enter PRIM (an exact time in state, not a lower bound).
  CHECK(c.StateField(1, "last_failover", "reason") == "swap: n2 handed over");
  CHECK(c.StateField(1, "last_failover", "state") == "prim");
  CHECK(c.StateField(2, "peer", "state") == "prim");
  CHECK(c.StateField(2, "peer", "state_age_at_least") == "false");
  CHECK(c.StateField(2, "last_failover", "reason") == "peer n1 lost (no heartbeat on any network)");

  // Graceful daemon exit stops the module: the VIP is released.
  CHECK(c.StopDaemon(1));
  CHECK_FALSE(c.HoldsVip(1));
  // The last failover is kept across a restart of hamirrord.
  c.StartDaemon(1);
  CHECK(c.StateField(1, "last_failover", "reason") == "swap: n2 handed over");
  CHECK(c.StopDaemon(1));
  CHECK(c.StopDaemon(2));
}

TEST_CASE("errd: a killed application is restarted until maxloop then the module stops", "[netns][daemon]") {
  if (!IsRoot()) {
    WARN("needs root (network namespaces); skipped");
    return;
  }
  Cluster c({.maxloop = 2});
  c.StartDaemon(1);
  REQUIRE(c.Cli(1, "start").status == 0);
  REQUIRE(c.Cli(1, "prim").status == 0);
  REQUIRE(c.WaitState(1, "ALONE (Ready)", 10s));
  REQUIRE(Cluster::WaitFor([&] { return c.Fetch() == "n1"; }, 10s));

  int restarts = 0;
  for (int round = 0; round < 4; ++round) {
    int pid = c.ServicePid(1);
    REQUIRE(pid > 0);
    kill(pid, SIGKILL);
    // Either a new instance answers (restart) or the module stops (maxloop exceeded).
    bool restarted = false, stopped = false;
    Cluster::WaitFor(
        [&] {
          int now = c.ServicePid(1);
          restarted = now > 0 && now != pid && c.Fetch() == "n1";
          stopped = c.State(1) == "STOP (Ready)";
          return restarted || stopped;
        },
        15s);
    if (stopped) break;
    REQUIRE(restarted);
    ++restarts;
    // state -v counts the restarts against maxloop.
    const std::string v = c.Cli(1, "state -v").output;
    INFO(v);
    CHECK(v.find("restarts " + std::to_string(restarts) + "/2 (maxloop)") != std::string::npos);
  }
  INFO(c.Log(1));
  CHECK(restarts == 2);
  CHECK(c.WaitState(1, "STOP (Ready)", 10s));
  CHECK_FALSE(c.HoldsVip(1));
  CHECK(c.Fetch() == "");
  CHECK(c.StopDaemon(1));
}

TEST_CASE("errd stopstart: after maxloop failures the peer takes over", "[netns][daemon]") {
  if (!IsRoot()) {
    WARN("needs root (network namespaces); skipped");
    return;
  }
  Cluster c({.maxloop = 1, .errd_action = "stopstart"});
  c.FirstStart();

  // Failure 1 (within maxloop): stopstart = full local stop then start. The peer takes over while n1
  // is down, and n1 comes back as its secondary.
  int pid = c.ServicePid(1);
  REQUIRE(pid > 0);
  kill(pid, SIGKILL);
  REQUIRE(Cluster::WaitFor([&] { return c.Fetch() == "n2"; }, 20s));
  REQUIRE(c.WaitState(1, "SECOND (Ready)", 20s));
  REQUIRE(c.WaitState(2, "PRIM (Ready)", 10s));
  CHECK(c.HoldsVip(2));
  CHECK_FALSE(c.HoldsVip(1));
  CHECK(c.Cli(1, "log -n 200").output.find("stopstart") != std::string::npos);
  // n2 took over because n1 left PRIM (connected, not lost): its last failover says so.
  CHECK(c.StateField(2, "last_failover", "reason").rfind("peer n1 left PRIM (now ", 0) == 0);

  // Swap back so that n1 serves again (once n2 has heard that n1 is ready and up to date).
  REQUIRE(Cluster::WaitFor(
      [&] {
        return c.State(2, true) == "SECOND (Ready)" && c.StateField(2, "peer", "data_state") == "up_to_date";
      },
      10s));
  CommandResult swap = c.Cli(2, "swap");
  INFO(swap.output << c.Log(1) << c.Log(2));
  REQUIRE(swap.status == 0);
  REQUIRE(c.WaitState(1, "PRIM (Ready)", 20s));
  REQUIRE(c.WaitState(2, "SECOND (Ready)", 20s));
  REQUIRE(Cluster::WaitFor([&] { return c.Fetch() == "n1"; }, 10s));

  // Failure 2 (beyond maxloop 1): n1 stops for good and n2 serves alone on the VIP.
  pid = c.ServicePid(1);
  REQUIRE(pid > 0);
  const auto t0 = Clock::now();
  kill(pid, SIGKILL);
  REQUIRE(Cluster::WaitFor([&] { return c.Fetch() == "n2"; }, 20s));
  const auto takeover_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
  std::cout << "ERRD STOPSTART kill -> answer on the VIP from n2 after maxloop: " << takeover_ms << " ms\n";
  CHECK(c.WaitState(2, "ALONE (Ready)", 10s));
  CHECK(c.WaitState(1, "STOP (Ready)", 10s));
  CHECK(c.HoldsVip(2));
  CHECK_FALSE(c.HoldsVip(1));
  CHECK(c.Cli(1, "log -n 200").output.find("maxloop 1 reached") != std::string::npos);
  // n1 stays stopped: it does not start again and rejoin.
  CHECK_FALSE(Cluster::WaitFor([&] { return c.State(1) != "STOP (Ready)"; }, 3s));
  CHECK(c.State(2) == "ALONE (Ready)");
  CHECK(c.Fetch() == "n2");
}

TEST_CASE("split brain witness: cutting the primary link leaves exactly one node serving",
          "[netns][daemon]") {
  if (!IsRoot()) {
    WARN("needs root (network namespaces); skipped");
    return;
  }
  Cluster c({.witness = true});
  c.FirstStart();
  // Heartbeats, the witness (the client, 198.18.0.100) and the VIP share lan 0: cutting n1's link
  // isolates it from both the peer and the witness.
  c.lab().CutLink(1, 0);
  const auto t0 = Clock::now();
  int both = 0, samples = 0;
  long n2_serving_ms = -1;
  // Sample for the whole window (not only until n2 serves): the isolated node must not come back.
  while (Clock::now() - t0 < 6s) {
    bool h1 = c.HoldsVip(1), h2 = c.HoldsVip(2);
    both += h1 && h2;
    ++samples;
    if (n2_serving_ms < 0 && !h1 && h2)
      n2_serving_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
    std::this_thread::sleep_for(50ms);
  }
  INFO(c.Log(1) << c.Log(2));
  CHECK(both == 0);
  REQUIRE(n2_serving_ms >= 0);
  CHECK(c.State(2) == "ALONE (Ready)");
  CHECK(Cluster::WaitFor([&] { return c.Fetch() == "n2"; }, 5s));
  // The isolated node gave the VIP up and waits.
  CHECK_FALSE(c.HoldsVip(1));
  CHECK(c.State(1).rfind("WAIT", 0) == 0);
  std::cout << "SPLITBRAIN n2 serving after " << n2_serving_ms << " ms\n";
  std::cout << "SPLITBRAIN samples " << samples << ", both holding " << both << "\n";
  c.lab().HealLink(1, 0);
}

TEST_CASE("fs data path: writes on the primary reach the secondary which serves them after failover",
          "[netns][daemon][fs]") {
  if (!IsRoot()) {
    WARN("needs root (network namespaces); skipped");
    return;
  }
  if (FsBin().empty() || access(FsBin().c_str(), X_OK) != 0) {
    WARN("no hamirror-fs binary (set HAMIRROR_FS_BIN); skipped");
    return;
  }
  Cluster c({.rfs = true, .directio = "all"});
  c.FirstStart();
  REQUIRE(c.FsPid(1) > 0);
  REQUIRE(c.FsPid(2) > 0);
  // The configuration's directio and sendtimeout reach hamirror-fs's command line, and so do the lab's TLS
  // files (secure by default): the link that connects below is mutual TLS, the peer checked by node name.
  for (int i = 1; i <= 2; ++i) {
    std::ifstream in("/proc/" + std::to_string(c.FsPid(i)) + "/cmdline");
    std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    INFO(cmd);
    CHECK(cmd.find(std::string("--direct-io\0all", 15)) != std::string::npos);
    CHECK(cmd.find(std::string("--send-timeout-ms") + '\0' + "7000") !=
          std::string::npos);  // sendtimeout="7"
    const std::string tlsdir = c.Pki() + "/n" + std::to_string(i);
    CHECK(cmd.find(std::string("--tls-cert") + '\0' + tlsdir + "/node.pem") != std::string::npos);
    CHECK(cmd.find(std::string("--tls-ca") + '\0' + tlsdir + "/ca.pem") != std::string::npos);
    CHECK(cmd.find(std::string("--tls-server-name") + '\0' + "n" + std::to_string(3 - i)) !=
          std::string::npos);
    CHECK(cmd.find("--insecure") == std::string::npos);
  }
  CHECK(c.Cli(1, "state -v").output.find("primary, peer connected") != std::string::npos);
  CHECK(c.Cli(2, "state -v").output.find("secondary, peer connected") != std::string::npos);

  // Through n1's mount; the acknowledged write is already applied in n2's real directory.
  CommandResult w = c.InFsMounts(1, "echo payload-1 > " + c.Dir(1) + "/data/x && sync");
  INFO(w.output);
  REQUIRE(w.ok());
  CHECK(RunCommand("cat " + c.Dir(2) + "/data/x").output == "payload-1\n");
  CHECK(c.InFsMounts(2, "cat " + c.Dir(2) + "/data/x").output == "payload-1\n");
  CHECK_FALSE(c.InFsMounts(2, "echo no > " + c.Dir(2) + "/data/y").ok());  // secondary is read-only

  // Every process of n1 dies: daemon, service and its hamirror-fs.
  const int fs1 = c.FsPid(1);
  kill(c.ServicePid(1), SIGKILL);
  kill(fs1, SIGKILL);
  c.KillDaemon(1);
  REQUIRE(Cluster::WaitFor([&] { return c.Fetch() == "n2"; }, 20s));
  CHECK(c.WaitState(2, "ALONE (Ready)", 5s));
  INFO(c.Cli(2, "state -v").output << c.Log(2));
  CHECK(Cluster::WaitFor(
      [&] {
        return c.Cli(2, "state -v").output.find("fs " + c.Dir(2) + "/data: alone") != std::string::npos;
      },
      5s));
  CommandResult w2 =
      c.InFsMounts(2, "cat " + c.Dir(2) + "/data/x && echo payload-2 > " + c.Dir(2) + "/data/x");
  INFO(w2.output);
  CHECK(w2.ok());
  CHECK(w2.output == "payload-1\n");
}
