// `hamirror state -lq` without -m on a running two-node module with a mounted replicated directory
// (root only, label "netns"; the lab is cluster_lab.h). The run directory of node i is Dir(i): its
// admin socket and the control socket of its hamirror-fs. Before the control sockets moved into fs/,
// discovery saw two sockets, said "several modules are running", and `state -lq` answered 0 (STOP)
// on the PRIM node.
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <string>

#include "tests/manager/daemon/cluster_lab.h"
#include "tests/support/netns.h"

using namespace hamirror::test;
using namespace std::chrono_literals;

namespace {

// `hamirror state -lq` on node i with nothing naming the module: discovery in Dir(i) only.
CommandResult QuietState(Cluster& c, int i) {
  return RunCommand("env -u HAMIRROR_SOCKET -u SAFEMODULE HAMIRROR_RUN_DIR=" + ShellQuote(c.Dir(i)) + " " +
                    HAMIRROR_CLI_BIN + " state -lq 2>&1");
}

}  // namespace

TEST_CASE("daemon: state -lq without -m tells PRIM and SECOND with the data directory mounted",
          "[daemon][netns][discovery]") {
  if (!IsRoot()) {
    WARN("needs root (network namespaces); skipped");
    return;
  }
  if (FsBin().empty()) {
    WARN("no hamirror-fs binary (set HAMIRROR_FS_BIN); skipped");
    return;
  }
  Cluster c({.rfs = true});
  c.FirstStart();
  for (int i = 1; i <= 2; ++i) {
    INFO("n" << i);
    REQUIRE(c.FsPid(i) > 0);  // the directory is mounted, its control socket listens
    struct stat st;
    CHECK((stat((c.Dir(i) + "/fs/data.sock").c_str(), &st) == 0 && S_ISSOCK(st.st_mode)));
  }
  CommandResult prim = QuietState(c, 1);
  INFO(prim.output);
  CHECK(prim.status == 3);
  CommandResult second = QuietState(c, 2);
  INFO(second.output);
  CHECK(second.status == 4);

  // The daemon gone (SIGKILL: its socket stays, nobody answers), the mount still there: unknown, not
  // STOP.
  c.KillDaemon(2);
  CommandResult dead = QuietState(c, 2);
  INFO(dead.output);
  CHECK(dead.status == 5);
  CHECK(dead.output.find("state unknown") != std::string::npos);
}
