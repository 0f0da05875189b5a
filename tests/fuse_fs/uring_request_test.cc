// FUSE over io_uring byte handling (fuse_fs/uring_request.h): ring entries rebuilt into /dev/fuse's
// layout, malformed entries refused, replies written into an entry's buffers.
#include "fuse_fs/uring_request.h"

#include <errno.h>
#include <linux/fuse.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <string>
#include <vector>

#include "fuse_fs/uring_transport.h"
#include "tests/support/daemon.h"

using hamirror::fs::kRingHeadroom;
using hamirror::fs::RebuildRingRequest;
using hamirror::fs::RingRequest;
using hamirror::fs::uring_abi::ReqHeader;

namespace {

// An entry as the kernel fills it: header buffer and a payload buffer with headroom before it.
struct FakeEntry {
  explicit FakeEntry(size_t capacity = 1 << 16) : memory(kRingHeadroom + capacity), capacity(capacity) {}
  char* payload() { return memory.data() + kRingHeadroom; }

  // A request: in header (len computed unless len_override), argument struct, payload bytes.
  void Fill(uint32_t opcode, uint64_t unique, const void* arg, size_t arg_size, const std::string& data,
            int64_t len_override = -1) {
    memset(&hdr, 0, sizeof(hdr));
    fuse_in_header in{};
    in.opcode = opcode;
    in.unique = unique;
    in.nodeid = 7;
    in.len = len_override >= 0 ? static_cast<uint32_t>(len_override)
                               : static_cast<uint32_t>(sizeof(in) + arg_size + data.size());
    memcpy(hdr.in_out, &in, sizeof(in));
    if (arg_size) memcpy(hdr.op_in, arg, arg_size);
    hdr.ent_in_out.commit_id = unique;
    hdr.ent_in_out.payload_sz = static_cast<uint32_t>(data.size());
    memcpy(payload(), data.data(), data.size());
  }

  ReqHeader hdr{};
  std::vector<char> memory;
  size_t capacity;
};

}  // namespace

TEST_CASE("ring request: a WRITE is rebuilt as /dev/fuse would deliver it, payload in place",
          "[fuse_fs][uring]") {
  FakeEntry e;
  fuse_write_in w{};
  w.fh = 3;
  w.offset = 4096;
  w.size = 5;
  e.Fill(FUSE_WRITE, 42, &w, sizeof(w), "hello");
  RingRequest r;
  REQUIRE(RebuildRingRequest(e.hdr, e.payload(), e.capacity, &r) == 0);
  REQUIRE(r.unique == 42);
  REQUIRE(r.opcode == FUSE_WRITE);
  REQUIRE(r.size == sizeof(fuse_in_header) + sizeof(fuse_write_in) + 5);
  // Contiguous, ending exactly where the payload is: no copy of the data.
  REQUIRE(r.data + sizeof(fuse_in_header) + sizeof(fuse_write_in) == e.payload());
  fuse_in_header in;
  memcpy(&in, r.data, sizeof(in));
  REQUIRE(in.len == r.size);
  REQUIRE(in.nodeid == 7);
  fuse_write_in w2;
  memcpy(&w2, r.data + sizeof(in), sizeof(w2));
  REQUIRE(w2.offset == 4096);
  REQUIRE(w2.fh == 3);
  REQUIRE(std::string(r.data + sizeof(in) + sizeof(w2), 5) == "hello");
}

TEST_CASE("ring request: an opcode without argument struct (LOOKUP) is header + name", "[fuse_fs][uring]") {
  FakeEntry e;
  e.Fill(FUSE_LOOKUP, 9, nullptr, 0, std::string("name\0", 5));
  RingRequest r;
  REQUIRE(RebuildRingRequest(e.hdr, e.payload(), e.capacity, &r) == 0);
  REQUIRE(r.size == sizeof(fuse_in_header) + 5);
  REQUIRE(std::string(r.data + sizeof(fuse_in_header)) == "name");
}

TEST_CASE("ring request: a compat-size argument struct is accepted within its range (SETXATTR)",
          "[fuse_fs][uring]") {
  FakeEntry e;
  fuse_setxattr_in x{};
  x.size = 1;
  e.Fill(FUSE_SETXATTR, 5, &x, FUSE_COMPAT_SETXATTR_IN_SIZE, std::string("user.a\0v", 8));
  RingRequest r;
  REQUIRE(RebuildRingRequest(e.hdr, e.payload(), e.capacity, &r) == 0);
  e.Fill(FUSE_SETXATTR, 5, &x, sizeof(x), std::string("user.a\0v", 8));
  REQUIRE(RebuildRingRequest(e.hdr, e.payload(), e.capacity, &r) == 0);
}

TEST_CASE("ring request: malformed entries are refused, never trusted", "[fuse_fs][uring]") {
  FakeEntry e(4096);
  RingRequest r;
  fuse_write_in w{};
  SECTION("unknown opcode: ENOSYS, unique kept for the answer") {
    e.Fill(9999, 11, nullptr, 0, "");
    REQUIRE(RebuildRingRequest(e.hdr, e.payload(), e.capacity, &r) == ENOSYS);
    REQUIRE(r.unique == 11);
    REQUIRE(r.data == nullptr);
  }
  SECTION("opcodes never sent on a ring (INIT, FORGET, INTERRUPT)") {
    for (uint32_t op : {FUSE_INIT, FUSE_FORGET, FUSE_INTERRUPT, FUSE_BATCH_FORGET}) {
      e.Fill(op, 11, nullptr, 0, "");
      REQUIRE(RebuildRingRequest(e.hdr, e.payload(), e.capacity, &r) == ENOSYS);
    }
  }
  SECTION("payload size larger than the buffer") {
    e.Fill(FUSE_WRITE, 11, &w, sizeof(w), "x");
    e.hdr.ent_in_out.payload_sz = 4097;
    REQUIRE(RebuildRingRequest(e.hdr, e.payload(), e.capacity, &r) == EPROTO);
  }
  SECTION("len shorter than header + payload") {
    e.Fill(FUSE_WRITE, 11, &w, sizeof(w), "abcdef", sizeof(fuse_in_header) + 2);
    REQUIRE(RebuildRingRequest(e.hdr, e.payload(), e.capacity, &r) == EPROTO);
  }
  SECTION("len shorter than the in header") {
    e.Fill(FUSE_GETATTR, 11, nullptr, 0, "", 3);
    REQUIRE(RebuildRingRequest(e.hdr, e.payload(), e.capacity, &r) == EPROTO);
  }
  SECTION("argument size not one this opcode has") {
    e.Fill(FUSE_WRITE, 11, &w, 16, "abc");
    REQUIRE(RebuildRingRequest(e.hdr, e.payload(), e.capacity, &r) == EPROTO);
    e.Fill(FUSE_LOOKUP, 11, &w, 8, "abc");
    REQUIRE(RebuildRingRequest(e.hdr, e.payload(), e.capacity, &r) == EPROTO);
  }
  SECTION("huge len (argument area overflow)") {
    e.Fill(FUSE_WRITE, 11, &w, sizeof(w), "abc", 0xffffffffu);
    REQUIRE(RebuildRingRequest(e.hdr, e.payload(), e.capacity, &r) == EPROTO);
  }
  SECTION("unique 0 or unique and commit id differ") {
    e.Fill(FUSE_GETATTR, 0, &w, sizeof(fuse_getattr_in), "");
    REQUIRE(RebuildRingRequest(e.hdr, e.payload(), e.capacity, &r) == EPROTO);
    e.Fill(FUSE_GETATTR, 12, &w, sizeof(fuse_getattr_in), "");
    e.hdr.ent_in_out.commit_id = 13;
    REQUIRE(RebuildRingRequest(e.hdr, e.payload(), e.capacity, &r) == EPROTO);
  }
}

TEST_CASE("ring request: every opcode in the table has an argument struct that fits the op area",
          "[fuse_fs][uring]") {
  size_t lo = 0, hi = 0;
  int known = 0;
  for (uint32_t op = 0; op < 100; ++op) {
    if (!hamirror::fs::RingOpArgSize(op, &lo, &hi)) continue;
    ++known;
    CHECK(lo <= hi);
    CHECK(hi <= hamirror::fs::uring_abi::kOpAreaSize);
  }
  REQUIRE(known > 30);
  REQUIRE(hamirror::fs::RingOpArgSize(FUSE_READ, &lo, &hi));
  REQUIRE(hi == sizeof(fuse_read_in));
}

TEST_CASE("ring reply: header to the header buffer, arguments concatenated into the payload",
          "[fuse_fs][uring]") {
  FakeEntry e(64);
  fuse_out_header out{};
  out.unique = 77;
  out.len = sizeof(out) + 8;
  char a[3] = {'a', 'b', 'c'}, b[5] = {'d', 'e', 'f', 'g', 'h'};
  struct iovec iov[3] = {{&out, sizeof(out)}, {a, 3}, {b, 5}};
  REQUIRE(hamirror::fs::ReplyUnique(iov, 3) == 77);
  REQUIRE(hamirror::fs::WriteRingReply(iov, 3, &e.hdr, e.payload(), e.capacity) == 0);
  fuse_out_header got;
  memcpy(&got, e.hdr.in_out, sizeof(got));
  REQUIRE(got.unique == 77);
  REQUIRE(got.error == 0);
  REQUIRE(got.len == sizeof(out) + 8);
  REQUIRE(e.hdr.ent_in_out.payload_sz == 8);
  REQUIRE(std::string(e.payload(), 8) == "abcdefgh");

  SECTION("a reply flattened in one buffer (staged) lands the same") {
    std::vector<char> flat(sizeof(out));
    memcpy(flat.data(), &out, sizeof(out));
    flat.insert(flat.end(), {'x', 'y'});
    struct iovec one = {flat.data(), flat.size()};
    REQUIRE(hamirror::fs::WriteRingReply(&one, 1, &e.hdr, e.payload(), e.capacity) == 0);
    REQUIRE(e.hdr.ent_in_out.payload_sz == 2);
    REQUIRE(std::string(e.payload(), 2) == "xy");
  }
  SECTION("too large for the payload buffer: refused (answered EIO instead)") {
    std::vector<char> big(65);
    struct iovec iov2[2] = {{&out, sizeof(out)}, {big.data(), big.size()}};
    REQUIRE(hamirror::fs::WriteRingReply(iov2, 2, &e.hdr, e.payload(), e.capacity) == EMSGSIZE);
  }
  SECTION("short header: refused; unique unreadable") {
    struct iovec shortv = {&out, 8};
    REQUIRE(hamirror::fs::WriteRingReply(&shortv, 1, &e.hdr, e.payload(), e.capacity) == EPROTO);
    REQUIRE(hamirror::fs::ReplyUnique(&shortv, 1) == 0);
  }
  SECTION("error answer") {
    hamirror::fs::WriteRingError(78, ENOSYS, &e.hdr);
    memcpy(&got, e.hdr.in_out, sizeof(got));
    REQUIRE(got.unique == 78);
    REQUIRE(got.error == -ENOSYS);
    REQUIRE(got.len == sizeof(got));
    REQUIRE(e.hdr.ent_in_out.payload_sz == 0);
  }
}

TEST_CASE("ring transport: names, kernel switch and possible CPUs are parsed", "[fuse_fs][uring]") {
  using namespace hamirror::fs;
  Transport t;
  REQUIRE(ParseTransport("uring", &t));
  REQUIRE(t == Transport::kUring);
  REQUIRE(ParseTransport("auto", &t));
  REQUIRE(t == Transport::kAuto);
  REQUIRE(ParseTransport("dev", &t));
  REQUIRE(t == Transport::kDev);
  REQUIRE_FALSE(ParseTransport("ring", &t));
  hamirror::test::TempDir tmp;
  auto write = [&](const std::string& name, const std::string& text) {
    FILE* f = fopen(tmp.Sub(name).c_str(), "w");
    fputs(text.c_str(), f);
    fclose(f);
    return tmp.Sub(name);
  };
  REQUIRE(KernelUringSwitch(write("y", "Y\n")) == KernelUring::kOn);
  REQUIRE(KernelUringSwitch(write("n", "N\n")) == KernelUring::kOff);
  REQUIRE(KernelUringSwitch(tmp.Sub("absent")) == KernelUring::kAbsent);
  REQUIRE(PossibleCpus(write("c1", "0-1\n")) == 2);
  REQUIRE(PossibleCpus(write("c2", "0\n")) == 1);
  REQUIRE(PossibleCpus(write("c3", "0-3,6\n")) == 5);
  REQUIRE(PossibleCpus(write("c4", "garbage\n")) == 0);
  REQUIRE(PossibleCpus(tmp.Sub("absent")) == 0);
}

TEST_CASE("ring reply routing: a reply goes to its request's entry once, others stay on /dev/fuse",
          "[fuse_fs][uring]") {
  struct Entry {
    int id;
  };
  Entry e1{1}, e2{2};
  hamirror::fs::RingInFlight<Entry> inflight;
  inflight.Add(100, &e1);
  inflight.Add(200, &e2);
  auto reply = [](uint64_t unique, size_t header_len = sizeof(fuse_out_header)) {
    static fuse_out_header out;
    out = fuse_out_header{};
    out.unique = unique;
    out.len = sizeof(out);
    return iovec{&out, header_len};
  };
  iovec r = reply(200);
  REQUIRE(inflight.TakeFor(&r, 1) == &e2);
  REQUIRE(inflight.TakeFor(&r, 1) == nullptr);  // answered once: a second reply is not a ring reply
  r = reply(300);
  REQUIRE(inflight.TakeFor(&r, 1) == nullptr);  // a /dev/fuse request
  r = reply(0);
  REQUIRE(inflight.TakeFor(&r, 1) == nullptr);  // a notification
  r = reply(100, 8);
  REQUIRE(inflight.TakeFor(&r, 1) == nullptr);  // too short to carry a unique
  REQUIRE(inflight.size() == 1);
  r = reply(100);
  REQUIRE(inflight.TakeFor(&r, 1) == &e1);
  REQUIRE(inflight.size() == 0);

  using hamirror::fs::ChooseRingReplyPath;
  using hamirror::fs::RingReplyPath;
  // From another thread after the handler returned: committed by the woken queue thread.
  REQUIRE(ChooseRingReplyPath(false, true) == RingReplyPath::kCommitWake);
  REQUIRE(ChooseRingReplyPath(false, false) == RingReplyPath::kCommitWake);
  // While the handler runs: its names/data share the payload buffer, so the reply waits in a copy.
  REQUIRE(ChooseRingReplyPath(true, true) == RingReplyPath::kStage);
  REQUIRE(ChooseRingReplyPath(true, false) == RingReplyPath::kCommitInline);
}
