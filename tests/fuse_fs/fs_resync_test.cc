// Reintegration (resync) of hamirror-fs, end to end: a primary and a secondary on one machine (two
// directories, gRPC over 127.0.0.1), real FUSE mounts. Every test ends with CompareTrees of the two real
// directories underneath the mounts (read through O_PATH descriptors opened before mounting), so a resync
// that is missing, declares success without copying, or copies the wrong thing fails here; each test
// starts from copies that differ (checked), and most check what the resync reports (full or
// incremental, bytes compared and sent) and print it.
//
// Covered: the first sync of a non-empty tree over a stale one (every kind of entry, metadata, hard
// links, the root's own metadata); equal blocks not sent; incremental resync after the secondary was
// away (data, namespace, metadata-only changes; renames over look-alikes); live writes and a randomized
// workload during a resync; a primary crash under load (the record on disk and after restart); a
// damaged record (full compare); a resync interrupted by the death of either side.
#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
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

uint64_t Seed() { return TestSeed("resync"); }

bool WriteText(const std::string& path, const std::string& text, mode_t mode = 0644) {
  int fd = open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, mode);
  if (fd < 0) return false;
  bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ok = fchmod(fd, mode) == 0 && ok;
  return close(fd) == 0 && ok;
}

// "" when both files hold the same bytes, else where they first differ.
std::string SameContent(const std::string& a, const std::string& b) {
  const std::string da = ReadAll(a), db = ReadAll(b);
  if (da == db) return "";
  size_t i = 0;
  while (i < da.size() && i < db.size() && da[i] == db[i]) ++i;
  return "differ at offset " + std::to_string(i) + " (sizes " + std::to_string(da.size()) + " and " +
         std::to_string(db.size()) + ")";
}

std::string FileFrom(const std::string& path, size_t offset) {
  std::ifstream in(path, std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return s.size() > offset ? s.substr(offset) : "";
}

size_t FileSize(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? static_cast<size_t>(st.st_size) : 0;
}

void PrintResync(const char* label, const FsStatus& st) {
  const auto& r = st.resync();
  printf(
      "%s: resync id=%llu phase=%s full=%d pass=%u bytes_total=%llu bytes_done=%llu bytes_sent=%llu "
      "wire_bytes=%llu files_done=%llu dirs_done=%llu elapsed_s=%.2f reason=\"%s\" error=\"%s\"\n",
      label, static_cast<unsigned long long>(r.id()), r.phase().c_str(), r.full() ? 1 : 0, r.pass(),
      static_cast<unsigned long long>(r.bytes_total()), static_cast<unsigned long long>(r.bytes_done()),
      static_cast<unsigned long long>(r.bytes_sent()), static_cast<unsigned long long>(r.wire_bytes()),
      static_cast<unsigned long long>(r.files_done()), static_cast<unsigned long long>(r.dirs_done()),
      r.elapsed_s(), r.reason().c_str(), r.error().c_str());
  fflush(stdout);
}

// The record file as it lies on disk (format in replicator/zone_record.h): whether its last entry is the
// "clean" mark and how many zone entries it holds. Parsed here, without checksums, to look at the file a
// crash left before hamirror-fs reads it again.
struct RecordFileView {
  bool readable = false;
  uint64_t entries = 0;
  uint64_t zone_entries = 0;
  int last_type = -1;
};

RecordFileView ViewRecordFile(const std::string& path) {
  RecordFileView v;
  std::ifstream in(path, std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (s.size() < 32 || s.compare(0, 8, "HMZONES\n") != 0) return v;
  v.readable = true;
  for (size_t off = 32; off + 32 <= s.size(); off += 32) {
    const int type = static_cast<unsigned char>(s[off]);
    ++v.entries;
    if (type == 3) ++v.zone_entries;
    v.last_type = type;
  }
  return v;
}

// A primary over a/, a secondary over b/ (one loopback port kept across restarts), their record files in
// the temporary directory (the control sockets' directory: the default --state-dir).
class ResyncPair {
 public:
  ResyncPair() : a_(tmp_.Sub("a")), b_(tmp_.Sub("b")), port_(PickFreePort()) {
    mkdir(a_.c_str(), 0755);
    mkdir(b_.c_str(), 0755);
    under_a_ = open(a_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    under_b_ = open(b_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  }
  ~ResyncPair() {
    primary.Kill();
    secondary.Kill();
    close(under_a_);
    close(under_b_);
  }

  hamirror::Status StartSecondary() {
    return secondary.Start(b_, tmp_.Sub("s.sock"), {"secondary", "--listen", Addr(), "--insecure"},
                           SecondaryLog());
  }
  // Starts the primary (options kept for restarts). wait_connected: until the stream is up.
  hamirror::Status StartPrimary(bool wait_connected = true) {
    std::vector<std::string> args = {
        "primary", "--peer", Addr(), "--insecure", "--send-timeout-ms", std::to_string(send_timeout_ms)};
    args.insert(args.end(), primary_extra.begin(), primary_extra.end());
    hamirror::Status s = primary.Start(a_, tmp_.Sub("p.sock"), args, PrimaryLog());
    if (!s.ok() || !wait_connected) return s;
    return WaitConnected();
  }
  hamirror::Status Start() {
    hamirror::Status s = StartSecondary();
    if (!s.ok()) return s;
    return StartPrimary();
  }
  hamirror::Status WaitConnected() {
    FsStatus st;
    bool ok = WaitUntil(
        [&] {
          return primary.GetStatus(&st).ok() && st.peer_connected() &&
                 st.role() == hamirror::proto::FS_ROLE_PRIMARY;
        },
        20s);
    if (!ok)
      return hamirror::Status::Timeout("primary never connected: " + st.ShortDebugString() + "\n" + Logs());
    return hamirror::Status::Ok();
  }

  FsStatus Primary() {
    FsStatus st;
    (void)primary.GetStatus(&st);
    return st;
  }

  // Waits until the primary's resync with an id above after_id is done and the secondary saw the same
  // resync end well. Stops early when the primary gives up (failed). *why: the last statuses.
  bool WaitResyncDone(uint64_t after_id, std::chrono::milliseconds timeout, std::string* why) {
    FsStatus p, s;
    bool failed = false;
    bool ok = WaitUntil(
        [&] {
          if (!primary.GetStatus(&p).ok()) return false;
          if (p.resync().id() > after_id && p.resync().phase() == "failed") {
            failed = true;
            return true;
          }
          if (p.resync().id() <= after_id || p.resync().phase() != "done") return false;
          return secondary.GetStatus(&s).ok() && s.resync_target().phase() == "done" &&
                 s.resync_target().id() == p.resync().id();
        },
        timeout);
    *why = "primary: " + p.ShortDebugString() + "\nsecondary: " + s.ShortDebugString() + "\n" + Logs();
    return ok && !failed;
  }

  // Both trees as they lie underneath the mounts ("/." so that lstat sees the directory itself, not the
  // /proc magic link).
  std::string Compare(const TreeCompareOptions& options = {}) {
    return CompareTrees("/proc/self/fd/" + std::to_string(under_a_) + "/.",
                        "/proc/self/fd/" + std::to_string(under_b_) + "/.", options);
  }

  // Every difference (up to max), not only the first: each one reported is ignored in the next round.
  std::vector<std::string> AllDifferences(size_t max = 30) {
    std::vector<std::string> out;
    TreeCompareOptions options;
    while (out.size() < max) {
      const std::string d = Compare(options);
      if (d.empty()) break;
      out.push_back(d);
      const size_t colon = d.find(':');
      const std::string path = d.substr(0, colon);
      if (colon == std::string::npos || path == "." ||
          std::find(options.ignore.begin(), options.ignore.end(), path) != options.ignore.end())
        break;  // cannot be skipped
      options.ignore.push_back(path);
    }
    return out;
  }

  std::string Addr() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string PrimaryLog() const { return tmp_.Sub("primary.log"); }
  std::string SecondaryLog() const { return tmp_.Sub("secondary.log"); }
  // The primary's record file: <state dir>/fs-a[-<hash of the path>].record (state dir: the control
  // socket's directory).
  std::string PrimaryRecord() const {
    std::string found;
    if (DIR* d = opendir(tmp_.path().c_str())) {
      while (const dirent* e = readdir(d)) {
        const std::string n = e->d_name;
        if (n.rfind("fs-a", 0) == 0 && n.size() > 7 && n.compare(n.size() - 7, 7, ".record") == 0) found = n;
      }
      closedir(d);
    }
    return found.empty() ? "" : tmp_.Sub(found);
  }
  std::string Logs() const {
    return "--- primary.log:\n" + FileTail(PrimaryLog(), 6000) + "\n--- secondary.log:\n" +
           FileTail(SecondaryLog(), 6000);
  }
  std::string A(const std::string& rel) const { return a_ + "/" + rel; }
  std::string B(const std::string& rel) const { return b_ + "/" + rel; }
  // Paths underneath the mounts (the real files), to read them or to change them behind hamirror's back.
  std::string UnderA(const std::string& rel) const {
    return "/proc/self/fd/" + std::to_string(under_a_) + "/" + rel;
  }
  std::string UnderB(const std::string& rel) const {
    return "/proc/self/fd/" + std::to_string(under_b_) + "/" + rel;
  }

  TempDir tmp_{"hamirror-resync"};
  std::string a_, b_;
  int under_a_ = -1, under_b_ = -1;
  int port_ = -1;
  int send_timeout_ms = 30000;
  std::vector<std::string> primary_extra;
  FsProcess primary, secondary;
};

}  // namespace

// ---------------------------------------------------------------------------------------------------

TEST_CASE("resync: first connection of a non-empty primary makes the secondary's stale tree identical",
          "[fuse_fs][resync]") {
  ResyncPair pair;
  // --- the primary's tree
  REQUIRE(MakeFile(pair.A("top.bin"), 1536 * kKiB, 1));
  REQUIRE(mkdir(pair.A("d1").c_str(), 0750) == 0);
  REQUIRE(mkdir(pair.A("d1/d2").c_str(), 0755) == 0);
  REQUIRE(MakeFile(pair.A("d1/d2/deep.bin"), 2 * kMiB + 12345, 2));
  REQUIRE(WriteText(pair.A("d1/small.txt"), "small file\n"));
  REQUIRE(WriteText(pair.A("empty"), ""));
  REQUIRE(symlink("d1/small.txt", pair.A("link").c_str()) == 0);
  REQUIRE(symlink("target-on-a", pair.A("link2").c_str()) == 0);
  REQUIRE(WriteText(pair.A("xattrs.txt"), "has xattrs"));
  REQUIRE(setxattr(pair.A("xattrs.txt").c_str(), "user.alpha", "one", 3, 0) == 0);
  const std::string long_value(300, 'v');
  REQUIRE(setxattr(pair.A("xattrs.txt").c_str(), "user.beta", long_value.data(), long_value.size(), 0) == 0);
  REQUIRE(setxattr(pair.A("d1").c_str(), "user.dir", "on-a-dir", 8, 0) == 0);
  REQUIRE(MakeFile(pair.A("hard1"), 200 * kKiB, 3));
  REQUIRE(link(pair.A("hard1").c_str(), pair.A("d1/hard2").c_str()) == 0);
  REQUIRE(MakeFile(pair.A("secret"), 70 * kKiB, 4, 0600));
  REQUIRE(chown(pair.A("secret").c_str(), 1234, 1234) == 0);
  REQUIRE(MakeFile(pair.A("shared.bin"), 3 * kMiB, 5));         // on b: other content, other size
  REQUIRE(MakeFile(pair.A("meta_only"), 100 * kKiB, 6, 0640));  // on b: same bytes, other metadata
  REQUIRE(chown(pair.A("meta_only").c_str(), 1234, 4321) == 0);
  REQUIRE(setxattr(pair.A("meta_only").c_str(), "user.m", "m", 1, 0) == 0);
  REQUIRE(mkdir(pair.A("conflict").c_str(), 0755) == 0);  // on b: a regular file
  REQUIRE(WriteText(pair.A("conflict/inner.txt"), "inside a directory"));
  REQUIRE(WriteText(pair.A("conflict2"), "a file here"));  // on b: a directory tree
  // --- the secondary's stale tree
  REQUIRE(MakeFile(pair.B("shared.bin"), 1 * kMiB + 7, 50));
  REQUIRE(MakeFile(pair.B("meta_only"), 100 * kKiB, 6, 0644));
  REQUIRE(setxattr(pair.B("meta_only").c_str(), "user.stale", "s", 1, 0) == 0);
  REQUIRE(WriteText(pair.B("extra1.txt"), "only on the secondary"));
  REQUIRE(mkdir(pair.B("extra_dir").c_str(), 0755) == 0);
  REQUIRE(mkdir(pair.B("extra_dir/sub").c_str(), 0755) == 0);
  REQUIRE(mkdir(pair.B("extra_dir/sub/empty_sub").c_str(), 0700) == 0);
  REQUIRE(MakeFile(pair.B("extra_dir/sub/x.bin"), 300 * kKiB, 51));
  REQUIRE(WriteText(pair.B("extra_dir/y"), "y"));
  REQUIRE(symlink("../nowhere", pair.B("extra_dir/dangling").c_str()) == 0);
  REQUIRE(mkfifo(pair.B("extra_fifo").c_str(), 0644) == 0);
  REQUIRE(WriteText(pair.B("conflict"), "a file where the primary has a directory"));
  REQUIRE(mkdir(pair.B("conflict2").c_str(), 0755) == 0);
  REQUIRE(mkdir(pair.B("conflict2/deeper").c_str(), 0755) == 0);
  REQUIRE(WriteText(pair.B("conflict2/deeper/f"), "deep stale"));
  REQUIRE(symlink("target-on-b", pair.B("link2").c_str()) == 0);
  REQUIRE(MakeFile(pair.B("hard1"), 10 * kKiB, 52));  // stale, and hard-linked to an extra name
  REQUIRE(link(pair.B("hard1").c_str(), pair.B("extra_hard").c_str()) == 0);
  // Two separate files on the primary that are one inode (two names) on the secondary.
  REQUIRE(MakeFile(pair.A("sep1"), 100 * kKiB, 80));
  REQUIRE(MakeFile(pair.A("sep2"), 100 * kKiB, 81));
  REQUIRE(MakeFile(pair.B("sep1"), 50 * kKiB, 82));
  REQUIRE(link(pair.B("sep1").c_str(), pair.B("sep2").c_str()) == 0);
  // Same leading bytes, other lengths: only the size (or the tail) differs.
  REQUIRE(MakeFile(pair.A("longer_on_b"), 1 * kMiB, 83));
  REQUIRE(MakeFile(pair.B("longer_on_b"), 3 * kMiB, 83));
  REQUIRE(MakeFile(pair.A("shorter_on_b"), 2 * kMiB + 5, 84));
  REQUIRE(MakeFile(pair.B("shorter_on_b"), 1 * kMiB, 84));
  REQUIRE(MakeFile(pair.A("setuid"), 10 * kKiB, 85, 04755));
  REQUIRE(chown(pair.A("setuid").c_str(), 1234, 1234) == 0);
  REQUIRE(chmod(pair.A("setuid").c_str(), 04755) == 0);  // chown dropped it
  // A directory on both sides with other metadata.
  REQUIRE(mkdir(pair.A("samedir").c_str(), 0700) == 0);
  REQUIRE(chown(pair.A("samedir").c_str(), 1234, 1234) == 0);
  REQUIRE(setxattr(pair.A("samedir").c_str(), "user.d", "new", 3, 0) == 0);
  REQUIRE(mkdir(pair.B("samedir").c_str(), 0755) == 0);
  REQUIRE(setxattr(pair.B("samedir").c_str(), "user.old", "old", 3, 0) == 0);
  REQUIRE(pair.Compare() != "");

  REQUIRE(pair.Start().ok());
  {
    // The comparisons read the real directories, not the mounts over them.
    struct stat mounted, under;
    REQUIRE(stat(pair.a_.c_str(), &mounted) == 0);
    REQUIRE(stat(("/proc/self/fd/" + std::to_string(pair.under_a_) + "/.").c_str(), &under) == 0);
    REQUIRE(mounted.st_dev != under.st_dev);
  }
  std::string why;
  const bool done = pair.WaitResyncDone(0, 60s, &why);
  INFO(why);
  REQUIRE(done);
  FsStatus p = pair.Primary();
  PrintResync("first sync", p);
  CHECK(p.resync().full());  // no record yet: history unknown
  CHECK(p.resync().bytes_done() >= 6 * kMiB);
  CHECK(p.resync().bytes_sent() >= 6 * kMiB);
  CHECK(p.resync().files_done() >= 8);
  CHECK(p.peer_errors() == 0);
  // Everything but the hard links first (so that one difference does not hide another), then each
  // link case, then all.
  TreeCompareOptions but_links;
  but_links.ignore = {"hard1", "d1/hard2", "sep1", "sep2"};
  CHECK(pair.Compare(but_links) == "");
  struct stat st;
  CHECK((lstat(pair.UnderB("d1/hard2").c_str(), &st) == 0 && st.st_nlink == 2));  // one inode, two names
  CHECK((lstat(pair.UnderB("sep1").c_str(), &st) == 0 && st.st_nlink == 1));      // two inodes
  CHECK(SameContent(pair.UnderA("sep1"), pair.UnderB("sep1")) == "");
  CHECK(SameContent(pair.UnderA("sep2"), pair.UnderB("sep2")) == "");
  REQUIRE(pair.Compare() == "");
  CHECK(WaitUntil([&] { return pair.Primary().in_sync(); }, 10s));
  REQUIRE(pair.primary.Stop().ok());
  REQUIRE(pair.secondary.Stop().ok());
  REQUIRE(CompareTrees(pair.a_, pair.b_) == "");
}

TEST_CASE("resync: the replicated directory's own mode, owner and xattrs are made identical too",
          "[fuse_fs][resync]") {
  // The root is replicated like any directory (chmod/chown/setxattr on the mount's root are shipped
  // live), so a resync must reconcile its metadata as it does its children's.
  ResyncPair pair;
  REQUIRE(WriteText(pair.A("f"), "f"));
  std::string why;
  SECTION("first sync of differing roots") {
    REQUIRE(chmod(pair.a_.c_str(), 0751) == 0);
    REQUIRE(chown(pair.a_.c_str(), 1234, 1234) == 0);
    REQUIRE(setxattr(pair.a_.c_str(), "user.root", "r", 1, 0) == 0);
    REQUIRE(setxattr(pair.b_.c_str(), "user.stale_root", "s", 1, 0) == 0);
    REQUIRE(pair.Start().ok());
    const bool done = pair.WaitResyncDone(0, 60s, &why);
    INFO(why);
    REQUIRE(done);
    CHECK(pair.Primary().resync().full());
  }
  SECTION("root changed while the peer was away") {
    REQUIRE(pair.Start().ok());
    bool done = pair.WaitResyncDone(0, 60s, &why);
    INFO(why);
    REQUIRE(done);
    const uint64_t first_id = pair.Primary().resync().id();
    REQUIRE(pair.Compare() == "");
    FsStatus st;
    REQUIRE(pair.primary.SetRole(hamirror::proto::FS_ROLE_ALONE, "", &st).ok());
    REQUIRE(chmod(pair.a_.c_str(), 0751) == 0);  // through the mount
    REQUIRE(chown(pair.a_.c_str(), 1234, 1234) == 0);
    REQUIRE(setxattr(pair.a_.c_str(), "user.root", "r", 1, 0) == 0);
    REQUIRE(WriteText(pair.A("g"), "g"));
    REQUIRE(pair.primary.SetRole(hamirror::proto::FS_ROLE_PRIMARY, pair.Addr(), &st).ok());
    done = pair.WaitResyncDone(first_id, 60s, &why);
    INFO(why);
    REQUIRE(done);
  }
  FsStatus p = pair.Primary();
  PrintResync("root metadata", p);
  struct stat sa, sb;
  REQUIRE(stat(pair.UnderA(".").c_str(), &sa) == 0);
  REQUIRE(stat(pair.UnderB(".").c_str(), &sb) == 0);
  REQUIRE((sa.st_mode & 07777) == 0751);
  REQUIRE(sa.st_uid == 1234);
  CHECK((sb.st_mode & 07777) == 0751);
  CHECK(sb.st_uid == 1234);
  char value[8] = {};
  CHECK(getxattr(pair.UnderB(".").c_str(), "user.root", value, sizeof(value)) == 1);
  CHECK(getxattr(pair.UnderB(".").c_str(), "user.stale_root", value, sizeof(value)) < 0);
  REQUIRE(pair.Compare() == "");
  REQUIRE(pair.primary.Stop().ok());
  REQUIRE(pair.secondary.Stop().ok());
}

TEST_CASE("resync: blocks equal on both sides are not sent (full checksum compare)", "[fuse_fs][resync]") {
  ResyncPair pair;
  const uint64_t kSize = 32 * kMiB;
  REQUIRE(MakeFile(pair.A("big.bin"), kSize, 7));
  REQUIRE(CopyFile(pair.A("big.bin"), pair.B("big.bin")));
  // Three scattered blocks differ on the secondary: one rewritten whole, two by a single byte.
  std::mt19937_64 rng(8);
  REQUIRE(PwriteFile(pair.B("big.bin"), RandomBytes(rng, kBlock), 5 * kBlock));
  REQUIRE(PwriteFile(pair.B("big.bin"), "\x5a", 200 * kBlock + 31337));
  REQUIRE(PwriteFile(pair.B("big.bin"), "\xa5", 511 * kBlock + kBlock - 1));  // the very last byte
  REQUIRE(pair.Compare() != "");

  REQUIRE(pair.Start().ok());
  std::string why;
  const bool done = pair.WaitResyncDone(0, 60s, &why);
  INFO(why);
  REQUIRE(done);
  FsStatus p = pair.Primary();
  PrintResync("equal blocks", p);
  CHECK(p.resync().full());
  CHECK(p.resync().bytes_done() >= kSize);
  CHECK(p.resync().bytes_sent() == 3 * kBlock);
  REQUIRE(p.resync().bytes_sent() <= 4 * kBlock);
  REQUIRE(p.resync().bytes_sent() >= 3 * kBlock);
  // On the wire: the sums (8 bytes per 64 KiB) and the three blocks, nowhere near the file.
  CHECK(p.resync().wire_bytes() < 3 * kBlock + 256 * kKiB);
  REQUIRE(pair.Compare() == "");
  CHECK(WaitUntil([&] { return pair.Primary().in_sync(); }, 10s));
  REQUIRE(pair.primary.Stop().ok());
  REQUIRE(pair.secondary.Stop().ok());
}

TEST_CASE("resync: after the secondary was away, an incremental resync sends what changed meanwhile",
          "[fuse_fs][resync]") {
  ResyncPair pair;
  pair.send_timeout_ms = 1000;
  REQUIRE(pair.Start().ok());
  std::string why;
  bool done = pair.WaitResyncDone(0, 60s, &why);
  INFO(why);
  REQUIRE(done);
  const uint64_t first_id = pair.Primary().resync().id();
  // The files, written through the primary's mount while connected.
  const uint64_t kSize = 64 * kMiB;
  REQUIRE(MakeFile(pair.A("big.bin"), kSize, 11));
  REQUIRE(MakeFile(pair.A("to_rename"), 128 * kKiB, 12));
  REQUIRE(MakeFile(pair.A("to_delete"), 512 * kKiB, 13));
  REQUIRE(MakeFile(pair.A("to_chmod"), 64 * kKiB, 14, 0644));
  REQUIRE(mkdir(pair.A("dir").c_str(), 0755) == 0);
  REQUIRE(WaitUntil([&] { return pair.Primary().in_sync(); }, 10s));
  REQUIRE(pair.Compare() == "");

  pair.secondary.Kill();  // SIGKILL by pid
  FsStatus st;
  bool alone = WaitUntil(
      [&] { return pair.primary.GetStatus(&st).ok() && st.role() == hamirror::proto::FS_ROLE_ALONE; }, 15s);
  INFO("primary: " << st.ShortDebugString() << "\n" << pair.Logs());
  REQUIRE(alone);
  CHECK(!st.in_sync());

  // Changes the secondary does not see.
  std::mt19937_64 rng(15);
  const uint64_t offsets[4] = {3 * kMiB + 12345, 17 * kMiB + 777, 33 * kMiB, 60 * kMiB + 4096};
  for (uint64_t off : offsets) REQUIRE(PwriteFile(pair.A("big.bin"), RandomBytes(rng, kMiB), off));
  REQUIRE(MakeFile(pair.A("dir/new.bin"), 3 * kMiB, 16));
  REQUIRE(rename(pair.A("to_rename").c_str(), pair.A("dir/renamed").c_str()) == 0);
  REQUIRE(unlink(pair.A("to_delete").c_str()) == 0);
  REQUIRE(chmod(pair.A("to_chmod").c_str(), 0600) == 0);
  REQUIRE(pair.primary.GetStatus(&st).ok());
  INFO("primary while alone: " << st.ShortDebugString());
  CHECK(st.record().zones() >= 4);
  CHECK(st.namespace_dirty());
  CHECK(!st.in_sync());
  REQUIRE(pair.Compare() != "");

  // The secondary comes back (same directory, same port); the primary reconnects.
  REQUIRE(pair.StartSecondary().ok());
  REQUIRE(pair.primary.SetRole(hamirror::proto::FS_ROLE_PRIMARY, pair.Addr(), &st).ok());
  done = pair.WaitResyncDone(first_id, 60s, &why);
  INFO(why);
  REQUIRE(done);
  FsStatus p = pair.Primary();
  PrintResync("incremental after peer loss", p);
  CHECK(!p.resync().full());
  CHECK(p.resync().bytes_sent() >= 7 * kMiB);
  REQUIRE(p.resync().bytes_sent() <= static_cast<uint64_t>(1.2 * (4 + 3) * kMiB) + kBlock);
  // Incremental: what the record names (big.bin whole: its mtime changed; the new and renamed files),
  // not the tree again.
  CHECK(p.resync().bytes_done() <= kSize + 8 * kMiB);
  REQUIRE(pair.Compare() == "");
  CHECK(WaitUntil([&] { return pair.Primary().in_sync(); }, 10s));
  REQUIRE(pair.primary.Stop().ok());
  REQUIRE(pair.secondary.Stop().ok());
}

TEST_CASE("resync: files' mode, owner and times changed while the peer was away", "[fuse_fs][resync]") {
  // Recorded per file (no tree rescan): the resync must still find them, in subdirectories too.
  ResyncPair pair;
  REQUIRE(pair.Start().ok());
  std::string why;
  bool done = pair.WaitResyncDone(0, 60s, &why);
  INFO(why);
  REQUIRE(done);
  const uint64_t first_id = pair.Primary().resync().id();
  REQUIRE(mkdir(pair.A("d").c_str(), 0755) == 0);
  REQUIRE(mkdir(pair.A("d/e").c_str(), 0755) == 0);
  REQUIRE(MakeFile(pair.A("d/e/f"), 300 * kKiB, 91));
  REQUIRE(MakeFile(pair.A("g"), 10 * kKiB, 92));
  REQUIRE(MakeFile(pair.A("d/h"), 10 * kKiB, 93));
  REQUIRE(WaitUntil([&] { return pair.Primary().in_sync(); }, 10s));
  FsStatus st;
  REQUIRE(pair.primary.SetRole(hamirror::proto::FS_ROLE_ALONE, "", &st).ok());
  REQUIRE(chmod(pair.A("d/e/f").c_str(), 0600) == 0);
  REQUIRE(chown(pair.A("g").c_str(), 1234, 4321) == 0);
  const struct timespec times[2] = {{1500000000, 5}, {1500000000, 123456789}};
  REQUIRE(utimensat(AT_FDCWD, pair.A("d/h").c_str(), times, 0) == 0);
  REQUIRE(pair.primary.GetStatus(&st).ok());
  INFO("primary while alone: " << st.ShortDebugString());
  CHECK(st.record().files() >= 3);
  REQUIRE(pair.Compare() != "");
  REQUIRE(pair.primary.SetRole(hamirror::proto::FS_ROLE_PRIMARY, pair.Addr(), &st).ok());
  done = pair.WaitResyncDone(first_id, 60s, &why);
  INFO(why);
  REQUIRE(done);
  FsStatus p = pair.Primary();
  PrintResync("metadata while alone", p);
  CHECK(!p.resync().full());
  CHECK(p.resync().bytes_sent() == 0);  // nothing but metadata changed
  REQUIRE(pair.Compare() == "");
  CHECK(WaitUntil([&] { return pair.Primary().in_sync(); }, 10s));
  REQUIRE(pair.primary.Stop().ok());
  REQUIRE(pair.secondary.Stop().ok());
}

TEST_CASE("resync: a file replaced by a rename while the peer was away, same size and mtime",
          "[fuse_fs][resync]") {
  // Files unpacked from an archive share their mtime (whole seconds) and often their size. A rename
  // while alone changes which data a name holds without writing any: the record has no zones for it, and
  // the peer's entry has the same size and mtime; the resync must still not leave the old data there.
  ResyncPair pair;
  REQUIRE(pair.Start().ok());
  std::string why;
  bool done = pair.WaitResyncDone(0, 60s, &why);
  INFO(why);
  REQUIRE(done);
  const uint64_t first_id = pair.Primary().resync().id();
  const struct timespec times[2] = {{1600000000, 0}, {1600000000, 0}};
  for (const char* name : {"x", "y", "p", "q", "a1", "a2"}) {
    REQUIRE(MakeFile(pair.A(name), 256 * kKiB, std::hash<std::string>()(name)));
    REQUIRE(utimensat(AT_FDCWD, pair.A(name).c_str(), times, 0) == 0);
  }
  REQUIRE(WaitUntil([&] { return pair.Primary().in_sync(); }, 10s));
  REQUIRE(pair.Compare() == "");
  FsStatus st;
  REQUIRE(pair.primary.SetRole(hamirror::proto::FS_ROLE_ALONE, "", &st).ok());
  SECTION("rename over") { REQUIRE(rename(pair.A("x").c_str(), pair.A("y").c_str()) == 0); }
  SECTION("rename exchange") {
    REQUIRE(renameat2(AT_FDCWD, pair.A("p").c_str(), AT_FDCWD, pair.A("q").c_str(), RENAME_EXCHANGE) == 0);
  }
  SECTION("a look-alike deleted, another renamed to a new name") {
    REQUIRE(unlink(pair.A("a1").c_str()) == 0);
    REQUIRE(rename(pair.A("a2").c_str(), pair.A("a9").c_str()) == 0);
  }
  REQUIRE(pair.Compare() != "");
  REQUIRE(pair.primary.SetRole(hamirror::proto::FS_ROLE_PRIMARY, pair.Addr(), &st).ok());
  done = pair.WaitResyncDone(first_id, 60s, &why);
  INFO(why);
  REQUIRE(done);
  FsStatus p = pair.Primary();
  PrintResync("rename while alone", p);
  CHECK(SameContent(pair.UnderA("y"), pair.UnderB("y")) == "");
  CHECK(SameContent(pair.UnderA("p"), pair.UnderB("p")) == "");
  CHECK(SameContent(pair.UnderA("q"), pair.UnderB("q")) == "");
  if (access(pair.UnderA("a9").c_str(), F_OK) == 0)
    CHECK(SameContent(pair.UnderA("a9"), pair.UnderB("a9")) == "");
  REQUIRE(pair.Compare() == "");
  CHECK(WaitUntil([&] { return pair.Primary().in_sync(); }, 10s));
  REQUIRE(pair.primary.Stop().ok());
  REQUIRE(pair.secondary.Stop().ok());
}

TEST_CASE("resync: the application writes to the file being resynced, the copies end identical",
          "[fuse_fs][resync]") {
  ResyncPair pair;
  const uint64_t kSize = 128 * kMiB;
  REQUIRE(MakeFile(pair.A("big.bin"), kSize, 21));
  REQUIRE(MakeFile(pair.B("big.bin"), kSize, 22));                    // every block differs
  pair.primary_extra = {"--resync-rate", std::to_string(24 * kMiB)};  // about 5 s
  REQUIRE(pair.Start().ok());
  FsStatus st;
  REQUIRE(WaitUntil(
      [&] {
        return pair.primary.GetStatus(&st).ok() && st.resync().phase() == "running" &&
               st.resync().bytes_sent() > 0;
      },
      20s));

  const uint64_t seed = Seed();
  std::atomic<bool> stop{false};
  std::atomic<int> writes{0}, appends{0}, failures{0};
  std::thread writer([&] {
    std::mt19937_64 rng(seed);
    int fd = open(pair.A("big.bin").c_str(), O_WRONLY | O_CLOEXEC);
    int afd = open(pair.A("big.bin").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0 || afd < 0) {
      failures++;
      return;
    }
    // Sizes from 4 KiB to 1 MiB (log-uniform), paced, at most a quarter of the file in all: most blocks
    // are still the resync's to send.
    uint64_t written = 0;
    while (!stop.load() && written < kSize / 4) {
      const uint64_t size = std::min<uint64_t>(kMiB, (4096ull << (rng() % 9)) + rng() % 4096);
      const std::string d = RandomBytes(rng, size);
      if (rng() % 8 == 0) {
        if (write(afd, d.data(), d.size()) != static_cast<ssize_t>(d.size())) failures++;
        appends++;
      } else {
        const off_t off = static_cast<off_t>(rng() % kSize);
        if (pwrite(fd, d.data(), d.size(), off) != static_cast<ssize_t>(d.size())) failures++;
        writes++;
      }
      written += size;
      std::this_thread::sleep_for(15ms);  // pacing the load, not waiting for anything
    }
    if (fsync(fd) != 0) failures++;
    close(fd);
    close(afd);
  });
  // The writer runs as long as the resync does (bounded).
  const bool ended =
      WaitUntil([&] { return pair.primary.GetStatus(&st).ok() && st.resync().phase() != "running"; }, 60s);
  const int during = writes.load() + appends.load();
  stop = true;
  writer.join();
  printf("live writes during the resync: %d (%d writes, %d appends in all)\n", during, writes.load(),
         appends.load());
  std::string why;
  const bool done = pair.WaitResyncDone(0, 30s, &why);
  INFO(why);
  REQUIRE(ended);
  REQUIRE(done);
  REQUIRE(failures.load() == 0);
  CHECK(during >= 10);
  FsStatus p = pair.Primary();
  PrintResync("live writes", p);
  CHECK(p.resync().full());
  CHECK(p.resync().bytes_sent() >= kSize / 2);
  CHECK(p.peer_errors() == 0);
  REQUIRE(pair.Compare() == "");
  CHECK(WaitUntil([&] { return pair.Primary().in_sync(); }, 10s));
  REQUIRE(pair.primary.Stop().ok());
  REQUIRE(pair.secondary.Stop().ok());
}

TEST_CASE("resync: namespace and data changes all over the tree while a full resync walks it",
          "[fuse_fs][resync]") {
  // The directories the resync reconciles (under the namespace lock) and the files it compares are
  // changed meanwhile by the randomized workload (creates, renames across directories, unlinks, links,
  // truncates, xattrs, writes to open files...).
  ResyncPair pair;
  for (int d = 0; d < 4; ++d) {
    const std::string dir = Name("d", d);
    REQUIRE(mkdir(pair.A(dir).c_str(), 0755) == 0);
    REQUIRE(mkdir(pair.B(dir).c_str(), 0755) == 0);
    REQUIRE(mkdir(pair.A(dir + "/w").c_str(), 0755) == 0);
    for (int f = 0; f < 4; ++f) {
      const std::string file = dir + Name("/f", f);
      REQUIRE(MakeFile(pair.A(file), 4 * kMiB, 100 + d * 10 + f));
      REQUIRE(MakeFile(pair.B(file), 4 * kMiB - 4096 * f, 200 + d * 10 + f));  // stale
    }
    REQUIRE(WriteText(pair.B(dir + "/stale"), "stale"));
  }
  pair.primary_extra = {"--resync-rate", std::to_string(16 * kMiB)};  // about 4 s
  REQUIRE(pair.Start().ok());
  const uint64_t seed = Seed();
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  std::vector<std::string> summaries(2);
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      // Rounds in fresh subdirectories of d1/w and d3/w, bounded.
      for (int round = 0; round < 10 && !stop.load(); ++round) {
        const std::string root = pair.A(Name("d", 2 * t + 1) + Name("/w/r", round));
        if (mkdir(root.c_str(), 0755) != 0) break;
        summaries[t] = RunRandomWorkload(root, seed * 7 + static_cast<uint64_t>(t * 1000 + round), 60);
      }
    });
  }
  FsStatus st;
  const bool ended =
      WaitUntil([&] { return pair.primary.GetStatus(&st).ok() && st.resync().phase() != "running"; }, 60s);
  stop = true;
  for (auto& th : threads) th.join();
  printf("workload (ok/attempted, last round): %s | %s\n", summaries[0].c_str(), summaries[1].c_str());
  std::string why;
  const bool done = pair.WaitResyncDone(0, 30s, &why);
  INFO("seed " << seed << "\n" << why);
  REQUIRE(ended);
  REQUIRE(done);
  FsStatus p = pair.Primary();
  PrintResync("workload during resync", p);
  printf("peer_errors=%llu\n", static_cast<unsigned long long>(p.peer_errors()));
  // Hard-link structure apart first, so that it does not hide anything else.
  const std::vector<std::string> diffs = pair.AllDifferences(60);
  std::string links, others;
  for (const auto& d : diffs) {
    const bool link =
        d.find(": link count ") != std::string::npos || d.find(": hard link of ") != std::string::npos;
    (link ? links : others) += d + "\n";
  }
  INFO("differences (" << diffs.size() << "), hard links:\n"
                       << links.substr(0, 3000) << "others:\n"
                       << others);
  CHECK(others.empty());
  REQUIRE(diffs.empty());
  CHECK(WaitUntil([&] { return pair.Primary().in_sync(); }, 10s));
  REQUIRE(pair.primary.Stop().ok());
  REQUIRE(pair.secondary.Stop().ok());
}

TEST_CASE("resync: after the primary crashed under load, its record asks for the tree and the zones",
          "[fuse_fs][resync]") {
  ResyncPair pair;
  pair.send_timeout_ms = 2000;
  REQUIRE(pair.Start().ok());
  std::string why;
  bool done = pair.WaitResyncDone(0, 60s, &why);
  INFO(why);
  REQUIRE(done);
  const uint64_t first_id = pair.Primary().resync().id();
  for (int i = 0; i < 4; ++i) REQUIRE(MakeFile(pair.A(Name("load", i)), 16 * kMiB, 30 + i));
  REQUIRE(mkdir(pair.A("dir").c_str(), 0755) == 0);

  const uint64_t seed = Seed();
  std::atomic<bool> stop{false};
  std::atomic<int> ops{0};
  std::thread writer([&] {
    std::mt19937_64 rng(seed);
    for (int n = 0; !stop.load(); ++n) {
      bool ok = true;
      switch (rng() % 10) {
        case 0: ok = WriteText(pair.A(Name("dir/new", n)), RandomBytes(rng, rng() % 20000)); break;
        case 1: {
          const std::string from = pair.A(Name("dir/new", rng() % (n + 1)));
          (void)rename(from.c_str(), pair.A(Name("dir/renamed", n)).c_str());
          break;
        }
        case 2: (void)unlink(pair.A(Name("dir/new", rng() % (n + 1))).c_str()); break;
        default: {
          const std::string d = RandomBytes(rng, 4096 + rng() % kMiB);
          ok = PwriteFile(pair.A(Name("load", rng() % 4)), d, rng() % (20 * kMiB));
        }
      }
      if (!ok) break;  // the mount died
      ops++;
    }
  });
  REQUIRE(WaitUntil([&] { return ops.load() >= 100; }, 20s));
  pair.primary.Kill();  // SIGKILL by pid, mid-load
  stop = true;
  writer.join();
  printf("operations before the crash: %d\n", ops.load());

  // What the crash left on disk: an unfinished session with zones.
  const RecordFileView view = ViewRecordFile(pair.PrimaryRecord());
  INFO("record file: entries " << view.entries << ", zone entries " << view.zone_entries << ", last type "
                               << view.last_type);
  REQUIRE(view.readable);
  CHECK(view.last_type != 2);  // no "clean" mark at the end
  CHECK(view.zone_entries > 0);

  // The primary comes back while the secondary is away, to see what its record says before a resync
  // consumes it.
  REQUIRE(pair.secondary.Stop().ok());
  // What a crash can leave on the secondary and not on the primary: a write shipped before the primary's
  // own pwrite (in a zone the record holds: load1 was written whole in this session; same size, same
  // mtime, so only the zones can tell), an entry created there and not here.
  {
    struct stat before;
    REQUIRE(stat(pair.UnderB("load1").c_str(), &before) == 0);
    std::mt19937_64 rng(seed + 1);
    REQUIRE(PwriteFile(pair.UnderB("load1"), RandomBytes(rng, 100 * kKiB), 7 * kMiB + 1234));
    const struct timespec times[2] = {before.st_atim, before.st_mtim};
    REQUIRE(utimensat(AT_FDCWD, pair.UnderB("load1").c_str(), times, 0) == 0);
    REQUIRE(WriteText(pair.UnderB("dir/ghost"), "only the secondary got this create"));
  }
  REQUIRE(pair.Compare() != "");
  REQUIRE(pair.StartPrimary(/*wait_connected=*/false).ok());
  FsStatus st;
  REQUIRE(pair.primary.GetStatus(&st).ok());
  INFO("restarted primary: " << st.ShortDebugString());
  CHECK(st.record().tree());
  CHECK(st.record().zones() > 0);
  CHECK(st.record().reason().find("uncleanly") != std::string::npos);
  CHECK(!st.in_sync());

  REQUIRE(pair.StartSecondary().ok());
  REQUIRE(pair.primary.SetRole(hamirror::proto::FS_ROLE_PRIMARY, pair.Addr(), &st).ok());
  done = pair.WaitResyncDone(first_id, 60s, &why);
  INFO(why);
  REQUIRE(done);
  FsStatus p = pair.Primary();
  PrintResync("after a primary crash", p);
  CHECK(!p.resync().full());
  CHECK(p.resync().bytes_sent() >= 100 * kKiB);  // at least the write only the secondary had
  REQUIRE(pair.Compare() == "");
  CHECK(WaitUntil([&] { return pair.Primary().in_sync(); }, 10s));
  REQUIRE(pair.primary.Stop().ok());
  REQUIRE(pair.secondary.Stop().ok());
  REQUIRE(CompareTrees(pair.a_, pair.b_) == "");
}

TEST_CASE("resync: a damaged record makes the next resync a full checksum compare", "[fuse_fs][resync]") {
  ResyncPair pair;
  REQUIRE(pair.Start().ok());
  std::string why;
  bool done = pair.WaitResyncDone(0, 60s, &why);
  INFO(why);
  REQUIRE(done);
  const uint64_t first_id = pair.Primary().resync().id();
  REQUIRE(MakeFile(pair.A("f1"), 4 * kMiB, 41));
  REQUIRE(mkdir(pair.A("d").c_str(), 0755) == 0);
  REQUIRE(MakeFile(pair.A("d/g"), 300 * kKiB, 42));
  REQUIRE(WaitUntil([&] { return pair.Primary().in_sync(); }, 10s));
  REQUIRE(pair.primary.Stop().ok());  // clean end: the record says nothing is missing
  REQUIRE(pair.Compare() == "");

  // Behind everyone's back, the secondary's copy of f1 changes in a way only a checksum compare finds:
  // same size, same mtime.
  {
    struct stat before;
    REQUIRE(stat(pair.UnderB("f1").c_str(), &before) == 0);
    REQUIRE(PwriteFile(pair.UnderB("f1"), "not what the primary has", kMiB + 100));
    const struct timespec times[2] = {before.st_atim, before.st_mtim};
    REQUIRE(utimensat(AT_FDCWD, pair.UnderB("f1").c_str(), times, 0) == 0);
  }
  REQUIRE(pair.Compare().find("content differs") != std::string::npos);

  const std::string record = pair.PrimaryRecord();
  const size_t size = FileSize(record);
  INFO("record file " << record << ", " << size << " bytes");
  REQUIRE(size >= 64);
  SECTION("a byte flipped") {
    int fd = open(record.c_str(), O_RDWR | O_CLOEXEC);
    REQUIRE(fd >= 0);
    unsigned char c = 0;
    REQUIRE(pread(fd, &c, 1, static_cast<off_t>(size / 2 + 3)) == 1);
    c ^= 0x10;
    REQUIRE(pwrite(fd, &c, 1, static_cast<off_t>(size / 2 + 3)) == 1);
    close(fd);
  }
  SECTION("truncated mid-entry") { REQUIRE(truncate(record.c_str(), static_cast<off_t>(size - 16)) == 0); }

  const size_t log_offset = FileSize(pair.PrimaryLog());
  REQUIRE(pair.StartPrimary().ok());
  done = pair.WaitResyncDone(first_id, 60s, &why);
  INFO(why);
  REQUIRE(done);
  FsStatus p = pair.Primary();
  PrintResync("damaged record", p);
  const std::string log = FileFrom(pair.PrimaryLog(), log_offset);
  INFO("primary log since the restart:\n" << log);
  CHECK(p.resync().full());
  CHECK(p.resync().reason().find("damaged") != std::string::npos);
  CHECK(log.find(record) != std::string::npos);
  CHECK(log.find("damaged") != std::string::npos);
  CHECK(log.find("full checksum compare") != std::string::npos);
  CHECK(p.resync().bytes_done() >= 4 * kMiB + 300 * kKiB);
  CHECK(p.resync().bytes_sent() >= 24);
  CHECK(p.resync().bytes_sent() <= 2 * kBlock);  // the one changed block
  REQUIRE(pair.Compare() == "");
  CHECK(WaitUntil([&] { return pair.Primary().in_sync(); }, 10s));
  REQUIRE(pair.primary.Stop().ok());
  REQUIRE(pair.secondary.Stop().ok());
}

TEST_CASE("resync: the secondary killed mid-resync, the next resync completes", "[fuse_fs][resync]") {
  ResyncPair pair;
  const uint64_t kSize = 96 * kMiB;
  REQUIRE(MakeFile(pair.A("big.bin"), kSize, 61));
  REQUIRE(MakeFile(pair.B("big.bin"), kSize, 62));
  REQUIRE(WriteText(pair.A("small"), "small"));
  pair.send_timeout_ms = 1000;
  pair.primary_extra = {"--resync-rate", std::to_string(16 * kMiB)};  // about 6 s
  REQUIRE(pair.Start().ok());
  FsStatus p, s;
  REQUIRE(WaitUntil(
      [&] {
        return pair.primary.GetStatus(&p).ok() && p.resync().phase() == "running" &&
               p.resync().bytes_sent() >= 24 * kMiB;
      },
      30s));
  REQUIRE(pair.secondary.GetStatus(&s).ok());
  INFO("secondary before the kill: " << s.ShortDebugString());
  CHECK(s.resync_target().phase() == "running");
  CHECK(s.resync_target().id() == p.resync().id());
  const uint64_t first_id = p.resync().id();
  pair.secondary.Kill();

  // The primary gives the resync up and goes alone; its record still asks for everything.
  const bool failed = WaitUntil(
      [&] {
        return pair.primary.GetStatus(&p).ok() && p.resync().phase() == "failed" &&
               p.role() == hamirror::proto::FS_ROLE_ALONE;
      },
      20s);
  INFO("primary after the kill: " << p.ShortDebugString() << "\n" << pair.Logs());
  REQUIRE(failed);
  PrintResync("interrupted (primary side)", p);
  CHECK(p.record().full());
  CHECK(!p.in_sync());
  const uint64_t sent_before = p.resync().bytes_sent();

  REQUIRE(pair.StartSecondary().ok());
  REQUIRE(pair.secondary.GetStatus(&s).ok());
  CHECK(s.resync_target().phase() == "none");  // a new process knows no resync yet
  REQUIRE(pair.primary.SetRole(hamirror::proto::FS_ROLE_PRIMARY, pair.Addr(), &p).ok());
  std::string why;
  const bool done = pair.WaitResyncDone(first_id, 90s, &why);
  INFO(why);
  REQUIRE(done);
  p = pair.Primary();
  PrintResync("second resync", p);
  CHECK(p.resync().full());
  // What the first resync got applied is not sent again (at most the shipper's 8 MiB in flight was lost).
  CHECK(p.resync().bytes_sent() + sent_before <= kSize + 12 * kMiB);
  CHECK(p.resync().bytes_sent() < kSize - 8 * kMiB);
  REQUIRE(pair.Compare() == "");
  CHECK(WaitUntil([&] { return pair.Primary().in_sync(); }, 10s));
  REQUIRE(pair.primary.Stop().ok());
  REQUIRE(pair.secondary.Stop().ok());
}

TEST_CASE(
    "resync: the primary killed mid-resync: the secondary reports interrupted, the restarted primary "
    "completes it",
    "[fuse_fs][resync]") {
  ResyncPair pair;
  const uint64_t kSize = 96 * kMiB;
  REQUIRE(MakeFile(pair.A("big.bin"), kSize, 71));
  REQUIRE(MakeFile(pair.B("big.bin"), kSize, 72));
  REQUIRE(mkdir(pair.A("d").c_str(), 0755) == 0);
  REQUIRE(WriteText(pair.A("d/f"), "f"));
  REQUIRE(WriteText(pair.B("stale"), "stale"));
  pair.primary_extra = {"--resync-rate", std::to_string(16 * kMiB)};
  REQUIRE(pair.Start().ok());
  FsStatus p, s;
  REQUIRE(WaitUntil(
      [&] {
        return pair.primary.GetStatus(&p).ok() && p.resync().phase() == "running" &&
               p.resync().bytes_sent() >= 16 * kMiB;
      },
      30s));
  const uint64_t first_id = p.resync().id();
  pair.primary.Kill();
  const bool interrupted = WaitUntil(
      [&] { return pair.secondary.GetStatus(&s).ok() && s.resync_target().phase() == "interrupted"; }, 15s);
  INFO("secondary after the kill: " << s.ShortDebugString() << "\n" << pair.Logs());
  CHECK(interrupted);
  CHECK(s.resync_target().id() == first_id);

  pair.primary_extra.clear();  // unlimited now
  REQUIRE(pair.StartPrimary().ok());
  std::string why;
  const bool done = pair.WaitResyncDone(first_id, 60s, &why);
  INFO(why);
  REQUIRE(done);
  p = pair.Primary();
  PrintResync("after the primary's crash mid-resync", p);
  CHECK(p.resync().full());  // the first one never finished: its record still says so
  REQUIRE(pair.Compare() == "");
  CHECK(WaitUntil([&] { return pair.Primary().in_sync(); }, 10s));
  REQUIRE(pair.primary.Stop().ok());
  REQUIRE(pair.secondary.Stop().ok());
}
