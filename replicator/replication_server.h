// ReplicationServer: the secondary side of the replication stream.
//
// A gRPC server (mutual TLS, see tls.h) that accepts one primary stream at a time and feeds its
// batches to an Applier working underneath root_fd. A second stream while one is active is refused
// (ALREADY_EXISTS), unless it carries the same session_id (the primary reconnecting after a break the
// server has not noticed yet): then the old stream is cancelled and the new one takes over. A batch
// that fails validation resets the stream (DATA_LOSS / INVALID_ARGUMENT); the primary reconnects and
// resends after HelloReply.applied_through. Garbage frames end the stream, never the process.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/status.h"
#include "proto/replication.pb.h"
#include "replicator/applier.h"
#include "replicator/tls.h"

namespace hamirror::replicator {

// 2: resync ops (BlockSums, ListDir, ResyncMark) and their answers in Ack.
inline constexpr uint32_t kProtocolVersion = 2;

struct ReplicationServerOptions {
  std::string listen;  // HOST:PORT; port 0 picks a free one (see port())
  TlsOptions tls;
  int root_fd = -1;  // the replicated tree underneath the mount; not owned, must outlive the server
  std::string node_name;
  ApplierOptions applier;
  // Optional: called on the apply thread after each batch is applied (e.g. hamirror-fs invalidates
  // the kernel's caches for the rids it touched). Must not block for long.
  std::function<void(const proto::OpBatch& batch)> on_applied;
};

struct ReplicationServerStats {
  bool connected = false;  // a primary stream is active
  std::string peer;        // gRPC peer string of the active stream
  std::string session_id;
  uint64_t applied_through = 0;
  uint64_t ops_applied = 0;
  uint64_t bytes_applied = 0;
  uint64_t batches_applied = 0;  // ops_applied / batches_applied = mean batch size
  uint64_t rejected_frames = 0;  // batches refused (checksum, sequence, protocol) + unreadable frames
  uint64_t checksum_errors = 0;
  uint64_t error_acks = 0;  // ops acknowledged with an errno (the primary records their ranges dirty)
  uint64_t streams_accepted = 0;
  uint64_t streams_refused = 0;  // second primary, bad hello, protocol version
  std::string last_error;
  ResyncTargetState resync;  // the resync of which this node is the target (ResyncMark ops)
};

class ReplicationServer {
 public:
  // Binds and starts serving. "address already in use" and TLS problems come back as clear errors.
  static Status Start(const ReplicationServerOptions& options, std::unique_ptr<ReplicationServer>* out);
  virtual ~ReplicationServer() = default;  // Stop()s

  // Ends the active stream and stops listening; idempotent. In-flight flushes complete first.
  virtual void Stop() = 0;

  virtual int port() const = 0;  // the bound port
  virtual ReplicationServerStats Stats() const = 0;
};

}  // namespace hamirror::replicator
