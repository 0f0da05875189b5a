// Faults that leave the peer's copy behind are recorded, reported ("not in sync") and repaired by a
// resync, never hidden: a full disk on the secondary, a full disk on the primary after shipping.
// Each directory lives on a small tmpfs of its own, remounted larger to give the space back.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>

#include "tests/fuse_fs/fs_fixture.h"
#include "tests/support/tree_compare.h"

using namespace hamirror::test;
using namespace std::chrono_literals;
using hamirror::proto::FsStatus;

namespace {

// A pair whose directories are each on their own tmpfs (size in MiB), mounted before hamirror-fs.
// The trees are compared through the two mounts (each shows its real directory underneath).
class TmpfsPair {
 public:
  TmpfsPair(int primary_mib, int secondary_mib) {
    for (int i = 0; i < 2; ++i) {
      const std::string t = tmp_.Sub(i == 0 ? "ta" : "tb");
      REQUIRE(mkdir(t.c_str(), 0755) == 0);
      const std::string opts = "size=" + std::to_string(i == 0 ? primary_mib : secondary_mib) + "m";
      REQUIRE(mount("tmpfs", t.c_str(), "tmpfs", 0, opts.c_str()) == 0);
      const std::string d = t + "/d";
      REQUIRE(mkdir(d.c_str(), 0755) == 0);
      under_[i] = open(d.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);  // reaches under the mount
      REQUIRE(under_[i] >= 0);
    }
    addr_ = "127.0.0.1:" + std::to_string(PickFreePort());
    REQUIRE(secondary
                .Start(Dir(1), tmp_.Sub("s.sock"), {"secondary", "--listen", addr_, "--insecure"},
                       tmp_.Sub("s.log"))
                .ok());
    REQUIRE(
        primary
            .Start(Dir(0), tmp_.Sub("p.sock"), {"primary", "--peer", addr_, "--insecure"}, tmp_.Sub("p.log"))
            .ok());
    FsStatus st;
    REQUIRE(WaitUntil([&] { return primary.GetStatus(&st).ok() && st.in_sync(); }, 20s));
  }
  ~TmpfsPair() {
    primary.Kill();
    secondary.Kill();
    for (int i = 0; i < 2; ++i) {
      if (under_[i] >= 0) close(under_[i]);
      umount2(tmp_.Sub(i == 0 ? "ta" : "tb").c_str(), MNT_DETACH);
    }
  }
  std::string Dir(int i) const { return tmp_.Sub(i == 0 ? "ta/d" : "tb/d"); }
  // Overwrites bytes of node i's real file, underneath its mount (a bit rot, a stray tool).
  void Corrupt(int i, const std::string& name, off_t offset, const std::string& bytes) {
    int fd = openat(under_[i], name.c_str(), O_WRONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    REQUIRE(pwrite(fd, bytes.data(), bytes.size(), offset) == static_cast<ssize_t>(bytes.size()));
    close(fd);
  }
  void Grow(int i, int mib) {
    const std::string opts = "size=" + std::to_string(mib) + "m";
    REQUIRE(mount("tmpfs", tmp_.Sub(i == 0 ? "ta" : "tb").c_str(), "tmpfs", MS_REMOUNT, opts.c_str()) == 0);
  }
  // `hamirror-fs ctl` on the primary's control socket: exit code.
  int Ctl(const std::vector<std::string>& args, std::string* out) {
    std::vector<std::string> argv = {FsBinary(), "ctl", "--control", tmp_.Sub("p.sock")};
    argv.insert(argv.end(), args.begin(), args.end());
    int code = -1;
    REQUIRE(RunCommand(argv, 120s, &code, out).ok());
    return code;
  }
  std::string Logs() {
    return "--- primary:\n" + primary.LogTail() + "\n--- secondary:\n" + secondary.LogTail();
  }

  TempDir tmp_;
  int under_[2] = {-1, -1};
  std::string addr_;
  FsProcess primary, secondary;
};

// Writes `mib` MiB to path with dd; true if every byte was written.
bool WriteMiB(const std::string& path, int mib) {
  int code = -1;
  std::string out;
  if (!RunCommand(
           {"dd", "if=/dev/urandom", "of=" + path, "bs=1M", "count=" + std::to_string(mib), "status=none"},
           60s, &code, &out)
           .ok())
    return false;
  return code == 0;
}

}  // namespace

TEST_CASE("faults: a full disk on the secondary is recorded, reported and repaired by a resync",
          "[fuse_fs][resync][faults]") {
  TmpfsPair pair(/*primary_mib=*/64, /*secondary_mib=*/8);
  // The application's writes succeed (the primary's copy is the reference)...
  REQUIRE(WriteMiB(pair.Dir(0) + "/big", 16));
  // ...but the peer could not apply them all: the pair is not in sync, and the record says what.
  FsStatus st;
  REQUIRE(WaitUntil(
      [&] { return pair.primary.GetStatus(&st).ok() && !st.in_sync() && st.record().zones() > 0; }, 10s));
  CHECK(st.peer_errors() > 0);
  CHECK_FALSE(CompareTrees(pair.Dir(0), pair.Dir(1)).empty());
  // Space comes back; a resync (the manager asks for it through a new link) repairs the copy.
  pair.Grow(1, 64);
  std::string out;
  INFO(out << pair.Logs());
  REQUIRE(pair.Ctl({"resync", "--wait", "--timeout", "60"}, &out) == 0);
  REQUIRE(pair.primary.GetStatus(&st).ok());
  CHECK(st.in_sync());
  CHECK(CompareTrees(pair.Dir(0), pair.Dir(1)) == "");
}

TEST_CASE("faults: a full disk on the primary after shipping: the peer's extra data is resynced away",
          "[fuse_fs][resync][faults]") {
  TmpfsPair pair(/*primary_mib=*/8, /*secondary_mib=*/64);
  // The application is told ENOSPC; the peer applied what was shipped before the local write failed.
  CHECK_FALSE(WriteMiB(pair.Dir(0) + "/big", 16));
  FsStatus st;
  REQUIRE(WaitUntil(
      [&] { return pair.primary.GetStatus(&st).ok() && !st.in_sync() && st.record().files() > 0; }, 10s));
  INFO(pair.Logs());
  std::string out;
  REQUIRE(pair.Ctl({"resync", "--wait", "--timeout", "60"}, &out) == 0);
  REQUIRE(pair.primary.GetStatus(&st).ok());
  CHECK(st.in_sync());
  CHECK(CompareTrees(pair.Dir(0), pair.Dir(1)) == "");
}

TEST_CASE("faults: a record kept for another file system under the same path leads to a full compare",
          "[fuse_fs][resync][faults]") {
  TmpfsPair pair(/*primary_mib=*/16, /*secondary_mib=*/16);
  REQUIRE(pair.primary.Stop().ok());
  // A new file system under the same path (a restore, a new disk): its inode numbers are not the
  // ones the record names.
  const std::string ta = pair.tmp_.Sub("ta");
  close(pair.under_[0]);  // the old file system must not stay busy
  pair.under_[0] = -1;
  REQUIRE(umount2(ta.c_str(), 0) == 0);
  REQUIRE(mount("tmpfs", ta.c_str(), "tmpfs", 0, "size=16m") == 0);
  REQUIRE(mkdir(pair.Dir(0).c_str(), 0755) == 0);
  REQUIRE(WriteMiB(pair.Dir(0) + "/restored", 2));
  REQUIRE(pair.primary
              .Start(pair.Dir(0), pair.tmp_.Sub("p.sock"), {"primary", "--peer", pair.addr_, "--insecure"},
                     pair.tmp_.Sub("p2.log"))
              .ok());
  FsStatus st;
  INFO(pair.Logs());
  REQUIRE(WaitUntil([&] { return pair.primary.GetStatus(&st).ok() && st.in_sync(); }, 20s));
  CHECK(st.resync().full());
  CHECK(st.resync().reason().find("another file system") != std::string::npos);
  CHECK(CompareTrees(pair.Dir(0), pair.Dir(1)) == "");
}

TEST_CASE("verify: a difference made underneath the secondary is found, --repair gets it resynced",
          "[fuse_fs][resync][verify]") {
  TmpfsPair pair(/*primary_mib=*/32, /*secondary_mib=*/32);
  REQUIRE(WriteMiB(pair.Dir(0) + "/data", 4));
  REQUIRE(WriteMiB(pair.Dir(0) + "/other", 1));
  FsStatus st;
  REQUIRE(WaitUntil([&] { return pair.primary.GetStatus(&st).ok() && st.in_sync(); }, 10s));
  std::string out;
  REQUIRE(pair.Ctl({"verify", "--wait", "--timeout", "60"}, &out) == 0);  // identical: exit 0

  pair.Corrupt(1, "data", 3 << 20, "rotten");
  INFO(out << pair.Logs());
  CHECK(pair.Ctl({"verify", "--wait", "--timeout", "60"}, &out) == 1);  // a difference: exit 1
  REQUIRE(pair.primary.GetStatus(&st).ok());
  // The bytes, and the file's mtime (the stray write moved it).
  INFO(st.verify().ShortDebugString());
  CHECK(st.verify().differences() >= 1);
  bool bytes_named = false;
  for (const auto& d : st.verify().difference_list()) bytes_named |= d.find("data: bytes 3145728..") == 0;
  CHECK(bytes_named);
  CHECK(st.in_sync());  // a plain verify changes nothing

  // --repair records the file: the pair is no longer in sync until a resync (which hamirrord starts
  // by going ALONE; here by hand), after which verify finds nothing.
  CHECK(pair.Ctl({"verify", "--repair", "--wait", "--timeout", "60"}, &out) == 1);
  REQUIRE(pair.primary.GetStatus(&st).ok());
  CHECK_FALSE(st.in_sync());
  CHECK(st.record().files() == 1);
  REQUIRE(pair.Ctl({"resync", "--wait", "--timeout", "60"}, &out) == 0);
  CHECK(pair.Ctl({"verify", "--wait", "--timeout", "60"}, &out) == 0);
  CHECK(CompareTrees(pair.Dir(0), pair.Dir(1)) == "");
}
