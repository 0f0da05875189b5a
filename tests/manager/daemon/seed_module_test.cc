// The seed's stock SafeKit MySQL module (Linux userconfig.xml and its start_prim/stop_prim scripts,
// unchanged; tests/manager/config/data) under a real hamirrord (root only, label "netns"): it passes
// `confcheck`, and the scripts' `$SAFE/safekit printw ...` lines reach the module log. Before `safekit`
// existed the log said "safekit: not found" instead.
//
// Only what this host must differ in is rewritten in the copy of userconfig.xml: the VIP (the client
// of the lab has the seed's 198.18.0.100), the replicated directory (a scratch one, not
// /var/lib/mysql) and a scratch state directory. The scripts' `service mysqld start` fails here (no such
// service): they log that and go on, which is the host's business.
//
// Isolation: the scripts kill every process whose name contains "mysql" (`ps -e ... | grep mysql |
// ... kill`), so hamirrord runs in its own PID namespace (and mount namespace, with its own /proc)
// inside node 1's network namespace: they see only its processes. `unshare --kill-child` ties the
// namespace to the unshare process; killing that (by PID) ends hamirrord, its hamirror-fs and the
// FUSE mount, which exists only in that mount namespace.
#include <signal.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "tests/manager/daemon/cluster_lab.h"
#include "tests/support/netns.h"

using namespace hamirror::test;
using namespace std::chrono_literals;

namespace {

const std::string kData = HAMIRROR_CONFIG_TEST_DATA;
constexpr const char* kSeedVip = "198.18.0.100";
constexpr const char* kLabVip = "198.18.0.60";

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void Replace(std::string* s, const std::string& from, const std::string& to) {
  const size_t p = s->find(from);
  REQUIRE(p != std::string::npos);
  s->replace(p, from.size(), to);
}

class SeedModule {
 public:
  SeedModule() : lab_(NetLab::Options{.nodes = 1, .lans = 1}) {
    char tmpl[] = "/tmp/hamirror-seed-XXXXXX";
    REQUIRE(mkdtemp(tmpl));
    base_ = tmpl;
    std::filesystem::create_directories(module_dir() + "/conf");
    std::filesystem::create_directories(module_dir() + "/bin");
    std::filesystem::create_directories(base_ + "/mysql-data");
    std::string xml = ReadAll(kData + "/seed_linux_userconfig.xml");
    Replace(&xml, kSeedVip, kLabVip);
    Replace(&xml, "/var/lib/mysql\"", base_ + "/mysql-data\"");
    // Secure as in production: certificates and heartbeat key from hamirror-certs, in scratch paths.
    const CommandResult certs =
        RunCommand(ShellQuote(HAMIRROR_CERTS_BIN) + " --out " + ShellQuote(base_ + "/pki") + " n1 n2 2>&1");
    INFO(certs.output);
    REQUIRE(certs.ok());
    Replace(&xml, "<heart ", "<heart keyfile=\"" + base_ + "/pki/heartbeat.key\" ");
    Replace(&xml, "</service>",
            "  <hamirror statedir=\"" + base_ + "/state\" tlsdir=\"" + base_ + "/pki/n1\"/>\n</service>");
    std::ofstream(module_dir() + "/conf/userconfig.xml") << xml;
    for (const char* script : {"start_prim", "stop_prim"}) {
      const std::string to = module_dir() + "/bin/" + script;
      std::filesystem::copy_file(kData + "/seed_scripts/" + script, to);
      chmod(to.c_str(), 0755);
    }
    std::ofstream(cluster()) << "<cluster><lans><lan name=\"default\">"
                             << "<node name=\"n1\" addr=\"" << NetLab::NodeAddr(1, 0) << "\"/>"
                             << "<node name=\"n2\" addr=\"" << NetLab::NodeAddr(2, 0) << "\"/>"
                             << "</lan></lans></cluster>\n";
  }
  ~SeedModule() {
    if (pid_ > 0) lab_.node(1).Kill(pid_, SIGKILL, 10000ms);
    std::error_code ec;
    std::filesystem::remove_all(base_, ec);
  }

  std::string module_dir() const { return base_ + "/mysql"; }
  std::string cluster() const { return base_ + "/cluster.xml"; }
  std::string socket() const { return base_ + "/run/mysql.sock"; }
  std::string log() const { return base_ + "/mysql.log"; }

  void StartDaemon() {
    std::vector<std::string> argv = {"unshare",  "--pid",      "--mount-proc", "--kill-child", HAMIRRORD_BIN,
                                     "--module", module_dir(), "--cluster",    cluster(),      "--node",
                                     "n1",       "--socket",   socket(),       "--log",        log()};
    if (!FsBin().empty()) argv.insert(argv.end(), {"--fs-bin", FsBin()});
    pid_ = lab_.node(1).Spawn(argv, base_ + "/stderr.log");
    REQUIRE(pid_ > 0);
    const bool up = Cluster::WaitFor([&] { return Cli("state").status == 0; }, 10s);
    INFO(ReadAll(base_ + "/stderr.log"));
    REQUIRE(up);
  }

  CommandResult Cli(const std::string& args) const {
    return RunCommand(std::string(HAMIRROR_CLI_BIN) + " --socket " + ShellQuote(socket()) + " " + args +
                      " 2>&1");
  }

 private:
  NetLab lab_;
  std::string base_;
  pid_t pid_ = -1;
};

bool Has(const std::string& s, const std::string& what) { return s.find(what) != std::string::npos; }

}  // namespace

TEST_CASE("daemon: the seed's SafeKit MySQL module runs, its safekit lines reach the module log",
          "[daemon][netns][seed]") {
  if (!IsRoot()) {
    WARN("needs root (network namespaces); skipped");
    return;
  }
  SeedModule m;
  CommandResult conf =
      m.Cli("confcheck " + ShellQuote(m.module_dir()) + " --cluster " + ShellQuote(m.cluster()));
  INFO(conf.output);
  REQUIRE(conf.status == 0);

  m.StartDaemon();
  REQUIRE(m.Cli("start").status == 0);
  CommandResult prim = m.Cli("prim");  // the peer never comes: this node's data is the reference
  INFO(prim.output);
  REQUIRE(prim.status == 0);
  // ALONE once the peer has been silent for the seed's whole <heart timeout> (30 s) since the start;
  // then start_prim: clean_mysql, then start_MySQL, each announcing itself through $SAFE/safekit printw.
  const bool started = Cluster::WaitFor(
      [&] {
        const std::string log = ReadAll(m.log());
        return Has(log, " W Starting MySQL Server") && Has(log, "MySQL server start failed");
      },
      60s);
  const std::string log = ReadAll(m.log());
  INFO(log);
  CHECK(started);
  CHECK(Has(log, " W Cleaning MySQL processes"));
  CHECK_FALSE(Has(log, "not found"));
  CHECK(m.Cli("state -lq").status == 2);  // ALONE

  // stop_prim's lines too, on a stop.
  REQUIRE(m.Cli("stop").status == 0);
  const bool stopped =
      Cluster::WaitFor([&] { return Has(ReadAll(m.log()), " W Stopping MySQL server"); }, 20s);
  INFO(ReadAll(m.log()));
  CHECK(stopped);
}
