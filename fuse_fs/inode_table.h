// InodeTable: the inodes the kernel currently knows (looked up and not yet forgotten).
//
// Each entry keeps a way back to the real file under the mount point (an O_PATH descriptor while the
// PathKeeper's budget has room, else the file system's handle: see common/kept_path.h), the kernel's
// lookup count, and the replication handle (rid) the peer knows the file by. The FUSE node id handed to the
// kernel is the Inode's address (the root is FUSE_ROOT_ID), so no lookup is needed on the data path.
// (parent rid, name) is kept current across rename/unlink so a new replication session can re-bind
// every live inode parents-first.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "common/kept_path.h"
#include "common/unique_fd.h"

namespace hamirror::fs {

struct Inode {
  KeptPath path;  // set when the inode enters the table, released when it leaves
  dev_t dev = 0;
  ino_t ino = 0;
  mode_t type = 0;  // S_IFMT bits
  uint64_t rid = 0;
  uint64_t nlookup = 0;  // guarded by the table mutex

  // Last known name of this inode: guarded by the table mutex. parent_rid 0: no known name (unlinked).
  uint64_t parent_rid = 0;
  std::string name;

  // Held across (local apply, Ship) of every data/metadata mutation of this inode so that the order
  // of conflicting mutations on the stream equals their local order.
  std::mutex data_mu;
  // Counts data/metadata mutations (under data_mu); durable_gen: all mutations up to it are durable
  // on both sides (set when a dsync write or fsync completes). Lets an fsync that follows an O_DSYNC
  // write (the kernel sends both) skip a second round trip.
  uint64_t mut_gen = 0;
  std::atomic<uint64_t> durable_gen{0};
  // The same for a full fsync on both sides (an O_DSYNC write or fdatasync does not raise it), so
  // fsync(2) after such a write still makes the peer flush metadata too.
  std::atomic<uint64_t> durable_full_gen{0};
  // A full fsync on both sides also covers the inode's link count and a directory's entries, which
  // namespace operations change without counting in mut_gen: the Filesystem's count of namespace
  // changes queued when the last such flush began. Equal to the count started now: none since.
  std::atomic<uint64_t> durable_full_ns{0};
  // The file's data changed since its mtime was last sent to the peer (under data_mu).
  bool mtime_dirty = false;
  // Write-then-fdatasync pattern (a log): writes since the last fsync, and how many fsyncs in a row
  // each followed exactly one write. Under data_mu; read without it as a hint (Filesystem::Write).
  std::atomic<uint32_t> writes_since_fsync{0};
  std::atomic<uint32_t> fsync_after_one_write_streak{0};
  // The last fsync that counted for the pattern was fsync(2), not fdatasync: a predicted log write is
  // then made durable the O_SYNC way (Filesystem::Write). Same locking as the two above.
  std::atomic<bool> log_flush_full{false};
  // Checked under data_mu: no set-user-ID or set-group-ID bit and no file capability for a write to
  // drop (Filesystem::DropPrivsLocked). Reset by every mode or xattr change.
  bool no_privs_to_drop = false;
};

class InodeTable {
 public:
  InodeTable() = default;
  ~InodeTable();
  InodeTable(const InodeTable&) = delete;
  InodeTable& operator=(const InodeTable&) = delete;

  // Takes ownership of root_fd (O_PATH of the replicated directory). The root has rid 1.
  // max_kept_fds: the PathKeeper's descriptor budget (0: its default).
  void InitRoot(int root_fd, const struct stat& st, size_t max_kept_fds = 0);
  Inode* root() { return &root_; }
  int root_fd() const { return root_.path.fd(); }

  // A descriptor of the inode's real file for one use (see PathKeeper::Open).
  PathFd Open(const Inode& inode) const { return keeper_->Open(inode.path); }
  const PathKeeper& keeper() const { return *keeper_; }
  // Descriptors kept for inodes entering the table from now on (PathKeeper::set_budget).
  void SetPathBudget(size_t max_kept_fds) { keeper_->set_budget(max_kept_fds); }

  // Finds the inode (dev, ino) and adds one lookup, or adopts `fd` (O_PATH) as a new inode with a
  // fresh rid. *created tells which; when not created, fd is closed. parent_rid/name are recorded
  // either way.
  Inode* LookupOrInsert(UniqueFd fd, const struct stat& st, uint64_t parent_rid, const std::string& name,
                        bool* created);
  // Inode with this (dev, ino) if the kernel knows it (no reference taken), else null.
  Inode* Find(dev_t dev, ino_t ino);
  Inode* FindRid(uint64_t rid);
  // Adds n lookups to a known inode (link, re-lookup).
  void Ref(Inode* inode, uint64_t n = 1);
  // Drops n lookups; when the count reaches zero the inode leaves the table and its rid is returned
  // (the caller ships Forget and then calls Destroy); 0 otherwise.
  uint64_t Unref(Inode* inode, uint64_t n);
  // Frees an inode that left the table (Unref returned its rid).
  void Destroy(Inode* inode);

  void SetName(Inode* inode, uint64_t parent_rid, const std::string& name);
  void ClearName(Inode* inode);
  // The inode's last known (parent rid, name); false if it has none.
  bool GetName(Inode* inode, uint64_t* parent_rid, std::string* name);

  struct NamedInode {
    Inode* inode;
    uint64_t rid, parent_rid;
    std::string name;
    int depth;
  };
  // Every live inode but the root with a known name, parents before children.
  std::vector<NamedInode> SnapshotParentsFirst();

  size_t size();

  // A fresh rid for a name that exists only on the peer (resync removes it there): never in the table.
  uint64_t AllocateRid();

 private:
  std::mutex mu_;
  std::unique_ptr<PathKeeper> keeper_;
  Inode root_;
  std::map<std::pair<dev_t, ino_t>, Inode*> by_key_;
  std::map<uint64_t, Inode*> by_rid_;
  uint64_t next_rid_ = 2;
};

}  // namespace hamirror::fs
