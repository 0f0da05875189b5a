// hamirror-fs --transport uring|auto (FUSE over io_uring, fuse_fs/uring_transport.h) with real mounts.
// The kernel's switch (module parameter fuse.enable_uring) is set by the test and restored to its
// previous value at the end, failures included; without the parameter (or the right to write it) the
// tests say why and pass without checking anything else.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/fuse_fs/fs_fixture.h"
#include "tests/support/tree_compare.h"

using namespace hamirror::test;
using namespace std::chrono_literals;

namespace {

const char* const kParam = "/sys/module/fuse/parameters/enable_uring";

// Sets fuse.enable_uring for the test's duration; the destructor puts the previous value back.
class UringSwitch {
 public:
  explicit UringSwitch(bool on) {
    std::ifstream in(kParam);
    if (!(in >> previous_)) {
      reason_ = std::string(kParam) + " does not exist (kernel without FUSE over io_uring)";
      return;
    }
    if (!Write(on ? "Y" : "N")) {
      reason_ = std::string("cannot write ") + kParam + ": " + strerror(errno);
      return;
    }
    changed_ = true;
    std::ifstream check(kParam);
    std::string now;
    check >> now;
    if (now != (on ? "Y" : "N")) {
      reason_ = std::string(kParam) + " did not take the value (reads " + now + ")";
      return;
    }
    ok_ = true;
  }
  ~UringSwitch() {
    if (changed_ && !Write(previous_))
      fprintf(stderr, "WARNING: could not restore %s to %s\n", kParam, previous_.c_str());
  }
  bool ok() const { return ok_; }
  const std::string& reason() const { return reason_; }

 private:
  static bool Write(const std::string& v) {
    FILE* f = fopen(kParam, "w");
    if (f == nullptr) return false;
    const bool ok = fputs(v.c_str(), f) >= 0;
    return fclose(f) == 0 && ok;
  }
  std::string previous_, reason_;
  bool changed_ = false, ok_ = false;
};

// Aborts the FUSE connection of a mount if the guarded section does not end in time: a ring that
// stopped answering then fails the test (calls return ENOTCONN) instead of hanging it.
class MountWatchdog {
 public:
  MountWatchdog(const std::string& mount, std::chrono::seconds limit) {
    struct stat st;
    if (stat(mount.c_str(), &st) == 0 && major(st.st_dev) == 0)
      abort_path_ = "/sys/fs/fuse/connections/" + std::to_string(minor(st.st_dev)) + "/abort";
    thread_ = std::thread([this, limit] {
      std::unique_lock<std::mutex> lock(mu_);
      if (cv_.wait_for(lock, limit, [this] { return done_; })) return;
      fired_ = true;
      if (FILE* f = fopen(abort_path_.c_str(), "w")) {
        fputs("1", f);
        fclose(f);
      }
    });
  }
  ~MountWatchdog() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  bool fired() {
    std::lock_guard<std::mutex> lock(mu_);
    return fired_;
  }

 private:
  std::string abort_path_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false, fired_ = false;
  std::thread thread_;
};

uint64_t Seed() { return TestSeed("workload"); }

// The number written right before the last `marker` in a log; -1 if absent.
long NumberBefore(const std::string& log, const std::string& marker) {
  const size_t at = log.rfind(marker);
  if (at == std::string::npos) return -1;
  size_t start = at;
  while (start > 0 && isdigit(static_cast<unsigned char>(log[start - 1]))) --start;
  return start == at ? -1 : std::stol(log.substr(start, at - start));
}
// "N requests served on the ring"; and M of "M local flushes run by it" (SubmitRingFlush).
long RingRequestsServed(const std::string& log) { return NumberBefore(log, " requests served on the ring"); }
long RingFlushes(const std::string& log) { return NumberBefore(log, " local flushes run by it"); }

// The lines of a log that contain `needle`.
std::string LinesWith(const std::string& log, const std::string& needle) {
  std::string out, line;
  std::istringstream in(log);
  while (std::getline(in, line))
    if (line.find(needle) != std::string::npos) out += line + "\n";
  return out;
}

struct UringPair {
  UringPair() : a(tmp.Sub("a")), b(tmp.Sub("b")) {
    mkdir(a.c_str(), 0755);
    mkdir(b.c_str(), 0755);
    under_b = open(b.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  }
  ~UringPair() {
    primary.Kill();
    secondary.Kill();
    close(under_b);
  }
  // secondary_transport: the secondary's (default: the primary's).
  hamirror::Status Start(const std::string& transport, std::string secondary_transport = "") {
    if (secondary_transport.empty()) secondary_transport = transport;
    port = PickFreePort();
    const std::string addr = "127.0.0.1:" + std::to_string(port);
    hamirror::Status s =
        secondary.Start(b, tmp.Sub("s.sock"),
                        {"secondary", "--listen", addr, "--insecure", "--transport", secondary_transport},
                        tmp.Sub("secondary.log"));
    if (!s.ok()) return s;
    s = primary.Start(a, tmp.Sub("p.sock"),
                      {"primary", "--peer", addr, "--insecure", "--transport", transport},
                      tmp.Sub("primary.log"));
    if (!s.ok()) return s;
    hamirror::proto::FsStatus st;
    if (!WaitUntil([&] { return primary.GetStatus(&st).ok() && st.peer_connected(); }, 15s))
      return hamirror::Status::Timeout("primary never connected\n" + primary.LogTail());
    return hamirror::Status::Ok();
  }
  std::string Logs() const {
    return "--- primary:\n" + FileTail(tmp.Sub("primary.log")) + "\n--- secondary:\n" +
           FileTail(tmp.Sub("secondary.log"));
  }
  TempDir tmp;
  std::string a, b;
  int under_b = -1;
  int port = -1;
  FsProcess primary, secondary;
};

}  // namespace

TEST_CASE("hamirror-fs --transport uring: refused with a clear reason while fuse.enable_uring is off",
          "[fuse_fs][uring]") {
  UringSwitch off(false);
  if (!off.ok()) {
    WARN("skipped: " << off.reason());
    return;
  }
  TempDir tmp;
  const std::string dir = tmp.Sub("d");
  mkdir(dir.c_str(), 0755);
  int code = -1;
  std::string out;
  REQUIRE(
      RunCommand({FsBinary(), "alone", "--dir", dir, "--control", tmp.Sub("c.sock"), "--transport", "uring"},
                 20s, &code, &out)
          .ok());
  INFO(out);
  REQUIRE(code == 1);
  REQUIRE(out.find("--transport uring: the kernel's FUSE over io_uring is off") != std::string::npos);
  REQUIRE_FALSE(IsMountedAs(dir));

  SECTION("--transport auto falls back to /dev/fuse and says so") {
    FsProcess fs;
    REQUIRE(fs.Start(dir, tmp.Sub("c.sock"), {"alone", "--transport", "auto"}, tmp.Sub("auto.log")).ok());
    { std::ofstream(dir + "/f") << "x"; }
    REQUIRE(fs.Stop().ok());
    const std::string log = FileTail(tmp.Sub("auto.log"));
    INFO(log);
    REQUIRE(log.find("transport: /dev/fuse (--transport auto: the kernel's FUSE over io_uring is off") !=
            std::string::npos);
    REQUIRE(RingRequestsServed(log) == -1);
  }
}

TEST_CASE(
    "hamirror-fs --transport uring: primary+secondary, randomized workload and O_DSYNC writes replicate",
    "[fuse_fs][uring]") {
  UringSwitch on(true);
  if (!on.ok()) {
    WARN("skipped: " << on.reason());
    return;
  }
  constexpr int kRandomOps = 700;
  UringPair pair;
  // The secondary with auto: with the switch on, it takes the ring too.
  hamirror::Status started = pair.Start("uring", "auto");
  INFO(pair.Logs());
  REQUIRE(started.ok());
  {
    MountWatchdog watchdog(pair.a, 120s);
    // O_DSYNC 4 KiB writes: each one is on the secondary's disk when write(2) returns.
    int fd = open((pair.a + "/dsync").c_str(), O_CREAT | O_WRONLY | O_DSYNC | O_CLOEXEC, 0644);
    REQUIRE(fd >= 0);
    std::string block(4096, '\0');
    for (int i = 0; i < 64; ++i) {
      memset(block.data(), 'a' + i % 26, block.size());
      REQUIRE(pwrite(fd, block.data(), block.size(), static_cast<off_t>(i) * 4096) == 4096);
      int under = openat(pair.under_b, "dsync", O_RDONLY | O_CLOEXEC);
      REQUIRE(under >= 0);
      std::string got(4096, '\0');
      const ssize_t n = pread(under, got.data(), got.size(), static_cast<off_t>(i) * 4096);
      close(under);
      REQUIRE(n == 4096);
      REQUIRE(got == block);
    }
    close(fd);
    // fsync and fdatasync after plain writes: the data is on the secondary when they return.
    fd = open((pair.a + "/flushed").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    REQUIRE(fd >= 0);
    for (int i = 0; i < 16; ++i) {
      const std::string piece(512 + i, static_cast<char>('A' + i));
      REQUIRE(pwrite(fd, piece.data(), piece.size(), static_cast<off_t>(i) * 8192) ==
              static_cast<ssize_t>(piece.size()));
      REQUIRE((i % 2 == 0 ? fsync(fd) : fdatasync(fd)) == 0);
      int under = openat(pair.under_b, "flushed", O_RDONLY | O_CLOEXEC);
      REQUIRE(under >= 0);
      std::string got(piece.size(), '\0');
      const ssize_t n = pread(under, got.data(), got.size(), static_cast<off_t>(i) * 8192);
      close(under);
      REQUIRE(n == static_cast<ssize_t>(piece.size()));
      REQUIRE(got == piece);
    }
    close(fd);
    // Four O_DSYNC writers at once: a flush with other requests of its queue in flight runs on the
    // ring (a lone one inline); every write is on the secondary when it returns.
    std::vector<std::thread> writers;
    std::atomic<int> wrong{0};
    for (int w = 0; w < 4; ++w) {
      writers.emplace_back([&, w] {
        const std::string name = "/concurrent" + std::to_string(w);
        int wfd = open((pair.a + name).c_str(), O_CREAT | O_WRONLY | O_DSYNC | O_CLOEXEC, 0644);
        if (wfd < 0) {
          ++wrong;
          return;
        }
        const std::string data(4096, static_cast<char>('0' + w));
        for (int i = 0; i < 48; ++i)
          if (pwrite(wfd, data.data(), data.size(), static_cast<off_t>(i) * 4096) != 4096) ++wrong;
        close(wfd);
      });
    }
    for (std::thread& t : writers) t.join();
    REQUIRE(wrong == 0);
    for (int w = 0; w < 4; ++w) {
      struct stat st;
      REQUIRE(fstatat(pair.under_b, ("concurrent" + std::to_string(w)).c_str(), &st, 0) == 0);
      REQUIRE(st.st_size == 48 * 4096);
    }
    // Reads come back through the ring too (no splice there).
    std::ifstream in(pair.a + "/dsync", std::ios::binary);
    std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    REQUIRE(all.size() == 64 * 4096);
    REQUIRE(all.substr(63 * 4096, 4096) == block);

    const uint64_t seed = Seed();
    const std::string summary = RunRandomWorkload(pair.a, seed, kRandomOps);
    INFO("seed " << seed << ": " << summary);
    REQUIRE_FALSE(watchdog.fired());
    hamirror::proto::FsStatus st;
    REQUIRE(pair.primary.GetStatus(&st).ok());
    INFO("primary status: " << st.ShortDebugString());
    REQUIRE(st.role() == hamirror::proto::FS_ROLE_PRIMARY);
    CHECK(st.peer_errors() == 0);
  }
  REQUIRE(pair.primary.Stop().ok());
  REQUIRE(pair.secondary.Stop().ok());
  const std::string plog = FileTail(pair.tmp.Sub("primary.log"), 1 << 20);
  REQUIRE(plog.find("transport: FUSE over io_uring (") != std::string::npos);
  // The requests went over the ring, not /dev/fuse: thousands for this workload.
  REQUIRE(RingRequestsServed(plog) > 1000);
  // Some local flushes ran on the ring (the concurrent writers'), not in the queue thread.
  INFO(LinesWith(plog, "requests served on the ring"));
  REQUIRE(RingFlushes(plog) > 0);
  // At most one flush per request that flushes: the O_DSYNC writes, the fsyncs, the writers' writes
  // and (at most) every operation of the randomized workload.
  REQUIRE(RingFlushes(plog) <= 64 + 16 + 4 * 48 + kRandomOps);
  CHECK(LinesWith(plog, "request refused") == "");  // no entry the rebuild did not understand
  CHECK(LinesWith(plog, "commit refused") == "");
  CHECK(LinesWith(plog, "does not fit its entry") == "");
  REQUIRE(FileTail(pair.tmp.Sub("secondary.log"), 1 << 20).find("transport: FUSE over io_uring (") !=
          std::string::npos);
  REQUIRE(CompareTrees(pair.a, pair.b) == "");
}

TEST_CASE("hamirror-fs --transport uring: SIGTERM while writes are in flight ends cleanly, nothing hangs",
          "[fuse_fs][uring]") {
  UringSwitch on(true);
  if (!on.ok()) {
    WARN("skipped: " << on.reason());
    return;
  }
  UringPair pair;
  hamirror::Status started = pair.Start("uring");
  INFO(pair.Logs());
  REQUIRE(started.ok());
  std::atomic<bool> stop{false};
  std::atomic<int> writes{0};
  MountWatchdog watchdog(pair.a, 60s);
  std::vector<std::thread> writers;
  for (int t = 0; t < 4; ++t) {
    writers.emplace_back([&, t] {
      const std::string path = pair.a + "/w" + std::to_string(t);
      std::string block(64 * 1024, static_cast<char>('a' + t));
      // Bounded: stops when told, or after 20,000 writes.
      for (int i = 0; i < 20000 && !stop.load(); ++i) {
        int fd = open(path.c_str(), O_CREAT | O_WRONLY | O_DSYNC | O_CLOEXEC, 0644);
        if (fd < 0) continue;
        if (pwrite(fd, block.data(), block.size(), static_cast<off_t>(i % 64) * 65536) > 0)
          writes.fetch_add(1);
        close(fd);
      }
    });
  }
  REQUIRE(WaitUntil([&] { return writes.load() >= 200; }, 20s));
  // Stop while the writers keep going: in-flight requests get their answers, the daemon exits 0.
  hamirror::Status stopped = pair.primary.Stop();
  stop.store(true);
  for (auto& w : writers) w.join();
  INFO(stopped.ToString());
  REQUIRE_FALSE(watchdog.fired());
  REQUIRE(stopped.ok());
  REQUIRE(pair.secondary.Stop().ok());
  REQUIRE(RingRequestsServed(FileTail(pair.tmp.Sub("primary.log"), 1 << 20)) > 0);
}
