#include "tests/manager/daemon/cluster_lab.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <thread>

namespace hamirror::test {

using namespace std::chrono_literals;

std::string FsBin() {
  if (const char* e = getenv("HAMIRROR_FS_BIN"); e && *e) return e;
#ifdef HAMIRROR_FS_BIN
  return HAMIRROR_FS_BIN;
#else
  return "";
#endif
}

bool SkipWithoutFs() {
  if (!IsRoot()) {
    WARN("needs root (network namespaces); skipped");
    return true;
  }
  if (FsBin().empty() || access(FsBin().c_str(), X_OK) != 0) {
    WARN("no hamirror-fs binary (set HAMIRROR_FS_BIN); skipped");
    return true;
  }
  return false;
}

Cluster::Cluster(ModuleOptions mo) : lab_(NetLab::Options{.nodes = 2, .lans = 1}) {
  char tmpl[] = "/tmp/hamirror-daemon-test-XXXXXX";
  REQUIRE(mkdtemp(tmpl));
  base_ = tmpl;
  std::ofstream(base_ + "/cluster.xml") << "<cluster><lans><lan name=\"default\">"
                                        << "<node name=\"n1\" addr=\"" << NetLab::NodeAddr(1, 0) << "\"/>"
                                        << "<node name=\"n2\" addr=\"" << NetLab::NodeAddr(2, 0) << "\"/>"
                                        << "</lan></lans></cluster>\n";
  // Secure as in production: a CA, each node's certificate and the heartbeat key, by hamirror-certs.
  CommandResult certs = RunCommand(ShellQuote(HAMIRROR_CERTS_BIN) + " --out " + ShellQuote(Pki()) +
                                   " --cluster " + ShellQuote(base_ + "/cluster.xml"));
  INFO(certs.output);
  REQUIRE(certs.ok());
  for (int i = 1; i <= 2; ++i) WriteModule(i, mo);
  if (mo.rfs) {
    // The real directory, seen past the FUSE mount that will cover Dir(i)/data: a bind mount made now,
    // private so that the later FUSE mount does not propagate into it.
    for (int i = 1; i <= 2; ++i) {
      std::filesystem::create_directories(Under(i));
      CommandResult r = RunCommand("mount --bind " + ShellQuote(Dir(i) + "/data") + " " +
                                   ShellQuote(Under(i)) + " && mount --make-private " + ShellQuote(Under(i)));
      INFO(r.output);
      REQUIRE(r.ok());
      under_[i] = true;
    }
  }
}

Cluster::~Cluster() {
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
  for (int i = 1; i <= 2; ++i)
    if (under_[i]) umount2(Under(i).c_str(), MNT_DETACH);
  if (const char* keep = getenv("HAMIRROR_LAB_KEEP"); keep && *keep == '1') {
    fprintf(stderr, "HAMIRROR_LAB_KEEP=1: lab files kept in %s\n", base_.c_str());
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(base_, ec);
}

void Cluster::StartDaemon(int i) {
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

void Cluster::KillDaemon(int i) {
  REQUIRE(lab_.node(i).Kill(pids_[i], SIGKILL, 5000ms));
  pids_[i] = -1;
}

bool Cluster::StopDaemon(int i) {
  bool ok = lab_.node(i).Kill(pids_[i], SIGTERM, 30000ms);
  if (ok) pids_[i] = -1;
  return ok;
}

int Cluster::ServicePid(int i) const {
  std::ifstream in(Dir(i) + "/state/svc.pid");
  int pid = 0;
  in >> pid;
  return pid;
}

void Cluster::KillService(int i) {
  int pid = ServicePid(i);
  if (pid > 0) kill(pid, SIGKILL);
}

int Cluster::FsPid(int i) {
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

void Cluster::StopFs(int i) {
  if (fs_pids_[i] <= 0) return;
  kill(fs_pids_[i], SIGTERM);  // unmounts cleanly
  WaitFor([&] { return kill(fs_pids_[i], 0) != 0; }, 10s);
  kill(fs_pids_[i], SIGKILL);
  fs_pids_[i] = -1;
}

void Cluster::PowerOff(int i, bool keep_dead_mount) {
  const int fs = FsPid(i);
  KillService(i);
  if (fs > 0) kill(fs, SIGKILL);
  if (pids_[i] > 0) KillDaemon(i);
  // hamirror-fs is not our child (double fork): wait until it is gone (reaped by init).
  if (fs > 0) REQUIRE(WaitFor([&] { return kill(fs, 0) != 0; }, 10s));
  fs_pids_[i] = -1;
  if (!keep_dead_mount) umount2((Dir(i) + "/data").c_str(), MNT_DETACH);
}

CommandResult Cluster::InFsMounts(int i, const std::string& cmd) {
  return RunCommand("nsenter -t " + std::to_string(FsPid(i)) + " -m sh -c " + ShellQuote(cmd) + " 2>&1");
}

CommandResult Cluster::Cli(int i, const std::string& args) const {
  return RunCommand(std::string(HAMIRROR_CLI_BIN) + " --socket " + ShellQuote(Sock(i)) + " " + args +
                    " 2>&1");
}

std::string Cluster::StateField(int i, const std::string& object, const std::string& field) const {
  const std::string j = Cli(i, "state -v --json").output;
  const size_t begin = j.find("\n  \"" + object + "\": {");
  const size_t end = j.find("\n  }", begin);
  if (begin == std::string::npos || end == std::string::npos) return "";
  size_t p = j.find("\"" + field + "\": ", begin);
  if (p == std::string::npos || p > end) return "";
  p += field.size() + 4;
  if (j[p] == '"') return j.substr(p + 1, j.find('"', p + 1) - p - 1);
  return j.substr(p, j.find_first_of(",\n", p) - p);
}

std::string Cluster::State(int i, bool peer) const {
  CommandResult r = Cli(i, "state");
  if (r.status != 0) return "unreachable";
  const std::string tag = (peer ? "peer   n" + std::to_string(3 - i) : "local  n" + std::to_string(i)) + ": ";
  size_t p = r.output.find(tag);
  if (p == std::string::npos) return "?";
  size_t e = r.output.find_first_of("\n", p);
  std::string s = r.output.substr(p + tag.size(), e - p - tag.size());
  size_t cut = s.find(")");
  return cut == std::string::npos ? s : s.substr(0, cut + 1);
}

bool Cluster::WaitState(int i, const std::string& want, std::chrono::milliseconds timeout) const {
  bool ok = WaitFor([&] { return State(i) == want; }, timeout);
  if (!ok) UNSCOPED_INFO("n" << i << " is " << State(i) << ", wanted " << want << "\n" << Log(i));
  return ok;
}

std::string Cluster::Fetch() {
  CommandResult r =
      lab_.client().Exec(std::string("timeout 1 bash -c 'exec 3<>/dev/tcp/") + kVip +
                         "/8080 && printf \"GET /node HTTP/1.0\\r\\n\\r\\n\" >&3 && cat <&3' 2>/dev/null");
  size_t p = r.output.find("\r\n\r\n");
  if (p == std::string::npos) return "";
  std::string body = r.output.substr(p + 4);
  while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) body.pop_back();
  return body;
}

bool Cluster::HoldsVip(int i) {
  return lab_.node(i).Exec(std::string("ip -o addr show | grep -q ' ") + kVip + "/'").status == 0;
}

std::string Cluster::Log(int i) const {
  CommandResult r = Cli(i, "log -n 30");
  return "--- n" + std::to_string(i) + " log:\n" + r.output;
}

bool Cluster::WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (int i = 0; i < 100000; ++i) {
    if (cond()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

void Cluster::FirstStart() {
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

void Cluster::WriteModule(int i, const ModuleOptions& mo) {
  const std::string n = "n" + std::to_string(i);
  const std::string m = Dir(i) + "/hmtest";
  std::filesystem::create_directories(m + "/conf");
  std::filesystem::create_directories(m + "/bin");
  std::filesystem::create_directories(Dir(i) + "/state");
  std::filesystem::create_directories(Dir(i) + "/data");
  const std::string zone =
      *mo.ruzone_blocksize ? std::string(" ruzone_blocksize=\"") + mo.ruzone_blocksize + "\"" : "";
  std::ofstream(m + "/conf/userconfig.xml")
      << "<!DOCTYPE safe>\n<safe>\n"
      << "<service mode=\"mirror\" defaultprim=\"alone\" maxloop=\"" << mo.maxloop
      << "\" loop_interval=\"24\" failover=\"on\" boot=\"" << (mo.boot ? "on" : "off") << "\">\n"
      << "  <heart pulse=\"300\" timeout=\"" << mo.heart_timeout_ms << "\" keyfile=\"" << Pki()
      << "/heartbeat.key\"><heartbeat name=\"default\" ident=\"flow\"/></heart>\n"
      << "  <vip><interface_list><interface check=\"on\" arpreroute=\"on\"><real_interface>\n"
      << "    <virtual_addr addr=\"" << kVip << "\" where=\"one_side_alias\"/>\n"
      << "  </real_interface></interface></interface_list></vip>\n"
      << "  <errd polltimer=\"1\"><proc name=\"" << SvcName(i) << "\" atleast=\"1\" action=\""
      << mo.errd_action << "\" class=\"prim\"/></errd>\n"
      << (mo.tcp_check
              ? std::string("  <check><tcp ident=\"svc\" when=\"prim\" action=\"restart\"><to addr=\"") +
                    kVip + "\" port=\"8080\" interval=\"1\" timeout=\"1\"/></tcp></check>\n"
              : "")
      << (mo.rfs ? "  <rfs async=\"none\" sendtimeout=\"7\"" + zone +
                       (mo.keepmounted ? " keepmounted=\"on\"" : "") + "><replicated dir=\"" + Dir(i) +
                       "/data\" mode=\"read_only\" directio=\"" + mo.directio + "\"/></rfs>\n"
                 : "")
      << (mo.witness
              ? "  <splitbrain ident=\"witness\" exec=\"ping\" arg=\"" + NetLab::ClientAddr() + "\"/>\n"
              : "")
      << "  <user nicestoptimeout=\"10\" forcestoptimeout=\"10\" logging=\"userlog\">"
      << "<var name=\"NODE_NAME\" value=\"" << n << "\"/></user>\n"
      << "  <hamirror statedir=\"" << Dir(i) << "/state\" tlsdir=\"" << Pki() << "/" << n << "\"/>\n"
      << "</service>\n</safe>\n";
  // The service: Debian's python3 (argv[0] renamed to SvcName(i) so <errd> finds this node's instance only).
  std::ofstream(m + "/bin/start_prim")
      << "#!/bin/bash\n"
      << "mkdir -p \"$SAFEVAR/www\" && echo \"$NODE_NAME\" > \"$SAFEVAR/www/node\"\n"
      << "(exec -a " << SvcName(i) << " /usr/bin/python3 -m http.server 8080 --bind " << kVip
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

}  // namespace hamirror::test
