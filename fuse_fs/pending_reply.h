// PendingReply: one FUSE request waiting for its two halves, the local apply and the peer's answer.
//
// A mutating request is answered to the kernel only when it is applied locally and the shipper has
// called back (acked, or not shipped because the peer is lost). The FUSE worker thread does not wait:
// it arms the counter with the number of parts left and returns to the loop; whichever part finishes
// last sends the reply (from a shipper thread, or inline). The reply kind and its payload are kept
// here so the last finisher can send it without knowing which operation it was.
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "replicator/shipper.h"
#include "replicator/zone_record.h"

namespace hamirror::fs {

struct Inode;

// A change announced to the persistent record (replicator/zone_record.h). A data range (length != 0)
// was Begin()-ed before the change was issued and is End()-ed with the peer's outcome (sticky unless
// acked); any other change the peer did not apply marks the tree for the next resync. record null:
// nothing to tell.
struct RecordSpan {
  replicator::ZoneRecord* record = nullptr;
  uint64_t ino = 0;
  uint64_t offset = 0;
  uint64_t length = 0;  // 0: not a data range
  // Not a data range: a metadata change (mode, owner, times) of this regular file; 0: anything else
  // (a namespace change, an xattr...), which marks the whole tree.
  uint64_t meta_ino = 0;
  // Files a rename moved (two for RENAME_EXCHANGE): the peer's file of that name may be another one
  // with the same size and mtime, so each is compared whole by the next resync.
  uint64_t moved_inos[2] = {0, 0};
  // Tells the record how the peer's half ended, then forgets the span.
  void Finish(bool acked);
};

class PendingReply {
 public:
  enum class Kind : uint8_t { kErrno, kWrite, kEntry, kCreate, kAttr, kNone };

  // parts: how many Done() calls complete it (1: only the ship callback; 2: ship + a local part).
  static PendingReply* New(fuse_req_t req, Kind kind, int parts) {
    return new PendingReply(req, kind, parts);
  }

  // ShipCallback for Shipper::Ship: the remote half is done. A peer error is recorded dirty by the
  // shipper; the local result stands (the primary's tree is the reference).
  static void OnShipped(void* ctx, const replicator::ShipResult& result);

  // A local half finished; err != 0 turns the reply into that errno.
  void Done(int err = 0);

  // Payload, filled in before arming (before Ship is called).
  size_t count = 0;                // kWrite
  fuse_entry_param entry{};        // kEntry, kCreate; entry.attr for kAttr
  fuse_file_info file_info{};      // kCreate
  double attr_timeout = 0;         // kAttr
  Inode* durable_inode = nullptr;  // on success, durable_inode->durable_gen >= durable_gen
  uint64_t durable_gen = 0;
  bool durable_full = false;  // fsync (data and metadata), not only fdatasync: also durable_full_gen
  uint64_t durable_ns = 0;    // with durable_full: the namespace changes counted when it began (Write, Fsync)

  // How the peer's half of this change ended is told to the persistent record (see RecordSpan).
  RecordSpan span;

 private:
  PendingReply(fuse_req_t req, Kind kind, int parts) : req_(req), kind_(kind), parts_(parts) {}
  void Reply();

  fuse_req_t req_;
  Kind kind_;
  std::atomic<int> parts_;
  std::atomic<int> err_{0};
};

}  // namespace hamirror::fs
