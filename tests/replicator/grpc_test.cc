// Shipper <-> ReplicationServer over real gRPC sockets on 127.0.0.1 (port 0: tests can run in
// parallel): round trip, batching, garbage frames, checksum reset + resend, peer loss within
// send_timeout, one primary at a time, mutual TLS, address in use, resync queries' answers.
#include <arpa/inet.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/sync_stream.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <condition_variable>
#include <mutex>
#include <random>
#include <thread>

#include "replicator/replication_server.h"
#include "replicator/shipper.h"
#include "tests/replicator/test_util.h"

using namespace hamirror;
using namespace hamirror::replicator;
using namespace hamirror::replicator::testing;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

// Counts callbacks by outcome.
class Waiter {
 public:
  static void Cb(void* ctx, const ShipResult& r) {
    auto* w = static_cast<Waiter*>(ctx);
    std::lock_guard<std::mutex> lock(w->mu_);
    ++w->total_;
    if (r.outcome == ShipOutcome::kAcked) ++w->acked_;
    if (r.outcome == ShipOutcome::kPeerError) ++w->errors_;
    if (r.outcome == ShipOutcome::kNotShipped) ++w->not_shipped_;
    w->cv_.notify_all();
  }
  bool WaitTotal(int n, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return total_ >= n; });
  }
  int total() {
    std::lock_guard<std::mutex> lock(mu_);
    return total_;
  }
  int acked() {
    std::lock_guard<std::mutex> lock(mu_);
    return acked_;
  }
  int errors() {
    std::lock_guard<std::mutex> lock(mu_);
    return errors_;
  }
  int not_shipped() {
    std::lock_guard<std::mutex> lock(mu_);
    return not_shipped_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int total_ = 0, acked_ = 0, errors_ = 0, not_shipped_ = 0;
};

struct Secondary {
  TempTree tree{"secondary"};
  std::unique_ptr<ReplicationServer> server;
  int port = 0;

  Status Start(const TlsOptions& tls = {}, int fixed_port = 0,
               std::function<void(const proto::OpBatch&)> on_applied = nullptr) {
    ReplicationServerOptions o;
    o.listen = "127.0.0.1:" + std::to_string(fixed_port);
    o.tls = tls;
    o.root_fd = tree.root_fd();
    o.node_name = "node2";
    o.on_applied = std::move(on_applied);
    Status s = ReplicationServer::Start(o, &server);
    if (s.ok()) port = server->port();
    return s;
  }
  std::string addr() const { return "127.0.0.1:" + std::to_string(port); }
};

// Generous defaults so a loaded (or sanitized) run never trips them; tests about timeouts set theirs.
ShipperOptions Opts(const std::string& peer, std::chrono::milliseconds send_timeout = 20000ms) {
  ShipperOptions o;
  o.peer = peer;
  o.send_timeout = send_timeout;
  o.connect_timeout = 10000ms;
  o.zone_size = 4096;
  o.node_name = "node1";
  return o;
}

std::string Pattern(size_t n, int seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 31 + seed * 7) & 0xff);
  return s;
}

// Waits until pred() holds, at most timeout.
template <typename Pred>
bool Eventually(Pred pred, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

}  // namespace

TEST_CASE("shipper to server round trip, batching under load", "[grpc]") {
  Secondary sec;
  REQUIRE(sec.Start().ok());
  std::unique_ptr<Shipper> shipper;
  REQUIRE(Shipper::Create(Opts(sec.addr()), &shipper).ok());
  REQUIRE(shipper->Stats().connected);
  Waiter w;
  shipper->Ship(MakeFile(1, "data", 2, 0600), &Waiter::Cb, &w);
  std::string expect;
  const int kWrites = 3000;
  for (int i = 0; i < kWrites; ++i) {
    std::string chunk = Pattern(512, i);
    expect += chunk;
    shipper->Ship(Write(2, uint64_t(i) * 512, chunk), &Waiter::Cb, &w);
  }
  shipper->Ship(Fsync(2, true), &Waiter::Cb, &w);
  shipper->Ship(Fsync(0), &Waiter::Cb, &w);
  const int n = kWrites + 3;
  REQUIRE(w.WaitTotal(n, 20000ms));
  CHECK(w.acked() == n);
  CHECK(ReadFile(sec.tree.Path("data")) == expect);
  ShipperStats st = shipper->Stats();
  CHECK(st.ops_acked == uint64_t(n));
  CHECK(st.bytes_acked == uint64_t(kWrites) * 512);
  CHECK(st.inflight == 0);
  CHECK(!st.alone);
  CHECK(shipper->dirty().Empty());
  ReplicationServerStats ss = sec.server->Stats();
  CHECK(ss.connected);
  CHECK(ss.ops_applied == uint64_t(n));
  // Many small ops travel several per message when queued faster than sent.
  INFO("batches " << ss.batches_applied);
  CHECK(ss.batches_applied < uint64_t(n));
  // Peer-side errors come back as kPeerError and are recorded dirty.
  Waiter w2;
  shipper->Ship(MakeFile(1, "data", 3), &Waiter::Cb, &w2);
  REQUIRE(w2.WaitTotal(1, 5000ms));
  CHECK(w2.errors() == 1);
  CHECK(shipper->dirty().Counts().namespace_dirty);
}

TEST_CASE("corrupted frames are rejected, the stream reset and the data resent", "[grpc]") {
  Secondary sec;
  REQUIRE(sec.Start().ok());
  ShipperOptions o = Opts(sec.addr());
  o.test_corrupt_writes = 3;
  std::unique_ptr<Shipper> shipper;
  REQUIRE(Shipper::Create(o, &shipper).ok());
  Waiter w;
  shipper->Ship(MakeFile(1, "f", 2), &Waiter::Cb, &w);
  std::string expect;
  for (int i = 0; i < 200; ++i) {
    std::string chunk = Pattern(1000, i);
    expect += chunk;
    shipper->Ship(Write(2, uint64_t(i) * 1000, chunk), &Waiter::Cb, &w);
  }
  REQUIRE(w.WaitTotal(201, 20000ms));
  CHECK(w.acked() == 201);
  CHECK(ReadFile(sec.tree.Path("f")) == expect);
  // A corrupted frame written behind one that already reset the stream is never read: 1..3 resets.
  const uint64_t errors = sec.server->Stats().checksum_errors;
  CHECK(errors >= 1);
  CHECK(errors <= 3);
  CHECK(sec.server->Stats().rejected_frames >= errors);
  CHECK(shipper->Stats().reconnects >= errors);
  CHECK(!shipper->Stats().alone);
  CHECK(shipper->dirty().Empty());
}

// (Not "t" + std::to_string(t): GCC 12 warns a bogus -Wrestrict on it.)
std::string ThreadFile(int t) {
  std::string name = std::to_string(t);
  name.insert(0, 1, 't');
  return name;
}

TEST_CASE("concurrent shippers through repeated stream resets end identical", "[grpc]") {
  Secondary sec;
  REQUIRE(sec.Start().ok());
  ShipperOptions o = Opts(sec.addr());
  o.test_corrupt_writes = 12;  // a dozen resets in the middle of the load
  o.max_batch_ops = 16;        // many batches, so resets hit different places
  std::unique_ptr<Shipper> shipper;
  REQUIRE(Shipper::Create(o, &shipper).ok());
  constexpr int kThreads = 4, kOps = 600;
  Waiter w;
  for (int t = 0; t < kThreads; ++t) shipper->Ship(MakeFile(1, ThreadFile(t), 10 + t), &Waiter::Cb, &w);
  REQUIRE(w.WaitTotal(kThreads, 10000ms));
  std::vector<std::string> expect(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      std::string& model = expect[t];
      for (int i = 0; i < kOps; ++i) {
        const size_t off = rng() % 30000, len = 1 + rng() % 6000;
        std::string data = Pattern(len, t * 100000 + i);
        if (model.size() < off + len) model.resize(off + len, '\0');
        model.replace(off, len, data);
        shipper->Ship(Write(10 + t, off, data), &Waiter::Cb, &w);
      }
    });
  }
  for (auto& th : threads) th.join();
  REQUIRE(w.WaitTotal(kThreads + kThreads * kOps, 30000ms));
  CHECK(w.acked() == kThreads + kThreads * kOps);
  for (int t = 0; t < kThreads; ++t) CHECK(ReadFile(sec.tree.Path(ThreadFile(t))) == expect[t]);
  CHECK(sec.server->Stats().checksum_errors >= 1);
  CHECK(shipper->Stats().reconnects >= 1);
  CHECK(shipper->dirty().Empty());
}

namespace {
// A raw client speaking bytes on the replication method, to send what a real Shipper never would.
struct RawCall {
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>> stream;
  RawCall(const std::shared_ptr<grpc::Channel>& ch) {
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    grpc::internal::RpcMethod method("/hamirror.proto.Replication/Stream",
                                     grpc::internal::RpcMethod::BIDI_STREAMING);
    stream.reset(grpc::internal::ClientReaderWriterFactory<grpc::ByteBuffer, grpc::ByteBuffer>::Create(
        ch.get(), method, &ctx));
  }
  bool Send(const std::string& bytes) {
    grpc::Slice slice(bytes);
    grpc::ByteBuffer bb(&slice, 1);
    return stream->Write(bb);
  }
  bool SendMsg(const google::protobuf::Message& m) { return Send(m.SerializeAsString()); }
  bool Recv(proto::AckBatch* out) {
    grpc::ByteBuffer bb;
    if (!stream->Read(&bb)) return false;
    std::vector<grpc::Slice> slices;
    if (!bb.Dump(&slices).ok()) return false;
    std::string bytes;
    for (const grpc::Slice& sl : slices) bytes.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
    return out->ParseFromString(bytes);
  }
  grpc::Status End() {
    stream->WritesDone();
    grpc::ByteBuffer bb;
    while (stream->Read(&bb)) {
    }
    return stream->Finish();
  }
};

proto::OpBatch HelloBatch(const std::string& session) {
  proto::OpBatch b;
  b.mutable_hello()->set_protocol_version(kProtocolVersion);
  b.mutable_hello()->set_session_id(session);
  return b;
}
}  // namespace

TEST_CASE("garbage and truncated frames do not crash the server", "[grpc]") {
  Secondary sec;
  REQUIRE(sec.Start().ok());
  // Raw TCP garbage.
  for (const std::string& junk :
       {std::string("GET / HTTP/1.1\r\n\r\n"), Pattern(70000, 3), std::string("\0\0\0", 3)}) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(sec.port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    (void)!write(fd, junk.data(), junk.size());
    close(fd);
  }
  auto ch = grpc::CreateChannel(sec.addr(), grpc::InsecureChannelCredentials());
  {
    RawCall c(ch);  // undecodable first message
    c.Send(Pattern(100, 9));
    CHECK(!c.End().ok());
  }
  {
    RawCall c(ch);  // ops without Hello
    proto::OpBatch b;
    *b.add_ops() = Write(1, 0, "x");
    b.mutable_ops(0)->set_seq(1);
    c.SendMsg(b);
    CHECK(c.End().error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  }
  {
    RawCall c(ch);  // truncated batch after a good Hello
    c.SendMsg(HelloBatch("raw1"));
    proto::OpBatch b;
    *b.add_ops() = MakeFile(1, "trunc", 2);
    *b.add_ops() = Write(2, 0, Pattern(5000, 1));
    b.mutable_ops(0)->set_seq(1);
    b.mutable_ops(1)->set_seq(2);
    std::string bytes = b.SerializeAsString();
    c.Send(bytes.substr(0, bytes.size() / 2));
    // The sync server sees an undecodable message as the end of the stream (gRPC gives it no way to
    // tell the two apart); what matters is that nothing of it is applied and the server lives on.
    c.End();
  }
  {
    RawCall c(ch);  // bad checksum: DATA_LOSS, nothing applied
    c.SendMsg(HelloBatch("raw2"));
    proto::OpBatch b;
    *b.add_ops() = MakeFile(1, "bad", 2);
    *b.add_ops() = Write(2, 0, "abc");
    b.mutable_ops(0)->set_seq(1);
    b.mutable_ops(1)->set_seq(2);
    b.mutable_ops(1)->mutable_write()->set_checksum(1);
    c.SendMsg(b);
    CHECK(c.End().error_code() == grpc::StatusCode::DATA_LOSS);
  }
  {
    RawCall c(ch);  // sequence gap
    c.SendMsg(HelloBatch("raw3"));
    proto::OpBatch b;
    *b.add_ops() = MakeFile(1, "gap", 2);
    b.mutable_ops(0)->set_seq(5);
    c.SendMsg(b);
    CHECK(!c.End().ok());
  }
  {
    RawCall c(ch);  // wrong protocol version
    proto::OpBatch h = HelloBatch("raw4");
    h.mutable_hello()->set_protocol_version(99);
    c.SendMsg(h);
    grpc::Status st = c.End();
    CHECK(st.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
    CHECK(st.error_message().find("protocol version") != std::string::npos);
  }
  CHECK(!std::filesystem::exists(sec.tree.Path("trunc")));
  CHECK(!std::filesystem::exists(sec.tree.Path("bad")));
  CHECK(!std::filesystem::exists(sec.tree.Path("gap")));
  CHECK(sec.server->Stats().rejected_frames >= 3);
  // Still serving.
  std::unique_ptr<Shipper> shipper;
  REQUIRE(Shipper::Create(Opts(sec.addr()), &shipper).ok());
  Waiter w;
  shipper->Ship(MakeFile(1, "after", 2), &Waiter::Cb, &w);
  REQUIRE(w.WaitTotal(1, 5000ms));
  CHECK(w.acked() == 1);
  CHECK(std::filesystem::exists(sec.tree.Path("after")));
}

TEST_CASE("a reconnect of the same session takes over, another session is refused", "[grpc]") {
  Secondary sec;
  REQUIRE(sec.Start().ok());
  auto ch = grpc::CreateChannel(sec.addr(), grpc::InsecureChannelCredentials());
  RawCall first(ch);
  REQUIRE(first.SendMsg(HelloBatch("sess-A")));
  proto::AckBatch reply;
  REQUIRE(first.Recv(&reply));
  CHECK(reply.hello().applied_through() == 0);
  proto::OpBatch b;
  *b.add_ops() = MakeFile(1, "one", 2);
  b.mutable_ops(0)->set_seq(1);
  REQUIRE(first.SendMsg(b));
  REQUIRE(first.Recv(&reply));
  REQUIRE(reply.acks_size() == 1);

  // Another primary while sess-A is active: refused, and told who holds the stream.
  RawCall other(ch);
  other.SendMsg(HelloBatch("sess-B"));
  grpc::Status st = other.End();
  CHECK(st.error_code() == grpc::StatusCode::ALREADY_EXISTS);
  CHECK(st.error_message().find("sess-A") != std::string::npos);

  // sess-A again (as after a break the server has not noticed): the old stream is cancelled, the new
  // one resumes after seq 1.
  RawCall second(ch);
  REQUIRE(second.SendMsg(HelloBatch("sess-A")));
  REQUIRE(second.Recv(&reply));
  CHECK(reply.hello().applied_through() == 1);
  CHECK(!first.End().ok());
  proto::OpBatch b2;
  *b2.add_ops() = Write(2, 0, "resumed");
  b2.mutable_ops(0)->set_seq(2);
  REQUIRE(second.SendMsg(b2));
  REQUIRE(second.Recv(&reply));
  REQUIRE(reply.acks_size() == 1);
  CHECK(reply.acks(0).error() == 0);
  CHECK(ReadFile(sec.tree.Path("one")) == "resumed");
  CHECK(second.End().ok());
}

namespace {
struct Timed {
  Clock::time_point shipped;
  std::atomic<int64_t> latency_us{-1};
  std::atomic<int> outcome{-1};
  static void Cb(void* ctx, const ShipResult& r) {
    auto* t = static_cast<Timed*>(ctx);
    t->outcome = static_cast<int>(r.outcome);
    t->latency_us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t->shipped).count();
  }
};

// Ships writes every ~1 ms for `duration`, calling `midway` after `at`; checks every callback comes
// within send_timeout + slack and returns the count of kNotShipped.
int ShipThroughFailure(Shipper* shipper, std::chrono::milliseconds send_timeout, std::chrono::milliseconds at,
                       std::chrono::milliseconds duration, const std::function<void()>& midway) {
  std::vector<std::unique_ptr<Timed>> ops;
  const auto start = Clock::now();
  bool fired = false;
  int64_t max_ship_call_us = 0;
  for (int i = 0; i < 100000 && Clock::now() - start < duration; ++i) {
    if (!fired && Clock::now() - start >= at) {
      fired = true;
      midway();
    }
    auto t = std::make_unique<Timed>();
    t->shipped = Clock::now();
    shipper->Ship(Write(2, uint64_t(i % 64) * 4096, Pattern(4096, i)), &Timed::Cb, t.get());
    max_ship_call_us = std::max<int64_t>(
        max_ship_call_us,
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t->shipped).count());
    ops.push_back(std::move(t));
    std::this_thread::sleep_for(1ms);
  }
  // Watchdog tick is send_timeout/20; the rest is headroom for a loaded 2-core CI machine.
  const auto slack = 750ms;
  REQUIRE(Eventually(
      [&] {
        for (auto& t : ops) {
          if (t->latency_us < 0) return false;
        }
        return true;
      },
      send_timeout + slack + 2000ms));
  int64_t max_us = 0;
  int not_shipped = 0;
  for (auto& t : ops) {
    max_us = std::max<int64_t>(max_us, t->latency_us);
    if (t->outcome == static_cast<int>(ShipOutcome::kNotShipped)) ++not_shipped;
  }
  const int64_t bound_us =
      std::chrono::duration_cast<std::chrono::microseconds>(send_timeout + slack).count();
  INFO("ops " << ops.size() << ", max callback latency " << max_us << " us, max Ship() call "
              << max_ship_call_us << " us, bound " << bound_us << " us");
  CHECK(max_us <= bound_us);
  CHECK(max_ship_call_us <= bound_us);
  WARN("peer loss: " << ops.size() << " ops, max callback latency " << max_us / 1000 << " ms (send_timeout "
                     << send_timeout.count() << " ms)");
  return not_shipped;
}
}  // namespace

TEST_CASE("peer loss: server stopped mid-stream -> kNotShipped within send_timeout", "[grpc][peerloss]") {
  Secondary sec;
  REQUIRE(sec.Start().ok());
  const auto send_timeout = 600ms;
  std::unique_ptr<Shipper> shipper;
  REQUIRE(Shipper::Create(Opts(sec.addr(), send_timeout), &shipper).ok());
  Waiter w;
  shipper->Ship(MakeFile(1, "f", 2), &Waiter::Cb, &w);
  REQUIRE(w.WaitTotal(1, 5000ms));
  int not_shipped =
      ShipThroughFailure(shipper.get(), send_timeout, 300ms, 1500ms, [&] { sec.server->Stop(); });
  CHECK(not_shipped > 0);
  ShipperStats st = shipper->Stats();
  CHECK(st.alone);
  CHECK(!st.connected);
  CHECK(!st.last_error.empty());
  CHECK(st.inflight == 0);
  DirtyCounts dc = shipper->dirty().Counts();
  CHECK(dc.files == 1);
  CHECK(dc.zones > 0);
  // Alone now: later ops complete inline.
  Waiter w2;
  shipper->Ship(Write(2, 1 << 20, "x"), &Waiter::Cb, &w2);
  CHECK(w2.not_shipped() == 1);
  CHECK(shipper->dirty().IsZoneDirty(2, (1 << 20) / 4096));
}

TEST_CASE("peer loss: a hung peer (no acks) -> kNotShipped within send_timeout", "[grpc][peerloss]") {
  std::mutex mu;
  std::condition_variable cv;
  bool hang = false;
  Secondary sec;
  REQUIRE(sec.Start({}, 0,
                    [&](const proto::OpBatch&) {
                      std::unique_lock<std::mutex> lock(mu);
                      cv.wait_for(lock, 5s, [&] { return !hang; });
                    })
              .ok());
  const auto send_timeout = 500ms;
  std::unique_ptr<Shipper> shipper;
  REQUIRE(Shipper::Create(Opts(sec.addr(), send_timeout), &shipper).ok());
  Waiter w;
  shipper->Ship(MakeFile(1, "f", 2), &Waiter::Cb, &w);
  REQUIRE(w.WaitTotal(1, 5000ms));
  int not_shipped = ShipThroughFailure(shipper.get(), send_timeout, 200ms, 1200ms, [&] {
    std::lock_guard<std::mutex> lock(mu);
    hang = true;
  });
  {
    std::lock_guard<std::mutex> lock(mu);
    hang = false;
  }
  cv.notify_all();
  CHECK(not_shipped > 0);
  CHECK(shipper->Stats().alone);
  CHECK(shipper->Stats().last_error.find("send_timeout") != std::string::npos);
  CHECK(shipper->dirty().Counts().zones > 0);
}

TEST_CASE("a restarted secondary (lost session) makes the shipper go alone, not resend blindly", "[grpc]") {
  auto sec = std::make_unique<Secondary>();
  REQUIRE(sec->Start().ok());
  const int port = sec->port;
  std::unique_ptr<Shipper> shipper;
  REQUIRE(Shipper::Create(Opts(sec->addr(), 3000ms), &shipper).ok());
  Waiter w;
  shipper->Ship(MakeFile(1, "f", 2), &Waiter::Cb, &w);
  REQUIRE(w.WaitTotal(1, 5000ms));
  sec->server.reset();
  REQUIRE(sec->Start({}, port).ok());  // same port, fresh session state
  shipper->Ship(Write(2, 0, "x"), &Waiter::Cb, &w);
  REQUIRE(w.WaitTotal(2, 5000ms));
  CHECK(w.not_shipped() == 1);
  CHECK(shipper->Stats().alone);
  CHECK(shipper->Stats().last_error.find("resync") != std::string::npos);
}

TEST_CASE("one primary at a time, unreachable peer means alone", "[grpc]") {
  Secondary sec;
  REQUIRE(sec.Start().ok());
  std::unique_ptr<Shipper> a, b;
  REQUIRE(Shipper::Create(Opts(sec.addr()), &a).ok());
  CHECK(a->Stats().connected);
  ShipperOptions ob = Opts(sec.addr());
  ob.connect_timeout = 500ms;
  REQUIRE(Shipper::Create(ob, &b).ok());
  CHECK(b->Stats().alone);
  CHECK(b->Stats().last_error.find("another primary") != std::string::npos);
  CHECK(sec.server->Stats().streams_refused >= 1);
  Waiter w;
  a->Ship(MakeFile(1, "a", 2), &Waiter::Cb, &w);
  REQUIRE(w.WaitTotal(1, 5000ms));
  CHECK(w.acked() == 1);

  // Nobody listening.
  Secondary gone;
  REQUIRE(gone.Start().ok());
  const std::string addr = gone.addr();
  gone.server.reset();
  std::unique_ptr<Shipper> c;
  ShipperOptions oc = Opts(addr);
  oc.connect_timeout = 300ms;
  const auto t0 = Clock::now();
  REQUIRE(Shipper::Create(oc, &c).ok());
  CHECK(Clock::now() - t0 < 2000ms);
  CHECK(c->Stats().alone);
  Waiter w2;
  c->Ship(MakeFile(1, "x", 2), &Waiter::Cb, &w2);
  CHECK(w2.not_shipped() == 1);  // inline

  // A non-loopback peer without TLS is a configuration error.
  std::unique_ptr<Shipper> d;
  Status s = Shipper::Create(Opts("198.18.0.2:7000"), &d);
  CHECK(!s.ok());
  CHECK(s.message().find("TLS") != std::string::npos);
}

TEST_CASE("forgets ride with the next op, or go on their own within a bounded delay", "[grpc]") {
  // Every batch the secondary applied, as the op kinds it held, in order.
  std::mutex mu;
  std::vector<std::vector<proto::Op::BodyCase>> batches;
  auto kinds_of = [&](size_t i) {
    std::lock_guard<std::mutex> lock(mu);
    return batches.at(i);
  };
  auto count = [&] {
    std::lock_guard<std::mutex> lock(mu);
    return batches.size();
  };
  Secondary sec;
  REQUIRE(sec.Start({}, 0,
                    [&](const proto::OpBatch& b) {
                      std::vector<proto::Op::BodyCase> kinds;
                      for (const proto::Op& op : b.ops()) kinds.push_back(op.body_case());
                      std::lock_guard<std::mutex> lock(mu);
                      batches.push_back(std::move(kinds));
                    })
              .ok());
  std::unique_ptr<Shipper> shipper;
  REQUIRE(Shipper::Create(Opts(sec.addr()), &shipper).ok());
  Waiter w;
  shipper->Ship(MakeFile(1, "a", 2), &Waiter::Cb, &w);
  REQUIRE(w.WaitTotal(1, 5000ms));

  // The forget of rid 2 is held, then written ahead of the next op in the same message.
  const size_t before = count();
  shipper->Ship(Forget(2), &Waiter::Cb, &w);
  shipper->Ship(MakeFile(1, "b", 3), &Waiter::Cb, &w);
  REQUIRE(w.WaitTotal(3, 5000ms));
  CHECK(w.acked() == 3);
  REQUIRE(count() == before + 1);
  CHECK((kinds_of(before) == std::vector<proto::Op::BodyCase>{proto::Op::kForget, proto::Op::kMakeNode}));

  // A lone forget is not held for ever: the watchdog sends it (send_timeout 20 s: a tick of 100 ms).
  const auto t0 = Clock::now();
  shipper->Ship(Forget(3), &Waiter::Cb, &w);
  REQUIRE(w.WaitTotal(4, 5000ms));
  INFO("lone forget acked after "
       << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count() << " ms");
  CHECK(Clock::now() - t0 < 2000ms);
  CHECK((kinds_of(before + 1) == std::vector<proto::Op::BodyCase>{proto::Op::kForget}));

  // Many forgets in a row travel in a few messages, not one each; all are acked.
  const size_t before_many = count();
  for (uint64_t rid = 100; rid < 300; ++rid) shipper->Ship(Forget(rid), &Waiter::Cb, &w);
  REQUIRE(w.WaitTotal(204, 5000ms));
  CHECK(w.acked() == 204);
  INFO("batches for 200 forgets: " << count() - before_many);
  CHECK(count() - before_many <= 8);
  CHECK(shipper->Stats().inflight == 0);

  // Held forgets complete (kNotShipped) when the shipper goes alone.
  shipper->Ship(Forget(4), &Waiter::Cb, &w);
  shipper->GoAlone("role change to alone");
  CHECK(w.total() == 205);
  CHECK(w.not_shipped() == 1);
}

TEST_CASE("alone shipper and GoAlone", "[grpc]") {
  ShipperOptions o = Opts("unused:1");
  std::unique_ptr<Shipper> alone = Shipper::CreateAlone(o);
  Waiter w;
  alone->Ship(Write(9, 4096 * 3, "abc"), &Waiter::Cb, &w);
  CHECK(w.not_shipped() == 1);  // inline
  CHECK(alone->dirty().IsZoneDirty(9, 3));
  CHECK(alone->Stats().alone);

  Secondary sec;
  REQUIRE(sec.Start().ok());
  std::unique_ptr<Shipper> shipper;
  REQUIRE(Shipper::Create(Opts(sec.addr()), &shipper).ok());
  Waiter w2;
  shipper->Ship(MakeFile(1, "f", 2), &Waiter::Cb, &w2);
  REQUIRE(w2.WaitTotal(1, 5000ms));
  shipper->GoAlone("role change to alone");
  shipper->Ship(Write(2, 0, "x"), &Waiter::Cb, &w2);
  CHECK(w2.not_shipped() == 1);
  CHECK(shipper->Stats().alone);
  CHECK(shipper->Stats().last_error == "role change to alone");
}

TEST_CASE("listen address already in use is reported clearly", "[grpc]") {
  Secondary a;
  REQUIRE(a.Start().ok());
  Secondary b;
  Status s = b.Start({}, a.port);
  CHECK(!s.ok());
  INFO(s.ToString());
  CHECK(s.message().find("address already in use") != std::string::npos);
  Secondary c;
  s = c.Start({}, 0);
  CHECK(s.ok());
}

namespace {
bool Sh(const std::string& cmd) { return system(("(" + cmd + ") >/dev/null 2>&1").c_str()) == 0; }

// CA, server cert for 127.0.0.1, client cert; plus a rogue CA and a client cert signed by it.
struct TestPki {
  std::string dir;
  TestPki() {
    char tmpl[] = "/tmp/hamirror-pki-XXXXXX";
    dir = mkdtemp(tmpl);
    const std::string d = dir;
    const std::string ec = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes ";
    auto ca = [&](const std::string& name) {
      return Sh("openssl req -x509" + ec + "-keyout " + d + "/" + name + ".key -out " + d + "/" + name +
                ".pem -days 2 -subj /CN=" + name);
    };
    auto leaf = [&](const std::string& name, const std::string& ca_name, const std::string& ext) {
      Sh("printf '" + ext + "\\n' > " + d + "/" + name + ".ext");
      return Sh("openssl req" + ec + "-keyout " + d + "/" + name + ".key -out " + d + "/" + name +
                ".csr -subj /CN=" + name) &&
             Sh("openssl x509 -req -in " + d + "/" + name + ".csr -CA " + d + "/" + ca_name + ".pem -CAkey " +
                d + "/" + ca_name + ".key -CAcreateserial -out " + d + "/" + name + ".pem -days 2 -extfile " +
                d + "/" + name + ".ext");
    };
    ok = ca("ca") && ca("rogue") && leaf("server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost") &&
         leaf("client", "ca", "subjectAltName=DNS:node1") &&
         leaf("evil", "rogue", "subjectAltName=DNS:node1");
  }
  ~TestPki() {
    std::error_code e;
    std::filesystem::remove_all(dir, e);
  }
  TlsOptions Opts(const std::string& who, const std::string& ca = "ca") const {
    TlsOptions t;
    t.cert = dir + "/" + who + ".pem";
    t.key = dir + "/" + who + ".key";
    t.ca = dir + "/" + ca + ".pem";
    return t;
  }
  bool ok = false;
};
}  // namespace

TEST_CASE("mutual TLS: a valid client works, others are refused", "[grpc][tls]") {
  TestPki pki;
  REQUIRE(pki.ok);
  Secondary sec;
  REQUIRE(sec.Start(pki.Opts("server")).ok());

  ShipperOptions good = Opts(sec.addr());
  good.tls = pki.Opts("client");
  std::unique_ptr<Shipper> shipper;
  REQUIRE(Shipper::Create(good, &shipper).ok());
  REQUIRE(shipper->Stats().connected);
  Waiter w;
  shipper->Ship(MakeFile(1, "tls", 2), &Waiter::Cb, &w);
  shipper->Ship(Write(2, 0, "secret"), &Waiter::Cb, &w);
  REQUIRE(w.WaitTotal(2, 5000ms));
  CHECK(w.acked() == 2);
  CHECK(ReadFile(sec.tree.Path("tls")) == "secret");
  shipper.reset();

  // Client certificate from another CA: the server refuses the handshake.
  ShipperOptions evil = Opts(sec.addr());
  evil.connect_timeout = 800ms;
  evil.tls = pki.Opts("evil", "ca");
  std::unique_ptr<Shipper> e;
  REQUIRE(Shipper::Create(evil, &e).ok());
  CHECK(e->Stats().alone);
  // Plaintext client to a TLS server.
  ShipperOptions plain = Opts(sec.addr());
  plain.connect_timeout = 800ms;
  plain.tls.insecure = true;
  REQUIRE(Shipper::Create(plain, &e).ok());
  CHECK(e->Stats().alone);
  // Server not trusted by the client (client trusts only the rogue CA).
  ShipperOptions distrust = Opts(sec.addr());
  distrust.connect_timeout = 800ms;
  distrust.tls = pki.Opts("client", "rogue");
  REQUIRE(Shipper::Create(distrust, &e).ok());
  CHECK(e->Stats().alone);
  CHECK(sec.server->Stats().streams_accepted == 1);
  CHECK(!std::filesystem::exists(sec.tree.Path("x")));
}

// Not run by default (hidden tag): `replicator_grpc_test "[bench]"` prints throughput and latency.
TEST_CASE("bench: stream throughput and round-trip latency", "[.][bench]") {
  Secondary sec;
  REQUIRE(sec.Start().ok());
  std::unique_ptr<Shipper> shipper;
  REQUIRE(Shipper::Create(Opts(sec.addr()), &shipper).ok());
  Waiter w;
  shipper->Ship(MakeFile(1, "big", 2), &Waiter::Cb, &w);
  REQUIRE(w.WaitTotal(1, 5000ms));
  // 1 MiB writes, pipelined.
  const std::string mib = Pattern(1 << 20, 1);
  const int kMiB = 512;
  auto t0 = Clock::now();
  for (int i = 0; i < kMiB; ++i) shipper->Ship(Write(2, uint64_t(i) << 20, mib), &Waiter::Cb, &w);
  REQUIRE(w.WaitTotal(1 + kMiB, 60000ms));
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  WARN("1 MiB writes: " << kMiB / secs << " MiB/s");
  // 4 KiB writes, pipelined.
  const std::string page = Pattern(4096, 2);
  const int kPages = 20000;
  t0 = Clock::now();
  for (int i = 0; i < kPages; ++i) shipper->Ship(Write(2, uint64_t(i) * 4096, page), &Waiter::Cb, &w);
  REQUIRE(w.WaitTotal(1 + kMiB + kPages, 60000ms));
  secs = std::chrono::duration<double>(Clock::now() - t0).count();
  WARN("4 KiB writes pipelined: " << kPages / secs << " ops/s, batches so far "
                                  << sec.server->Stats().batches_applied);
  // One at a time: 4 KiB write + dsync (as O_DSYNC), round-trip latency.
  std::vector<int64_t> lat;
  int total = 1 + kMiB + kPages;
  for (int i = 0; i < 500; ++i) {
    auto s = Clock::now();
    shipper->Ship(Write(2, uint64_t(i) * 4096, page, /*dsync=*/i % 2 == 1), &Waiter::Cb, &w);
    REQUIRE(w.WaitTotal(++total, 5000ms));
    lat.push_back(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - s).count());
  }
  std::vector<int64_t> plain, dsync;
  for (size_t i = 0; i < lat.size(); ++i) (i % 2 ? dsync : plain).push_back(lat[i]);
  std::sort(plain.begin(), plain.end());
  std::sort(dsync.begin(), dsync.end());
  WARN("4 KiB write round trip p50 " << plain[plain.size() / 2] << " us p99 "
                                     << plain[plain.size() * 99 / 100] << " us; with dsync p50 "
                                     << dsync[dsync.size() / 2] << " us p99 "
                                     << dsync[dsync.size() * 99 / 100] << " us");
}

namespace {
// Keeps what a callback was given, the ack message (ShipResult::reply) included.
struct Reply {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  ShipOutcome outcome = ShipOutcome::kNotShipped;
  int peer_errno = 0;
  bool had_reply = false;
  proto::Ack ack;
  static void Cb(void* ctx, const ShipResult& r) {
    auto* self = static_cast<Reply*>(ctx);
    std::lock_guard<std::mutex> lock(self->mu);
    self->outcome = r.outcome;
    self->peer_errno = r.peer_errno;
    if (r.reply != nullptr) {
      self->had_reply = true;
      self->ack = *r.reply;  // valid only during the callback
    }
    self->done = true;
    self->cv.notify_all();
  }
  bool Wait(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, timeout, [&] { return done; });
  }
};
}  // namespace

TEST_CASE("resync queries over the stream: BlockSums and ListDir answers reach the callback", "[grpc]") {
  Secondary sec;
  REQUIRE(sec.Start().ok());
  std::unique_ptr<Shipper> shipper;
  REQUIRE(Shipper::Create(Opts(sec.addr()), &shipper).ok());
  Waiter w;
  // Queries shipped right behind the ops they must see (no wait in between: same batches or the next).
  const std::string data = Pattern(300000, 5);
  shipper->Ship(ResyncMark(42, /*begin=*/true, false, data.size()), &Waiter::Cb, &w);
  shipper->Ship(MakeFile(1, "f", 2), &Waiter::Cb, &w);
  for (size_t off = 0; off < data.size(); off += 70000) {
    shipper->Ship(Write(2, off, data.substr(off, 70000)), &Waiter::Cb, &w);
  }
  shipper->Ship(MakeFile(1, "d", 3, 0750, proto::NODE_KIND_DIR), &Waiter::Cb, &w);
  proto::Op sl = MakeFile(3, "s", 4, 0777, proto::NODE_KIND_SYMLINK);
  sl.mutable_make_node()->set_symlink_target("../f");
  shipper->Ship(std::move(sl), &Waiter::Cb, &w);
  shipper->Ship(MakeFile(3, "x", 5, 0640), &Waiter::Cb, &w);
  Reply sums, sums_tail, root, dir, bad;
  shipper->Ship(BlockSums(2, 0, 1 << 20, 64 << 10), &Reply::Cb, &sums);
  shipper->Ship(BlockSums(2, 256 << 10, 1 << 20, 4096), &Reply::Cb, &sums_tail);
  shipper->Ship(ListDir(1), &Reply::Cb, &root);
  shipper->Ship(ListDir(3), &Reply::Cb, &dir);
  shipper->Ship(ListDir(2), &Reply::Cb, &bad);
  for (Reply* r : {&sums, &sums_tail, &root, &dir, &bad}) REQUIRE(r->Wait(10000ms));
  REQUIRE(w.WaitTotal(10, 10000ms));
  CHECK(w.acked() == 10);

  CHECK(sums.outcome == ShipOutcome::kAcked);
  REQUIRE(sums.had_reply);
  CHECK(sums.ack.file_size() == data.size());
  std::vector<uint64_t> got(sums.ack.sums().begin(), sums.ack.sums().end());
  CHECK(got.size() == 5);  // 4 blocks of 64 KiB and a short one
  CHECK(got == ExpectedSums(data, 0, 1 << 20, 64 << 10));
  REQUIRE(sums_tail.had_reply);
  got.assign(sums_tail.ack.sums().begin(), sums_tail.ack.sums().end());
  CHECK(got == ExpectedSums(data, 256 << 10, 1 << 20, 4096));

  REQUIRE(root.had_reply);
  REQUIRE(root.ack.entries_size() == 2);
  CHECK(root.ack.entries(0).name() == "d");
  CHECK(root.ack.entries(0).kind() == proto::NODE_KIND_DIR);
  CHECK(root.ack.entries(0).mode() == 0750);
  CHECK(root.ack.entries(1).name() == "f");
  CHECK(root.ack.entries(1).kind() == proto::NODE_KIND_FILE);
  CHECK(root.ack.entries(1).size() == data.size());
  REQUIRE(dir.had_reply);
  REQUIRE(dir.ack.entries_size() == 2);
  CHECK(dir.ack.entries(0).name() == "s");
  CHECK(dir.ack.entries(0).kind() == proto::NODE_KIND_SYMLINK);
  CHECK(dir.ack.entries(0).symlink_target() == "../f");
  CHECK(dir.ack.entries(1).name() == "x");
  CHECK(dir.ack.entries(1).mode() == 0640);
  // An error ack comes with its message too, without an answer.
  CHECK(bad.outcome == ShipOutcome::kPeerError);
  CHECK(bad.peer_errno == ENOTDIR);
  REQUIRE(bad.had_reply);
  CHECK(bad.ack.entries_size() == 0);
  // Queries mark nothing dirty; the resync state is visible in the server's stats.
  CHECK(shipper->dirty().Empty());
  ReplicationServerStats ss = sec.server->Stats();
  CHECK(ss.resync.phase == ResyncPhase::kRunning);
  CHECK(ss.resync.id == 42);
  CHECK(ss.resync.bytes_total == data.size());
  Reply end;
  shipper->Ship(ResyncMark(42, false, /*ok=*/true), &Reply::Cb, &end);
  REQUIRE(end.Wait(10000ms));
  CHECK(end.outcome == ShipOutcome::kAcked);
  CHECK(sec.server->Stats().resync.phase == ResyncPhase::kDone);

  // A resync running when the stream ends is interrupted.
  Reply begin;
  shipper->Ship(ResyncMark(43, true), &Reply::Cb, &begin);
  REQUIRE(begin.Wait(10000ms));
  shipper.reset();
  CHECK(Eventually([&] { return sec.server->Stats().resync.phase == ResyncPhase::kInterrupted; }, 5000ms));
  CHECK(sec.server->Stats().resync.id == 43);
}
