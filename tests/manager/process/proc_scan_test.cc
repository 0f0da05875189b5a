#include "manager/process/proc_scan.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

using namespace hamirror::process;

TEST_CASE("proc scan: counts by comm, argv[0] basename and regexes", "[process]") {
  // A process whose comm and argv[0] differ: exec `sleep` under a custom argv[0].
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    execl("/bin/sleep", "/opt/x/hmtest-watched", "30", nullptr);
    _exit(127);
  }
  auto procs = ScanProcesses();
  bool found = false;
  for (int i = 0; i < 100 && !found; ++i) {  // exec may not have happened yet
    procs = ScanProcesses();
    for (const auto& p : procs) found |= p.pid == pid && p.argv0 == "hmtest-watched";
    if (!found) usleep(10000);
  }
  REQUIRE(found);
  CHECK(CountMatching(procs, ProcMatcher("hmtest-watched")) == 1);
  CHECK(CountMatching(procs, ProcMatcher("", "hmtest-w.*")) == 1);
  CHECK(CountMatching(procs, ProcMatcher("hmtest-watched", "", " 30$")) == 1);
  CHECK(CountMatching(procs, ProcMatcher("hmtest-watched", "", " 31$")) == 0);
  CHECK(CountMatching(procs, ProcMatcher("", "([")) == 0);  // invalid regex matches nothing

  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  CHECK(CountMatching(ScanProcesses(), ProcMatcher("hmtest-watched")) == 0);
}
