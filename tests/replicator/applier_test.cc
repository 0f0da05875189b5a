// Applier unit tests on a temporary directory: every op kind, validation (checksums, sequence), and
// that nothing escapes the tree (names, symlinks).
#include "replicator/applier.h"

#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <map>
#include <mutex>

#include "tests/replicator/test_util.h"

using namespace hamirror;
using namespace hamirror::replicator;
using namespace hamirror::replicator::testing;

namespace {

class Fixture {
 public:
  explicit Fixture(bool sync_io = false) {
    REQUIRE(tree.root_fd() >= 0);
    ApplierOptions options;
    options.force_sync_io = sync_io;
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
    return s;
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
