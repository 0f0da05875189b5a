// Shipper: the primary side of the replication stream (public contract between fuse_fs and
// replicator).
//
// The file system layer applies a mutation locally, then hands the matching proto::Op to Ship() while
// still holding whatever lock orders conflicting mutations (so the stream order equals the local order
// for anything that conflicts). Ship() assigns the sequence number, computes payload checksums, batches
// operations onto the gRPC stream and calls the callback exactly once:
//   kAcked      the peer applied it (and made it durable, for fsync and dsync writes);
//   kPeerError  the peer acknowledged with an errno (the range is recorded dirty);
//   kNotShipped no peer (alone, or the peer was declared lost): the change is recorded in the
//               dirty-zone record instead. When already alone the callback runs inline, inside Ship().
// The callback runs on a shipper thread (or inline); it must not block.
//
// Peer loss: if the oldest unacknowledged operation is older than send_timeout, or the stream breaks
// and cannot be re-established (resending every unacknowledged operation) before that deadline, the
// shipper goes alone: every pending callback completes with kNotShipped and their ranges are recorded.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/status.h"
#include "proto/replication.pb.h"
#include "replicator/dirty_zones.h"
#include "replicator/tls.h"

namespace hamirror::replicator {

enum class ShipOutcome { kAcked, kPeerError, kNotShipped };

struct ShipResult {
  ShipOutcome outcome;
  int peer_errno;  // with kPeerError
  // The peer's Ack message when the outcome came from one (kAcked, kPeerError): the answer of a resync
  // query (BlockSums: sums, file_size; ListDir: entries). Valid only while the callback runs: copy what
  // is kept. nullptr when the outcome was inferred, not read from an ack: kNotShipped, or an op
  // recovered through HelloReply (applied_through, recent_errors) after a reconnect, whose ack was lost
  // in the break. A resync query completed without reply must be asked again.
  const proto::Ack* reply = nullptr;
};

// Plain function pointer + context: no allocation per operation.
using ShipCallback = void (*)(void* ctx, const ShipResult& result);

struct ShipperOptions {
  std::string peer;  // HOST:PORT of the secondary
  std::chrono::milliseconds send_timeout{30000};
  std::chrono::milliseconds connect_timeout{5000};  // initial connection; then alone
  uint64_t zone_size = 1 << 20;                     // dirty-zone granularity
  size_t max_batch_ops = 256;                       // per gRPC message
  size_t max_batch_bytes = 4 << 20;
  TlsOptions tls;
  std::string node_name;
  // Added by the replicator (not in the first contract):
  // Memory bound of unacknowledged operations: Ship() waits while above it, at most until the peer is
  // declared lost (send_timeout), so the application is never held longer than that.
  // 8 MiB: far above a LAN's bandwidth-delay product, and it keeps hamirror-fs near 64 MiB RSS even
  // when many writers (O_DIRECT AIO) have 1 MiB writes in flight at once (each also holds a FUSE
  // buffer and its Op while waiting here).
  size_t max_inflight_bytes = 8 << 20;
  // Test hook: flip one byte on the wire (not in the resend buffer) of this many Write frames.
  int test_corrupt_writes = 0;
  // When set, going alone by itself (the peer silent or unreachable past send_timeout) needs it to say
  // yes; until then the operations wait (and reconnecting goes on). hamirror-fs run by hamirrord says
  // "a manager was heard lately": a primary left without its manager (hamirrord died and did not come
  // back) must not acknowledge writes alone that nobody fences, since the peer may have taken over.
  // Called with the shipper's lock held: must be quick and must not call the shipper.
  std::function<bool()> may_go_alone;
};

struct ShipperStats {
  bool connected = false;
  bool alone = false;
  uint64_t ops_acked = 0;
  uint64_t bytes_acked = 0;
  uint64_t inflight = 0;
  uint64_t lag_us = 0;  // age of the oldest unacknowledged operation
  uint64_t reconnects = 0;
  uint64_t peer_errors = 0;
  std::string last_error;
};

class Shipper {
 public:
  // Connects (bounded by connect_timeout). Fails on a bad address or unusable TLS files. A peer that
  // cannot be reached yields a shipper that is already alone, not an error.
  static Status Create(const ShipperOptions& options, std::unique_ptr<Shipper>* out);
  // Added by the replicator: a shipper with no peer at all (role alone). Every Ship() records the
  // change in dirty() and calls back inline with kNotShipped. options.peer/tls are ignored.
  static std::unique_ptr<Shipper> CreateAlone(const ShipperOptions& options);
  virtual ~Shipper() = default;  // answers every pending callback (kNotShipped) before returning

  // Thread-safe. `op` is moved from; op.seq is assigned here, except for a Forget, which is held (no
  // seq yet) and sent just ahead of the next op shipped, or by the watchdog within ~150 ms: it changes
  // nothing the peer could lack and nobody waits for it (docs/replication.md).
  virtual void Ship(proto::Op&& op, ShipCallback callback, void* ctx) = 0;

  // Stop replicating (role primary -> alone): pending operations complete kNotShipped.
  virtual void GoAlone(const std::string& reason) = 0;

  virtual ShipperStats Stats() const = 0;
  // What this shipper knows the peer lacks (in memory, by rid: its own contract, tested here).
  // hamirror-fs keeps the persistent, crash-safe record by inode (zone_record.h) from each op's
  // outcome, which is what a resync uses.
  virtual const DirtyZones& dirty() const = 0;
};

}  // namespace hamirror::replicator
