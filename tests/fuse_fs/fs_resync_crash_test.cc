// A crash of either node in the middle of a resync, at seeded random moments (docs/reintegration.md,
// "Interruption"): a primary over a/ holds a data set, the secondary's b/ is a stale copy of it (files
// that differ, files missing, extra files and directories); the pair starts with a capped resync rate so
// that the first (full) resync lasts about 1-2 s; at a random moment either hamirror-fs is SIGKILLed,
// restarted over the same directory with the same control socket (same state directory: its record),
// and relinked (`hamirror-fs ctl role primary --peer` when the secondary was the one killed). The next
// resync must then make the trees identical (CompareTrees through both mounts and of the directories
// underneath), `ctl verify --wait` must exit 0 with 0 differences, and the resync must resume by
// comparing: it never sends more than what differs, and not again what the first one got applied.
//
// HAMIRROR_RESYNC_CRASH_RUNS (default 20) runs; HAMIRROR_SEED replays a whole sequence (the seed and
// every run's draw are printed).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/fuse_fs/file_util.h"
#include "tests/fuse_fs/fs_fixture.h"
#include "tests/support/tree_compare.h"

using namespace hamirror::test;
using namespace std::chrono_literals;
using hamirror::proto::FsStatus;

namespace {

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * 1024;
constexpr uint64_t kBlock = 64 * kKiB;  // the resync's checksum granularity
constexpr uint64_t kRate = 16 * kMiB;   // --resync-rate of the first resync (and of the restarted primary)
constexpr uint64_t kBig = 8 * kMiB;     // 3 big files: 24 MiB

using Clock = std::chrono::steady_clock;

double Secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Every regular file below root (relative paths).
std::vector<std::string> Files(const std::string& root) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(root))
    if (e.is_regular_file()) out.push_back(std::filesystem::relative(e.path(), root).string());
  std::sort(out.begin(), out.end());
  return out;
}

// "differences": "N" in a `ctl` JSON print (protobuf JSON quotes uint64); -1 if absent.
long long JsonCount(const std::string& json, const std::string& field, size_t from = 0) {
  const size_t p = json.find("\"" + field + "\": ", from);
  if (p == std::string::npos) return -1;
  size_t v = p + field.size() + 4;
  if (v < json.size() && json[v] == '"') ++v;
  return strtoll(json.c_str() + v, nullptr, 10);
}

// A primary over a/, a secondary over b/, control sockets (and so the state directories: the records)
// in the run's temporary directory, one loopback port for the whole run. Directories and sockets stay
// the same across restarts.
class CrashPair {
 public:
  CrashPair() : a_(tmp_.Sub("a")), b_(tmp_.Sub("b")), port_(PickFreePort()) {
    mkdir(a_.c_str(), 0755);
    mkdir(b_.c_str(), 0755);
    under_a_ = open(a_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    under_b_ = open(b_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  }
  ~CrashPair() {
    primary.Kill();
    secondary.Kill();
    close(under_a_);
    close(under_b_);
  }
  hamirror::Status StartSecondary() {
    return secondary.Start(b_, tmp_.Sub("s.sock"), {"secondary", "--listen", Addr(), "--insecure"},
                           tmp_.Sub("secondary.log"));
  }
  hamirror::Status StartPrimary() {
    return primary.Start(a_, tmp_.Sub("p.sock"),
                         {"primary", "--peer", Addr(), "--insecure", "--send-timeout-ms", "1000",
                          "--resync-rate", std::to_string(kRate)},
                         tmp_.Sub("primary.log"));
  }
  // `hamirror-fs ctl --control <primary's socket> args...`: exit code, *out the output.
  int Ctl(const std::vector<std::string>& args, std::string* out) {
    std::vector<std::string> argv = {FsBinary(), "ctl", "--control", tmp_.Sub("p.sock")};
    argv.insert(argv.end(), args.begin(), args.end());
    int code = -1;
    if (!RunCommand(argv, 90s, &code, out).ok()) return -1;
    return code;
  }
  FsStatus Primary() {
    FsStatus st;
    (void)primary.GetStatus(&st);
    return st;
  }
  // Until the primary's resync with an id above after_id is done and the secondary saw it end well.
  bool WaitResyncDone(uint64_t after_id, std::chrono::milliseconds timeout, std::string* why) {
    FsStatus p, s;
    bool ok = WaitUntil(
        [&] {
          if (!primary.GetStatus(&p).ok() || p.resync().id() <= after_id || p.resync().phase() != "done")
            return false;
          return secondary.GetStatus(&s).ok() && s.resync_target().phase() == "done" &&
                 s.resync_target().id() == p.resync().id();
        },
        timeout);
    *why = "primary: " + p.ShortDebugString() + "\nsecondary: " + s.ShortDebugString() + "\n" + Logs();
    return ok;
  }
  std::string CompareUnder() {
    return CompareTrees("/proc/self/fd/" + std::to_string(under_a_) + "/.",
                        "/proc/self/fd/" + std::to_string(under_b_) + "/.");
  }
  std::string CompareMounts() { return CompareTrees(a_, b_); }
  std::string Addr() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string Logs() const {
    return "--- primary.log:\n" + FileTail(tmp_.Sub("primary.log"), 5000) + "\n--- secondary.log:\n" +
           FileTail(tmp_.Sub("secondary.log"), 5000);
  }
  std::string A(const std::string& rel) const { return a_ + "/" + rel; }
  std::string B(const std::string& rel) const { return b_ + "/" + rel; }

  TempDir tmp_{"hamirror-resync-crash"};
  std::string a_, b_;
  int under_a_ = -1, under_b_ = -1;
  int port_ = -1;
  FsProcess primary, secondary;
};

// The primary's data set (3 x 8 MiB, small files in a few directories) and the secondary's stale copy.
// Returns the bytes the first resync must send (blocks of a/ that b/ lacks).
uint64_t MakeDataSet(CrashPair& p, uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (int k = 0; k < 3; ++k) REQUIRE(MakeFile(p.A(Name("big", k)), kBig, seed * 10 + k));
  for (const char* d : {"d0", "d1", "d1/deep"}) REQUIRE(mkdir(p.A(d).c_str(), 0755) == 0);
  for (int k = 0; k < 12; ++k) {
    const std::string dir = k % 3 == 0 ? "d0" : k % 3 == 1 ? "d1" : "d1/deep";
    REQUIRE(MakeFile(p.A(dir + Name("/small", k)), rng() % (16 * kKiB), seed * 100 + k, 0640));
  }
  // The stale copy: same directories; big0 rewritten at a few places, big1 entirely other data (and
  // 1 MiB longer), big2 missing; some small files differ, some are missing; extras everywhere.
  for (const char* d : {"d0", "d1", "d1/deep"}) REQUIRE(mkdir(p.B(d).c_str(), 0755) == 0);
  REQUIRE(CopyFile(p.A("big0"), p.B("big0")));
  for (int i = 0; i < 16; ++i)
    REQUIRE(PwriteFile(p.B("big0"), RandomBytes(rng, 1 + rng() % kBlock), rng() % (kBig - kBlock)));
  REQUIRE(MakeFile(p.B("big1"), kBig + kMiB, seed * 10 + 7));
  for (int k = 0; k < 12; ++k) {
    const std::string rel = (k % 3 == 0 ? "d0" : k % 3 == 1 ? "d1" : "d1/deep") + Name("/small", k);
    if (k % 4 == 0) continue;  // missing
    REQUIRE(CopyFile(p.A(rel), p.B(rel)));
    if (k % 4 == 1) REQUIRE(PwriteFile(p.B(rel), "stale!", 0));  // differs
  }
  REQUIRE(MakeFile(p.B("extra.bin"), 3 * kMiB, seed * 10 + 8));
  REQUIRE(mkdir(p.B("extra_dir").c_str(), 0755) == 0);
  REQUIRE(mkdir(p.B("extra_dir/sub").c_str(), 0755) == 0);
  REQUIRE(MakeFile(p.B("extra_dir/sub/x"), 100 * kKiB, seed * 10 + 9));
  REQUIRE(MakeFile(p.B("d1/deep/extra"), 5000, seed * 10 + 10));
  uint64_t differing = 0;
  for (const auto& rel : Files(p.a_)) differing += DifferingBytes(p.A(rel), p.B(rel));
  return differing;
}

struct RunResult {
  int run = 0;
  uint64_t seed = 0;
  bool killed_primary = false;
  int kill_ms = 0;
  std::string phase_at_kill;       // the primary's resync phase seen last before the kill
  uint64_t sent_at_kill = 0;       // bytes_sent seen last before the kill
  uint64_t sent_100ms_before = 0;  // bytes_sent seen at least 100 ms before the kill (applied by then)
  uint64_t first_sent = 0;         // the first resync's bytes_sent as finally known (primary alive)
  uint64_t differing = 0;          // what a full resync has to send
  uint64_t second_sent = 0, second_done = 0;
  bool second_full = false;
  double second_s = 0, run_s = 0;
};

// One run; fills *r. Every check of a run is a CHECK/REQUIRE of its own.
void OneRun(RunResult* r) {
  const auto t_run = Clock::now();
  std::mt19937_64 rng(r->seed);
  CrashPair p;
  r->differing = MakeDataSet(p, r->seed);
  REQUIRE(r->differing >= 16 * kMiB);
  REQUIRE(p.CompareUnder() != "");
  // Kill moment: uniform over [0, 1.3 x the expected first resync], from the run's seed; the victim
  // alternates.
  const int span_ms =
      static_cast<int>(1300.0 * static_cast<double>(r->differing) / static_cast<double>(kRate));
  r->kill_ms = static_cast<int>(rng() % static_cast<uint64_t>(span_ms));
  r->killed_primary = r->seed % 2 == 0;  // alternates from run to run: both kinds in every sequence

  REQUIRE(p.StartSecondary().ok());
  REQUIRE(p.StartPrimary().ok());
  const auto t0 = Clock::now();
  std::vector<std::pair<Clock::time_point, uint64_t>> samples;  // (when, bytes_sent)
  uint64_t max_id = 0;
  while (Clock::now() - t0 < std::chrono::milliseconds(r->kill_ms)) {
    FsStatus st;
    if (p.primary.GetStatus(&st).ok()) {
      samples.emplace_back(Clock::now(), st.resync().bytes_sent());
      r->phase_at_kill = st.resync().phase();
      max_id = std::max(max_id, st.resync().id());
    }
    std::this_thread::sleep_for(10ms);
  }
  const auto t_kill = Clock::now();
  if (r->killed_primary)
    p.primary.Kill();
  else
    p.secondary.Kill();
  for (const auto& [when, sent] : samples) {
    r->sent_at_kill = sent;
    if (t_kill - when >= 100ms) r->sent_100ms_before = sent;
  }
  INFO("run " << r->run << " seed " << r->seed << ": killed the "
              << (r->killed_primary ? "primary" : "secondary") << " after " << r->kill_ms << " ms (resync "
              << r->phase_at_kill << ", " << r->sent_at_kill << " bytes sent)");

  std::string out, why;
  if (r->killed_primary) {
    r->first_sent = r->sent_at_kill;
    REQUIRE(p.StartPrimary().ok());  // same dir, same control socket: same record; it links by itself
  } else {
    // The primary gives the resync up and goes alone (send timeout 1 s); the secondary comes back and the
    // primary is relinked, as the manager does.
    FsStatus st;
    const bool alone = WaitUntil(
        [&] {
          return p.primary.GetStatus(&st).ok() && st.role() == hamirror::proto::FS_ROLE_ALONE &&
                 st.resync().phase() != "running";
        },
        20s);
    INFO("primary after the kill: " << st.ShortDebugString() << "\n" << p.Logs());
    REQUIRE(alone);
    r->first_sent = st.resync().bytes_sent();
    max_id = std::max(max_id, st.resync().id());
    REQUIRE(p.StartSecondary().ok());
    const int code = p.Ctl({"role", "primary", "--peer", p.Addr()}, &out);
    INFO(out);
    REQUIRE(code == 0);
  }
  const auto t_second = Clock::now();
  const bool done = p.WaitResyncDone(max_id, 60s, &why);
  INFO(why);
  REQUIRE(done);
  r->second_s = Secs(Clock::now() - t_second);
  const FsStatus st = p.Primary();
  r->second_sent = st.resync().bytes_sent();
  r->second_done = st.resync().bytes_done();
  r->second_full = st.resync().full();

  // Identical, through the mounts and underneath them.
  CHECK(p.CompareMounts() == "");
  REQUIRE(p.CompareUnder() == "");
  // The online verify agrees.
  const int code = p.Ctl({"verify", "--wait", "--timeout", "60"}, &out);
  const long long differences = JsonCount(out, "differences", out.find("\"verify\""));
  INFO("verify: " << out);
  CHECK(code == 0);
  CHECK(differences == 0);
  // Resumes by comparing: never more than what differs.
  CHECK(r->second_sent <= r->differing);
  CHECK(WaitUntil([&] { return p.Primary().in_sync(); }, 10s));
  REQUIRE(p.primary.Stop().ok());
  REQUIRE(p.secondary.Stop().ok());
  r->run_s = Secs(Clock::now() - t_run);
}

}  // namespace

TEST_CASE("resync crash: either node killed at a random point of a resync, the next one completes it",
          "[fuse_fs][resync][crash]") {
  const char* env_seed = getenv("HAMIRROR_SEED");
  const uint64_t seed = env_seed && *env_seed ? strtoull(env_seed, nullptr, 0) : std::random_device{}();
  const char* env_runs = getenv("HAMIRROR_RESYNC_CRASH_RUNS");
  const int runs = env_runs && *env_runs ? atoi(env_runs) : 20;
  printf("resync crash: seed %llu, %d runs (HAMIRROR_SEED=%llu HAMIRROR_RESYNC_CRASH_RUNS=%d replays)\n",
         static_cast<unsigned long long>(seed), runs, static_cast<unsigned long long>(seed), runs);
  fflush(stdout);
  REQUIRE(runs >= 1);
  const auto t0 = Clock::now();
  std::vector<RunResult> results;
  for (int i = 0; i < runs; ++i) {
    RunResult r;
    r.run = i;
    r.seed = seed * 1000003ull + static_cast<uint64_t>(i);
    INFO("seed " << seed << ", run " << i);
    OneRun(&r);
    printf(
        "run %2d: killed %-9s at %4d ms (resync %-7s sent %5.1f MiB, %5.1f MiB 100 ms before); first sent "
        "%5.1f MiB of %5.1f MiB differing; second resync %s sent %5.1f MiB, compared %5.1f MiB, %.2f s; run "
        "%.1f s\n",
        i, r.killed_primary ? "primary" : "secondary", r.kill_ms,
        r.phase_at_kill.empty() ? "-" : r.phase_at_kill.c_str(), r.sent_at_kill / double(kMiB),
        r.sent_100ms_before / double(kMiB), r.first_sent / double(kMiB), r.differing / double(kMiB),
        r.second_full ? "full" : "incremental", r.second_sent / double(kMiB), r.second_done / double(kMiB),
        r.second_s, r.run_s);
    fflush(stdout);
    results.push_back(r);
  }
  // Across the runs where the first resync had got blocks applied before the kill (sent at least 100 ms
  // earlier: the stream had delivered them), the second one sent fewer bytes than differed, and did not
  // send those blocks again (up to one 1 MiB chunk of slack).
  int resumed = 0, both_kinds[2] = {0, 0};
  for (const auto& r : results) {
    both_kinds[r.killed_primary ? 1 : 0]++;
    if (r.sent_100ms_before == 0) continue;
    ++resumed;
    INFO("run " << r.run << " (seed " << r.seed << "): killed the "
                << (r.killed_primary ? "primary" : "secondary") << " at " << r.kill_ms << " ms with "
                << r.sent_100ms_before << " bytes sent 100 ms before; second "
                << "resync sent " << r.second_sent << " of " << r.differing << " differing");
    CHECK(r.second_sent < r.differing);
    CHECK(r.second_sent + r.sent_100ms_before <= r.differing + kMiB);
  }
  printf("resync crash: %d runs (%d primary, %d secondary killed), %d killed after bytes were sent, %.1f s\n",
         runs, both_kinds[1], both_kinds[0], resumed, Secs(Clock::now() - t0));
  if (runs >= 10) CHECK(resumed >= runs / 4);  // the seeded moments cover the resync, not only its start
}
