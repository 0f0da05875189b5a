#include "fuse_fs/filesystem.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "common/log.h"
#include "common/proc_path.h"
#include "common/unique_fd.h"
#include "fuse_fs/pending_reply.h"
#include "fuse_fs/uring_transport.h"
#include "replicator/node_kind.h"

namespace hamirror::fs {
namespace {

int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The primary is the only writer of its tree, so the kernel may cache names and attributes for long;
// the secondary's tree changes underneath the kernel, so it caches nothing.
constexpr double kPrimaryTimeout = 86400.0;
constexpr size_t kMaxWrite = 1 << 20;
// Aligned buffers for a primary's large direct writes: writes of 1 MiB in flight at once that way
// (more wait for the disk no faster; the others go through the page cache).
constexpr size_t kLocalDirectBuffers = 4;
static_assert(kMaxWrite <= LocalDirectWrites::kBufferBytes, "a full-size write fits a direct buffer");
// Write-then-fdatasync pairs in a row after which a file's writes are made durable at once (Write).
constexpr uint32_t kLogStreak = 2;

void NoopCallback(void*, const replicator::ShipResult&) {}

void ToProto(const struct timespec& ts, proto::Timespec* out) {
  out->set_sec(ts.tv_sec);
  out->set_nsec(static_cast<uint32_t>(ts.tv_nsec));
}

int StatPath(const PathFd& path, struct stat* st) {
  if (!path) return path.error();
  if (fstatat(path.get(), "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) return errno;
  return 0;
}

// Opens `name` under `parent` as an O_PATH handle without following a symlink, and stats it.
// Returns 0 with *fd set, or an errno (nothing left open).
int OpenEntry(const PathFd& parent, const char* name, UniqueFd* fd, struct stat* st) {
  if (!parent) return parent.error();
  fd->Reset(openat(parent.get(), name, O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!*fd) return errno;
  if (fstatat(fd->get(), "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
    int err = errno;
    fd->Reset();
    return err;
  }
  return 0;
}

struct DirHandle {
  DIR* dp = nullptr;
  off_t offset = 0;
  struct dirent* entry = nullptr;
  int fd = -1;  // dirfd(dp), for fsyncdir
};

Filesystem* Self(fuse_req_t req) { return static_cast<Filesystem*>(fuse_req_userdata(req)); }

// Writes all of buf at off (retrying short writes and EINTR); *done: bytes written. Returns the errno
// that stopped it early (EIO if none was set), 0 when everything was written.
int PwriteAll(int fd, const char* buf, size_t size, off_t off, size_t* done) {
  *done = 0;
  while (*done < size) {
    ssize_t n = pwrite(fd, buf + *done, size - *done, off + static_cast<off_t>(*done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno ? errno : EIO;
    }
    if (n == 0) return EIO;
    *done += static_cast<size_t>(n);
  }
  return 0;
}

}  // namespace

std::string StateFileStem(const std::string& dir) {
  std::string base = dir.substr(dir.find_last_of('/') + 1);
  if (base.empty()) base = "root";
  char hash[17];
  snprintf(hash, sizeof(hash), "%016llx",
           static_cast<unsigned long long>(XXH3_64bits(dir.data(), dir.size())));
  return "fs-" + base + "-" + hash;
}

const char* RoleName(Role role) {
  switch (role) {
    case Role::kPrimary: return "primary";
    case Role::kSecondary: return "secondary";
    case Role::kAlone: return "alone";
  }
  return "?";
}

Filesystem::Filesystem(const FsOptions& options, int root_fd, const struct stat& root_st)
    : options_(options), local_direct_writes_(options.direct_writes, kLocalDirectBuffers) {
  table_.InitRoot(root_fd, root_st, options_.path_fd_budget);
  resync_ = std::make_unique<ResyncEngine>(static_cast<ResyncHost*>(this), options_.resync);
  verify_ = std::make_unique<ResyncEngine>(static_cast<ResyncHost*>(this), options_.resync);
}

Filesystem::~Filesystem() { Stop(); }

Inode& Filesystem::Get(fuse_ino_t ino) {
  if (ino == FUSE_ROOT_ID) return *table_.root();
  return *reinterpret_cast<Inode*>(ino);
}

double Filesystem::EntryTimeout() const { return ReadOnly() ? 0.0 : kPrimaryTimeout; }

// ---------------------------------------------------------------------------------------------------
// Roles

Status Filesystem::Start(Role role) {
  {
    std::lock_guard<std::mutex> change(role_change_mu_);
    if (options_.record_path.empty()) return Status::InvalidArgument("no record path (--state-dir)");
    // Two hamirror-fs on one record would each take the other's zones for their own.
    const std::string lock_path = options_.record_path + ".lock";
    record_lock_.Reset(open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!record_lock_) return Status::FromErrno("open " + lock_path, errno);
    if (flock(record_lock_.get(), LOCK_EX | LOCK_NB) != 0)
      return Status::InvalidArgument("record " + options_.record_path +
                                     " is in use by another hamirror-fs (" + lock_path + " is locked)");
    replicator::ZoneRecordOptions ro;
    ro.path = options_.record_path;
    ro.zone_size = options_.zone_size;
    if (Status s = replicator::ZoneRecord::Open(ro, &record_); !s.ok()) return s;
    if (Status s = CheckRecordIdentity(); !s.ok()) return s;
    replicator::RecordSnapshot snap = record_->Snapshot();
    if (snap.full)
      HLOG_WARN("record %s: %s: the next resync compares everything", ro.path.c_str(),
                snap.full_reason.c_str());
    if (snap.tree)
      HLOG_WARN("record %s: %s: the next resync rescans the tree", ro.path.c_str(), snap.tree_reason.c_str());
    if (role == Role::kSecondary) {
      // A secondary keeps no descriptor per inode (only the root's): one would keep a file the peer
      // unlinked on this disk for as long as this kernel knows it, and readers here need no speed of
      // lookup. (Back to the full budget when it becomes primary in place.)
      table_.SetPathBudget(1);
      // A secondary writes nothing through its record: closed now, a crash of this process cannot make
      // it look unclean (the first change recorded after a switch to primary opens it again).
      if (Status s = record_->Close(); !s.ok()) return s;
      replicator::ReplicationServerOptions so;
      so.listen = options_.listen;
      so.tls = options_.tls;
      so.root_fd = table_.root_fd();
      so.node_name = options_.node_name;
      so.on_applied = [this](const proto::OpBatch& batch) { OnBatchApplied(batch); };
      so.applier.on_resync_begin = [this](proto::Ack* answer) { AnswerResyncBegin(answer); };
      so.applier.quarantine_root = options_.quarantine_dir;
      so.applier.direct_writes = options_.direct_writes;
      so.applier.max_path_fds = options_.path_fd_budget;  // 0: the applier's default
      std::unique_ptr<replicator::ReplicationServer> server;
      if (Status s = replicator::ReplicationServer::Start(so, &server); !s.ok()) return s;
      std::unique_lock<std::shared_mutex> lock(shipper_mu_);
      server_ = std::move(server);
      peer_ = options_.listen;
    } else {
      const std::string peer = role == Role::kPrimary ? options_.peer : "";
      std::unique_ptr<replicator::Shipper> shipper;
      if (Status s = MakeShipper(peer, &shipper); !s.ok()) return s;
      std::unique_lock<std::shared_mutex> lock(shipper_mu_);
      shipper_ = std::move(shipper);
      peer_ = peer;
    }
    role_.store(role);
  }
  if (role == Role::kPrimary) StartResyncIfConnected("replication stream up");
  return Status::Ok();
}

Status Filesystem::CheckRecordIdentity() {
  // The record names files by inode number: it describes one file system. Another one under the
  // same path (restored from a backup, a new disk) would make it name the wrong files.
  struct stat st;
  struct statfs sfs;
  if (fstat(table_.root_fd(), &st) != 0 || fstatfs(table_.root_fd(), &sfs) != 0)
    return Status::FromErrno("stat " + options_.dir, errno);
  int fsid[2];
  memcpy(fsid, &sfs.f_fsid, sizeof(fsid));
  char id[128];
  snprintf(id, sizeof(id), "dev %llu ino %llu fsid %08x%08x\n", (unsigned long long)st.st_dev,
           (unsigned long long)st.st_ino, (unsigned)fsid[0], (unsigned)fsid[1]);
  const std::string path = options_.record_path + ".id";
  std::string old;
  if (FILE* f = fopen(path.c_str(), "re")) {
    char buf[128] = {};
    if (fgets(buf, sizeof(buf), f) != nullptr) old = buf;
    fclose(f);
  }
  if (old == id) return Status::Ok();
  if (!old.empty()) {
    HLOG_WARN("record %s describes another file system (%s, now %s): the next resync compares everything",
              options_.record_path.c_str(), old.substr(0, old.size() - 1).c_str(), id);
    if (Status s = record_->MarkFull("the directory is another file system than the record describes");
        !s.ok())
      return s;
  }
  // Written after the mark: a crash in between leaves the old identity, so the mark is made again.
  const std::string tmp = path + ".tmp";
  UniqueFd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd || write(fd.get(), id, strlen(id)) != static_cast<ssize_t>(strlen(id)) || fsync(fd.get()) != 0 ||
      rename(tmp.c_str(), path.c_str()) != 0)
    return Status::FromErrno("write " + path, errno ? errno : EIO);
  return Status::Ok();
}

Status Filesystem::MakeShipper(const std::string& peer, std::unique_ptr<replicator::Shipper>* out) {
  replicator::ShipperOptions so;
  so.node_name = options_.node_name;
  so.zone_size = options_.zone_size;
  if (peer.empty()) {
    *out = replicator::Shipper::CreateAlone(so);
    return Status::Ok();
  }
  so.peer = peer;
  so.send_timeout = options_.send_timeout;
  so.tls = options_.tls;
  if (options_.manager_grace.count() > 0) {
    so.may_go_alone = [this] {
      return SteadyMs() - control_heard_ms_.load() <= options_.manager_grace.count();
    };
  }
  return replicator::Shipper::Create(so, out);
}

void Filesystem::NoteControlCall() { control_heard_ms_.store(SteadyMs()); }

void Filesystem::StartResyncIfConnected(const char* why) {
  {
    std::shared_lock<std::shared_mutex> lock(shipper_mu_);
    if (!shipper_ || role_.load() != Role::kPrimary || shipper_->Stats().alone) return;
  }
  verify_->Cancel();  // a resync has priority over a verify
  if (Status s = resync_->Start(/*full=*/false, why); !s.ok())
    HLOG_WARN("resync not started: %s", s.ToString().c_str());
}

Status Filesystem::ExpectResync(bool quarantine, bool full) {
  if (role_.load() != Role::kSecondary)
    return Status::InvalidArgument("expect a resync: role secondary only");
  if (quarantine && options_.quarantine_dir.empty())
    return Status::InvalidArgument("no quarantine directory");
  quarantine_next_ = quarantine;
  if (full) full_next_ = true;  // until a resync into this node ends well (a retry stays full)
  if (quarantine)
    HLOG_WARN(
        "the next resync into this node saves what it changes to %s (split brain: this side is discarded)",
        options_.quarantine_dir.c_str());
  return Status::Ok();
}

Status Filesystem::Resync(bool full) {
  {
    std::shared_lock<std::shared_mutex> lock(shipper_mu_);
    if (role_.load() != Role::kPrimary || !shipper_ || shipper_->Stats().alone)
      return Status::InvalidArgument("resync needs role primary with the peer connected");
  }
  verify_->Cancel();
  return resync_->Start(full, full ? "full resync asked for" : "resync asked for");
}

Status Filesystem::Verify(bool repair) {
  {
    std::shared_lock<std::shared_mutex> lock(shipper_mu_);
    if (role_.load() != Role::kPrimary || !shipper_ || shipper_->Stats().alone)
      return Status::InvalidArgument("verify needs role primary with the peer connected");
  }
  if (resync_->running()) return Status::InvalidArgument("a resync is running: verify when it is done");
  return verify_->StartVerify(repair);
}

void Filesystem::RebindAll(replicator::Shipper* shipper) {
  // Called with the namespace lock held exclusively: names cannot change underneath. An inode whose
  // recorded name no longer leads to it (changed underneath while secondary) is skipped: operations on
  // it will be refused by the peer and recorded dirty.
  size_t bound = 0, skipped = 0;
  for (const auto& n : table_.SnapshotParentsFirst()) {
    Inode* parent = table_.FindRid(n.parent_rid);
    struct stat st;
    PathFd parent_path = parent ? table_.Open(*parent) : PathFd();
    if (!parent_path || fstatat(parent_path.get(), n.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
        st.st_dev != n.inode->dev || st.st_ino != n.inode->ino) {
      ++skipped;
      continue;
    }
    proto::Op op;
    auto* b = op.mutable_bind();
    b->set_rid(n.rid);
    b->set_parent(n.parent_rid);
    b->set_name(n.name);
    shipper->Ship(std::move(op), &NoopCallback, nullptr);
    ++bound;
  }
  HLOG_INFO("re-bound %zu live inodes for the new session (%zu skipped: name changed underneath)", bound,
            skipped);
}

Status Filesystem::SetRole(Role role, const std::string& peer) {
  std::unique_lock<std::mutex> change(role_change_mu_);
  Role cur = role_.load();
  if (role == cur && role != Role::kPrimary) return Status::Ok();
  if (role == Role::kSecondary) {
    return Status::InvalidArgument(std::string("cannot switch from ") + RoleName(cur) +
                                   " to secondary in place: unmount and start a secondary");
  }
  if (role == Role::kAlone && cur == Role::kSecondary) {
    role = Role::kPrimary;  // secondary -> alone (a failover): primary without a peer, below
  } else if (role == Role::kAlone) {
    resync_->Cancel();
    verify_->Cancel();
    std::shared_lock<std::shared_mutex> lock(shipper_mu_);
    if (shipper_) shipper_->GoAlone("role set to alone");
    role_.store(Role::kAlone);
    HLOG_INFO("role: alone");
    return Status::Ok();
  }
  // -> primary
  if (cur == Role::kPrimary && peer.empty())
    return Status::InvalidArgument("already primary; give a peer to reconnect");
  if (cur == Role::kPrimary && peer == peer_) {
    std::shared_lock<std::shared_mutex> lock(shipper_mu_);
    if (shipper_ && !shipper_->Stats().alone) return Status::Ok();  // same peer, stream up: nothing to do
  }
  resync_->Cancel();  // a resync (or verify) belongs to one stream
  verify_->Cancel();
  std::unique_ptr<replicator::Shipper> shipper;
  if (Status s = MakeShipper(peer, &shipper); !s.ok()) return s;
  std::unique_ptr<replicator::ReplicationServer> old_server;
  std::unique_ptr<replicator::Shipper> old_shipper;
  {
    // Freeze the tree and the stream: no namespace change and no Ship while live inodes are re-bound.
    std::unique_lock<std::shared_mutex> ns(ns_mu_);
    std::unique_lock<std::shared_mutex> lock(shipper_mu_);
    old_server = std::move(server_);
    if (old_server) old_server->Stop();
    table_.SetPathBudget(options_.path_fd_budget);  // a secondary kept none: see Start
    if (!peer.empty()) RebindAll(shipper.get());
    old_shipper = std::move(shipper_);
    shipper_ = std::move(shipper);
    peer_ = peer;
    role_.store(peer.empty() ? Role::kAlone : Role::kPrimary);
  }
  // The old shipper answers its pending callbacks (kNotShipped) outside the locks.
  old_shipper.reset();
  old_server.reset();
  HLOG_INFO("role: %s%s%s", RoleName(role_.load()), peer.empty() ? "" : ", peer ", peer.c_str());
  change.unlock();
  if (!peer.empty()) StartResyncIfConnected("replication stream up");
  return Status::Ok();
}

void Filesystem::FillRecordStatus(proto::FsStatus* st) const {
  if (!record_) return;
  const replicator::RecordCounts c = record_->Counts();
  proto::RecordInfo* r = st->mutable_record();
  r->set_files(c.files);
  r->set_zones(c.zones);
  r->set_dirs(c.dirs);
  r->set_active_zones(c.active_zones);
  r->set_full(c.full);
  r->set_tree(c.tree);
  r->set_compactions(c.compactions);
  r->set_syncs(c.syncs);
  if (c.full || c.tree) {
    replicator::RecordSnapshot snap = record_->Snapshot();
    r->set_reason(c.full ? snap.full_reason : snap.tree_reason);
  }
  st->set_dirty_files(c.files);
  st->set_dirty_zones(c.zones);
  st->set_namespace_dirty(c.tree || c.full || c.dirs != 0);
  st->set_zone_size(options_.zone_size);
}

namespace {
void FillResyncTarget(const replicator::ReplicationServerStats& s, proto::ResyncTarget* out) {
  out->set_phase(replicator::ResyncPhaseName(s.resync.phase));
  out->set_id(s.resync.id);
  out->set_bytes_total(s.resync.bytes_total);
  out->set_quarantined(s.resync.quarantined);
}
}  // namespace

proto::FsStatus Filesystem::GetStatus() {
  proto::FsStatus st;
  st.set_dir(options_.dir);
  st.set_pid(static_cast<uint32_t>(getpid()));
  st.set_send_timeout_ms(static_cast<uint64_t>(options_.send_timeout.count()));
  FillRecordStatus(&st);
  resync_->Progress(st.mutable_resync());
  verify_->Progress(st.mutable_verify());
  Role role = role_.load();
  std::shared_lock<std::shared_mutex> lock(shipper_mu_);
  st.set_peer(peer_);
  if (role == Role::kSecondary) {
    st.set_role(proto::FS_ROLE_SECONDARY);
    if (server_) {
      auto s = server_->Stats();
      st.set_peer_connected(s.connected);
      st.set_ops_applied(s.ops_applied);
      st.set_bytes_applied(s.bytes_applied);
      st.set_rejected_frames(s.rejected_frames);
      st.set_peer_errors(s.error_acks);
      st.set_last_error(s.last_error);
      FillResyncTarget(s, st.mutable_resync_target());
      st.mutable_resync_target()->set_quarantine(quarantine_next_.load());
      st.mutable_resync_target()->set_quarantine_dir(options_.quarantine_dir);
    }
    return st;
  }
  if (!shipper_) {
    st.set_role(proto::FS_ROLE_ALONE);
    return st;
  }
  auto s = shipper_->Stats();
  st.set_role(role == Role::kPrimary && !s.alone ? proto::FS_ROLE_PRIMARY : proto::FS_ROLE_ALONE);
  st.set_peer_connected(s.connected);
  st.set_ops_shipped(s.ops_acked);
  st.set_syncs_covered(syncs_covered_.load(std::memory_order_relaxed));
  st.set_bytes_shipped(s.bytes_acked);
  st.set_inflight(s.inflight);
  st.set_lag_us(s.lag_us);
  st.set_peer_errors(s.peer_errors);
  st.set_reconnects(s.reconnects);
  st.set_last_error(s.last_error);
  // In sync is a claim backed by the record: the stream is up, the last resync into this peer ended
  // well, and nothing the peer lacks was recorded since.
  st.set_in_sync(role == Role::kPrimary && !s.alone && resync_->done_ok() && record_ && record_->Empty());
  return st;
}

Status Filesystem::PrepareRelease() {
  std::lock_guard<std::mutex> change(role_change_mu_);
  if (!record_) return Status::Unavailable("no record open");
  if (Status s = record_->MarkTree(
          "the directory was released (unmounted) while the module was stopped: changes made to it "
          "meanwhile are unknown");
      !s.ok())
    return s;
  // A secondary keeps its record closed (Start): a crash before the stop must not read back as unclean.
  if (role_.load() == Role::kSecondary) {
    if (Status s = record_->Close(); !s.ok()) return s;
  }
  HLOG_INFO("record %s marked tree: the directory is about to be released", options_.record_path.c_str());
  return Status::Ok();
}

void Filesystem::Stop() {
  resync_->Cancel();
  verify_->Cancel();
  std::lock_guard<std::mutex> change(role_change_mu_);
  std::unique_ptr<replicator::Shipper> shipper;
  std::unique_ptr<replicator::ReplicationServer> server;
  {
    std::shared_lock<std::shared_mutex> lock(shipper_mu_);
    if (shipper_) {
      // Let in-flight operations be acknowledged before the shipper answers the rest kNotShipped.
      auto deadline = std::chrono::steady_clock::now() + options_.send_timeout;
      for (int i = 0; i < 100000 && std::chrono::steady_clock::now() < deadline; ++i) {
        if (shipper_->Stats().inflight == 0) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    }
  }
  {
    std::unique_lock<std::shared_mutex> lock(shipper_mu_);
    shipper = std::move(shipper_);
    server = std::move(server_);
  }
  if (server) server->Stop();
  // Every pending change is answered (its record entry ended) before the record says "clean end".
  shipper.reset();
  server.reset();
  if (record_) {
    if (Status s = record_->Close(); !s.ok()) HLOG_ERROR("record: %s", s.ToString().c_str());
    record_.reset();
  }
}

uint64_t Filesystem::MetaOnlyIno(const proto::Op& op) {
  // A file's mode, owner or times (a Setattr without a size, an fsync's time fix): the resync puts
  // them right per file. Anything else (a namespace change, xattrs, a directory's times) rescans.
  uint64_t rid = 0;
  if (op.has_setattr() && !op.setattr().has_size()) rid = op.setattr().rid();
  if (op.has_fsync()) rid = op.fsync().rid();
  for (const proto::TimeFix& t : op.times())
    if (rid != 0 && t.rid() != rid) return 0;
  Inode* inode = rid != 0 ? table_.FindRid(rid) : nullptr;
  return inode != nullptr && inode->type == S_IFREG ? inode->ino : 0;
}

void Filesystem::Ship(proto::Op&& op, PendingReply* pending) {
  // Binds and forgets change nothing the peer could lack; data ranges were announced to the record
  // by BeginRecord; anything else the peer does not apply is a metadata or namespace difference.
  const bool change = !op.has_bind() && !op.has_forget();
  const bool ns_change = op.has_make_node() || op.has_link() || op.has_unlink() || op.has_rename();
  // Counted as started before it can be answered, as queued once it is (with no stream too: the
  // change was made here all the same). See Inode::durable_full_ns.
  if (ns_change) ns_started_.fetch_add(1);
  std::shared_lock<std::shared_mutex> lock(shipper_mu_);
  if (!shipper_) {
    if (pending) {
      pending->span.Finish(false);
      pending->Done();
    }
  } else if (pending) {
    if (change && pending->span.record == nullptr) {
      pending->span.record = record_.get();
      pending->span.meta_ino = MetaOnlyIno(op);
    }
    shipper_->Ship(std::move(op), &PendingReply::OnShipped, pending);
  } else if (change) {
    if (const uint64_t ino = MetaOnlyIno(op); ino != 0) {
      // A file's times after its data changed (flush, close): common, so told per file.
      PendingReply* p = PendingReply::New(nullptr, PendingReply::Kind::kNone, 1);
      p->span.record = record_.get();
      p->span.meta_ino = ino;
      shipper_->Ship(std::move(op), &PendingReply::OnShipped, p);
    } else {
      shipper_->Ship(std::move(op), &Filesystem::OnChangeShipped, record_.get());
    }
  } else {
    shipper_->Ship(std::move(op), &NoopCallback, nullptr);
  }
  if (ns_change) ns_queued_.fetch_add(1);
}

void Filesystem::OnChangeShipped(void* ctx, const replicator::ShipResult& result) {
  RecordSpan span;
  span.record = static_cast<replicator::ZoneRecord*>(ctx);
  span.Finish(result.outcome == replicator::ShipOutcome::kAcked);
}

int Filesystem::BeginRecord(Inode& inode, uint64_t offset, uint64_t length, RecordSpan* span) {
  if (length == 0) return 0;
  if (Status s = record_->Begin(inode.ino, offset, length, /*sticky=*/false); !s.ok()) {
    // Never a change the record does not cover: the application gets EIO instead.
    HLOG_ERROR("record: %s: change refused", s.ToString().c_str());
    return EIO;
  }
  span->record = record_.get();
  span->ino = inode.ino;
  span->offset = offset;
  span->length = length;
  return 0;
}

bool Filesystem::ResyncShip(proto::Op&& op, replicator::ShipCallback callback, void* ctx) {
  std::shared_lock<std::shared_mutex> lock(shipper_mu_);
  if (!shipper_ || role_.load() != Role::kPrimary) return false;
  shipper_->Ship(std::move(op), callback, ctx);
  return true;
}

void Filesystem::ResyncForget(Inode* inode) {
  proto::Op op;
  op.mutable_forget()->set_rid(inode->rid);
  Ship(std::move(op), nullptr);
  table_.Destroy(inode);
}

void Filesystem::AnswerResyncBegin(proto::Ack* answer) {
  // This node's own record (kept from a time it was primary or alone) names changes the source never
  // saw; it is keyed by this node's inodes, which mean nothing there: ask for a full compare.
  replicator::RecordSnapshot snap = record_->Snapshot();
  if (snap.full) {
    answer->set_need_full(true);
    answer->set_need_full_reason(snap.full_reason);
  } else if (snap.tree || !snap.files.empty() || !snap.dirs.empty()) {
    answer->set_need_full(true);
    answer->set_need_full_reason(snap.tree ? snap.tree_reason
                                           : "this node holds writes the source never saw");
  }
  if (answer->need_full())
    HLOG_WARN("resync into this node: full compare asked for (%s)", answer->need_full_reason().c_str());
  if (full_next_.load() && !answer->need_full()) {
    answer->set_need_full(true);
    answer->set_need_full_reason("full compare asked for (second fullsync)");
  }
  if (quarantine_next_.load()) answer->set_quarantine(true);
}

void Filesystem::DropUnlinkedFromKernel() {
  fuse_session* se = session_.load();
  if (se == nullptr) return;
  // Only a descriptor keeps an unlinked file alive; a secondary keeps none but its root's (Start), so
  // this walk of every known inode happens only where file handles are unavailable.
  if (table_.keeper().held_fds() <= 1) return;
  std::vector<std::pair<fuse_ino_t, std::string>> drops;
  {
    // Exclusive: no Forget deletes an Inode while its descriptor is looked at.
    std::unique_lock<std::shared_mutex> ns(ns_mu_);
    for (const auto& n : table_.SnapshotParentsFirst()) {
      struct stat st;
      if (!n.inode->path.has_fd() ||
          fstatat(n.inode->path.fd(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0 || st.st_nlink != 0)
        continue;
      Inode* parent = table_.FindRid(n.parent_rid);
      if (parent == nullptr) continue;
      drops.emplace_back(parent == table_.root() ? FUSE_ROOT_ID : reinterpret_cast<fuse_ino_t>(parent),
                         n.name);
    }
  }
  // Outside every lock: the kernel may call back into this file system while it invalidates.
  for (const auto& [parent, name] : drops)
    fuse_lowlevel_notify_inval_entry(se, parent, name.c_str(), name.size());
}

void Filesystem::OnBatchApplied(const proto::OpBatch& batch) {
  bool removed = false;
  for (const proto::Op& op : batch.ops()) removed |= op.has_unlink() || op.has_rename();
  if (removed) DropUnlinkedFromKernel();
  for (const proto::Op& op : batch.ops()) {
    if (!op.has_resync_mark() || op.resync_mark().begin() || !op.resync_mark().ok()) continue;
    // This copy now equals the source's: what this node's own record said (from a time it was
    // primary) no longer applies.
    if (Status s = record_->Reset(); !s.ok())
      HLOG_ERROR("record reset after resync: %s", s.ToString().c_str());
    // Reset leaves the file open (no "clean" entry); a secondary keeps its record closed (Start), else
    // a crash of this process would read back as unclean: a full compare at its next resync.
    if (Status s = record_->Close(); !s.ok())
      HLOG_ERROR("record close after resync: %s", s.ToString().c_str());
    full_next_ = false;
    if (quarantine_next_.exchange(false))
      HLOG_WARN("split brain resolved: what this side lost is in %s (MANIFEST per resync)",
                options_.quarantine_dir.c_str());
  }
}

void Filesystem::AddTimeFix(proto::Op* op, uint64_t rid, const struct timespec& mtime) {
  auto* t = op->add_times();
  t->set_rid(rid);
  ToProto(mtime, t->mutable_mtime());
}

void Filesystem::FillEntry(Inode* inode, const struct stat& st, fuse_entry_param* e) {
  e->ino = inode == table_.root() ? FUSE_ROOT_ID : reinterpret_cast<fuse_ino_t>(inode);
  e->attr = st;
  e->attr_timeout = EntryTimeout();
  e->entry_timeout = EntryTimeout();
}

// ---------------------------------------------------------------------------------------------------
// FUSE operations

void Filesystem::Init(fuse_conn_info* conn) {
  // write(2) must be on the peer when it returns: no writeback cache (the kernel would answer writes
  // from its page cache and send them later). The kernel sends a separate SETATTR for O_TRUNC so that
  // truncation is one replicated operation.
  conn->want &= ~(FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_ATOMIC_O_TRUNC | FUSE_CAP_READDIRPLUS |
                  FUSE_CAP_READDIRPLUS_AUTO | FUSE_CAP_HANDLE_KILLPRIV | FUSE_CAP_POSIX_ACL);
  if (conn->capable & FUSE_CAP_SPLICE_WRITE) conn->want |= FUSE_CAP_SPLICE_WRITE;
  if (conn->capable & FUSE_CAP_SPLICE_MOVE) conn->want |= FUSE_CAP_SPLICE_MOVE;
  if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) conn->want |= FUSE_CAP_PARALLEL_DIROPS;
  if (conn->capable & FUSE_CAP_ASYNC_DIO) conn->want |= FUSE_CAP_ASYNC_DIO;
  conn->want &= ~FUSE_CAP_SPLICE_READ;  // writes arrive in memory: we copy them into the Op anyway
  conn->max_write = kMaxWrite;
  conn->max_readahead = kMaxWrite;
  conn->max_background = 256;
  conn->congestion_threshold = 192;
  // Asked for in the INIT reply by the channel (dev_channel.h) when the kernel offers it.
  const bool killpriv_v2 = init_extension_ && (init_extension_->accepted() & kInitHandleKillprivV2);
  privs_left_to_us_.store(killpriv_v2, std::memory_order_relaxed);
  HLOG_INFO("kernel FUSE: handle_killpriv_v2 %s", killpriv_v2 ? "on (privileges dropped by this daemon)"
                                                  : options_.killpriv_v2 ? "not offered by the kernel"
                                                                         : "off (--killpriv-v2 off)");
  const bool allow_mmap = init_extension_ && (init_extension_->accepted() & kInitDirectIoAllowMmap);
  sync_handles_direct_.store(allow_mmap, std::memory_order_relaxed);
  HLOG_INFO("kernel FUSE: direct_io_allow_mmap %s",
            allow_mmap                ? "on (O_DSYNC/O_SYNC handles for writing use direct I/O)"
            : options_.direct_io_mmap ? "not offered by the kernel"
                                      : "off (--direct-io-mmap off)");
}

int Filesystem::LookupLocked(Inode& parent, const char* name, fuse_entry_param* e) {
  UniqueFd fd;
  struct stat st;
  if (int err = OpenEntry(table_.Open(parent), name, &fd, &st)) return err;
  bool created = false;
  Inode* inode = table_.LookupOrInsert(std::move(fd), st, parent.rid, name, &created);
  if (created && !ReadOnly()) {
    // The peer must know the handle before the kernel can use it: Bind goes on the stream before the
    // reply (no need to wait for its ack: the stream is ordered).
    proto::Op op;
    auto* b = op.mutable_bind();
    b->set_rid(inode->rid);
    b->set_parent(parent.rid);
    b->set_name(name);
    Ship(std::move(op), nullptr);
  }
  FillEntry(inode, st, e);
  return 0;
}

void Filesystem::Lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_entry_param e{};
  int err;
  {
    std::shared_lock<std::shared_mutex> ns(ns_mu_);
    err = LookupLocked(Get(parent), name, &e);
  }
  if (err == ENOENT && !ReadOnly()) {
    e.ino = 0;  // negative entry, cached: only this daemon creates names here
    e.entry_timeout = kPrimaryTimeout;
    fuse_reply_entry(req, &e);
  } else if (err) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_entry(req, &e);
  }
}

void Filesystem::Forget(fuse_ino_t ino, uint64_t nlookup) {
  Inode& inode = Get(ino);
  // Shared: a re-bind (exclusive) walks the table's inodes and must not see one deleted under it.
  std::shared_lock<std::shared_mutex> ns(ns_mu_);
  uint64_t rid = table_.Unref(&inode, nlookup);
  if (rid == 0) return;
  if (!ReadOnly()) {
    proto::Op op;
    op.mutable_forget()->set_rid(rid);
    Ship(std::move(op), nullptr);
  }
  table_.Destroy(&inode);
}

void Filesystem::Getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  struct stat st;
  int err =
      fi ? (fstat(static_cast<int>(fi->fh), &st) < 0 ? errno : 0) : StatPath(table_.Open(Get(ino)), &st);
  if (err) {
    fuse_reply_err(req, err);
    return;
  }
  fuse_reply_attr(req, &st, EntryTimeout());
}

void Filesystem::Setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int valid, fuse_file_info* fi) {
  if (ReadOnly()) {
    fuse_reply_err(req, EROFS);
    return;
  }
  Inode& inode = Get(ino);
  const PathFd inode_path = table_.Open(inode);
  if (!inode_path) {
    fuse_reply_err(req, inode_path.error());
    return;
  }
  ProcPath path(inode_path.get());
  int fd = fi ? static_cast<int>(fi->fh) : -1;
  std::unique_lock<std::mutex> lock(inode.data_mu);
  int err = 0;
  if (valid & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
    uid_t uid = (valid & FUSE_SET_ATTR_UID) ? attr->st_uid : static_cast<uid_t>(-1);
    gid_t gid = (valid & FUSE_SET_ATTR_GID) ? attr->st_gid : static_cast<gid_t>(-1);
    if (fchownat(inode_path.get(), "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) err = errno;
  }
  if (!err && (valid & FUSE_SET_ATTR_MODE)) {
    int r = fd >= 0 ? fchmod(fd, attr->st_mode) : fchmodat(AT_FDCWD, path.buf, attr->st_mode, 0);
    if (r < 0) err = errno;
  }
  // A size change announces to the record everything from the smaller of both sizes on.
  RecordSpan span;
  if (!err && (valid & FUSE_SET_ATTR_SIZE)) {
    struct stat before;
    if (StatPath(inode_path, &before) == 0) {
      const uint64_t from = std::min<uint64_t>(before.st_size, attr->st_size);
      err = BeginRecord(inode, from, replicator::ZoneRecord::kToEnd, &span);
    }
  }
  if (!err && (valid & FUSE_SET_ATTR_SIZE)) {
    int r = fd >= 0 ? ftruncate(fd, attr->st_size) : truncate(path.buf, attr->st_size);
    if (r < 0) err = errno;
  }
  if (!err && (valid & FUSE_SET_ATTR_SIZE) && privs_left_to_us_.load(std::memory_order_relaxed) &&
      !inode.no_privs_to_drop) {
    // With HANDLE_KILLPRIV_V2 a truncate's privilege drop is ours too (libfuse 3.14 does not pass the
    // kernel's FATTR_KILL_SUIDGID: decided as for a write). Known to carry none: no reopen.
    UniqueFd reopened(fd >= 0 ? -1 : open(path.buf, O_RDONLY | O_CLOEXEC));
    if (fd >= 0 || reopened) DropPrivsLocked(req, inode, fd >= 0 ? fd : reopened.get());
  }
  if (!err && (valid & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME))) {
    struct timespec tv[2];
    tv[0].tv_sec = tv[1].tv_sec = 0;
    tv[0].tv_nsec = tv[1].tv_nsec = UTIME_OMIT;
    if (valid & FUSE_SET_ATTR_ATIME_NOW)
      tv[0].tv_nsec = UTIME_NOW;
    else if (valid & FUSE_SET_ATTR_ATIME)
      tv[0] = attr->st_atim;
    if (valid & FUSE_SET_ATTR_MTIME_NOW)
      tv[1].tv_nsec = UTIME_NOW;
    else if (valid & FUSE_SET_ATTR_MTIME)
      tv[1] = attr->st_mtim;
    int r;
    if (fd >= 0) {
      r = futimens(fd, tv);
    } else if (inode.type == S_IFLNK) {
      // A symlink's own times cannot be set through its O_PATH descriptor: go through its name.
      uint64_t parent_rid;
      std::string name;
      Inode* parent = table_.GetName(&inode, &parent_rid, &name) ? table_.FindRid(parent_rid) : nullptr;
      PathFd parent_path = parent ? table_.Open(*parent) : PathFd();
      if (parent_path) {
        r = utimensat(parent_path.get(), name.c_str(), tv, AT_SYMLINK_NOFOLLOW);
      } else {
        r = -1;
        errno = ESTALE;
      }
    } else {
      r = utimensat(AT_FDCWD, path.buf, tv, 0);
    }
    if (r < 0) err = errno;
  }
  struct stat st;
  if (!err) err = fd >= 0 ? (fstat(fd, &st) < 0 ? errno : 0) : StatPath(inode_path, &st);
  if (err) {
    span.Finish(/*acked=*/true);  // refused locally: nothing to ship
    lock.unlock();
    fuse_reply_err(req, err);
    return;
  }
  proto::Op op;
  auto* sa = op.mutable_setattr();
  sa->set_rid(inode.rid);
  if (valid & FUSE_SET_ATTR_SIZE) sa->set_size(st.st_size);
  // chown may clear set-id bits: send the resulting mode with it (symlinks have no mode of their own).
  if ((valid & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) && inode.type != S_IFLNK) {
    sa->set_mode(st.st_mode & 07777);
  }
  if (valid & FUSE_SET_ATTR_UID) sa->set_uid(st.st_uid);
  if (valid & FUSE_SET_ATTR_GID) sa->set_gid(st.st_gid);
  if (valid & FUSE_SET_ATTR_ATIME) ToProto(st.st_atim, sa->mutable_atime());
  // mtime always: a truncate moves it, and sending it keeps both sides equal at no extra cost.
  ToProto(st.st_mtim, sa->mutable_mtime());
  inode.mut_gen++;
  inode.mtime_dirty = false;
  inode.no_privs_to_drop = false;
  PendingReply* p = PendingReply::New(req, PendingReply::Kind::kAttr, 1);
  p->entry.attr = st;
  p->attr_timeout = EntryTimeout();
  p->span = std::exchange(span, RecordSpan{});
  Ship(std::move(op), p);
}

void Filesystem::Readlink(fuse_req_t req, fuse_ino_t ino) {
  char buf[PATH_MAX + 1];
  const PathFd link = table_.Open(Get(ino));
  ssize_t n = link ? readlinkat(link.get(), "", buf, sizeof(buf)) : -1;
  if (n < 0) {
    fuse_reply_err(req, link ? errno : link.error());
    return;
  }
  if (n >= static_cast<ssize_t>(sizeof(buf))) {
    fuse_reply_err(req, ENAMETOOLONG);
    return;
  }
  buf[n] = '\0';
  fuse_reply_readlink(req, buf);
}

int Filesystem::EnterNewNode(fuse_req_t req, Inode& parent, const PathFd& parent_path, const char* name,
                             const char* symlink_target, bool created, fuse_entry_param* e, proto::Op* op) {
  struct stat pst;
  if (int err = StatPath(parent_path, &pst)) return err;
  if (created) {
    // The daemon runs as root: give the entry to the caller, with the group rule of setgid directories.
    const fuse_ctx* ctx = fuse_req_ctx(req);
    gid_t gid = (pst.st_mode & S_ISGID) ? pst.st_gid : ctx->gid;
    if (fchownat(parent_path.get(), name, ctx->uid, gid, AT_SYMLINK_NOFOLLOW) < 0) return errno;
  }
  UniqueFd fd;
  struct stat st;
  if (int err = OpenEntry(parent_path, name, &fd, &st)) return err;
  bool inserted = false;
  Inode* inode = table_.LookupOrInsert(std::move(fd), st, parent.rid, name, &inserted);
  if (created) {
    auto* mk = op->mutable_make_node();
    mk->set_parent(parent.rid);
    mk->set_name(name);
    mk->set_rid(inode->rid);
    mk->set_kind(replicator::NodeKindOf(st.st_mode));
    mk->set_mode(st.st_mode & 07777);
    mk->set_uid(st.st_uid);
    mk->set_gid(st.st_gid);
    mk->set_rdev(st.st_rdev);
    if (symlink_target) mk->set_symlink_target(symlink_target);
    AddTimeFix(op, inode->rid, st.st_mtim);
    AddTimeFix(op, parent.rid, pst.st_mtim);
  } else if (inserted) {
    auto* b = op->mutable_bind();
    b->set_rid(inode->rid);
    b->set_parent(parent.rid);
    b->set_name(name);
  }
  FillEntry(inode, st, e);
  return 0;
}

void Filesystem::UndoCreate(const PathFd& parent_path, const char* name, bool is_dir) {
  // The entry was made here but is neither in the table nor shipped: the caller gets the error, so
  // the name must not stay on this side only (the trees would differ).
  if (unlinkat(parent_path.get(), name, is_dir ? AT_REMOVEDIR : 0) == 0) return;
  HLOG_ERROR("cannot remove %s after a failed create (%s): the next resync compares its directory", name,
             strerror(errno));
  struct stat pst;
  if (StatPath(parent_path, &pst) != 0 || !record_->MarkDir(pst.st_ino).ok())
    (void)record_->MarkTree("an entry made after a failed create could not be removed");
}

void Filesystem::Mknod(fuse_req_t req, fuse_ino_t parent_ino, const char* name, mode_t mode, dev_t rdev) {
  if (ReadOnly()) {
    fuse_reply_err(req, EROFS);
    return;
  }
  Inode& parent = Get(parent_ino);
  proto::Op op;
  PendingReply* p = PendingReply::New(req, PendingReply::Kind::kEntry, 1);
  std::unique_lock<std::shared_mutex> ns(ns_mu_);
  const PathFd parent_path = table_.Open(parent);
  int err = parent_path ? 0 : parent_path.error();
  if (err) {
  } else if (S_ISDIR(mode)) {
    if (mkdirat(parent_path.get(), name, mode & 07777) < 0) err = errno;
  } else if (mknodat(parent_path.get(), name, mode, rdev) < 0) {
    err = errno;
  }
  if (!err) {
    err = EnterNewNode(req, parent, parent_path, name, nullptr, true, &p->entry, &op);
    if (err) UndoCreate(parent_path, name, S_ISDIR(mode));
  }
  if (err) {
    ns.unlock();
    p->Done(err);
    return;
  }
  Ship(std::move(op), p);
}

void Filesystem::Mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  Mknod(req, parent, name, S_IFDIR | mode, 0);
}

void Filesystem::Symlink(fuse_req_t req, const char* link, fuse_ino_t parent_ino, const char* name) {
  if (ReadOnly()) {
    fuse_reply_err(req, EROFS);
    return;
  }
  Inode& parent = Get(parent_ino);
  proto::Op op;
  PendingReply* p = PendingReply::New(req, PendingReply::Kind::kEntry, 1);
  std::unique_lock<std::shared_mutex> ns(ns_mu_);
  const PathFd parent_path = table_.Open(parent);
  int err = !parent_path ? parent_path.error() : symlinkat(link, parent_path.get(), name) < 0 ? errno : 0;
  if (!err) {
    err = EnterNewNode(req, parent, parent_path, name, link, true, &p->entry, &op);
    if (err) UndoCreate(parent_path, name, false);
  }
  if (err) {
    ns.unlock();
    p->Done(err);
    return;
  }
  Ship(std::move(op), p);
}

void Filesystem::Link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent_ino, const char* newname) {
  if (ReadOnly()) {
    fuse_reply_err(req, EROFS);
    return;
  }
  Inode& inode = Get(ino);
  Inode& newparent = Get(newparent_ino);
  std::unique_lock<std::shared_mutex> ns(ns_mu_);
  const PathFd inode_path = table_.Open(inode);
  const PathFd newparent_path = table_.Open(newparent);
  int err = !inode_path ? inode_path.error() : !newparent_path ? newparent_path.error() : 0;
  if (!err && linkat(inode_path.get(), "", newparent_path.get(), newname, AT_EMPTY_PATH) < 0) err = errno;
  if (err) {
    ns.unlock();
    fuse_reply_err(req, err);
    return;
  }
  struct stat st, pst;
  err = StatPath(inode_path, &st);
  if (!err) err = StatPath(newparent_path, &pst);
  if (err) {
    ns.unlock();
    fuse_reply_err(req, err);
    return;
  }
  table_.Ref(&inode);
  PendingReply* p = PendingReply::New(req, PendingReply::Kind::kEntry, 1);
  FillEntry(&inode, st, &p->entry);
  proto::Op op;
  auto* l = op.mutable_link();
  l->set_rid(inode.rid);
  l->set_new_parent(newparent.rid);
  l->set_new_name(newname);
  AddTimeFix(&op, newparent.rid, pst.st_mtim);
  Ship(std::move(op), p);
}

void Filesystem::Unlink(fuse_req_t req, fuse_ino_t parent_ino, const char* name, bool is_dir) {
  if (ReadOnly()) {
    fuse_reply_err(req, EROFS);
    return;
  }
  Inode& parent = Get(parent_ino);
  std::unique_lock<std::shared_mutex> ns(ns_mu_);
  const PathFd parent_path = table_.Open(parent);
  struct stat st;
  Inode* victim = nullptr;
  if (parent_path && fstatat(parent_path.get(), name, &st, AT_SYMLINK_NOFOLLOW) == 0)
    victim = table_.Find(st.st_dev, st.st_ino);
  if (!parent_path || unlinkat(parent_path.get(), name, is_dir ? AT_REMOVEDIR : 0) < 0) {
    int err = parent_path ? errno : parent_path.error();
    ns.unlock();
    fuse_reply_err(req, err);
    return;
  }
  // The inode may live on (open, or other hard links) but this name is gone; another name of a hard
  // link is not known here, so it is treated as nameless until the kernel looks it up again.
  if (victim) table_.ClearName(victim);
  struct stat pst;
  proto::Op op;
  auto* u = op.mutable_unlink();
  u->set_parent(parent.rid);
  u->set_name(name);
  u->set_is_dir(is_dir);
  if (StatPath(parent_path, &pst) == 0) AddTimeFix(&op, parent.rid, pst.st_mtim);
  Ship(std::move(op), PendingReply::New(req, PendingReply::Kind::kErrno, 1));
}

void Filesystem::Rename(fuse_req_t req, fuse_ino_t parent_ino, const char* name, fuse_ino_t newparent_ino,
                        const char* newname, unsigned flags) {
  if (ReadOnly()) {
    fuse_reply_err(req, EROFS);
    return;
  }
  if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  Inode& parent = Get(parent_ino);
  Inode& newparent = Get(newparent_ino);
  std::unique_lock<std::shared_mutex> ns(ns_mu_);
  const PathFd parent_path = table_.Open(parent);
  const PathFd newparent_path = table_.Open(newparent);
  if (!parent_path || !newparent_path) {
    ns.unlock();
    fuse_reply_err(req, !parent_path ? parent_path.error() : newparent_path.error());
    return;
  }
  struct stat st;
  Inode* src = nullptr;
  Inode* dst = nullptr;
  uint64_t moved[2] = {0, 0};
  if (fstatat(parent_path.get(), name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
    src = table_.Find(st.st_dev, st.st_ino);
    if (S_ISREG(st.st_mode)) moved[0] = st.st_ino;
  }
  if (fstatat(newparent_path.get(), newname, &st, AT_SYMLINK_NOFOLLOW) == 0) {
    dst = table_.Find(st.st_dev, st.st_ino);
    if (S_ISREG(st.st_mode) && (flags & RENAME_EXCHANGE)) moved[1] = st.st_ino;
  }
  if (renameat2(parent_path.get(), name, newparent_path.get(), newname, flags) < 0) {
    int err = errno;
    ns.unlock();
    fuse_reply_err(req, err);
    return;
  }
  if (src) table_.SetName(src, newparent.rid, newname);
  if (dst && dst != src) {
    if (flags & RENAME_EXCHANGE) {
      table_.SetName(dst, parent.rid, name);
    } else {
      table_.ClearName(dst);
    }
  }
  proto::Op op;
  auto* r = op.mutable_rename();
  r->set_parent(parent.rid);
  r->set_name(name);
  r->set_new_parent(newparent.rid);
  r->set_new_name(newname);
  r->set_flags(flags);
  struct stat pst;
  if (StatPath(parent_path, &pst) == 0) AddTimeFix(&op, parent.rid, pst.st_mtim);
  if (&newparent != &parent && StatPath(newparent_path, &pst) == 0) {
    AddTimeFix(&op, newparent.rid, pst.st_mtim);
  }
  PendingReply* p = PendingReply::New(req, PendingReply::Kind::kErrno, 1);
  p->span.record = record_.get();
  p->span.moved_inos[0] = moved[0];
  p->span.moved_inos[1] = moved[1];
  Ship(std::move(op), p);
}

namespace {
int BackingOpenFlags(int flags) {
  // O_DIRECT: FUSE hands us buffers with no alignment guarantee, and the page cache of the backing
  //   file is coherent with ours; durability comes from the replicated fsync (see docs/datapath.md).
  // O_APPEND: the kernel already resolved the offset; pwrite with O_APPEND would ignore it.
  // O_SYNC/O_DSYNC: handled per write (local fdatasync in parallel with the remote one).
  flags &= ~(O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC | O_DIRECT | O_APPEND | O_SYNC | O_DSYNC | O_NOFOLLOW);
  if ((flags & O_ACCMODE) == O_WRONLY) flags = (flags & ~O_ACCMODE) | O_RDWR;
  return flags | O_CLOEXEC;
}

// Marks a file handle opened in FUSE direct-I/O mode. fh holds the backing descriptor in its low 32
// bits, which is all `static_cast<int>(fi->fh)` reads.
constexpr uint64_t kFhDirectIo = uint64_t{1} << 32;

// An application that opens with O_DIRECT asked to bypass the page cache: FUSE direct I/O does that
// end to end (with --direct-io all, so does every handle opened for writing). It also spares every
// write FUSE requests of the cached path: the GETXATTR of security.capability the kernel's privilege
// check sends first (FUSE never caches its answer without FUSE_HANDLE_KILLPRIV_V2, which libfuse 3.14
// cannot ask for), and, for O_DSYNC, the FSYNC sent after the write. The write handler does both jobs
// itself (DropPrivsLocked, and the flush it does for sync writes anyway). Cost: without
// DIRECT_IO_ALLOW_MMAP the kernel refuses a shared mmap of such a handle; with it (sync_writable) a
// handle opened O_DSYNC/O_SYNC for writing gets direct I/O too, so each of its writes is one FUSE
// request instead of a WRITE and an FSYNC, and its reads are not cached on the mount.
void SetDirectIo(fuse_file_info* fi, bool all_writable, bool sync_writable) {
  const bool writable = (fi->flags & O_ACCMODE) != O_RDONLY;
  const bool sync = (fi->flags & O_DSYNC) != 0;  // O_SYNC includes the O_DSYNC bit
  if (!(fi->flags & O_DIRECT) && !(all_writable && writable) && !(sync_writable && sync && writable)) return;
  fi->direct_io = 1;
  fi->fh |= kFhDirectIo;
}
}  // namespace

void Filesystem::Open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  bool ro = ReadOnly();
  if (ro && ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC))) {
    fuse_reply_err(req, EROFS);
    return;
  }
  Inode& inode = Get(ino);
  const PathFd inode_path = table_.Open(inode);
  int fd = inode_path ? open(ProcPath(inode_path.get()).buf, BackingOpenFlags(fi->flags)) : -1;
  if (fd < 0) {
    fuse_reply_err(req, inode_path ? errno : inode_path.error());
    return;
  }
  fi->fh = static_cast<uint64_t>(fd);
  if (ro) {
    fi->direct_io = 1;  // the applier writes underneath: never serve reads from a stale page cache
    fi->keep_cache = 0;
  } else {
    fi->keep_cache = 1;  // only we write this tree, through this very page cache
    SetDirectIo(fi, options_.direct_io_all, sync_handles_direct_.load(std::memory_order_relaxed));
  }
  fi->noflush = 0;
  if (fuse_reply_open(req, fi) == -ENOENT) close(fd);  // interrupted
}

void Filesystem::Create(fuse_req_t req, fuse_ino_t parent_ino, const char* name, mode_t mode,
                        fuse_file_info* fi) {
  if (ReadOnly()) {
    fuse_reply_err(req, EROFS);
    return;
  }
  Inode& parent = Get(parent_ino);
  proto::Op op;
  PendingReply* p = PendingReply::New(req, PendingReply::Kind::kCreate, 1);
  std::unique_lock<std::shared_mutex> ns(ns_mu_);
  const PathFd parent_path = table_.Open(parent);
  int flags = BackingOpenFlags(fi->flags);
  bool created = true;
  UniqueFd fd;
  int err = parent_path ? 0 : parent_path.error();
  if (!err) {
    fd.Reset(openat(parent_path.get(), name, flags | O_CREAT | O_EXCL | O_NOFOLLOW, mode & 07777));
    if (!fd && errno == EEXIST && !(fi->flags & O_EXCL)) {
      // Raced with a name that appeared underneath: open the existing file, bind instead of making.
      created = false;
      fd.Reset(openat(parent_path.get(), name, flags | O_NOFOLLOW));
    }
    if (!fd) err = errno;
  }
  if (!err) {
    err = EnterNewNode(req, parent, parent_path, name, nullptr, created, &p->entry, &op);
    if (err && created) UndoCreate(parent_path, name, false);
  }
  if (err) {
    ns.unlock();
    p->Done(err);
    return;
  }
  fi->fh = static_cast<uint64_t>(fd.Release());
  fi->keep_cache = 1;
  SetDirectIo(fi, options_.direct_io_all, sync_handles_direct_.load(std::memory_order_relaxed));
  p->file_info = *fi;
  if (!op.has_make_node() && !op.has_bind()) {
    ns.unlock();
    p->Done();
    return;
  }
  Ship(std::move(op), p);
}

void Filesystem::Read(fuse_req_t req, fuse_ino_t /*ino*/, size_t size, off_t off, fuse_file_info* fi) {
  fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
  buf.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  buf.buf[0].fd = static_cast<int>(fi->fh);
  buf.buf[0].pos = off;
  // A ring request is answered through its ring entry's memory: no splice into /dev/fuse.
  fuse_reply_data(req, &buf, HandlingRingRequest() ? FUSE_BUF_NO_SPLICE : FUSE_BUF_SPLICE_MOVE);
}

void Filesystem::Write(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
                       fuse_file_info* fi) {
  if (ReadOnly()) {
    fuse_reply_err(req, EROFS);
    return;
  }
  Inode& inode = Get(ino);
  int fd = static_cast<int>(fi->fh);
  const bool direct = (fi->fh & kFhDirectIo) != 0;
  // The kernel passes O_DSYNC/O_SYNC in the write's flags for synchronous writes (open flags or
  // RWF_DSYNC): the data must be durable on both sides before the reply.
  bool dsync = (fi->flags & (O_DSYNC | O_SYNC)) != 0;
  // A log (MariaDB's redo log and binary log: one write, then fdatasync, again and again) gets its
  // writes made durable as if O_DSYNC: the local and the remote flush then run during the write, and
  // the fdatasync that follows finds nothing left to do on either side (Fsync). That saves a round
  // trip and an operation on both nodes per write. Predicted after kLogStreak such pairs in a row;
  // a second write before the next fsync ends it (that one write paid a flush for nothing).
  // Through the page cache, the kernel sends a write that starts inside a page it does not hold up to
  // date as two requests: that partial page, then the rest. A log append crossing a page boundary
  // does that. Such a head is neither counted nor flushed: the request after it is the write.
  static const size_t kPage = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const uint64_t end = static_cast<uint64_t>(off) + size;
  const bool split_head =
      !direct && size < kPage && static_cast<uint64_t>(off) % kPage != 0 && end % kPage == 0;
  bool predicted = false;
  if (!dsync && !split_head && inode.writes_since_fsync.load(std::memory_order_relaxed) == 0 &&
      inode.fsync_after_one_write_streak.load(std::memory_order_relaxed) >= kLogStreak) {
    dsync = predicted = true;
  }
  if (!dsync) {
    WriteOverlapped(req, inode, fd, buf, size, off, direct, /*count_write=*/!split_head);
    return;
  }
  // O_SYNC (or a log whose flushes are fsync(2)) asks for metadata too: the write and a full fsync are
  // shipped together, one round trip, and flushed with fsync(2) here. The FSYNC the kernel sends after
  // a cached O_SYNC write, or the application's fsync after a log write, then finds everything durable
  // on both sides (Fsync). A direct-I/O write gets no FSYNC from the kernel: this is its only one.
  const bool full_sync =
      (fi->flags & O_SYNC) == O_SYNC || (predicted && inode.log_flush_full.load(std::memory_order_relaxed));
  PendingReply* p = PendingReply::New(req, PendingReply::Kind::kWrite, 2);
  proto::Op op;
  {
    std::lock_guard<std::mutex> lock(inode.data_mu);
    if (int rerr = BeginRecord(inode, static_cast<uint64_t>(off), size, &p->span)) {
      p->Done(rerr);
      p->Done(rerr);
      return;
    }
    if (direct || privs_left_to_us_.load(std::memory_order_relaxed)) DropPrivsLocked(req, inode, fd);
    if (!split_head) CountWriteLocked(inode);
    size_t done = 0;
    int err = WriteLocal(fd, buf, size, off, &done);
    if (done == 0 && size > 0) {
      // Not shipped: complete every part with the error.
      p->span.Finish(/*acked=*/true);  // issued nowhere
      p->Done(err);
      p->Done(err);
      return;
    }
    p->count = done;
    auto* w = op.mutable_write();
    w->set_rid(inode.rid);
    w->set_offset(static_cast<uint64_t>(off));
    w->set_data(buf, done);
    w->set_dsync(true);
    p->durable_inode = &inode;
    p->durable_gen = ++inode.mut_gen;
    inode.mtime_dirty = true;
    // The kernel follows an O_DSYNC write with an FSYNC; with the mtime already shipped here, that
    // FSYNC finds nothing left to send to the peer and costs no second round trip. (This is why a
    // dsync write is applied locally before it is shipped: the mtime is known only afterwards.)
    struct stat st;
    if (fstat(fd, &st) == 0) {
      AddTimeFix(&op, inode.rid, st.st_mtim);
      inode.mtime_dirty = false;
    }
    if (full_sync) {
      // The write's own flush would be fdatasync: the full fsync after it covers both.
      w->set_dsync(false);
      // The write's own record span ends with the write's ack (the fsync's may differ).
      PendingReply* wp = PendingReply::New(req, PendingReply::Kind::kNone, 1);
      wp->span = std::exchange(p->span, RecordSpan{});
      Ship(std::move(op), wp);
      proto::Op sync;
      auto* f = sync.mutable_fsync();
      f->set_rid(inode.rid);
      f->set_datasync(false);
      p->durable_full = true;
      p->durable_ns = ns_queued_.load();
      Ship(std::move(sync), p);
    } else {
      Ship(std::move(op), p);
    }
  }
  FlushLocalPart(fd, full_sync, p);  // in parallel with the peer's flush
}

// The local half of a replicated flush (full: fsync, else fdatasync), beside the peer's: completes p's
// local part with its result (p may complete right here). On a ring queue's thread the ring runs it,
// and the queue serves the requests behind it meanwhile (uring_transport.h, SubmitRingFlush).
void Filesystem::FlushLocalPart(int fd, bool full, PendingReply* p) {
  auto done = [](void* arg, int err) { static_cast<PendingReply*>(arg)->Done(err); };
  if (SubmitRingFlush(fd, full, done, p)) return;
  const int r = full ? fsync(fd) : fdatasync(fd);
  p->Done(r < 0 ? errno : 0);
}

int Filesystem::WriteLocal(int fd, const char* buf, size_t size, off_t off, size_t* done) {
  int err = 0;
  if (local_direct_writes_.Write(fd, buf, size, static_cast<uint64_t>(off), done, &err)) return err;
  return PwriteAll(fd, buf, size, off, done);
}

void Filesystem::WriteOverlapped(fuse_req_t req, Inode& inode, int fd, const char* buf, size_t size,
                                 off_t off, bool direct, bool count_write) {
  // Shipped first, then written locally while the peer applies its copy (as DRBD submits the local and
  // the remote write together): a large write costs max(local, remote) instead of their sum. Both
  // happen under data_mu, so conflicting operations keep the same order on both sides; the reply
  // still waits for both halves (two parts).
  PendingReply* p = PendingReply::New(req, PendingReply::Kind::kWrite, 2);
  int err = 0;
  {
    std::lock_guard<std::mutex> lock(inode.data_mu);
    if (int rerr = BeginRecord(inode, static_cast<uint64_t>(off), size, &p->span)) {
      p->Done(rerr);
      p->Done(rerr);
      return;
    }
    if (direct || privs_left_to_us_.load(std::memory_order_relaxed)) DropPrivsLocked(req, inode, fd);
    if (count_write) CountWriteLocked(inode);
    proto::Op op;
    auto* w = op.mutable_write();
    w->set_rid(inode.rid);
    w->set_offset(static_cast<uint64_t>(off));
    w->set_data(buf, size);
    ++inode.mut_gen;
    inode.mtime_dirty = true;
    Ship(std::move(op), p);
    size_t done = 0;
    err = WriteLocal(fd, buf, size, off, &done);
    if (done < size) {
      // Rare (ENOSPC, EIO): the peer may now hold bytes this node lacks; resync sets them right.
      RecordPeerAhead(inode);
    }
    p->count = done;
    if (done > 0 || size == 0) err = 0;
  }
  p->Done(err);
}

void Filesystem::CountWriteLocked(Inode& inode) {
  if (inode.writes_since_fsync.fetch_add(1, std::memory_order_relaxed) != 0) {
    inode.fsync_after_one_write_streak.store(0, std::memory_order_relaxed);
  }
}

void Filesystem::DropPrivsLocked(fuse_req_t req, Inode& inode, int fd) {
  // What the kernel's file_remove_privs would have done before a cached write: a write by anyone but
  // root drops set-user-ID, and set-group-ID on a group-executable file (or, not group-executable,
  // when the writer is not in the file's group: checked against the primary group only); any write
  // drops a file capability. Once an inode is known to have none of them, this costs nothing.
  if (inode.no_privs_to_drop) return;
  struct stat st;
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) return;
  const fuse_ctx* ctx = fuse_req_ctx(req);
  mode_t drop = 0;
  if (st.st_mode & S_ISUID) drop |= S_ISUID;
  if ((st.st_mode & S_ISGID) && ((st.st_mode & S_IXGRP) || ctx->gid != st.st_gid)) drop |= S_ISGID;
  if (ctx->uid == 0) drop = 0;
  if (drop != 0 && fchmod(fd, st.st_mode & 07777 & ~drop) == 0) {
    proto::Op op;
    auto* sa = op.mutable_setattr();
    sa->set_rid(inode.rid);
    sa->set_mode(st.st_mode & 07777 & ~drop);
    inode.mut_gen++;
    Ship(std::move(op), nullptr);
    st.st_mode &= ~drop;
  }
  bool has_cap = fgetxattr(fd, "security.capability", nullptr, 0) >= 0;
  if (has_cap && fremovexattr(fd, "security.capability") == 0) {
    proto::Op op;
    auto* x = op.mutable_removexattr();
    x->set_rid(inode.rid);
    x->set_name("security.capability");
    inode.mut_gen++;
    Ship(std::move(op), nullptr);
    has_cap = false;
  }
  inode.no_privs_to_drop = !has_cap && !(st.st_mode & (S_ISUID | S_ISGID));
}

void Filesystem::RecordPeerAhead(Inode& inode) {
  // Rare (a local ENOSPC or EIO after shipping): the whole file is compared at the next resync.
  if (Status s = record_->MarkFile(inode.ino); !s.ok()) HLOG_ERROR("record: %s", s.ToString().c_str());
  std::shared_lock<std::shared_mutex> lock(shipper_mu_);
  if (shipper_)
    HLOG_WARN("local write failed after shipping: the peer may hold data this node lacks (file recorded)");
}

void Filesystem::ShipMtimeLocked(Inode& inode, int fd, PendingReply* pending) {
  struct stat st;
  int r = fd >= 0 ? fstat(fd, &st) : (StatPath(table_.Open(inode), &st) == 0 ? 0 : -1);
  if (r < 0) {
    if (pending) pending->Done();
    return;
  }
  proto::Op op;
  auto* sa = op.mutable_setattr();
  sa->set_rid(inode.rid);
  ToProto(st.st_mtim, sa->mutable_mtime());
  inode.mtime_dirty = false;
  Ship(std::move(op), pending);
}

void Filesystem::Flush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Inode& inode = Get(ino);
  if (ReadOnly()) {
    fuse_reply_err(req, 0);
    return;
  }
  std::lock_guard<std::mutex> lock(inode.data_mu);
  if (!inode.mtime_dirty) {
    fuse_reply_err(req, 0);
    return;
  }
  // close(2) returns once the peer has the file's final mtime too.
  ShipMtimeLocked(inode, static_cast<int>(fi->fh), PendingReply::New(req, PendingReply::Kind::kErrno, 1));
}

void Filesystem::Release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Inode& inode = Get(ino);
  int fd = static_cast<int>(fi->fh);
  if (!ReadOnly()) {
    std::lock_guard<std::mutex> lock(inode.data_mu);
    if (inode.mtime_dirty) ShipMtimeLocked(inode, fd, nullptr);
  }
  close(fd);
  fuse_reply_err(req, 0);
}

void Filesystem::Fsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi, bool is_dir) {
  Inode& inode = Get(ino);
  int fd = -1;
  if (fi) fd = is_dir ? reinterpret_cast<DirHandle*>(fi->fh)->fd : static_cast<int>(fi->fh);
  if (ReadOnly()) {
    int r = fd >= 0 ? (datasync ? fdatasync(fd) : fsync(fd)) : 0;
    fuse_reply_err(req, r < 0 ? errno : 0);
    return;
  }
  PendingReply* p = PendingReply::New(req, PendingReply::Kind::kErrno, 2);
  bool nothing_to_do = false;
  {
    std::lock_guard<std::mutex> lock(inode.data_mu);
    const uint32_t writes = inode.writes_since_fsync.exchange(0, std::memory_order_relaxed);
    const uint32_t streak = inode.fsync_after_one_write_streak.load(std::memory_order_relaxed);
    if (writes != 0) {  // (an fsync with nothing written since the last one neither adds nor breaks)
      inode.fsync_after_one_write_streak.store(writes == 1 ? std::min(streak + 1, kLogStreak) : 0,
                                               std::memory_order_relaxed);
      inode.log_flush_full.store(datasync == 0, std::memory_order_relaxed);
    }
    const uint64_t gen = inode.mut_gen;
    // A directory's data is its entries, changed by namespace operations: the full rule for it.
    const bool covered = datasync && !is_dir ? inode.durable_gen.load() >= gen
                                             : inode.durable_full_gen.load() >= gen &&
                                                   inode.durable_full_ns.load() == ns_started_.load();
    if (gen != 0 && covered && !inode.mtime_dirty) {
      // Everything this inode changed is already durable on both sides (a synchronous write just did
      // it, and the kernel or the application follows it with this FSYNC): nothing to send, and the
      // local flush is done too. The flush that raised the counter ran here after the last mutation,
      // and was an fsync(2) wherever durable_full_gen was raised (only a full flush raises it).
      p->Done();
      nothing_to_do = true;
      syncs_covered_.fetch_add(1, std::memory_order_relaxed);
    } else {
      p->durable_inode = &inode;
      p->durable_gen = gen;
      p->durable_full = datasync == 0;
      p->durable_ns = ns_queued_.load();
      proto::Op op;
      auto* f = op.mutable_fsync();
      f->set_rid(inode.rid);
      f->set_datasync(datasync != 0);
      if (inode.mtime_dirty) {
        struct stat st;
        if ((fd >= 0 ? fstat(fd, &st) : (StatPath(table_.Open(inode), &st) ? -1 : 0)) == 0) {
          AddTimeFix(&op, inode.rid, st.st_mtim);
          inode.mtime_dirty = false;
        }
      }
      Ship(std::move(op), p);
    }
  }
  if (nothing_to_do) {
    // (A cache flush of an unchanged file still costs the device a flush: ~100 µs here.)
    p->Done();
    return;
  }
  if (fd >= 0) {
    FlushLocalPart(fd, datasync == 0, p);
    return;
  }
  // No handle: flush through a descriptor of our own. Failing to open one fails the flush (it must not
  // count as durable).
  const PathFd inode_path = table_.Open(inode);
  UniqueFd tmp(inode_path ? openat(inode_path.get(), ".", O_RDONLY | O_CLOEXEC) : -1);
  int err = inode_path ? 0 : inode_path.error();
  if (!err && (!tmp || fsync(tmp.get()) < 0)) err = errno;
  p->Done(err);
}

void Filesystem::Opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  const PathFd dir_path = table_.Open(Get(ino));
  int fd = dir_path ? openat(dir_path.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
  if (fd < 0) {
    fuse_reply_err(req, dir_path ? errno : dir_path.error());
    return;
  }
  auto* d = new DirHandle;
  d->dp = fdopendir(fd);
  if (d->dp == nullptr) {
    int err = errno;
    close(fd);
    delete d;
    fuse_reply_err(req, err);
    return;
  }
  d->fd = fd;
  fi->fh = reinterpret_cast<uint64_t>(d);
  fi->keep_cache = 0;
  fi->cache_readdir = 0;
  if (fuse_reply_open(req, fi) == -ENOENT) {
    closedir(d->dp);
    delete d;
  }
}

void Filesystem::Readdir(fuse_req_t req, fuse_ino_t /*ino*/, size_t size, off_t off, fuse_file_info* fi) {
  auto* d = reinterpret_cast<DirHandle*>(fi->fh);
  std::vector<char> buf(size);
  size_t used = 0;
  if (off != d->offset) {
    seekdir(d->dp, off);
    d->entry = nullptr;
    d->offset = off;
  }
  while (true) {
    if (!d->entry) {
      errno = 0;
      d->entry = readdir(d->dp);
      if (!d->entry) {
        if (errno && used == 0) {
          fuse_reply_err(req, errno);
          return;
        }
        break;
      }
    }
    struct stat st {};
    st.st_ino = d->entry->d_ino;
    st.st_mode = static_cast<mode_t>(d->entry->d_type) << 12;
    off_t next = d->entry->d_off;
    size_t n = fuse_add_direntry(req, buf.data() + used, size - used, d->entry->d_name, &st, next);
    if (n > size - used) break;
    used += n;
    d->entry = nullptr;
    d->offset = next;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void Filesystem::Releasedir(fuse_req_t req, fuse_ino_t /*ino*/, fuse_file_info* fi) {
  auto* d = reinterpret_cast<DirHandle*>(fi->fh);
  closedir(d->dp);
  delete d;
  fuse_reply_err(req, 0);
}

void Filesystem::Statfs(fuse_req_t req, fuse_ino_t ino) {
  struct statvfs sv;
  const PathFd path = table_.Open(Get(ino));
  if (!path || fstatvfs(path.get(), &sv) < 0) {
    fuse_reply_err(req, path ? errno : path.error());
    return;
  }
  fuse_reply_statfs(req, &sv);
}

void Filesystem::Setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                          int flags) {
  if (ReadOnly()) {
    fuse_reply_err(req, EROFS);
    return;
  }
  Inode& inode = Get(ino);
  const PathFd inode_path = table_.Open(inode);
  std::unique_lock<std::mutex> lock(inode.data_mu);
  if (!inode_path || setxattr(ProcPath(inode_path.get()).buf, name, value, size, flags) < 0) {
    int err = inode_path ? errno : inode_path.error();
    lock.unlock();
    fuse_reply_err(req, err);
    return;
  }
  proto::Op op;
  auto* x = op.mutable_setxattr();
  x->set_rid(inode.rid);
  x->set_name(name);
  x->set_value(value, size);
  x->set_flags(flags);
  inode.mut_gen++;
  inode.no_privs_to_drop = false;
  Ship(std::move(op), PendingReply::New(req, PendingReply::Kind::kErrno, 1));
}

// Answers GETXATTR/LISTXATTR: query(path, buf, size) is getxattr or listxattr on the inode's path;
// size 0 asks for the needed size only.
template <typename Query>
void Filesystem::ReplyXattrQuery(fuse_req_t req, fuse_ino_t ino, size_t size, Query query) {
  const PathFd inode_path = table_.Open(Get(ino));
  if (!inode_path) {
    fuse_reply_err(req, inode_path.error());
    return;
  }
  ProcPath path(inode_path.get());
  std::vector<char> buf(size);
  ssize_t n = query(path.buf, size ? buf.data() : nullptr, size);
  if (n < 0)
    fuse_reply_err(req, errno);
  else if (size == 0)
    fuse_reply_xattr(req, static_cast<size_t>(n));
  else
    fuse_reply_buf(req, buf.data(), static_cast<size_t>(n));
}

void Filesystem::Getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  ReplyXattrQuery(req, ino, size,
                  [name](const char* path, char* buf, size_t n) { return getxattr(path, name, buf, n); });
}

void Filesystem::Listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  ReplyXattrQuery(req, ino, size,
                  [](const char* path, char* buf, size_t n) { return listxattr(path, buf, n); });
}

void Filesystem::Removexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  if (ReadOnly()) {
    fuse_reply_err(req, EROFS);
    return;
  }
  Inode& inode = Get(ino);
  const PathFd inode_path = table_.Open(inode);
  std::unique_lock<std::mutex> lock(inode.data_mu);
  if (!inode_path || removexattr(ProcPath(inode_path.get()).buf, name) < 0) {
    int err = inode_path ? errno : inode_path.error();
    lock.unlock();
    fuse_reply_err(req, err);
    return;
  }
  proto::Op op;
  auto* x = op.mutable_removexattr();
  x->set_rid(inode.rid);
  x->set_name(name);
  inode.mut_gen++;
  Ship(std::move(op), PendingReply::New(req, PendingReply::Kind::kErrno, 1));
}

void Filesystem::Fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                           fuse_file_info* fi) {
  if (ReadOnly()) {
    fuse_reply_err(req, EROFS);
    return;
  }
  Inode& inode = Get(ino);
  PendingReply* p = PendingReply::New(req, PendingReply::Kind::kErrno, 1);
  std::unique_lock<std::mutex> lock(inode.data_mu);
  int err = BeginRecord(inode, static_cast<uint64_t>(offset), static_cast<uint64_t>(length), &p->span);
  if (!err && fallocate(static_cast<int>(fi->fh), mode, offset, length) < 0) err = errno;
  if (err) {
    p->span.Finish(/*acked=*/true);  // nothing changed anywhere
    lock.unlock();
    p->Done(err);
    return;
  }
  proto::Op op;
  auto* f = op.mutable_fallocate();
  f->set_rid(inode.rid);
  f->set_mode(mode);
  f->set_offset(static_cast<uint64_t>(offset));
  f->set_length(static_cast<uint64_t>(length));
  inode.mut_gen++;
  inode.mtime_dirty = true;
  Ship(std::move(op), p);
}

void Filesystem::CopyFileRange(fuse_req_t req, fuse_ino_t ino_in, off_t off_in, fuse_file_info* fi_in,
                               fuse_ino_t ino_out, off_t off_out, fuse_file_info* fi_out, size_t len,
                               int flags) {
  if (ReadOnly()) {
    fuse_reply_err(req, EROFS);
    return;
  }
  Inode& in = Get(ino_in);
  Inode& out = Get(ino_out);
  // Both locks: a write to the source between the local copy and Ship would otherwise be copied by
  // the peer but not by us. Address order avoids deadlocks.
  std::unique_lock<std::mutex> l1(&in < &out ? in.data_mu : out.data_mu, std::defer_lock);
  std::unique_lock<std::mutex> l2(&in < &out ? out.data_mu : in.data_mu, std::defer_lock);
  l1.lock();
  if (&in != &out) l2.lock();
  PendingReply* p = PendingReply::New(req, PendingReply::Kind::kWrite, 1);
  int err = BeginRecord(out, static_cast<uint64_t>(off_out), len, &p->span);
  loff_t oi = off_in, oo = off_out;
  ssize_t n = err ? -1
                  : copy_file_range(static_cast<int>(fi_in->fh), &oi, static_cast<int>(fi_out->fh), &oo, len,
                                    static_cast<unsigned>(flags));
  if (n < 0 && !err) err = errno;
  if (n <= 0) {
    p->span.Finish(/*acked=*/true);  // nothing changed anywhere
    if (l2.owns_lock()) l2.unlock();
    l1.unlock();
    p->count = 0;
    p->Done(err);
    return;
  }
  p->count = static_cast<size_t>(n);
  proto::Op op;
  auto* c = op.mutable_copy_range();
  c->set_rid_in(in.rid);
  c->set_offset_in(static_cast<uint64_t>(off_in));
  c->set_rid_out(out.rid);
  c->set_offset_out(static_cast<uint64_t>(off_out));
  c->set_length(static_cast<uint64_t>(n));
  out.mut_gen++;
  out.mtime_dirty = true;
  Ship(std::move(op), p);
}

void Filesystem::Lseek(fuse_req_t req, fuse_ino_t /*ino*/, off_t off, int whence, fuse_file_info* fi) {
  off_t r = lseek(static_cast<int>(fi->fh), off, whence);
  if (r < 0)
    fuse_reply_err(req, errno);
  else
    fuse_reply_lseek(req, r);
}

// ---------------------------------------------------------------------------------------------------
// Trampolines

namespace {

fuse_lowlevel_ops MakeOps() {
  fuse_lowlevel_ops ops{};
  ops.init = [](void* userdata, fuse_conn_info* conn) { static_cast<Filesystem*>(userdata)->Init(conn); };
  ops.lookup = [](fuse_req_t req, fuse_ino_t parent, const char* name) {
    Self(req)->Lookup(req, parent, name);
  };
  ops.forget = [](fuse_req_t req, fuse_ino_t ino, uint64_t n) {
    Self(req)->Forget(ino, n);
    fuse_reply_none(req);
  };
  ops.forget_multi = [](fuse_req_t req, size_t count, fuse_forget_data* forgets) {
    for (size_t i = 0; i < count; ++i) Self(req)->Forget(forgets[i].ino, forgets[i].nlookup);
    fuse_reply_none(req);
  };
  ops.getattr = [](fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) { Self(req)->Getattr(req, ino, fi); };
  ops.setattr = [](fuse_req_t req, fuse_ino_t ino, struct stat* attr, int valid, fuse_file_info* fi) {
    Self(req)->Setattr(req, ino, attr, valid, fi);
  };
  ops.readlink = [](fuse_req_t req, fuse_ino_t ino) { Self(req)->Readlink(req, ino); };
  ops.mknod = [](fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
    Self(req)->Mknod(req, parent, name, mode, rdev);
  };
  ops.mkdir = [](fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
    Self(req)->Mkdir(req, parent, name, mode);
  };
  ops.unlink = [](fuse_req_t req, fuse_ino_t parent, const char* name) {
    Self(req)->Unlink(req, parent, name, false);
  };
  ops.rmdir = [](fuse_req_t req, fuse_ino_t parent, const char* name) {
    Self(req)->Unlink(req, parent, name, true);
  };
  ops.symlink = [](fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
    Self(req)->Symlink(req, link, parent, name);
  };
  ops.rename = [](fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
                  const char* newname,
                  unsigned int flags) { Self(req)->Rename(req, parent, name, newparent, newname, flags); };
  ops.link = [](fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
    Self(req)->Link(req, ino, newparent, newname);
  };
  ops.open = [](fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) { Self(req)->Open(req, ino, fi); };
  ops.read = [](fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
    Self(req)->Read(req, ino, size, off, fi);
  };
  ops.write = [](fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
                 fuse_file_info* fi) { Self(req)->Write(req, ino, buf, size, off, fi); };
  ops.flush = [](fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) { Self(req)->Flush(req, ino, fi); };
  ops.release = [](fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) { Self(req)->Release(req, ino, fi); };
  ops.fsync = [](fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
    Self(req)->Fsync(req, ino, datasync, fi, false);
  };
  ops.opendir = [](fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) { Self(req)->Opendir(req, ino, fi); };
  ops.readdir = [](fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
    Self(req)->Readdir(req, ino, size, off, fi);
  };
  ops.releasedir = [](fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    Self(req)->Releasedir(req, ino, fi);
  };
  ops.fsyncdir = [](fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
    Self(req)->Fsync(req, ino, datasync, fi, true);
  };
  ops.statfs = [](fuse_req_t req, fuse_ino_t ino) { Self(req)->Statfs(req, ino); };
  ops.setxattr = [](fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                    int flags) { Self(req)->Setxattr(req, ino, name, value, size, flags); };
  ops.getxattr = [](fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
    Self(req)->Getxattr(req, ino, name, size);
  };
  ops.listxattr = [](fuse_req_t req, fuse_ino_t ino, size_t size) { Self(req)->Listxattr(req, ino, size); };
  ops.removexattr = [](fuse_req_t req, fuse_ino_t ino, const char* name) {
    Self(req)->Removexattr(req, ino, name);
  };
  ops.create = [](fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi) {
    Self(req)->Create(req, parent, name, mode, fi);
  };
  ops.fallocate = [](fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                     fuse_file_info* fi) { Self(req)->Fallocate(req, ino, mode, offset, length, fi); };
  ops.copy_file_range = [](fuse_req_t req, fuse_ino_t ino_in, off_t off_in, fuse_file_info* fi_in,
                           fuse_ino_t ino_out, off_t off_out, fuse_file_info* fi_out, size_t len, int flags) {
    Self(req)->CopyFileRange(req, ino_in, off_in, fi_in, ino_out, off_out, fi_out, len, flags);
  };
  ops.lseek = [](fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info* fi) {
    Self(req)->Lseek(req, ino, off, whence, fi);
  };
  return ops;
}

}  // namespace

const fuse_lowlevel_ops& Filesystem::Ops() {
  static const fuse_lowlevel_ops ops = MakeOps();
  return ops;
}

}  // namespace hamirror::fs
