// Seeded random runs of the simulator (sim.h). Each TEST_CASE runs a range of seeds in one fault
// mode; on the first violation it re-runs that seed with tracing and prints the seed and the trace.
//
// Replay one seed:      HAMIRROR_SIM_SEED=1234 HAMIRROR_SIM_MODE=witness ./manager_core_tests "[replay]"
// More runs per mode:   HAMIRROR_SIM_RUNS=100000 ./manager_core_tests "[sim]"
#include "tests/manager/core/sim.h"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <string>

using namespace hamirror::manager::core;
using namespace hamirror::manager::core::sim;

namespace {

uint64_t EnvU64(const char* name, uint64_t dflt) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : dflt;
}

// Fault modes; each gets its own seed range so that modes never share a seed.
SimOptions Mode(const std::string& mode, uint64_t seed) {
  SimOptions o;
  o.seed = seed;
  if (mode == "witness") {
    o.witness = true;
    o.safe_witness = true;
  } else if (mode == "nowitness") {
    o.witness = false;
  } else if (mode == "unsafe-witness") {  // witness reachable by both during a partition: no dual check
    o.witness = true;
    o.safe_witness = false;
  } else if (mode == "failover-off") {  // off in the configuration, switched on and off at runtime
    o.witness = seed % 2 == 0;
    o.failover = false;
    o.toggle_failover = true;
  } else if (mode == "defaultprim") {
    o.witness = seed % 2 == 0;
    o.defaultprim = DefaultPrimKind::kNode;
    o.defaultprim_node.assign(1, seed % 3 == 0 ? 'A' : 'B');
  } else if (mode == "lastprim") {
    o.witness = seed % 2 == 0;
    o.defaultprim = DefaultPrimKind::kLastPrim;
  } else if (mode == "auto") {  // no operator commands: the pair must recover by itself
    o.witness = seed % 2 == 0;
    o.commands = false;
  } else if (mode == "daemon-restarts") {  // hamirrord restarted (adoption) among every other fault
    o.witness = seed % 2 == 0;
    o.daemon_restarts = true;
  } else if (mode == "stable") {  // no network faults: dual serving is checked even without witness
    o.witness = seed % 2 == 0;
    o.net_faults = false;
  }
  return o;
}

std::string RunOne(const SimOptions& o, std::vector<std::string>* trace) {
  Sim sim(o);
  std::string v = sim.RunRandom();
  if (trace) *trace = sim.trace();
  return v;
}

void RunMode(const std::string& mode, uint64_t first_seed, uint64_t default_runs) {
  uint64_t runs = EnvU64("HAMIRROR_SIM_RUNS", default_runs);
  for (uint64_t k = 0; k < runs; ++k) {
    uint64_t seed = first_seed + k;
    SimOptions o = Mode(mode, seed);
    std::string v = RunOne(o, nullptr);
    if (!v.empty()) {
      o.trace = true;
      std::vector<std::string> trace;
      std::string again = RunOne(o, &trace);
      std::string out;
      size_t from = trace.size() > 400 ? trace.size() - 400 : 0;
      for (size_t i = from; i < trace.size(); ++i) out += trace[i] + "\n";
      UNSCOPED_INFO("trace (last 400 lines):\n" << out);
      UNSCOPED_INFO("replay: HAMIRROR_SIM_SEED=" << seed << " HAMIRROR_SIM_MODE=" << mode
                                                 << " manager_core_tests \"[replay]\"");
      FAIL("seed " << seed << " mode " << mode << ": " << v << (again == v ? "" : " (replay differs!)"));
    }
  }
  SUCCEED(runs << " runs");
}

}  // namespace

// 8 modes; the defaults add up to 11,500 runs per CI run.
TEST_CASE("sim: witness configured, witness on one side of every partition", "[sim]") {
  RunMode("witness", 1000000, 3000);
}
TEST_CASE("sim: no witness", "[sim]") { RunMode("nowitness", 2000000, 2000); }
TEST_CASE("sim: witness reachable by both during partitions", "[sim]") {
  RunMode("unsafe-witness", 3000000, 1000);
}
TEST_CASE("sim: failover off", "[sim]") { RunMode("failover-off", 4000000, 1000); }
TEST_CASE("sim: defaultprim names a node", "[sim]") { RunMode("defaultprim", 5000000, 1500); }
TEST_CASE("sim: defaultprim lastprim", "[sim]") { RunMode("lastprim", 6000000, 1000); }
TEST_CASE("sim: no operator commands, the pair recovers by itself", "[sim]") {
  RunMode("auto", 8000000, 1000);
}
TEST_CASE("sim: stable network, crashes, commands and script failures", "[sim]") {
  RunMode("stable", 7000000, 1000);
}

TEST_CASE("sim: daemon restarts that leave the module running, among the other faults", "[sim]") {
  RunMode("daemon-restarts", 9000000, 1500);
}

TEST_CASE("sim: replay one seed (HAMIRROR_SIM_SEED, HAMIRROR_SIM_MODE)", "[replay][.]") {
  const char* mode = std::getenv("HAMIRROR_SIM_MODE");
  SimOptions o = Mode(mode ? mode : "witness", EnvU64("HAMIRROR_SIM_SEED", 1));
  o.trace = true;
  std::vector<std::string> trace;
  std::string v = RunOne(o, &trace);
  for (const auto& line : trace) std::printf("%s\n", line.c_str());
  std::printf("result: %s\n", v.empty() ? "ok" : v.c_str());
  CHECK(v.empty());
}

TEST_CASE("sim: the same seed gives the same run", "[sim]") {
  SimOptions o = Mode("witness", 42);
  o.trace = true;
  std::vector<std::string> t1, t2;
  RunOne(o, &t1);
  RunOne(o, &t2);
  CHECK(t1.size() > 100);
  CHECK(t1 == t2);
}
