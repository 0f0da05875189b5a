#include "fuse_fs/pending_reply.h"

#include "common/log.h"
#include "fuse_fs/inode_table.h"

namespace hamirror::fs {

namespace {
void RaiseTo(std::atomic<uint64_t>& value, uint64_t to) {
  uint64_t cur = value.load();
  while (cur < to && !value.compare_exchange_weak(cur, to)) {
  }
}
}  // namespace

void RecordSpan::Finish(bool acked) {
  if (record == nullptr) return;
  if (length != 0) {
    record->End(ino, offset, length, acked);
  } else if (!acked) {
    // Durable once (then a no-op): a change the peer lacks. Failing to record it would hide a
    // difference: that is logged loudly, and the record's next open finds the session unclean
    // (tree) anyway.
    Status s = meta_ino != 0 ? record->MarkMeta(meta_ino)
                             : record->MarkTree("a namespace or metadata change did not reach the peer");
    for (uint64_t ino : moved_inos) {
      if (ino != 0 && s.ok()) s = record->MarkFile(ino);
    }
    if (!s.ok()) HLOG_ERROR("cannot record a change the peer lacks: %s", s.ToString().c_str());
  }
  record = nullptr;
  length = 0;
}

void PendingReply::OnShipped(void* ctx, const replicator::ShipResult& result) {
  auto* p = static_cast<PendingReply*>(ctx);
  const bool acked = result.outcome == replicator::ShipOutcome::kAcked;
  // Only an ack makes the change durable on the peer; otherwise a later fsync must not be skipped.
  if (!acked) p->durable_inode = nullptr;
  p->span.Finish(acked);
  p->Done(0);
}

void PendingReply::Done(int err) {
  if (err != 0) {
    int expected = 0;
    err_.compare_exchange_strong(expected, err);
  }
  if (parts_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  Reply();
  delete this;
}

void PendingReply::Reply() {
  int err = err_.load();
  if (err == 0 && durable_inode != nullptr) {
    RaiseTo(durable_inode->durable_gen, durable_gen);
    if (durable_full) {
      RaiseTo(durable_inode->durable_full_gen, durable_gen);
      RaiseTo(durable_inode->durable_full_ns, durable_ns);
    }
  }
  if (kind_ == Kind::kNone) return;
  if (err != 0) {
    fuse_reply_err(req_, err);
    return;
  }
  switch (kind_) {
    case Kind::kErrno: fuse_reply_err(req_, 0); break;
    case Kind::kWrite: fuse_reply_write(req_, count); break;
    case Kind::kEntry: fuse_reply_entry(req_, &entry); break;
    case Kind::kCreate: fuse_reply_create(req_, &entry, &file_info); break;
    case Kind::kAttr: fuse_reply_attr(req_, &entry.attr, attr_timeout); break;
    case Kind::kNone: break;
  }
}

}  // namespace hamirror::fs
