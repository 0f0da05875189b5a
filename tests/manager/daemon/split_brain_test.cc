// Split brain and the quarantine, end to end (root only, label "netns"; the lab is cluster_lab.h): with no
// witness, a cut between the nodes lets both serve (n1 stays ALONE, n2 goes ALONE after the heartbeat
// timeout, failover="on") and both write through their mounts. When the link heals, both must refuse to
// resync (`state -v` says "split brain" on both, neither joins as SECOND by itself) until the operator
// chooses: `prim` on n1 (kept), `second` on n2 (discarded). Then n2 is resynced from n1 (a full
// compare), its real directory equals n1's, and everything the resync changed or removed on n2 was saved
// first, byte for byte, under <statedir>/quarantine/fs-<basename>-<hash>/<resync id>/ with a MANIFEST
// (docs/reintegration.md section 5).
//
// What each side does while cut (D and E existed before the cut, on both):
//   n1: A rewritten ("n1's A"), B created.
//   n2: A rewritten differently ("n2's A"), C created, D deleted.
// After the resolution n2 must hold n1's tree: A = n1's A, B present, C gone, D back. The quarantine must
// hold n2's A and n2's C (what the resync overwrote or removed), byte for byte, and list both in its
// MANIFEST. D is not in it: n2 had no D to lose (the resync creates it); B neither (created); E neither
// (untouched, equal on both).
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
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

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

// Random bytes as a file's content, from a seed (not text: a quarantine copy must be byte for byte).
std::string Payload(uint64_t seed, size_t n) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

// Writes `content` to a temporary file outside the lab; a shell command run in a node's mount namespace
// then copies it into place (cat > keeps the inode: a rewrite, not a replace).
struct Staged {
  explicit Staged(const std::string& content) {
    char tmpl[] = "/tmp/hamirror-splitbrain-XXXXXX";
    const int fd = mkstemp(tmpl);
    REQUIRE(fd >= 0);
    path = tmpl;
    REQUIRE(write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()));
    close(fd);
  }
  ~Staged() { unlink(path.c_str()); }
  std::string path;
};

bool WaitFsAlone(Cluster& c, int i) {
  return Cluster::WaitFor(
      [&] {
        return c.Cli(i, "state -v").output.find("fs " + c.Dir(i) + "/data: alone") != std::string::npos;
      },
      15s);
}

// Node i's quarantine resync directories: <statedir>/quarantine/fs-*/<id>/.
std::vector<std::string> QuarantineRuns(Cluster& c, int i) {
  std::vector<std::string> out;
  std::error_code ec;
  const std::filesystem::path root = c.Dir(i) + "/state/quarantine";
  for (const auto& fs : std::filesystem::directory_iterator(root, ec)) {
    if (!fs.is_directory() || fs.path().filename().string().rfind("fs-", 0) != 0) continue;
    for (const auto& run : std::filesystem::directory_iterator(fs.path(), ec))
      if (run.is_directory()) out.push_back(run.path().string());
  }
  return out;
}

std::string ListTree(const std::string& dir) {
  std::string out;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec))
    out += "  " + std::filesystem::relative(it->path(), dir).string() + "\n";
  return out;
}

std::string FsLog(Cluster& c, int i) {
  CommandResult r = RunCommand("tail -n 60 " + ShellQuote(c.Dir(i) + "/fs-data.log"));
  return "--- n" + std::to_string(i) + " fs log:\n" + r.output;
}

}  // namespace

TEST_CASE(
    "split brain: both sides wrote while cut, the operator keeps one side, what the other loses is "
    "quarantined",
    "[netns][daemon][fs][resync]") {
  if (SkipWithoutFs()) return;
  Cluster c({.rfs = true, .ruzone_blocksize = "1M"});
  c.FirstStart();
  REQUIRE(c.FsPid(1) > 0);
  REQUIRE(c.FsPid(2) > 0);
  const std::string m1 = c.Dir(1) + "/data", m2 = c.Dir(2) + "/data";  // the mounts (in the fs's namespace)

  // Before the cut: A, D, E written through n1's mount, replicated to n2.
  const std::string base_a = Payload(1, 300 * 1024), base_d = Payload(2, 70 * 1024),
                    base_e = Payload(3, 5000);
  {
    Staged a(base_a), d(base_d), e(base_e);
    CommandResult w =
        c.InFsMounts(1, "set -e; mkdir " + m1 + "/sub; cat " + a.path + " > " + m1 + "/A; cat " + d.path +
                            " > " + m1 + "/sub/D; cat " + e.path + " > " + m1 + "/E; sync");
    INFO(w.output);
    REQUIRE(w.ok());
  }
  std::string diff;
  Cluster::WaitFor([&] { return (diff = CompareTrees(c.Under(1), c.Under(2))).empty(); }, 10s);
  REQUIRE(diff == "");
  REQUIRE(ReadAll(c.Under(2) + "/A") == base_a);

  // The cut: n1's only link (heartbeats and replication share lan 0). No witness: both serve.
  c.lab().CutLink(1, 0);
  REQUIRE(c.WaitState(1, "ALONE (Ready)", 20s));
  REQUIRE(c.WaitState(2, "ALONE (Ready)", 20s));
  REQUIRE(WaitFsAlone(c, 1));
  REQUIRE(WaitFsAlone(c, 2));

  // Different changes on each side, through each side's mount.
  const std::string a1 = Payload(11, 200 * 1024 + 17), b1 = Payload(12, 64 * 1024);
  const std::string a2 = Payload(21, 450 * 1024 + 3), c2 = Payload(22, 100 * 1024 + 5);
  {
    Staged sa(a1), sb(b1);
    CommandResult w = c.InFsMounts(
        1, "set -e; cat " + sa.path + " > " + m1 + "/A; cat " + sb.path + " > " + m1 + "/sub/B; sync");
    INFO(w.output);
    REQUIRE(w.ok());
  }
  {
    Staged sa(a2), sc(c2);
    CommandResult w = c.InFsMounts(2, "set -e; cat " + sa.path + " > " + m2 + "/A; cat " + sc.path + " > " +
                                          m2 + "/C; rm " + m2 + "/sub/D; sync");
    INFO(w.output);
    REQUIRE(w.ok());
  }
  REQUIRE(ReadAll(c.Under(1) + "/A") == a1);
  REQUIRE(ReadAll(c.Under(2) + "/A") == a2);
  REQUIRE(ReadAll(c.Under(2) + "/C") == c2);
  REQUIRE_FALSE(Exists(c.Under(2) + "/sub/D"));
  REQUIRE(QuarantineRuns(c, 2).empty());
  // n2's A and C as they are now (the quarantine keeps mode, owner and times too).
  struct stat lost_a, lost_c;
  REQUIRE(c.InFsMounts(2, "chmod 600 " + m2 + "/C").ok());  // a mode only n2's C has
  REQUIRE(lstat((c.Under(2) + "/A").c_str(), &lost_a) == 0);
  REQUIRE(lstat((c.Under(2) + "/C").c_str(), &lost_c) == 0);

  // Heal. Both must see the split brain and refuse to resync: neither joins as SECOND by itself.
  c.lab().HealLink(1, 0);
  const auto healed = Cluster::Clock::now();
  for (int i = 1; i <= 2; ++i) {
    std::string v;
    const bool seen = Cluster::WaitFor(
        [&] {
          v = c.Cli(i, "state -v").output;
          return v.find("split brain") != std::string::npos;
        },
        20s);
    INFO("n" << i << " state -v:\n" << v << c.Log(1) << c.Log(2));
    CHECK(seen);
  }
  printf("SPLITBRAIN both report a split brain %.1f s after the heal\n",
         std::chrono::duration<double>(Cluster::Clock::now() - healed).count());
  // Exactly one keeps serving (the other stepped down to WAIT), nobody becomes SECOND, for a while.
  std::string s1, s2;
  bool joined = false;
  int both_serving = 0;
  const auto watch = Cluster::Clock::now();
  while (Cluster::Clock::now() - watch < 8s) {
    s1 = c.State(1);
    s2 = c.State(2);
    joined |= s1.rfind("SECOND", 0) == 0 || s2.rfind("SECOND", 0) == 0;
    both_serving += s1.rfind("ALONE", 0) == 0 && s2.rfind("ALONE", 0) == 0;
    std::this_thread::sleep_for(200ms);
  }
  const std::string v1 = c.Cli(1, "state -v").output, v2 = c.Cli(2, "state -v").output;
  printf("SPLITBRAIN after 8 s: n1 %s, n2 %s\n--- n1 state -v:\n%s--- n2 state -v:\n%s", s1.c_str(),
         s2.c_str(), v1.c_str(), v2.c_str());
  INFO("n1 state -v:\n" << v1 << "n2 state -v:\n" << v2 << c.Log(1) << c.Log(2));
  CHECK_FALSE(joined);
  CHECK(v1.find("split brain") != std::string::npos);
  CHECK(v2.find("split brain") != std::string::npos);
  // Nothing was overwritten meanwhile: each side still holds its own changes.
  CHECK(ReadAll(c.Under(1) + "/A") == a1);
  CHECK(ReadAll(c.Under(2) + "/A") == a2);
  CHECK(ReadAll(c.Under(2) + "/C") == c2);
  CHECK_FALSE(Exists(c.Under(2) + "/sub/D"));
  CHECK(QuarantineRuns(c, 2).empty());

  // The operator keeps n1's side and discards n2's.
  CommandResult prim = c.Cli(1, "prim");
  INFO("prim on n1: " << prim.output);
  CHECK(prim.ok());
  CommandResult second = c.Cli(2, "second");
  INFO("second on n2: " << second.output);
  CHECK(second.ok());
  const auto chosen = Cluster::Clock::now();
  REQUIRE(c.WaitState(1, "PRIM (Ready)", 60s));
  REQUIRE(c.WaitState(2, "SECOND (Ready)", 30s));
  printf("SPLITBRAIN n1 PRIM, n2 SECOND ready %.1f s after the operator's choice\n",
         std::chrono::duration<double>(Cluster::Clock::now() - chosen).count());
  CHECK(Cluster::WaitFor([&] { return c.Fetch() == "n1"; }, 10s));

  // n2 now holds exactly n1's tree.
  diff = CompareTrees(c.Under(1), c.Under(2));
  INFO(FsLog(c, 1) << FsLog(c, 2));
  CHECK(diff == "");
  CHECK(ReadAll(c.Under(1) + "/A") == a1);
  CHECK(ReadAll(c.Under(2) + "/A") == a1);
  CHECK(ReadAll(c.Under(2) + "/sub/B") == b1);
  CHECK(ReadAll(c.Under(2) + "/sub/D") == base_d);
  CHECK_FALSE(Exists(c.Under(2) + "/C"));
  CHECK_FALSE(Exists(c.Under(1) + "/C"));
  // The split brain is resolved on both.
  CHECK(Cluster::WaitFor([&] { return c.Cli(1, "state -v").output.find("split brain") == std::string::npos; },
                         10s));
  CHECK(c.Cli(2, "state -v").output.find("split brain") == std::string::npos);

  // n2's quarantine: one resync directory, n2's A and C byte for byte, both in the MANIFEST.
  const std::vector<std::string> runs = QuarantineRuns(c, 2);
  std::string listing;
  for (const auto& r : runs) listing += r + ":\n" + ListTree(r);
  INFO("n2 quarantine:\n" << listing);
  REQUIRE(runs.size() == 1);
  const std::string q = runs[0];
  const std::string manifest = ReadAll(q + "/MANIFEST");
  printf("SPLITBRAIN n2 quarantine %s\nMANIFEST:\n%s", q.c_str(), manifest.c_str());
  INFO("MANIFEST:\n" << manifest);
  CHECK(ReadAll(q + "/A") == a2);
  CHECK(ReadAll(q + "/C") == c2);
  for (const auto& [name, before] : {std::pair<const char*, struct stat>{"A", lost_a}, {"C", lost_c}}) {
    struct stat saved;
    INFO(name);
    REQUIRE(lstat((q + "/" + name).c_str(), &saved) == 0);
    CHECK((saved.st_mode & 07777) == (before.st_mode & 07777));
    CHECK(saved.st_uid == before.st_uid);
    CHECK(saved.st_mtim.tv_sec == before.st_mtim.tv_sec);
    CHECK(saved.st_mtim.tv_nsec == before.st_mtim.tv_nsec);
  }
  CHECK(manifest.find("file " + std::to_string(a2.size()) + " A\n") != std::string::npos);
  CHECK(manifest.find("file " + std::to_string(c2.size()) + " C\n") != std::string::npos);
  // Nothing n2 did not have or did not lose: no D (n2 had deleted it), no B (created), no E (equal).
  CHECK_FALSE(Exists(q + "/sub/D"));
  CHECK_FALSE(Exists(q + "/sub/B"));
  CHECK_FALSE(Exists(q + "/E"));
  std::istringstream lines(manifest);
  int entries = 0;
  for (std::string l; std::getline(lines, l);) entries += !l.empty();
  CHECK(entries == 2);
  // The resolution is logged on n2's fs with where the quarantine is.
  CHECK(ReadAll(c.Dir(2) + "/fs-data.log").find("split brain resolved") != std::string::npos);
}
