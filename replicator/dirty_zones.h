// DirtyZones: what the peer may lack (in memory).
//
// Per replication handle (rid, the primary's handle for an open/looked-up file) a bitmap of dirty zones
// of zone_size bytes, an optional "everything from zone N on" tail (truncate, or ranges too large to
// track), and a metadata flag (mode/owner/times/xattrs); plus one "namespace dirty" flag for tree
// changes (create, link, unlink, rename...). Resync later copies the recorded zones and rescans the
// namespace. A zone is never cleared here by a later write: only Clear()/TakeSnapshot() forget.
//
// Thread-safe. The API is narrow on purpose (Describe/Record/Snapshot/Clear) so that the persistent,
// crash-safe record of a later issue can implement the same calls with an on-disk activity log.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "proto/replication.pb.h"

namespace hamirror::replicator {

// What one operation makes dirty; computed once when an op is shipped (cheap, no allocation) so the
// shipper can record it later without keeping the op body.
struct DirtyNote {
  static constexpr uint64_t kToEnd = UINT64_MAX;
  uint64_t rid = 0;  // data range of this rid (0: none)
  uint64_t offset = 0;
  uint64_t length = 0;  // kToEnd: from offset to end of file
  bool namespace_change = false;
  static constexpr int kMaxMeta = 4;
  uint64_t meta_rids[kMaxMeta] = {};  // rids whose metadata changed
  int meta_count = 0;
};

struct DirtyCounts {
  uint64_t files = 0;       // rids with anything recorded
  uint64_t zones = 0;       // zones set in bitmaps (tails not included)
  uint64_t tail_files = 0;  // rids with an open-ended "from zone N on" tail
  uint64_t metadata_files = 0;
  bool namespace_dirty = false;
};

struct DirtyFile {
  std::vector<uint64_t> zones;                  // sorted zone indices
  uint64_t tail_from_zone = DirtyNote::kToEnd;  // every zone >= this is dirty (kToEnd: no tail)
  bool metadata = false;
};

struct DirtySnapshot {
  uint64_t zone_size = 0;
  bool namespace_dirty = false;
  std::map<uint64_t, DirtyFile> files;  // by rid
};

class DirtyZones {
 public:
  explicit DirtyZones(uint64_t zone_size = 1 << 20);
  DirtyZones(const DirtyZones&) = delete;
  DirtyZones& operator=(const DirtyZones&) = delete;

  uint64_t zone_size() const { return zone_size_; }

  // Write -> zones of its range; Fallocate/CopyRange -> target range; Setattr size -> from the new
  // size on (the old size is unknown here); Setattr mode/owner/times, xattrs, TimeFix -> metadata;
  // MakeNode/Link/Unlink/Rename -> namespace. Bind/Forget/Fsync change nothing.
  static DirtyNote Describe(const proto::Op& op);
  void Record(const DirtyNote& note);
  void RecordOp(const proto::Op& op) { Record(Describe(op)); }

  void MarkRange(uint64_t rid, uint64_t offset, uint64_t length);  // length kToEnd: to end of file
  void MarkMetadata(uint64_t rid);
  void MarkNamespace();

  DirtyCounts Counts() const;
  bool Empty() const;
  bool IsZoneDirty(uint64_t rid, uint64_t zone) const;
  DirtySnapshot Snapshot() const;
  void Clear();

 private:
  struct File {
    std::vector<uint64_t> bits;  // zone i -> bit i%64 of word i/64
    uint64_t tail_from_zone = DirtyNote::kToEnd;
    bool metadata = false;
  };
  void MarkRangeLocked(uint64_t rid, uint64_t offset, uint64_t length);

  const uint64_t zone_size_;
  mutable std::mutex mu_;
  std::unordered_map<uint64_t, File> files_;
  bool namespace_dirty_ = false;
};

}  // namespace hamirror::replicator
