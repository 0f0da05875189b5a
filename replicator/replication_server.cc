#include "replicator/replication_server.h"

#include <grpcpp/grpcpp.h>
#include <netdb.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "common/log.h"
#include "proto/replication.grpc.pb.h"

namespace hamirror::replicator {

namespace {

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

// gRPC's async API with one completion-queue thread: that thread polls the socket, applies each batch
// and starts the ack's write itself, so a round trip costs one wake-up on this side (the sync API
// handed every message from a poller thread to the handler thread). Durable acks are written from
// the applier's flush thread. A Call is deleted by the completion-queue thread once nothing of it is
// outstanding.
class ReplicationServerImpl final : public ReplicationServer {
 public:
  explicit ReplicationServerImpl(const ReplicationServerOptions& options) : options_(options) {}
  ~ReplicationServerImpl() override { Stop(); }

  Status Init();
  void Stop() override;
  int port() const override { return port_; }
  ReplicationServerStats Stats() const override;

 private:
  struct Call;
  enum class TagKind : uint8_t { kAccept, kRead, kWrite, kFinish };
  struct Tag {
    Call* call;
    TagKind kind;
  };
  enum class CallState : uint8_t { kAccepting, kHello, kWaitingSlot, kUp, kEnding };
  struct Call {
    Call() : rw(&ctx) {}
    grpc::ServerContext ctx;
    grpc::ServerAsyncReaderWriter<proto::AckBatch, proto::OpBatch> rw;
    Tag accept_tag{this, TagKind::kAccept};
    Tag read_tag{this, TagKind::kRead};
    Tag write_tag{this, TagKind::kWrite};
    Tag finish_tag{this, TagKind::kFinish};
    CallState state = CallState::kAccepting;  // completion-queue thread only
    bool reading = false;                     // completion-queue thread only
    bool finish_done = false;                 // completion-queue thread only
    proto::OpBatch in;                        // the read in flight, then the batch being applied
    // Guarded by write_mu_: gRPC allows one outstanding write per call.
    bool writing = false;
    bool finish_started = false;
    bool finish_deferred = false;  // Finish waits for the write in flight
    grpc::Status final_status;
    proto::AckBatch out;      // the write in flight
    proto::AckBatch pending;  // acks queued behind it
  };

  void RequestCall();
  void Loop();
  void OnAccept(Call* c, bool ok);
  void OnRead(Call* c, bool ok);
  void OnHello(Call* c);
  void Activate(Call* c);
  void ApplyBatch(Call* c);
  void OnWriteDone(Call* c, bool ok);
  void StartRead(Call* c);
  void Refuse(Call* c, grpc::StatusCode code, const std::string& msg);
  void EndCall(Call* c, const grpc::Status& status);
  // With write_mu_ held: starts a write of c->pending if none is in flight.
  void FlushAcksLocked(Call* c);
  static void OnDurable(void* self, uint64_t seq, int error);

  const ReplicationServerOptions options_;
  std::unique_ptr<Applier> applier_;
  proto::Replication::AsyncService service_;
  std::unique_ptr<grpc::ServerCompletionQueue> cq_;
  std::unique_ptr<grpc::Server> server_;
  std::thread cq_thread_;
  int port_ = 0;

  mutable std::mutex mu_;
  bool active_ = false;  // one primary stream at a time
  bool stopped_ = false;
  Call* active_call_ = nullptr;
  Call* waiting_call_ = nullptr;  // same session as the active call, waits for it to end
  int live_calls_ = 0;            // accepted and not yet deleted
  std::condition_variable calls_cv_;
  std::string active_session_;
  std::string active_peer_;
  std::string active_node_;
  uint64_t rejected_frames_ = 0;
  uint64_t batches_applied_ = 0;
  uint64_t streams_accepted_ = 0;
  uint64_t streams_refused_ = 0;
  std::string last_error_;

  std::mutex write_mu_;
  Call* ack_call_ = nullptr;      // the active call, once its HelloReply is queued
  std::vector<proto::Ack> acks_;  // completion-queue thread only
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
  builder.RegisterService(&service_);
  cq_ = builder.AddCompletionQueue();
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port_ == 0) {
    server_.reset();
    cq_->Shutdown();
    void* tag;
    bool ok;
    while (cq_->Next(&tag, &ok)) {
    }
    return Status::Unavailable("replication server cannot listen on " + options_.listen + ": " +
                               ProbeBindError(options_.listen));
  }
  RequestCall();
  cq_thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "hm-repl-server");
    Loop();
  });
  HLOG_INFO("replication server listening on %s (port %d)", options_.listen.c_str(), port_);
  return Status::Ok();
}

void ReplicationServerImpl::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return;
    stopped_ = true;
    if (active_call_ != nullptr) active_call_->ctx.TryCancel();
  }
  if (server_) {
    // Cancels what is still running after 2 s. The completion-queue thread keeps running meanwhile and
    // ends the calls; only then may the queue shut down (no operation may start on it after that).
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (!calls_cv_.wait_for(lock, std::chrono::seconds(30), [&] { return live_calls_ == 0; })) {
        HLOG_ERROR("replication server: %d calls still open 30 s after shutdown", live_calls_);
      }
    }
    cq_->Shutdown();
    if (cq_thread_.joinable()) cq_thread_.join();
  }
  if (applier_) applier_->Drain();
}

void ReplicationServerImpl::RequestCall() {
  Call* c = new Call;
  service_.RequestStream(&c->ctx, &c->rw, cq_.get(), cq_.get(), &c->accept_tag);
}

void ReplicationServerImpl::Loop() {
  void* tag;
  bool ok;
  while (cq_->Next(&tag, &ok)) {
    Tag* t = static_cast<Tag*>(tag);
    Call* c = t->call;
    switch (t->kind) {
      case TagKind::kAccept:
        OnAccept(c, ok);
        if (!ok) {
          delete c;  // never started: nothing else of it is outstanding
          continue;
        }
        break;
      case TagKind::kRead:
        c->reading = false;
        OnRead(c, ok);
        break;
      case TagKind::kWrite: OnWriteDone(c, ok); break;
      case TagKind::kFinish: c->finish_done = true; break;
    }
    bool writing;
    {
      std::lock_guard<std::mutex> wlock(write_mu_);
      writing = c->writing;
    }
    if (c->state == CallState::kEnding && c->finish_done && !c->reading && !writing) {
      delete c;
      std::lock_guard<std::mutex> lock(mu_);
      if (--live_calls_ == 0) calls_cv_.notify_all();
    }
  }
}

void ReplicationServerImpl::OnAccept(Call* c, bool ok) {
  if (!ok) return;  // the server is shutting down
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++live_calls_;
    if (!stopped_) RequestCall();
  }
  c->state = CallState::kHello;
  StartRead(c);
}

void ReplicationServerImpl::StartRead(Call* c) {
  c->reading = true;
  c->rw.Read(&c->in, &c->read_tag);
}

void ReplicationServerImpl::OnRead(Call* c, bool ok) {
  switch (c->state) {
    case CallState::kHello:
      if (!ok) {
        EndCall(c, grpc::Status(grpc::StatusCode::CANCELLED, "stream closed before Hello"));
        return;
      }
      OnHello(c);
      return;
    case CallState::kUp:
      if (!ok) {
        // The primary half-closed, cancelled or went away: the status is for the first case (a
        // cancelled call reports no status to anyone).
        EndCall(c, grpc::Status::OK);
        return;
      }
      if (c->in.has_hello()) {
        {
          std::lock_guard<std::mutex> lock(mu_);
          ++rejected_frames_;
        }
        EndCall(c, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "Hello in the middle of a stream"));
        return;
      }
      ApplyBatch(c);
      return;
    default: return;  // a call being ended: what it still delivers is dropped (the primary resends)
  }
}

void ReplicationServerImpl::Refuse(Call* c, grpc::StatusCode code, const std::string& msg) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++streams_refused_;
    last_error_ = msg;
  }
  HLOG_WARN("replication stream refused: %s", msg.c_str());
  EndCall(c, grpc::Status(code, msg));
}

void ReplicationServerImpl::OnHello(Call* c) {
  if (!c->in.has_hello()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++rejected_frames_;
    }
    Refuse(c, grpc::StatusCode::INVALID_ARGUMENT, "first message of a stream must carry a Hello");
    return;
  }
  const proto::Hello& hello = c->in.hello();
  if (hello.protocol_version() != kProtocolVersion) {
    Refuse(c, grpc::StatusCode::FAILED_PRECONDITION,
           "protocol version " + std::to_string(hello.protocol_version()) +
               " not supported (this node: " + std::to_string(kProtocolVersion) + ")");
    return;
  }
  if (hello.session_id().empty()) {
    Refuse(c, grpc::StatusCode::INVALID_ARGUMENT, "Hello without session_id");
    return;
  }
  std::string msg;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) {
      msg = "server stopping";
    } else if (active_ && active_session_ == hello.session_id() && waiting_call_ == nullptr) {
      // The same primary reconnecting before we noticed its old stream died: the new one wins once
      // the old one has ended (its cancelled read ends it on this thread).
      active_call_->ctx.TryCancel();
      waiting_call_ = c;
      c->state = CallState::kWaitingSlot;
      return;
    } else if (active_) {
      msg = "another primary stream is active (node '" + active_node_ + "' from " + active_peer_ +
            ", session " + active_session_ + ")";
    }
  }
  if (msg == "server stopping") {
    EndCall(c, grpc::Status(grpc::StatusCode::UNAVAILABLE, msg));
  } else if (!msg.empty()) {
    Refuse(c, grpc::StatusCode::ALREADY_EXISTS, msg);
  } else {
    Activate(c);
  }
}

void ReplicationServerImpl::Activate(Call* c) {
  const proto::Hello& hello = c->in.hello();
  {
    std::lock_guard<std::mutex> lock(mu_);
    active_ = true;
    active_call_ = c;
    active_session_ = hello.session_id();
    active_peer_ = c->ctx.peer();
    active_node_ = hello.node_name();
    ++streams_accepted_;
  }
  // Waits for in-flight flushes, so applied_through is applied and durable.
  std::vector<proto::Ack> recent_errors;
  const uint64_t applied_through = applier_->StartSession(hello.session_id(), &recent_errors);
  {
    std::lock_guard<std::mutex> wlock(write_mu_);
    proto::HelloReply* hr = c->pending.mutable_hello();
    hr->set_protocol_version(kProtocolVersion);
    hr->set_applied_through(applied_through);
    hr->set_node_name(options_.node_name);
    for (const proto::Ack& a : recent_errors) *hr->add_recent_errors() = a;
    // Durable acks from now on queue behind the HelloReply.
    ack_call_ = c;
    FlushAcksLocked(c);
  }
  HLOG_INFO("primary %s (%s) connected, session %s, applied through %llu", c->ctx.peer().c_str(),
            hello.node_name().c_str(), hello.session_id().c_str(), (unsigned long long)applied_through);
  c->state = CallState::kUp;
  // Ops riding along with the Hello (our Shipper sends it alone) are applied first.
  c->in.clear_hello();
  if (c->in.ops_size() > 0) {
    ApplyBatch(c);
  } else {
    StartRead(c);
  }
}

void ReplicationServerImpl::ApplyBatch(Call* c) {
  acks_.clear();
  Status s = applier_->Apply(c->in, &acks_);
  if (!s.ok()) {
    // Nothing of the batch was applied: the primary reconnects and resends after applied_through.
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++rejected_frames_;
    }
    HLOG_WARN("replication batch rejected, resetting stream: %s", s.ToString().c_str());
    EndCall(c, grpc::Status(s.message().find("checksum") != std::string::npos
                                ? grpc::StatusCode::DATA_LOSS
                                : grpc::StatusCode::INVALID_ARGUMENT,
                            s.message()));
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++batches_applied_;
  }
  if (options_.on_applied) options_.on_applied(c->in);
  if (!acks_.empty()) {
    std::lock_guard<std::mutex> wlock(write_mu_);
    for (proto::Ack& a : acks_) c->pending.add_acks()->Swap(&a);  // no copy of query answers
    FlushAcksLocked(c);
  }
  StartRead(c);
}

void ReplicationServerImpl::FlushAcksLocked(Call* c) {
  if (c->writing || c->finish_started) return;
  if (c->pending.acks_size() == 0 && !c->pending.has_hello()) return;
  c->out.Swap(&c->pending);
  c->pending.Clear();
  c->writing = true;
  c->rw.Write(c->out, &c->write_tag);
}

void ReplicationServerImpl::OnWriteDone(Call* c, bool ok) {
  std::lock_guard<std::mutex> wlock(write_mu_);
  c->writing = false;
  if (!ok) {
    c->ctx.TryCancel();  // the primary went away: the cancelled read ends the call
    c->pending.Clear();
  }
  if (c->finish_deferred) {
    c->finish_deferred = false;
    c->finish_started = true;
    c->rw.Finish(c->final_status, &c->finish_tag);
    return;
  }
  if (ok) FlushAcksLocked(c);
}

void ReplicationServerImpl::EndCall(Call* c, const grpc::Status& status) {
  const bool was_active = c->state == CallState::kUp;
  c->state = CallState::kEnding;
  {
    std::lock_guard<std::mutex> wlock(write_mu_);
    if (ack_call_ == c) ack_call_ = nullptr;
    if (!c->finish_started) {
      if (c->writing) {
        c->finish_deferred = true;
        c->final_status = status;
      } else {
        c->finish_started = true;
        c->rw.Finish(status, &c->finish_tag);
      }
    }
  }
  if (!was_active) return;
  applier_->StreamEnded();  // a running resync is interrupted (same thread as Apply)
  Call* next = nullptr;
  bool stopped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    active_ = false;
    active_call_ = nullptr;
    if (!status.ok()) last_error_ = status.error_message();
    std::swap(next, waiting_call_);
    stopped = stopped_;
  }
  if (next == nullptr) return;
  if (stopped) {
    EndCall(next, grpc::Status(grpc::StatusCode::UNAVAILABLE, "server stopping"));
  } else {
    Activate(next);
  }
}

void ReplicationServerImpl::OnDurable(void* self_ptr, uint64_t seq, int error) {
  auto* self = static_cast<ReplicationServerImpl*>(self_ptr);
  std::lock_guard<std::mutex> wlock(self->write_mu_);
  // No stream: the ack is not lost, the next HelloReply's applied_through covers it.
  Call* c = self->ack_call_;
  if (c == nullptr) return;
  proto::Ack* ack = c->pending.add_acks();
  ack->set_seq(seq);
  ack->set_error(error);
  self->FlushAcksLocked(c);
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
  s.resync = a.resync;
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
