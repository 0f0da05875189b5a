#include "replicator/replication_server.h"

#include <grpcpp/grpcpp.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <cstring>
#include <mutex>

#include "common/log.h"
#include "proto/replication.grpc.pb.h"

namespace hamirror::replicator {

namespace {

using ServerStream = grpc::ServerReaderWriter<proto::AckBatch, proto::OpBatch>;

constexpr int kMaxMessageBytes = 256 << 20;

// gRPC only says "failed to bind"; find out why with a plain bind() so the operator reads
// "address already in use" (or the real reason).
std::string ProbeBindError(const std::string& listen) {
  std::string host;
  int port = 0;
  if (!SplitHostPort(listen, &host, &port).ok()) return "bad address";
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string port_str = std::to_string(port);
  int rc = getaddrinfo(host.empty() || host == "*" ? nullptr : host.c_str(), port_str.c_str(), &hints, &res);
  if (rc != 0) return std::string("cannot resolve host: ") + gai_strerror(rc);
  std::string why = "unknown reason";
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      why = errno == EADDRINUSE ? "address already in use" : strerror(errno);
      close(fd);
      break;
    }
    close(fd);
  }
  freeaddrinfo(res);
  return why;
}

class ReplicationServerImpl final : public ReplicationServer, public proto::Replication::Service {
 public:
  explicit ReplicationServerImpl(const ReplicationServerOptions& options) : options_(options) {}
  ~ReplicationServerImpl() override { Stop(); }

  Status Init();
  void Stop() override;
  int port() const override { return port_; }
  ReplicationServerStats Stats() const override;

  grpc::Status Stream(grpc::ServerContext* ctx, ServerStream* stream) override;

 private:
  static void OnDurable(void* self, uint64_t seq, int error);
  grpc::Status Refuse(grpc::StatusCode code, const std::string& msg);
  grpc::Status Serve(grpc::ServerContext* ctx, ServerStream* stream, proto::OpBatch* first);

  const ReplicationServerOptions options_;
  std::unique_ptr<Applier> applier_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;

  mutable std::mutex mu_;
  std::condition_variable slot_cv_;
  bool active_ = false;  // one primary stream at a time
  bool stopped_ = false;
  grpc::ServerContext* active_ctx_ = nullptr;
  std::string active_session_;
  std::string active_peer_;
  std::string active_node_;
  uint64_t rejected_frames_ = 0;
  uint64_t batches_applied_ = 0;
  uint64_t streams_accepted_ = 0;
  uint64_t streams_refused_ = 0;
  std::string last_error_;

  // Writes to the active stream come from the handler (immediate acks) and the applier's flush
  // thread (durable acks); gRPC allows one writer at a time.
  std::mutex write_mu_;
  ServerStream* ack_stream_ = nullptr;  // set once HelloReply is out
  proto::AckBatch durable_reply_;
};

Status ReplicationServerImpl::Init() {
  if (options_.root_fd < 0) return Status::InvalidArgument("replication server: no root fd");
  std::string host;
  int port = 0;
  Status s = SplitHostPort(options_.listen, &host, &port);
  if (!s.ok()) return s;
  std::shared_ptr<grpc::ServerCredentials> creds;
  s = MakeServerCredentials(options_.tls, options_.listen, &creds);
  if (!s.ok()) return s;
  s = Applier::Create(options_.root_fd, options_.applier, &applier_);
  if (!s.ok()) return s;
  applier_->SetDurableCallback(&ReplicationServerImpl::OnDurable, this);

  grpc::ServerBuilder builder;
  // gRPC sets SO_REUSEPORT by default: two servers could then share a port and split the streams.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 2000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 1000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.AddListeningPort(options_.listen, creds, &port_);
  builder.RegisterService(this);
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port_ == 0) {
    server_.reset();
    return Status::Unavailable("replication server cannot listen on " + options_.listen + ": " +
                               ProbeBindError(options_.listen));
  }
  HLOG_INFO("replication server listening on %s (port %d)", options_.listen.c_str(), port_);
  return Status::Ok();
}

void ReplicationServerImpl::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return;
    stopped_ = true;
    if (active_ctx_ != nullptr) active_ctx_->TryCancel();
  }
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_->Wait();
  }
  if (applier_) applier_->Drain();
}

grpc::Status ReplicationServerImpl::Refuse(grpc::StatusCode code, const std::string& msg) {
  std::lock_guard<std::mutex> lock(mu_);
  ++streams_refused_;
  last_error_ = msg;
  HLOG_WARN("replication stream refused: %s", msg.c_str());
  return grpc::Status(code, msg);
}

grpc::Status ReplicationServerImpl::Stream(grpc::ServerContext* ctx, ServerStream* stream) {
  proto::OpBatch first;
  if (!stream->Read(&first)) return grpc::Status(grpc::StatusCode::CANCELLED, "stream closed before Hello");
  if (!first.has_hello()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++rejected_frames_;
    }
    return Refuse(grpc::StatusCode::INVALID_ARGUMENT, "first message of a stream must carry a Hello");
  }
  const proto::Hello& hello = first.hello();
  if (hello.protocol_version() != kProtocolVersion) {
    return Refuse(grpc::StatusCode::FAILED_PRECONDITION,
                  "protocol version " + std::to_string(hello.protocol_version()) +
                      " not supported (this node: " + std::to_string(kProtocolVersion) + ")");
  }
  if (hello.session_id().empty())
    return Refuse(grpc::StatusCode::INVALID_ARGUMENT, "Hello without session_id");
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (stopped_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "server stopping");
    if (active_ && active_session_ == hello.session_id()) {
      // The same primary reconnecting before we noticed its old stream died: the new one wins.
      active_ctx_->TryCancel();
      slot_cv_.wait_for(lock, std::chrono::seconds(10), [&] { return !active_ || stopped_; });
    }
    if (active_ || stopped_) {
      const std::string msg = "another primary stream is active (node '" + active_node_ + "' from " +
                              active_peer_ + ", session " + active_session_ + ")";
      lock.unlock();
      return Refuse(grpc::StatusCode::ALREADY_EXISTS, msg);
    }
    active_ = true;
    active_ctx_ = ctx;
    active_session_ = hello.session_id();
    active_peer_ = ctx->peer();
    active_node_ = hello.node_name();
    ++streams_accepted_;
  }
  grpc::Status result = Serve(ctx, stream, &first);
  {
    std::lock_guard<std::mutex> wlock(write_mu_);
    ack_stream_ = nullptr;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    active_ = false;
    active_ctx_ = nullptr;
    if (!result.ok()) last_error_ = result.error_message();
  }
  slot_cv_.notify_all();
  return result;
}

grpc::Status ReplicationServerImpl::Serve(grpc::ServerContext* ctx, ServerStream* stream,
                                          proto::OpBatch* first) {
  std::string session, node;
  {
    std::lock_guard<std::mutex> lock(mu_);
    session = active_session_;
    node = active_node_;
  }
  // Waits for in-flight flushes, so applied_through is applied and durable.
  std::vector<proto::Ack> recent_errors;
  const uint64_t applied_through = applier_->StartSession(session, &recent_errors);
  proto::AckBatch reply;
  proto::HelloReply* hr = reply.mutable_hello();
  hr->set_protocol_version(kProtocolVersion);
  hr->set_applied_through(applied_through);
  hr->set_node_name(options_.node_name);
  for (const proto::Ack& a : recent_errors) *hr->add_recent_errors() = a;
  {
    std::lock_guard<std::mutex> wlock(write_mu_);
    if (!stream->Write(reply)) return grpc::Status(grpc::StatusCode::CANCELLED, "primary went away");
    ack_stream_ = stream;
  }
  HLOG_INFO("primary %s (%s) connected, session %s, applied through %llu", ctx->peer().c_str(), node.c_str(),
            session.c_str(), (unsigned long long)applied_through);
  reply.clear_hello();

  // Ops riding along with the Hello (our Shipper sends it alone) are applied first.
  first->clear_hello();
  proto::OpBatch batch;
  batch.Swap(first);
  std::vector<proto::Ack> acks;
  for (bool have = batch.ops_size() > 0; have || stream->Read(&batch); have = false) {
    if (batch.has_hello()) {
      std::lock_guard<std::mutex> lock(mu_);
      ++rejected_frames_;
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "Hello in the middle of a stream");
    }
    acks.clear();
    Status s = applier_->Apply(batch, &acks);
    if (!s.ok()) {
      // Nothing of the batch was applied: the primary reconnects and resends after applied_through.
      std::lock_guard<std::mutex> lock(mu_);
      ++rejected_frames_;
      HLOG_WARN("replication batch rejected, resetting stream: %s", s.ToString().c_str());
      return grpc::Status(s.message().find("checksum") != std::string::npos
                              ? grpc::StatusCode::DATA_LOSS
                              : grpc::StatusCode::INVALID_ARGUMENT,
                          s.message());
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++batches_applied_;
    }
    if (options_.on_applied) options_.on_applied(batch);
    if (acks.empty()) continue;
    reply.mutable_acks()->Clear();
    for (proto::Ack& a : acks) *reply.add_acks() = a;
    std::lock_guard<std::mutex> wlock(write_mu_);
    if (!stream->Write(reply)) break;
  }
  if (ctx->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "stream cancelled");
  return grpc::Status::OK;
}

void ReplicationServerImpl::OnDurable(void* self_ptr, uint64_t seq, int error) {
  auto* self = static_cast<ReplicationServerImpl*>(self_ptr);
  std::lock_guard<std::mutex> wlock(self->write_mu_);
  // No stream: the ack is not lost, the next HelloReply's applied_through covers it.
  if (self->ack_stream_ == nullptr) return;
  self->durable_reply_.mutable_acks()->Clear();
  proto::Ack* ack = self->durable_reply_.add_acks();
  ack->set_seq(seq);
  ack->set_error(error);
  self->ack_stream_->Write(self->durable_reply_);
}

ReplicationServerStats ReplicationServerImpl::Stats() const {
  ReplicationServerStats s;
  const ApplierStats a = applier_->Stats();
  std::lock_guard<std::mutex> lock(mu_);
  s.connected = active_;
  s.peer = active_ ? active_peer_ : "";
  s.session_id = active_session_;
  s.applied_through = a.applied_through;
  s.ops_applied = a.ops_applied;
  s.bytes_applied = a.bytes_applied;
  s.rejected_frames = rejected_frames_;
  s.batches_applied = batches_applied_;
  s.checksum_errors = a.checksum_errors;
  s.error_acks = a.error_acks;
  s.streams_accepted = streams_accepted_;
  s.streams_refused = streams_refused_;
  s.last_error = last_error_;
  return s;
}

}  // namespace

Status ReplicationServer::Start(const ReplicationServerOptions& options,
                                std::unique_ptr<ReplicationServer>* out) {
  auto server = std::make_unique<ReplicationServerImpl>(options);
  Status s = server->Init();
  if (!s.ok()) return s;
  *out = std::move(server);
  return Status::Ok();
}

}  // namespace hamirror::replicator
