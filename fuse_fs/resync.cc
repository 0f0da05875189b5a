#include "fuse_fs/resync.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <tuple>
#include <vector>

#include "common/log.h"
#include "common/proc_path.h"
#include "common/unique_fd.h"
#include "fuse_fs/chunk_reader.h"
#include "replicator/node_kind.h"

namespace hamirror::fs {
namespace {

using Clock = std::chrono::steady_clock;
using replicator::ShipOutcome;
using replicator::ShipResult;

void ToProto(const struct timespec& ts, proto::Timespec* out) {
  out->set_sec(ts.tv_sec);
  out->set_nsec(static_cast<uint32_t>(ts.tv_nsec));
}

bool SameTime(const struct timespec& a, const proto::Timespec& b) {
  return a.tv_sec == b.sec() && static_cast<uint32_t>(a.tv_nsec) == b.nsec();
}

// The answer to one query shipped on the stream. Shared between the waiting engine and the shipper's
// callback, so that neither outlives the other's use of it.
struct Reply {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  ShipOutcome outcome = ShipOutcome::kNotShipped;
  int peer_errno = 0;
  bool answered = false;  // an ack message carried the answer (else it must be asked again)
  proto::Ack ack;
};

void OnReply(void* ctx, const ShipResult& result) {
  auto* holder = static_cast<std::shared_ptr<Reply>*>(ctx);
  std::shared_ptr<Reply> r = std::move(*holder);
  delete holder;
  std::lock_guard<std::mutex> lock(r->mu);
  r->outcome = result.outcome;
  r->peer_errno = result.peer_errno;
  if (result.outcome == ShipOutcome::kAcked && result.reply != nullptr) {
    r->ack = *result.reply;
    r->answered = true;
  }
  r->done = true;
  r->cv.notify_all();
}

// A local directory entry with what the peer's ListDir answers.
struct LocalEntry {
  std::string name;
  struct stat st;
  std::string link_target;
  std::vector<std::pair<std::string, std::string>> xattrs;  // sorted by name
};

void ReadXattrs(int path_fd, std::vector<std::pair<std::string, std::string>>* out) {
  ProcPath p(path_fd);
  std::vector<char> names(4096);
  ssize_t n = listxattr(p.buf, names.data(), names.size());
  if (n < 0 && errno == ERANGE) {
    n = listxattr(p.buf, nullptr, 0);
    if (n > 0) {
      names.resize(static_cast<size_t>(n));
      n = listxattr(p.buf, names.data(), names.size());
    }
  }
  for (ssize_t i = 0; n > 0 && i < n;) {
    std::string name(&names[static_cast<size_t>(i)]);
    i += static_cast<ssize_t>(name.size()) + 1;
    ssize_t vn = getxattr(p.buf, name.c_str(), nullptr, 0);
    if (vn < 0) continue;
    std::string value(static_cast<size_t>(vn), '\0');
    vn = getxattr(p.buf, name.c_str(), value.data(), value.size());
    if (vn < 0) continue;
    value.resize(static_cast<size_t>(vn));
    out->emplace_back(std::move(name), std::move(value));
  }
  std::sort(out->begin(), out->end());
}

// Lists directory dir (O_PATH is fine). with_details: symlink targets and xattrs too.
int ListLocal(const PathFd& dir, bool with_details, std::vector<LocalEntry>* out) {
  if (!dir) return dir.error();
  UniqueFd fd(openat(dir.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return errno;
  DIR* dp = fdopendir(fd.get());
  if (dp == nullptr) return errno;
  fd.Release();  // closedir closes it
  while (struct dirent* d = readdir(dp)) {
    if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0) continue;
    LocalEntry e;
    e.name = d->d_name;
    if (fstatat(dirfd(dp), d->d_name, &e.st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // gone meanwhile
    if (with_details) {
      if (S_ISLNK(e.st.st_mode)) {
        char buf[PATH_MAX + 1];
        ssize_t n = readlinkat(dirfd(dp), d->d_name, buf, sizeof(buf) - 1);
        if (n >= 0) e.link_target.assign(buf, static_cast<size_t>(n));
      } else {
        UniqueFd pfd(openat(dirfd(dp), d->d_name, O_PATH | O_NOFOLLOW | O_CLOEXEC));
        if (pfd) ReadXattrs(pfd.get(), &e.xattrs);
      }
    }
    out->push_back(std::move(e));
  }
  closedir(dp);
  std::sort(out->begin(), out->end(),
            [](const LocalEntry& a, const LocalEntry& b) { return a.name < b.name; });
  return 0;
}

const std::string& NameOf(const LocalEntry& e) { return e.name; }
const std::string& NameOf(const std::string& s) { return s; }

bool SameXattrs(const LocalEntry& l, const proto::DirEntry& t) {
  if (static_cast<size_t>(t.xattrs_size()) != l.xattrs.size()) return false;
  for (size_t i = 0; i < l.xattrs.size(); ++i) {
    const proto::Xattr& x = t.xattrs(static_cast<int>(i));
    if (x.name() != l.xattrs[i].first || x.value() != l.xattrs[i].second) return false;
  }
  return true;
}

// The entry must be removed and made again on the peer: another kind, another symlink target or
// another device.
bool MustReplace(const LocalEntry& l, const proto::DirEntry& t) {
  if (replicator::NodeKindOf(l.st.st_mode) != t.kind()) return true;
  if (S_ISLNK(l.st.st_mode) && l.link_target != t.symlink_target()) return true;
  if ((S_ISCHR(l.st.st_mode) || S_ISBLK(l.st.st_mode)) && static_cast<uint64_t>(l.st.st_rdev) != t.rdev())
    return true;
  return false;
}

}  // namespace

// One resync: the walk, its counters and its fixes in flight.
struct ResyncEngine::Run {
  Run(ResyncEngine* e, ResyncHost* h, const ResyncOptions& o) : engine(e), host(h), opt(o) {}
  ResyncEngine* engine;
  ResyncHost* host;
  const ResyncOptions& opt;
  bool full = false;
  bool tree = false;
  bool quarantine = false;  // the peer is the discarded side of a split brain (SaveOnPeer)
  bool verify = false;      // compare only: report differences (Differ), fix nothing
  bool repair = false;      // verify: record what differs
  replicator::RecordSnapshot snap;
  std::mutex error_mu;
  std::string error;  // first fatal problem: the run stops (under error_mu)
  std::atomic<bool> failed{false};

  // Fixes in flight (their callbacks count problems).
  std::mutex fix_mu;
  std::condition_variable fix_cv;
  uint64_t fixes_pending = 0;
  std::atomic<uint64_t> fix_errors{0};
  std::atomic<bool> lost{false};

  bool Stopped() const { return failed.load() || lost.load() || engine->cancel_.load(); }
  void Fail(const std::string& why) {
    std::lock_guard<std::mutex> lock(error_mu);
    if (error.empty()) error = why;
    failed = true;
  }
  std::string Error() {
    std::lock_guard<std::mutex> lock(error_mu);
    return error;
  }

  void AddProgress(uint64_t done, uint64_t sent, uint64_t wire) {
    std::lock_guard<std::mutex> lock(engine->mu_);
    auto& p = engine->progress_;
    p.set_bytes_done(p.bytes_done() + done);
    p.set_bytes_sent(p.bytes_sent() + sent);
    p.set_wire_bytes(p.wire_bytes() + wire);
  }

  static void OnFix(void* ctx, const ShipResult& result) {
    auto* run = static_cast<Run*>(ctx);
    if (result.outcome == ShipOutcome::kNotShipped) run->lost = true;
    if (result.outcome == ShipOutcome::kPeerError) run->fix_errors++;
    std::lock_guard<std::mutex> lock(run->fix_mu);
    if (--run->fixes_pending == 0) run->fix_cv.notify_all();
  }

  // Ships a fix (no answer awaited; its outcome is counted).
  void Fix(proto::Op&& op) {
    {
      std::lock_guard<std::mutex> lock(fix_mu);
      ++fixes_pending;
    }
    if (!host->ResyncShip(std::move(op), &Run::OnFix, this)) {
      lost = true;
      std::lock_guard<std::mutex> lock(fix_mu);
      if (--fixes_pending == 0) fix_cv.notify_all();
    }
  }

  void WaitFixes() {
    std::unique_lock<std::mutex> lock(fix_mu);
    fix_cv.wait(lock, [this] { return fixes_pending == 0; });
  }

  // Ships a query; wait on the returned Reply (null: no stream).
  std::shared_ptr<Reply> Ask(proto::Op&& op) {
    auto r = std::make_shared<Reply>();
    auto* holder = new std::shared_ptr<Reply>(r);
    if (!host->ResyncShip(std::move(op), &OnReply, holder)) {
      delete holder;
      lost = true;
      return nullptr;
    }
    return r;
  }

  // Waits for a query's answer. False: none (the run is failed or the question must be asked again,
  // *retry says which).
  bool Await(const std::shared_ptr<Reply>& r, bool* retry) {
    *retry = false;
    if (r == nullptr) return false;
    std::unique_lock<std::mutex> lock(r->mu);
    r->cv.wait(lock, [&r] { return r->done; });
    if (r->outcome == ShipOutcome::kNotShipped) {
      lost = true;
      return false;
    }
    if (r->outcome == ShipOutcome::kPeerError) {
      fix_errors++;
      return false;
    }
    if (!r->answered) {
      *retry = true;  // acked through a reconnect's applied_through: the answer was lost
      return false;
    }
    return true;
  }

  // Asks (again while the answer is lost in a reconnect, bounded) and waits. op is copied per try.
  bool Query(const proto::Op& op, proto::Ack* answer) {
    for (int attempt = 0; attempt < 5 && !Stopped(); ++attempt) {
      proto::Op copy = op;
      auto r = Ask(std::move(copy));
      bool retry = false;
      if (Await(r, &retry)) {
        answer->Swap(&r->ack);
        return true;
      }
      if (!retry) return false;
    }
    return false;
  }

  // A lookup reference to parent/name (binding it on the peer when new and `bind`), as a kernel lookup
  // takes one. ns_held: the caller holds the namespace lock exclusively (else it is taken shared).
  Inode* Acquire(Inode* parent, const std::string& name, bool bind, bool ns_held);
  // Verify: one difference found. ino: the local file it concerns (0: a namespace difference).
  void Differ(const std::string& what, uint64_t ino);
  void Release(Inode* inode, bool ns_held);
  // What the walk found to do with an entry of a reconciled directory.
  struct EntryWork {
    bool whole = false;                   // compare all its data (new, replaced, size or mtime differ)
    bool created = false;                 // made on the peer by this resync (nothing of the peer's to save)
    bool skip = false;                    // verify: missing or replaced on the peer (reported already)
    bool linked = false;                  // another name of a file this pass handles already
    std::optional<proto::DirEntry> peer;  // the peer's entry as listed (reconciled directories)
  };
  // One regular file to resync. Self-contained: a worker may run it after the walk moved on.
  struct FileJob {
    Inode* file = nullptr;  // a lookup reference taken by the walk, released when the job is done
    const replicator::RecordedFile* rec = nullptr;  // its record entry, if any (the pass's snapshot)
    bool whole = false;                             // compare all its data
    std::string rel;                                // path from the root (quarantine, messages)
    uint64_t parent_rid = 0;                        // where it is, for SaveOnPeer
    std::string name;
    bool save_first = false;                // split brain: save the peer's copy before changing it
    std::optional<proto::DirEntry> peer;    // the peer's attributes, when listed
    struct timespec listed_ctime = {0, 0};  // the local ctime when the peer's entry was listed
    // The peer has no data at or past this offset (0: created by this resync; its listed size):
    // those bytes are sent without asking for block sums. UINT64_MAX: unknown, compare everything.
    uint64_t peer_lacks_from = UINT64_MAX;
  };
  // One file being resynced by one thread.
  struct FileState {
    const FileJob* job = nullptr;
    int io_fd = -1;
    bool saved = false;             // its peer copy is saved (or needs no saving)
    bool sent = false;              // a block of it was sent
    ChunkReader* reader = nullptr;  // bound to io_fd
  };
  // A BlockSums query in flight, with the local sums taken at its stream position.
  struct Pending {
    uint64_t off = 0, len = 0;
    std::vector<uint64_t> mine;
    std::shared_ptr<Reply> reply;
  };

  // Files are handed to `workers` threads (nbrei); with one, the walk runs them itself.
  std::mutex q_mu;
  std::condition_variable q_cv;       // work queued, room in the queue, or closing
  std::condition_variable q_idle_cv;  // queue empty and nobody busy
  std::deque<FileJob> queue;
  int busy = 0;
  bool closing = false;
  std::vector<std::thread> threads;
  void StartWorkers();
  void StopWorkers();
  void Submit(FileJob&& job);
  void DrainWorkers();                      // every job submitted so far is done
  ChunkReader walk_reader{opt.chunk_size};  // chunk reads of the jobs the walk runs itself

  // Regular files with more than one name, this pass: the first name met keeps a lookup reference
  // (its rid stays bound on the peer) so that the others are made as hard links of it there.
  struct LinkGroup {
    Inode* first = nullptr;
    uint64_t peer_ino = 0;  // the peer's inode of the first name (0: made by this resync)
  };
  std::map<ino_t, LinkGroup> links;
  std::set<ino_t> submitted;  // multiply linked files already handed to a job this pass
  // A local file's link structure differs from the peer's entry: replace the entry.
  bool LinksDiffer(const LocalEntry& l, const proto::DirEntry& t) const;
  // Makes the local name l (a further name of a group met before) a hard link on the peer.
  void LinkOnPeer(Inode* dir, const LocalEntry& l, const LinkGroup& g);
  void ReleaseLinks();
  // Split brain: the peer saves its entry parent/name (its path: rel) before it changes. False: the
  // run is failed (nothing may be changed unsaved).
  bool SaveOnPeer(uint64_t parent_rid, const std::string& name, const std::string& rel);
  void RemoveOnPeer(uint64_t parent_rid, const proto::DirEntry& t, const std::string& rel, int depth);
  void CreateOnPeer(Inode* parent, const LocalEntry& l, Inode* child);
  void FixMetadata(uint64_t rid, const LocalEntry& l, const proto::DirEntry& t);
  void ReconcileRoot(Inode* root, const proto::DirEntry& peer_self);
  void MatchRenames(Inode* dir, const std::vector<LocalEntry>& local,
                    std::map<std::string, proto::DirEntry>* peer);
  void ReconcileEntries(Inode* dir, const std::string& rel, const std::vector<LocalEntry>& local,
                        bool peer_empty, std::map<std::string, EntryWork>* work);
  void WalkDir(Inode* dir, const std::string& rel, bool compare, bool peer_empty, int depth);
  void RunJob(FileJob& job, ChunkReader* reader);
  void ResyncFile(FileState& fs);
  // The file's size, mode, owner and times on the peer as they stand here now (or, verifying,
  // reported when they differ).
  void FinishAttributes(FileState& fs);
  // Before the first change of the file (split brain): saves the peer's copy. False: failed.
  bool BeforeFileChange(FileState& fs);
  // Ships the query for [off, off+len) and reads the local sums at the same stream position.
  bool AskChunk(FileState& fs, uint64_t off, uint64_t len, Pending* out);
  // Waits for the answer and sends the blocks that differ (or reports them). False: stop the file.
  bool FinishChunk(FileState& fs, Pending& p);
  // Sends [off, off+len) as it is, without a compare (the peer has none of it).
  bool SendChunk(FileState& fs, uint64_t off, uint64_t len);
  // Reads [off, off+len) of the file (len <= chunk size) into a Write op and ships it; returns the bytes
  // shipped (0 past the end of the file, or on a read error, which fails the resync).
  uint64_t ShipRange(FileState& fs, uint64_t off, uint64_t len);
  void Pace();
};

Inode* ResyncEngine::Run::Acquire(Inode* parent, const std::string& name, bool bind, bool ns_held) {
  std::shared_lock<std::shared_mutex> ns(host->resync_ns_mutex(), std::defer_lock);
  if (!ns_held) ns.lock();
  const PathFd parent_path = host->resync_table().Open(*parent);
  if (!parent_path) return nullptr;
  UniqueFd fd(openat(parent_path.get(), name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return nullptr;
  struct stat st;
  if (fstatat(fd.get(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return nullptr;
  bool created = false;  // (a kernel lookup binds only new handles; the resync always does)
  Inode* inode = host->resync_table().LookupOrInsert(std::move(fd), st, parent->rid, name, &created);
  if (bind) {
    // As a kernel lookup does: the peer learns the handle before anything names it. Also when the
    // handle exists here already: the peer may not know it (a re-bind that failed on the new
    // session, a rename the resync just made there). Binding again is harmless.
    proto::Op op;
    auto* b = op.mutable_bind();
    b->set_rid(inode->rid);
    b->set_parent(parent->rid);
    b->set_name(name);
    Fix(std::move(op));
  }
  return inode;
}

void ResyncEngine::Run::Differ(const std::string& what, uint64_t ino) {
  {
    std::lock_guard<std::mutex> lock(engine->mu_);
    auto& p = engine->progress_;
    p.set_differences(p.differences() + 1);
    if (p.difference_list_size() < 1000) p.add_difference_list(what);
    if (p.differences() <= 20) HLOG_WARN("verify: %s", what.c_str());
  }
  if (!repair) return;
  replicator::ZoneRecord& record = host->resync_record();
  Status s = ino != 0 ? record.MarkFile(ino) : record.MarkTree("verify found a difference: " + what);
  if (!s.ok()) Fail("verify --repair cannot record a difference: " + s.ToString());
}

void ResyncEngine::Run::Release(Inode* inode, bool ns_held) {
  std::shared_lock<std::shared_mutex> ns(host->resync_ns_mutex(), std::defer_lock);
  if (!ns_held) ns.lock();
  if (host->resync_table().Unref(inode, 1) != 0) host->ResyncForget(inode);
}

bool ResyncEngine::Run::SaveOnPeer(uint64_t parent_rid, const std::string& name, const std::string& rel) {
  if (!quarantine) return true;
  proto::Op op;
  auto* q = op.mutable_quarantine();
  q->set_parent(parent_rid);
  q->set_name(name);
  q->set_path(rel);
  proto::Ack answer;
  if (Query(op, &answer)) return true;
  if (!Stopped()) Fail("the peer could not save " + rel + " to its quarantine: nothing of it is changed");
  return false;
}

void ResyncEngine::Run::RemoveOnPeer(uint64_t parent_rid, const proto::DirEntry& t, const std::string& rel,
                                     int depth) {
  if (depth == 0 && !SaveOnPeer(parent_rid, t.name(), rel)) return;
  const bool is_dir = t.kind() == proto::NODE_KIND_DIR;
  if (is_dir) {
    if (depth > 256) {
      Fail("directory nesting deeper than 256 on the peer");
      return;
    }
    // A rid of our own for a directory only the peer has: bind, empty it, remove it, forget.
    const uint64_t rid = host->resync_table().AllocateRid();
    proto::Op bind;
    auto* b = bind.mutable_bind();
    b->set_rid(rid);
    b->set_parent(parent_rid);
    b->set_name(t.name());
    Fix(std::move(bind));
    proto::Op list;
    list.mutable_list_dir()->set_rid(rid);
    proto::Ack answer;
    if (Query(list, &answer)) {
      for (const proto::DirEntry& child : answer.entries())
        RemoveOnPeer(rid, child, rel + "/" + child.name(), depth + 1);
    }
    proto::Op forget;
    forget.mutable_forget()->set_rid(rid);
    Fix(std::move(forget));
  }
  proto::Op op;
  auto* u = op.mutable_unlink();
  u->set_parent(parent_rid);
  u->set_name(t.name());
  u->set_is_dir(is_dir);
  Fix(std::move(op));
}

void ResyncEngine::Run::CreateOnPeer(Inode* parent, const LocalEntry& l, Inode* child) {
  proto::Op op;
  auto* m = op.mutable_make_node();
  m->set_parent(parent->rid);
  m->set_name(l.name);
  m->set_rid(child->rid);
  m->set_kind(replicator::NodeKindOf(l.st.st_mode));
  m->set_mode(l.st.st_mode & 07777);
  m->set_uid(l.st.st_uid);
  m->set_gid(l.st.st_gid);
  m->set_rdev(l.st.st_rdev);
  if (S_ISLNK(l.st.st_mode)) m->set_symlink_target(l.link_target);
  Fix(std::move(op));
  proto::DirEntry none;  // compare against nothing: every xattr is sent, times set
  FixMetadata(child->rid, l, none);
}

void ResyncEngine::Run::FixMetadata(uint64_t rid, const LocalEntry& l, const proto::DirEntry& t) {
  const bool link = S_ISLNK(l.st.st_mode);
  if (l.st.st_uid != t.uid() || l.st.st_gid != t.gid() || (!link && (l.st.st_mode & 07777) != t.mode())) {
    proto::Op op;
    auto* sa = op.mutable_setattr();
    sa->set_rid(rid);
    sa->set_uid(l.st.st_uid);
    sa->set_gid(l.st.st_gid);
    if (!link) sa->set_mode(l.st.st_mode & 07777);
    Fix(std::move(op));
  }
  if (!link && !SameXattrs(l, t)) {
    for (const proto::Xattr& x : t.xattrs()) {
      bool keep =
          std::any_of(l.xattrs.begin(), l.xattrs.end(), [&x](const auto& p) { return p.first == x.name(); });
      if (keep) continue;
      proto::Op op;
      op.mutable_removexattr()->set_rid(rid);
      op.mutable_removexattr()->set_name(x.name());
      Fix(std::move(op));
    }
    for (const auto& [name, value] : l.xattrs) {
      proto::Op op;
      auto* x = op.mutable_setxattr();
      x->set_rid(rid);
      x->set_name(name);
      x->set_value(value);
      Fix(std::move(op));
    }
  }
  // Regular files get their times with their data (ResyncFile); directories after their entries.
  if (!S_ISREG(l.st.st_mode) && !S_ISDIR(l.st.st_mode) && !SameTime(l.st.st_mtim, t.mtime())) {
    proto::Op op;
    auto* sa = op.mutable_setattr();
    sa->set_rid(rid);
    ToProto(l.st.st_mtim, sa->mutable_mtime());
    Fix(std::move(op));
  }
}

// A file renamed within a directory while the peer was away shows as one name only here and one only
// there: with the same size and mtime it is renamed on the peer instead of copied again (its data is
// then compared by checksum like any file whose history is unknown, so a wrong match costs only the
// blocks that differ). Updates *peer to the new names.
void ResyncEngine::Run::MatchRenames(Inode* dir, const std::vector<LocalEntry>& local,
                                     std::map<std::string, proto::DirEntry>* peer) {
  std::map<std::tuple<uint64_t, int64_t, uint32_t>, std::string> gone;  // (size, mtime) -> peer-only name
  for (const auto& [name, t] : *peer) {
    if (t.kind() != proto::NODE_KIND_FILE || t.nlink() != 1) continue;
    const bool mine = std::binary_search(local.begin(), local.end(), name,
                                         [](const auto& a, const auto& b) { return NameOf(a) < NameOf(b); });
    if (!mine) gone.emplace(std::make_tuple(t.size(), t.mtime().sec(), t.mtime().nsec()), name);
  }
  for (const LocalEntry& l : local) {
    if (gone.empty()) return;
    if (!S_ISREG(l.st.st_mode) || peer->count(l.name)) continue;
    auto it = gone.find(std::make_tuple(static_cast<uint64_t>(l.st.st_size),
                                        static_cast<int64_t>(l.st.st_mtim.tv_sec),
                                        static_cast<uint32_t>(l.st.st_mtim.tv_nsec)));
    if (it == gone.end()) continue;
    proto::Op op;
    auto* r = op.mutable_rename();
    r->set_parent(dir->rid);
    r->set_name(it->second);
    r->set_new_parent(dir->rid);
    r->set_new_name(l.name);
    r->set_flags(RENAME_NOREPLACE);
    Fix(std::move(op));
    proto::DirEntry moved = std::move((*peer)[it->second]);
    peer->erase(it->second);
    moved.set_name(l.name);
    moved.clear_mtime();  // unknown history: the data is compared by checksum
    (*peer)[l.name] = std::move(moved);
    gone.erase(it);
  }
}

bool ResyncEngine::Run::LinksDiffer(const LocalEntry& l, const proto::DirEntry& t) const {
  if (!S_ISREG(l.st.st_mode)) return false;
  if (t.nlink() != l.st.st_nlink) return true;
  auto g = links.find(l.st.st_ino);
  // Another name of a group met before must be the same file on the peer as the first name.
  return g != links.end() && g->second.peer_ino != 0 && t.ino() != g->second.peer_ino;
}

void ResyncEngine::Run::LinkOnPeer(Inode* dir, const LocalEntry& l, const LinkGroup& g) {
  proto::Op op;
  auto* k = op.mutable_link();
  k->set_rid(g.first->rid);
  k->set_new_parent(dir->rid);
  k->set_new_name(l.name);
  Fix(std::move(op));
}

void ResyncEngine::Run::ReleaseLinks() {
  for (auto& [ino, g] : links) Release(g.first, /*ns_held=*/false);
  links.clear();
  submitted.clear();
}

// The replicated directory's own mode, owner and xattrs (its mtime is set after its entries).
void ResyncEngine::Run::ReconcileRoot(Inode* root, const proto::DirEntry& peer_self) {
  LocalEntry l;
  l.name = ".";
  const PathFd root_path = host->resync_table().Open(*root);
  if (!root_path || fstatat(root_path.get(), "", &l.st, AT_EMPTY_PATH) != 0) return;
  ReadXattrs(root_path.get(), &l.xattrs);
  const bool differs = l.st.st_uid != peer_self.uid() || l.st.st_gid != peer_self.gid() ||
                       (l.st.st_mode & 07777) != peer_self.mode() || !SameXattrs(l, peer_self);
  if (!differs) return;
  if (verify) {
    Differ(".: mode, owner or xattrs of the replicated directory differ", 0);
    return;
  }
  FixMetadata(root->rid, l, peer_self);
}

// With the namespace lock held: makes the peer's entries of `dir` (path rel, "" for the root) those of
// `local`. *work: what each entry of `local` still needs (see EntryWork).
void ResyncEngine::Run::ReconcileEntries(Inode* dir, const std::string& rel,
                                         const std::vector<LocalEntry>& local, bool peer_empty,
                                         std::map<std::string, EntryWork>* work) {
  auto path_of = [&rel](const std::string& name) { return rel.empty() ? name : rel + "/" + name; };
  std::map<std::string, proto::DirEntry> peer;
  if (!peer_empty) {
    proto::Op list;
    list.mutable_list_dir()->set_rid(dir->rid);
    list.mutable_list_dir()->set_include_self(dir->rid == 1);  // the root is nobody's entry
    proto::Ack answer;
    if (!Query(list, &answer)) {
      if (!Stopped()) Fail("peer could not list a directory (rid " + std::to_string(dir->rid) + ")");
      return;
    }
    AddProgress(0, 0, static_cast<uint64_t>(answer.ByteSizeLong()));
    for (proto::DirEntry& e : *answer.mutable_entries()) peer.emplace(e.name(), std::move(e));
  }
  if (auto self = peer.find("."); self != peer.end()) {
    ReconcileRoot(dir, self->second);
    peer.erase(self);
  }
  if (!verify) MatchRenames(dir, local, &peer);
  for (const auto& [name, t] : peer) {
    auto at = std::lower_bound(local.begin(), local.end(), name,
                               [](const LocalEntry& a, const std::string& n) { return a.name < n; });
    const bool mine = at != local.end() && at->name == name;
    if (!mine && verify) Differ(path_of(name) + ": only on the peer", 0);
    if (!mine && !verify) RemoveOnPeer(dir->rid, t, path_of(name), 0);
  }
  for (const LocalEntry& l : local) {
    if (Stopped()) return;
    auto it = peer.find(l.name);
    const bool replace = it != peer.end() && (MustReplace(l, it->second) || LinksDiffer(l, it->second));
    if (verify && (it == peer.end() || replace)) {
      Differ(path_of(l.name) + (it == peer.end() ? ": missing on the peer"
                                                 : ": another kind, target or link structure on the peer"),
             0);
      (*work)[l.name].skip = true;
      continue;
    }
    if (replace) {
      RemoveOnPeer(dir->rid, it->second, path_of(l.name), 0);
      it = peer.end();
    }
    const bool multi = S_ISREG(l.st.st_mode) && l.st.st_nlink > 1;
    auto group = multi ? links.find(l.st.st_ino) : links.end();
    if (it == peer.end() && group != links.end()) {
      LinkOnPeer(dir, l, group->second);
      (*work)[l.name].linked = true;
      continue;
    }
    if (it == peer.end()) {
      Inode* child = Acquire(dir, l.name, /*bind=*/false, /*ns_held=*/true);
      if (child == nullptr) continue;  // gone meanwhile: nothing to create
      CreateOnPeer(dir, l, child);
      if (multi)
        links[l.st.st_ino] = LinkGroup{child, 0};  // the reference is kept for the other names
      else
        Release(child, /*ns_held=*/true);
      (*work)[l.name] = EntryWork{true, true, false, false, std::nullopt};
      continue;
    }
    const proto::DirEntry& t = it->second;
    if (multi && group != links.end()) {
      (*work)[l.name].linked = true;  // the same file as a name met before, there as here
      continue;
    }
    if (multi) {
      Inode* first = Acquire(dir, l.name, /*bind=*/true, /*ns_held=*/true);
      if (first != nullptr) links[l.st.st_ino] = LinkGroup{first, t.ino()};
    }
    if (S_ISREG(l.st.st_mode)) (*work)[l.name].peer = t;
    if (S_ISREG(l.st.st_mode) &&
        (static_cast<uint64_t>(l.st.st_size) != t.size() || !SameTime(l.st.st_mtim, t.mtime()))) {
      (*work)[l.name].whole = true;
    }
    Inode* child = nullptr;
    // Metadata fixes need the entry's rid on the peer (bound by name here).
    bool meta_differs =
        l.st.st_uid != t.uid() || l.st.st_gid != t.gid() || !SameXattrs(l, t) ||
        (!S_ISLNK(l.st.st_mode) && (l.st.st_mode & 07777) != t.mode()) ||
        (!S_ISREG(l.st.st_mode) && !S_ISDIR(l.st.st_mode) && !SameTime(l.st.st_mtim, t.mtime()));
    if (meta_differs && verify) {
      Differ(path_of(l.name) + ": mode, owner or xattrs differ", S_ISREG(l.st.st_mode) ? l.st.st_ino : 0);
      continue;
    }
    if (meta_differs && !S_ISDIR(l.st.st_mode) && !SaveOnPeer(dir->rid, l.name, path_of(l.name))) return;
    if (meta_differs && (child = Acquire(dir, l.name, /*bind=*/true, /*ns_held=*/true)) != nullptr) {
      FixMetadata(child->rid, l, t);
      Release(child, /*ns_held=*/true);
    }
  }
}

void ResyncEngine::Run::WalkDir(Inode* dir, const std::string& rel, bool compare, bool peer_empty,
                                int depth) {
  if (Stopped()) return;
  if (depth > 4096) {
    Fail("directory nesting deeper than 4096");
    return;
  }
  std::vector<LocalEntry> local;
  std::map<std::string, EntryWork> work;
  if (compare) {
    std::unique_lock<std::shared_mutex> ns(host->resync_ns_mutex());
    if (int err = ListLocal(host->resync_table().Open(*dir), true, &local)) {
      Fail(std::string("cannot list a local directory: ") + strerror(err));
      return;
    }
    ReconcileEntries(dir, rel, local, peer_empty, &work);
  } else if (int err = ListLocal(host->resync_table().Open(*dir), false, &local)) {
    Fail(std::string("cannot list a local directory: ") + strerror(err));
    return;
  }
  {
    std::lock_guard<std::mutex> lock(engine->mu_);
    engine->progress_.set_dirs_done(engine->progress_.dirs_done() + 1);
  }
  for (const LocalEntry& l : local) {
    if (Stopped()) return;
    const EntryWork& w = work[l.name];
    if (w.skip || w.linked) continue;
    if (S_ISREG(l.st.st_mode) && l.st.st_nlink > 1 && !submitted.insert(l.st.st_ino).second) continue;
    const std::string path = rel.empty() ? l.name : rel + "/" + l.name;
    if (S_ISDIR(l.st.st_mode)) {
      const bool child_compare = tree || snap.dirs.count(l.st.st_ino) != 0 || w.created;
      Inode* child = Acquire(dir, l.name, /*bind=*/true, /*ns_held=*/false);
      if (child == nullptr) continue;
      if (child->type == S_IFDIR) WalkDir(child, path, child_compare, /*peer_empty=*/w.created, depth + 1);
      Release(child, /*ns_held=*/false);
    } else if (S_ISREG(l.st.st_mode)) {
      auto rec = snap.files.find(l.st.st_ino);
      if (!full && !w.whole && rec == snap.files.end()) continue;
      Inode* child = Acquire(dir, l.name, /*bind=*/true, /*ns_held=*/false);
      if (child == nullptr) continue;
      if (child->type != S_IFREG) {
        Release(child, /*ns_held=*/false);
        continue;
      }
      FileJob job;
      job.file = child;
      job.rec = rec == snap.files.end() ? nullptr : &rec->second;
      job.whole = full || w.whole;
      job.rel = path;
      job.parent_rid = dir->rid;
      job.name = l.name;
      job.save_first = quarantine && !w.created;
      job.peer = w.peer;
      if (w.created)
        job.peer_lacks_from = 0;
      else if (w.peer)
        job.peer_lacks_from = w.peer->size();
      job.listed_ctime = l.st.st_ctim;
      Submit(std::move(job));
    }
  }
  if (compare && !Stopped() && !verify) {
    // The directory's own mtime moved with every entry fixed on the peer: set it last.
    std::unique_lock<std::shared_mutex> ns(host->resync_ns_mutex());
    struct stat st;
    const PathFd dir_path = host->resync_table().Open(*dir);
    if (dir_path && fstatat(dir_path.get(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0) {
      proto::Op op;
      auto* sa = op.mutable_setattr();
      sa->set_rid(dir->rid);
      ToProto(st.st_mtim, sa->mutable_mtime());
      Fix(std::move(op));
    }
  }
}

void ResyncEngine::Run::StartWorkers() {
  closing = false;
  for (int i = 1; i < opt.workers; ++i) {
    threads.emplace_back([this] {
      ChunkReader reader(opt.chunk_size);
      std::unique_lock<std::mutex> lock(q_mu);
      while (true) {
        q_cv.wait(lock, [this] { return closing || !queue.empty(); });
        if (queue.empty()) return;  // closing
        FileJob job = std::move(queue.front());
        queue.pop_front();
        ++busy;
        q_cv.notify_all();  // room in the queue
        lock.unlock();
        RunJob(job, &reader);
        lock.lock();
        --busy;
        if (queue.empty() && busy == 0) q_idle_cv.notify_all();
      }
    });
  }
}

void ResyncEngine::Run::StopWorkers() {
  {
    std::lock_guard<std::mutex> lock(q_mu);
    closing = true;
  }
  q_cv.notify_all();
  for (auto& t : threads) t.join();
  threads.clear();
}

void ResyncEngine::Run::Submit(FileJob&& job) {
  if (threads.empty()) {
    RunJob(job, &walk_reader);
    return;
  }
  std::unique_lock<std::mutex> lock(q_mu);
  // Bounded: the walk runs at most a few files ahead of the workers.
  q_cv.wait(lock, [this] { return queue.size() < 2 * threads.size(); });
  queue.push_back(std::move(job));
  q_cv.notify_all();
}

void ResyncEngine::Run::DrainWorkers() {
  std::unique_lock<std::mutex> lock(q_mu);
  q_idle_cv.wait(lock, [this] { return queue.empty() && busy == 0; });
}

void ResyncEngine::Run::Pace() {
  if (opt.max_rate_bps == 0) return;
  uint64_t done;
  Clock::time_point started;
  {
    std::lock_guard<std::mutex> lock(engine->mu_);
    done = engine->progress_.bytes_sent();
    started = engine->started_;
  }
  // Sleeping paces the sender (reiallowedbw); bounded so a cancel is seen within 100 ms.
  for (int i = 0; i < 600 && !Stopped(); ++i) {
    const double elapsed = std::chrono::duration<double>(Clock::now() - started).count();
    if (static_cast<double>(done) <= elapsed * static_cast<double>(opt.max_rate_bps)) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

bool ResyncEngine::Run::AskChunk(FileState& fs, uint64_t off, uint64_t len, Pending* out) {
  const uint32_t bs = opt.block_size;
  Inode* file = fs.job->file;
  out->off = off;
  out->len = len;
  out->mine.clear();
  proto::Op query;
  auto* q = query.mutable_block_sums();
  q->set_rid(file->rid);
  q->set_offset(off);
  q->set_length(len);
  q->set_block_size(bs);
  // The local sums and the query take the same stream position: the data lock orders the
  // application's writes of this file (shipped and applied under it).
  std::lock_guard<std::mutex> lock(file->data_mu);
  out->reply = Ask(std::move(query));
  if (out->reply == nullptr) return false;
  ssize_t n = fs.reader->Read(off, len);
  if (n < 0) n = 0;
  const char* data = fs.reader->data();
  for (ssize_t at = 0; at < n; at += bs)
    out->mine.push_back(XXH3_64bits(data + at, std::min<size_t>(bs, static_cast<size_t>(n - at))));
  return true;
}

bool ResyncEngine::Run::FinishChunk(FileState& fs, Pending& p) {
  const uint32_t bs = opt.block_size;
  Inode* file = fs.job->file;
  for (int attempt = 0;; ++attempt) {
    bool retry = false;
    if (Await(p.reply, &retry)) break;
    if (!retry) return !Stopped();  // a peer error is counted; the next pass sees it again
    // The answer was lost in a reconnect: ask again, local sums included (one stream position).
    if (attempt == 4) {
      Fail("the peer's block sums were lost 5 times in a row");
      return false;
    }
    if (Stopped() || !AskChunk(fs, p.off, p.len, &p)) return false;
  }
  const proto::Ack& ack = p.reply->ack;
  AddProgress(p.len, 0, 8ull * static_cast<uint64_t>(ack.sums_size()) + 32);
  auto differs = [&](size_t k) {
    return k >= static_cast<size_t>(ack.sums_size()) || ack.sums(static_cast<int>(k)) != p.mine[k];
  };
  // Differing blocks, coalesced into writes of up to a chunk.
  for (size_t i = 0; i < p.mine.size() && !Stopped();) {
    if (!differs(i)) {
      ++i;
      continue;
    }
    size_t j = i + 1;
    while (j < p.mine.size() && differs(j)) ++j;
    const uint64_t from = p.off + i * bs;
    const uint64_t bytes = std::min<uint64_t>((j - i) * uint64_t{bs}, p.off + p.len - from);
    i = j;
    if (verify) {
      Differ(fs.job->rel + ": bytes " + std::to_string(from) + ".." + std::to_string(from + bytes - 1) +
                 " differ",
             file->ino);
      continue;
    }
    if (!BeforeFileChange(fs)) return false;
    const uint64_t n = ShipRange(fs, from, bytes);
    if (n > 0) AddProgress(0, n, n);
    Pace();
  }
  return true;
}

bool ResyncEngine::Run::SendChunk(FileState& fs, uint64_t off, uint64_t len) {
  if (!BeforeFileChange(fs)) return false;
  const uint64_t n = ShipRange(fs, off, len);
  AddProgress(len, n, n);
  Pace();
  return !Stopped();
}

uint64_t ResyncEngine::Run::ShipRange(FileState& fs, uint64_t off, uint64_t len) {
  Inode* file = fs.job->file;
  // Under the data lock: the read and the write op take one stream position among the application's
  // writes of this file.
  std::lock_guard<std::mutex> lock(file->data_mu);
  // (Reading straight into the op's string instead, which saves this copy, measured no faster: the
  // string is zero-filled first, and the reader's buffer stays warm.)
  const ssize_t n = fs.reader->Read(off, len);
  if (n < 0) {
    // Never "done" with bytes the peer did not get.
    Fail("cannot read " + fs.job->rel + " to resync it: " + strerror(static_cast<int>(-n)));
    return 0;
  }
  if (n == 0) return 0;  // the file shrank meanwhile: its truncate is in the stream
  proto::Op op;
  auto* w = op.mutable_write();
  w->set_rid(file->rid);
  w->set_offset(off);
  w->set_data(fs.reader->data(), static_cast<size_t>(n));
  Fix(std::move(op));
  fs.sent = true;
  return static_cast<uint64_t>(n);
}

bool ResyncEngine::Run::BeforeFileChange(FileState& fs) {
  if (fs.saved) return true;
  fs.saved = true;
  return SaveOnPeer(fs.job->parent_rid, fs.job->name, fs.job->rel);
}

void ResyncEngine::Run::RunJob(FileJob& job, ChunkReader* reader) {
  FileState fs;
  fs.job = &job;
  fs.saved = !job.save_first;
  fs.reader = reader;
  const PathFd file_path = host->resync_table().Open(*job.file);
  UniqueFd io;
  if (file_path) {
    io.Reset(open(ProcPath(file_path.get()).buf, O_RDONLY | O_CLOEXEC | O_NOATIME));
    if (!io) io.Reset(open(ProcPath(file_path.get()).buf, O_RDONLY | O_CLOEXEC));
  }
  if (!io) {
    const int err = file_path ? errno : file_path.error();
    Fail(std::string("cannot open ") + job.rel + " to resync it: " + strerror(err));
  } else {
    fs.io_fd = io.get();
    reader->Open(io.get());
    ResyncFile(fs);
    reader->Close();
  }
  Release(job.file, /*ns_held=*/false);
  job.file = nullptr;
}

namespace {
// The byte ranges of a file to compare, in order, clipped at its current size (appends meanwhile are
// replicated live): all of it, or the zones and tail its record entry names.
std::vector<std::pair<uint64_t, uint64_t>> RangesToCompare(const replicator::RecordedFile* rec, bool whole,
                                                           uint64_t size, uint64_t zs) {
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  if (whole || (rec != nullptr && rec->whole)) {
    ranges.emplace_back(0, size);
    return ranges;
  }
  if (rec == nullptr) return ranges;
  for (uint64_t z : rec->zones) {
    if (rec->tail_from_zone != UINT64_MAX && z >= rec->tail_from_zone) break;
    if (z * zs >= size) break;
    if (!ranges.empty() && ranges.back().second == z * zs)
      ranges.back().second = std::min(size, (z + 1) * zs);
    else
      ranges.emplace_back(z * zs, std::min(size, (z + 1) * zs));
  }
  if (rec->tail_from_zone != UINT64_MAX && rec->tail_from_zone * zs < size)
    ranges.emplace_back(rec->tail_from_zone * zs, size);
  return ranges;
}
}  // namespace

void ResyncEngine::Run::FinishAttributes(FileState& fs) {
  const FileJob& file_job = *fs.job;
  Inode* file = file_job.file;
  struct stat st;
  {
    // Size (the peer's copy may be longer), mode, owner and times as they stand now; nothing to send
    // when the peer's listed attributes already match and no block differed.
    std::lock_guard<std::mutex> lock(file->data_mu);
    if (fstat(fs.io_fd, &st) == 0) {
      const proto::DirEntry* t = file_job.peer ? &*file_job.peer : nullptr;
      const bool same = t != nullptr && !fs.sent && static_cast<uint64_t>(st.st_size) == t->size() &&
                        st.st_uid == t->uid() && st.st_gid == t->gid() && (st.st_mode & 07777) == t->mode() &&
                        SameTime(st.st_mtim, t->mtime());
      // Verify compares attributes only of a file untouched since both listings (same ctime): a file
      // written meanwhile is compared by its data alone (that compare is taken at one stream position).
      const bool untouched = st.st_ctim.tv_sec == file_job.listed_ctime.tv_sec &&
                             st.st_ctim.tv_nsec == file_job.listed_ctime.tv_nsec;
      if (verify) {
        if (t != nullptr && !same && untouched)
          Differ(file_job.rel + ": size, mode, owner or mtime differ (" + std::to_string(st.st_size) +
                     " bytes here, " + std::to_string(t->size()) + " there)",
                 file->ino);
      } else if (!same && BeforeFileChange(fs)) {
        proto::Op op;
        auto* sa = op.mutable_setattr();
        sa->set_rid(file->rid);
        sa->set_size(static_cast<uint64_t>(st.st_size));
        sa->set_uid(st.st_uid);
        sa->set_gid(st.st_gid);
        sa->set_mode(st.st_mode & 07777);
        ToProto(st.st_mtim, sa->mutable_mtime());
        Fix(std::move(op));
      }
    }
  }
}

void ResyncEngine::Run::ResyncFile(FileState& fs) {
  const FileJob& file_job = *fs.job;
  struct stat st;
  if (fstat(fs.io_fd, &st) != 0) return;
  const auto ranges = RangesToCompare(file_job.rec, file_job.whole, static_cast<uint64_t>(st.st_size),
                                      snap.zone_size ? snap.zone_size : (1 << 20));
  uint64_t total = 0;
  for (auto& r : ranges) total += r.second - r.first;
  {
    std::lock_guard<std::mutex> lock(engine->mu_);
    engine->progress_.set_bytes_total(engine->progress_.bytes_total() + total);
    engine->progress_.set_files_total(engine->progress_.files_total() + 1);
  }
  // Up to `window` queries of this file in flight: the peer reads and hashes chunk k+1 while this
  // side compares chunk k.
  std::deque<Pending> window;
  bool stop = false;
  // Past what the peer has, nothing to compare: the bytes go as they are (not in verify, which reports
  // the peer's shorter copy through its attributes).
  const uint64_t send_from = verify ? UINT64_MAX : file_job.peer_lacks_from;
  for (auto [from, to] : ranges) {
    for (uint64_t off = from; off < to && !stop && !Stopped(); off += opt.chunk_size) {
      if (off >= send_from) {
        stop = !SendChunk(fs, off, std::min<uint64_t>(opt.chunk_size, to - off));
        continue;
      }
      Pending& p = window.emplace_back();
      if (!AskChunk(fs, off, std::min<uint64_t>(opt.chunk_size, to - off), &p)) {
        window.pop_back();
        stop = true;
        break;
      }
      if (static_cast<int>(window.size()) >= std::max(1, opt.window)) {
        stop = !FinishChunk(fs, window.front());
        window.pop_front();
      }
    }
  }
  // Every query shipped is waited for (its reply holder goes with it), even when stopping.
  for (; !window.empty(); window.pop_front()) {
    if (!stop) stop = !FinishChunk(fs, window.front());
  }
  if (stop || Stopped()) return;
  FinishAttributes(fs);
  std::lock_guard<std::mutex> lock(engine->mu_);
  engine->progress_.set_files_done(engine->progress_.files_done() + 1);
}

// ---------------------------------------------------------------------------------------------------

ResyncEngine::ResyncEngine(ResyncHost* host, const ResyncOptions& options) : host_(host), options_(options) {
  progress_.set_phase("idle");
}

ResyncEngine::~ResyncEngine() { Cancel(); }

uint64_t ResyncEngine::NextIdLocked() {
  // Ids grow across restarts (wall clock), so a peer can tell a newer resync from an older one.
  uint64_t id = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count());
  if (id <= last_id_) id = last_id_ + 1;
  last_id_ = id;
  return id;
}

Status ResyncEngine::Start(bool full, const std::string& why) {
  std::lock_guard<std::mutex> lock(mu_);
  if (running_.load()) return Status::InvalidArgument("a resync or verify is already running");
  if (thread_.joinable()) thread_.join();
  cancel_ = false;
  done_ok_ = false;
  running_ = true;
  const uint64_t id = NextIdLocked();
  progress_.Clear();
  progress_.set_phase("running");
  progress_.set_id(id);
  progress_.set_full(full);
  progress_.set_reason(why);
  started_ = Clock::now();
  thread_ = std::thread(&ResyncEngine::Main, this, full, why, id);
  return Status::Ok();
}

Status ResyncEngine::StartVerify(bool repair) {
  std::lock_guard<std::mutex> lock(mu_);
  if (running_.load()) return Status::InvalidArgument("a resync or verify is already running");
  if (thread_.joinable()) thread_.join();
  cancel_ = false;
  running_ = true;
  const uint64_t id = NextIdLocked();
  progress_.Clear();
  progress_.set_phase("running");
  progress_.set_id(id);
  progress_.set_full(true);
  progress_.set_repair(repair);
  progress_.set_reason(repair ? "verify --repair" : "verify");
  started_ = Clock::now();
  thread_ = std::thread(&ResyncEngine::VerifyMain, this, repair, id);
  return Status::Ok();
}

void ResyncEngine::Cancel() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancel_ = true;
  }
  cancel_cv_.notify_all();
  std::thread t;
  {
    std::lock_guard<std::mutex> lock(mu_);
    t = std::move(thread_);
  }
  if (t.joinable()) t.join();
}

void ResyncEngine::Progress(proto::FsResync* out) const {
  std::lock_guard<std::mutex> lock(mu_);
  *out = progress_;
  if (progress_.phase() != "running") return;
  const double elapsed = std::chrono::duration<double>(Clock::now() - started_).count();
  out->set_elapsed_s(elapsed);
  if (elapsed > 0.5) {
    const uint64_t rate = static_cast<uint64_t>(static_cast<double>(progress_.bytes_done()) / elapsed);
    out->set_rate_bps(rate);
    if (rate > 0 && progress_.bytes_total() > progress_.bytes_done())
      out->set_eta_s((progress_.bytes_total() - progress_.bytes_done()) / rate);
  }
}

// The start mark: the target is inconsistent from here until the end mark. Its answer says whether its
// own record asks for more (it ended as a primary uncleanly). Returns the resync's kind and reason.
void ResyncEngine::Begin(Run* run, uint64_t id, std::string* why) {
  {
    // Each attempt counts its own work (a retry compares again).
    std::lock_guard<std::mutex> lock(mu_);
    const std::string phase = progress_.phase();
    progress_.Clear();
    progress_.set_phase(phase);
    started_ = Clock::now();
  }
  proto::Op begin;
  auto* b = begin.mutable_resync_mark();
  b->set_id(id);
  b->set_begin(true);
  proto::Ack answer;
  if (!run->Query(begin, &answer)) run->Fail("the peer did not take the resync's start mark");
  run->quarantine = answer.quarantine();
  if (run->quarantine)
    HLOG_WARN("resync %llu: the peer is the discarded side of a split brain: it saves what changes",
              (unsigned long long)id);
  if (answer.need_full() && !run->full) {
    run->full = true;
    *why = "the peer's own record: " + answer.need_full_reason();
  }
  std::lock_guard<std::mutex> lock(mu_);
  progress_.set_id(id);
  progress_.set_full(run->full);
  progress_.set_reason(*why);
}

// Passes until a pass leaves nothing recorded (ok), or the run stops.
bool ResyncEngine::Passes(Run* run, uint64_t id) {
  replicator::ZoneRecord& record = host_->resync_record();
  Inode* root = host_->resync_table().root();
  for (int pass = 1; pass <= options_.max_passes && !run->Stopped(); ++pass) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      progress_.set_pass(static_cast<uint32_t>(pass));
    }
    if (pass > 1) run->snap = record.Snapshot();
    run->tree = run->full || run->snap.tree;
    const uint64_t errors_before = run->fix_errors.load();
    run->WalkDir(root, "", run->tree || run->snap.dirs.count(root->ino) != 0, false, 0);
    run->DrainWorkers();
    run->ReleaseLinks();
    run->WaitFixes();
    if (run->Stopped()) return false;
    if (const uint64_t refused = run->fix_errors.load() - errors_before; refused > 0) {
      // Something on the peer was not as the walk found it (a live operation on a part not yet
      // resynced, a full disk...): walk everything again.
      HLOG_WARN("resync %llu pass %d: the peer refused %llu fixes; another pass", (unsigned long long)id,
                pass, (unsigned long long)refused);
      if (Status s = record.MarkTree("resync pass refused by the peer"); !s.ok()) run->Fail(s.ToString());
      continue;
    }
    if (Status s = record.ForgetResynced(run->snap); !s.ok()) {
      run->Fail("cannot update the record: " + s.ToString());
      return false;
    }
    run->full = false;
    if (record.Empty()) return true;
  }
  if (!run->Stopped()) run->Fail("still differing after " + std::to_string(options_.max_passes) + " passes");
  return false;
}

// One attempt: start mark, passes, end mark. Returns ok; *lost: the stream is gone.
bool ResyncEngine::Attempt(bool full, std::string why, uint64_t id, bool* lost) {
  Run run(this, host_, options_);
  run.snap = host_->resync_record().Snapshot();
  run.full = full || run.snap.full;
  if (run.snap.full && !full) why = run.snap.full_reason;
  Begin(&run, id, &why);
  HLOG_INFO("resync %llu starts: %s (%s)", (unsigned long long)id,
            run.full ? "full checksum compare" : "incremental", why.c_str());
  run.StartWorkers();
  bool ok = !run.Stopped() && Passes(&run, id);
  run.DrainWorkers();
  run.StopWorkers();
  if (!ok && !run.failed.load()) run.Fail(cancel_.load() ? "cancelled" : "replication link lost");
  if (!run.lost.load()) {
    proto::Op end;
    auto* e = end.mutable_resync_mark();
    e->set_id(id);
    e->set_ok(ok);
    proto::Ack ack;
    if (!run.Query(end, &ack) && ok) {
      ok = false;
      run.Fail("the peer did not take the resync's end mark");
    }
  }
  run.WaitFixes();
  *lost = run.lost.load();
  proto::FsResync p;
  Progress(&p);
  if (ok) {
    HLOG_INFO("resync %llu done: %llu bytes compared, %llu sent, %llu files, %.1f s", (unsigned long long)id,
              (unsigned long long)p.bytes_done(), (unsigned long long)p.bytes_sent(),
              (unsigned long long)p.files_done(), p.elapsed_s());
  } else {
    HLOG_WARN("resync %llu failed: %s (the record keeps what is left)", (unsigned long long)id,
              run.Error().c_str());
  }
  std::lock_guard<std::mutex> lock(mu_);
  progress_.set_error(run.Error());
  return ok;
}

void ResyncEngine::VerifyMain(bool repair, uint64_t id) {
  Run run(this, host_, options_);
  run.verify = true;
  run.repair = repair;
  run.full = run.tree = true;
  HLOG_INFO("verify %llu starts%s", (unsigned long long)id,
            repair ? " (repair: differences are recorded)" : "");
  run.StartWorkers();
  run.WalkDir(host_->resync_table().root(), "", true, false, 0);
  run.DrainWorkers();
  run.ReleaseLinks();
  run.StopWorkers();
  run.WaitFixes();
  if (!run.failed.load() && run.lost.load()) run.Fail("replication link lost");
  if (!run.failed.load() && cancel_.load()) run.Fail("cancelled");
  if (!run.failed.load() && run.fix_errors.load() > 0) run.Fail("the peer could not answer every query");
  const std::string error = run.Error();
  std::lock_guard<std::mutex> lock(mu_);
  progress_.set_elapsed_s(std::chrono::duration<double>(Clock::now() - started_).count());
  progress_.set_error(error);
  progress_.set_phase(error.empty() ? "done" : "failed");
  HLOG_INFO("verify %llu %s: %llu bytes compared, %llu differences%s", (unsigned long long)id,
            error.empty() ? "done" : "failed", (unsigned long long)progress_.bytes_done(),
            (unsigned long long)progress_.differences(), error.empty() ? "" : (": " + error).c_str());
  running_ = false;
}

void ResyncEngine::Main(bool full, std::string why, uint64_t id) {
  // A failed attempt on a stream that is still up (the peer refused fixes: its disk is full...) is
  // tried again with a new id after a pause growing to a minute, until it succeeds, the stream is
  // lost or the resync is cancelled: the phase shows "failed" with the error meanwhile.
  bool ok = false;
  for (int attempt = 1;; ++attempt) {
    bool lost = false;
    ok = Attempt(full, why, id, &lost);
    if (ok || lost || cancel_.load()) break;
    const auto pause = std::chrono::seconds(std::min(60, 5 << std::min(attempt - 1, 4)));
    std::unique_lock<std::mutex> lock(mu_);
    progress_.set_phase("failed");
    HLOG_WARN("resync: attempt %d failed (%s); again in %lld s", attempt, progress_.error().c_str(),
              (long long)pause.count());
    cancel_cv_.wait_for(lock, pause, [this] { return cancel_.load(); });
    if (cancel_.load()) break;
    id = NextIdLocked();
    progress_.set_phase("running");
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    progress_.set_elapsed_s(std::chrono::duration<double>(Clock::now() - started_).count());
    progress_.set_phase(ok ? "done" : "failed");
  }
  done_ok_ = ok;
  running_ = false;
}

}  // namespace hamirror::fs
