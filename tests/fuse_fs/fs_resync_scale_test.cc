// A full resync at scale: the primary's directory holds many small files (HAMIRROR_SCALE_FILES,
// default 100,000: 100 directories of 0-4 KiB files) and 3 large ones (32 MiB each); the secondary's
// is an identical copy (cp -a) but for a few files changed, missing or extra. With no record the first
// connection compares everything by block checksums: the trees must end identical, and only the
// differing blocks may be sent (bytes_sent close to the differing bytes, computed here block by block).
// wire_bytes, bytes_sent and the elapsed time are printed. The trees are on a tmpfs (see below); the
// whole case takes about 30 s here at 100,000 files, the resync itself about 20 s.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
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
constexpr uint64_t kLarge = 32 * kMiB;
constexpr int kDirs = 100;

using Clock = std::chrono::steady_clock;
double Secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

void Fill(std::mt19937_64& rng, char* p, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const uint64_t v = rng();
    memcpy(p + i, &v, 8);
  }
  for (; i < n; ++i) p[i] = static_cast<char>(rng());
}

bool WriteFile(const std::string& path, const char* data, size_t n) {
  int fd = open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  bool ok = n == 0 || write(fd, data, n) == static_cast<ssize_t>(n);
  return close(fd) == 0 && ok;
}

}  // namespace

TEST_CASE("resync scale: a full compare of a large tree sends only the blocks that differ",
          "[fuse_fs][resync][scale]") {
  const char* env_files = getenv("HAMIRROR_SCALE_FILES");
  const int files = env_files && *env_files ? atoi(env_files) : 100000;
  REQUIRE(files >= kDirs);
  const int per_dir = files / kDirs;
  const char* env_seed = getenv("HAMIRROR_SEED");
  const uint64_t seed = env_seed && *env_seed ? strtoull(env_seed, nullptr, 0) : std::random_device{}();

  // The two trees live on a tmpfs of their own (about 1 GiB of memory at 100,000 files): creating and
  // removing 200,000 files on this VM's disk took from 5 to 60 s depending on the writeback left by
  // earlier tests, which has nothing to do with the resync. HAMIRROR_SCALE_ON_DISK=1 keeps them in $TMPDIR.
  // The control sockets and the records stay on the disk.
  TempDir tmp("hamirror-resync-scale");
  const char* env_disk = getenv("HAMIRROR_SCALE_ON_DISK");
  const bool on_disk = env_disk && *env_disk && strcmp(env_disk, "0") != 0;
  const std::string trees = tmp.Sub("trees");
  REQUIRE(mkdir(trees.c_str(), 0755) == 0);
  if (!on_disk) REQUIRE(mount("tmpfs", trees.c_str(), "tmpfs", 0, "size=4g") == 0);  // (unmounted by tmp)
  const std::string a = trees + "/a", b = trees + "/b";
  REQUIRE(mkdir(a.c_str(), 0755) == 0);
  printf("resync scale: %d small files (%d dirs x %d), 3 x 32 MiB, on %s, seed %llu\n", kDirs * per_dir,
         kDirs, per_dir, on_disk ? "the disk" : "a tmpfs", static_cast<unsigned long long>(seed));
  fflush(stdout);
  std::mt19937_64 rng(seed);

  // --- the primary's tree, then the secondary's copy (cp -a: same content, modes, times).
  auto t = Clock::now();
  std::vector<char> buf(kLarge);
  int failed = 0;  // (one REQUIRE for all: 100,000 assertions would only slow the loop down)
  for (int d = 0; d < kDirs; ++d) {
    const std::string dir = a + Name("/d", d);
    REQUIRE(mkdir(dir.c_str(), 0755) == 0);
    for (int f = 0; f < per_dir; ++f) {
      const size_t n = rng() % (4 * kKiB + 1);
      Fill(rng, buf.data(), n);
      failed += !WriteFile(dir + Name("/f", f), buf.data(), n);
    }
  }
  REQUIRE(failed == 0);
  for (int k = 0; k < 3; ++k) {
    Fill(rng, buf.data(), kLarge);
    REQUIRE(WriteFile(a + Name("/large", k), buf.data(), kLarge));
  }
  const double make_s = Secs(Clock::now() - t);
  t = Clock::now();
  int code = -1;
  std::string out;
  REQUIRE(RunCommand({"cp", "-a", a, b}, 300s, &code, &out).ok());
  INFO(out);
  REQUIRE(code == 0);
  const double copy_s = Secs(Clock::now() - t);

  // --- a few differences on the secondary.
  std::vector<std::string> touched;  // relative paths whose differing bytes count
  // Small files: 20 changed (first bytes), 10 missing, 10 extra; one directory missing, one extra.
  for (int i = 0; i < 20; ++i) {
    const std::string rel = Name("d", rng() % kDirs) + Name("/f", rng() % per_dir);
    if (std::filesystem::file_size(b + "/" + rel) == 0) continue;
    REQUIRE(PwriteFile(b + "/" + rel, "stale", 0));
    touched.push_back(rel);
  }
  for (int i = 0; i < 10; ++i) {
    const std::string rel = Name("d", rng() % kDirs) + Name("/f", rng() % per_dir);
    std::error_code ec;
    std::filesystem::remove(b + "/" + rel, ec);
    touched.push_back(rel);
  }
  for (int i = 0; i < 10; ++i)
    REQUIRE(WriteFile(b + Name("/d", rng() % kDirs) + Name("/extra", i), "extra", 5));
  const std::string gone_dir = Name("d", kDirs - 1);
  std::filesystem::remove_all(b + "/" + gone_dir);
  for (int f = 0; f < per_dir; ++f) touched.push_back(gone_dir + Name("/f", f));
  REQUIRE(mkdir((b + "/extra_dir").c_str(), 0755) == 0);
  REQUIRE(WriteFile(b + "/extra_dir/x", "x", 1));
  // Large files: 6 scattered 64 KiB blocks rewritten in large0, large1 cut to 20 MiB, large2 equal.
  for (int i = 0; i < 6; ++i) {
    std::string d(kBlock, '\0');
    Fill(rng, d.data(), d.size());
    REQUIRE(PwriteFile(b + "/large0", d, (rng() % (kLarge / kBlock)) * kBlock));
  }
  REQUIRE(truncate((b + "/large1").c_str(), 20 * kMiB) == 0);
  touched.push_back("large0");
  touched.push_back("large1");
  std::sort(touched.begin(), touched.end());
  touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
  uint64_t differing = 0;
  for (const auto& rel : touched) differing += DifferingBytes(a + "/" + rel, b + "/" + rel);
  printf(
      "resync scale: tree made in %.1f s, copied (cp -a) in %.1f s; %zu files touched, %llu bytes differ\n",
      make_s, copy_s, touched.size(), static_cast<unsigned long long>(differing));
  fflush(stdout);

  const int under_a = open(a.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  const int under_b = open(b.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  REQUIRE(under_a >= 0);
  REQUIRE(under_b >= 0);
  const std::string ua = "/proc/self/fd/" + std::to_string(under_a) + "/.";
  const std::string ub = "/proc/self/fd/" + std::to_string(under_b) + "/.";
  REQUIRE(CompareTrees(ua, ub) != "");

  // --- the pair; the first connection runs a full resync.
  const std::string addr = "127.0.0.1:" + std::to_string(PickFreePort());
  FsProcess primary, secondary;
  REQUIRE(
      secondary.Start(b, tmp.Sub("s.sock"), {"secondary", "--listen", addr, "--insecure"}, tmp.Sub("s.log"))
          .ok());
  t = Clock::now();
  REQUIRE(
      primary.Start(a, tmp.Sub("p.sock"), {"primary", "--peer", addr, "--insecure"}, tmp.Sub("p.log")).ok());
  FsStatus p, s;
  const bool done = WaitUntil(
      [&] {
        if (!primary.GetStatus(&p).ok() || p.resync().phase() == "failed")
          return p.resync().phase() == "failed";
        return p.resync().phase() == "done" && secondary.GetStatus(&s).ok() &&
               s.resync_target().phase() == "done" && s.resync_target().id() == p.resync().id();
      },
      600s);
  const double wall_s = Secs(Clock::now() - t);
  const auto& r = p.resync();
  printf(
      "resync scale: %s %s in %.1f s (resync's elapsed %.1f s): files %llu, dirs %llu, compared %llu bytes, "
      "bytes_sent %llu (differing %llu), wire_bytes %llu, pass %u\n",
      r.full() ? "full" : "incremental", r.phase().c_str(), wall_s, r.elapsed_s(),
      static_cast<unsigned long long>(r.files_done()), static_cast<unsigned long long>(r.dirs_done()),
      static_cast<unsigned long long>(r.bytes_done()), static_cast<unsigned long long>(r.bytes_sent()),
      static_cast<unsigned long long>(differing), static_cast<unsigned long long>(r.wire_bytes()), r.pass());
  fflush(stdout);
  INFO("primary: " << p.ShortDebugString() << "\nsecondary: " << s.ShortDebugString() << "\n--- p.log:\n"
                   << FileTail(tmp.Sub("p.log"), 4000) << "\n--- s.log:\n"
                   << FileTail(tmp.Sub("s.log"), 4000));
  REQUIRE(done);
  REQUIRE(r.phase() == "done");
  CHECK(r.full());
  CHECK(r.files_done() >= static_cast<uint64_t>(kDirs * per_dir));
  CHECK(r.bytes_done() >= 3 * kLarge);
  // Equal blocks are not sent: what was sent is what differs (at most a little more).
  CHECK(r.bytes_sent() >= differing);
  CHECK(r.bytes_sent() <= differing + differing / 20 + kBlock);
  // On the wire: the differing bytes, the checksums (8 bytes per 64 KiB block) and per-file queries and
  // listings; far below the 96 MiB of large files alone.
  CHECK(r.wire_bytes() < differing + 64 * kMiB);
  CHECK(p.peer_errors() == 0);

  t = Clock::now();
  const std::string diff = CompareTrees(ua, ub);
  printf("resync scale: trees compared in %.1f s\n", Secs(Clock::now() - t));
  CHECK(diff == "");
  CHECK(WaitUntil([&] { return primary.GetStatus(&p).ok() && p.in_sync(); }, 10s));
  CHECK(primary.Stop().ok());
  CHECK(secondary.Stop().ok());
  close(under_a);
  close(under_b);
}
