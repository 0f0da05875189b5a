#include "replicator/dirty_zones.h"

#include <catch2/catch.hpp>
#include <thread>

#include "tests/replicator/test_util.h"

using namespace hamirror;
using namespace hamirror::replicator;
using namespace hamirror::replicator::testing;

TEST_CASE("dirty zones record writes by zone", "[dirty]") {
  DirtyZones d(4096);
  CHECK(d.Empty());
  d.RecordOp(Write(5, 4000, std::string(200, 'x')));  // spans zones 0 and 1
  d.RecordOp(Write(5, 3 * 4096, "y"));
  d.RecordOp(Write(6, 0, ""));  // empty: nothing
  DirtyCounts c = d.Counts();
  CHECK(c.files == 1);
  CHECK(c.zones == 3);
  CHECK(!c.namespace_dirty);
  CHECK(d.IsZoneDirty(5, 0));
  CHECK(d.IsZoneDirty(5, 1));
  CHECK(!d.IsZoneDirty(5, 2));
  CHECK(d.IsZoneDirty(5, 3));
  DirtySnapshot snap = d.Snapshot();
  REQUIRE(snap.files.count(5) == 1);
  CHECK(snap.files[5].zones == std::vector<uint64_t>{0, 1, 3});
  d.Clear();
  CHECK(d.Empty());
}

TEST_CASE("dirty zones: truncate, fallocate, copy, metadata, namespace", "[dirty]") {
  DirtyZones d(1 << 20);
  proto::Op t;
  t.mutable_setattr()->set_rid(7);
  t.mutable_setattr()->set_size(3 << 20);
  d.RecordOp(t);
  CHECK(d.IsZoneDirty(7, 3));
  CHECK(d.IsZoneDirty(7, 1000000));
  CHECK(!d.IsZoneDirty(7, 2));
  CHECK(d.Counts().tail_files == 1);
  CHECK(d.Counts().metadata_files == 1);

  proto::Op fa;
  fa.mutable_fallocate()->set_rid(8);
  fa.mutable_fallocate()->set_offset(0);
  fa.mutable_fallocate()->set_length(5 << 20);
  d.RecordOp(fa);
  CHECK(d.IsZoneDirty(8, 4));
  CHECK(!d.IsZoneDirty(8, 5));

  proto::Op cp;
  cp.mutable_copy_range()->set_rid_in(8);
  cp.mutable_copy_range()->set_rid_out(9);
  cp.mutable_copy_range()->set_offset_out(10 << 20);
  cp.mutable_copy_range()->set_length(1);
  d.RecordOp(cp);
  CHECK(d.IsZoneDirty(9, 10));
  CHECK(!d.IsZoneDirty(9, 0));

  proto::Op mode;
  mode.mutable_setattr()->set_rid(10);
  mode.mutable_setattr()->set_mode(0600);
  d.RecordOp(mode);
  CHECK(d.Snapshot().files[10].metadata);
  CHECK(d.Snapshot().files[10].zones.empty());

  CHECK(!d.Counts().namespace_dirty);
  d.RecordOp(Bind(3, 1, "x"));
  d.RecordOp(Fsync(3));
  CHECK(!d.Counts().namespace_dirty);
  proto::Op ren;
  ren.mutable_rename()->set_parent(1);
  d.RecordOp(ren);
  CHECK(d.Counts().namespace_dirty);

  // A write at a huge sparse offset becomes a tail, not a giant bitmap.
  d.RecordOp(Write(11, uint64_t{1} << 60, "z"));
  CHECK(d.IsZoneDirty(11, (uint64_t{1} << 40)));
  CHECK(!d.IsZoneDirty(11, 0));
}

TEST_CASE("dirty zones are thread-safe", "[dirty]") {
  DirtyZones d(4096);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&d, t] {
      for (int i = 0; i < 1000; ++i) d.MarkRange(t, uint64_t(i) * 4096, 1);
    });
  }
  for (auto& th : threads) th.join();
  CHECK(d.Counts().zones == 4000);
  CHECK(d.Counts().files == 4);
}
