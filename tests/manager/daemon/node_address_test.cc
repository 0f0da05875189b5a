// hamirrord must run on the node it is told it is: in node 1's namespace (198.18.0.11 only), a daemon
// started as n2 (198.18.0.12 in cluster.xml) is refused before it starts anything; as n1 it starts.
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>

#include "tests/manager/daemon/cluster_lab.h"
#include "tests/support/netns.h"

using namespace hamirror::test;
using namespace std::chrono_literals;

TEST_CASE("hamirrord refuses a --node whose addresses are not on this host (exit 78)", "[netns][daemon]") {
  if (!IsRoot()) {
    WARN("needs root (network namespaces); skipped");
    return;
  }
  Cluster c({});
  // n2's own module, run in n1's namespace: only the --node is wrong.
  const std::string sock = c.Dir(1) + "/wrong.sock";
  CommandResult r =
      c.lab().node(1).Exec(ShellQuote(HAMIRRORD_BIN) + " --module " + ShellQuote(c.Dir(2) + "/hmtest") +
                           " --cluster " + ShellQuote(c.ClusterFile()) + " --node n2 --socket " +
                           ShellQuote(sock) + " --log " + ShellQuote(c.Dir(1) + "/wrong.log") + " 2>&1");
  INFO(r.output);
  CHECK(r.status == 78);
  CHECK(r.output.find("hamirrord: node 'n2' is not on this host: none of its addresses in " +
                      c.ClusterFile() + " (" + NetLab::NodeAddr(2, 0) +
                      " (lan default)) is configured here") != std::string::npos);
  CHECK(r.output.find("not starting") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(sock));
  CHECK_FALSE(std::filesystem::exists(c.Dir(1) + "/wrong.log"));  // refused before opening its log

  // The right node in the same namespace starts and answers.
  c.StartDaemon(1);
  CHECK(c.State(1).starts_with("STOP"));
}
