// Reintegration acceptance tests (root only, label "netns"; the lab is cluster_lab.h): a node that
// comes back after a separation is declared SECOND ready only once the peer's hamirror-fs resynced it,
// and its real directory then equals the serving node's (CompareTrees of the directories underneath the
// FUSE mounts). The resync must be incremental (what the record of the node that stayed names) when
// the returning node's copy is clean, and a full checksum compare when the returning node crashed as
// the primary (its own record says it may hold writes the other never saw).
//
// Before reintegration existed, the returning node was SECOND ready 0.8 s after its restart with
// nothing resynced and differing files: every case here fails on that.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/manager/daemon/cluster_lab.h"
#include "tests/support/netns.h"
#include "tests/support/tree_compare.h"

using namespace hamirror::test;
using namespace std::chrono_literals;

namespace {

constexpr uint64_t kMiB = 1 << 20;
constexpr int kBigFiles = 4;
constexpr int kBigMiB = 64;

// ---- `hamirror state --json` of a node with one replicated directory ----------------------------
// (protobuf's JSON: uint64 fields are quoted strings, every primitive field is printed.)

// The text of object `key` (the first one after `after`), braces included; "" if absent.
std::string JsonObject(const std::string& json, const std::string& key, size_t after = 0) {
  size_t p = json.find("\"" + key + "\": {", after);
  if (p == std::string::npos) return "";
  p = json.find('{', p);
  int depth = 0;
  for (size_t i = p; i < json.size(); ++i) {
    if (json[i] == '{') ++depth;
    if (json[i] == '}' && --depth == 0) return json.substr(p, i - p + 1);
  }
  return "";
}

// The value of `field` in a flat object, quotes removed; "" if absent.
std::string JsonField(const std::string& obj, const std::string& field) {
  size_t p = obj.find("\"" + field + "\": ");
  if (p == std::string::npos) return "";
  p += field.size() + 4;
  if (p < obj.size() && obj[p] == '"') {
    size_t e = obj.find('"', p + 1);
    return obj.substr(p + 1, e - p - 1);
  }
  size_t e = obj.find_first_of(",\n}", p);
  return obj.substr(p, e - p);
}

struct FsView {
  bool ok = false;  // the daemon answered with an fs entry
  std::string role;
  bool in_sync = false;
  // fs[].resync: the last resync from this node into its peer.
  std::string phase;
  std::string id;
  bool full = false;
  std::string reason;
  uint64_t bytes_done = 0, bytes_sent = 0, wire_bytes = 0, bytes_total = 0, files_done = 0, pass = 0;
  double elapsed_s = 0;
  std::string error;
  // fs[].resync_target: a resync into this node (secondary).
  std::string target_phase;
  std::string target_id;
  // fs[].record
  uint64_t record_files = 0, record_zones = 0;
  bool record_full = false, record_tree = false;
  std::string record_reason;
  std::string json;
};

FsView ReadFs(Cluster& c, int i) {
  FsView v;
  CommandResult r = c.Cli(i, "state --json");
  v.json = r.output;
  const size_t fs = r.output.find("\"fs\": [");
  if (r.status != 0 || fs == std::string::npos) return v;
  v.ok = true;
  const std::string rs = JsonObject(r.output, "resync", fs);
  const std::string tg = JsonObject(r.output, "resync_target", fs);
  const std::string rec = JsonObject(r.output, "record", fs);
  auto u64 = [](const std::string& s) { return s.empty() ? 0 : std::strtoull(s.c_str(), nullptr, 10); };
  v.role = JsonField(r.output.substr(fs), "role");
  v.in_sync = JsonField(r.output.substr(fs), "in_sync") == "true";
  v.phase = JsonField(rs, "phase");
  v.id = JsonField(rs, "id");
  v.full = JsonField(rs, "full") == "true";
  v.reason = JsonField(rs, "reason");
  v.bytes_done = u64(JsonField(rs, "bytes_done"));
  v.bytes_sent = u64(JsonField(rs, "bytes_sent"));
  v.wire_bytes = u64(JsonField(rs, "wire_bytes"));
  v.bytes_total = u64(JsonField(rs, "bytes_total"));
  v.files_done = u64(JsonField(rs, "files_done"));
  v.pass = u64(JsonField(rs, "pass"));
  v.elapsed_s = std::atof(JsonField(rs, "elapsed_s").c_str());
  v.error = JsonField(rs, "error");
  v.target_phase = JsonField(tg, "phase");
  v.target_id = JsonField(tg, "id");
  v.record_files = u64(JsonField(rec, "files"));
  v.record_zones = u64(JsonField(rec, "zones"));
  v.record_full = JsonField(rec, "full") == "true";
  v.record_tree = JsonField(rec, "tree") == "true";
  v.record_reason = JsonField(rec, "reason");
  return v;
}

std::string Describe(const FsView& v) {
  std::ostringstream o;
  o << "resync " << (v.phase.empty() ? "-" : v.phase) << " id " << v.id << (v.full ? " full" : " incremental")
    << " pass " << v.pass << " compared " << v.bytes_done << "/" << v.bytes_total << " sent " << v.bytes_sent
    << " wire " << v.wire_bytes << " files " << v.files_done << " " << v.elapsed_s << " s"
    << (v.error.empty() ? "" : " error " + v.error) << " (" << v.reason << ")";
  return o.str();
}

// ---- files ----------------------------------------------------------------------------------------

// "relative/path size" per regular file, sorted: what "the copy has arrived" means before comparing.
std::string Sizes(const std::string& dir) {
  std::vector<std::string> lines;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    lines.push_back(std::filesystem::relative(it->path(), dir).string() + " " +
                    std::to_string(it->file_size(ec)));
  }
  std::sort(lines.begin(), lines.end());
  std::string out;
  for (auto& l : lines) out += l + "\n";
  return out;
}

// A temporary directory outside the lab for the source files (removed at the end).
struct TempDir {
  TempDir() {
    char tmpl[] = "/tmp/hamirror-resync-src-XXXXXX";
    REQUIRE(mkdtemp(tmpl));
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string path;
};

std::string BigName(int k) { return "big-" + std::to_string(k); }

// FirstStart with a replicated directory, then 4 x 64 MiB + small files written through n1's mount;
// returns once n2's real copy equals n1's.
void StartAndFill(Cluster& c) {
  c.FirstStart();
  REQUIRE(c.FsPid(1) > 0);
  REQUIRE(c.FsPid(2) > 0);
  // Under(i) is the real directory (the file system of Dir(i)), not the FUSE mount over Dir(i)/data.
  for (int i = 1; i <= 2; ++i) {
    struct stat under, node, host_view;
    REQUIRE(stat(c.Under(i).c_str(), &under) == 0);
    REQUIRE(stat(c.Dir(i).c_str(), &node) == 0);
    REQUIRE(stat((c.Dir(i) + "/data").c_str(), &host_view) == 0);
    CommandResult fuse = c.InFsMounts(i, "stat -c %d " + c.Dir(i) + "/data");
    REQUIRE(fuse.ok());
    const unsigned long long fuse_dev = std::strtoull(fuse.output.c_str(), nullptr, 10);
    INFO("n" << i << ": fuse dev " << fuse_dev << ", underlying dev " << under.st_dev << ", host sees dev "
             << host_view.st_dev);
    CHECK(under.st_dev == node.st_dev);
    CHECK(under.st_dev != fuse_dev);
    printf("RESYNC n%d: the test's own view of %s/data is %s\n", i, c.Dir(i).c_str(),
           host_view.st_dev == fuse_dev ? "the FUSE mount" : "the directory underneath");
  }

  TempDir src;
  std::string mk = "set -e; cd " + src.path + "; ";
  for (int k = 0; k < kBigFiles; ++k)
    mk +=
        "dd if=/dev/urandom of=" + BigName(k) + " bs=1M count=" + std::to_string(kBigMiB) + " status=none; ";
  mk +=
      "head -c 4096 /dev/urandom > small-1; head -c 4096 /dev/urandom > small-2; mkdir sub; "
      "head -c 8192 /dev/urandom > sub/small-3";
  CommandResult r = RunCommand(mk);
  INFO(r.output);
  REQUIRE(r.ok());
  const auto t0 = Cluster::Clock::now();
  r = c.InFsMounts(1, "cp -r " + src.path + "/. " + c.Dir(1) + "/data/ && sync");
  INFO(r.output);
  REQUIRE(r.ok());
  const double secs = std::chrono::duration<double>(Cluster::Clock::now() - t0).count();
  printf("RESYNC fill: 256 MiB copied through n1's mount in %.1f s\n", secs);
  // Replication is synchronous: n2's copy is complete once cp returned; the sizes say so at once.
  REQUIRE(Cluster::WaitFor([&] { return Sizes(c.Under(2)) == Sizes(c.Under(1)); }, 30s));
  CHECK(Sizes(c.Under(1)).find(BigName(3) + " " + std::to_string(kBigMiB * kMiB)) != std::string::npos);
  // Baseline: the synchronous stream alone makes the copies identical.
  std::string diff;
  Cluster::WaitFor([&] { return (diff = CompareTrees(c.Under(1), c.Under(2))).empty(); }, 10s);
  CHECK(diff == "");
}

// Waits until the fs of node i replicates to nobody (role alone in `state -v`).
bool WaitFsAlone(Cluster& c, int i) {
  return Cluster::WaitFor(
      [&] {
        return c.Cli(i, "state -v").output.find("fs " + c.Dir(i) + "/data: alone") != std::string::npos;
      },
      10s);
}

// What was seen while the returning node joined. The fs columns come from `state --json`, which
// the daemon refreshes every 2 s: they lag; the order is judged from the logs' timestamps instead.
struct JoinWatch {
  bool joined = false;
  double first_target_ready_s = -1;  // the returning node first seen SECOND (Ready)
  std::vector<std::string> timeline;
};

// Polls (bounded) until `source` is PRIM ready and `target` SECOND ready, noting every change.
JoinWatch WatchJoin(Cluster& c, int source, int target, const std::string& old_id,
                    std::chrono::seconds deadline) {
  JoinWatch w;
  const auto t0 = Cluster::Clock::now();
  std::string last;
  while (Cluster::Clock::now() - t0 < deadline) {
    const std::string st = c.State(target);
    const std::string ss = c.State(source);
    const FsView fs = ReadFs(c, source);
    const double t = std::chrono::duration<double>(Cluster::Clock::now() - t0).count();
    if (st == "SECOND (Ready)" && w.first_target_ready_s < 0) w.first_target_ready_s = t;
    std::ostringstream line;
    line << "n" << source << " " << ss << ", n" << target << " " << st << ", n" << source << " fs " << fs.role
         << " resync " << (fs.phase.empty() ? "-" : fs.phase) << (fs.id == old_id ? " (previous)" : "");
    if (line.str() != last) {
      last = line.str();
      char stamp[32];
      snprintf(stamp, sizeof(stamp), "%6.2f s: ", t);
      w.timeline.push_back(stamp + last + (fs.phase == "running" ? " " + Describe(fs) : ""));
    }
    if (ss == "PRIM (Ready)" && st == "SECOND (Ready)") {
      w.joined = true;
      break;
    }
    std::this_thread::sleep_for(100ms);
  }
  return w;
}

std::string ReadFrom(const std::string& path, size_t from) {
  std::ifstream in(path);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return from < all.size() ? all.substr(from) : "";
}
size_t FileSize(const std::string& path) {
  std::error_code ec;
  auto n = std::filesystem::file_size(path, ec);
  return ec ? 0 : static_cast<size_t>(n);
}
std::string ModuleLog(Cluster& c, int i) { return c.Dir(i) + "/hmtest.log"; }
std::string FsLogPath(Cluster& c, int i) { return c.Dir(i) + "/fs-data.log"; }

// The timestamp ("2026-12-04T18:33:38.218Z") of the first line of `log` containing `needle`; "".
// Both logs write UTC with milliseconds, so timestamps compare as strings.
std::string StampOf(const std::string& log, const std::string& needle) {
  size_t p = log.find(needle);
  if (p == std::string::npos) return "";
  size_t bol = log.rfind('\n', p);
  bol = bol == std::string::npos ? 0 : bol + 1;
  return log.substr(bol, log.find(' ', bol) - bol);
}

std::string FsLog(Cluster& c, int i) {
  CommandResult r = RunCommand("tail -n 40 " + ShellQuote(FsLogPath(c, i)));
  return "--- n" + std::to_string(i) + " fs log:\n" + r.output;
}

// Node `target` (down) starts again and joins `source` (ALONE). Checks that it became SECOND ready only
// after a resync from `source` (newer than old_id) ended, and that the copies are then identical.
// Returns the source's view of that resync.
FsView Rejoin(Cluster& c, int source, int target, const std::string& old_id, std::chrono::seconds deadline,
              const std::string& label) {
  const size_t log_from = FileSize(ModuleLog(c, target)), fs_log_from = FileSize(FsLogPath(c, source));
  const size_t source_log_from = FileSize(ModuleLog(c, source));
  const auto t0 = Cluster::Clock::now();
  c.StartDaemon(target);
  CommandResult start = c.Cli(target, "start");
  INFO(start.output);
  REQUIRE(start.ok());
  JoinWatch join = WatchJoin(c, source, target, old_id, deadline);
  const double join_s = std::chrono::duration<double>(Cluster::Clock::now() - t0).count();
  std::string timeline;
  for (const auto& l : join.timeline) timeline += "  " + l + "\n";
  printf("RESYNC %s: n%d restart -> n%d PRIM ready, n%d SECOND ready: %.2f s (first seen ready %.2f s)\n%s",
         label.c_str(), target, source, target, join_s, join.first_target_ready_s, timeline.c_str());
  INFO("timeline:\n" << timeline << c.Log(source) << c.Log(target) << FsLog(c, source) << FsLog(c, target));
  REQUIRE(join.joined);

  // The source's status catches up (refreshed every 2 s): a resync newer than the previous one, done.
  FsView v;
  CHECK(Cluster::WaitFor(
      [&] {
        v = ReadFs(c, source);
        return v.phase == "done" && v.id != old_id;
      },
      10s));
  INFO(v.json);
  printf("RESYNC %s: n%d %s\n", label.c_str(), source, Describe(v).c_str());

  // The order, from the logs: the source's fs ended the resync, the target's daemon saw it done, and
  // only then did the target become SECOND ready.
  const std::string tlog = ReadFrom(ModuleLog(c, target), log_from);
  const std::string slog = ReadFrom(FsLogPath(c, source), fs_log_from);
  const std::string fs_done = StampOf(slog, "resync " + v.id + " done");
  const std::string seen_done = StampOf(tlog, "resync into this node done");
  const std::string ready = StampOf(tlog, "state SECOND (ready)");
  const size_t seen_at = tlog.find("resync into this node done"),
               ready_at = tlog.find("state SECOND (ready)");
  printf("RESYNC %s: source fs resync done %s, target saw it %s, target SECOND ready %s\n", label.c_str(),
         fs_done.c_str(), seen_done.c_str(), ready.c_str());
  INFO("n" << target << " log since its restart:\n"
           << tlog << "n" << source << " fs log meanwhile:\n"
           << slog);
  CHECK(!fs_done.empty());
  CHECK(seen_at != std::string::npos);
  CHECK(ready_at != std::string::npos);
  CHECK(seen_at < ready_at);
  CHECK(fs_done <= ready);
  // For the record: the steps of the join, from both module logs and the source's fs log.
  std::string steps;
  auto pick = [&](const std::string& log, const std::string& who) {
    std::istringstream in(log);
    for (std::string line; std::getline(in, line);) {
      for (const char* k :
           {"state ", "fs role", "peer waits", "resync", "replication stream", "starting hamirror-fs"})
        if (line.find(k) != std::string::npos) {
          steps +=
              line.substr(0, 24) + " " + who + line.substr(std::min(line.size(), line.find(' ') + 1)) + "\n";
          break;
        }
    }
  };
  pick(ReadFrom(ModuleLog(c, source), source_log_from), "n" + std::to_string(source) + " ");
  pick(tlog, "n" + std::to_string(target) + " ");
  pick(slog, "n" + std::to_string(source) + " fs ");
  std::vector<std::string> lines;
  std::istringstream split(steps);
  for (std::string l; std::getline(split, l);) lines.push_back(l);
  std::stable_sort(lines.begin(), lines.end(), [](const std::string& a, const std::string& b) {
    return a.substr(0, 24) < b.substr(0, 24);
  });
  printf("RESYNC %s: steps\n", label.c_str());
  for (const auto& l : lines) printf("  %s\n", l.c_str());

  const std::string diff = CompareTrees(c.Under(source), c.Under(target));
  CHECK(diff == "");
  // The source now replicates synchronously and says the peer is in sync; the target saw it done.
  CHECK(Cluster::WaitFor([&] { return ReadFs(c, source).in_sync; }, 5s));
  CHECK(Cluster::WaitFor([&] { return ReadFs(c, target).target_phase == "done"; }, 5s));
  return v;
}

// n2 powered off while n1 writes `changes` (a shell command run in n1's mount namespace), then n2
// returns: Rejoin.
FsView SeparateAndReturn(Cluster& c, const std::string& changes, const std::string& label,
                         FsView* alone_out = nullptr) {
  const std::string old_id = ReadFs(c, 1).id;
  c.PowerOff(2);
  REQUIRE(c.WaitState(1, "ALONE (Ready)", 15s));
  REQUIRE(WaitFsAlone(c, 1));
  CommandResult w = c.InFsMounts(1, changes);
  INFO(w.output);
  REQUIRE(w.ok());
  FsView alone;
  Cluster::WaitFor(
      [&] {
        alone = ReadFs(c, 1);
        return alone.record_zones > 0 || alone.record_full;
      },
      5s);
  printf("RESYNC %s: n1's record while alone: %llu files, %llu zones%s%s\n", label.c_str(),
         (unsigned long long)alone.record_files, (unsigned long long)alone.record_zones,
         alone.record_full ? ", FULL" : "",
         alone.record_tree ? (", TREE: " + alone.record_reason).c_str() : "");
  if (alone_out) *alone_out = alone;
  return Rejoin(c, 1, 2, old_id, 60s, label);
}

// 16 distinct 1 MiB-aligned (file, MiB) pairs across the big files, from `seed`.
std::vector<std::pair<int, int>> Scattered(unsigned seed, int count) {
  std::mt19937 rng(seed);
  std::set<std::pair<int, int>> picked;
  while (static_cast<int>(picked.size()) < count)
    picked.emplace(static_cast<int>(rng() % kBigFiles), static_cast<int>(rng() % kBigMiB));
  return {picked.begin(), picked.end()};
}

std::string Rewrites(Cluster& c, const std::vector<std::pair<int, int>>& blocks) {
  std::string cmd = "set -e; ";
  for (auto [k, m] : blocks)
    cmd += "dd if=/dev/urandom of=" + c.Dir(1) + "/data/" + BigName(k) +
           " bs=1M count=1 seek=" + std::to_string(m) + " conv=notrunc status=none; ";
  return cmd;
}

}  // namespace

TEST_CASE("reintegration: secondary powered off, primary writes alone, secondary returns",
          "[netns][daemon][fs][resync]") {
  if (SkipWithoutFs()) return;
  Cluster c({.rfs = true, .ruzone_blocksize = "1M"});
  StartAndFill(c);

  const unsigned seed = static_cast<unsigned>(std::random_device{}());
  printf("RESYNC scattered rewrites: seed %u\n", seed);
  std::string changes = Rewrites(c, Scattered(seed, 16));
  changes += "dd if=/dev/urandom of=" + c.Dir(1) + "/data/new-1 bs=1M count=1 status=none; rm " + c.Dir(1) +
             "/data/small-1; sync";
  const FsView v = SeparateAndReturn(c, changes, "16 MiB rewritten + 1 MiB new file + 1 unlink");
  CHECK_FALSE(v.full);
  CHECK(v.bytes_sent <= static_cast<uint64_t>(1.2 * 17 * kMiB) + kMiB);
  CHECK(v.bytes_sent >= 17 * kMiB);  // every changed byte was random: all of it differs
  WARN("incremental resync after 17 MiB written alone: compared "
       << v.bytes_done << " bytes, sent " << v.bytes_sent << ", wire " << v.wire_bytes << ", " << v.elapsed_s
       << " s");
}

TEST_CASE("reintegration: resync time grows with what changed", "[netns][daemon][fs][resync]") {
  if (SkipWithoutFs()) return;
  Cluster c({.rfs = true, .ruzone_blocksize = "1M"});
  StartAndFill(c);
  const unsigned seed = static_cast<unsigned>(std::random_device{}());
  printf("RESYNC time vs change: seed %u\n", seed);
  // Data rewrites only (no namespace change): the record names exactly the zones written.
  const auto blocks = Scattered(seed, 16);
  const FsView one = SeparateAndReturn(c, Rewrites(c, {blocks[0]}) + "sync", "1 MiB rewritten");
  const FsView sixteen = SeparateAndReturn(c, Rewrites(c, blocks) + "sync", "16 MiB rewritten");
  CHECK_FALSE(one.full);
  CHECK_FALSE(sixteen.full);
  // What was compared grows with what changed (per zone would be 1 vs 16 MiB; see the mayfail case
  // below for that promise), and so does what was sent.
  CHECK(one.bytes_done < sixteen.bytes_done);
  CHECK(one.bytes_sent >= kMiB);
  CHECK(one.bytes_sent <= 2 * kMiB);
  CHECK(sixteen.bytes_sent >= 16 * kMiB);
  CHECK(sixteen.bytes_sent <= static_cast<uint64_t>(1.2 * 16 * kMiB) + kMiB);
  // Elapsed times are printed, not compared: connection set-up dominates at this size.
  printf("RESYNC elapsed: 1 MiB changed %.3f s, 16 MiB changed %.3f s\n", one.elapsed_s, sixteen.elapsed_s);
  WARN("resync after 1 MiB changed: " << Describe(one)
                                      << "\nresync after 16 MiB changed: " << Describe(sixteen));
}

// The record names the 1 MiB zone written while alone; an incremental resync should compare that zone,
// not the whole 64 MiB file. Known to fail (hence [!mayfail]): closing the file while alone ships an
// mtime setattr that never reaches the peer, which marks the whole record "tree"
// (fuse_fs/pending_reply.cc RecordSpan::Finish), and a tree rescan compares every file whose mtime
// differs on the peer entirely (fuse_fs/resync.cc ReconcileEntries).
TEST_CASE("reintegration: a rewrite while alone is compared by zone, not whole file",
          "[netns][daemon][fs][resync][!mayfail]") {
  if (SkipWithoutFs()) return;
  Cluster c({.rfs = true, .ruzone_blocksize = "1M"});
  c.FirstStart();
  REQUIRE(c.FsPid(1) > 0);
  CommandResult r = c.InFsMounts(1, "dd if=/dev/urandom of=" + c.Dir(1) + "/data/" + BigName(0) +
                                        " bs=1M count=" + std::to_string(kBigMiB) + " status=none && sync");
  INFO(r.output);
  REQUIRE(r.ok());
  REQUIRE(Cluster::WaitFor([&] { return Sizes(c.Under(2)) == Sizes(c.Under(1)); }, 30s));
  FsView alone;
  const FsView v = SeparateAndReturn(c, Rewrites(c, {{0, 17}}) + "sync", "zone precision", &alone);
  CHECK_FALSE(v.full);
  CHECK(v.bytes_sent == kMiB);
  INFO("n1's record while alone: tree " << alone.record_tree << " (" << alone.record_reason << ")");
  CHECK_FALSE(alone.record_tree);
  CHECK(v.bytes_done <= kMiB);
}

TEST_CASE("reintegration: primary crash, failover, old primary returns", "[netns][daemon][fs][resync]") {
  if (SkipWithoutFs()) return;
  Cluster c({.rfs = true, .ruzone_blocksize = "1M"});
  c.FirstStart();
  REQUIRE(c.FsPid(1) > 0);
  const std::string data1 = c.Dir(1) + "/data", data2 = c.Dir(2) + "/data";
  CommandResult r =
      c.InFsMounts(1, "dd if=/dev/urandom of=" + data1 + "/log bs=1M count=64 status=none && sync");
  INFO(r.output);
  REQUIRE(r.ok());
  std::string diff;
  Cluster::WaitFor([&] { return (diff = CompareTrees(c.Under(1), c.Under(2))).empty(); }, 10s);
  REQUIRE(diff == "");

  // The application: 1 MiB direct writes in a loop (bounded), in the background in n1's mount
  // namespace; it notes its pid and how many writes completed.
  const std::string pidfile = c.Dir(1) + "/writer.pid", progress = c.Dir(1) + "/writer.count";
  const std::string loop = "echo $$ > " + pidfile +
                           "; i=0; while [ $i -lt 3000 ]; do dd if=/dev/urandom of=" + data1 +
                           "/log bs=1M count=1 seek=$(( (i * 37) % 64 )) conv=notrunc oflag=direct " +
                           "status=none || break; i=$((i+1)); echo $i > " + progress + "; done";
  r = c.InFsMounts(1, "setsid sh -c " + ShellQuote(loop) + " </dev/null >/dev/null 2>&1 &");
  INFO(r.output);
  REQUIRE(r.ok());
  auto count = [&] {
    std::ifstream in(progress);
    int n = 0;
    in >> n;
    return n;
  };
  REQUIRE(Cluster::WaitFor([&] { return count() >= 20; }, 20s));
  int writer = 0;
  std::ifstream(pidfile) >> writer;
  REQUIRE(writer > 0);

  // Every process of n1 dies mid-write: hamirror-fs, the service and the daemon, then the writer.
  c.PowerOff(1);
  kill(writer, SIGKILL);
  Cluster::WaitFor([&] { return kill(writer, 0) != 0; }, 5s);
  printf("RESYNC crash: n1 died after %d writes of 1 MiB\n", count());

  REQUIRE(Cluster::WaitFor([&] { return c.Fetch() == "n2"; }, 20s));
  REQUIRE(c.WaitState(2, "ALONE (Ready)", 10s));
  REQUIRE(WaitFsAlone(c, 2));
  const std::string old_id = ReadFs(c, 2).id;
  // n2 writes alone: 4 x 1 MiB into the log, a new 4 MiB file.
  r = c.InFsMounts(2, "set -e; for m in 3 17 40 63; do dd if=/dev/urandom of=" + data2 +
                          "/log bs=1M count=1 seek=$m conv=notrunc status=none; done; "
                          "dd if=/dev/urandom of=" +
                          data2 + "/after-failover bs=1M count=4 status=none; sync");
  INFO(r.output);
  REQUIRE(r.ok());

  // n1 returns: it must join as SECOND only after a full compare (its record is unclean).
  const FsView v = Rejoin(c, 2, 1, old_id, 90s, "crash");
  CHECK(v.full);  // n1's own record (primary, killed) asks for a full compare
  CHECK(c.Fetch() == "n2");
}
