#include "replicator/applier.h"

#include <dirent.h>
#include <fcntl.h>
#include <google/protobuf/descriptor.h>
#include <liburing.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <list>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "common/kept_path.h"
#include "common/log.h"
#include "common/proc_path.h"
#include "common/unique_fd.h"
#include "replicator/direct_writer.h"
#include "replicator/node_kind.h"
#include "replicator/quarantine.h"

namespace hamirror::replicator {

bool IsValidComponent(const std::string& name) {
  if (name.empty() || name.size() > 255) return false;
  if (name == "." || name == "..") return false;
  return name.find('/') == std::string::npos && name.find('\0') == std::string::npos;
}

const char* ResyncPhaseName(ResyncPhase phase) {
  switch (phase) {
    case ResyncPhase::kNone: return "none";
    case ResyncPhase::kRunning: return "running";
    case ResyncPhase::kDone: return "done";
    case ResyncPhase::kFailed: return "failed";
    case ResyncPhase::kInterrupted: return "interrupted";
  }
  return "?";
}

namespace {

constexpr uint64_t kRootRid = 1;
// BlockSums reads whole blocks in chunks of about this size: few syscalls even with 4 KiB blocks.
constexpr uint64_t kSumsReadChunk = 1 << 20;
constexpr int kFlushThreads = 3;  // the disk serves a few concurrent flushes at about the cost of one
constexpr uint64_t kMaxFlushesInFlight = 1024;
// I/O descriptors evicted from the cache while a run of writes may still use them are closed after
// the run; a run is cut when this many wait, which bounds them.
constexpr size_t kMaxRetiredIoFds = 64;
// Unlinked inodes pinned for handle-only rids (PinIfLastLink); past this the oldest pin is dropped.
constexpr size_t kMaxPinned = 1024;
// Direct writes: at least this long, offset and length multiples of kDirectAlign (enough for any
// logical block size and memory alignment a file system asks of O_DIRECT), copied through a bounce
// buffer of kBounceBytes.
constexpr uint64_t kDirectWriteMin = 256 << 10;
constexpr uint64_t kDirectAlign = 4096;
constexpr size_t kBounceBytes = 1 << 20;
// Direct writes of a run made only of them are queued to the DirectWriter (at most this many buffers
// of kBounceBytes at once: two full batches) instead of written on the apply thread.
constexpr size_t kQueuedDirectBuffers = 8;
constexpr int kDirectWriterThreads = 3;  // the disk writes a few at once about as fast as one

int64_t WallClockMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Why a BlockSums request is out of bounds (a protocol violation), or nullptr.
const char* BadBlockSums(const proto::BlockSums& b) {
  if (b.block_size() < kBlockSumsMinBlock || b.block_size() > kBlockSumsMaxBlock ||
      b.block_size() % kBlockSumsMinBlock != 0) {
    return "block_size not a multiple of 4 KiB in [4 KiB, 4 MiB]";
  }
  if (b.length() > kBlockSumsMaxLength) return "length above 64 MiB";
  if (b.offset() > static_cast<uint64_t>(INT64_MAX) - b.length()) return "range beyond the largest offset";
  return nullptr;
}

// For log lines: the operation's kind as named in replication.proto.
const char* OpKindName(const proto::Op& op) {
  const auto* field = proto::Op::descriptor()->FindFieldByNumber(static_cast<int>(op.body_case()));
  return field != nullptr ? field->name().c_str() : "empty";
}

// Writes data[done..] at offset + done, through short writes; 0 or an errno.
int PwriteAll(int fd, const std::string& data, uint64_t offset, size_t done = 0) {
  while (done < data.size()) {
    ssize_t n = pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    done += static_cast<size_t>(n);
  }
  return 0;
}

timespec ToTimespec(const proto::Timespec& t) {
  timespec ts;
  ts.tv_sec = t.sec();
  ts.tv_nsec = t.nsec();
  return ts;
}

class ApplierImpl final : public Applier {
 public:
  ApplierImpl(int root_fd) : root_fd_(root_fd) {}
  ~ApplierImpl() override;

  Status Init(const ApplierOptions& options);

  void SetDurableCallback(DurableCallback callback, void* ctx) override {
    std::lock_guard<std::mutex> lock(flush_mu_);
    durable_cb_ = callback;
    durable_ctx_ = ctx;
  }
  uint64_t StartSession(const std::string& session_id, std::vector<proto::Ack>* recent_errors) override;
  const std::string& session_id() const override { return session_id_; }
  void StreamEnded() override;
  Status Apply(const proto::OpBatch& batch, std::vector<proto::Ack>* acks) override;
  void Drain() override;
  ApplierStats Stats() const override;

 private:
  // A bound entry. Not movable (KeptPath): built in place in rids_, whose nodes never move.
  struct Rid {
    KeptPath path;   // the entry: an O_PATH|O_NOFOLLOW descriptor, or its file handle (keeper_)
    int io_fd = -1;  // lazily reopened for I/O (regular files, directories); in io_lru_ while >= 0
    std::list<Rid*>::iterator io_pos;  // its place in io_lru_
    mode_t type = 0;                   // S_IFMT bits
    dev_t dev = 0;
    ino_t ino = 0;
  };

  Status Validate(const proto::OpBatch& batch);
  void ResetRids();
  void CloseRid(Rid* r);
  Rid* Find(uint64_t rid) {
    auto it = rids_.find(rid);
    return it == rids_.end() ? nullptr : &it->second;
  }
  // A descriptor of the rid's entry for one use (its kept one, or reopened by handle); when it fails,
  // error() is the errno to ack.
  PathFd PathOf(const Rid& r) const { return keeper_->Open(r.path); }
  // Returns an fd usable for data I/O on a regular file (or a directory when allow_dir), or -errno.
  // Valid until CloseRetiredIo(): one evicted from the cache meanwhile is only closed there.
  int IoFd(Rid* r, bool allow_dir);
  void CloseIoFd(Rid* r);
  void CloseRetiredIo();
  // Binds rid to parent_fd/name (never following a symlink), replacing what rid held; 0 or an errno.
  int BindNew(uint64_t rid, int parent_fd, const std::string& name, struct stat* out = nullptr);
  // Keeps fd, the O_PATH descriptor of an entry whose stat is st, in *r (empty).
  void KeepAs(Rid* r, UniqueFd fd, const struct stat& st);
  // Before the entry dir_fd/name may lose its last link: keeps its inode alive while a rid that holds
  // only a file handle may still refer to it (until that rid's Forget). Returns the pin's key, for
  // UnpinAfterFailure() when the unlink then fails; {0, 0} when nothing was pinned.
  using InodeKey = std::pair<dev_t, ino_t>;
  InodeKey PinIfLastLink(int dir_fd, const char* name);
  void UnpinAfterFailure(const InodeKey& key) {
    if (key.second != 0) pinned_.erase(key);
  }

  // Each returns 0 or an errno; *deferred set when the ack will come from the flush path.
  int ApplyOne(const proto::Op& op, bool* deferred);
  int DoBind(const proto::Bind& b);
  int DoSetattr(const proto::Setattr& s);
  int DoFallocate(const proto::Fallocate& f);
  int DoMakeNode(const proto::MakeNode& m);
  int DoLink(const proto::Link& l);
  int DoUnlink(const proto::Unlink& u);
  int DoRename(const proto::Rename& r);
  int DoSetxattr(const proto::Setxattr& x);
  int DoRemovexattr(const proto::Removexattr& x);
  int DoCopyRange(const proto::CopyRange& c);
  int DoFsync(uint64_t seq, const proto::Fsync& f, bool* deferred);
  int DoResyncMark(const proto::ResyncMark& m);
  int DoQuarantine(const proto::Quarantine& q);
  // Resync queries: answer in *answer (sums/file_size, entries); return 0 or an errno.
  void ApplyQuery(const proto::Op& op, std::vector<proto::Ack>* acks);
  int DoBlockSums(const proto::BlockSums& b, proto::Ack* answer);
  int DoListDir(const proto::ListDir& l, proto::Ack* answer);
  // Appends the entry `name` of directory dir_fd (an O_PATH handle is fine) to answer; ENOENT when it
  // vanished meanwhile.
  int DescribeEntry(int dir_fd, const std::string& name, proto::Ack* answer);
  // Fills e->xattrs from path (a final symlink is not followed), sorted by name.
  int ReadXattrs(const std::string& path, proto::DirEntry* e);
  int SetTimes(Rid* r, const timespec ts[2]);
  int ApplyTimeFixes(const proto::Op& op);

  // Applies ops [begin, end) of batch, all non-duplicate Writes, through the write ring; stops early
  // (returns where) when kMaxRetiredIoFds evicted descriptors wait to be closed.
  int ApplyWriteRun(const proto::OpBatch& batch, int begin, int end, std::vector<proto::Ack>* acks);
  // A run whose every write is direct, at most kBounceBytes, without a time fix, is queued whole to
  // direct_writer_ (QueueDirectWrites) and acked from there: the apply thread does not wait for the
  // disk. Anything else waits for what is queued first (WaitDirectWrites).
  bool RunQueueable(const proto::OpBatch& batch) const;
  void QueueDirectWrites(const proto::OpBatch& batch);
  void WaitDirectWrites() {
    if (direct_writer_) direct_writer_->WaitIdle();
  }
  int ResolveWriteSlots(const proto::OpBatch& batch, int begin, int end);
  void OrderWriteSlots(const proto::OpBatch& batch);
  void SubmitWritesToRing(const proto::OpBatch& batch, size_t start, size_t count);
  void FinishWritesInOrder(const proto::OpBatch& batch, size_t start, size_t count);
  void AckWrites(const proto::OpBatch& batch, std::vector<proto::Ack>* acks);
  // Direct writes: a large aligned write bypasses this node's page cache (ApplierOptions.direct_writes).
  bool DirectEligible(const proto::Write& w) const;
  // Writes data at offset through an O_DIRECT descriptor of fd's file, copied through bounce_, on this
  // thread (WriteAligned: the page cache takes over where the file system refuses); 0 or an errno.
  int WriteDirect(int fd, const std::string& data, uint64_t offset);
  void StopDirectWrites(const char* what, int err);
  // answer (optional): a query's answer, moved into the ack when err is 0. times_done: the op's time
  // fixes were applied already (ApplyWriteRun does so before a write's flush); time_err their result.
  void FinishOp(const proto::Op& op, int err, bool deferred, std::vector<proto::Ack>* acks,
                proto::Ack* answer = nullptr, bool times_done = false, int time_err = 0);

  // Flush path: asynchronous fsync/fdatasync (flush_threads_), syncfs (syncfs_thread_).
  // Returns 0 or an errno; *deferred tells whether the ack will come from the flush path (false when
  // the flush was done synchronously).
  int SubmitFlush(uint64_t seq, int fd, bool datasync, bool* deferred);
  void FlushLoop();
  void SyncfsLoop();
  // what: the kind of the late op for the error log ("flush", "write"); flushes_in_flight counts only
  // the flushes.
  void Durable(uint64_t seq, int err, const char* what = "flush");

  const int root_fd_;
  int root_io_fd_ = -1;  // root reopened O_RDONLY for syncfs
  // Descriptor budgets (ApplierOptions.max_path_fds, max_io_fds): a bound rid costs no descriptor
  // past them.
  std::unique_ptr<PathKeeper> keeper_;
  size_t handle_rids_ = 0;  // bound rids kept by file handle only (their inode may die on unlink)
  size_t io_budget_ = 0;
  std::list<Rid*> io_lru_;       // rids with an io_fd, most recently used first
  std::vector<int> retired_io_;  // evicted io fds, closed by CloseRetiredIo()
  // Unlinked inodes held open for handle-only rids, by (dev, ino): the descriptor and its age.
  struct Pin {
    UniqueFd fd;
    uint64_t age;
  };
  std::map<InodeKey, Pin> pinned_;
  uint64_t pin_age_ = 0;
  std::function<void(proto::Ack*)> on_resync_begin_;
  std::string quarantine_root_;
  std::string session_id_;
  uint64_t applied_through_ = 0;
  std::unordered_map<uint64_t, Rid> rids_;

  io_uring write_ring_;
  bool write_ring_ok_ = false;
  unsigned ring_entries_ = 256;

  // Scratch for ApplyWriteRun, kept to avoid per-batch allocations.
  struct WriteSlot {
    int op_index;
    int fd;
    dev_t dev;
    ino_t ino;
    int result;           // bytes written, or -errno
    int err;              // final errno for the ack
    bool direct;          // DirectEligible
    bool queued = false;  // handed to direct_writer_, acked from there
  };
  std::vector<WriteSlot> slots_;
  bool direct_writes_ = true;
  struct FreeDeleter {
    void operator()(char* p) const { std::free(p); }
  };
  std::unique_ptr<char, FreeDeleter> bounce_;    // aligned copy of a direct write's data (kBounceBytes)
  std::unique_ptr<DirectWriter> direct_writer_;  // with async_flush_ only
  std::vector<int> order_;
  // Scratch for the resync queries, kept between ops: BlockSums' read buffer (at most one chunk),
  // ListDir's xattr name list and value buffers.
  std::unique_ptr<char[]> sums_buf_;
  size_t sums_buf_size_ = 0;
  std::vector<char> xattr_names_;
  std::vector<char> xattr_value_;

  // Flushes run on a few plain threads, not on io_uring: an io_uring fsync is always punted to an
  // io-wq worker and its completion then needs a reaper thread, two wake-ups where one does. Each
  // queued flush owns a dup of the fd (a later Forget may close the rid's).
  struct FlushJob {
    uint64_t seq;
    int fd;
    bool datasync;
  };
  bool async_flush_ = false;
  std::vector<std::thread> flush_threads_;
  std::deque<FlushJob> flush_queue_;  // guarded by flush_mu_
  std::condition_variable flush_queue_cv_;
  std::condition_variable syncfs_cv_;  // own cv: not woken by every flush's completion
  std::thread syncfs_thread_;
  mutable std::mutex flush_mu_;
  std::condition_variable flush_cv_;
  uint64_t in_flight_ = 0;
  uint64_t batch_last_seq_ = 0;  // seq of the last op of the batch being applied
  std::deque<uint64_t> syncfs_queue_;
  bool stopping_ = false;
  DurableCallback durable_cb_ = nullptr;
  void* durable_ctx_ = nullptr;

  // With stats_mu_ held: a running resync becomes interrupted.
  void InterruptResyncLocked(const char* why) {
    ResyncTargetState& r = stats_.resync;
    if (r.phase != ResyncPhase::kRunning) return;
    r.phase = ResyncPhase::kInterrupted;
    r.finished_unix_ms = WallClockMs();
    HLOG_WARN("resync %llu interrupted: %s", (unsigned long long)r.id, why);
  }

  // With stats_mu_ held.
  void RememberErrorLocked(uint64_t seq, int err, const char* kind, bool changes_nothing = false) {
    recent_errors_.emplace_back(seq, err);
    if (recent_errors_.size() > kRecentErrors) recent_errors_.pop_front();
    // A Bind that fails (a new session re-binding names this copy lacks, before the resync makes them)
    // changed nothing, as the primary also judges: not a copy left behind, not counted.
    if (changes_nothing) return;
    // Every other error ack leaves this copy behind the primary's until a resync: worth a warning, but
    // bounded (a flood of them would otherwise fill the log).
    if (stats_.error_acks < 20 || stats_.error_acks % 1000 == 0) {
      HLOG_WARN("op seq %llu (%s) could not be applied: %s (error acks so far: %llu)",
                (unsigned long long)seq, kind, strerror(err), (unsigned long long)stats_.error_acks + 1);
    }
    ++stats_.error_acks;
  }

  mutable std::mutex stats_mu_;
  ApplierStats stats_;
  static constexpr size_t kRecentErrors = 4096;
  std::deque<std::pair<uint64_t, int>> recent_errors_;  // of this session, for HelloReply
  std::string resync_session_;                          // session of the last ResyncMark begin (stats_mu_)
};

ApplierImpl::~ApplierImpl() {
  Drain();
  direct_writer_.reset();  // idle after Drain; its callback uses what follows
  {
    std::lock_guard<std::mutex> lock(flush_mu_);
    stopping_ = true;
  }
  flush_cv_.notify_all();
  flush_queue_cv_.notify_all();
  syncfs_cv_.notify_all();
  for (std::thread& t : flush_threads_) t.join();
  if (syncfs_thread_.joinable()) syncfs_thread_.join();
  for (auto& [rid, r] : rids_) CloseRid(&r);
  CloseRetiredIo();
  if (root_io_fd_ >= 0) close(root_io_fd_);
  if (write_ring_ok_) io_uring_queue_exit(&write_ring_);
}

Status ApplierImpl::Init(const ApplierOptions& options) {
  struct stat st;
  if (fstat(root_fd_, &st) != 0) return Status::FromErrno("applier root fd", errno);
  if (!S_ISDIR(st.st_mode)) return Status::InvalidArgument("applier root fd is not a directory");
  root_io_fd_ = open(ProcPath(root_fd_).buf, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root_io_fd_ < 0) return Status::FromErrno("reopen replicated root", errno);
  // DefaultBudget() also raises the soft descriptor limit to the hard one. The FUSE daemon's own
  // inode table (same process) takes half of the limit by default: this a quarter, I/O a sixteenth.
  const size_t half_limit = PathKeeper::DefaultBudget();
  const size_t path_budget = options.max_path_fds ? options.max_path_fds : half_limit / 2;
  // root_io_fd_, not root_fd_: open_by_handle_at refuses an O_PATH descriptor as its mount fd (EBADF).
  keeper_ = std::make_unique<PathKeeper>(root_io_fd_, std::max<size_t>(2, path_budget));
  io_budget_ = std::max<size_t>(2, options.max_io_fds ? options.max_io_fds : half_limit / 8);
  ring_entries_ = std::clamp(options.ring_entries, 8u, 4096u);
  on_resync_begin_ = options.on_resync_begin;
  quarantine_root_ = options.quarantine_root;
  direct_writes_ = options.direct_writes;
  if (!options.force_sync_io) {
    // io_uring may be disabled (sysctl kernel.io_uring_disabled, container seccomp): then degrade to
    // plain pwrite/fsync on the apply thread rather than refuse to be a secondary.
    int rc = io_uring_queue_init(ring_entries_, &write_ring_, 0);
    if (rc == 0) write_ring_ok_ = true;
    if (rc < 0) {
      HLOG_WARN("io_uring unavailable (%s): applying with synchronous pwrite/fsync", strerror(-rc));
    }
  }
  // Asynchronous flushes unless plain synchronous I/O was asked for (or io_uring is missing, which
  // stands for a restricted environment: keep the old, simplest behaviour there).
  async_flush_ = write_ring_ok_;
  if (async_flush_) {
    direct_writer_ =
        std::make_unique<DirectWriter>(kQueuedDirectBuffers, kBounceBytes, kDirectWriterThreads,
                                       [this](uint64_t seq, int err) { Durable(seq, err, "write"); });
    for (int i = 0; i < kFlushThreads; ++i)
      flush_threads_.emplace_back([this] {
        pthread_setname_np(pthread_self(), "hm-flush");
        FlushLoop();
      });
  }
  syncfs_thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "hm-syncfs");
    SyncfsLoop();
  });
  ResetRids();
  return Status::Ok();
}

// Only outside a run of writes (whose slots may still use the rid's io_fd).
void ApplierImpl::CloseRid(Rid* r) {
  CloseIoFd(r);
  if (!r->path.has_fd()) --handle_rids_;
  keeper_->Release(&r->path);
  if (!pinned_.empty()) pinned_.erase({r->dev, r->ino});  // its Forget: the inode may go now
}

void ApplierImpl::CloseIoFd(Rid* r) {
  if (r->io_fd < 0) return;
  io_lru_.erase(r->io_pos);
  close(r->io_fd);
  r->io_fd = -1;
}

void ApplierImpl::CloseRetiredIo() {
  for (int fd : retired_io_) close(fd);
  retired_io_.clear();
}

void ApplierImpl::KeepAs(Rid* r, UniqueFd fd, const struct stat& st) {
  keeper_->Keep(std::move(fd), &r->path);
  if (!r->path.has_fd()) ++handle_rids_;
  r->type = st.st_mode & S_IFMT;
  r->dev = st.st_dev;
  r->ino = st.st_ino;
}

void ApplierImpl::ResetRids() {
  for (auto& [rid, r] : rids_) CloseRid(&r);
  rids_.clear();
  pinned_.clear();
  // The root is kept like any rid, through a dup of root_fd (the caller's): taken first from an
  // empty budget, so it always keeps its descriptor.
  UniqueFd root(fcntl(root_fd_, F_DUPFD_CLOEXEC, 0));
  struct stat st;
  if (!root || fstat(root.get(), &st) != 0) {
    HLOG_ERROR("cannot keep the replicated root: %s; every op will fail", strerror(errno));
    return;
  }
  KeepAs(&rids_[kRootRid], std::move(root), st);
}

uint64_t ApplierImpl::StartSession(const std::string& session_id, std::vector<proto::Ack>* recent_errors) {
  Drain();
  if (session_id != session_id_) {
    std::lock_guard<std::mutex> lock(stats_mu_);
    recent_errors_.clear();
    InterruptResyncLocked("a new replication session started");
  }
  if (session_id != session_id_) {
    HLOG_INFO("replication session %s starts (previous %s at seq %llu)", session_id.c_str(),
              session_id_.empty() ? "none" : session_id_.c_str(), (unsigned long long)applied_through_);
    ResetRids();
    session_id_ = session_id;
    applied_through_ = 0;
  }
  std::lock_guard<std::mutex> lock(stats_mu_);
  stats_.applied_through = applied_through_;
  stats_.bound_rids = rids_.size();
  stats_.path_fds = keeper_->kept_fds() + keeper_->unhandled_fds();
  stats_.io_fds = io_lru_.size();
  stats_.pinned = pinned_.size();
  if (recent_errors != nullptr) {
    for (const auto& [seq, err] : recent_errors_) {
      proto::Ack& ack = recent_errors->emplace_back();
      ack.set_seq(seq);
      ack.set_error(err);
    }
  }
  return applied_through_;
}

Status ApplierImpl::Validate(const proto::OpBatch& batch) {
  uint64_t next = applied_through_ + 1;
  for (const proto::Op& op : batch.ops()) {
    if (op.seq() == 0) return Status::Corruption("op with seq 0");
    if (op.seq() < next) continue;  // duplicate: acked again, not re-applied, payload irrelevant
    if (op.seq() > next) {
      std::lock_guard<std::mutex> lock(stats_mu_);
      ++stats_.sequence_errors;
      return Status::Corruption("sequence gap: got seq " + std::to_string(op.seq()) + ", expected " +
                                std::to_string(next));
    }
    ++next;
    switch (op.body_case()) {
      case proto::Op::kWrite: {
        const std::string& d = op.write().data();
        if (XXH3_64bits(d.data(), d.size()) != op.write().checksum()) {
          std::lock_guard<std::mutex> lock(stats_mu_);
          ++stats_.checksum_errors;
          return Status::Corruption("checksum mismatch in Write seq " + std::to_string(op.seq()));
        }
        break;
      }
      case proto::Op::kSetxattr: {
        const std::string& v = op.setxattr().value();
        if (XXH3_64bits(v.data(), v.size()) != op.setxattr().checksum()) {
          std::lock_guard<std::mutex> lock(stats_mu_);
          ++stats_.checksum_errors;
          return Status::Corruption("checksum mismatch in Setxattr seq " + std::to_string(op.seq()));
        }
        break;
      }
      case proto::Op::kBlockSums: {
        const char* bad = BadBlockSums(op.block_sums());
        if (bad == nullptr) break;
        std::lock_guard<std::mutex> lock(stats_mu_);
        ++stats_.protocol_errors;
        return Status::InvalidArgument("BlockSums seq " + std::to_string(op.seq()) + ": " + bad);
      }
      case proto::Op::BODY_NOT_SET: {
        std::lock_guard<std::mutex> lock(stats_mu_);
        ++stats_.protocol_errors;
        return Status::Corruption("op seq " + std::to_string(op.seq()) + " has no (known) body");
      }
      default: break;
    }
  }
  return Status::Ok();
}

Status ApplierImpl::Apply(const proto::OpBatch& batch, std::vector<proto::Ack>* acks) {
  Status s = Validate(batch);
  if (!s.ok()) return s;
  const int n = batch.ops_size();
  batch_last_seq_ = n > 0 ? batch.ops(n - 1).seq() : 0;
  for (int i = 0; i < n;) {
    const proto::Op& op = batch.ops(i);
    if (op.seq() <= applied_through_) {
      proto::Ack& ack = acks->emplace_back();
      ack.set_seq(op.seq());
      std::lock_guard<std::mutex> lock(stats_mu_);
      ++stats_.duplicates;
      ++i;
      continue;
    }
    if (op.body_case() == proto::Op::kWrite) {
      int j = i + 1;
      while (j < n && batch.ops(j).body_case() == proto::Op::kWrite) ++j;
      // Returns with every write of the run completed (ring reaped, leftovers pwritten): a later
      // BlockSums of the same range reads them.
      i = ApplyWriteRun(batch, i, j, acks);
      CloseRetiredIo();
      continue;
    }
    WaitDirectWrites();  // what follows may read, flush or change a file with direct writes queued
    if (op.body_case() == proto::Op::kBlockSums || op.body_case() == proto::Op::kListDir) {
      ApplyQuery(op, acks);
      CloseRetiredIo();
      ++i;
      continue;
    }
    bool deferred = false;
    int err = ApplyOne(op, &deferred);
    if (op.has_resync_mark() && op.resync_mark().begin() && err == 0 && on_resync_begin_) {
      proto::Ack answer;
      on_resync_begin_(&answer);
      FinishOp(op, err, deferred, acks, &answer);
    } else {
      FinishOp(op, err, deferred, acks);
    }
    CloseRetiredIo();
    ++i;
  }
  std::lock_guard<std::mutex> lock(stats_mu_);
  stats_.applied_through = applied_through_;
  stats_.bound_rids = rids_.size();
  stats_.path_fds = keeper_->kept_fds() + keeper_->unhandled_fds();
  stats_.io_fds = io_lru_.size();
  stats_.pinned = pinned_.size();
  return Status::Ok();
}

void ApplierImpl::FinishOp(const proto::Op& op, int err, bool deferred, std::vector<proto::Ack>* acks,
                           proto::Ack* answer, bool times_done, int time_err) {
  if (!times_done) time_err = ApplyTimeFixes(op);
  if (err == 0) err = time_err;
  applied_through_ = op.seq();
  if (deferred && err != 0) {
    // The flush was submitted but something after it failed; its own ack still comes later. Rare:
    // report the error now and let the late ack be a harmless duplicate for the primary.
    deferred = false;
  }
  if (!deferred) {
    proto::Ack& ack = acks->emplace_back();
    if (answer != nullptr && err == 0) ack.Swap(answer);
    ack.set_seq(op.seq());
    ack.set_error(err);
    std::lock_guard<std::mutex> lock(stats_mu_);
    ++stats_.ops_applied;
    if (err != 0) RememberErrorLocked(op.seq(), err, OpKindName(op), /*changes_nothing=*/op.has_bind());
  }
  if (err != 0) {
    HLOG_DEBUG("apply seq %llu (op kind %d): %s", (unsigned long long)op.seq(), (int)op.body_case(),
               strerror(err));
  }
}

int ApplierImpl::ApplyTimeFixes(const proto::Op& op) {
  int first_err = 0;
  for (const proto::TimeFix& t : op.times()) {
    Rid* r = Find(t.rid());
    int err = ESTALE;
    if (r != nullptr) {
      timespec ts[2];
      ts[0] = t.has_atime() ? ToTimespec(t.atime()) : timespec{0, UTIME_OMIT};
      ts[1] = t.has_mtime() ? ToTimespec(t.mtime()) : timespec{0, UTIME_OMIT};
      err = SetTimes(r, ts);
    }
    if (err != 0 && first_err == 0) first_err = err;
  }
  return first_err;
}

int ApplierImpl::IoFd(Rid* r, bool allow_dir) {
  if (S_ISDIR(r->type) && !allow_dir) return -EISDIR;
  if (r->io_fd >= 0) {
    if (r->io_pos != io_lru_.begin()) io_lru_.splice(io_lru_.begin(), io_lru_, r->io_pos);
    return r->io_fd;
  }
  int flags;
  if (S_ISREG(r->type)) {
    flags = O_RDWR | O_CLOEXEC;
  } else if (S_ISDIR(r->type)) {
    flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
  } else {
    return -EINVAL;  // never open symlinks, fifos or devices
  }
  PathFd path = PathOf(*r);
  if (!path) return -path.error();
  int fd = open(ProcPath(path.get()).buf, flags);
  if (fd < 0) return -errno;
  if (io_lru_.size() >= io_budget_) {
    // Evict the least recently used. The current op (or run of writes) may still use its fd: it is
    // closed after it.
    Rid* victim = io_lru_.back();
    io_lru_.pop_back();
    retired_io_.push_back(victim->io_fd);
    victim->io_fd = -1;
  }
  io_lru_.push_front(r);
  r->io_pos = io_lru_.begin();
  r->io_fd = fd;
  return fd;
}

int ApplierImpl::BindNew(uint64_t rid, int parent_fd, const std::string& name, struct stat* out) {
  if (rid == 0 || rid == kRootRid) return EINVAL;
  UniqueFd fd(openat(parent_fd, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return errno;
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return errno;
  if (out != nullptr) *out = st;
  auto [it, inserted] = rids_.try_emplace(rid);
  if (!inserted) CloseRid(&it->second);  // rebinding a handle the primary reused
  KeepAs(&it->second, std::move(fd), st);
  return 0;
}

ApplierImpl::InodeKey ApplierImpl::PinIfLastLink(int dir_fd, const char* name) {
  if (handle_rids_ == 0) return {};  // every rid holds a descriptor, which keeps its inode alive
  struct stat st;
  if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || S_ISDIR(st.st_mode) || st.st_nlink != 1) {
    return {};
  }
  const InodeKey key{st.st_dev, st.st_ino};
  if (pinned_.count(key) != 0) return {};  // already pinned: not this op's to undo
  UniqueFd fd(openat(dir_fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return {};  // the unlink will fail the same way
  if (pinned_.size() >= kMaxPinned) {
    // Inodes whose rid is never forgotten (none was bound to them): drop the oldest pin.
    auto oldest = std::min_element(pinned_.begin(), pinned_.end(),
                                   [](const auto& a, const auto& b) { return a.second.age < b.second.age; });
    pinned_.erase(oldest);
  }
  pinned_[key] = Pin{std::move(fd), ++pin_age_};
  return key;
}

int ApplierImpl::ApplyOne(const proto::Op& op, bool* deferred) {
  switch (op.body_case()) {
    case proto::Op::kBind: return DoBind(op.bind());
    case proto::Op::kForget: {
      const uint64_t rid = op.forget().rid();
      if (rid == kRootRid) return 0;
      auto it = rids_.find(rid);
      if (it != rids_.end()) {
        CloseRid(&it->second);
        rids_.erase(it);
      }
      return 0;
    }
    case proto::Op::kSetattr: return DoSetattr(op.setattr());
    case proto::Op::kFallocate: return DoFallocate(op.fallocate());
    case proto::Op::kMakeNode: return DoMakeNode(op.make_node());
    case proto::Op::kLink: return DoLink(op.link());
    case proto::Op::kUnlink: return DoUnlink(op.unlink());
    case proto::Op::kRename: return DoRename(op.rename());
    case proto::Op::kSetxattr: return DoSetxattr(op.setxattr());
    case proto::Op::kRemovexattr: return DoRemovexattr(op.removexattr());
    case proto::Op::kCopyRange: return DoCopyRange(op.copy_range());
    case proto::Op::kFsync: return DoFsync(op.seq(), op.fsync(), deferred);
    case proto::Op::kResyncMark: return DoResyncMark(op.resync_mark());
    case proto::Op::kQuarantine: return DoQuarantine(op.quarantine());
    case proto::Op::kBlockSums:  // handled by ApplyQuery
    case proto::Op::kListDir:
    case proto::Op::kWrite:  // handled by ApplyWriteRun
    case proto::Op::BODY_NOT_SET: break;
  }
  return EINVAL;
}

int ApplierImpl::DoBind(const proto::Bind& b) {
  if (!IsValidComponent(b.name())) return EINVAL;
  Rid* parent = Find(b.parent());
  if (parent == nullptr) return ESTALE;
  if (!S_ISDIR(parent->type)) return ENOTDIR;
  PathFd pfd = PathOf(*parent);
  if (!pfd) return pfd.error();
  return BindNew(b.rid(), pfd.get(), b.name());
}

int ApplierImpl::SetTimes(Rid* r, const timespec ts[2]) {
  if (ts[0].tv_nsec == UTIME_OMIT && ts[1].tv_nsec == UTIME_OMIT) return 0;
  // AT_EMPTY_PATH on the O_PATH handle acts on the entry itself, symlinks included.
  PathFd path = PathOf(*r);
  if (!path) return path.error();
  if (utimensat(path.get(), "", ts, AT_EMPTY_PATH) != 0) return errno;
  return 0;
}

int ApplierImpl::DoSetattr(const proto::Setattr& s) {
  Rid* r = Find(s.rid());
  if (r == nullptr) return ESTALE;
  if (s.has_size()) {
    int fd = IoFd(r, false);
    if (fd < 0) return -fd;
    if (ftruncate(fd, static_cast<off_t>(s.size())) != 0) return errno;
  }
  const bool chmod_too = s.has_mode() && !S_ISLNK(r->type);
  if (s.has_uid() || s.has_gid() || chmod_too) {
    PathFd path = PathOf(*r);
    if (!path) return path.error();
    if (s.has_uid() || s.has_gid()) {
      const uid_t uid = s.has_uid() ? s.uid() : static_cast<uid_t>(-1);
      const gid_t gid = s.has_gid() ? s.gid() : static_cast<gid_t>(-1);
      if (fchownat(path.get(), "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return errno;
    }
    // After chown, which may clear set-id bits.
    if (chmod_too && chmod(ProcPath(path.get()).buf, s.mode() & 07777) != 0) return errno;
  }
  timespec ts[2];
  ts[0] = s.has_atime() ? ToTimespec(s.atime()) : timespec{0, UTIME_OMIT};
  ts[1] = s.has_mtime() ? ToTimespec(s.mtime()) : timespec{0, UTIME_OMIT};
  return SetTimes(r, ts);
}

int ApplierImpl::DoFallocate(const proto::Fallocate& f) {
  Rid* r = Find(f.rid());
  if (r == nullptr) return ESTALE;
  int fd = IoFd(r, false);
  if (fd < 0) return -fd;
  if (fallocate(fd, f.mode(), static_cast<off_t>(f.offset()), static_cast<off_t>(f.length())) != 0) {
    return errno;
  }
  return 0;
}

int ApplierImpl::DoMakeNode(const proto::MakeNode& m) {
  if (!IsValidComponent(m.name())) return EINVAL;
  if (m.rid() == 0 || m.rid() == kRootRid) return EINVAL;
  Rid* parent = Find(m.parent());
  if (parent == nullptr) return ESTALE;
  if (!S_ISDIR(parent->type)) return ENOTDIR;
  PathFd parent_path = PathOf(*parent);
  if (!parent_path) return parent_path.error();
  const int pfd = parent_path.get();
  const char* name = m.name().c_str();
  const mode_t perm = m.mode() & 07777;
  switch (m.kind()) {
    case proto::NODE_KIND_FILE: {
      int fd = openat(pfd, name, O_CREAT | O_EXCL | O_RDWR | O_NOFOLLOW | O_CLOEXEC, perm);
      if (fd < 0) return errno;
      close(fd);
      break;
    }
    case proto::NODE_KIND_DIR:
      if (mkdirat(pfd, name, perm) != 0) return errno;
      break;
    case proto::NODE_KIND_SYMLINK: {
      const std::string& target = m.symlink_target();
      if (target.empty() || target.find('\0') != std::string::npos) return EINVAL;
      if (symlinkat(target.c_str(), pfd, name) != 0) return errno;
      break;
    }
    case proto::NODE_KIND_FIFO:
    case proto::NODE_KIND_SOCKET:
    case proto::NODE_KIND_CHAR:
    case proto::NODE_KIND_BLOCK: {
      mode_t type = m.kind() == proto::NODE_KIND_FIFO     ? S_IFIFO
                    : m.kind() == proto::NODE_KIND_SOCKET ? S_IFSOCK
                    : m.kind() == proto::NODE_KIND_CHAR   ? S_IFCHR
                                                          : S_IFBLK;
      if (mknodat(pfd, name, type | perm, static_cast<dev_t>(m.rdev())) != 0) return errno;
      break;
    }
    default: return EINVAL;
  }
  struct stat st;
  int err = BindNew(m.rid(), pfd, m.name(), &st);
  if (err != 0) return err;
  Rid* r = Find(m.rid());
  PathFd path = PathOf(*r);
  if (!path) return path.error();
  // Each call skipped when the new node already has it (a create by root, a mode the umask left
  // alone): two system calls less on every replicated create.
  const bool chown_needed = st.st_uid != m.uid() || st.st_gid != m.gid();
  if (chown_needed && fchownat(path.get(), "", m.uid(), m.gid(), AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0)
    return errno;
  // Exact mode regardless of this process's umask; after chown, which clears set-id bits.
  if (!S_ISLNK(r->type) && (chown_needed || (st.st_mode & 07777) != perm) &&
      chmod(ProcPath(path.get()).buf, perm) != 0)
    return errno;
  return 0;
}

int ApplierImpl::DoLink(const proto::Link& l) {
  if (!IsValidComponent(l.new_name())) return EINVAL;
  Rid* r = Find(l.rid());
  Rid* parent = Find(l.new_parent());
  if (r == nullptr || parent == nullptr) return ESTALE;
  if (!S_ISDIR(parent->type)) return ENOTDIR;
  PathFd path = PathOf(*r);
  if (!path) return path.error();
  PathFd dir = PathOf(*parent);
  if (!dir) return dir.error();
  if (linkat(path.get(), "", dir.get(), l.new_name().c_str(), AT_EMPTY_PATH) == 0) return 0;
  if (errno != ENOENT && errno != EPERM) return errno;
  // Without CAP_DAC_READ_SEARCH AT_EMPTY_PATH is refused; the /proc magic link works for the owner.
  if (linkat(AT_FDCWD, ProcPath(path.get()).buf, dir.get(), l.new_name().c_str(), AT_SYMLINK_FOLLOW) != 0) {
    return errno;
  }
  return 0;
}

int ApplierImpl::DoUnlink(const proto::Unlink& u) {
  if (!IsValidComponent(u.name())) return EINVAL;
  Rid* parent = Find(u.parent());
  if (parent == nullptr) return ESTALE;
  if (!S_ISDIR(parent->type)) return ENOTDIR;
  PathFd dir = PathOf(*parent);
  if (!dir) return dir.error();
  const InodeKey pin = u.is_dir() ? InodeKey{} : PinIfLastLink(dir.get(), u.name().c_str());
  if (unlinkat(dir.get(), u.name().c_str(), u.is_dir() ? AT_REMOVEDIR : 0) != 0) {
    const int err = errno;
    UnpinAfterFailure(pin);
    return err;
  }
  return 0;
}

int ApplierImpl::DoRename(const proto::Rename& r) {
  if (!IsValidComponent(r.name()) || !IsValidComponent(r.new_name())) return EINVAL;
  if ((r.flags() & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) != 0) return EINVAL;
  Rid* from = Find(r.parent());
  Rid* to = Find(r.new_parent());
  if (from == nullptr || to == nullptr) return ESTALE;
  if (!S_ISDIR(from->type) || !S_ISDIR(to->type)) return ENOTDIR;
  PathFd from_dir = PathOf(*from);
  if (!from_dir) return from_dir.error();
  PathFd to_dir = PathOf(*to);
  if (!to_dir) return to_dir.error();
  // A replaced target loses a link.
  const bool replaces = (r.flags() & (RENAME_NOREPLACE | RENAME_EXCHANGE)) == 0;
  const InodeKey pin = replaces ? PinIfLastLink(to_dir.get(), r.new_name().c_str()) : InodeKey{};
  if (renameat2(from_dir.get(), r.name().c_str(), to_dir.get(), r.new_name().c_str(), r.flags()) != 0) {
    const int err = errno;
    UnpinAfterFailure(pin);
    return err;
  }
  return 0;
}

int ApplierImpl::DoSetxattr(const proto::Setxattr& x) {
  if (x.name().empty() || x.name().size() > 255 || x.name().find('\0') != std::string::npos) return EINVAL;
  if ((x.flags() & ~(XATTR_CREATE | XATTR_REPLACE)) != 0) return EINVAL;
  Rid* r = Find(x.rid());
  if (r == nullptr) return ESTALE;
  if (!S_ISREG(r->type) && !S_ISDIR(r->type)) return EPERM;
  PathFd path = PathOf(*r);
  if (!path) return path.error();
  if (setxattr(ProcPath(path.get()).buf, x.name().c_str(), x.value().data(), x.value().size(), x.flags()) !=
      0) {
    return errno;
  }
  return 0;
}

int ApplierImpl::DoRemovexattr(const proto::Removexattr& x) {
  if (x.name().empty() || x.name().size() > 255 || x.name().find('\0') != std::string::npos) return EINVAL;
  Rid* r = Find(x.rid());
  if (r == nullptr) return ESTALE;
  if (!S_ISREG(r->type) && !S_ISDIR(r->type)) return EPERM;
  PathFd path = PathOf(*r);
  if (!path) return path.error();
  if (removexattr(ProcPath(path.get()).buf, x.name().c_str()) != 0) return errno;
  return 0;
}

int ApplierImpl::DoCopyRange(const proto::CopyRange& c) {
  Rid* in = Find(c.rid_in());
  Rid* out = Find(c.rid_out());
  if (in == nullptr || out == nullptr) return ESTALE;
  int in_fd = IoFd(in, false);
  if (in_fd < 0) return -in_fd;
  int out_fd = IoFd(out, false);
  if (out_fd < 0) return -out_fd;
  loff_t off_in = static_cast<loff_t>(c.offset_in());
  loff_t off_out = static_cast<loff_t>(c.offset_out());
  uint64_t left = c.length();
  while (left > 0) {
    ssize_t n = copy_file_range(in_fd, &off_in, out_fd, &off_out, std::min<uint64_t>(left, 1 << 30), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) break;  // end of the source, as on the primary
    left -= static_cast<uint64_t>(n);
  }
  return 0;
}

int ApplierImpl::DoFsync(uint64_t seq, const proto::Fsync& f, bool* deferred) {
  if (f.rid() == 0) {
    {
      std::lock_guard<std::mutex> lock(flush_mu_);
      ++in_flight_;
      syncfs_queue_.push_back(seq);
    }
    syncfs_cv_.notify_one();
    *deferred = true;
    return 0;
  }
  Rid* r = Find(f.rid());
  if (r == nullptr) return ESTALE;
  int fd = IoFd(r, true);
  if (fd < 0) return -fd;
  return SubmitFlush(seq, fd, f.datasync(), deferred);
}

void ApplierImpl::StreamEnded() {
  std::lock_guard<std::mutex> lock(stats_mu_);
  InterruptResyncLocked("the replication stream ended");
}

int ApplierImpl::DoResyncMark(const proto::ResyncMark& m) {
  // A resync's writes are not flushed one by one: before this copy is declared consistent they are
  // made durable together, else a crash of this machine right after could lose part of them while
  // the managers already take this copy for up to date. (Outside stats_mu_: it may take a while.)
  if (!m.begin() && m.ok() && syncfs(root_io_fd_) != 0) {
    const int err = errno;
    HLOG_ERROR("resync %llu: cannot flush this copy to disk: %s", (unsigned long long)m.id(), strerror(err));
    return err;
  }
  const int64_t now = WallClockMs();
  std::lock_guard<std::mutex> lock(stats_mu_);
  ResyncTargetState& r = stats_.resync;
  if (m.begin()) {
    if (r.phase == ResyncPhase::kRunning) {
      HLOG_WARN("resync %llu superseded by resync %llu before its end", (unsigned long long)r.id,
                (unsigned long long)m.id());
    }
    r = ResyncTargetState();
    r.id = m.id();
    r.phase = ResyncPhase::kRunning;
    r.bytes_total = m.bytes_total();
    r.started_unix_ms = now;
    resync_session_ = session_id_;
    HLOG_INFO("resync %llu begins (about %llu bytes to compare): this copy is inconsistent until it ends",
              (unsigned long long)m.id(), (unsigned long long)m.bytes_total());
    return 0;
  }
  // An end must close the resync begun in this session (a reconnect of the same session may have
  // interrupted it meanwhile); anything else is the source's mistake and changes nothing.
  if ((r.phase != ResyncPhase::kRunning && r.phase != ResyncPhase::kInterrupted) || r.id != m.id() ||
      resync_session_ != session_id_) {
    HLOG_WARN("resync end for id %llu does not match the resync state (id %llu, %s)",
              (unsigned long long)m.id(), (unsigned long long)r.id, ResyncPhaseName(r.phase));
    return EINVAL;
  }
  r.phase = m.ok() ? ResyncPhase::kDone : ResyncPhase::kFailed;
  r.finished_unix_ms = now;
  HLOG_INFO("resync %llu %s", (unsigned long long)m.id(),
            m.ok() ? "done: this copy is consistent" : "failed: this copy stays inconsistent");
  return 0;
}

int ApplierImpl::DoQuarantine(const proto::Quarantine& q) {
  uint64_t id;
  {
    std::lock_guard<std::mutex> lock(stats_mu_);
    if (stats_.resync.phase != ResyncPhase::kRunning) return EINVAL;  // only inside a resync
    id = stats_.resync.id;
  }
  if (quarantine_root_.empty()) return EPERM;
  if (!IsValidComponent(q.name()) || !IsValidRelativePath(q.path())) return EINVAL;
  Rid* parent = Find(q.parent());
  if (parent == nullptr) return ESTALE;
  if (!S_ISDIR(parent->type)) return ENOTDIR;
  uint64_t bytes = 0;
  PathFd dir = PathOf(*parent);
  if (!dir) return dir.error();
  Status s =
      SaveToQuarantine(dir.get(), q.name(), quarantine_root_ + "/" + std::to_string(id), q.path(), &bytes);
  if (!s.ok()) {
    HLOG_ERROR("resync %llu: %s", (unsigned long long)id, s.ToString().c_str());
    return EIO;
  }
  HLOG_INFO("resync %llu: saved %s (%llu bytes) to the quarantine before it changes", (unsigned long long)id,
            q.path().c_str(), (unsigned long long)bytes);
  std::lock_guard<std::mutex> lock(stats_mu_);
  ++stats_.resync.quarantined;
  return 0;
}

void ApplierImpl::ApplyQuery(const proto::Op& op, std::vector<proto::Ack>* acks) {
  // Every earlier op of the stream is complete here (writes included, see ApplyWriteRun), so the answer
  // reflects them; flushes still in flight do not matter to reads.
  proto::Ack answer;
  const int err = op.body_case() == proto::Op::kBlockSums ? DoBlockSums(op.block_sums(), &answer)
                                                          : DoListDir(op.list_dir(), &answer);
  FinishOp(op, err, /*deferred=*/false, acks, &answer);
}

int ApplierImpl::DoBlockSums(const proto::BlockSums& b, proto::Ack* answer) {
  Rid* r = Find(b.rid());
  if (r == nullptr) return ESTALE;
  const int fd = IoFd(r, false);  // regular files only: EISDIR, EINVAL otherwise
  if (fd < 0) return -fd;
  struct stat st;
  if (fstat(fd, &st) != 0) return errno;
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  answer->set_file_size(size);
  if (b.offset() >= size || b.length() == 0) return 0;
  const uint64_t end = std::min(b.offset() + b.length(), size);  // Validate() bounded the sum
  const uint64_t block = b.block_size();
  const uint64_t chunk = std::max<uint64_t>(1, kSumsReadChunk / block) * block;  // whole blocks
  const size_t need = static_cast<size_t>(std::min(chunk, end - b.offset()));
  if (sums_buf_size_ < need) {
    sums_buf_.reset(new char[need]);
    sums_buf_size_ = need;
  }
  char* buf = sums_buf_.get();
  answer->mutable_sums()->Reserve(static_cast<int>((end - b.offset() + block - 1) / block));
  for (uint64_t pos = b.offset(); pos < end;) {
    const size_t want = static_cast<size_t>(std::min(chunk, end - pos));
    size_t got = 0;
    while (got < want) {
      const ssize_t n = pread(fd, buf + got, want - got, static_cast<off_t>(pos + got));
      if (n < 0) {
        if (errno == EINTR) continue;
        return errno;
      }
      if (n == 0) break;  // the file shrank since fstat (not through the stream)
      got += static_cast<size_t>(n);
    }
    for (size_t k = 0; k < got; k += block) {
      answer->add_sums(XXH3_64bits(buf + k, std::min<size_t>(block, got - k)));
    }
    pos += got;
    if (got < want) {
      answer->set_file_size(pos);  // the sums end at the end of file as found
      break;
    }
  }
  return 0;
}

int ApplierImpl::DoListDir(const proto::ListDir& l, proto::Ack* answer) {
  Rid* r = Find(l.rid());
  if (r == nullptr) return ESTALE;
  if (!S_ISDIR(r->type)) return ENOTDIR;
  // A descriptor of its own: readdir's position is not shared with the rid's io fd.
  PathFd path = PathOf(*r);
  if (!path) return path.error();
  const int fd = openat(path.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  DIR* dir = fdopendir(fd);
  if (dir == nullptr) {
    const int err = errno;
    close(fd);
    return err;
  }
  std::vector<std::string> names;
  int err = 0;
  for (;;) {
    errno = 0;
    const dirent* d = readdir(dir);
    if (d == nullptr) {
      err = errno;
      break;
    }
    if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0) continue;
    names.emplace_back(d->d_name);
  }
  closedir(dir);
  if (err != 0) return err;
  std::sort(names.begin(), names.end());
  if (l.include_self()) names.insert(names.begin(), ".");
  answer->mutable_entries()->Reserve(static_cast<int>(names.size()));
  for (const std::string& name : names) {
    err = DescribeEntry(path.get(), name, answer);
    if (err == ENOENT) continue;  // gone since readdir: not listed
    if (err != 0) return err;     // no partial answer: the ack carries only the errno
  }
  return 0;
}

int ApplierImpl::DescribeEntry(int dir_fd, const std::string& name, proto::Ack* answer) {
  struct stat st;
  if (fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return errno;
  proto::DirEntry* e = answer->add_entries();
  e->set_name(name);
  e->set_kind(NodeKindOf(st.st_mode));
  e->set_mode(st.st_mode & 07777);
  e->set_uid(st.st_uid);
  e->set_gid(st.st_gid);
  e->set_size(static_cast<uint64_t>(st.st_size));
  e->mutable_mtime()->set_sec(st.st_mtim.tv_sec);
  e->mutable_mtime()->set_nsec(static_cast<uint32_t>(st.st_mtim.tv_nsec));
  e->set_rdev(st.st_rdev);
  e->set_nlink(static_cast<uint32_t>(st.st_nlink));
  e->set_ino(st.st_ino);
  int err = 0;
  if (S_ISLNK(st.st_mode)) {
    std::string* target = e->mutable_symlink_target();
    target->resize(std::max<size_t>(static_cast<size_t>(st.st_size), 255) + 1);
    for (;;) {
      const ssize_t n = readlinkat(dir_fd, name.c_str(), target->data(), target->size());
      if (n < 0) {
        err = errno == EINVAL ? ENOENT : errno;  // EINVAL: replaced by a non-symlink since fstatat
        break;
      }
      if (static_cast<size_t>(n) < target->size()) {
        target->resize(static_cast<size_t>(n));
        break;
      }
      target->resize(target->size() * 2);  // grew since fstatat
    }
  } else {
    // No getxattrat before Linux 6.13: the l* calls on <dir>/<name> through the directory's /proc
    // link (one component, the last not followed) reach the entry itself, device nodes and FIFOs
    // included, without opening it.
    std::string path = ProcPath(dir_fd).buf;
    path += '/';
    path += name;
    err = ReadXattrs(path, e);
  }
  if (err != 0) answer->mutable_entries()->RemoveLast();
  return err;
}

int ApplierImpl::ReadXattrs(const std::string& path, proto::DirEntry* e) {
  if (xattr_names_.empty()) xattr_names_.resize(4096);
  if (xattr_value_.empty()) xattr_value_.resize(4096);
  ssize_t len;
  for (;;) {
    len = llistxattr(path.c_str(), xattr_names_.data(), xattr_names_.size());
    if (len >= 0) break;
    if (errno == ENOTSUP) return 0;
    if (errno != ERANGE) return errno;
    const ssize_t need = llistxattr(path.c_str(), nullptr, 0);  // grew meanwhile: ask, retry
    if (need < 0) return errno == ENOTSUP ? 0 : errno;
    xattr_names_.resize(static_cast<size_t>(need) + 256);
  }
  std::vector<const char*> names;  // NUL-terminated, in xattr_names_
  for (ssize_t i = 0; i < len;) {
    const char* name = xattr_names_.data() + i;
    const size_t n = strnlen(name, static_cast<size_t>(len - i));
    if (n > 0 && i + static_cast<ssize_t>(n) < len) names.push_back(name);
    i += static_cast<ssize_t>(n) + 1;
  }
  std::sort(names.begin(), names.end(), [](const char* a, const char* b) { return strcmp(a, b) < 0; });
  for (const char* name : names) {
    for (;;) {
      const ssize_t n = lgetxattr(path.c_str(), name, xattr_value_.data(), xattr_value_.size());
      if (n >= 0) {
        proto::Xattr* x = e->add_xattrs();
        x->set_name(name);
        x->set_value(xattr_value_.data(), static_cast<size_t>(n));
        break;
      }
      // Removed since the listing, or not readable by this process: not listed.
      if (errno == ENODATA || errno == ENOTSUP || errno == EPERM || errno == EACCES) break;
      if (errno != ERANGE) return errno;
      const ssize_t need = lgetxattr(path.c_str(), name, nullptr, 0);
      if (need < 0) {
        if (errno == ENODATA) break;
        return errno;
      }
      xattr_value_.resize(static_cast<size_t>(need) + 256);
    }
  }
  return 0;
}

int ApplierImpl::ApplyWriteRun(const proto::OpBatch& batch, int begin, int end,
                               std::vector<proto::Ack>* acks) {
  if (direct_writer_ && direct_writes_ && direct_writer_->refused()) StopDirectWrites("direct write", EINVAL);
  end = ResolveWriteSlots(batch, begin, end);
  if (RunQueueable(batch)) {
    QueueDirectWrites(batch);
    AckWrites(batch, acks);
    return end;
  }
  WaitDirectWrites();  // writes queued earlier land first (same file, overlapping ranges)
  OrderWriteSlots(batch);
  // Writes to a single file gain nothing from the ring (one linked chain runs serially, and buffered
  // ext4 writes are punted to an io-wq worker): plain pwrite saves two thread hops per batch, which is
  // most of a small synchronous write's cost.
  const bool one_file = !order_.empty() && slots_[order_.front()].dev == slots_[order_.back()].dev &&
                        slots_[order_.front()].ino == slots_[order_.back()].ino;
  // In chunks of at most ring_entries_, in order, so the order holds across chunks.
  for (size_t start = 0; start < order_.size();) {
    const size_t count = std::min<size_t>(ring_entries_, order_.size() - start);
    if (write_ring_ok_ && !one_file) {
      SubmitWritesToRing(batch, start, count);
    } else {
      for (size_t k = start; k < start + count; ++k) slots_[order_[k]].result = -ECANCELED;
    }
    FinishWritesInOrder(batch, start, count);
    start += count;
  }
  AckWrites(batch, acks);
  return end;
}

// Resolves every write's fd (or its errno). Descriptors evicted from the I/O cache meanwhile stay open
// until the run is over (CloseRetiredIo): the run is cut (the returned end) so that they stay few.
int ApplierImpl::ResolveWriteSlots(const proto::OpBatch& batch, int begin, int end) {
  slots_.clear();
  for (int i = begin; i < end; ++i) {
    if (retired_io_.size() >= kMaxRetiredIoFds) return i;
    const proto::Write& w = batch.ops(i).write();
    WriteSlot slot{i, -1, 0, 0, 0, 0, DirectEligible(w)};
    Rid* r = Find(w.rid());
    if (r == nullptr) {
      slot.err = ESTALE;
    } else {
      int fd = IoFd(r, false);
      if (fd < 0) {
        slot.err = -fd;
      } else {
        slot.fd = fd;
        slot.dev = r->dev;
        slot.ino = r->ino;
      }
    }
    slots_.push_back(slot);
  }
  return end;
}

// Groups the writes with data per inode (stable, so each group keeps seq order): each group becomes one
// linked chain, so overlapping writes land in order while different files proceed in parallel.
void ApplierImpl::OrderWriteSlots(const proto::OpBatch& batch) {
  order_.clear();
  for (size_t k = 0; k < slots_.size(); ++k) {
    if (slots_[k].err == 0 && !batch.ops(slots_[k].op_index).write().data().empty()) order_.push_back(k);
  }
  std::stable_sort(order_.begin(), order_.end(), [this](int a, int b) {
    const WriteSlot& x = slots_[a];
    const WriteSlot& y = slots_[b];
    return x.dev != y.dev ? x.dev < y.dev : x.ino < y.ino;
  });
}

// Submits order_[start, start+count) to the write ring, one linked chain per inode, and reaps them all
// (slot.result). A chain with a direct write is left out whole (result -ECANCELED: FinishWritesInOrder
// writes it, in order). Aborts the process when the ring fails with SQEs that point into the batch.
void ApplierImpl::SubmitWritesToRing(const proto::OpBatch& batch, size_t start, size_t count) {
  auto same_file = [this](size_t a, size_t b) {
    return slots_[order_[a]].dev == slots_[order_[b]].dev && slots_[order_[a]].ino == slots_[order_[b]].ino;
  };
  size_t queued = 0;
  for (size_t group = start; group < start + count;) {
    size_t group_end = group + 1;
    bool direct = slots_[order_[group]].direct;
    for (; group_end < start + count && same_file(group_end, group); ++group_end) {
      direct = direct || slots_[order_[group_end]].direct;
    }
    for (size_t k = group; k < group_end; ++k) {
      WriteSlot& s = slots_[order_[k]];
      s.result = -ECANCELED;
      if (direct) continue;
      const std::string& data = batch.ops(s.op_index).write().data();
      io_uring_sqe* sqe = io_uring_get_sqe(&write_ring_);
      if (sqe == nullptr) {
        // Cannot happen: the ring is empty at the start of a chunk and a chunk fits in it.
        HLOG_ERROR("io_uring write ring full unexpectedly");
        std::abort();
      }
      io_uring_prep_write(sqe, s.fd, data.data(), static_cast<unsigned>(data.size()),
                          batch.ops(s.op_index).write().offset());
      io_uring_sqe_set_data64(sqe, order_[k]);
      if (k + 1 < group_end) sqe->flags |= IOSQE_IO_LINK;
      ++queued;
    }
    group = group_end;
  }
  // The SQEs are in the ring now: they must all be submitted and reaped before the batch (which owns
  // the data buffers) can go away, so retry transient submit errors.
  size_t submitted = 0;
  for (int tries = 0; submitted < queued && tries < 1000; ++tries) {
    int rc = io_uring_submit(&write_ring_);
    if (rc > 0) {
      submitted += static_cast<size_t>(rc);
    } else if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
      // Queued SQEs point into this batch: they must never be submitted after it is gone, and
      // the ring offers no way to withdraw them. Stop rather than risk writing garbage.
      HLOG_ERROR("io_uring submit (writes) failed: %s; stopping", strerror(-rc));
      std::abort();
    }
  }
  if (submitted < queued) {
    HLOG_ERROR("io_uring submit (writes) kept failing; stopping");
    std::abort();
  }
  for (size_t reaped = 0; reaped < submitted;) {
    io_uring_cqe* cqe;
    int wrc = io_uring_wait_cqe(&write_ring_, &cqe);
    if (wrc < 0) {
      if (wrc == -EINTR || wrc == -EAGAIN || wrc == -EBUSY) continue;
      // Unreaped writes would still read this batch's buffers after it is gone, race the pwrite
      // fallback, and could land after a later op read the range (BlockSums): stop, as for a failed
      // submit.
      HLOG_ERROR("io_uring wait (writes) failed: %s; stopping", strerror(-wrc));
      std::abort();
    }
    slots_[io_uring_cqe_get_data64(cqe)].result = cqe->res;
    io_uring_cqe_seen(&write_ring_, cqe);
    ++reaped;
  }
}

// Finishes order_[start, start+count) in chain order: anything short, cancelled (a broken chain, or
// never submitted) or failed is written here, directly when eligible, else with pwrite.
void ApplierImpl::FinishWritesInOrder(const proto::OpBatch& batch, size_t start, size_t count) {
  bool chain_broken = false;
  for (size_t k = start; k < start + count; ++k) {
    WriteSlot& s = slots_[order_[k]];
    if (k > start) {
      const WriteSlot& prev = slots_[order_[k - 1]];
      if (prev.dev != s.dev || prev.ino != s.ino) chain_broken = false;
    }
    const proto::Write& w = batch.ops(s.op_index).write();
    const size_t len = w.data().size();
    if (!chain_broken && s.result >= 0 && static_cast<size_t>(s.result) == len) continue;
    chain_broken = true;
    size_t done = s.result > 0 ? static_cast<size_t>(s.result) : 0;
    if (s.result < 0 && s.result != -ECANCELED && s.result != -EAGAIN && s.result != -EINTR) {
      s.err = -s.result;
      continue;
    }
    s.err = s.direct && done == 0 ? WriteDirect(s.fd, w.data(), w.offset())
                                  : PwriteAll(s.fd, w.data(), w.offset(), done);
  }
}

bool ApplierImpl::DirectEligible(const proto::Write& w) const {
  const uint64_t len = w.data().size();
  return direct_writes_ && len >= kDirectWriteMin && len % kDirectAlign == 0 &&
         w.offset() % kDirectAlign == 0;
}

int ApplierImpl::WriteDirect(int fd, const std::string& data, uint64_t offset) {
  UniqueFd direct(open(ProcPath(fd).buf, O_WRONLY | O_DIRECT | O_CLOEXEC));
  if (!direct) {
    StopDirectWrites("open with O_DIRECT", errno);
    return PwriteAll(fd, data, offset);
  }
  if (!bounce_) {
    bounce_.reset(static_cast<char*>(std::aligned_alloc(kDirectAlign, kBounceBytes)));
    if (!bounce_) return PwriteAll(fd, data, offset);
  }
  for (size_t done = 0; done < data.size();) {
    const size_t n = std::min(kBounceBytes, data.size() - done);
    memcpy(bounce_.get(), data.data() + done, n);
    bool refused = false;
    const int err = WriteAligned(direct.get(), bounce_.get(), n, offset + done, &refused);
    if (refused) StopDirectWrites("direct write", EINVAL);
    if (err != 0) return err;
    done += n;
  }
  return 0;
}

bool ApplierImpl::RunQueueable(const proto::OpBatch& batch) const {
  if (!direct_writer_ || !direct_writes_ || slots_.empty()) return false;
  for (const WriteSlot& s : slots_) {
    const proto::Op& op = batch.ops(s.op_index);
    if (s.err != 0 || !s.direct || op.write().data().size() > kBounceBytes) return false;
    // A time fix must be set after its write and after the earlier ones of the file, which the
    // writer's threads do not order: such a write goes the in-order way. (Live writes ship their
    // mtime later as a Setattr, and the resync at the end of each file: neither has one.)
    if (op.times_size() > 0) return false;
  }
  return true;
}

// Queues every write of the run (slots_, all RunQueueable) in seq order. One whose file cannot be
// reopened for direct I/O stops direct writes and is written here, after the queue (same file).
void ApplierImpl::QueueDirectWrites(const proto::OpBatch& batch) {
  for (WriteSlot& s : slots_) {
    const proto::Op& op = batch.ops(s.op_index);
    const proto::Write& w = op.write();
    DirectWriter::Job job;
    job.fd.Reset(direct_writes_ ? open(ProcPath(s.fd).buf, O_WRONLY | O_DIRECT | O_CLOEXEC) : -1);
    if (!job.fd) {
      if (direct_writes_) StopDirectWrites("open with O_DIRECT", errno);
      WaitDirectWrites();
      s.err = PwriteAll(s.fd, w.data(), w.offset());
      continue;  // acked by AckWrites (and flushed, if dsync) as any buffered write
    }
    job.data = direct_writer_->Acquire();
    if (job.data == nullptr) {
      WaitDirectWrites();
      s.err = PwriteAll(s.fd, w.data(), w.offset());
      continue;
    }
    memcpy(job.data, w.data().data(), w.data().size());
    job.seq = op.seq();
    job.dev = s.dev;
    job.ino = s.ino;
    job.offset = w.offset();
    job.length = w.data().size();
    job.datasync = w.dsync();
    {
      std::lock_guard<std::mutex> lock(flush_mu_);
      ++in_flight_;  // Drain() (StartSession, the destructor) waits for it too
    }
    direct_writer_->Submit(std::move(job));
    s.queued = true;
  }
}

void ApplierImpl::StopDirectWrites(const char* what, int err) {
  direct_writes_ = false;
  HLOG_INFO("large writes applied through the page cache from now on: %s failed (%s)", what, strerror(err));
}

// Acks in seq order; dsync writes get an fdatasync and a late ack. The time fixes go first: a dsync
// write's ack waits for its flush, and nothing need wait for a utimensat after it (the flush does not
// depend on it: fdatasync skips a change of times alone, before or after).
void ApplierImpl::AckWrites(const proto::OpBatch& batch, std::vector<proto::Ack>* acks) {
  for (WriteSlot& s : slots_) {
    const proto::Op& op = batch.ops(s.op_index);
    if (s.queued) {  // its flush comes after its write, on the writer's thread
      {
        std::lock_guard<std::mutex> lock(stats_mu_);
        stats_.bytes_applied += op.write().data().size();
      }
      FinishOp(op, 0, /*deferred=*/true, acks, nullptr, /*times_done=*/true);
      continue;
    }
    const int time_err = ApplyTimeFixes(op);
    bool deferred = false;
    if (s.err == 0 && op.write().dsync()) {
      s.err = SubmitFlush(op.seq(), s.fd, true, &deferred);
    }
    if (s.err == 0) {
      std::lock_guard<std::mutex> lock(stats_mu_);
      stats_.bytes_applied += op.write().data().size();
    }
    FinishOp(op, s.err, deferred, acks, nullptr, /*times_done=*/true, time_err);
  }
}

int ApplierImpl::SubmitFlush(uint64_t seq, int fd, bool datasync, bool* deferred) {
  *deferred = false;
  bool here = !async_flush_;
  if (!here && seq == batch_last_seq_) {
    // The batch's last op and no flush in flight (a lone commit's fsync, an O_DSYNC write): flushed on
    // this thread. Nothing else of the batch waits for it, and a hand-off to a flush thread costs a
    // wake-up (tens of µs on a VM). Under load flushes overlap, and go to the flush threads.
    std::lock_guard<std::mutex> lock(flush_mu_);
    here = in_flight_ == 0;
  }
  int job_fd = here ? -1 : fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (job_fd < 0) {
    // Synchronous (here, or no descriptor left): the op is acked (durable) right away.
    return (datasync ? fdatasync(fd) : fsync(fd)) == 0 ? 0 : errno;
  }
  {
    std::lock_guard<std::mutex> slock(stats_mu_);
    ++stats_.flushes_in_flight;
  }
  {
    std::unique_lock<std::mutex> lock(flush_mu_);
    flush_cv_.wait(lock, [this] { return in_flight_ < kMaxFlushesInFlight; });
    ++in_flight_;
    flush_queue_.push_back({seq, job_fd, datasync});
  }
  flush_queue_cv_.notify_one();
  *deferred = true;
  return 0;
}

void ApplierImpl::Durable(uint64_t seq, int err, const char* what) {
  DurableCallback cb;
  void* ctx;
  {
    std::lock_guard<std::mutex> lock(flush_mu_);
    cb = durable_cb_;
    ctx = durable_ctx_;
  }
  {
    std::lock_guard<std::mutex> lock(stats_mu_);
    ++stats_.ops_applied;
    if (err != 0) RememberErrorLocked(seq, err, what);
    if (std::strcmp(what, "flush") == 0 && stats_.flushes_in_flight > 0) --stats_.flushes_in_flight;
  }
  if (cb != nullptr) cb(ctx, seq, err);
  std::lock_guard<std::mutex> lock(flush_mu_);
  --in_flight_;
  flush_cv_.notify_all();
}

void ApplierImpl::FlushLoop() {
  for (;;) {
    FlushJob job;
    {
      std::unique_lock<std::mutex> lock(flush_mu_);
      flush_queue_cv_.wait(lock, [this] { return stopping_ || !flush_queue_.empty(); });
      if (flush_queue_.empty()) return;
      job = flush_queue_.front();
      flush_queue_.pop_front();
    }
    const int err = (job.datasync ? fdatasync(job.fd) : fsync(job.fd)) == 0 ? 0 : errno;
    close(job.fd);
    Durable(job.seq, err);
  }
}

void ApplierImpl::SyncfsLoop() {
  std::vector<uint64_t> batch;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(flush_mu_);
      syncfs_cv_.wait(lock, [this] { return stopping_ || !syncfs_queue_.empty(); });
      if (syncfs_queue_.empty()) return;
      batch.assign(syncfs_queue_.begin(), syncfs_queue_.end());
      syncfs_queue_.clear();
    }
    // One syncfs covers every request queued before it started.
    const int err = syncfs(root_io_fd_) == 0 ? 0 : errno;
    for (uint64_t seq : batch) Durable(seq, err);
  }
}

void ApplierImpl::Drain() {
  std::unique_lock<std::mutex> lock(flush_mu_);
  flush_cv_.wait(lock, [this] { return in_flight_ == 0; });
}

ApplierStats ApplierImpl::Stats() const {
  std::lock_guard<std::mutex> lock(stats_mu_);
  return stats_;
}

}  // namespace

Status Applier::Create(int root_fd, const ApplierOptions& options, std::unique_ptr<Applier>* out) {
  auto a = std::make_unique<ApplierImpl>(root_fd);
  Status s = a->Init(options);
  if (!s.ok()) return s;
  *out = std::move(a);
  return Status::Ok();
}

}  // namespace hamirror::replicator
