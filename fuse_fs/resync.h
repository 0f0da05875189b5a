// Resync: brings the peer's copy up to date from this node's (the source, role primary), while the
// application keeps writing. docs/reintegration.md argues why the result is identical.
//
// What it offers
// --------------
// One resync at a time on a background thread, started by the Filesystem when a replication stream to
// the peer comes up (and on demand: `hamirror second fullsync`, the control API). Everything it sends
// goes on the live stream, in order with the application's own operations:
//   - queries: BlockSums (XXH3-64 per block of a range) and ListDir, answered by the peer at that point
//     of the stream;
//   - fixes: the ordinary operations (Write, MakeNode, Unlink, Setattr, Setxattr...).
// A range is compared as it stands at one stream position: the local sums are read under the file's
// data lock at the moment the query is shipped (the lock orders the application's writes on both
// sides), and a differing block is re-read under the lock when its Write is shipped. So a block the
// application writes meanwhile ends identical too: its live write reaches the peer before or after the
// resync's copy, and the copy carries the data as of its own position. Directories are reconciled
// under the namespace lock held exclusively from the listing until the fixes are shipped.
//
// What it compares: with `full`, every file by block checksums; otherwise what the record names
// (replicator/zone_record.h): recorded zones of recorded files, the entries of recorded directories,
// and every directory's entries and every file's metadata when the record's `tree` flag is set. An
// entry that is new, replaced or whose size or mtime differ on the peer gets its whole data compared.
// The record entries it covered are forgotten once the pass ends well (ForgetResynced); what was
// marked again meanwhile (a peer error, a link loss) is the next pass's work (bounded).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>

#include "common/status.h"
#include "fuse_fs/inode_table.h"
#include "proto/fs_control.pb.h"
#include "proto/replication.pb.h"
#include "replicator/shipper.h"
#include "replicator/zone_record.h"

namespace hamirror::fs {

// What the engine needs of the file system (implemented by Filesystem).
class ResyncHost {
 public:
  virtual ~ResyncHost() = default;
  virtual InodeTable& resync_table() = 0;
  // Exclusive: no namespace change meanwhile; shared: binds (lookups).
  virtual std::shared_mutex& resync_ns_mutex() = 0;
  virtual replicator::ZoneRecord& resync_record() = 0;
  // Ships op on the live stream. False (callback not called) when there is no stream.
  virtual bool ResyncShip(proto::Op&& op, replicator::ShipCallback callback, void* ctx) = 0;
  // An inode whose last lookup reference the engine dropped: ship Forget and delete it.
  virtual void ResyncForget(Inode* inode) = 0;
};

struct ResyncOptions {
  uint32_t block_size = 64 << 10;  // checksum granularity (what is sent when one byte differs)
  uint64_t chunk_size = 1 << 20;   // one BlockSums query
  int window = 4;                  // queries of one file in flight at once
  int workers = 3;                 // files resynced at once (nbrei)
  int max_passes = 4;
  uint64_t max_rate_bps = 0;  // 0: unlimited (reiallowedbw)
};

class ResyncEngine {
 public:
  ResyncEngine(ResyncHost* host, const ResyncOptions& options);
  ~ResyncEngine();  // Cancel()s and joins
  ResyncEngine(const ResyncEngine&) = delete;
  ResyncEngine& operator=(const ResyncEngine&) = delete;

  // Starts a resync on the background thread; refused while one runs.
  Status Start(bool full, const std::string& why);
  // Starts an online verify instead: every file compared by block checksums and every directory's
  // entries and metadata, fixing nothing; what differs is listed in Progress(). repair: what differs
  // is recorded (so the peer is behind until a resync, which the manager then runs).
  Status StartVerify(bool repair);
  // Stops a running resync (the record keeps what was not done) and waits for it.
  void Cancel();
  bool running() const { return running_.load(); }
  // True once a resync finished well and nothing was recorded since.
  bool done_ok() const { return done_ok_.load(); }
  void Progress(proto::FsResync* out) const;

 private:
  struct Run;
  void Main(bool full, std::string why, uint64_t id);
  void VerifyMain(bool repair, uint64_t id);
  uint64_t NextIdLocked();
  bool Attempt(bool full, std::string why, uint64_t id, bool* lost);
  void Begin(Run* run, uint64_t id, std::string* why);
  bool Passes(Run* run, uint64_t id);

  ResyncHost* const host_;
  const ResyncOptions options_;
  mutable std::mutex mu_;  // guards progress_ and thread_
  proto::FsResync progress_;
  std::chrono::steady_clock::time_point started_;
  std::thread thread_;
  std::condition_variable cancel_cv_;  // with mu_: wakes the wait between attempts
  std::atomic<bool> running_{false};
  std::atomic<bool> cancel_{false};
  std::atomic<bool> done_ok_{false};
  uint64_t last_id_ = 0;  // under mu_

  friend struct Run;
};

}  // namespace hamirror::fs
