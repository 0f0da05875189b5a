#include "replicator/dirty_zones.h"

#include <algorithm>
#include <bit>

namespace hamirror::replicator {

namespace {
// Beyond this zone index a range is kept as an open tail instead of bits, so a write at a huge
// sparse offset cannot make the bitmap huge (2^24 zones = 2 MiB of bitmap per file).
constexpr uint64_t kMaxBitmapZones = uint64_t{1} << 24;

void AddMeta(DirtyNote* note, uint64_t rid) {
  for (int i = 0; i < note->meta_count; ++i) {
    if (note->meta_rids[i] == rid) return;
  }
  if (note->meta_count < DirtyNote::kMaxMeta) {
    note->meta_rids[note->meta_count++] = rid;
  } else {
    note->namespace_change = true;  // more than we track: make resync rescan the tree
  }
}
}  // namespace

DirtyZones::DirtyZones(uint64_t zone_size) : zone_size_(zone_size == 0 ? 1 : zone_size) {}

DirtyNote DirtyZones::Describe(const proto::Op& op) {
  DirtyNote note;
  switch (op.body_case()) {
    case proto::Op::kWrite:
      note.rid = op.write().rid();
      note.offset = op.write().offset();
      note.length = op.write().data().size();
      break;
    case proto::Op::kFallocate:
      note.rid = op.fallocate().rid();
      note.offset = op.fallocate().offset();
      note.length = op.fallocate().length();
      AddMeta(&note, note.rid);  // may change the size
      break;
    case proto::Op::kCopyRange:
      note.rid = op.copy_range().rid_out();
      note.offset = op.copy_range().offset_out();
      note.length = op.copy_range().length();
      break;
    case proto::Op::kSetattr: {
      const proto::Setattr& s = op.setattr();
      if (s.has_size()) {
        note.rid = s.rid();
        note.offset = s.size();
        note.length = DirtyNote::kToEnd;
      }
      AddMeta(&note, s.rid());
      break;
    }
    case proto::Op::kSetxattr: AddMeta(&note, op.setxattr().rid()); break;
    case proto::Op::kRemovexattr: AddMeta(&note, op.removexattr().rid()); break;
    case proto::Op::kMakeNode:
    case proto::Op::kLink:
    case proto::Op::kUnlink:
    case proto::Op::kRename: note.namespace_change = true; break;
    case proto::Op::kBind:
    case proto::Op::kForget:
    case proto::Op::kFsync:
    case proto::Op::kBlockSums:  // resync queries and marks change nothing on the peer
    case proto::Op::kListDir:
    case proto::Op::kResyncMark:
    case proto::Op::kQuarantine:
    case proto::Op::BODY_NOT_SET: break;
  }
  for (const proto::TimeFix& t : op.times()) AddMeta(&note, t.rid());
  if (note.length == 0) note.rid = 0;  // empty range: nothing to copy
  return note;
}

void DirtyZones::Record(const DirtyNote& note) {
  std::lock_guard<std::mutex> lock(mu_);
  if (note.rid != 0) MarkRangeLocked(note.rid, note.offset, note.length);
  for (int i = 0; i < note.meta_count; ++i) files_[note.meta_rids[i]].metadata = true;
  if (note.namespace_change) namespace_dirty_ = true;
}

void DirtyZones::MarkRange(uint64_t rid, uint64_t offset, uint64_t length) {
  std::lock_guard<std::mutex> lock(mu_);
  MarkRangeLocked(rid, offset, length);
}

void DirtyZones::MarkRangeLocked(uint64_t rid, uint64_t offset, uint64_t length) {
  if (length == 0) return;
  File& f = files_[rid];
  const uint64_t first = offset / zone_size_;
  uint64_t last;  // inclusive
  if (length == DirtyNote::kToEnd || offset + length < offset) {
    last = DirtyNote::kToEnd;
  } else {
    last = (offset + length - 1) / zone_size_;
  }
  if (last == DirtyNote::kToEnd) {
    f.tail_from_zone = std::min({f.tail_from_zone, first, kMaxBitmapZones});
    return;
  }
  if (last >= kMaxBitmapZones) {
    f.tail_from_zone = std::min(f.tail_from_zone, kMaxBitmapZones);
    if (first >= kMaxBitmapZones) return;
    last = kMaxBitmapZones - 1;
  }
  if (first >= f.tail_from_zone) return;
  if (last >= f.tail_from_zone) last = f.tail_from_zone - 1;
  if (f.bits.size() <= last / 64) f.bits.resize(last / 64 + 1, 0);
  for (uint64_t z = first; z <= last;) {
    const uint64_t word = z / 64;
    const uint64_t bit = z % 64;
    const uint64_t span = std::min<uint64_t>(64 - bit, last - z + 1);
    const uint64_t mask = span == 64 ? ~uint64_t{0} : (((uint64_t{1} << span) - 1) << bit);
    f.bits[word] |= mask;
    z += span;
  }
}

void DirtyZones::MarkMetadata(uint64_t rid) {
  std::lock_guard<std::mutex> lock(mu_);
  files_[rid].metadata = true;
}

void DirtyZones::MarkNamespace() {
  std::lock_guard<std::mutex> lock(mu_);
  namespace_dirty_ = true;
}

DirtyCounts DirtyZones::Counts() const {
  std::lock_guard<std::mutex> lock(mu_);
  DirtyCounts c;
  c.namespace_dirty = namespace_dirty_;
  c.files = files_.size();
  for (const auto& [rid, f] : files_) {
    for (uint64_t w : f.bits) c.zones += std::popcount(w);
    if (f.tail_from_zone != DirtyNote::kToEnd) ++c.tail_files;
    if (f.metadata) ++c.metadata_files;
  }
  return c;
}

bool DirtyZones::Empty() const {
  std::lock_guard<std::mutex> lock(mu_);
  return files_.empty() && !namespace_dirty_;
}

bool DirtyZones::IsZoneDirty(uint64_t rid, uint64_t zone) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = files_.find(rid);
  if (it == files_.end()) return false;
  const File& f = it->second;
  if (zone >= f.tail_from_zone) return true;
  if (zone / 64 >= f.bits.size()) return false;
  return (f.bits[zone / 64] >> (zone % 64)) & 1;
}

DirtySnapshot DirtyZones::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  DirtySnapshot snap;
  snap.zone_size = zone_size_;
  snap.namespace_dirty = namespace_dirty_;
  for (const auto& [rid, f] : files_) {
    DirtyFile& out = snap.files[rid];
    out.tail_from_zone = f.tail_from_zone;
    out.metadata = f.metadata;
    for (size_t w = 0; w < f.bits.size(); ++w) {
      for (uint64_t bits = f.bits[w]; bits != 0; bits &= bits - 1) {
        out.zones.push_back(w * 64 + std::countr_zero(bits));
      }
    }
  }
  return snap;
}

void DirtyZones::Clear() {
  std::lock_guard<std::mutex> lock(mu_);
  files_.clear();
  namespace_dirty_ = false;
}

}  // namespace hamirror::replicator
