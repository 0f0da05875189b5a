// bench-grpc-floor: the round-trip latency floor of gRPC on this machine (issue 12), next to a plain TCP
// socket, for the API and threading patterns the replication stream could use.
//
// Each measurement is one ping-pong over 127.0.0.1: the client sends a request carrying a payload of
// SIZE bytes and waits for a small answer before sending the next (one outstanding message, like a lone
// synchronous replicated operation). gRPC rows use the replication service itself
// (proto/replication.proto: Stream(stream OpBatch) returns (stream AckBatch)); a request is an OpBatch
// holding one Write op whose data is the payload, the answer an AckBatch with one Ack.
//
// Client and server run in two child processes (fresh for each measurement, started by exec of this
// binary), so getrusage(RUSAGE_SELF) counts the context switches of each side, all of its threads, alone
// (the primary's and the secondary's share of a round trip). The parent never touches gRPC.
//
// Client kinds:  tcp       blocking write/read on a TCP_NODELAY socket (the machine's floor)
//                sync      sync API: Write then Read on the calling thread
//                syncacks  sync API as the shipper does it today: the caller Writes, an acks thread Reads
//                          and wakes the caller through a condition variable
//                cq        async API: the calling thread starts Read and Write and drives its own
//                          completion queue (Next) until both are done
//                cqacks    async API with an acks thread: the caller starts a Write and does not wait
//                          for its completion; the acks thread drives the completion queue (read and
//                          write completions) and wakes the caller when the answer is in
//                callback  callback API (ClientBidiReactor): reactions run on gRPC's threads and wake the
//                          caller through a condition variable
// Server kinds:  tcp; sync (Service, gRPC's handler threads); cq (AsyncService, one completion-queue
//                thread, as replicator/replication_server.cc); callback (ServerBidiReactor).
//
// usage: bench-grpc-floor [--pings N] [--big-pings N] [--runs R] [--sizes B,B] [--rows C/S,C/S]
//                         [--tls-dir DIR [--tls-name NAME]] [--no-plain]
//   --pings N      measured round trips for payloads under 64 KiB (default 20000)
//   --big-pings N  measured round trips for payloads of 64 KiB and more (default 2000)
//                  (each measurement is preceded by N/20 unmeasured warm-up round trips)
//   --runs R       repeat the whole set R times (interleaved) and print medians (default 3)
//   --sizes        payload bytes (default 100,1048576)
//   --rows         client/server pairs (default tcp/tcp,sync/sync,sync/cq,syncacks/cq,cq/cq,callback/cq,
//                  callback/callback)
//   --tls-dir DIR  also measure over mutual TLS, with DIR/ca.pem, DIR/node.pem, DIR/node.key (a node
//                  directory made by scripts/hamirror-certs whose certificate names 127.0.0.1)
//   --tls-name N   name to expect in the server's certificate instead of 127.0.0.1
//   --no-plain     only the TLS measurements
// gRPC's poller follows the environment (GRPC_POLL_STRATEGY, inherited by both children); hamirror-fs
// runs with "poll" unless told otherwise.
// Output: a markdown table of medians (latencies in µs, context switches per round trip, client and
// server side) on stdout; one key=value line per measurement on stderr.
// Exit: 0 ok, 1 a measurement failed, 64 usage.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "common/unique_fd.h"
#include "proto/replication.grpc.pb.h"
#include "replicator/tls.h"

namespace hamirror::bench {
namespace {

using proto::AckBatch;
using proto::OpBatch;

constexpr int kExitOk = 0, kExitFailed = 1, kExitUsage = 64;
constexpr unsigned kChildSeconds = 600;  // a stuck child dies of SIGALRM, so every run ends
constexpr size_t kBigPayload = 64 << 10;
constexpr int kMaxMessageBytes = 256 << 20;

struct Params {
  std::string role;  // "": the parent; "serve" or "client": a child
  std::string kind;  // child: tcp, sync, syncacks, cq, cqacks, callback
  bool tls = false;
  std::string tls_dir, tls_name;
  bool plain = true;
  int port = 0;
  size_t size = 100;
  long pings = 20000, big_pings = 2000;
  long warmup = 0, measured = 0;  // child
  int runs = 3;
  std::vector<std::string> rows = {"tcp/tcp", "sync/sync",   "sync/cq",          "syncacks/cq",
                                   "cq/cq",   "callback/cq", "callback/callback"};
  std::vector<size_t> sizes = {100, 1 << 20};
};

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

struct Csw {
  long vol = 0, invol = 0;
};
Csw ReadCsw() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return {ru.ru_nvcsw, ru.ru_nivcsw};
}

replicator::TlsOptions TlsFor(const Params& p) {
  replicator::TlsOptions t;
  if (!p.tls) {
    t.insecure = true;
    return t;
  }
  t.cert = p.tls_dir + "/node.pem";
  t.key = p.tls_dir + "/node.key";
  t.ca = p.tls_dir + "/ca.pem";
  t.server_name = p.tls_name;
  return t;
}

// Moves exactly n bytes with io (read or write), retrying short transfers and EINTR.
template <typename Io, typename Buf>
bool TransferAll(Io io, int fd, Buf* buf, size_t n) {
  auto* b = reinterpret_cast<std::conditional_t<std::is_const_v<Buf>, const char, char>*>(buf);
  while (n > 0) {
    ssize_t r = io(fd, b, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    b += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

bool WriteAll(int fd, const void* buf, size_t n) { return TransferAll(::write, fd, buf, n); }
bool ReadAll(int fd, void* buf, size_t n) { return TransferAll(::read, fd, buf, n); }

void SetNoDelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

// The plain socket's framing: a header, SIZE payload bytes; the answer is a 16-byte header.
struct TcpHeader {
  uint64_t seq;
  uint64_t length;
};

// ---------------------------------------------------------------- server side

// Context switches between the receipt of ping `first` and of ping `last` (same phase of the round
// trip, so last - first round trips).
class ServerMeter {
 public:
  ServerMeter(uint64_t first, uint64_t last) : first_(first), last_(last) {}
  void OnPing(uint64_t seq) {
    if (seq != first_ && seq != last_) return;
    const Csw now = ReadCsw();
    std::lock_guard<std::mutex> lock(mu_);
    (seq == first_ ? at_first_ : at_last_) = now;
    (seq == first_ ? seen_first_ : seen_last_) = true;
  }
  std::string Result() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!seen_first_ || !seen_last_) return "server_error=pings-not-seen";
    char line[160];
    snprintf(line, sizeof(line), "server_cs=%ld server_vol=%ld server_rts=%" PRIu64,
             at_last_.vol + at_last_.invol - at_first_.vol - at_first_.invol, at_last_.vol - at_first_.vol,
             last_ - first_);
    return line;
  }

 private:
  const uint64_t first_, last_;
  std::mutex mu_;
  Csw at_first_, at_last_;
  bool seen_first_ = false, seen_last_ = false;
};

void AnnouncePort(int port) {
  printf("port=%d\n", port);
  fflush(stdout);
}

// The parent closes our stdin when the client is done.
void WaitForStdinEof() {
  char buf[64];
  while (true) {
    ssize_t r = read(0, buf, sizeof(buf));
    if (r == 0 || (r < 0 && errno != EINTR)) return;
  }
}

int ServeTcp(ServerMeter* meter) {
  UniqueFd listener(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (!listener || bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(listener.get(), 1) != 0 ||
      getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    fprintf(stderr, "tcp server: %s\n", strerror(errno));
    return kExitFailed;
  }
  AnnouncePort(ntohs(addr.sin_port));
  std::thread server([&] {
    UniqueFd conn(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!conn) return;
    SetNoDelay(conn.get());
    std::vector<char> payload;
    TcpHeader h;
    while (ReadAll(conn.get(), &h, sizeof(h))) {
      payload.resize(h.length);
      if (!ReadAll(conn.get(), payload.data(), h.length)) break;
      meter->OnPing(h.seq);
      TcpHeader ack{h.seq, 0};
      if (!WriteAll(conn.get(), &ack, sizeof(ack))) break;
    }
  });
  WaitForStdinEof();
  shutdown(listener.get(), SHUT_RDWR);  // ends a pending accept if the client never came
  server.join();
  return kExitOk;
}

class EchoSyncService final : public proto::Replication::Service {
 public:
  explicit EchoSyncService(ServerMeter* meter) : meter_(meter) {}
  grpc::Status Stream(grpc::ServerContext*, grpc::ServerReaderWriter<AckBatch, OpBatch>* rw) override {
    OpBatch in;
    AckBatch out;
    out.add_acks();
    while (rw->Read(&in)) {
      const uint64_t seq = in.ops(0).seq();
      meter_->OnPing(seq);
      out.mutable_acks(0)->set_seq(seq);
      if (!rw->Write(out)) break;
    }
    return grpc::Status::OK;
  }

 private:
  ServerMeter* meter_;
};

class EchoReactor final : public grpc::ServerBidiReactor<OpBatch, AckBatch> {
 public:
  explicit EchoReactor(ServerMeter* meter) : meter_(meter) {
    out_.add_acks();
    StartRead(&in_);
  }
  void OnReadDone(bool ok) override {
    if (!ok) return Finish(grpc::Status::OK);
    const uint64_t seq = in_.ops(0).seq();
    meter_->OnPing(seq);
    out_.mutable_acks(0)->set_seq(seq);
    StartWrite(&out_);
  }
  void OnWriteDone(bool ok) override {
    if (!ok) return Finish(grpc::Status::OK);
    StartRead(&in_);
  }
  void OnDone() override { delete this; }

 private:
  ServerMeter* meter_;
  OpBatch in_;
  AckBatch out_;
};

class EchoCallbackService final : public proto::Replication::CallbackService {
 public:
  explicit EchoCallbackService(ServerMeter* meter) : meter_(meter) {}
  grpc::ServerBidiReactor<OpBatch, AckBatch>* Stream(grpc::CallbackServerContext*) override {
    return new EchoReactor(meter_);
  }

 private:
  ServerMeter* meter_;
};

// One call, served by one completion-queue thread (read, then write the ack, then read again).
void ServeCqCall(proto::Replication::AsyncService* service, grpc::ServerCompletionQueue* cq,
                 ServerMeter* meter) {
  enum Tag : intptr_t { kAccept = 1, kRead, kWrite, kFinish };
  grpc::ServerContext ctx;
  grpc::ServerAsyncReaderWriter<AckBatch, OpBatch> rw(&ctx);
  OpBatch in;
  AckBatch out;
  out.add_acks();
  service->RequestStream(&ctx, &rw, cq, cq, reinterpret_cast<void*>(kAccept));
  void* tag;
  bool ok;
  while (cq->Next(&tag, &ok)) {
    switch (reinterpret_cast<intptr_t>(tag)) {
      case kAccept:
        if (ok) rw.Read(&in, reinterpret_cast<void*>(kRead));
        break;
      case kRead:
        if (!ok) {
          rw.Finish(grpc::Status::OK, reinterpret_cast<void*>(kFinish));
          break;
        }
        meter->OnPing(in.ops(0).seq());
        out.mutable_acks(0)->set_seq(in.ops(0).seq());
        rw.Write(out, reinterpret_cast<void*>(kWrite));
        break;
      case kWrite:
        if (ok) {
          rw.Read(&in, reinterpret_cast<void*>(kRead));
        } else {
          rw.Finish(grpc::Status::OK, reinterpret_cast<void*>(kFinish));
        }
        break;
      case kFinish: break;  // one call per server process; Next ends at Shutdown
    }
  }
}

int ServeGrpc(const Params& p, ServerMeter* meter) {
  std::shared_ptr<grpc::ServerCredentials> creds;
  const std::string listen = "127.0.0.1:0";
  Status s = replicator::MakeServerCredentials(TlsFor(p), listen, &creds);
  if (!s.ok()) {
    fprintf(stderr, "server credentials: %s\n", s.message().c_str());
    return kExitFailed;
  }
  grpc::ServerBuilder builder;
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  int port = 0;
  builder.AddListeningPort(listen, creds, &port);
  EchoSyncService sync_service(meter);
  EchoCallbackService callback_service(meter);
  proto::Replication::AsyncService async_service;
  std::unique_ptr<grpc::ServerCompletionQueue> cq;
  if (p.kind == "sync") {
    builder.RegisterService(&sync_service);
  } else if (p.kind == "callback") {
    builder.RegisterService(&callback_service);
  } else {
    builder.RegisterService(&async_service);
    cq = builder.AddCompletionQueue();
  }
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    fprintf(stderr, "grpc server: cannot listen on %s\n", listen.c_str());
    return kExitFailed;
  }
  std::thread cq_thread;
  if (cq) cq_thread = std::thread(ServeCqCall, &async_service, cq.get(), meter);
  AnnouncePort(port);
  WaitForStdinEof();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (cq) {
    cq->Shutdown();
    cq_thread.join();
  }
  return kExitOk;
}

int RunServer(const Params& p) {
  ServerMeter meter(static_cast<uint64_t>(p.warmup + 1), static_cast<uint64_t>(p.warmup + p.measured));
  const int rc = p.kind == "tcp" ? ServeTcp(&meter) : ServeGrpc(p, &meter);
  if (rc == kExitOk) printf("%s\n", meter.Result().c_str());
  return rc;
}

// ---------------------------------------------------------------- client side

class Pinger {
 public:
  virtual ~Pinger() = default;
  // One round trip: ping `seq` sent, its answer received. False (with *error set) on failure.
  virtual bool Ping(uint64_t seq) = 0;
  virtual bool Close() = 0;
  std::string error;
};

class TcpPinger final : public Pinger {
 public:
  TcpPinger(int port, size_t size) : port_(port), payload_(size, 'x') {}
  bool Connect() {
    fd_.Reset(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port_));
    if (!fd_ || connect(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      error = std::string("connect: ") + strerror(errno);
      return false;
    }
    SetNoDelay(fd_.get());
    return true;
  }
  bool Ping(uint64_t seq) override {
    TcpHeader h{seq, payload_.size()};
    iovec iov[2] = {{&h, sizeof(h)}, {payload_.data(), payload_.size()}};
    size_t done = 0, total = sizeof(h) + payload_.size();
    while (done < total) {  // writev, resumed after a short write
      ssize_t w = writev(fd_.get(), iov, 2);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return Fail("write");
      done += static_cast<size_t>(w);
      for (iovec& v : iov) {
        size_t used = std::min(v.iov_len, static_cast<size_t>(w));
        v.iov_base = static_cast<char*>(v.iov_base) + used;
        v.iov_len -= used;
        w -= static_cast<ssize_t>(used);
      }
    }
    TcpHeader ack;
    if (!ReadAll(fd_.get(), &ack, sizeof(ack))) return Fail("read");
    if (ack.seq != seq) return Fail("answer out of order");
    return true;
  }
  bool Close() override {
    fd_.Reset();
    return true;
  }

 private:
  bool Fail(const char* what) {
    error = std::string(what) + " failed (" + strerror(errno) + " or connection closed)";
    return false;
  }
  int port_;
  std::string payload_;
  UniqueFd fd_;
};

// The request every gRPC pinger sends: one Write op carrying the payload (only its seq changes).
void FillRequest(size_t size, OpBatch* req) {
  proto::Op* op = req->add_ops();
  proto::Write* w = op->mutable_write();
  w->set_rid(2);
  w->set_offset(0);
  w->set_data(std::string(size, 'x'));
  w->set_checksum(0x0123456789abcdefULL);
}

bool CheckAnswer(const AckBatch& resp, uint64_t seq, std::string* error) {
  if (resp.acks_size() == 1 && resp.acks(0).seq() == seq) return true;
  *error = "unexpected answer to ping " + std::to_string(seq);
  return false;
}

bool FinishStatus(const grpc::Status& st, std::string* error) {
  if (st.ok()) return true;
  *error = "stream ended: " + st.error_message();
  return false;
}

class SyncPinger final : public Pinger {
 public:
  SyncPinger(std::shared_ptr<grpc::Channel> ch, size_t size) : stub_(proto::Replication::NewStub(ch)) {
    FillRequest(size, &req_);
    rw_ = stub_->Stream(&ctx_);
  }
  bool Ping(uint64_t seq) override {
    req_.mutable_ops(0)->set_seq(seq);
    if (rw_->Write(req_) && rw_->Read(&resp_)) return CheckAnswer(resp_, seq, &error);
    if (FinishStatus(rw_->Finish(), &error)) error = "stream ended early";
    return false;
  }
  bool Close() override {
    rw_->WritesDone();
    return FinishStatus(rw_->Finish(), &error);
  }

 private:
  std::unique_ptr<proto::Replication::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<OpBatch, AckBatch>> rw_;
  OpBatch req_;
  AckBatch resp_;
};

// For the clients whose acks thread hands the answers over: waits until the answer to ping seq is in
// (acked) or the stream ended; both guarded by mu and signalled through cv.
bool AwaitAnswer(std::mutex& mu, std::condition_variable& cv, const uint64_t& acked, const bool& ended,
                 uint64_t seq, std::string* error) {
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return acked >= seq || ended; });
  if (acked == seq) return true;
  *error = "stream ended before the answer to ping " + std::to_string(seq);
  return false;
}

// Today's shipper: the caller writes, a reader thread reads acks and wakes the caller.
class SyncAcksPinger final : public Pinger {
 public:
  SyncAcksPinger(std::shared_ptr<grpc::Channel> ch, size_t size) : stub_(proto::Replication::NewStub(ch)) {
    FillRequest(size, &req_);
    rw_ = stub_->Stream(&ctx_);
    reader_ = std::thread([this] {
      AckBatch resp;
      while (rw_->Read(&resp)) {
        std::lock_guard<std::mutex> lock(mu_);
        if (resp.acks_size() == 1) acked_ = resp.acks(0).seq();
        cv_.notify_one();
      }
      std::lock_guard<std::mutex> lock(mu_);
      ended_ = true;
      cv_.notify_one();
    });
  }
  ~SyncAcksPinger() override {
    if (reader_.joinable()) {
      ctx_.TryCancel();
      reader_.join();
    }
  }
  bool Ping(uint64_t seq) override {
    req_.mutable_ops(0)->set_seq(seq);
    if (!rw_->Write(req_)) {
      error = "write failed";
      return false;
    }
    return AwaitAnswer(mu_, cv_, acked_, ended_, seq, &error);
  }
  bool Close() override {
    rw_->WritesDone();
    reader_.join();  // the server finishes after our WritesDone: Read returns false
    return FinishStatus(rw_->Finish(), &error);
  }

 private:
  std::unique_ptr<proto::Replication::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<OpBatch, AckBatch>> rw_;
  OpBatch req_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t acked_ = 0;
  bool ended_ = false;
  std::thread reader_;
};

// Tags of the async clients' operations.
enum TagKind : intptr_t { kStart = 1, kRead, kWrite, kWritesDone, kFinish };
void* Tag(TagKind k) { return reinterpret_cast<void*>(k); }

// After TryCancel: shuts the queue down and takes out what is left in it.
void DrainQueue(grpc::CompletionQueue* cq) {
  cq->Shutdown();
  void* tag;
  bool ok;
  while (cq->Next(&tag, &ok)) {
  }
}

// Async API: the calling thread starts the operations and polls its own completion queue.
class CqPinger final : public Pinger {
 public:
  CqPinger(std::shared_ptr<grpc::Channel> ch, size_t size) : stub_(proto::Replication::NewStub(ch)) {
    FillRequest(size, &req_);
  }
  ~CqPinger() override {
    ctx_.TryCancel();  // after a failure, operations may still be pending
    DrainQueue(&cq_);
  }
  bool Open() {
    rw_ = stub_->AsyncStream(&ctx_, &cq_, Tag(kStart));
    return Await(1, "start");
  }
  bool Ping(uint64_t seq) override {
    req_.mutable_ops(0)->set_seq(seq);
    rw_->Read(&resp_, Tag(kRead));
    rw_->Write(req_, Tag(kWrite));
    return Await(2, "ping") && CheckAnswer(resp_, seq, &error);
  }
  bool Close() override {
    rw_->WritesDone(Tag(kWritesDone));
    if (!Await(1, "writes done")) return false;
    grpc::Status st;
    rw_->Finish(&st, Tag(kFinish));
    return Await(1, "finish") && FinishStatus(st, &error);
  }

 private:
  bool Await(int n, const char* what) {
    for (int i = 0; i < n; ++i) {
      void* tag;
      bool ok;
      if (!cq_.Next(&tag, &ok) || !ok) {
        error = std::string(what) + " failed";
        return false;
      }
    }
    return true;
  }
  std::unique_ptr<proto::Replication::Stub> stub_;
  grpc::CompletionQueue cq_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientAsyncReaderWriter<OpBatch, AckBatch>> rw_;
  OpBatch req_;
  AckBatch resp_;
};

// Async API, the completions on an acks thread: the caller's Write returns at once; the acks thread
// sees the write's completion and the answer, and wakes the caller once the answer is in (the shape of a
// FUSE worker that ships and goes back to /dev/fuse while the acks thread replies).
class CqAcksPinger final : public Pinger {
 public:
  CqAcksPinger(std::shared_ptr<grpc::Channel> ch, size_t size) : stub_(proto::Replication::NewStub(ch)) {
    FillRequest(size, &req_);
  }
  ~CqAcksPinger() override {
    ctx_.TryCancel();
    if (acks_.joinable()) acks_.join();
    DrainQueue(&cq_);
  }
  bool Open() {
    rw_ = stub_->AsyncStream(&ctx_, &cq_, Tag(kStart));
    void* tag;
    bool ok;
    if (!cq_.Next(&tag, &ok) || !ok) {
      error = "start failed";
      return false;
    }
    rw_->Read(&resp_, Tag(kRead));
    acks_ = std::thread([this] { AcksLoop(); });
    return true;
  }
  bool Ping(uint64_t seq) override {
    req_.mutable_ops(0)->set_seq(seq);
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return !writing_ || ended_; });  // one write outstanding at a time
      if (ended_) {
        error = "stream ended";
        return false;
      }
      writing_ = true;
    }
    rw_->Write(req_, Tag(kWrite));  // serializes now: req_ may change once this returns
    return AwaitAnswer(mu_, cv_, acked_, ended_, seq, &error);
  }
  bool Close() override {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return !writing_ || ended_; });
      closing_ = true;
    }
    rw_->WritesDone(Tag(kWritesDone));
    acks_.join();  // the server finishes after our WritesDone: the read fails, then Finish
    return FinishStatus(status_, &error);
  }

 private:
  void AcksLoop() {
    void* tag;
    bool ok;
    bool reading = true, finishing = false;
    while (cq_.Next(&tag, &ok)) {
      const auto kind = static_cast<TagKind>(reinterpret_cast<intptr_t>(tag));
      std::unique_lock<std::mutex> lock(mu_);
      if (kind == kWrite) {
        writing_ = false;
      } else if (kind == kRead && ok) {
        if (resp_.acks_size() == 1) acked_ = resp_.acks(0).seq();
        rw_->Read(&resp_, Tag(kRead));
      } else if (kind == kRead) {
        reading = false;
        ended_ = true;
      } else if (kind == kFinish) {
        ended_ = true;
        cv_.notify_all();
        return;
      }
      if (!ok && kind == kWrite) ended_ = true;
      cv_.notify_all();
      if (!reading && !finishing && (closing_ || ended_)) {
        finishing = true;
        rw_->Finish(&status_, Tag(kFinish));
      }
    }
  }
  std::unique_ptr<proto::Replication::Stub> stub_;
  grpc::CompletionQueue cq_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientAsyncReaderWriter<OpBatch, AckBatch>> rw_;
  OpBatch req_;
  AckBatch resp_;
  grpc::Status status_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t acked_ = 0;
  bool writing_ = false, ended_ = false, closing_ = false;
  std::thread acks_;
};

// Callback API: reactions run on gRPC's threads; the caller sleeps on a condition variable.
class CallbackPinger final : public Pinger, public grpc::ClientBidiReactor<OpBatch, AckBatch> {
 public:
  CallbackPinger(std::shared_ptr<grpc::Channel> ch, size_t size) : stub_(proto::Replication::NewStub(ch)) {
    FillRequest(size, &req_);
    stub_->async()->Stream(&ctx_, this);
    AddHold();  // operations are started from outside reactions
    StartCall();
  }
  ~CallbackPinger() override {
    if (!closed_) {
      ctx_.TryCancel();
      RemoveHold();
      Wait([&] { return done_; });
    }
  }
  bool Ping(uint64_t seq) override {
    req_.mutable_ops(0)->set_seq(seq);
    {
      std::lock_guard<std::mutex> lock(mu_);
      pending_ = 2;
    }
    StartRead(&resp_);
    StartWrite(&req_);
    Wait([&] { return pending_ == 0 || failed_; });
    if (failed_) {
      error = "ping failed";
      return false;
    }
    return CheckAnswer(resp_, seq, &error);
  }
  bool Close() override {
    closed_ = true;
    StartWritesDone();
    RemoveHold();
    Wait([&] { return done_; });
    return FinishStatus(status_, &error);
  }
  void OnReadDone(bool ok) override { Done(ok); }
  void OnWriteDone(bool ok) override { Done(ok); }
  void OnDone(const grpc::Status& s) override {
    std::lock_guard<std::mutex> lock(mu_);
    status_ = s;
    done_ = true;
    cv_.notify_one();
  }

 private:
  void Done(bool ok) {
    std::lock_guard<std::mutex> lock(mu_);
    --pending_;
    if (!ok) failed_ = true;
    cv_.notify_one();
  }
  template <class Pred>
  void Wait(Pred pred) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, pred);
  }
  std::unique_ptr<proto::Replication::Stub> stub_;
  grpc::ClientContext ctx_;
  OpBatch req_;
  AckBatch resp_;
  std::mutex mu_;
  std::condition_variable cv_;
  int pending_ = 0;
  bool failed_ = false, done_ = false, closed_ = false;
  grpc::Status status_;
};

std::unique_ptr<Pinger> MakePinger(const Params& p, std::string* error) {
  if (p.kind == "tcp") {
    auto t = std::make_unique<TcpPinger>(p.port, p.size);
    if (!t->Connect()) *error = t->error;
    return t;
  }
  const std::string target = "127.0.0.1:" + std::to_string(p.port);
  grpc::ChannelArguments args;
  std::shared_ptr<grpc::ChannelCredentials> creds;
  Status s = replicator::MakeChannelCredentials(TlsFor(p), target, &creds, &args);
  if (!s.ok()) {
    *error = "channel credentials: " + s.message();
    return nullptr;
  }
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  auto ch = grpc::CreateCustomChannel(target, creds, args);
  if (!ch->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
    *error = "cannot connect to " + target;
    return nullptr;
  }
  if (p.kind == "sync") return std::make_unique<SyncPinger>(ch, p.size);
  if (p.kind == "syncacks") return std::make_unique<SyncAcksPinger>(ch, p.size);
  if (p.kind == "callback") return std::make_unique<CallbackPinger>(ch, p.size);
  if (p.kind == "cqacks") {
    auto c = std::make_unique<CqAcksPinger>(ch, p.size);
    if (!c->Open()) *error = c->error;
    return c;
  }
  auto c = std::make_unique<CqPinger>(ch, p.size);
  if (!c->Open()) *error = c->error;
  return c;
}

int RunClient(const Params& p) {
  std::string error;
  std::unique_ptr<Pinger> pinger = MakePinger(p, &error);
  uint64_t seq = 0;
  for (long i = 0; error.empty() && i < p.warmup; ++i) {
    if (!pinger->Ping(++seq)) error = pinger->error;
  }
  std::vector<int64_t> lat;
  lat.reserve(static_cast<size_t>(p.measured));
  const Csw before = ReadCsw();
  const int64_t start = NowNs();
  for (long i = 0; error.empty() && i < p.measured; ++i) {
    const int64_t t = NowNs();
    if (!pinger->Ping(++seq)) error = pinger->error;
    lat.push_back(NowNs() - t);
  }
  const int64_t elapsed = NowNs() - start;
  const Csw after = ReadCsw();
  if (error.empty() && !pinger->Close()) error = pinger->error;
  if (error.empty() && lat.empty()) error = "nothing measured (--measured 0)";
  if (!error.empty()) {
    printf("client_error=%s\n", error.c_str());
    return kExitFailed;
  }
  int64_t sum = 0;
  for (int64_t v : lat) sum += v;
  std::sort(lat.begin(), lat.end());
  const size_t n = lat.size();
  printf("p50_ns=%" PRId64 " p99_ns=%" PRId64 " mean_ns=%" PRId64
         " rtps=%.0f client_cs=%ld client_vol=%ld rts=%zu\n",
         lat[n / 2], lat[std::min(n - 1, n * 99 / 100)], sum / static_cast<int64_t>(n),
         static_cast<double>(n) * 1e9 / static_cast<double>(elapsed),
         after.vol + after.invol - before.vol - before.invol, after.vol - before.vol, n);
  return kExitOk;
}

// ---------------------------------------------------------------- parent

struct Child {
  pid_t pid = -1;
  UniqueFd to;  // its stdin (servers only)
  FILE* from = nullptr;
};

// Starts this binary with `args`; its stdout comes back through Child::from.
bool Spawn(const std::vector<std::string>& args, bool with_stdin, Child* c) {
  int out[2], in[2] = {-1, -1};
  if (pipe2(out, O_CLOEXEC) != 0 || (with_stdin && pipe2(in, O_CLOEXEC) != 0)) return false;
  fflush(nullptr);
  c->pid = fork();
  if (c->pid < 0) return false;
  if (c->pid == 0) {
    dup2(out[1], 1);
    if (with_stdin) dup2(in[0], 0);
    alarm(kChildSeconds);
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv("/proc/self/exe", argv.data());
    _exit(127);
  }
  close(out[1]);
  c->from = fdopen(out[0], "r");
  if (with_stdin) {
    close(in[0]);
    c->to.Reset(in[1]);
  }
  return true;
}

std::string ReadLine(Child* c) {
  char buf[512];
  if (fgets(buf, sizeof(buf), c->from) == nullptr) return "";
  std::string s(buf);
  if (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

int Reap(Child* c) {
  if (c->from != nullptr) fclose(c->from);
  c->from = nullptr;
  int status = 0;
  if (c->pid > 0 && waitpid(c->pid, &status, 0) != c->pid) return -1;
  c->pid = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

using Values = std::map<std::string, std::string>;

void ParseInto(const std::string& line, Values* v) {
  size_t pos = 0;
  while (pos < line.size()) {
    size_t end = line.find(' ', pos);
    if (end == std::string::npos) end = line.size();
    const std::string kv = line.substr(pos, end - pos);
    const size_t eq = kv.find('=');
    if (eq != std::string::npos) (*v)[kv.substr(0, eq)] = kv.substr(eq + 1);
    pos = end + 1;
  }
}

std::vector<std::string> ChildArgs(const Params& p, const std::string& role, const std::string& kind,
                                   bool tls, size_t size, long warmup, long measured) {
  std::vector<std::string> a = {"bench-grpc-floor",
                                "--role",
                                role,
                                "--kind",
                                kind,
                                "--size",
                                std::to_string(size),
                                "--warmup",
                                std::to_string(warmup),
                                "--measured",
                                std::to_string(measured)};
  if (tls) {
    a.insert(a.end(), {"--tls", "--tls-dir", p.tls_dir});
    if (!p.tls_name.empty()) a.insert(a.end(), {"--tls-name", p.tls_name});
  }
  return a;
}

// One measurement: a fresh server process, a fresh client process. False with *error on failure.
bool Measure(const Params& p, const std::string& client, const std::string& server, bool tls, size_t size,
             Values* v, std::string* error) {
  const long measured = size >= kBigPayload ? p.big_pings : p.pings;
  const long warmup = std::max(10L, measured / 20);
  Child srv, cli;
  if (!Spawn(ChildArgs(p, "serve", server, tls, size, warmup, measured), true, &srv)) {
    *error = std::string("cannot start the server: ") + strerror(errno);
    return false;
  }
  Values port;
  ParseInto(ReadLine(&srv), &port);
  std::vector<std::string> args = ChildArgs(p, "client", client, tls, size, warmup, measured);
  args.insert(args.end(), {"--port", port["port"]});
  const bool started = !port["port"].empty() && Spawn(args, false, &cli);
  if (started) {
    ParseInto(ReadLine(&cli), v);
    if (Reap(&cli) != 0 && v->count("client_error") == 0) (*v)["client_error"] = "client died";
  }
  srv.to.Reset();  // EOF: the server shuts down and reports
  ParseInto(ReadLine(&srv), v);
  const int src = Reap(&srv);
  if (!started) {
    *error = "the server did not announce its port";
  } else if (v->count("client_error") != 0) {
    *error = (*v)["client_error"];
  } else if (src != 0 || v->count("server_error") != 0 || v->count("server_cs") == 0) {
    *error =
        "server failed: " + (v->count("server_error") ? (*v)["server_error"] : "exit " + std::to_string(src));
  }
  return error->empty();
}

struct Cell {
  std::string client, server;
  bool tls;
  size_t size;
  std::vector<Values> runs;
};

double Num(const Values& v, const std::string& k) {
  return v.count(k) ? strtod(v.at(k).c_str(), nullptr) : 0;
}

double Median(std::vector<double> xs) {
  std::sort(xs.begin(), xs.end());
  return xs.empty() ? 0 : xs[xs.size() / 2];
}

std::string SizeName(size_t size) {
  if (size >= (1 << 20) && size % (1 << 20) == 0) return std::to_string(size >> 20) + " MiB";
  if (size >= 1024 && size % 1024 == 0) return std::to_string(size >> 10) + " KiB";
  return std::to_string(size) + " B";
}

std::string KindName(const std::string& k) {
  if (k == "syncacks") return "sync + acks thread";
  if (k == "cqacks") return "async write + acks thread";
  if (k == "cq") return "async CQ";
  return k;
}

void PrintTable(const std::vector<Cell>& cells) {
  printf(
      "| client / server | TLS | payload | p50 µs | p99 µs | mean µs | round trips/s | cs/RT client (vol) |"
      " cs/RT server (vol) |\n");
  printf("|---|---|---|--:|--:|--:|--:|--:|--:|\n");
  for (const Cell& c : cells) {
    auto med = [&](const std::string& k, double scale) {
      std::vector<double> xs;
      for (const Values& v : c.runs) xs.push_back(Num(v, k) * scale);
      return Median(xs);
    };
    auto per_rt = [&](const std::string& k, const std::string& n) {
      std::vector<double> xs;
      for (const Values& v : c.runs) xs.push_back(Num(v, n) > 0 ? Num(v, k) / Num(v, n) : 0);
      return Median(xs);
    };
    const std::string label =
        c.client == "tcp" ? "plain TCP socket" : KindName(c.client) + " / " + KindName(c.server);
    printf("| %s | %s | %s | %.1f | %.1f | %.1f | %.0f | %.2f (%.2f) | %.2f (%.2f) |\n", label.c_str(),
           c.tls ? "yes" : "no", SizeName(c.size).c_str(), med("p50_ns", 1e-3), med("p99_ns", 1e-3),
           med("mean_ns", 1e-3), med("rtps", 1), per_rt("client_cs", "rts"), per_rt("client_vol", "rts"),
           per_rt("server_cs", "server_rts"), per_rt("server_vol", "server_rts"));
  }
}

std::string LoadAverage() {
  char buf[128] = "";
  FILE* f = fopen("/proc/loadavg", "r");
  if (f != nullptr) {
    if (fgets(buf, sizeof(buf), f) == nullptr) buf[0] = 0;
    fclose(f);
  }
  std::string s(buf);
  if (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

int RunParent(const Params& p) {
  std::vector<Cell> cells;
  for (const std::string& row : p.rows) {
    const size_t slash = row.find('/');
    for (int tls = 0; tls < 2; ++tls) {
      if ((tls == 1 && (p.tls_dir.empty() || row == "tcp/tcp")) || (tls == 0 && !p.plain)) continue;
      for (size_t size : p.sizes)
        cells.push_back({row.substr(0, slash), row.substr(slash + 1), tls == 1, size, {}});
    }
  }
  const std::string load_before = LoadAverage();
  time_t now = time(nullptr);
  char date[64];
  strftime(date, sizeof(date), "%Y-%m-%d %H:%M UTC", gmtime(&now));
  int failures = 0;
  for (int run = 0; run < p.runs; ++run) {
    for (Cell& c : cells) {
      Values v;
      std::string error;
      const bool ok = Measure(p, c.client, c.server, c.tls, c.size, &v, &error);
      fprintf(stderr, "run=%d client=%s server=%s tls=%d size=%zu", run + 1, c.client.c_str(),
              c.server.c_str(), c.tls ? 1 : 0, c.size);
      for (const auto& [k, val] : v) fprintf(stderr, " %s=%s", k.c_str(), val.c_str());
      fprintf(stderr, ok ? "\n" : " error=%s\n", error.c_str());
      if (ok) c.runs.push_back(v);
      failures += ok ? 0 : 1;
    }
  }
  printf(
      "bench-grpc-floor: %s, gRPC %s, %ld CPUs, %d run(s), medians; %ld pings (payload < 64 KiB) / %ld "
      "(larger) per measurement after 1/20 as many warm-up pings\n",
      date, grpc::Version().c_str(), sysconf(_SC_NPROCESSORS_ONLN), p.runs, p.pings, p.big_pings);
  const char* poll = getenv("GRPC_POLL_STRATEGY");  // hamirror-fs sets "poll" for itself
  printf("GRPC_POLL_STRATEGY=%s\n", poll != nullptr ? poll : "(unset: gRPC's default, epoll1)");
  printf("load average (1/5/15 min, runnable/total, last pid) before: %s; after: %s\n\n", load_before.c_str(),
         LoadAverage().c_str());
  PrintTable(cells);
  if (failures > 0) fprintf(stderr, "bench-grpc-floor: %d measurement(s) failed\n", failures);
  return failures > 0 ? kExitFailed : kExitOk;
}

// ---------------------------------------------------------------- arguments

int Usage(const std::string& why) {
  fprintf(stderr,
          "bench-grpc-floor: %s\n"
          "usage: bench-grpc-floor [--pings N] [--big-pings N] [--runs R] [--sizes B,B] [--rows C/S,C/S]\n"
          "                        [--tls-dir DIR [--tls-name NAME]] [--no-plain]\n"
          "  kinds: client tcp|sync|syncacks|cq|cqacks|callback, server tcp|sync|cq|callback (tcp only with "
          "tcp)\n",
          why.c_str());
  return kExitUsage;
}

std::vector<std::string> SplitComma(const std::string& s) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t end = s.find(',', pos);
    if (end == std::string::npos) end = s.size();
    if (end > pos) out.push_back(s.substr(pos, end - pos));
    pos = end + 1;
  }
  return out;
}

bool ParseCount(const std::string& s, long min, long max, long* out) {
  char* end = nullptr;
  errno = 0;
  const long v = strtol(s.c_str(), &end, 10);
  if (s.empty() || *end != 0 || errno != 0 || v < min || v > max) return false;
  *out = v;
  return true;
}

bool ValidRow(const std::string& row) {
  static const std::vector<std::string> clients = {"sync", "syncacks", "cq", "cqacks", "callback"};
  static const std::vector<std::string> servers = {"sync", "cq", "callback"};
  const size_t slash = row.find('/');
  if (row == "tcp/tcp") return true;
  if (slash == std::string::npos) return false;
  const std::string c = row.substr(0, slash), s = row.substr(slash + 1);
  return std::find(clients.begin(), clients.end(), c) != clients.end() &&
         std::find(servers.begin(), servers.end(), s) != servers.end();
}

int ParseArgs(int argc, char** argv, Params* p) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--tls") {
      p->tls = true;
      continue;
    }
    if (a == "--no-plain") {
      p->plain = false;
      continue;
    }
    if (i + 1 >= argc) return Usage(a + " needs a value (or is unknown)");
    const std::string v = argv[++i];
    long n = 0;
    if (a == "--role") {
      p->role = v;
    } else if (a == "--kind") {
      p->kind = v;
    } else if (a == "--tls-dir") {
      p->tls_dir = v;
    } else if (a == "--tls-name") {
      p->tls_name = v;
    } else if (a == "--port" && ParseCount(v, 1, 65535, &n)) {
      p->port = static_cast<int>(n);
    } else if (a == "--size" && ParseCount(v, 1, 64L << 20, &n)) {
      p->size = static_cast<size_t>(n);
    } else if ((a == "--pings" || a == "--big-pings") && ParseCount(v, 20, 10000000, &n)) {
      (a == "--pings" ? p->pings : p->big_pings) = n;
    } else if ((a == "--warmup" || a == "--measured") && ParseCount(v, 0, 20000000, &n)) {
      (a == "--warmup" ? p->warmup : p->measured) = n;
    } else if (a == "--runs" && ParseCount(v, 1, 99, &n)) {
      p->runs = static_cast<int>(n);
    } else if (a == "--sizes") {
      p->sizes.clear();
      for (const std::string& s : SplitComma(v)) {
        if (!ParseCount(s, 1, 64L << 20, &n)) return Usage("bad size '" + s + "' (1 .. 64 MiB)");
        p->sizes.push_back(static_cast<size_t>(n));
      }
      if (p->sizes.empty()) return Usage("--sizes is empty");
    } else if (a == "--rows") {
      p->rows = SplitComma(v);
      for (const std::string& r : p->rows) {
        if (!ValidRow(r)) return Usage("bad row '" + r + "' (CLIENT/SERVER)");
      }
      if (p->rows.empty()) return Usage("--rows is empty");
    } else {
      return Usage("bad option or value: " + a + " " + v);
    }
  }
  if (!p->plain && p->tls_dir.empty()) return Usage("--no-plain needs --tls-dir");
  if (!p->tls_dir.empty() && access((p->tls_dir + "/node.pem").c_str(), R_OK) != 0) {
    return Usage("--tls-dir " + p->tls_dir + ": no readable node.pem");
  }
  return kExitOk;
}

}  // namespace
}  // namespace hamirror::bench

int main(int argc, char** argv) {
  using namespace hamirror::bench;
  Params p;
  const int rc = ParseArgs(argc, argv, &p);
  if (rc != kExitOk) return rc;
  if (p.role == "serve") return RunServer(p);
  if (p.role == "client") return RunClient(p);
  if (!p.role.empty()) return Usage("bad --role");
  return RunParent(p);
}
