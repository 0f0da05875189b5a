#include "manager/process/subprocess.h"

#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>

#include "manager/process/restart_budget.h"

using namespace hamirror::process;
using namespace std::chrono_literals;

TEST_CASE("subprocess: output lines, exit code and environment", "[process]") {
  std::vector<std::string> lines;
  ProcessSpec spec;
  spec.argv = {"/bin/sh", "-c", "echo one; echo two >&2; printf partial; exit 3"};
  spec.env = {"PATH=/usr/bin:/bin", "FOO=bar"};
  spec.on_line = [&](std::string_view l) { lines.emplace_back(l); };
  ProcessResult r = RunProcess(spec);
  CHECK(r.started);
  CHECK(r.exit_code == 3);
  CHECK_FALSE(r.ok());
  REQUIRE(lines.size() == 3);
  CHECK(lines[0] == "one");
  CHECK(lines[1] == "two");
  CHECK(lines[2] == "partial");

  lines.clear();
  spec.argv = {"/bin/sh", "-c", "echo $FOO"};
  CHECK(RunProcess(spec).ok());
  CHECK(lines == std::vector<std::string>{"bar"});
}

TEST_CASE("subprocess: the deadline kills the whole process group", "[process]") {
  ProcessSpec spec;
  char pidfile[] = "/tmp/hamirror-sub-XXXXXX";
  int fd = mkstemp(pidfile);
  close(fd);
  // The grandchild records its pid; it must die with the group.
  spec.argv = {"/bin/sh", "-c", std::string("sleep 30 & echo $! > ") + pidfile + "; wait"};
  spec.timeout = 300ms;
  auto t0 = std::chrono::steady_clock::now();
  ProcessResult r = RunProcess(spec);
  auto took = std::chrono::steady_clock::now() - t0;
  CHECK(r.timed_out);
  CHECK(took < 3s);
  FILE* f = fopen(pidfile, "r");
  REQUIRE(f);
  int pid = 0;
  REQUIRE(fscanf(f, "%d", &pid) == 1);
  fclose(f);
  unlink(pidfile);
  // Killed by SIGKILL; reaped by init or pending as zombie of the dead shell: either way not running.
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE* s = fopen(path, "r");
    if (!s) {
      gone = true;
      break;
    }
    char buf[512] = {};
    size_t n = fread(buf, 1, sizeof buf - 1, s);
    fclose(s);
    std::string st(buf, n);
    size_t rp = st.rfind(')');
    if (rp != std::string::npos && rp + 2 < st.size() && (st[rp + 2] == 'Z' || st[rp + 2] == 'X'))
      gone = true;
    if (!gone) usleep(20000);
  }
  CHECK(gone);
}

TEST_CASE("subprocess: a background daemon holding the pipe does not block completion", "[process]") {
  ProcessSpec spec;
  char pidfile[] = "/tmp/hamirror-sub-XXXXXX";
  int fd = mkstemp(pidfile);
  close(fd);
  spec.argv = {"/bin/sh", "-c", std::string("(setsid sleep 30 & echo $! > ") + pidfile + "); echo started"};
  spec.timeout = 5s;
  auto t0 = std::chrono::steady_clock::now();
  ProcessResult r = RunProcess(spec);
  CHECK(r.ok());
  CHECK(std::chrono::steady_clock::now() - t0 < 2s);
  FILE* f = fopen(pidfile, "r");
  REQUIRE(f);
  int pid = 0;
  if (fscanf(f, "%d", &pid) == 1 && pid > 0) kill(pid, SIGKILL);
  fclose(f);
  unlink(pidfile);
}

TEST_CASE("subprocess: a missing program is a failure with exit 127", "[process]") {
  ProcessSpec spec;
  spec.argv = {"/nonexistent/prog"};
  ProcessResult r = RunProcess(spec);
  CHECK_FALSE(r.ok());
  CHECK(r.exit_code == 127);
}

TEST_CASE("restart budget: maxloop within loop_interval", "[process]") {
  RestartBudget b(3, std::chrono::hours(1));
  auto t = RestartBudget::Clock::time_point{} + std::chrono::hours(100);
  CHECK(b.Consume(t));
  CHECK(b.Consume(t + 1s));
  CHECK(b.Consume(t + 2s));
  CHECK_FALSE(b.Consume(t + 3s));
  CHECK(b.used(t + 3s) == 3);
  // An hour after the first, one unit is free again.
  CHECK(b.Consume(t + std::chrono::hours(1)));
}
