// Acceptance test of hamirrord + hamirror in a network-namespace lab (root only, label "netns"):
// two node namespaces and a client on lan 0 (198.18.0.0/24), a VIP 198.18.0.50, and a tiny HTTP
// service started by start_prim on the VIP (stopped by PID file in stop_prim) that answers /node
// with the name of the node serving it. No replicated directory (<rfs> is optional; the fs data
// path is covered by the fs and integration tests).
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

#include "tests/support/netns.h"

using namespace hamirror::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kVip = "198.18.0.50";

struct ModuleOptions {
  int maxloop = 3;
  bool witness = false;
  bool rfs = false;                     // replicate <node dir>/data through hamirror-fs
  const char* directio = "odirect";     // <replicated directio>
  const char* errd_action = "restart";  // action of the <errd> watch on the service
};

// hamirror-fs for the data-path case: $HAMIRROR_FS_BIN, else the build's own (when built).
std::string FsBin() {
  if (const char* e = getenv("HAMIRROR_FS_BIN"); e && *e) return e;
#ifdef HAMIRROR_FS_BIN
  return HAMIRROR_FS_BIN;
#else
  return "";
#endif
}

class Cluster {
 public:
  explicit Cluster(ModuleOptions mo) : lab_(NetLab::Options{.nodes = 2, .lans = 1}) {
    char tmpl[] = "/tmp/hamirror-daemon-test-XXXXXX";
    REQUIRE(mkdtemp(tmpl));
    base_ = tmpl;
    std::ofstream(base_ + "/cluster.xml") << "<cluster><lans><lan name=\"default\">"
                                          << "<node name=\"n1\" addr=\"" << NetLab::NodeAddr(1, 0) << "\"/>"
                                          << "<node name=\"n2\" addr=\"" << NetLab::NodeAddr(2, 0) << "\"/>"
                                          << "</lan></lans></cluster>\n";
    for (int i = 1; i <= 2; ++i) WriteModule(i, mo);
  }

  ~Cluster() {
    for (int i = 1; i <= 2; ++i) {
      if (pids_[i] > 0) lab_.node(i).Kill(pids_[i], SIGKILL, 5000ms);
      KillService(i);
      StopFs(i);
    }
    // A hamirror-fs whose pid we never learnt (test failed early): found by its --dir under base_.
    for (const auto& e : std::filesystem::directory_iterator("/proc")) {
      const std::string name = e.path().filename();
      if (name.find_first_not_of("0123456789") != std::string::npos) continue;
      std::ifstream in(e.path() / "cmdline");
      std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (cmd.find("hamirror-fs") != std::string::npos && cmd.find(base_ + "/") != std::string::npos) {
        int pid = std::stoi(name);
        kill(pid, SIGTERM);
        WaitFor([&] { return kill(pid, 0) != 0; }, 10s);
        kill(pid, SIGKILL);
      }
    }
    // A hamirror-fs killed with SIGKILL (the failover case) leaves a dead FUSE mount behind.
    for (int i = 1; i <= 2; ++i) umount2((Dir(i) + "/data").c_str(), MNT_DETACH);
    std::error_code ec;
    std::filesystem::remove_all(base_, ec);
  }

  NetLab& lab() { return lab_; }
  std::string Dir(int i) const { return base_ + "/n" + std::to_string(i); }
  std::string Sock(int i) const { return Dir(i) + "/admin.sock"; }

  void StartDaemon(int i) {
    std::vector<std::string> argv = {HAMIRRORD_BIN,
                                     "--module",
                                     Dir(i) + "/hmtest",
                                     "--cluster",
                                     base_ + "/cluster.xml",
                                     "--node",
                                     "n" + std::to_string(i),
                                     "--socket",
                                     Sock(i),
                                     "--log",
                                     Dir(i) + "/hmtest.log"};
    if (!FsBin().empty()) argv.insert(argv.end(), {"--fs-bin", FsBin()});
    pids_[i] = lab_.node(i).Spawn(argv, Dir(i) + "/stderr.log");
    REQUIRE(pids_[i] > 0);
    REQUIRE(WaitFor([&] { return Cli(i, "state").status == 0; }, 10s));
  }

  // SIGKILL the daemon (it is our child: reaped by NetNamespace::Kill).
  void KillDaemon(int i) {
    REQUIRE(lab_.node(i).Kill(pids_[i], SIGKILL, 5000ms));
    pids_[i] = -1;
  }
  // SIGTERM: the daemon stops the module (stop_prim, VIP removed) and exits.
  bool StopDaemon(int i) {
    bool ok = lab_.node(i).Kill(pids_[i], SIGTERM, 30000ms);
    if (ok) pids_[i] = -1;
    return ok;
  }

  int ServicePid(int i) const {
    std::ifstream in(Dir(i) + "/state/svc.pid");
    int pid = 0;
    in >> pid;
    return pid;
  }
  void KillService(int i) {
    int pid = ServicePid(i);
    if (pid > 0) kill(pid, SIGKILL);
  }

  // hamirror-fs of node i (detached from the daemon by design), from `state --json`; remembered so
  // the destructor can stop it even after its daemon was killed.
  int FsPid(int i) {
    if (fs_pids_[i] > 0) return fs_pids_[i];
    // The daemon refreshes the fs status every 2 s.
    WaitFor(
        [&] {
          CommandResult r = Cli(i, "state --json");
          size_t p = r.output.find("\"pid\": ", r.output.find("\"fs\""));
          if (r.status == 0 && p != std::string::npos) {
            int pid = atoi(r.output.c_str() + p + 7);
            if (pid > 0) fs_pids_[i] = pid;
          }
          return fs_pids_[i] > 0;
        },
        5s);
    return fs_pids_[i];
  }
  void StopFs(int i) {
    if (fs_pids_[i] <= 0) return;
    kill(fs_pids_[i], SIGTERM);  // unmounts cleanly
    WaitFor([&] { return kill(fs_pids_[i], 0) != 0; }, 10s);
    kill(fs_pids_[i], SIGKILL);
    fs_pids_[i] = -1;
  }
  // Runs `cmd` in the mount namespace of node i's hamirror-fs (where its mount is visible).
  CommandResult InFsMounts(int i, const std::string& cmd) {
    return RunCommand("nsenter -t " + std::to_string(FsPid(i)) + " -m sh -c " + ShellQuote(cmd) + " 2>&1");
  }

  CommandResult Cli(int i, const std::string& args) const {
    return RunCommand(std::string(HAMIRROR_CLI_BIN) + " --socket " + ShellQuote(Sock(i)) + " " + args +
                      " 2>&1");
  }
  // "PRIM (Ready)" etc. from `hamirror state`; `peer` gives node i's view of the other node.
  std::string State(int i, bool peer = false) const {
    CommandResult r = Cli(i, "state");
    if (r.status != 0) return "unreachable";
    const std::string tag =
        (peer ? "peer   n" + std::to_string(3 - i) : "local  n" + std::to_string(i)) + ": ";
    size_t p = r.output.find(tag);
    if (p == std::string::npos) return "?";
    size_t e = r.output.find_first_of("\n", p);
    std::string s = r.output.substr(p + tag.size(), e - p - tag.size());
    size_t cut = s.find(")");
    return cut == std::string::npos ? s : s.substr(0, cut + 1);
  }
  bool WaitState(int i, const std::string& want, std::chrono::milliseconds timeout) const {
    bool ok = WaitFor([&] { return State(i) == want; }, timeout);
    if (!ok) UNSCOPED_INFO("n" << i << " is " << State(i) << ", wanted " << want << "\n" << Log(i));
    return ok;
  }

  // The node named by the service on the VIP, seen from the client namespace ("" when no answer).
  std::string Fetch() {
    CommandResult r =
        lab_.client().Exec(std::string("timeout 1 bash -c 'exec 3<>/dev/tcp/") + kVip +
                           "/8080 && printf \"GET /node HTTP/1.0\\r\\n\\r\\n\" >&3 && cat <&3' 2>/dev/null");
    size_t p = r.output.find("\r\n\r\n");
    if (p == std::string::npos) return "";
    std::string body = r.output.substr(p + 4);
    while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) body.pop_back();
    return body;
  }

  bool HoldsVip(int i) {
    return lab_.node(i).Exec(std::string("ip -o addr show | grep -q ' ") + kVip + "/'").status == 0;
  }

  std::string Log(int i) const {
    CommandResult r = Cli(i, "log -n 30");
    return "--- n" + std::to_string(i) + " log:\n" + r.output;
  }

  static bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    for (int i = 0; i < 100000; ++i) {
      if (cond()) return true;
      if (Clock::now() >= deadline) return false;
      std::this_thread::sleep_for(50ms);
    }
    return false;
  }

  // start on both, prim on n1, second on n2 -> n1 PRIM, n2 SECOND.
  void FirstStart() {
    StartDaemon(1);
    StartDaemon(2);
    for (int i = 1; i <= 2; ++i) {
      CommandResult r = Cli(i, "start");
      INFO(r.output);
      REQUIRE(r.status == 0);
    }
    REQUIRE(WaitState(1, "WAIT (Ready)", 10s));
    REQUIRE(WaitState(2, "WAIT (Ready)", 10s));
    REQUIRE(Cli(1, "prim").status == 0);
    // n2 may already have joined on its own once n1 serves; `second` is then refused as a no-op.
    CommandResult second = Cli(2, "second");
    INFO(second.output);
    REQUIRE((second.status == 0 || second.output.find("is SECOND") != std::string::npos));
    REQUIRE(WaitState(1, "PRIM (Ready)", 15s));
    REQUIRE(WaitState(2, "SECOND (Ready)", 15s));
    REQUIRE(WaitFor([&] { return Fetch() == "n1"; }, 10s));
  }

 private:
  void WriteModule(int i, const ModuleOptions& mo) {
    const std::string n = "n" + std::to_string(i);
    const std::string m = Dir(i) + "/hmtest";
    std::filesystem::create_directories(m + "/conf");
    std::filesystem::create_directories(m + "/bin");
    std::filesystem::create_directories(Dir(i) + "/state");
    std::filesystem::create_directories(Dir(i) + "/data");
    std::ofstream(m + "/conf/userconfig.xml")
        << "<!DOCTYPE safe>\n<safe>\n"
        << "<service mode=\"mirror\" defaultprim=\"alone\" maxloop=\"" << mo.maxloop
        << "\" loop_interval=\"24\" failover=\"on\">\n"
        << "  <heart pulse=\"300\" timeout=\"1500\"><heartbeat name=\"default\" ident=\"flow\"/></heart>\n"
        << "  <vip><interface_list><interface check=\"on\" arpreroute=\"on\"><real_interface>\n"
        << "    <virtual_addr addr=\"" << kVip << "\" where=\"one_side_alias\"/>\n"
        << "  </real_interface></interface></interface_list></vip>\n"
        << "  <errd polltimer=\"1\"><proc name=\"hmtestsvc-" << n << "\" atleast=\"1\" action=\""
        << mo.errd_action << "\" class=\"prim\"/></errd>\n"
        << (mo.rfs ? "  <rfs async=\"none\"><replicated dir=\"" + Dir(i) +
                         "/data\" mode=\"read_only\" directio=\"" + mo.directio + "\"/></rfs>\n"
                   : "")
        << (mo.witness
                ? "  <splitbrain ident=\"witness\" exec=\"ping\" arg=\"" + NetLab::ClientAddr() + "\"/>\n"
                : "")
        << "  <user nicestoptimeout=\"10\" forcestoptimeout=\"10\" logging=\"userlog\">"
        << "<var name=\"NODE_NAME\" value=\"" << n << "\"/></user>\n"
        << "  <hamirror statedir=\"" << Dir(i) << "/state\"/>\n"
        << "</service>\n</safe>\n";
    // The service: Debian's python3 (argv[0] renamed so <errd> finds this node's instance only).
    std::ofstream(m + "/bin/start_prim")
        << "#!/bin/bash\n"
        << "mkdir -p \"$SAFEVAR/www\" && echo \"$NODE_NAME\" > \"$SAFEVAR/www/node\"\n"
        << "(exec -a hmtestsvc-$NODE_NAME /usr/bin/python3 -m http.server 8080 --bind " << kVip
        << " --directory \"$SAFEVAR/www\" >/dev/null 2>&1 </dev/null) &\n"
        << "echo $! > \"$SAFEVAR/svc.pid\"\n"
        << "hamirror printi \"service started, pid $!\"\n";
    std::ofstream(m + "/bin/stop_prim")
        << "#!/bin/bash\n"
        << "f=\"$SAFEVAR/svc.pid\"; [ -f \"$f\" ] || exit 0\n"
        << "pid=$(cat \"$f\"); sig=TERM; [ \"$1\" = force ] && sig=KILL\n"
        << "kill -$sig \"$pid\" 2>/dev/null\n"
        // Gone or a zombie (its orphan parent may not reap it at once): either way it stopped serving.
        << "for i in $(seq 100); do st=$(awk '{print $3}' /proc/$pid/stat 2>/dev/null); "
        << "{ [ -z \"$st\" ] || [ \"$st\" = Z ]; } && break; sleep 0.05; done\n"
        << "rm -f \"$f\"; echo \"service $pid stopped\"\n";
    for (const char* s : {"start_prim", "stop_prim"}) chmod((m + "/bin/" + s).c_str(), 0755);
  }

  NetLab lab_;
  std::string base_;
  pid_t pids_[3] = {-1, -1, -1};
  int fs_pids_[3] = {-1, -1, -1};
};

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
        return c.State(2, true) == "SECOND (Ready)" &&
               c.Cli(2, "state -v").output.find("peer's up to date") != std::string::npos;
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

  // Graceful daemon exit stops the module: the VIP is released.
  CHECK(c.StopDaemon(1));
  CHECK_FALSE(c.HoldsVip(1));
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

  // Swap back so that n1 serves again (once n2 has heard that n1 is ready and up to date).
  REQUIRE(Cluster::WaitFor(
      [&] {
        return c.State(2, true) == "SECOND (Ready)" &&
               c.Cli(2, "state -v").output.find("peer's up to date") != std::string::npos;
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
  // The configuration's directio reaches hamirror-fs's command line.
  for (int i = 1; i <= 2; ++i) {
    std::ifstream in("/proc/" + std::to_string(c.FsPid(i)) + "/cmdline");
    std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(cmd.find(std::string("--direct-io\0all", 15)) != std::string::npos);
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
