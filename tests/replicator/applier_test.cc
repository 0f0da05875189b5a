// Applier unit tests on a temporary directory: every op kind, validation (checksums, sequence), and
// that nothing escapes the tree (names, symlinks).
#include "replicator/applier.h"

#include <linux/fs.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>

#include "tests/replicator/test_util.h"

using namespace hamirror;
using namespace hamirror::replicator;
using namespace hamirror::replicator::testing;

namespace {

class Fixture {
 public:
  explicit Fixture(bool sync_io = false, size_t max_path_fds = 0, size_t max_io_fds = 0,
                   bool direct_writes = true) {
    REQUIRE(tree.root_fd() >= 0);
    ApplierOptions options;
    options.force_sync_io = sync_io;
    options.direct_writes = direct_writes;
    options.max_path_fds = max_path_fds;
    options.max_io_fds = max_io_fds;
    Status s = Applier::Create(tree.root_fd(), options, &applier);
    REQUIRE(s.ok());
    applier->SetDurableCallback(&Fixture::OnDurable, this);
    REQUIRE(applier->StartSession("s1") == 0);
  }

  // Assigns consecutive seqs, applies, waits for flushes; returns the batch status.
  Status Apply(std::vector<proto::Op> ops) {
    proto::OpBatch batch;
    for (proto::Op& op : ops) {
      if (op.seq() == 0) op.set_seq(++next_seq);
      *batch.add_ops() = op;
    }
    return ApplyBatch(batch);
  }
  Status ApplyBatch(const proto::OpBatch& batch) {
    std::vector<proto::Ack> acks;
    Status s = applier->Apply(batch, &acks);
    applier->Drain();
    std::lock_guard<std::mutex> lock(mu);
    for (const proto::Ack& a : acks) Record(a.seq(), a.error());
    last_acks = std::move(acks);
    return s;
  }
  // The inline ack of op seq in the last applied batch (with a query's answer); fails if none.
  const proto::Ack& InlineAck(uint64_t seq) {
    for (const proto::Ack& a : last_acks) {
      if (a.seq() == seq) return a;
    }
    FAIL("no inline ack for seq " << seq);
    return last_acks.front();
  }
  // Applies one op, returns its ack's errno (-1 if it was not acked).
  int One(proto::Op op) {
    Status s = Apply({std::move(op)});
    REQUIRE(s.ok());
    return AckOf(next_seq);
  }
  int AckOf(uint64_t seq) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = acks.find(seq);
    return it == acks.end() ? -1 : it->second;
  }
  size_t AckCount(uint64_t seq) {
    std::lock_guard<std::mutex> lock(mu);
    return ack_counts[seq];
  }

  TempTree tree{"applier"};
  std::unique_ptr<Applier> applier;
  uint64_t next_seq = 0;
  std::vector<proto::Ack> last_acks;  // inline acks of the last ApplyBatch

 private:
  static void OnDurable(void* self, uint64_t seq, int error) {
    auto* f = static_cast<Fixture*>(self);
    std::lock_guard<std::mutex> lock(f->mu);
    f->Record(seq, error);
  }
  void Record(uint64_t seq, int error) {
    acks[seq] = error;
    ++ack_counts[seq];
  }
  std::mutex mu;
  std::map<uint64_t, int> acks;
  std::map<uint64_t, size_t> ack_counts;
};

struct stat Lstat(const std::string& path) {
  struct stat st {};
  REQUIRE(lstat(path.c_str(), &st) == 0);
  return st;
}

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

}  // namespace

TEST_CASE("applier creates nodes with exact mode and owner", "[applier]") {
  Fixture f;
  proto::Op file = MakeFile(1, "f", 2, 0640);
  file.mutable_make_node()->set_uid(1234);
  file.mutable_make_node()->set_gid(5678);
  REQUIRE(f.One(file) == 0);
  struct stat st = Lstat(f.tree.Path("f"));
  CHECK(S_ISREG(st.st_mode));
  CHECK((st.st_mode & 07777) == 0640);
  CHECK(st.st_uid == 1234);
  CHECK(st.st_gid == 5678);

  REQUIRE(f.One(MakeFile(1, "d", 3, 02775, proto::NODE_KIND_DIR)) == 0);
  st = Lstat(f.tree.Path("d"));
  CHECK(S_ISDIR(st.st_mode));
  CHECK((st.st_mode & 07777) == 02775);

  proto::Op link = MakeFile(3, "s", 4, 0777, proto::NODE_KIND_SYMLINK);
  link.mutable_make_node()->set_symlink_target("../f");
  REQUIRE(f.One(link) == 0);
  CHECK(std::filesystem::read_symlink(f.tree.Path("d/s")) == "../f");

  REQUIRE(f.One(MakeFile(3, "p", 5, 0600, proto::NODE_KIND_FIFO)) == 0);
  CHECK(S_ISFIFO(Lstat(f.tree.Path("d/p")).st_mode));
  proto::Op chr = MakeFile(3, "null", 6, 0666, proto::NODE_KIND_CHAR);
  chr.mutable_make_node()->set_rdev(makedev(1, 3));
  REQUIRE(f.One(chr) == 0);
  st = Lstat(f.tree.Path("d/null"));
  CHECK(S_ISCHR(st.st_mode));
  CHECK(st.st_rdev == makedev(1, 3));

  // Creating over an existing entry fails like on Linux, and changes nothing.
  CHECK(f.One(MakeFile(1, "f", 7)) == EEXIST);
  CHECK(Lstat(f.tree.Path("f")).st_uid == 1234);

  // The owner and mode come out exact whichever of chown and chmod the create needed: a set-user-ID
  // file for another owner (the chown clears the bit, the chmod after it sets it back), a file whose
  // mode this process's umask cuts, and one created as it is (both skipped).
  proto::Op suid = MakeFile(1, "suid", 8, 04755);
  suid.mutable_make_node()->set_uid(1234);
  REQUIRE(f.One(suid) == 0);
  st = Lstat(f.tree.Path("suid"));
  CHECK((st.st_mode & 07777) == 04755);
  CHECK(st.st_uid == 1234);
  CHECK(st.st_gid == 0);
  const mode_t old_umask = umask(077);
  const int masked = f.One(MakeFile(1, "masked", 9, 0664));
  const int plain = f.One(MakeFile(1, "plain", 10, 0600));
  umask(old_umask);
  REQUIRE(masked == 0);
  REQUIRE(plain == 0);
  CHECK((Lstat(f.tree.Path("masked")).st_mode & 07777) == 0664);
  st = Lstat(f.tree.Path("plain"));
  CHECK((st.st_mode & 07777) == 0600);
  CHECK(st.st_uid == 0);
}

TEST_CASE("applier writes, truncates, fallocates, copies ranges", "[applier]") {
  Fixture f;
  REQUIRE(f.One(MakeFile(1, "a", 2)) == 0);
  std::string big(300000, 'x');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
  // A batch of writes, overlapping ones included: the later must win.
  REQUIRE(
      f.Apply({Write(2, 0, big), Write(2, 10, "HELLO"), Write(2, 12, "ll"), Write(2, 400000, "tail")}).ok());
  std::string expect = big;
  expect.replace(10, 5, "HELLO");
  expect.replace(12, 2, "ll");
  expect.resize(400000, '\0');
  expect += "tail";
  CHECK(ReadFile(f.tree.Path("a")) == expect);
  for (uint64_t s = 2; s <= 5; ++s) CHECK(f.AckOf(s) == 0);

  proto::Op trunc;
  trunc.mutable_setattr()->set_rid(2);
  trunc.mutable_setattr()->set_size(100);
  REQUIRE(f.One(trunc) == 0);
  CHECK(ReadFile(f.tree.Path("a")) == expect.substr(0, 100));

  proto::Op punch;
  punch.mutable_fallocate()->set_rid(2);
  punch.mutable_fallocate()->set_mode(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
  punch.mutable_fallocate()->set_offset(0);
  punch.mutable_fallocate()->set_length(50);
  REQUIRE(f.One(punch) == 0);
  CHECK(ReadFile(f.tree.Path("a")) == std::string(50, '\0') + expect.substr(50, 50));

  proto::Op grow;
  grow.mutable_fallocate()->set_rid(2);
  grow.mutable_fallocate()->set_offset(0);
  grow.mutable_fallocate()->set_length(8192);
  REQUIRE(f.One(grow) == 0);
  CHECK(Lstat(f.tree.Path("a")).st_size == 8192);

  REQUIRE(f.One(MakeFile(1, "b", 3)) == 0);
  proto::Op copy;
  proto::CopyRange* c = copy.mutable_copy_range();
  c->set_rid_in(2);
  c->set_offset_in(50);
  c->set_rid_out(3);
  c->set_offset_out(5);
  c->set_length(50);
  REQUIRE(f.One(copy) == 0);
  CHECK(ReadFile(f.tree.Path("b")) == std::string(5, '\0') + expect.substr(50, 50));
}

namespace {

std::string Pattern(size_t size, char seed) {
  std::string data(size, '\0');
  for (size_t i = 0; i < size; ++i) data[i] = static_cast<char>(seed + i % 251);
  return data;
}

// Whether [offset, offset+length) of path is in the page cache: a read that must not wait for I/O.
bool Cached(const std::string& path, uint64_t offset, size_t length) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  std::string buf(length, '\0');
  iovec iov{buf.data(), length};
  ssize_t n = preadv2(fd, &iov, 1, static_cast<off_t>(offset), RWF_NOWAIT);
  int err = errno;
  close(fd);
  if (n < 0) REQUIRE(err == EAGAIN);
  return n == static_cast<ssize_t>(length);
}

}  // namespace

TEST_CASE("applier writes large aligned writes around its page cache, in order with the others",
          "[applier]") {
  for (bool sync_io : {false, true}) {
    for (bool direct : {true, false}) {
      INFO((sync_io ? "pwrite path" : "io_uring path") << (direct ? ", direct writes" : ", page cache only"));
      Fixture f(sync_io, 0, 0, direct);
      REQUIRE(f.Apply({MakeFile(1, "a", 2), MakeFile(1, "b", 3)}).ok());
      const std::string big = Pattern(1 << 20, 'a');
      const std::string more = Pattern(512 << 10, 'k');
      // Direct, then a small write into it, another file between, a direct write extending the file, an
      // aligned but short one and a long unaligned one (both through the page cache).
      REQUIRE(
          f.Apply({Write(2, 0, big), Write(2, 4096 + 10, "HELLO"), Write(3, 0, "b"), Write(2, 1 << 20, more),
                   Write(2, 8192, std::string(4096, 'S')), Write(2, (1 << 20) + 5, Pattern(300000, 'u'))})
              .ok());
      std::string expect = big + more;
      expect.replace(4096 + 10, 5, "HELLO");
      expect.replace(8192, 4096, std::string(4096, 'S'));
      expect.replace((1 << 20) + 5, 300000, Pattern(300000, 'u'));
      CHECK(ReadFile(f.tree.Path("a")) == expect);
      CHECK(ReadFile(f.tree.Path("b")) == "b");
      for (uint64_t seq = 3; seq <= 8; ++seq) CHECK(f.AckOf(seq) == 0);
      // A direct write leaves nothing in this node's page cache (where the file system takes O_DIRECT).
      REQUIRE(f.One(Write(3, 1 << 20, big)) == 0);
      CHECK(ReadFile(f.tree.Path("b")).substr(1 << 20) == big);
      REQUIRE(f.One(Write(3, 2 << 20, big)) == 0);
      int probe = open(f.tree.Path("b").c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
      if (probe < 0) {
        WARN("this file system refuses O_DIRECT (" << strerror(errno) << "): direct writes not checked");
        continue;
      }
      close(probe);
      CHECK(Cached(f.tree.Path("b"), 2 << 20, 1 << 20) == !direct);
      // Two files in one batch (the io_uring path: chains submitted together, directly).
      REQUIRE(f.Apply({Write(2, 4 << 20, big), Write(3, 4 << 20, big), Write(2, 5 << 20, more)}).ok());
      for (uint64_t seq = f.next_seq - 2; seq <= f.next_seq; ++seq) CHECK(f.AckOf(seq) == 0);
      CHECK(Cached(f.tree.Path("a"), 4 << 20, 1 << 20) == !direct);
      CHECK(Cached(f.tree.Path("b"), 4 << 20, 1 << 20) == !direct);
      CHECK(ReadFile(f.tree.Path("a")).substr(4 << 20) == big + more);
      CHECK(ReadFile(f.tree.Path("b")).substr(4 << 20) == big);
    }
  }
}

TEST_CASE("applier queues a run of large aligned writes and acks each once it is written", "[applier]") {
  Fixture f;
  REQUIRE(f.Apply({MakeFile(1, "a", 2), MakeFile(1, "b", 3)}).ok());
  {
    int probe = open(f.tree.Path("a").c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
    if (probe < 0) {
      WARN("this file system refuses O_DIRECT (" << strerror(errno) << "): nothing is queued here");
      return;
    }
    close(probe);
  }
  const std::string big = Pattern(1 << 20, 'q');
  const std::string other = Pattern(1 << 20, 'z');
  // Raw Apply: the batch's acks are what it returns now; the queued writes' come through the callback.
  auto apply = [&](std::vector<proto::Op> ops) {
    proto::OpBatch batch;
    for (proto::Op& op : ops) {
      op.set_seq(++f.next_seq);
      *batch.add_ops() = op;
    }
    std::vector<proto::Ack> acks;
    REQUIRE(f.applier->Apply(batch, &acks).ok());
    return acks;
  };
  // Three 1 MiB writes, two files: none acked with the batch (the apply thread did not wait for the
  // disk), each acked once, without error, once written.
  std::vector<proto::Ack> acks = apply({Write(2, 0, big), Write(2, 1 << 20, other), Write(3, 0, big)});
  CHECK(acks.empty());
  f.applier->Drain();
  for (uint64_t seq = f.next_seq - 2; seq <= f.next_seq; ++seq) {
    CHECK(f.AckOf(seq) == 0);
    CHECK(f.AckCount(seq) == 1);
  }
  CHECK(ReadFile(f.tree.Path("a")) == big + other);
  CHECK(ReadFile(f.tree.Path("b")) == big);
  CHECK(f.applier->Stats().applied_through == f.next_seq);
  CHECK(f.applier->Stats().flushes_in_flight == 0);

  // What follows a queued write waits for it, each batch applied at once after the one before (no
  // Drain in between): a small buffered write into it, a block sum over it, a truncate, a rewrite of
  // the same range by a later queued write (three writer threads: the overlap check orders them).
  for (int round = 0; round < 10; ++round) {
    INFO("round " << round);
    const std::string first = Pattern(1 << 20, static_cast<char>('a' + round));
    const std::string second = Pattern(1 << 20, static_cast<char>('A' + round));
    apply({Write(2, 0, first)});
    apply({Write(2, 4096 + 10, "HELLO")});
    std::vector<proto::Ack> sums = apply({BlockSums(2, 0, 1 << 20, 1 << 20)});
    std::string expect = first;
    expect.replace(4096 + 10, 5, "HELLO");
    REQUIRE(sums.size() == 1);
    REQUIRE(sums[0].sums_size() == 1);
    CHECK(sums[0].sums(0) == XXH3_64bits(expect.data(), expect.size()));
    apply({Write(3, 0, first)});
    apply({Write(3, 0, second)});
    apply({Write(3, 0, first), Write(3, 0, second)});
    f.applier->Drain();
    CHECK(ReadFile(f.tree.Path("a")).substr(0, 1 << 20) == expect);
    CHECK(ReadFile(f.tree.Path("b")).substr(0, 1 << 20) == second);
  }
  proto::Op truncate;
  truncate.mutable_setattr()->set_rid(3);
  truncate.mutable_setattr()->set_size(4096);
  apply({Write(3, 1 << 20, big)});
  apply({truncate});
  f.applier->Drain();
  CHECK(Lstat(f.tree.Path("b")).st_size == 4096);

  // A dsync write is queued too, and flushed before its ack.
  CHECK(apply({Write(2, 2 << 20, big, /*dsync=*/true)}).empty());
  f.applier->Drain();
  CHECK(f.AckOf(f.next_seq) == 0);
  // A direct write leaves nothing in this node's page cache.
  CHECK_FALSE(Cached(f.tree.Path("a"), 2 << 20, 1 << 20));
  CHECK(ReadFile(f.tree.Path("a")).substr(2 << 20) == big);
  // Writes with a time fix are not queued (their writer threads would not set the times in order):
  // queued writes to both halves of a range, then two with time fixes, the later time last.
  for (int round = 0; round < 5; ++round) {
    INFO("round " << round);
    apply({Write(2, 0, big), Write(2, 1 << 20, other)});
    proto::Op early = Write(2, 0, other);
    proto::TimeFix* t = early.add_times();
    t->set_rid(2);
    t->mutable_mtime()->set_sec(1234567000 + round);
    proto::Op late = Write(2, 1 << 20, big);
    t = late.add_times();
    t->set_rid(2);
    t->mutable_mtime()->set_sec(1234567890 + round);
    t->mutable_mtime()->set_nsec(42);
    CHECK(apply({early, late}).size() == 2);  // acked with their batch: written in order, not queued
    f.applier->Drain();
    const struct stat st = Lstat(f.tree.Path("a"));
    CHECK(st.st_mtim.tv_sec == 1234567890 + round);
    CHECK(st.st_mtim.tv_nsec == 42);
    CHECK((ReadFile(f.tree.Path("a")).substr(0, 2 << 20) == other + big));
  }
}

TEST_CASE("applier reports a queued write's error in its ack", "[applier]") {
  Fixture f;
  REQUIRE(f.Apply({MakeFile(1, "a", 2)}).ok());
  // Past the largest file size this file system allows: the write fails on the writer's thread (EFBIG
  // or EINVAL), and its ack says so.
  const uint64_t far = uint64_t{1} << 62;
  proto::OpBatch batch;
  *batch.add_ops() = Write(2, far, Pattern(1 << 20, 'e'));
  batch.mutable_ops(0)->set_seq(++f.next_seq);
  std::vector<proto::Ack> acks;
  REQUIRE(f.applier->Apply(batch, &acks).ok());
  CHECK(acks.empty());  // queued (on a file system that takes O_DIRECT), acked from the writer
  f.applier->Drain();
  CHECK(f.AckOf(f.next_seq) > 0);
  CHECK(f.applier->Stats().error_acks >= 1);
  // The stream goes on.
  CHECK(f.One(Write(2, 0, "ok")) == 0);
  CHECK(ReadFile(f.tree.Path("a")) == "ok");
}

TEST_CASE("applier setattr: mode, owner, absolute times, TimeFix after an op", "[applier]") {
  Fixture f;
  REQUIRE(f.One(MakeFile(1, "a", 2)) == 0);
  proto::Op op;
  proto::Setattr* s = op.mutable_setattr();
  s->set_rid(2);
  s->set_mode(04751);
  s->set_uid(42);
  s->set_gid(43);
  s->mutable_atime()->set_sec(1000);
  s->mutable_atime()->set_nsec(5);
  s->mutable_mtime()->set_sec(2000);
  s->mutable_mtime()->set_nsec(123456789);
  REQUIRE(f.One(op) == 0);
  struct stat st = Lstat(f.tree.Path("a"));
  CHECK((st.st_mode & 07777) == 04751);  // set-id kept: chmod runs after chown
  CHECK(st.st_uid == 42);
  CHECK(st.st_gid == 43);
  CHECK(st.st_atim.tv_sec == 1000);
  CHECK(st.st_atim.tv_nsec == 5);
  CHECK(st.st_mtim.tv_sec == 2000);
  CHECK(st.st_mtim.tv_nsec == 123456789);

  proto::Op w = Write(2, 0, "data");
  proto::TimeFix* t = w.add_times();
  t->set_rid(2);
  t->mutable_mtime()->set_sec(3000);
  proto::TimeFix* t1 = w.add_times();
  t1->set_rid(1);
  t1->mutable_mtime()->set_sec(4000);
  REQUIRE(f.One(w) == 0);
  st = Lstat(f.tree.Path("a"));
  CHECK(st.st_mtim.tv_sec == 3000);
  CHECK(st.st_atim.tv_sec == 1000);  // unset atime left alone
  CHECK(Lstat(f.tree.root()).st_mtim.tv_sec == 4000);
}

TEST_CASE("applier link, unlink, rmdir, rename with flags", "[applier]") {
  Fixture f;
  REQUIRE(f.Apply({MakeFile(1, "a", 2), MakeFile(1, "d", 3, 0755, proto::NODE_KIND_DIR), MakeFile(1, "b", 4)})
              .ok());
  proto::Op link;
  link.mutable_link()->set_rid(2);
  link.mutable_link()->set_new_parent(3);
  link.mutable_link()->set_new_name("a2");
  REQUIRE(f.One(link) == 0);
  CHECK(Lstat(f.tree.Path("a")).st_nlink == 2);
  CHECK(Lstat(f.tree.Path("d/a2")).st_ino == Lstat(f.tree.Path("a")).st_ino);

  auto rename = [](uint64_t p, std::string n, uint64_t np, std::string nn, uint32_t flags) {
    proto::Op op;
    proto::Rename* r = op.mutable_rename();
    r->set_parent(p);
    r->set_name(n);
    r->set_new_parent(np);
    r->set_new_name(nn);
    r->set_flags(flags);
    return op;
  };
  REQUIRE(f.One(Write(2, 0, "AAA")) == 0);
  REQUIRE(f.One(Write(4, 0, "BBB")) == 0);
  CHECK(f.One(rename(1, "a", 1, "b", RENAME_NOREPLACE)) == EEXIST);
  REQUIRE(f.One(rename(1, "a", 1, "b", RENAME_EXCHANGE)) == 0);
  CHECK(ReadFile(f.tree.Path("a")) == "BBB");
  CHECK(ReadFile(f.tree.Path("b")) == "AAA");
  REQUIRE(f.One(rename(1, "b", 3, "moved", 0)) == 0);
  CHECK(!Exists(f.tree.Path("b")));
  // A rid keeps following its inode through renames.
  REQUIRE(f.One(Write(2, 3, "!")) == 0);
  CHECK(ReadFile(f.tree.Path("d/moved")) == "AAA!");

  auto unlink = [](uint64_t p, std::string n, bool dir) {
    proto::Op op;
    op.mutable_unlink()->set_parent(p);
    op.mutable_unlink()->set_name(n);
    op.mutable_unlink()->set_is_dir(dir);
    return op;
  };
  REQUIRE(f.One(unlink(3, "moved", false)) == 0);
  REQUIRE(f.One(unlink(3, "a2", false)) == 0);
  CHECK(f.One(Write(2, 0, "still open")) == 0);  // unlinked while open: still writable
  CHECK(f.One(unlink(1, "d", false)) == EISDIR);
  REQUIRE(f.One(unlink(1, "d", true)) == 0);
  CHECK(!Exists(f.tree.Path("d")));
  CHECK(f.One(unlink(1, "nope", false)) == ENOENT);
}

TEST_CASE("applier xattrs on files and directories", "[applier]") {
  Fixture f;
  REQUIRE(f.Apply({MakeFile(1, "a", 2), MakeFile(1, "d", 3, 0755, proto::NODE_KIND_DIR)}).ok());
  for (uint64_t rid : {2, 3}) {
    proto::Op op;
    proto::Setxattr* x = op.mutable_setxattr();
    x->set_rid(rid);
    x->set_name("user.k");
    x->set_value(rid == 2 ? "v2" : "v3");
    x->set_checksum(XXH3_64bits(x->value().data(), x->value().size()));
    REQUIRE(f.One(op) == 0);
  }
  char buf[64];
  ssize_t n = getxattr(f.tree.Path("a").c_str(), "user.k", buf, sizeof buf);
  REQUIRE(n == 2);
  CHECK(std::string(buf, 2) == "v2");
  n = getxattr(f.tree.Path("d").c_str(), "user.k", buf, sizeof buf);
  REQUIRE(n == 2);
  CHECK(std::string(buf, 2) == "v3");
  proto::Op rm;
  rm.mutable_removexattr()->set_rid(2);
  rm.mutable_removexattr()->set_name("user.k");
  REQUIRE(f.One(rm) == 0);
  CHECK(getxattr(f.tree.Path("a").c_str(), "user.k", buf, sizeof buf) < 0);
  CHECK(f.One(rm) == ENODATA);
}

TEST_CASE("applier fsync, syncfs and dsync writes are acked once flushed", "[applier]") {
  Fixture f;
  REQUIRE(f.Apply({MakeFile(1, "a", 2), MakeFile(1, "d", 3, 0755, proto::NODE_KIND_DIR)}).ok());
  REQUIRE(
      f.Apply({Write(2, 0, "x", true), Fsync(2), Fsync(2, true), Fsync(3), Fsync(0), Write(2, 1, "y")}).ok());
  for (uint64_t s = 3; s <= 8; ++s) {
    CHECK(f.AckOf(s) == 0);
    CHECK(f.AckCount(s) == 1);
  }
  CHECK(f.applier->Stats().flushes_in_flight == 0);
  CHECK(ReadFile(f.tree.Path("a")) == "xy");
}

TEST_CASE("applier flushes a lone last op inline and the others on the flush threads", "[applier]") {
  Fixture f;
  REQUIRE(f.Apply({MakeFile(1, "a", 2), Write(2, 0, "x")}).ok());
  auto apply = [&](std::vector<proto::Op> ops, std::vector<proto::Ack>* acks) {
    proto::OpBatch batch;
    for (proto::Op& op : ops) {
      op.set_seq(++f.next_seq);
      *batch.add_ops() = op;
    }
    REQUIRE(f.applier->Apply(batch, acks).ok());
    f.applier->Drain();
  };
  auto has = [](const std::vector<proto::Ack>& acks, uint64_t seq) {
    return std::any_of(acks.begin(), acks.end(), [&](const proto::Ack& a) { return a.seq() == seq; });
  };
  // A batch ending with a flush, nothing in flight: done on the apply thread, acked with the batch.
  std::vector<proto::Ack> acks;
  apply({Fsync(2, true)}, &acks);
  CHECK(has(acks, f.next_seq));
  acks.clear();
  apply({Write(2, 1, "y", /*dsync=*/true)}, &acks);
  CHECK(has(acks, f.next_seq));
  // A flush followed by other ops of its batch: the flush threads, acked through the callback (the
  // later ops need not wait for it).
  acks.clear();
  apply({Fsync(2), Write(2, 2, "z")}, &acks);
  CHECK(!has(acks, f.next_seq - 1));
  CHECK(has(acks, f.next_seq));
  CHECK(f.AckOf(f.next_seq - 1) == 0);
  CHECK(ReadFile(f.tree.Path("a")) == "xyz");
}

TEST_CASE("applier without io_uring (fallback) applies and acks the same", "[applier]") {
  Fixture f(/*sync_io=*/true);
  REQUIRE(f.Apply({MakeFile(1, "a", 2), Write(2, 0, "hello "), Write(2, 6, "world", true), Write(2, 0, "H"),
                   Fsync(2), Fsync(2, true), Fsync(0)})
              .ok());
  for (uint64_t s = 1; s <= 7; ++s) CHECK(f.AckOf(s) == 0);
  CHECK(ReadFile(f.tree.Path("a")) == "Hello world");
}

TEST_CASE("applier rejects a batch with a bad checksum and applies none of it", "[applier]") {
  Fixture f;
  proto::Op bad = Write(2, 0, "payload");
  bad.mutable_write()->set_checksum(bad.write().checksum() ^ 1);
  Status s = f.Apply({MakeFile(1, "a", 2), bad});
  CHECK(!s.ok());
  CHECK(s.message().find("checksum") != std::string::npos);
  CHECK(!Exists(f.tree.Path("a")));  // not even the op before it
  CHECK(f.AckOf(1) == -1);
  CHECK(f.applier->Stats().checksum_errors == 1);
  CHECK(f.applier->Stats().applied_through == 0);

  proto::Op badx;
  badx.mutable_setxattr()->set_rid(1);
  badx.mutable_setxattr()->set_name("user.x");
  badx.mutable_setxattr()->set_value("v");
  badx.mutable_setxattr()->set_checksum(7);
  badx.set_seq(1);
  CHECK(!f.Apply({badx}).ok());

  // The resend with correct data is applied.
  f.next_seq = 0;
  REQUIRE(f.Apply({MakeFile(1, "a", 2), Write(2, 0, "payload")}).ok());
  CHECK(ReadFile(f.tree.Path("a")) == "payload");
}

TEST_CASE("applier enforces sequence: gaps rejected, duplicates acked without re-applying", "[applier]") {
  Fixture f;
  REQUIRE(f.Apply({MakeFile(1, "a", 2), Write(2, 0, "one")}).ok());  // seqs 1, 2
  // Gap: seq 4 after 2.
  proto::Op gap = Write(2, 0, "GAP");
  gap.set_seq(4);
  Status s = f.Apply({gap});
  CHECK(!s.ok());
  CHECK(s.message().find("sequence") != std::string::npos);
  // Out of order inside a batch: 3 then 5.
  proto::Op w3 = Write(2, 0, "333");
  w3.set_seq(3);
  proto::Op w5 = Write(2, 0, "555");
  w5.set_seq(5);
  CHECK(!f.Apply({w3, w5}).ok());
  CHECK(ReadFile(f.tree.Path("a")) == "one");  // 3 was not applied either
  CHECK(f.applier->Stats().sequence_errors == 2);

  // Duplicates of 1 and 2 (as resent after a reconnect) followed by new 3: the MakeNode is not redone
  // (it would fail with EEXIST) and the old write does not overwrite the new one.
  proto::Op d1 = MakeFile(1, "a", 2);
  d1.set_seq(1);
  proto::Op d2 = Write(2, 0, "one");
  d2.set_seq(2);
  proto::Op n3 = Write(2, 0, "two");
  n3.set_seq(3);
  REQUIRE(f.Apply({d1, d2, n3}).ok());
  CHECK(f.AckOf(1) == 0);
  CHECK(f.AckOf(3) == 0);
  CHECK(f.AckCount(1) == 2);
  CHECK(ReadFile(f.tree.Path("a")) == "two");
  CHECK(f.applier->Stats().duplicates == 2);
  proto::Op late = Write(2, 0, "old");
  late.set_seq(2);
  REQUIRE(f.Apply({late}).ok());
  CHECK(ReadFile(f.tree.Path("a")) == "two");

  proto::OpBatch zero;
  *zero.add_ops() = Write(2, 0, "z");  // seq 0
  CHECK(!f.ApplyBatch(zero).ok());
  proto::Op empty;
  empty.set_seq(4);
  CHECK(!f.Apply({empty}).ok());
}

TEST_CASE("applier sessions: same id resumes, new id resets", "[applier]") {
  Fixture f;
  REQUIRE(f.Apply({MakeFile(1, "a", 2)}).ok());
  CHECK(f.One(MakeFile(1, "a", 3)) == EEXIST);  // seq 2
  std::vector<proto::Ack> errors;
  CHECK(f.applier->StartSession("s1", &errors) == 2);
  REQUIRE(errors.size() == 1);  // for a HelloReply: this errno's ack may have been lost
  CHECK(errors[0].seq() == 2);
  CHECK(errors[0].error() == EEXIST);
  CHECK(f.One(Write(2, 0, "x")) == 0);  // rid 2 still bound
  CHECK(f.applier->StartSession("s2") == 0);
  f.next_seq = 0;
  CHECK(f.One(Write(2, 0, "y")) == ESTALE);
  CHECK(f.One(Bind(2, 1, "a")) == 0);
  CHECK(f.One(Write(2, 1, "y")) == 0);
  CHECK(ReadFile(f.tree.Path("a")) == "xy");
}

TEST_CASE("applier never leaves the tree: names", "[applier][security]") {
  Fixture f;
  REQUIRE(f.One(MakeFile(1, "d", 2, 0755, proto::NODE_KIND_DIR)) == 0);
  const std::string long_name(256, 'n');
  for (const std::string& name :
       {std::string(".."), std::string("."), std::string("a/b"), std::string("/tmp/x"), std::string(""),
        long_name, std::string("../outside/canary"), std::string("x\0y", 3)}) {
    INFO("name: " << name);
    CHECK(f.One(MakeFile(2, name, 10)) == EINVAL);
    CHECK(f.One(Bind(11, 2, name)) == EINVAL);
    proto::Op link;
    link.mutable_link()->set_rid(2);
    link.mutable_link()->set_new_parent(1);
    link.mutable_link()->set_new_name(name);
    CHECK(f.One(link) == EINVAL);
    proto::Op un;
    un.mutable_unlink()->set_parent(2);
    un.mutable_unlink()->set_name(name);
    CHECK(f.One(un) == EINVAL);
    proto::Op ren;
    ren.mutable_rename()->set_parent(1);
    ren.mutable_rename()->set_name("d");
    ren.mutable_rename()->set_new_parent(1);
    ren.mutable_rename()->set_new_name(name);
    CHECK(f.One(ren) == EINVAL);
  }
  CHECK(f.One(MakeFile(1, "ok", 12)) == 0);
  CHECK(f.One(Write(99, 0, "x")) == ESTALE);  // unknown rid: error ack, not a crash
  CHECK(f.One(Bind(13, 99, "x")) == ESTALE);
  CHECK(f.tree.OutsideUntouched());
  CHECK(Exists(f.tree.Path("d")));
}

TEST_CASE("applier never follows symlinks", "[applier][security]") {
  Fixture f;
  // Symlinks pointing outside: one created through the stream, one planted in the tree directly.
  proto::Op sl = MakeFile(1, "evil", 2, 0777, proto::NODE_KIND_SYMLINK);
  sl.mutable_make_node()->set_symlink_target(f.tree.outside());
  REQUIRE(f.One(sl) == 0);
  REQUIRE(symlink((f.tree.outside() + "/canary").c_str(), f.tree.Path("planted").c_str()) == 0);
  REQUIRE(f.One(Bind(3, 1, "planted")) == 0);  // binds the link itself

  // Through a symlink as a parent: refused.
  CHECK(f.One(Bind(4, 2, "canary")) == ENOTDIR);
  CHECK(f.One(MakeFile(2, "new", 5)) == ENOTDIR);
  proto::Op un;
  un.mutable_unlink()->set_parent(2);
  un.mutable_unlink()->set_name("canary");
  CHECK(f.One(un) == ENOTDIR);
  // Data and attribute ops on a rid bound to a symlink: refused, the target untouched.
  CHECK(f.One(Write(3, 0, "pwned")) == EINVAL);
  proto::Op tr;
  tr.mutable_setattr()->set_rid(3);
  tr.mutable_setattr()->set_size(0);
  CHECK(f.One(tr) == EINVAL);
  proto::Op fa;
  fa.mutable_fallocate()->set_rid(3);
  fa.mutable_fallocate()->set_length(10);
  CHECK(f.One(fa) == EINVAL);
  proto::Op x;
  x.mutable_setxattr()->set_rid(3);
  x.mutable_setxattr()->set_name("user.x");
  x.mutable_setxattr()->set_value("v");
  x.mutable_setxattr()->set_checksum(XXH3_64bits("v", 1));
  CHECK(f.One(x) == EPERM);
  CHECK(f.One(Fsync(3)) == EINVAL);
  proto::Op cp;
  cp.mutable_copy_range()->set_rid_in(3);
  cp.mutable_copy_range()->set_rid_out(3);
  cp.mutable_copy_range()->set_length(5);
  CHECK(f.One(cp) == EINVAL);
  // chmod/chown/utimes of a symlink rid act on the link, not on its target.
  proto::Op attr;
  attr.mutable_setattr()->set_rid(3);
  attr.mutable_setattr()->set_mode(0600);
  attr.mutable_setattr()->set_uid(77);
  attr.mutable_setattr()->set_gid(77);
  attr.mutable_setattr()->mutable_mtime()->set_sec(1234);
  CHECK(f.One(attr) == 0);
  struct stat st = Lstat(f.tree.Path("planted"));
  CHECK(st.st_uid == 77);
  CHECK(st.st_mtim.tv_sec == 1234);
  // A hard link of the symlink is a link to the symlink, inside the tree.
  proto::Op link;
  link.mutable_link()->set_rid(3);
  link.mutable_link()->set_new_parent(1);
  link.mutable_link()->set_new_name("planted2");
  CHECK(f.One(link) == 0);
  CHECK(S_ISLNK(Lstat(f.tree.Path("planted2")).st_mode));
  // Renaming/unlinking the symlink entries affects only the links.
  proto::Op rm;
  rm.mutable_unlink()->set_parent(1);
  rm.mutable_unlink()->set_name("evil");
  CHECK(f.One(rm) == 0);
  CHECK(f.tree.OutsideUntouched());
}

// --- Resync ops: BlockSums, ListDir, ResyncMark.

namespace {

std::vector<uint64_t> SumsOf(const proto::Ack& ack) { return {ack.sums().begin(), ack.sums().end()}; }

std::string Bytes(size_t n, int seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + seed * 17 + i / 4096) & 0xff);
  return s;
}

// A minimal POSIX ACL as the kernel stores it (system.posix_acl_*): user::rw-, user:1000:r--, group::r--,
// mask::r--, other::---.
std::string AclXattr() {
  std::string v;
  auto le16 = [&](uint16_t x) { v.push_back(char(x & 0xff)), v.push_back(char(x >> 8)); };
  auto le32 = [&](uint32_t x) { le16(x & 0xffff), le16(x >> 16); };
  le32(2);  // POSIX_ACL_XATTR_VERSION
  const struct {
    uint16_t tag, perm;
    uint32_t id;
  } entries[] = {{0x01, 6, UINT32_MAX},
                 {0x02, 4, 1000},
                 {0x04, 4, UINT32_MAX},
                 {0x10, 4, UINT32_MAX},
                 {0x20, 0, UINT32_MAX}};
  for (const auto& e : entries) le16(e.tag), le16(e.perm), le32(e.id);
  return v;
}

std::string Lgetxattr(const std::string& path, const char* name) {
  char buf[4096];
  const ssize_t n = lgetxattr(path.c_str(), name, buf, sizeof buf);
  REQUIRE(n >= 0);
  return std::string(buf, static_cast<size_t>(n));
}

}  // namespace

TEST_CASE("applier BlockSums sees the writes before it in the same batch", "[applier][resync]") {
  const bool sync_io = GENERATE(false, true);
  INFO("force_sync_io " << sync_io);
  Fixture f(sync_io);
  REQUIRE(f.Apply({MakeFile(1, "a", 2), MakeFile(1, "b", 3)}).ok());
  // One batch: writes to two files (the io_uring path when available), sums of what they wrote, an
  // overwrite, sums again. Each query sees exactly the ops before it.
  std::string a = Bytes(3 * 4096 + 100, 1);
  const std::string b = Bytes(5000, 2);
  std::string a2 = a;
  a2.replace(4096, 10, "overwrite!");
  REQUIRE(f.Apply({Write(2, 0, a.substr(0, 8192)), Write(3, 0, b), Write(2, 8192, a.substr(8192)),
                   BlockSums(2, 0, 1 << 20, 4096), BlockSums(3, 0, 1 << 20, 4096),
                   Write(2, 4096, "overwrite!"), BlockSums(2, 0, 1 << 20, 4096)})
              .ok());
  const uint64_t s0 = f.next_seq - 6;  // first write of the batch
  const proto::Ack& first = f.InlineAck(s0 + 3);
  CHECK(first.error() == 0);
  CHECK(first.file_size() == a.size());
  CHECK(first.sums_size() == 4);  // 3 full blocks and a short one of 100 bytes
  CHECK(SumsOf(first) == ExpectedSums(a, 0, 1 << 20, 4096));
  CHECK(SumsOf(f.InlineAck(s0 + 4)) == ExpectedSums(b, 0, 1 << 20, 4096));
  CHECK(f.InlineAck(s0 + 4).file_size() == b.size());
  const proto::Ack& second = f.InlineAck(s0 + 6);
  CHECK(SumsOf(second) == ExpectedSums(a2, 0, 1 << 20, 4096));
  CHECK(second.sums(1) != first.sums(1));
  CHECK(second.sums(0) == first.sums(0));
  // Queries change nothing and count as applied ops.
  CHECK(ReadFile(f.tree.Path("a")) == a2);
  CHECK(f.applier->Stats().applied_through == f.next_seq);
}

TEST_CASE("applier BlockSums ranges: unaligned, short last block, past the end", "[applier][resync]") {
  Fixture f;
  // 2 MiB + 3000 bytes: crosses the 1 MiB read chunks, with 12 KiB blocks too (not a divisor of 1 MiB).
  const std::string data = Bytes((2 << 20) + 3000, 3);
  REQUIRE(f.Apply({MakeFile(1, "f", 2), Write(2, 0, data)}).ok());
  struct Case {
    uint64_t offset, length;
    uint32_t block;
  };
  for (const Case& c :
       {Case{0, 64 << 20, 4096}, Case{100, 8192, 4096}, Case{0, data.size(), 12 << 10},
        Case{5000, 64 << 20, 4 << 20}, Case{(2 << 20) + 2000, 4096, 4096}, Case{0, 0, 4096},
        Case{data.size(), 4096, 4096}, Case{data.size() + 1, 100, 4096}, Case{1ull << 40, 4096, 4096}}) {
    INFO("offset " << c.offset << " length " << c.length << " block " << c.block);
    REQUIRE(f.One(BlockSums(2, c.offset, c.length, c.block)) == 0);
    const proto::Ack& ack = f.InlineAck(f.next_seq);
    CHECK(ack.file_size() == data.size());
    CHECK(SumsOf(ack) == ExpectedSums(data, c.offset, c.length, c.block));
  }
  // Past the end: no sums at all.
  REQUIRE(f.One(BlockSums(2, data.size(), 4096, 4096)) == 0);
  CHECK(f.InlineAck(f.next_seq).sums_size() == 0);
  // An empty file.
  REQUIRE(f.One(MakeFile(1, "empty", 3)) == 0);
  REQUIRE(f.One(BlockSums(3, 0, 4096, 4096)) == 0);
  CHECK(f.InlineAck(f.next_seq).sums_size() == 0);
  CHECK(f.InlineAck(f.next_seq).file_size() == 0);
}

TEST_CASE("applier BlockSums refuses bad input", "[applier][resync]") {
  Fixture f;
  proto::Op sl = MakeFile(1, "link", 4, 0777, proto::NODE_KIND_SYMLINK);
  sl.mutable_make_node()->set_symlink_target("f");
  REQUIRE(f.Apply({MakeFile(1, "f", 2), MakeFile(1, "d", 3, 0755, proto::NODE_KIND_DIR), sl,
                   MakeFile(1, "p", 5, 0600, proto::NODE_KIND_FIFO), Write(2, 0, "data")})
              .ok());
  // Per-op problems: an errno ack without an answer, and the stream goes on.
  CHECK(f.One(BlockSums(99, 0, 4096, 4096)) == ESTALE);
  CHECK(f.InlineAck(f.next_seq).sums_size() == 0);
  CHECK(f.One(BlockSums(3, 0, 4096, 4096)) == EISDIR);
  CHECK(f.One(BlockSums(1, 0, 4096, 4096)) == EISDIR);
  CHECK(f.One(BlockSums(4, 0, 4096, 4096)) == EINVAL);  // a symlink is never opened
  CHECK(f.One(BlockSums(5, 0, 4096, 4096)) == EINVAL);  // nor a FIFO
  CHECK(f.InlineAck(f.next_seq).file_size() == 0);
  // Out of bounds: a protocol violation, the whole batch refused (the MakeNode before it too).
  const uint64_t protocol_errors = f.applier->Stats().protocol_errors;
  const uint64_t at = f.applier->Stats().applied_through;
  for (const proto::Op& bad :
       {BlockSums(2, 0, 4096, 0), BlockSums(2, 0, 4096, 1000), BlockSums(2, 0, 4096, 4096 + 512),
        BlockSums(2, 0, 4096, 8 << 20), BlockSums(2, 0, (64 << 20) + 1, 4096),
        BlockSums(2, UINT64_MAX - 10, 4096, 4096), BlockSums(2, uint64_t{1} << 63, 0, 4096)}) {
    INFO(bad.ShortDebugString());
    proto::Op make = MakeFile(1, "never", 10);
    make.set_seq(at + 1);
    proto::Op q = bad;
    q.set_seq(at + 2);
    Status s = f.Apply({make, q});
    CHECK(!s.ok());
    CHECK(s.code() == Status::Code::kInvalidArgument);
  }
  CHECK(!Exists(f.tree.Path("never")));
  CHECK(f.applier->Stats().applied_through == at);
  CHECK(f.applier->Stats().protocol_errors == protocol_errors + 7);
  // The limits themselves are fine.
  f.next_seq = at;
  CHECK(f.One(BlockSums(2, 0, 64 << 20, 4 << 20)) == 0);
  CHECK(f.One(BlockSums(2, 0, 64 << 20, 12 << 10)) == 0);
  CHECK(SumsOf(f.InlineAck(f.next_seq)) == ExpectedSums("data", 0, 4, 4096));
}

TEST_CASE("applier ListDir lists entries with attributes, symlink targets and xattrs", "[applier][resync]") {
  Fixture f;
  proto::Op file = MakeFile(1, "file", 2, 04750);
  file.mutable_make_node()->set_uid(1234);
  file.mutable_make_node()->set_gid(5678);
  proto::Op sl = MakeFile(1, "link", 4, 0777, proto::NODE_KIND_SYMLINK);
  sl.mutable_make_node()->set_symlink_target("../outside/" + std::string(300, 'x'));
  proto::Op chr = MakeFile(1, "null", 6, 0666, proto::NODE_KIND_CHAR);
  chr.mutable_make_node()->set_rdev(makedev(1, 3));
  proto::Op link;
  link.mutable_link()->set_rid(2);
  link.mutable_link()->set_new_parent(3);
  link.mutable_link()->set_new_name("hard");
  proto::Op xa;
  xa.mutable_setxattr()->set_rid(2);
  xa.mutable_setxattr()->set_name("user.b");
  xa.mutable_setxattr()->set_value(std::string("v\0b", 3));
  xa.mutable_setxattr()->set_checksum(XXH3_64bits("v\0b", 3));
  proto::Op xb = xa;
  xb.mutable_setxattr()->set_name("user.a");
  xb.mutable_setxattr()->set_value(std::string(3000, 'A'));  // (ext4 keeps about a block of xattrs)
  xb.mutable_setxattr()->set_checksum(XXH3_64bits(xb.setxattr().value().data(), 3000));
  proto::Op times = Write(2, 0, "12345");
  times.add_times()->set_rid(2);
  times.mutable_times(0)->mutable_mtime()->set_sec(1700000000);
  times.mutable_times(0)->mutable_mtime()->set_nsec(42);
  REQUIRE(f.Apply({file, MakeFile(1, "dir", 3, 0711, proto::NODE_KIND_DIR), sl,
                   MakeFile(1, "fifo", 5, 0600, proto::NODE_KIND_FIFO), chr, link, xa, xb, times})
              .ok());
  for (uint64_t s = 1; s <= f.next_seq; ++s) REQUIRE(f.AckOf(s) == 0);
  // xattrs of other namespaces, set underneath: security.*, and an ACL (system.posix_acl_*).
  REQUIRE(lsetxattr(f.tree.Path("file").c_str(), "security.hm", "sec", 3, 0) == 0);
  const std::string acl = AclXattr();
  REQUIRE(lsetxattr(f.tree.Path("file").c_str(), "system.posix_acl_access", acl.data(), acl.size(), 0) == 0);
  REQUIRE(lsetxattr(f.tree.Path("dir").c_str(), "system.posix_acl_default", acl.data(), acl.size(), 0) == 0);

  // In the same batch as a MakeNode: the new entry is listed.
  REQUIRE(f.Apply({MakeFile(1, "new", 7, 0600), ListDir(1)}).ok());
  const proto::Ack& ack = f.InlineAck(f.next_seq);
  REQUIRE(ack.error() == 0);
  std::vector<std::string> names;
  for (const proto::DirEntry& e : ack.entries()) names.push_back(e.name());
  CHECK(names == std::vector<std::string>{"dir", "fifo", "file", "link", "new", "null"});
  auto entry = [&](const std::string& name) -> const proto::DirEntry& {
    for (const proto::DirEntry& e : ack.entries()) {
      if (e.name() == name) return e;
    }
    FAIL("no entry " << name);
    return ack.entries(0);
  };
  const proto::DirEntry& fe = entry("file");
  CHECK(fe.kind() == proto::NODE_KIND_FILE);
  const struct stat fst = Lstat(f.tree.Path("file"));
  CHECK(fe.mode() == (fst.st_mode & 07777));  // the ACL's mask set the group bits
  CHECK(fe.uid() == 1234);
  CHECK(fe.gid() == 5678);
  CHECK(fe.size() == 5);
  CHECK(fe.nlink() == 2);
  CHECK(fe.mtime().sec() == 1700000000);
  CHECK(fe.mtime().nsec() == 42);
  CHECK(fe.symlink_target().empty());
  REQUIRE(fe.xattrs_size() == 4);  // sorted by name, values exact
  CHECK(fe.xattrs(0).name() == "security.hm");
  CHECK(fe.xattrs(0).value() == "sec");
  CHECK(fe.xattrs(1).name() == "system.posix_acl_access");
  CHECK(fe.xattrs(1).value() == Lgetxattr(f.tree.Path("file"), "system.posix_acl_access"));
  CHECK(fe.xattrs(2).name() == "user.a");
  CHECK(fe.xattrs(2).value() == std::string(3000, 'A'));
  CHECK(fe.xattrs(3).name() == "user.b");
  CHECK(fe.xattrs(3).value() == std::string("v\0b", 3));

  const proto::DirEntry& de = entry("dir");
  CHECK(de.kind() == proto::NODE_KIND_DIR);
  CHECK(de.mode() == 0711);
  CHECK(de.nlink() == 2);
  bool has_default_acl = false;
  for (const proto::Xattr& x : de.xattrs()) has_default_acl |= x.name() == "system.posix_acl_default";
  CHECK(has_default_acl);

  const proto::DirEntry& le = entry("link");
  CHECK(le.kind() == proto::NODE_KIND_SYMLINK);
  CHECK(le.symlink_target() == "../outside/" + std::string(300, 'x'));
  CHECK(le.size() == le.symlink_target().size());
  CHECK(le.xattrs_size() == 0);

  CHECK(entry("fifo").kind() == proto::NODE_KIND_FIFO);
  CHECK(entry("fifo").mode() == 0600);
  CHECK(entry("null").kind() == proto::NODE_KIND_CHAR);
  CHECK(entry("null").rdev() == makedev(1, 3));
  CHECK(entry("new").size() == 0);

  // A subdirectory by its rid; an empty one.
  REQUIRE(f.One(ListDir(3)) == 0);
  REQUIRE(f.InlineAck(f.next_seq).entries_size() == 1);
  CHECK(f.InlineAck(f.next_seq).entries(0).name() == "hard");
  CHECK(f.InlineAck(f.next_seq).entries(0).nlink() == 2);
  REQUIRE(f.One(MakeFile(3, "sub", 8, 0755, proto::NODE_KIND_DIR)) == 0);
  REQUIRE(f.One(ListDir(8)) == 0);
  CHECK(f.InlineAck(f.next_seq).entries_size() == 0);
  CHECK(f.tree.OutsideUntouched());
}

TEST_CASE("applier ListDir refuses what is not a known directory", "[applier][resync]") {
  Fixture f;
  proto::Op sl = MakeFile(1, "link", 3, 0777, proto::NODE_KIND_SYMLINK);
  sl.mutable_make_node()->set_symlink_target(".");
  REQUIRE(f.Apply({MakeFile(1, "f", 2), sl}).ok());
  CHECK(f.One(ListDir(2)) == ENOTDIR);
  CHECK(f.InlineAck(f.next_seq).entries_size() == 0);
  CHECK(f.One(ListDir(3)) == ENOTDIR);  // a symlink to a directory is not followed
  CHECK(f.One(ListDir(99)) == ESTALE);
  CHECK(f.One(ListDir(1)) == 0);  // the stream goes on
  CHECK(f.InlineAck(f.next_seq).entries_size() == 2);
}

TEST_CASE("applier resync state follows ResyncMark, sessions and stream ends", "[applier][resync]") {
  Fixture f;
  CHECK(f.applier->Stats().resync.phase == ResyncPhase::kNone);
  CHECK(std::string(ResyncPhaseName(ResyncPhase::kInterrupted)) == "interrupted");
  REQUIRE(f.One(ResyncMark(7, /*begin=*/true, false, 123456)) == 0);
  ResyncTargetState r = f.applier->Stats().resync;
  CHECK(r.phase == ResyncPhase::kRunning);
  CHECK(r.id == 7);
  CHECK(r.bytes_total == 123456);
  CHECK(r.started_unix_ms > 1600000000000);
  CHECK(r.finished_unix_ms == 0);
  CHECK(f.One(ResyncMark(8, false, true)) == EINVAL);  // not the running resync: nothing changes
  CHECK(f.applier->Stats().resync.phase == ResyncPhase::kRunning);
  REQUIRE(f.One(ResyncMark(7, false, /*ok=*/true)) == 0);
  r = f.applier->Stats().resync;
  CHECK(r.phase == ResyncPhase::kDone);
  CHECK(r.id == 7);
  CHECK(r.finished_unix_ms >= r.started_unix_ms);
  CHECK(f.One(ResyncMark(7, false, true)) == EINVAL);  // already ended

  // A failed one.
  REQUIRE(f.One(ResyncMark(9, true)) == 0);
  REQUIRE(f.One(ResyncMark(9, false, /*ok=*/false)) == 0);
  CHECK(f.applier->Stats().resync.phase == ResyncPhase::kFailed);

  // The stream ends while running; the same session reconnects and ends it: done.
  REQUIRE(f.One(ResyncMark(10, true)) == 0);
  f.applier->StreamEnded();
  r = f.applier->Stats().resync;
  CHECK(r.phase == ResyncPhase::kInterrupted);
  CHECK(r.finished_unix_ms != 0);
  CHECK(f.applier->StartSession("s1") == f.next_seq);
  CHECK(f.applier->Stats().resync.phase == ResyncPhase::kInterrupted);
  REQUIRE(f.One(ResyncMark(10, false, true)) == 0);
  CHECK(f.applier->Stats().resync.phase == ResyncPhase::kDone);
  f.applier->StreamEnded();  // not running: nothing to interrupt
  CHECK(f.applier->Stats().resync.phase == ResyncPhase::kDone);

  // Running, then another session: interrupted, and the old resync cannot be ended from there.
  REQUIRE(f.One(ResyncMark(11, true, false, 5)) == 0);
  CHECK(f.applier->StartSession("s2") == 0);
  f.next_seq = 0;
  r = f.applier->Stats().resync;
  CHECK(r.phase == ResyncPhase::kInterrupted);
  CHECK(r.id == 11);
  CHECK(r.bytes_total == 5);
  CHECK(f.One(ResyncMark(11, false, true)) == EINVAL);
  CHECK(f.applier->Stats().resync.phase == ResyncPhase::kInterrupted);
  // A new begin starts afresh.
  REQUIRE(f.One(ResyncMark(12, true)) == 0);
  CHECK(f.applier->Stats().resync.phase == ResyncPhase::kRunning);
  CHECK(f.applier->Stats().resync.finished_unix_ms == 0);
}

namespace {

// prefix followed by i (not `"literal" + std::to_string(i)`: g++ 12 warns falsely, -Wrestrict).
std::string Numbered(const char* prefix, int i) {
  char buf[64];
  snprintf(buf, sizeof buf, "%s%d", prefix, i);
  return buf;
}

proto::Op Setattr(uint64_t rid) {
  proto::Op op;
  op.mutable_setattr()->set_rid(rid);
  return op;
}

proto::Op Setxattr(uint64_t rid, const std::string& name, const std::string& value) {
  proto::Op op;
  proto::Setxattr* x = op.mutable_setxattr();
  x->set_rid(rid);
  x->set_name(name);
  x->set_value(value);
  x->set_checksum(XXH3_64bits(value.data(), value.size()));
  return op;
}

proto::Op Removexattr(uint64_t rid, const std::string& name) {
  proto::Op op;
  op.mutable_removexattr()->set_rid(rid);
  op.mutable_removexattr()->set_name(name);
  return op;
}

proto::Op Rename(uint64_t parent, const std::string& name, uint64_t new_parent, const std::string& new_name) {
  proto::Op op;
  proto::Rename* r = op.mutable_rename();
  r->set_parent(parent);
  r->set_name(name);
  r->set_new_parent(new_parent);
  r->set_new_name(new_name);
  return op;
}

proto::Op Unlink(uint64_t parent, const std::string& name) {
  proto::Op op;
  op.mutable_unlink()->set_parent(parent);
  op.mutable_unlink()->set_name(name);
  return op;
}

proto::Op Link(uint64_t rid, uint64_t new_parent, const std::string& new_name) {
  proto::Op op;
  op.mutable_link()->set_rid(rid);
  op.mutable_link()->set_new_parent(new_parent);
  op.mutable_link()->set_new_name(new_name);
  return op;
}

// Every op applied so far was acked without an error.
void RequireAllAckedOk(Fixture& f) {
  for (uint64_t seq = 1; seq <= f.next_seq; ++seq) {
    INFO("seq " << seq);
    REQUIRE(f.AckOf(seq) == 0);
  }
}

std::set<std::string> Names(const std::string& dir) {
  std::set<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) names.insert(e.path().filename());
  return names;
}

std::string Xattr(const std::string& path, const char* name) {
  char buf[256];
  const ssize_t n = lgetxattr(path.c_str(), name, buf, sizeof buf);
  return n < 0 ? std::string("<none>") : std::string(buf, static_cast<size_t>(n));
}

// Descriptors open in this process.
size_t OpenFds() {
  size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    (void)e;
    ++n;
  }
  return n;
}

// Lowers the soft descriptor limit for its lifetime (the hard one stays: reversible).
class SoftFdLimit {
 public:
  explicit SoftFdLimit(rlim_t soft) {
    REQUIRE(getrlimit(RLIMIT_NOFILE, &saved_) == 0);
    rlimit lowered = saved_;
    lowered.rlim_cur = std::min(soft, saved_.rlim_max);
    REQUIRE(setrlimit(RLIMIT_NOFILE, &lowered) == 0);
  }
  ~SoftFdLimit() { setrlimit(RLIMIT_NOFILE, &saved_); }

 private:
  rlimit saved_{};
};

}  // namespace

TEST_CASE("applier with tiny descriptor budgets applies every op kind to 200 files", "[applier][budget]") {
  const bool sync_io = GENERATE(false, true);
  INFO("force_sync_io " << sync_io);
  constexpr size_t kPathFds = 8, kIoFds = 4;
  constexpr int kFiles = 200;
  constexpr uint64_t kFirst = 100, kRebound = 1000;
  Fixture f(sync_io, kPathFds, kIoFds);
  REQUIRE(f.Apply({MakeFile(1, "d", 2, 0755, proto::NODE_KIND_DIR),
                   MakeFile(1, "e", 3, 0755, proto::NODE_KIND_DIR)})
              .ok());
  std::vector<std::string> content(kFiles);
  std::vector<proto::Op> ops;
  for (int i = 0; i < kFiles; ++i) ops.push_back(MakeFile(2, Numbered("f", i), kFirst + i, 0600));
  REQUIRE(f.Apply(ops).ok());
  // One batch of writes to every file (the ring path, its run cut by the I/O budget's evictions).
  ops.clear();
  for (int i = 0; i < kFiles; ++i) {
    content[i] = Numbered("file ", i) + " " + std::string(static_cast<size_t>(i % 50 + 1), 'a' + i % 26);
    ops.push_back(Write(kFirst + i, 0, content[i]));
  }
  REQUIRE(f.Apply(ops).ok());
  // Appends interleaved with fsyncs (asynchronous flushes, each on a dup of an evicted descriptor).
  ops.clear();
  for (int i = 0; i < kFiles; ++i) {
    ops.push_back(Write(kFirst + i, content[i].size(), "+tail", i % 9 == 0));
    content[i] += "+tail";
    if (i % 10 == 0) ops.push_back(Fsync(kFirst + i, i % 20 == 0));
  }
  REQUIRE(f.Apply(ops).ok());
  // setattr (mode, size), xattrs.
  ops.clear();
  for (int i = 0; i < kFiles; ++i) {
    if (i % 3 == 0) {
      proto::Op op = Setattr(kFirst + i);
      op.mutable_setattr()->set_mode(0640);
      ops.push_back(op);
    }
    if (i % 7 == 0) {
      proto::Op op = Setattr(kFirst + i);
      op.mutable_setattr()->set_size(5);
      content[i].resize(5);
      ops.push_back(op);
    }
    ops.push_back(Setxattr(kFirst + i, "user.i", Numbered("x", i)));
    if (i % 5 == 0) ops.push_back(Removexattr(kFirst + i, "user.i"));
  }
  REQUIRE(f.Apply(ops).ok());
  // Tree changes: i%4 == 1 moved to e, 2 unlinked (then written while "open"), 3 linked into e.
  ops.clear();
  for (int i = 0; i < kFiles; ++i) {
    if (i % 4 == 1) ops.push_back(Rename(2, Numbered("f", i), 3, Numbered("g", i)));
    if (i % 4 == 2) ops.push_back(Unlink(2, Numbered("f", i)));
    if (i % 4 == 3) ops.push_back(Link(kFirst + i, 3, Numbered("l", i)));
  }
  REQUIRE(f.Apply(ops).ok());
  ops.clear();
  for (int i = 0; i < kFiles; ++i) {
    if (i % 4 == 2) ops.push_back(Write(kFirst + i, 0, "unlinked but open"));
    if (i % 4 == 1 || i % 4 == 3) {
      ops.push_back(Write(kFirst + i, content[i].size(), "#"));
      content[i] += "#";
    }
  }
  REQUIRE(f.Apply(ops).ok());
  CHECK(f.applier->Stats().pinned > 0);  // the unlinked files kept by handle only
  // Forget and rebind under new rids (i%4 == 0), forget the unlinked ones.
  ops.clear();
  for (int i = 0; i < kFiles; ++i) {
    if (i % 4 == 0 || i % 4 == 2) ops.push_back(Forget(kFirst + i));
    if (i % 4 == 0) ops.push_back(Bind(kRebound + i, 2, Numbered("f", i)));
  }
  REQUIRE(f.Apply(ops).ok());
  ops.clear();
  for (int i = 0; i < kFiles; i += 4) {
    ops.push_back(Write(kRebound + i, content[i].size(), "!"));
    content[i] += "!";
  }
  ops.push_back(Fsync(0));
  REQUIRE(f.Apply(ops).ok());
  RequireAllAckedOk(f);

  const ApplierStats stats = f.applier->Stats();
  CHECK(stats.bound_rids == 1 + 2 + kFiles / 2 + kFiles / 4);
  CHECK(stats.path_fds == kPathFds);  // the others by file handle (none unhandled on this file system)
  CHECK(stats.io_fds <= kIoFds);
  CHECK(stats.pinned == 0);  // released by the Forgets
  std::set<std::string> want_d, want_e;
  for (int i = 0; i < kFiles; ++i) {
    INFO("file " << i);
    std::string path;
    switch (i % 4) {
      case 0: path = f.tree.Path("d/" + Numbered("f", i)); break;
      case 1: path = f.tree.Path("e/" + Numbered("g", i)); break;
      case 2: continue;
      case 3:
        path = f.tree.Path("d/" + Numbered("f", i));
        CHECK(Lstat(f.tree.Path("e/" + Numbered("l", i))).st_ino == Lstat(path).st_ino);
        want_e.insert(Numbered("l", i));
        break;
    }
    (i % 4 == 1 ? want_e : want_d).insert(std::filesystem::path(path).filename());
    CHECK(ReadFile(path) == content[i]);
    CHECK((Lstat(path).st_mode & 07777) == (i % 3 == 0 ? 0640u : 0600u));
    CHECK(Xattr(path, "user.i") == (i % 5 == 0 ? std::string("<none>") : Numbered("x", i)));
  }
  CHECK(Names(f.tree.Path("d")) == want_d);
  CHECK(Names(f.tree.Path("e")) == want_e);
  CHECK(Names(f.tree.root()) == std::set<std::string>{"d", "e"});
  CHECK(f.tree.OutsideUntouched());
}

TEST_CASE("applier binds 2000 files with a few descriptors, below a lowered descriptor limit",
          "[applier][budget]") {
  constexpr size_t kPathFds = 16, kIoFds = 8;
  constexpr int kFiles = 2000;
  Fixture f(false, kPathFds, kIoFds);
  const size_t before = OpenFds();
  // Fewer descriptors than files: one per bound rid (as before the budgets) fails with EMFILE.
  SoftFdLimit limit(before + 200);
  for (int start = 0; start < kFiles; start += 500) {
    std::vector<proto::Op> ops;
    for (int i = start; i < start + 500; ++i) ops.push_back(MakeFile(1, Numbered("f", i), 10 + i));
    for (int i = start; i < start + 500; ++i) ops.push_back(Write(10 + i, 0, Numbered("data ", i)));
    for (int i = start; i < start + 500; i += 50) ops.push_back(Fsync(10 + i));
    REQUIRE(f.Apply(ops).ok());
    INFO("after file " << start + 500);
    CHECK(OpenFds() <= before + kPathFds + kIoFds + 4);
  }
  RequireAllAckedOk(f);
  const ApplierStats stats = f.applier->Stats();
  CHECK(stats.bound_rids == kFiles + 1);
  CHECK(stats.path_fds <= kPathFds);
  CHECK(stats.io_fds <= kIoFds);
  for (int i = 0; i < kFiles; i += 97) {
    CHECK(ReadFile(f.tree.Path(Numbered("f", i))) == Numbered("data ", i));
  }
  CHECK(Names(f.tree.root()).size() == kFiles);
}

TEST_CASE("applier keeps a file kept by handle only writable after its last name goes", "[applier][budget]") {
  Fixture f(false, /*max_path_fds=*/2, /*max_io_fds=*/2);  // the root and x0 keep descriptors
  REQUIRE(
      f.Apply({MakeFile(1, "x0", 2), MakeFile(1, "x1", 3), MakeFile(1, "x2", 4), MakeFile(1, "x3", 5)}).ok());
  REQUIRE(f.applier->Stats().path_fds == 2);
  REQUIRE(f.Apply({Write(2, 0, "zero"), Write(3, 0, "one"), Write(4, 0, "two"), Write(5, 0, "three")}).ok());
  REQUIRE(f.Apply({Unlink(1, "x2"), Rename(1, "x0", 1, "x3")}).ok());  // x2 unlinked, x3 replaced
  CHECK(f.applier->Stats().pinned == 2);
  // Writes to other files first: the I/O cache (2) no longer holds rids 4 and 5.
  REQUIRE(f.Apply({Write(2, 4, "!"), Write(3, 3, "!")}).ok());
  REQUIRE(f.Apply({Write(4, 3, " more"), Write(5, 5, " more")}).ok());
  REQUIRE(f.Apply({Fsync(4), Fsync(5)}).ok());
  RequireAllAckedOk(f);
  CHECK(ReadFile(f.tree.Path("x3")) == "zero!");
  CHECK(ReadFile(f.tree.Path("x1")) == "one!");
  CHECK(Names(f.tree.root()) == std::set<std::string>{"x1", "x3"});
  REQUIRE(f.Apply({Forget(4), Forget(5)}).ok());
  CHECK(f.applier->Stats().pinned == 0);
  // A failed unlink leaves no pin behind.
  CHECK(f.One(Unlink(1, "missing")) == ENOENT);
  CHECK(f.applier->Stats().pinned == 0);
}

TEST_CASE("applier: a Bind of a name this copy lacks is refused but not counted as a copy left behind",
          "[applier]") {
  // A new session re-binds the primary's live names before the resync makes them here: such a Bind
  // changes nothing (the primary ignores its error too); an op that does change the copy counts.
  Fixture f;
  CHECK(f.One(Bind(2, 1, "not-here-yet")) == ENOENT);
  CHECK(f.applier->Stats().error_acks == 0);
  CHECK(f.One(Write(2, 0, "data")) == ESTALE);  // the rid is unknown: this write is lost here
  CHECK(f.applier->Stats().error_acks == 1);
}
