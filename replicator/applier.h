// Applier: the secondary's pure apply logic (no gRPC), usable directly in unit tests.
//
// Takes OpBatches of one session and applies their ops strictly in seq order underneath root_fd:
//  - Every batch is validated before anything of it is applied: payload checksums (XXH3-64), seq
//    continuity (exactly applied_through+1; duplicates <= applied_through are acked again without
//    being re-applied), known op kinds. A violation returns a non-ok Status and applies nothing of the
//    batch; the server then resets the stream so the primary reconnects and resends.
//  - Per-op problems (unknown rid, bad name, wrong file type, errno from the file system) produce an
//    error ack (Ack.error = errno) and the stream goes on.
//  - Names are single components; symlinks are never followed (O_PATH|O_NOFOLLOW binds, data ops only
//    on regular files reopened through /proc/self/fd); nothing outside root_fd's tree is touched.
//  - Disk I/O goes through io_uring: the writes of a batch are submitted together (linked per inode to
//    keep their order); fsync/fdatasync and dsync writes are flushed asynchronously so later ops keep
//    being applied, and their acks are delivered through the DurableCallback once on disk (a lone
//    flush ending its batch with none in flight is done inline and acked with the batch). syncfs
//    (Fsync rid 0; io_uring has no opcode for it) runs on a helper thread, acked the same way.
//  - A run of large aligned writes only, none with a time fix (ApplierOptions.direct_writes), is queued
//    to writer threads (DirectWriter) and acked the same way once written; every other op waits for
//    the queued writes first, and Drain() and StartSession() wait for them too.
//  - Resync ops (docs/replication.md "Resync ops") change nothing on disk and are acked at once, in
//    stream order like the others (every earlier op of the stream is applied when they run): BlockSums
//    and ListDir answer in their Ack (sums/file_size, entries), ResyncMark moves the resync state
//    (ApplierStats.resync).
//
// Threading: Apply(), StartSession() and StreamEnded() are called by one thread at a time (the server's
// completion-queue thread). The DurableCallback runs on an internal thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "proto/replication.pb.h"

namespace hamirror::replicator {

struct ApplierOptions {
  unsigned ring_entries = 256;  // io_uring size (per ring)
  // Plain pwrite/fsync on the apply thread instead of io_uring (also the automatic fallback when
  // io_uring is unavailable); for tests and odd kernels.
  bool force_sync_io = false;
  // Called on the apply thread when a resync's start mark (ResyncMark begin) is applied; may fill the
  // mark's ack (need_full, need_full_reason: this node's own record asks for a full compare).
  std::function<void(proto::Ack* answer)> on_resync_begin;
  // Where Quarantine ops save what a split-brain resync changes (replicator/quarantine.h):
  // <quarantine_root>/<resync id>/. Empty: Quarantine ops are refused (EPERM), and the source stops.
  std::string quarantine_root;
  // Descriptor budgets (0 = default), so that the number of bound rids is not limited by
  // RLIMIT_NOFILE: at most max_path_fds bound entries keep an O_PATH descriptor (the others keep a
  // file handle and are reopened for each use; default: a quarter of the descriptor limit, the FUSE
  // daemon's own table takes half), and at most max_io_fds files stay open for I/O (least recently
  // used closed first; default: a sixteenth of the limit). Minimum 2 each.
  size_t max_path_fds = 0;
  size_t max_io_fds = 0;
  // Large aligned writes (256 KiB and more, offset and length multiples of 4 KiB) go to the disk with
  // O_DIRECT instead of through this node's page cache, as a DRBD secondary writes to its disk: a
  // standby does not read what it is sent, and the copy into fresh page-cache pages was the costliest
  // step of a large write here. Durability is unchanged (the primary's flushes still flush). Switched
  // off by itself, with a log line, where the file system refuses O_DIRECT (tmpfs).
  bool direct_writes = true;
};

// BlockSums limits; a request outside them is a protocol violation (the batch is refused).
inline constexpr uint32_t kBlockSumsMinBlock = 4096;        // block_size: a multiple of this ...
inline constexpr uint32_t kBlockSumsMaxBlock = 4u << 20;    // ... up to this
inline constexpr uint64_t kBlockSumsMaxLength = 64u << 20;  // length

// Where a resync targeting this node stands, as told by the ResyncMark ops of the stream. In memory
// only: a restarted secondary forgets it (kNone).
enum class ResyncPhase : uint8_t {
  kNone,         // no resync since this applier started
  kRunning,      // begin applied: the tree is inconsistent until the end with the same id
  kDone,         // end with ok applied: the tree matches the source's as of that op
  kFailed,       // end without ok: the source gave up; the tree stays inconsistent
  kInterrupted,  // the stream ended, or another session started, while running; inconsistent. The same
                 // session reconnecting and sending the end of the same id still completes it.
};
const char* ResyncPhaseName(ResyncPhase phase);  // "none", "running", "done", "failed", "interrupted"

struct ResyncTargetState {
  uint64_t id = 0;  // ResyncMark.id of the last begin
  ResyncPhase phase = ResyncPhase::kNone;
  uint64_t bytes_total = 0;  // the source's estimate of the bytes to compare (from begin)
  // Wall clock (system_clock), milliseconds since the Unix epoch; 0: not yet.
  int64_t started_unix_ms = 0;   // begin applied
  int64_t finished_unix_ms = 0;  // done, failed or interrupted
  uint64_t quarantined = 0;      // entries saved (Quarantine ops) by this resync
};

struct ApplierStats {
  uint64_t ops_applied = 0;    // ops acknowledged (ok or with an errno), duplicates excluded
  uint64_t bytes_applied = 0;  // Write payload bytes
  uint64_t error_acks = 0;
  uint64_t duplicates = 0;
  uint64_t checksum_errors = 0;  // batches rejected for a checksum mismatch
  uint64_t sequence_errors = 0;  // batches rejected for a gap / out-of-order seq
  uint64_t protocol_errors = 0;  // other rejected batches (empty op, ...)
  uint64_t flushes_in_flight = 0;
  uint64_t applied_through = 0;
  uint64_t bound_rids = 0;
  uint64_t path_fds = 0;  // O_PATH descriptors kept for bound rids (the others keep a file handle)
  uint64_t io_fds = 0;    // files kept open for I/O
  uint64_t pinned = 0;    // unlinked inodes held open until their rid's Forget (see docs/replication.md)
  ResyncTargetState resync;
};

class Applier {
 public:
  // Called once per op whose ack waits for durability (Fsync, dsync Write), from an internal thread.
  using DurableCallback = void (*)(void* ctx, uint64_t seq, int error);

  // root_fd: directory of the replicated tree (O_PATH is fine); not owned, must outlive the Applier.
  static Status Create(int root_fd, const ApplierOptions& options, std::unique_ptr<Applier>* out);
  virtual ~Applier() = default;  // waits for in-flight flushes (their acks are dropped)

  virtual void SetDurableCallback(DurableCallback callback, void* ctx) = 0;

  // Starts or resumes a session. The same session_id keeps the rid table and applied_through (a
  // reconnect); another id resets both (rid 1 = root) and interrupts a running resync. Waits for
  // in-flight flushes first, so every op <= the returned applied_through is applied and, where asked,
  // durable.
  // recent_errors (optional) receives the error acks of the session's last failed ops (up to 4096).
  virtual uint64_t StartSession(const std::string& session_id,
                                std::vector<proto::Ack>* recent_errors = nullptr) = 0;
  virtual const std::string& session_id() const = 0;

  // The server's stream of the current session ended (for any reason): a running resync becomes
  // interrupted. Same thread as Apply().
  virtual void StreamEnded() = 0;

  // Validates then applies `batch` (its hello, if any, is ignored). Appends acks of ops finished now to
  // *acks; ops waiting for durability are acked later through the DurableCallback. Non-ok: protocol
  // violation, nothing of the batch applied.
  virtual Status Apply(const proto::OpBatch& batch, std::vector<proto::Ack>* acks) = 0;

  // Waits until every in-flight flush has completed and its callback has run.
  virtual void Drain() = 0;

  virtual ApplierStats Stats() const = 0;
};

// Validates a name sent on the wire: one path component, non-empty, <= 255 bytes, no '/' or NUL,
// not "." or "..".
bool IsValidComponent(const std::string& name);

}  // namespace hamirror::replicator
