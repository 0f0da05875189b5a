// End to end: the `hamirror confcheck MODULE_DIR [--cluster FILE]` verb, run as a child process over
// scratch module directories. No daemon is involved; what matters is the exit code and that every
// problem reaches the operator as "file:line: reason".
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <vector>

#include "tests/manager/config/temp_module.h"

namespace {

using hamirror::config::testing::ReadFile;
using hamirror::config::testing::TempModule;

const std::string kDataDir = HAMIRROR_CONFIG_TEST_DATA;

struct Result {
  int rc;           // exit status, -1 if killed or timed out
  std::string out;  // stdout and stderr interleaved
};

// Runs the hamirror binary with `args` (no shell: paths go through argv untouched) and collects
// stdout+stderr. A hung child is killed after 30 s so the test fails instead of hanging.
Result RunHamirror(const std::vector<std::string>& args) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  std::vector<char*> argv;
  std::string bin = HAMIRROR_CLI_BIN;
  argv.push_back(bin.data());
  std::vector<std::string> copy = args;
  for (std::string& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);

  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    ::dup2(fds[1], STDERR_FILENO);
    ::close(fds[0]);
    ::close(fds[1]);
    ::execv(argv[0], argv.data());
    _exit(127);
  }
  ::close(fds[1]);

  std::string out;
  bool timed_out = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;  // timeout/EINTR: re-check
    char buf[4096];
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n <= 0) break;  // EOF: the child closed its output
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fds[0]);
  if (timed_out) ::kill(pid, SIGKILL);
  int st = 0;
  REQUIRE(::waitpid(pid, &st, 0) == pid);
  if (timed_out) return {-1, out + "\n[timed out]"};
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

bool Has(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

// A module that loads cleanly against tests/manager/config/data/cluster.xml (lan "default").
constexpr const char* kValidUserconfig =
    "<safe><service mode=\"mirror\">\n"
    "<heart keyfile=\"@KEY@\"><heartbeat name=\"default\" ident=\"flow\"/></heart>\n"
    "<vip><interface_list><interface><real_interface><virtual_addr addr=\"198.18.0.100\"/>"
    "</real_interface></interface></interface_list></vip>\n"
    "<rfs><replicated dir=\"@DATA@\"/></rfs>\n"
    "<hamirror tlsdir=\"@TLS@\"/>\n"
    "</service></safe>\n";

// A valid module: the valid userconfig, executable scripts and the example cluster.xml.
void WriteValidModule(const TempModule& m) {
  m.WriteCluster(ReadFile(kDataDir + "/cluster.xml"));
  m.WriteScript("start_prim");
  m.WriteScript("stop_prim");
  m.WriteUserconfig(kValidUserconfig);
}

Result Confcheck(const TempModule& m) {
  return RunHamirror({"confcheck", m.module_dir(), "--cluster", m.cluster_file()});
}

}  // namespace

TEST_CASE("cli: confcheck accepts a valid module with exit 0", "[cli][confcheck]") {
  TempModule m;
  WriteValidModule(m);
  const Result r = Confcheck(m);
  INFO(r.out);
  CHECK(r.rc == 0);
  CHECK(Has(r.out, "configuration OK: module mysql"));
}

TEST_CASE("cli: confcheck reports malformed XML with file and line", "[cli][confcheck]") {
  TempModule m;
  WriteValidModule(m);
  m.WriteUserconfig(
      "<safe><service mode=\"mirror\">\n"      // 1
      "<heart><heartbeat name=\"default\">\n"  // 2
      "</heart>\n"                             // 3: closes <heartbeat> with the wrong tag
      "</service></safe>\n");
  const Result r = Confcheck(m);
  INFO(r.out);
  CHECK(r.rc != 0);
  // pugixml stops at the stray </heart>: the operator is pointed at line 3 with the parser's reason.
  CHECK(Has(r.out, m.userconfig() + ":3: malformed XML: "));
  CHECK(Has(r.out, "configuration rejected"));
}

TEST_CASE("cli: confcheck prints every problem, each with its line", "[cli][confcheck]") {
  TempModule m;
  WriteValidModule(m);
  m.WriteUserconfig(
      "<safe><service mode=\"mirror\">\n"                                                // 1
      "<heart keyfile=\"@KEY@\"><heartbeat name=\"default\" ident=\"flow\"/></heart>\n"  // 2
      "<vip><interface_list><interface><real_interface>\n"                               // 3
      "<virtual_addr addr=\"not-an-address\"/>\n"                                        // 4
      "</real_interface></interface></interface_list></vip>\n"                           // 5
      "<rfs bogus=\"1\"><replicated dir=\"@DATA@\"/></rfs>\n"                            // 6
      "<hamirror tlsdir=\"@TLS@\"/>\n"                                                   // 7
      "</service></safe>\n");
  const Result r = Confcheck(m);
  INFO(r.out);
  CHECK(r.rc != 0);
  const std::string uc = m.userconfig();
  CHECK(Has(r.out, uc + ":4: invalid value 'not-an-address' for attribute 'addr'"));
  CHECK(Has(r.out, uc + ":6: unknown attribute 'bogus' on <rfs>"));
  CHECK(Has(r.out, "2 error(s)"));
}

TEST_CASE("cli: confcheck rejects a script that is not executable", "[cli][confcheck]") {
  TempModule m;
  WriteValidModule(m);
  m.WriteScript("stop_prim", 0644);
  const Result r = Confcheck(m);
  INFO(r.out);
  CHECK(r.rc != 0);
  CHECK(Has(r.out, m.module_dir() + "/bin/stop_prim: script is not executable"));
}

TEST_CASE("cli: confcheck rejects a bad or missing cluster file", "[cli][confcheck]") {
  TempModule m;
  WriteValidModule(m);

  SECTION("a lan missing a node") {
    m.WriteCluster(
        "<cluster>\n"
        "  <lans>\n"
        "    <lan name=\"default\">\n"
        "      <node name=\"node1\" addr=\"198.18.0.1\"/>\n"
        "    </lan>\n"
        "  </lans>\n"
        "</cluster>\n");
    const Result r = Confcheck(m);
    INFO(r.out);
    CHECK(r.rc != 0);
    CHECK(Has(r.out, m.cluster_file() + ":3: lan 'default' has 1 node(s): a mirror cluster has exactly 2"));
  }

  SECTION("a cluster file that does not exist") {
    const std::string missing = m.root() + "/no-such-cluster.xml";
    const Result r = RunHamirror({"confcheck", m.module_dir(), "--cluster", missing});
    INFO(r.out);
    CHECK(r.rc != 0);
    CHECK(Has(r.out, missing + ": cannot read file: No such file or directory"));
  }
}

// Secure by default (docs/operations.md, "Security"): what the replication link and the heartbeats
// need must be there, or be given up explicitly.

namespace {

// The valid module with `heart` and `rfs` attributes added, its TLS directory at @TLS@ (line 5).
std::string SecurityUserconfig(const std::string& heart_attrs, const std::string& rfs_attrs) {
  return "<safe><service mode=\"mirror\">\n"  // 1
         "<heart" +
         heart_attrs +
         "><heartbeat name=\"default\" ident=\"flow\"/></heart>\n"  // 2
         "<vip><interface_list><interface><real_interface><virtual_addr addr=\"198.18.0.100\"/>"
         "</real_interface></interface></interface_list></vip>\n"  // 3
         "<rfs" +
         rfs_attrs +
         "><replicated dir=\"@DATA@\"/></rfs>\n"  // 4
         "<hamirror tlsdir=\"@TLS@\"/>\n"         // 5
         "</service></safe>\n";
}

}  // namespace

TEST_CASE("cli: confcheck refuses a replication link without TLS files unless encryption is off",
          "[cli][confcheck][security]") {
  TempModule m;
  WriteValidModule(m);
  for (const char* f : {"ca.pem", "node.pem", "node.key"}) ::unlink((m.tls_dir() + "/" + f).c_str());

  m.WriteUserconfig(SecurityUserconfig(" keyfile=\"@KEY@\"", ""));
  Result r = Confcheck(m);
  INFO(r.out);
  CHECK(r.rc != 0);
  CHECK(Has(r.out, m.userconfig() +
                       ":5: replication link (TLS) not usable: missing ca.pem, node.pem, node.key in " +
                       m.tls_dir()));
  CHECK(Has(r.out, "hamirror-certs"));
  CHECK(Has(r.out, "encryption=\"off\""));
  CHECK(Has(r.out, "configuration rejected"));

  m.WriteUserconfig(SecurityUserconfig(" keyfile=\"@KEY@\"", " encryption=\"off\""));
  r = Confcheck(m);
  INFO(r.out);
  CHECK(r.rc == 0);
  CHECK(Has(r.out,
            m.userconfig() + ":4: warning: encryption=\"off\" on <rfs>: the replication link runs in clear"));
  CHECK(Has(r.out, "configuration OK: module mysql (1 warning(s))"));

  m.WriteUserconfig(SecurityUserconfig(" keyfile=\"@KEY@\"", " encryption=\"maybe\""));
  r = Confcheck(m);
  INFO(r.out);
  CHECK(r.rc != 0);
  CHECK(Has(r.out, m.userconfig() +
                       ":4: invalid value 'maybe' for attribute 'encryption' on <rfs>: expected on or off"));
}

TEST_CASE("cli: confcheck refuses a missing heartbeat key unless auth is derived",
          "[cli][confcheck][security]") {
  TempModule m;
  WriteValidModule(m);
  const std::string missing = m.root() + "/no-such.key";

  m.WriteUserconfig(SecurityUserconfig(" keyfile=\"" + missing + "\"", ""));
  Result r = Confcheck(m);
  INFO(r.out);
  CHECK(r.rc != 0);
  CHECK(Has(r.out, m.userconfig() + ":2: heartbeat key file " + missing + " does not exist"));
  CHECK(Has(r.out, "hamirror-certs"));
  CHECK(Has(r.out, "auth=\"derived\""));

  m.WriteUserconfig(SecurityUserconfig(" auth=\"derived\"", ""));
  r = Confcheck(m);
  INFO(r.out);
  CHECK(r.rc == 0);
  CHECK(
      Has(r.out, m.userconfig() + ":2: warning: auth=\"derived\" on <heart>: the heartbeat key is derived"));
  CHECK(Has(r.out, "configuration OK: module mysql (1 warning(s))"));

  // Too short to be a key: named with its path.
  hamirror::config::testing::WriteFile(m.key_file(), "short\n", 0600);
  m.WriteUserconfig(SecurityUserconfig(" keyfile=\"@KEY@\"", ""));
  r = Confcheck(m);
  INFO(r.out);
  CHECK(r.rc != 0);
  CHECK(Has(r.out, m.userconfig() + ":2: heartbeat key file not usable: " + m.key_file() +
                       ": heartbeat key must hold at least 16 bytes, has 5"));
}
