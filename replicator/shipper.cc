// Shipper implementation.
//
// Threads: the caller of Ship() checksums, assigns the seq and queues (never blocks unless the memory
// bound is reached). A small op shipped while nothing else is unacknowledged (a lone commit's write or
// fsync) is written by its caller, which saves waking the sender (a thread hand-off costs tens of µs
// of CPU on a VM); ops shipped while others are in flight queue and travel in batches. A sender thread
// (re)connects and writes batches of whatever is queued (large ops, so that their caller's local write
// overlaps the send, and what queued while a write was in flight); a reader thread per stream
// processes HelloReply and acks; a watchdog thread declares the peer lost. One write at a time
// (writing_), whoever does it.
// Queued ops stay in q_ (the resend buffer) until acknowledged; while one is being written its body is
// lent to the reusable batch message (Swap, no copy) and given back afterwards.
#include "replicator/shipper.h"

#include <grpcpp/grpcpp.h>
#include <pthread.h>
#include <xxhash.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "common/log.h"
#include "proto/replication.grpc.pb.h"
#include "replicator/replication_server.h"

namespace hamirror::replicator {

namespace {

using Clock = std::chrono::steady_clock;
using Stream = grpc::ClientReaderWriter<proto::OpBatch, proto::AckBatch>;

std::string NewSessionId() {
  std::random_device rd;
  std::mt19937_64 gen((static_cast<uint64_t>(rd()) << 32) ^ rd() ^
                      static_cast<uint64_t>(Clock::now().time_since_epoch().count()));
  char buf[40];
  snprintf(buf, sizeof buf, "%016llx%016llx", (unsigned long long)gen(), (unsigned long long)gen());
  return buf;
}

// Ship() writes a lone op itself (no hand-off to the sender) when it is at most this large; a larger
// op is written by the sender, so its caller's local write overlaps the copy and the send.
constexpr uint64_t kInlineWriteBytes = 64 << 10;

// Forgets change nothing the peer could lack and nobody waits for them, so they are held back and ride
// with the next op shipped instead of costing a message, an ack and a wake-up on both sides each (an
// unlink is followed by the Forget of its inode). Held at most this many, and at most one watchdog
// tick longer than kForgetDelay (the peer then drops the file's descriptor, which may hold the space
// of an unlinked file).
constexpr size_t kMaxHeldForgets = 64;
constexpr std::chrono::milliseconds kForgetDelay{50};

uint64_t PayloadBytes(const proto::Op& op) {
  switch (op.body_case()) {
    case proto::Op::kWrite: return op.write().data().size();
    case proto::Op::kSetxattr: return op.setxattr().value().size();
    default: return 0;
  }
}

struct Completion {
  ShipCallback cb;
  void* ctx;
  ShipResult result;
};

class ShipperImpl final : public Shipper {
 public:
  explicit ShipperImpl(const ShipperOptions& options)
      : options_(options), dirty_(options.zone_size), session_id_(NewSessionId()) {
    corrupt_left_ = options.test_corrupt_writes;
  }
  ~ShipperImpl() override;

  // Alone from the start.
  void InitAlone(const std::string& reason) {
    alone_ = true;
    last_error_ = reason;
  }
  // Connects within connect_timeout (alone if that fails) and starts the threads.
  void Init(std::shared_ptr<grpc::Channel> channel);

  void Ship(proto::Op&& op, ShipCallback callback, void* ctx) override;
  void GoAlone(const std::string& reason) override;
  ShipperStats Stats() const override;
  const DirtyZones& dirty() const override { return dirty_; }

 private:
  enum class Link { kDown, kHandshake, kUp };
  struct Entry {
    proto::Op op;
    ShipCallback cb;
    void* ctx;
    DirtyNote note;
    uint64_t bytes;
    Clock::time_point queued;
    bool done = false;
  };

  // With mu_ held: queues the held forgets (seqs before the next op's). Returns how many.
  size_t QueueHeldForgetsLocked();
  bool Connect(Clock::time_point deadline);
  void TearDownStream();
  void SenderLoop();
  // With mu_ held (in *lock), the link up, no write in flight and something queued: writes the next
  // batch (at most max_bytes of payload, at least one op), releasing mu_ during the write.
  void WriteBatchLocked(std::unique_lock<std::mutex>* lock, uint64_t max_bytes);
  void ReaderLoop(Stream* stream, uint64_t gen);
  void WatchdogLoop();
  // With mu_ held: mark the stream of generation gen broken (no-op if already replaced).
  void StreamBrokenLocked(uint64_t gen, const std::string& why);
  // With mu_ held: whether going alone for `reason` is allowed now (options_.may_go_alone); logs once
  // when it is held.
  bool MayGoAloneLocked(const std::string& reason);
  // With mu_ held: goes alone, moving every pending callback to *out.
  void GoAloneLocked(const std::string& reason, std::vector<Completion>* out);
  // With mu_ held: completes entry seq (if pending) with result.
  void CompleteLocked(uint64_t seq, const ShipResult& result, std::vector<Completion>* out);
  void PopDoneLocked();
  void Run(std::vector<Completion>* done);

  const ShipperOptions options_;
  DirtyZones dirty_;
  const std::string session_id_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<proto::Replication::Stub> stub_;

  mutable std::mutex mu_;
  std::condition_variable send_cv_;   // sender: work or link change
  std::condition_variable link_cv_;   // handshake result
  std::condition_variable space_cv_;  // Ship() waiting for memory
  std::condition_variable stop_cv_;   // watchdog sleep
  std::condition_variable idle_cv_;   // writing_ became false
  std::deque<Entry> q_;               // seqs [front_seq_, next_seq_)
  std::vector<Entry> held_forgets_;   // no seq yet (kMaxHeldForgets)
  Clock::time_point held_since_;      // when the first of them was held
  uint64_t front_seq_ = 1;
  uint64_t next_seq_ = 1;
  uint64_t send_seq_ = 1;  // next seq to write on the stream
  uint64_t inflight_bytes_ = 0;
  bool writing_ = false;  // a Write on stream_ is in progress (sender or a Ship() caller)
  bool alone_ = false;
  bool stopping_ = false;
  Link link_ = Link::kDown;
  Clock::time_point down_since_ = Clock::now();
  uint64_t stream_gen_ = 0;
  std::unique_ptr<grpc::ClientContext> ctx_;
  std::unique_ptr<Stream> stream_;
  bool stream_finished_ = false;  // Finish() already called (by the reader, on a refused handshake)
  bool holding_ = false;          // going alone is due but held (MayGoAloneLocked)
  std::thread reader_;
  std::thread sender_;
  std::thread watchdog_;

  uint64_t ops_acked_ = 0;
  uint64_t bytes_acked_ = 0;
  uint64_t reconnects_ = 0;
  uint64_t peer_errors_ = 0;
  std::string last_error_;

  // Used by the thread that set writing_.
  proto::OpBatch batch_;
  std::vector<uint64_t> lent_;
  int corrupt_left_ = 0;
};

ShipperImpl::~ShipperImpl() {
  GoAlone("shipper shut down");
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    if (ctx_) ctx_->TryCancel();
  }
  send_cv_.notify_all();
  link_cv_.notify_all();
  stop_cv_.notify_all();
  space_cv_.notify_all();
  if (sender_.joinable()) sender_.join();
  if (watchdog_.joinable()) watchdog_.join();
  TearDownStream();
}

void ShipperImpl::Init(std::shared_ptr<grpc::Channel> channel) {
  channel_ = std::move(channel);
  stub_ = proto::Replication::NewStub(channel_);
  if (!Connect(Clock::now() + options_.connect_timeout)) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      alone_ = true;
      last_error_ = "peer not reachable within connect_timeout: " + last_error_;
      HLOG_WARN("replication peer %s: %s; running alone", options_.peer.c_str(), last_error_.c_str());
    }
    TearDownStream();
    return;
  }
  sender_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "hm-sender");
    SenderLoop();
  });
  watchdog_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "hm-watchdog");
    WatchdogLoop();
  });
}

void ShipperImpl::TearDownStream() {
  std::unique_ptr<grpc::ClientContext> ctx;
  std::unique_ptr<Stream> stream;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (ctx_) ctx_->TryCancel();
    // A Ship() caller may still be inside Write() on this stream (it returns at once once cancelled).
    idle_cv_.wait(lock, [&] { return !writing_; });
  }
  // The reader may still touch ctx_/stream_: join it before destroying them.
  if (reader_.joinable()) reader_.join();
  bool finished;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ctx = std::move(ctx_);
    stream = std::move(stream_);
    finished = stream_finished_;
    stream_finished_ = false;
  }
  if (stream && !finished) stream->Finish();  // returns at once after TryCancel; releases the call
}

bool ShipperImpl::Connect(Clock::time_point deadline) {
  auto backoff = std::chrono::milliseconds(20);
  for (int attempt = 0; attempt < 100000; ++attempt) {
    TearDownStream();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (alone_ || stopping_) return false;
    }
    const auto now = Clock::now();
    if (now >= deadline) return false;
    // Short slices so GoAlone()/shutdown are noticed quickly.
    const auto slice = std::min<Clock::duration>(deadline - now, std::chrono::milliseconds(200));
    if (!channel_->WaitForConnected(std::chrono::system_clock::now() + slice)) {
      std::lock_guard<std::mutex> lock(mu_);
      last_error_ = "cannot connect to " + options_.peer;
      continue;
    }
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_wait_for_ready(false);
    auto stream = stub_->Stream(ctx.get());
    proto::OpBatch hello_batch;
    proto::Hello* hello = hello_batch.mutable_hello();
    hello->set_protocol_version(kProtocolVersion);
    hello->set_session_id(session_id_);
    hello->set_node_name(options_.node_name);
    const bool wrote = stream->Write(hello_batch);
    uint64_t gen;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ctx_ = std::move(ctx);
      stream_ = std::move(stream);
      gen = ++stream_gen_;
      link_ = Link::kHandshake;
      if (alone_ || stopping_) ctx_->TryCancel();
    }
    reader_ = std::thread([this, s = stream_.get(), gen] {
      pthread_setname_np(pthread_self(), "hm-acks");
      ReaderLoop(s, gen);
    });
    if (wrote) {
      std::unique_lock<std::mutex> lock(mu_);
      link_cv_.wait_until(lock, deadline, [&] { return link_ != Link::kHandshake || alone_ || stopping_; });
      if (link_ == Link::kUp && gen == stream_gen_) return true;
      if (link_ == Link::kHandshake) last_error_ = "no HelloReply from " + options_.peer;
    }
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (alone_ || stopping_) return false;
      // Back off a little: the peer may be refusing us while it notices our previous stream is gone.
      stop_cv_.wait_for(lock, backoff);
    }
    backoff = std::min(backoff * 2, std::chrono::milliseconds(500));
  }
  return false;
}

void ShipperImpl::Ship(proto::Op&& op, ShipCallback callback, void* ctx) {
  // Checksums outside any lock: callers checksum in parallel.
  if (op.body_case() == proto::Op::kWrite) {
    const std::string& d = op.write().data();
    op.mutable_write()->set_checksum(XXH3_64bits(d.data(), d.size()));
  } else if (op.body_case() == proto::Op::kSetxattr) {
    const std::string& v = op.setxattr().value();
    op.mutable_setxattr()->set_checksum(XXH3_64bits(v.data(), v.size()));
  }
  const DirtyNote note = DirtyZones::Describe(op);
  const uint64_t bytes = PayloadBytes(op);
  {
    std::unique_lock<std::mutex> lock(mu_);
    // Bounded wait: the watchdog declares the peer lost within send_timeout of the oldest op.
    space_cv_.wait(lock, [&] {
      return alone_ || stopping_ || inflight_bytes_ == 0 ||
             inflight_bytes_ + bytes <= options_.max_inflight_bytes;
    });
    if (!alone_ && !stopping_ && op.body_case() == proto::Op::kForget &&
        held_forgets_.size() + 1 < kMaxHeldForgets) {
      if (held_forgets_.empty()) held_since_ = Clock::now();
      Entry& e = held_forgets_.emplace_back();
      e.op.Swap(&op);
      e.cb = callback;
      e.ctx = ctx;
      return;
    }
    if (!alone_ && !stopping_) {
      const size_t held = QueueHeldForgetsLocked();
      op.set_seq(next_seq_++);
      Entry& e = q_.emplace_back();
      e.op.Swap(&op);
      e.cb = callback;
      e.ctx = ctx;
      e.note = note;
      e.bytes = bytes;
      e.queued = Clock::now();
      inflight_bytes_ += bytes;
      if (link_ == Link::kUp && !writing_ && q_.size() == held + 1 && bytes <= kInlineWriteBytes) {
        WriteBatchLocked(&lock, kInlineWriteBytes);
        return;
      }
      lock.unlock();
      send_cv_.notify_one();
      return;
    }
  }
  dirty_.Record(note);
  callback(ctx, ShipResult{ShipOutcome::kNotShipped, 0});
}

size_t ShipperImpl::QueueHeldForgetsLocked() {
  const size_t n = held_forgets_.size();
  const auto now = Clock::now();
  for (Entry& held : held_forgets_) {
    held.op.set_seq(next_seq_++);
    Entry& e = q_.emplace_back();
    e.op.Swap(&held.op);
    e.cb = held.cb;
    e.ctx = held.ctx;
    e.bytes = 0;
    e.queued = now;
  }
  held_forgets_.clear();
  return n;
}

void ShipperImpl::SenderLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!alone_ && !stopping_) {
    if (link_ != Link::kUp) {
      const auto deadline = down_since_ + options_.send_timeout;
      lock.unlock();
      const bool ok = Connect(deadline);
      lock.lock();
      if (!ok && !alone_ && !stopping_) {
        const std::string reason = "peer lost: could not reconnect within send_timeout (" + last_error_ + ")";
        if (!MayGoAloneLocked(reason)) {
          // Held: keep trying the peer, a slice at a time (Connect gives up at once past its deadline).
          down_since_ = Clock::now() - options_.send_timeout + std::chrono::milliseconds(500);
          continue;
        }
        std::vector<Completion> done;
        GoAloneLocked(reason, &done);
        lock.unlock();
        Run(&done);
        lock.lock();
      }
      continue;
    }
    send_cv_.wait(lock, [&] {
      return alone_ || stopping_ || link_ != Link::kUp || (send_seq_ < next_seq_ && !writing_);
    });
    if (alone_ || stopping_ || link_ != Link::kUp) continue;
    WriteBatchLocked(&lock, options_.max_batch_bytes);
  }
}

void ShipperImpl::WriteBatchLocked(std::unique_lock<std::mutex>* lock, uint64_t max_bytes) {
  writing_ = true;
  // Whatever is queued now, up to the bounds: no added delay at low load, big batches under load.
  batch_.clear_hello();
  batch_.mutable_ops()->Clear();  // keeps the Op objects for reuse
  lent_.clear();
  uint64_t bytes = 0;
  while (send_seq_ < next_seq_ && static_cast<size_t>(batch_.ops_size()) < options_.max_batch_ops &&
         (bytes == 0 || bytes < max_bytes)) {
    Entry& e = q_[send_seq_ - front_seq_];
    batch_.add_ops()->Swap(&e.op);
    lent_.push_back(send_seq_);
    bytes += e.bytes + 64;
    ++send_seq_;
  }
  Stream* stream = stream_.get();
  const uint64_t gen = stream_gen_;
  lock->unlock();

  char* flipped = nullptr;
  if (corrupt_left_ > 0) {
    for (proto::Op& op : *batch_.mutable_ops()) {
      if (op.body_case() == proto::Op::kWrite && !op.write().data().empty()) {
        flipped = &(*op.mutable_write()->mutable_data())[0];
        *flipped ^= 0x5a;
        --corrupt_left_;
        break;
      }
    }
  }
  const bool ok = stream->Write(batch_);
  if (flipped != nullptr) *flipped ^= 0x5a;

  lock->lock();
  for (size_t i = 0; i < lent_.size(); ++i) {
    const uint64_t seq = lent_[i];
    if (seq >= front_seq_ && seq < next_seq_) q_[seq - front_seq_].op.Swap(batch_.mutable_ops(i));
  }
  writing_ = false;
  idle_cv_.notify_all();
  if (!ok) StreamBrokenLocked(gen, "write to " + options_.peer + " failed");
  if (send_seq_ < next_seq_) send_cv_.notify_one();  // queued meanwhile: the sender goes on
}

void ShipperImpl::ReaderLoop(Stream* stream, uint64_t gen) {
  proto::AckBatch reply;
  std::vector<Completion> done;
  std::string why = "stream from " + options_.peer + " ended";
  while (stream->Read(&reply)) {
    std::unique_lock<std::mutex> lock(mu_);
    if (gen != stream_gen_ || alone_) break;
    if (reply.has_hello()) {
      const proto::HelloReply& h = reply.hello();
      const uint64_t at = h.applied_through();
      if (link_ != Link::kHandshake) {
        why = "unexpected HelloReply";
        break;
      }
      if (h.protocol_version() != kProtocolVersion) {
        GoAloneLocked("peer speaks protocol " + std::to_string(h.protocol_version()) + ", we speak " +
                          std::to_string(kProtocolVersion),
                      &done);
        break;
      }
      if (at >= next_seq_ || at + 1 < front_seq_) {
        // The peer lost what it had acknowledged (restarted) or claims ops we never sent: the
        // resend buffer cannot repair this, a resync must.
        GoAloneLocked("peer session state does not match (applied_through " + std::to_string(at) +
                          ", expected " + std::to_string(front_seq_ - 1) + ".." +
                          std::to_string(next_seq_ - 1) + "): resync needed",
                      &done);
        break;
      }
      // Everything up to applied_through is applied (and durable where asked) over there; errors
      // whose ack was lost in the break come back in recent_errors.
      for (const proto::Ack& e : h.recent_errors()) {
        if (e.seq() <= at && e.error() != 0)
          CompleteLocked(e.seq(), {ShipOutcome::kPeerError, e.error()}, &done);
      }
      for (uint64_t seq = front_seq_; seq <= at; ++seq) CompleteLocked(seq, {ShipOutcome::kAcked, 0}, &done);
      send_seq_ = at + 1;
      link_ = Link::kUp;
      if (holding_) HLOG_INFO("the peer answers again: the held writes go on");
      holding_ = false;
      if (stream_gen_ > 1) ++reconnects_;
      HLOG_INFO("replication stream to %s (%s) up, session %s, resending after seq %llu",
                options_.peer.c_str(), h.node_name().c_str(), session_id_.c_str(), (unsigned long long)at);
      link_cv_.notify_all();
      send_cv_.notify_one();
    } else if (link_ != Link::kUp) {
      why = "acks before HelloReply";
      break;
    }
    bool bad = false;
    // The completions point into `reply` (ShipResult::reply): it is read into again only after Run()
    // below, or after the loop's Run() on a break.
    for (const proto::Ack& ack : reply.acks()) {
      if (ack.seq() >= send_seq_) {
        bad = true;
        break;
      }
      if (ack.error() != 0) {
        CompleteLocked(ack.seq(), {ShipOutcome::kPeerError, ack.error(), &ack}, &done);
      } else {
        CompleteLocked(ack.seq(), {ShipOutcome::kAcked, 0, &ack}, &done);
      }
    }
    PopDoneLocked();
    if (bad) {
      why = "peer acknowledged an op never sent";
      break;
    }
    lock.unlock();
    Run(&done);
  }
  std::unique_lock<std::mutex> lock(mu_);
  if (gen == stream_gen_ && link_ == Link::kHandshake) {
    // Refused before HelloReply: nobody writes now, so the server's reason can be fetched.
    stream_finished_ = true;
    lock.unlock();
    grpc::Status st = stream->Finish();
    lock.lock();
    if (!st.ok()) why = "peer refused the stream: " + st.error_message();
  }
  StreamBrokenLocked(gen, why);
  lock.unlock();
  Run(&done);  // before `reply` goes away
}

void ShipperImpl::CompleteLocked(uint64_t seq, const ShipResult& result, std::vector<Completion>* out) {
  if (seq < front_seq_ || seq >= next_seq_) return;
  Entry& e = q_[seq - front_seq_];
  if (e.done) return;
  e.done = true;
  if (result.outcome == ShipOutcome::kPeerError && e.op.has_bind()) {
    // A handle the peer cannot bind (the entry is not there: a new session re-binding names the
    // peer lacks, before a resync makes them). Nothing changed; what later names the handle fails
    // and is counted then.
    HLOG_DEBUG("peer could not bind rid %llu: %s", (unsigned long long)e.op.bind().rid(),
               strerror(result.peer_errno));
  } else if (result.outcome == ShipOutcome::kPeerError) {
    if (peer_errors_ < 20 || peer_errors_ % 1000 == 0) {
      const bool marks = e.note.rid != 0 || e.note.namespace_change || e.note.meta_count > 0;
      HLOG_WARN("peer could not apply op seq %llu (rid %llu): %s%s", (unsigned long long)seq,
                (unsigned long long)e.note.rid, strerror(result.peer_errno), marks ? "; recorded dirty" : "");
    }
    ++peer_errors_;
    dirty_.Record(e.note);  // the peer's copy of this range is now unknown
  } else {
    ++ops_acked_;
    bytes_acked_ += e.bytes;
  }
  out->push_back({e.cb, e.ctx, result});
}

void ShipperImpl::PopDoneLocked() {
  bool freed = false;
  while (!q_.empty() && q_.front().done) {
    inflight_bytes_ -= q_.front().bytes;
    q_.pop_front();
    ++front_seq_;
    freed = true;
  }
  if (freed) space_cv_.notify_all();
}

void ShipperImpl::StreamBrokenLocked(uint64_t gen, const std::string& why) {
  if (gen != stream_gen_ || link_ == Link::kDown) return;
  if (link_ == Link::kUp) {
    down_since_ = Clock::now();
    HLOG_WARN("replication stream to %s broken: %s; reconnecting", options_.peer.c_str(), why.c_str());
  }
  last_error_ = why;
  link_ = Link::kDown;
  if (ctx_) ctx_->TryCancel();
  send_cv_.notify_all();
  link_cv_.notify_all();
}

void ShipperImpl::GoAloneLocked(const std::string& reason, std::vector<Completion>* out) {
  if (alone_) return;
  alone_ = true;
  last_error_ = reason;
  HLOG_WARN("replication to %s stopped, going alone: %s (%zu pending ops recorded dirty)",
            options_.peer.c_str(), reason.c_str(), q_.size());
  for (Entry& e : q_) {
    if (e.done) continue;
    dirty_.Record(e.note);
    out->push_back({e.cb, e.ctx, {ShipOutcome::kNotShipped, 0}});
  }
  for (Entry& e : held_forgets_) out->push_back({e.cb, e.ctx, {ShipOutcome::kNotShipped, 0}});
  held_forgets_.clear();
  q_.clear();
  front_seq_ = send_seq_ = next_seq_;
  inflight_bytes_ = 0;
  link_ = Link::kDown;
  if (ctx_) ctx_->TryCancel();
  send_cv_.notify_all();
  link_cv_.notify_all();
  space_cv_.notify_all();
  stop_cv_.notify_all();
}

void ShipperImpl::GoAlone(const std::string& reason) {
  std::vector<Completion> done;
  {
    std::lock_guard<std::mutex> lock(mu_);
    GoAloneLocked(reason, &done);
  }
  Run(&done);
}

void ShipperImpl::Run(std::vector<Completion>* done) {
  for (const Completion& c : *done) c.cb(c.ctx, c.result);
  done->clear();
}

void ShipperImpl::WatchdogLoop() {
  const auto tick = std::clamp<std::chrono::milliseconds>(
      options_.send_timeout / 20, std::chrono::milliseconds(2), std::chrono::milliseconds(100));
  std::unique_lock<std::mutex> lock(mu_);
  while (!alone_ && !stopping_) {
    stop_cv_.wait_for(lock, tick);
    if (alone_ || stopping_) break;
    const auto now = Clock::now();
    std::string reason;
    if (!q_.empty() && now - q_.front().queued >= options_.send_timeout) {
      reason = "peer did not acknowledge within send_timeout (" +
               std::to_string(options_.send_timeout.count()) + " ms)";
    } else if (link_ != Link::kUp && now - down_since_ >= options_.send_timeout) {
      reason = "stream down for send_timeout (" + last_error_ + ")";
    }
    if (reason.empty() && !held_forgets_.empty() && now - held_since_ >= kForgetDelay) {
      QueueHeldForgetsLocked();
      send_cv_.notify_one();
    }
    if (!reason.empty() && !MayGoAloneLocked(reason)) continue;
    if (!reason.empty()) {
      std::vector<Completion> done;
      GoAloneLocked(reason, &done);
      lock.unlock();
      Run(&done);
      lock.lock();
    }
  }
}

bool ShipperImpl::MayGoAloneLocked(const std::string& reason) {
  if (!options_.may_go_alone || options_.may_go_alone()) {
    holding_ = false;
    return true;
  }
  if (!holding_) {
    holding_ = true;
    HLOG_WARN(
        "%s, but no manager heard lately: holding the writes instead of going alone (nobody would "
        "fence them) until a manager is heard or the peer answers again",
        reason.c_str());
  }
  return false;
}

ShipperStats ShipperImpl::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  ShipperStats s;
  s.connected = link_ == Link::kUp && !alone_;
  s.alone = alone_;
  s.ops_acked = ops_acked_;
  s.bytes_acked = bytes_acked_;
  s.inflight = q_.size();
  if (!q_.empty()) {
    s.lag_us =
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - q_.front().queued).count();
  }
  s.reconnects = reconnects_;
  s.peer_errors = peer_errors_;
  s.last_error = last_error_;
  return s;
}

}  // namespace

Status Shipper::Create(const ShipperOptions& options, std::unique_ptr<Shipper>* out) {
  std::string host;
  int port = 0;
  Status s = SplitHostPort(options.peer, &host, &port);
  if (!s.ok()) return s;
  if (port == 0) return Status::InvalidArgument("peer address " + options.peer + ": port 0");
  if (options.max_batch_ops == 0 || options.max_batch_bytes == 0) {
    return Status::InvalidArgument("max_batch_ops and max_batch_bytes must be > 0");
  }
  if (options.send_timeout.count() <= 0) return Status::InvalidArgument("send_timeout must be > 0");
  grpc::ChannelArguments args;
  std::shared_ptr<grpc::ChannelCredentials> creds;
  s = MakeChannelCredentials(options.tls, options.peer, &creds, &args);
  if (!s.ok()) return s;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 500);
  // Keepalive: notice a dead peer on an idle stream (the watchdog covers a busy one).
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 2000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
              static_cast<int>(std::clamp<int64_t>(options.send_timeout.count(), 500, 10000)));
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  args.SetMaxSendMessageSize(-1);
  args.SetMaxReceiveMessageSize(-1);
  // A private subchannel: a second Shipper (a later session) never shares a broken connection.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto shipper = std::make_unique<ShipperImpl>(options);
  shipper->Init(grpc::CreateCustomChannel(options.peer, creds, args));
  *out = std::move(shipper);
  return Status::Ok();
}

std::unique_ptr<Shipper> Shipper::CreateAlone(const ShipperOptions& options) {
  auto shipper = std::make_unique<ShipperImpl>(options);
  shipper->InitAlone("alone: no peer");
  return shipper;
}

}  // namespace hamirror::replicator
