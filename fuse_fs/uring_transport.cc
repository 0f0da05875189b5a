#include "fuse_fs/uring_transport.h"

#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>

#include "common/log.h"
#include "common/unique_fd.h"
#include "fuse_fs/uring_abi.h"
#include "fuse_fs/uring_request.h"

namespace hamirror::fs {

namespace {

thread_local bool t_handling_ring_request = false;
// On a queue's thread: its queue; while libfuse handles a ring request there: that request's entry.
thread_local UringQueue* t_queue = nullptr;
thread_local RingEntry* t_entry = nullptr;

// user_data of the eventfd read that wakes a queue's thread; entries use their address, and their
// address with kFlushBit for the local flush submitted on behalf of their request (SubmitRingFlush).
constexpr uint64_t kWakeTag = 1;
constexpr uint64_t kFlushBit = 1;
// The payload buffer starts one page into an entry's mapping; the header buffer is at its start and
// the rebuild headroom right before the payload.
constexpr size_t kPayloadOffset = 4096;
static_assert(sizeof(uring_abi::ReqHeader) + kRingHeadroom <= kPayloadOffset);
// A queue asks again this often while the kernel answers EAGAIN (INIT not processed yet).
constexpr int kRegisterRetries = 200;

}  // namespace

bool HandlingRingRequest() { return t_handling_ring_request; }

bool ParseTransport(const std::string& name, Transport* out) {
  if (name == "dev")
    *out = Transport::kDev;
  else if (name == "uring")
    *out = Transport::kUring;
  else if (name == "auto")
    *out = Transport::kAuto;
  else
    return false;
  return true;
}

KernelUring KernelUringSwitch(const std::string& param_path) {
  std::ifstream in(param_path);
  std::string v;
  if (!(in >> v)) return KernelUring::kAbsent;
  return v == "Y" || v == "1" ? KernelUring::kOn : KernelUring::kOff;
}

unsigned PossibleCpus(const std::string& path) {
  // A list like "0-3,6": the kernel's num_possible_cpus() is the number of CPUs it names.
  std::ifstream in(path);
  std::string list;
  if (!(in >> list)) return 0;
  unsigned count = 0;
  std::stringstream ss(list);
  std::string range;
  while (std::getline(ss, range, ',')) {
    unsigned lo = 0, hi = 0;
    const size_t dash = range.find('-');
    try {
      lo = static_cast<unsigned>(std::stoul(range.substr(0, dash)));
      hi = dash == std::string::npos ? lo : static_cast<unsigned>(std::stoul(range.substr(dash + 1)));
    } catch (...) {
      return 0;
    }
    if (hi < lo || hi - lo > 65535) return 0;
    count += hi - lo + 1;
  }
  return count;
}

// One registered entry: its header buffer, its payload buffer (with the rebuild headroom before it),
// and what its request is doing.
struct RingEntry {
  enum class State {
    kKernel,    // registered or committed: the kernel owns it until it completes with a request
    kHandling,  // the queue thread is in libfuse with its request
    kWaiting,   // libfuse returned; the reply comes later (from another thread)
    kReplied,   // the reply is in the buffers, to be committed by the queue thread
  };
  UringQueue* queue = nullptr;
  char* mapping = nullptr;
  size_t mapping_size = 0;
  uring_abi::ReqHeader* hdr = nullptr;
  char* payload = nullptr;
  size_t payload_capacity = 0;
  struct iovec iov[2];
  // Guarded by the queue's mutex.
  State state = State::kKernel;
  bool request_has_payload = false;
  // A reply that arrived while the request was still being handled and whose request has payload
  // bytes (names, data) the handler may still read: kept here, copied in when the handler returned.
  std::vector<char> staged;
  bool reply_staged = false;
  int register_tries = 0;
  bool live = false;  // the kernel delivered a request into it at least once (registration worked)
  // The queue thread's own: the local flush submitted for its request, run when it completes.
  RingFlushDone flush_done = nullptr;
  void* flush_arg = nullptr;
};
static_assert(alignof(RingEntry) > kFlushBit);

struct UringQueue {
  UringTransport* owner = nullptr;
  uint16_t qid = 0;
  io_uring ring{};
  bool ring_ready = false;
  UniqueFd wake_fd;
  uint64_t wake_value = 0;
  std::vector<RingEntry> entries;
  std::mutex mu;
  std::vector<RingEntry*> to_commit;  // guarded by mu: replies ready, registrations to retry
  std::vector<RingEntry*> to_register;
  // The queue thread's own: what it took from the two lists above (swapped, so no allocation per turn).
  std::vector<RingEntry*> committing, registering;
  unsigned flushes_in_flight = 0;  // the queue thread's own
  std::thread thread;
};

Status UringTransport::Create(fuse_session* se, unsigned queues, unsigned entries, size_t payload_size,
                              bool required, std::unique_ptr<UringTransport>* out) {
  if (queues == 0 || queues > 4096) return Status::InvalidArgument("bad number of ring queues");
  if (entries == 0 || entries > 256) return Status::InvalidArgument("bad number of ring entries");
  payload_size = std::max(payload_size, uring_abi::kMinReadBuffer);
  std::unique_ptr<UringTransport> t(new UringTransport(se, required));
  for (unsigned qid = 0; qid < queues; ++qid) {
    auto q = std::make_unique<UringQueue>();
    q->owner = t.get();
    q->qid = static_cast<uint16_t>(qid);
    io_uring_params params{};
    params.flags = IORING_SETUP_SQE128;
    // Entries, a flush per entry, the wake-up read, and as much room again for completions.
    if (int rc = io_uring_queue_init_params(2 * entries + 2, &q->ring, &params); rc < 0)
      return Status::FromErrno("io_uring_queue_init (FUSE over io_uring)", -rc);
    q->ring_ready = true;
    q->wake_fd.Reset(eventfd(0, EFD_CLOEXEC));
    if (!q->wake_fd.valid()) return Status::FromErrno("eventfd", errno);
    q->entries.resize(entries);
    for (RingEntry& e : q->entries) {
      e.queue = q.get();
      e.mapping_size = kPayloadOffset + payload_size;
      void* m = mmap(nullptr, e.mapping_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (m == MAP_FAILED) return Status::FromErrno("mmap ring entry buffers", errno);
      e.mapping = static_cast<char*>(m);
      e.hdr = reinterpret_cast<uring_abi::ReqHeader*>(e.mapping);
      e.payload = e.mapping + kPayloadOffset;
      e.payload_capacity = payload_size;
      e.iov[0] = {e.hdr, sizeof(uring_abi::ReqHeader)};
      e.iov[1] = {e.payload, payload_size};
    }
    t->queues_.push_back(std::move(q));
  }
  for (auto& q : t->queues_) {
    UringQueue* qp = q.get();
    UringTransport* tp = t.get();
    q->thread = std::thread([tp, qp] { tp->RunQueue(*qp); });
  }
  *out = std::move(t);
  return Status::Ok();
}

UringTransport::UringTransport(fuse_session* se, bool required) : se_(se), required_(required) {}

UringTransport::~UringTransport() {
  Stop();
  for (auto& q : queues_) {
    if (q->ring_ready) io_uring_queue_exit(&q->ring);
    for (RingEntry& e : q->entries)
      if (e.mapping != nullptr) munmap(e.mapping, e.mapping_size);
  }
}

void UringTransport::Fail(const std::string& why) {
  HLOG_ERROR("FUSE over io_uring: %s", why.c_str());
  if (failed_.exchange(true)) return;
  if (required_) {
    // The loop notices the exit flag only when a worker wakes up: the stop signal wakes one.
    HLOG_ERROR("--transport uring: ending the session (the ring was required)");
    fuse_session_exit(se_);
    kill(getpid(), SIGTERM);
  }
}

void UringTransport::OnInitReplied(uint64_t granted) {
  if (!(granted & uring_abi::kInitOverIoUring)) {
    if (required_)
      Fail("the kernel did not offer FUSE_OVER_IO_URING in INIT (is fuse.enable_uring on? kernel 6.14+?)");
    else
      HLOG_INFO("transport: /dev/fuse (the kernel did not offer FUSE over io_uring)");
    return;
  }
  {
    std::lock_guard<std::mutex> lock(start_mu_);
    if (started_) return;
    started_ = true;
    active_.store(true, std::memory_order_release);
  }
  start_cv_.notify_all();
  HLOG_INFO("transport: FUSE over io_uring (%zu queues x %zu entries)", queues_.size(),
            queues_.empty() ? size_t{0} : queues_[0]->entries.size());
}

void UringTransport::Stop() {
  {
    std::lock_guard<std::mutex> lock(start_mu_);
    if (stopping_) return;
    stopping_ = true;
    started_ = true;
  }
  StopAccepting();
  start_cv_.notify_all();
  for (auto& q : queues_) {
    const uint64_t one = 1;
    if (write(q->wake_fd.get(), &one, sizeof(one)) < 0) HLOG_WARN("eventfd write: %s", strerror(errno));
  }
  for (auto& q : queues_)
    if (q->thread.joinable()) q->thread.join();
  if (active())
    HLOG_INFO("FUSE over io_uring: %llu requests served on the ring, %llu local flushes run by it",
              static_cast<unsigned long long>(requests_served()),
              static_cast<unsigned long long>(flushes_on_ring()));
}

namespace {

// An IORING_OP_URING_CMD for the FUSE device in a 128-byte SQE.
void PrepFuseCmd(io_uring* ring, int dev_fd, uint32_t cmd_op, const uring_abi::CmdReq& req,
                 const struct iovec* iov, uint64_t user_data) {
  io_uring_sqe* sqe = io_uring_get_sqe(ring);
  if (sqe == nullptr) {  // not expected (room for every entry): make room
    io_uring_submit(ring);
    sqe = io_uring_get_sqe(ring);
    if (sqe == nullptr) {
      HLOG_ERROR("FUSE over io_uring: no submission slot; entry dropped");
      return;
    }
  }
  memset(sqe, 0, 128);
  sqe->opcode = IORING_OP_URING_CMD;
  sqe->fd = dev_fd;
  sqe->cmd_op = cmd_op;
  if (iov != nullptr) {
    sqe->addr = reinterpret_cast<uint64_t>(iov);
    sqe->len = 2;
  }
  sqe->user_data = user_data;
  static_assert(sizeof(uring_abi::CmdReq) <= 80);
  memcpy(sqe->cmd, &req, sizeof(req));
}

// A read of the queue's eventfd: it completes when another thread hands the queue work.
void ArmWake(UringQueue& q) {
  io_uring_sqe* sqe = io_uring_get_sqe(&q.ring);
  if (sqe == nullptr) return;  // cannot happen: the ring has room for every entry and this read
  io_uring_prep_read(sqe, q.wake_fd.get(), &q.wake_value, sizeof(q.wake_value), 0);
  io_uring_sqe_set_data64(sqe, kWakeTag);
}

}  // namespace

void UringTransport::RunQueue(UringQueue& q) {
  {
    std::unique_lock<std::mutex> lock(start_mu_);
    start_cv_.wait(lock, [this] { return started_; });
    if (stopping_) return;
  }
  t_queue = &q;
  // Requests land on the queue of the CPU the caller runs on: the queue's thread runs there too.
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  CPU_SET(q.qid, &cpus);
  pthread_setaffinity_np(pthread_self(), sizeof(cpus), &cpus);  // best effort (CPU may be offline)
  const int dev_fd = fuse_session_fd(se_);
  for (RingEntry& e : q.entries) {
    uring_abi::CmdReq req{};
    req.qid = q.qid;
    PrepFuseCmd(&q.ring, dev_fd, uring_abi::kCmdRegister, req, e.iov, reinterpret_cast<uint64_t>(&e));
  }
  ArmWake(q);
  bool stop = false;
  // Flushes submitted for requests still complete after a stop: their replies are committed first.
  while (!stop || q.flushes_in_flight > 0) {
    if (int rc = io_uring_submit_and_wait(&q.ring, 1); rc < 0 && rc != -EINTR) {
      Fail("queue " + std::to_string(q.qid) + ": io_uring_submit_and_wait: " + strerror(-rc));
      break;
    }
    // Completions are copied out first: handling one may take long (libfuse runs the handler here).
    struct Done {
      uint64_t user_data;
      int res;
    };
    Done done[64];
    unsigned n = 0, head;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(&q.ring, head, cqe) {
      if (n == 64) break;
      done[n++] = {cqe->user_data, cqe->res};
    }
    io_uring_cq_advance(&q.ring, n);
    for (unsigned i = 0; i < n; ++i) {
      if (done[i].user_data == kWakeTag) {
        std::lock_guard<std::mutex> lock(start_mu_);
        stop = stopping_;
        if (!stop) ArmWake(q);
        continue;
      }
      if (done[i].user_data & kFlushBit) {
        FlushCompleted(q, *reinterpret_cast<RingEntry*>(done[i].user_data & ~kFlushBit), done[i].res);
        continue;
      }
      HandleCompletion(q, done[i].user_data, done[i].res);
    }
    // Replies made ready here or by other threads, and registrations to retry, go out now.
    std::vector<RingEntry*>& commits = q.committing;
    std::vector<RingEntry*>& registers = q.registering;
    commits.clear();
    registers.clear();
    {
      std::lock_guard<std::mutex> lock(q.mu);
      commits.swap(q.to_commit);
      registers.swap(q.to_register);
      for (RingEntry* e : commits) e->state = RingEntry::State::kKernel;
    }
    for (RingEntry* e : commits) {
      uring_abi::CmdReq req{};
      req.qid = q.qid;
      req.commit_id = e->hdr->ent_in_out.commit_id;
      PrepFuseCmd(&q.ring, dev_fd, uring_abi::kCmdCommitAndFetch, req, nullptr,
                  reinterpret_cast<uint64_t>(e));
    }
    if (!registers.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    for (RingEntry* e : registers) {
      uring_abi::CmdReq req{};
      req.qid = q.qid;
      PrepFuseCmd(&q.ring, dev_fd, uring_abi::kCmdRegister, req, e->iov, reinterpret_cast<uint64_t>(e));
    }
  }
  io_uring_submit(&q.ring);  // the last commits
}

void UringTransport::HandleCompletion(UringQueue& q, uint64_t user_data, int res) {
  RingEntry& e = *reinterpret_cast<RingEntry*>(user_data);
  if (res < 0) {
    // EAGAIN: the kernel has not processed the INIT reply yet (registration raced it).
    if (res == -EAGAIN && ++e.register_tries < kRegisterRetries) {
      std::lock_guard<std::mutex> lock(q.mu);
      q.to_register.push_back(&e);
      return;
    }
    // At unmount or abort, entries end with ENOTCONN / ECANCELED: nothing to report then.
    if (res == -ENOTCONN || res == -ECANCELED || !accepting_.load(std::memory_order_acquire)) return;
    if (!e.live) {
      Fail("queue " + std::to_string(q.qid) + ": the kernel refused to register an entry: " + strerror(-res));
      return;
    }
    // A commit the kernel refused (its request was ended meanwhile): the entry is given back anew.
    HLOG_WARN("FUSE over io_uring: queue %u: commit refused (%s); entry registered again", q.qid,
              strerror(-res));
    if (++e.register_tries < kRegisterRetries) {
      std::lock_guard<std::mutex> lock(q.mu);
      q.to_register.push_back(&e);
    }
    return;
  }
  e.live = true;
  RingRequest req;
  int err = RebuildRingRequest(*e.hdr, e.payload, e.payload_capacity, &req);
  if (err == 0 && !accepting_.load(std::memory_order_acquire)) err = ENOTCONN;
  if (err != 0) {
    // An opcode newer than this daemon (the kernel falls back, as libfuse would make it) is no fault.
    if (err == ENOSYS)
      HLOG_INFO("FUSE over io_uring: opcode %u not known here: answered ENOSYS", req.opcode);
    else if (err != ENOTCONN)
      HLOG_WARN("FUSE over io_uring: queue %u: request refused (opcode %u, unique %llu): %s", q.qid,
                req.opcode, static_cast<unsigned long long>(req.unique), strerror(err));
    WriteRingError(e.hdr->ent_in_out.commit_id, err == ENOSYS ? ENOSYS : (err == ENOTCONN ? ENOTCONN : EIO),
                   e.hdr);
    std::lock_guard<std::mutex> lock(q.mu);
    e.state = RingEntry::State::kReplied;
    q.to_commit.push_back(&e);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(q.mu);
    e.state = RingEntry::State::kHandling;
    e.request_has_payload = e.hdr->ent_in_out.payload_sz != 0;
    e.reply_staged = false;
  }
  inflight_.Add(req.unique, &e);
  served_.fetch_add(1, std::memory_order_relaxed);
  fuse_buf buf{};
  buf.size = req.size;
  buf.mem = const_cast<char*>(req.data);
  t_handling_ring_request = true;
  t_entry = &e;
  fuse_session_process_buf(se_, &buf);
  t_entry = nullptr;
  t_handling_ring_request = false;
  std::lock_guard<std::mutex> lock(q.mu);
  if (e.reply_staged) {
    const struct iovec staged = {e.staged.data(), e.staged.size()};
    if (WriteRingReply(&staged, 1, e.hdr, e.payload, e.payload_capacity) != 0)
      WriteRingError(e.hdr->ent_in_out.commit_id, EIO, e.hdr);
    e.reply_staged = false;
    e.state = RingEntry::State::kReplied;
    q.to_commit.push_back(&e);
  } else if (e.state == RingEntry::State::kHandling) {
    e.state = RingEntry::State::kWaiting;
  }
}

bool SubmitRingFlush(int fd, bool full, RingFlushDone done, void* arg) {
  RingEntry* e = t_entry;
  if (e == nullptr || e->flush_done != nullptr) return false;
  UringQueue& q = *e->queue;
  // A lone request flushes inline: handing the flush over costs two wake-ups (io_uring's worker, then
  // this thread for the completion; +70 µs p50 for a lone O_DSYNC write here), which pay only when
  // other requests would wait behind the flush: some already arrived (completions not reaped yet), or
  // others of this queue are in flight (a concurrent load, more will come).
  if (io_uring_cq_ready(&q.ring) == 0) {
    std::lock_guard<std::mutex> lock(q.mu);
    bool others = false;
    for (const RingEntry& o : q.entries) others = others || (&o != e && o.state != RingEntry::State::kKernel);
    if (!others) return false;
  }
  io_uring_sqe* sqe = io_uring_get_sqe(&q.ring);
  if (sqe == nullptr) return false;  // not expected (room for a flush per entry): flush inline
  io_uring_prep_fsync(sqe, fd, full ? 0 : IORING_FSYNC_DATASYNC);
  io_uring_sqe_set_data64(sqe, reinterpret_cast<uint64_t>(e) | kFlushBit);
  e->flush_done = done;
  e->flush_arg = arg;
  ++q.flushes_in_flight;
  q.owner->flushes_.fetch_add(1, std::memory_order_relaxed);
  return true;  // submitted with the queue's next turn, right after the handler returns
}

void UringTransport::FlushCompleted(UringQueue& q, RingEntry& e, int res) {
  --q.flushes_in_flight;
  const RingFlushDone done = std::exchange(e.flush_done, nullptr);
  if (done != nullptr) done(e.flush_arg, res < 0 ? -res : 0);  // may reply: to_commit, this turn
}

bool UringTransport::TryReply(const struct iovec* iov, int count) {
  if (!active_.load(std::memory_order_acquire)) return false;
  RingEntry* e = inflight_.TakeFor(iov, count);
  if (e == nullptr) return false;
  UringQueue& q = *e->queue;
  RingReplyPath path;
  {
    std::lock_guard<std::mutex> lock(q.mu);
    path = ChooseRingReplyPath(e->state == RingEntry::State::kHandling, e->request_has_payload);
    if (path == RingReplyPath::kStage) {
      e->staged.clear();
      for (int i = 0; i < count; ++i) {
        const char* p = static_cast<const char*>(iov[i].iov_base);
        e->staged.insert(e->staged.end(), p, p + iov[i].iov_len);
      }
      e->reply_staged = true;
      return true;
    }
    if (int err = WriteRingReply(iov, count, e->hdr, e->payload, e->payload_capacity); err != 0) {
      HLOG_WARN("FUSE over io_uring: reply to %llu does not fit its entry (%s): answered EIO",
                static_cast<unsigned long long>(ReplyUnique(iov, count)), strerror(err));
      WriteRingError(e->hdr->ent_in_out.commit_id, EIO, e->hdr);
    }
    e->state = RingEntry::State::kReplied;
    q.to_commit.push_back(e);
  }
  // On the queue's own thread (a flush completed there) the turn in progress commits it.
  if (path == RingReplyPath::kCommitWake && t_queue != &q) {
    const uint64_t one = 1;
    if (write(q.wake_fd.get(), &one, sizeof(one)) < 0) HLOG_WARN("eventfd write: %s", strerror(errno));
  }
  return true;
}

ssize_t UringTransport::SpliceReplyFromPipe(int pipe_fd, size_t len, int dev_fd) {
  std::vector<char> bytes(len);
  size_t got = 0;
  while (got < len) {
    ssize_t n = read(pipe_fd, bytes.data() + got, len - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    got += static_cast<size_t>(n);
  }
  const struct iovec iov = {bytes.data(), len};
  if (TryReply(&iov, 1)) return static_cast<ssize_t>(len);
  return write(dev_fd, bytes.data(), len);
}

}  // namespace hamirror::fs
