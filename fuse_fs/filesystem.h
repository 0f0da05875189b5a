// Filesystem: the FUSE low-level operations of hamirror-fs and its role (primary/secondary/alone).
//
// Every request reaches the real file under the mount point through the O_PATH descriptors of the
// InodeTable (*at() calls, /proc/self/fd/N reopen). As primary or alone, each mutation is applied
// locally and handed to the Shipper while the lock that orders it is held: the inode's data_mu for
// data/metadata operations, the namespace lock for tree changes; the kernel gets its answer when both
// halves are done (see PendingReply). As secondary, local programs only read (mutations get EROFS)
// and the replication server applies the peer's stream underneath; caches are disabled so readers
// see those changes.
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <shared_mutex>
#include <string>

#include "common/status.h"
#include "common/unique_fd.h"
#include "fuse_fs/init_extension.h"
#include "fuse_fs/inode_table.h"
#include "fuse_fs/local_direct_writes.h"
#include "fuse_fs/resync.h"
#include "proto/fs_control.pb.h"
#include "replicator/replication_server.h"
#include "replicator/shipper.h"
#include "replicator/tls.h"
#include "replicator/zone_record.h"

namespace hamirror::fs {

class PendingReply;
struct RecordSpan;

enum class Role { kPrimary, kSecondary, kAlone };
const char* RoleName(Role role);

// Names this directory's files in a state directory: "fs-<basename>-<16 hex digits of a hash of the
// whole path>", so that two replicated directories with one basename never share a record.
std::string StateFileStem(const std::string& dir);

struct FsOptions {
  std::string dir;     // the replicated directory (mount point)
  std::string peer;    // primary: HOST:PORT of the secondary
  std::string listen;  // secondary: HOST:PORT to listen on
  std::chrono::milliseconds send_timeout{30000};
  // Non-zero (hamirrord passes it): a primary whose peer is lost goes alone by itself only when the
  // manager was heard within this time (NoteControlCall); otherwise its writes wait for it.
  // docs/datapath.md "Without a manager, never alone".
  std::chrono::milliseconds manager_grace{0};
  replicator::TlsOptions tls;
  std::string node_name;
  // Handles in FUSE direct-I/O mode (no page cache on the mount; docs/datapath.md "Direct I/O"):
  // false, those opened with O_DIRECT; true, also every handle opened for writing.
  bool direct_io_all = false;
  // Ask the kernel for HANDLE_KILLPRIV_V2 (docs/datapath.md): cached writes then cost no GETXATTR of
  // security.capability, and this daemon drops set-id bits and capabilities itself.
  bool killpriv_v2 = true;
  // Ask the kernel for DIRECT_IO_ALLOW_MMAP: a shared mmap of a direct-I/O handle then works (the
  // kernel keeps it coherent), so handles opened with O_DSYNC/O_SYNC for writing get direct I/O too
  // (no FSYNC request after each of their writes). docs/datapath.md "Direct I/O".
  bool direct_io_mmap = true;
  // Large aligned writes go to this node's disk with O_DIRECT, around its page cache: a primary's
  // (LocalDirectWrites) and a secondary's (ApplierOptions.direct_writes).
  bool direct_writes = true;
  // The persistent record of what the peer may lack (replicator/zone_record.h), outside the tree.
  std::string record_path;
  // Where a split-brain resync into this node saves what it changes (replicator/quarantine.h).
  std::string quarantine_dir;
  uint64_t zone_size = 1 << 20;
  ResyncOptions resync;
  // O_PATH descriptors kept for known inodes before falling back to file handles (common/kept_path.h);
  // 0: half the descriptor limit (a secondary's applier: its own default, a quarter).
  size_t path_fd_budget = 0;
};

class Filesystem : private ResyncHost {
 public:
  // root_fd: O_PATH descriptor of the directory, opened before mounting over it (taken over).
  Filesystem(const FsOptions& options, int root_fd, const struct stat& root_st);
  ~Filesystem() override;
  Filesystem(const Filesystem&) = delete;
  Filesystem& operator=(const Filesystem&) = delete;

  static const fuse_lowlevel_ops& Ops();
  // The mounted session, for invalidations the secondary sends the kernel (set once mounted).
  void SetSession(fuse_session* session) { session_.store(session); }
  // The INIT handshake's extension (dev_channel.h); null: libfuse's plain INIT. Set before the loop.
  void SetInitExtension(const InitExtension* ext) { init_extension_ = ext; }

  // Sets up the initial role before mounting (opens the record, starts the shipper or the replication
  // server). Fails on a bad address, an address in use, unusable TLS files or a record that cannot be
  // written.
  Status Start(Role role);
  // Changes the role in place: secondary->primary (peer optional), primary->alone, alone->primary.
  // Primary with a peer: once the stream is up, a resync brings the peer up to date (auto: what the
  // record names). Primary again with the same peer while the stream is up: nothing changes.
  Status SetRole(Role role, const std::string& peer);
  // Starts a resync into the peer now (primary with a stream only).
  Status Resync(bool full);
  // Secondary: the next resync into this node saves what it changes first (split brain: this side is
  // discarded); false: it does not.
  Status ExpectResync(bool quarantine, bool full);
  // Starts an online verify of the peer's copy (primary with a stream, no resync running): see
  // ResyncEngine::StartVerify. Its progress and findings: GetStatus().verify().
  Status Verify(bool repair);
  // The manager will stop this process and leave the directory unmounted (module stopped): what is
  // written to it meanwhile bypasses the record, so the record is marked `tree` (durable on return).
  Status PrepareRelease();
  proto::FsStatus GetStatus();
  // A manager's sign of life (the control server calls it for every call that changes something and
  // for keepalive status polls): see FsOptions::manager_grace.
  void NoteControlCall();
  // After the FUSE loop ended: waits (bounded by the send timeout) for in-flight operations, then
  // stops the shipper / replication server.
  void Stop();

  // --- FUSE operations (called through Ops()) ---
  void Init(fuse_conn_info* conn);
  void Lookup(fuse_req_t req, fuse_ino_t parent, const char* name);
  void Forget(fuse_ino_t ino, uint64_t nlookup);
  void Getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  void Setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int valid, fuse_file_info* fi);
  void Readlink(fuse_req_t req, fuse_ino_t ino);
  void Mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev);
  void Mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode);
  void Symlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name);
  void Link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname);
  void Unlink(fuse_req_t req, fuse_ino_t parent, const char* name, bool is_dir);
  void Rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent, const char* newname,
              unsigned flags);
  void Open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  void Create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi);
  void Read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi);
  void Write(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off, fuse_file_info* fi);
  void Flush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  void Release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  void Fsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi, bool is_dir);
  void Opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  void Readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi);
  void Releasedir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  void Statfs(fuse_req_t req, fuse_ino_t ino);
  void Setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size, int flags);
  void Getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size);
  void Listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
  void Removexattr(fuse_req_t req, fuse_ino_t ino, const char* name);
  void Fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length, fuse_file_info* fi);
  void CopyFileRange(fuse_req_t req, fuse_ino_t ino_in, off_t off_in, fuse_file_info* fi_in,
                     fuse_ino_t ino_out, off_t off_out, fuse_file_info* fi_out, size_t len, int flags);
  void Lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info* fi);

 private:
  Inode& Get(fuse_ino_t ino);
  bool ReadOnly() const { return role_.load(std::memory_order_relaxed) == Role::kSecondary; }
  double EntryTimeout() const;
  // Ships op; pending (may be null: nothing waits) is completed by the shipper's callback, or at once
  // when there is no shipper (secondary).
  void Ship(proto::Op&& op, PendingReply* pending);
  int LookupLocked(Inode& parent, const char* name, fuse_entry_param* e);
  // Shared tail of mknod/mkdir/symlink/create: the entry `name` was just made in `parent` (reached
  // through parent_path; namespace lock held): chown it to the caller, enter it in the table and ship
  // MakeNode (or Bind when it was not new). Fills e. Returns errno.
  int EnterNewNode(fuse_req_t req, Inode& parent, const PathFd& parent_path, const char* name,
                   const char* symlink_target, bool created, fuse_entry_param* e, proto::Op* op);
  // Removes an entry just made in parent when entering it failed (nothing was shipped).
  void UndoCreate(const PathFd& parent_path, const char* name, bool is_dir);
  void AddTimeFix(proto::Op* op, uint64_t rid, const struct timespec& mtime);
  template <typename Query>
  void ReplyXattrQuery(fuse_req_t req, fuse_ino_t ino, size_t size, Query query);
  // Ships the file's current mtime (data_mu held) if its data changed since the last time it was sent.
  void ShipMtimeLocked(Inode& inode, int fd, PendingReply* pending);
  // Counts a write for the write-then-fsync pattern (data_mu held).
  void CountWriteLocked(Inode& inode);
  // Before a write the kernel sent without its own privilege check (direct I/O): drops what a write
  // drops, locally and on the peer (data_mu held).
  void DropPrivsLocked(fuse_req_t req, Inode& inode, int fd);
  // The local half of a replicated flush (full: fsync, else fdatasync), beside the peer's; completes
  // p's local part. On a ring queue's thread the ring runs it (SubmitRingFlush).
  static void FlushLocalPart(int fd, bool full, PendingReply* p);
  // A write without O_DSYNC/O_SYNC: shipped first, applied locally while the peer applies it.
  // count_write: counts for the write-then-fsync pattern (CountWriteLocked).
  void WriteOverlapped(fuse_req_t req, Inode& inode, int fd, const char* buf, size_t size, off_t off,
                       bool direct, bool count_write);
  // The local write of a replicated write (PwriteAll's contract): large aligned ones with O_DIRECT
  // (LocalDirectWrites), the others through the page cache.
  int WriteLocal(int fd, const char* buf, size_t size, off_t off, size_t* done);
  // The peer may hold data of this file that this node does not (a local apply failed after shipping).
  void RecordPeerAhead(Inode& inode);
  void RebindAll(replicator::Shipper* shipper);
  // The record describes the file system now under the directory (<record>.id); else it is marked
  // full (its inode numbers would name other files).
  Status CheckRecordIdentity();
  // A shipper to peer (empty: alone).
  Status MakeShipper(const std::string& peer, std::unique_ptr<replicator::Shipper>* out);
  void FillEntry(Inode* inode, const struct stat& st, fuse_entry_param* e);
  // Before a data change of [offset, offset+length) of inode is issued: the record holds its zones on
  // disk (length kToEnd: to the end of file). The reply tells the record how the peer's half ended.
  // Returns errno (EIO when the record cannot be written: the change is refused, never unrecorded).
  int BeginRecord(Inode& inode, uint64_t offset, uint64_t length, RecordSpan* span);
  static void OnChangeShipped(void* ctx, const replicator::ShipResult& result);
  // The local inode number of the regular file whose mode, owner or times alone op changes; 0 when
  // it changes anything else.
  uint64_t MetaOnlyIno(const proto::Op& op);
  void FillRecordStatus(proto::FsStatus* st) const;
  // Starts the automatic resync after a stream came up (shipper_mu_ not held).
  void StartResyncIfConnected(const char* why);
  // Secondary: after a batch was applied (a resync's end mark resets this node's own record).
  void OnBatchApplied(const proto::OpBatch& batch);
  // Secondary: after the peer removed entries underneath, the kernel is told to drop its entries for
  // files now unlinked, so it forgets them and their O_PATH descriptors close: otherwise a file a local
  // reader looked up keeps its disk space here until the kernel's caches are dropped. Only inodes
  // that hold a descriptor matter; a secondary holds none past its root's when file handles work.
  void DropUnlinkedFromKernel();
  // Secondary: the answer to a resync's start mark (does this node's own record ask for more?).
  void AnswerResyncBegin(proto::Ack* answer);

  // ResyncHost
  InodeTable& resync_table() override { return table_; }
  std::shared_mutex& resync_ns_mutex() override { return ns_mu_; }
  replicator::ZoneRecord& resync_record() override { return *record_; }
  bool ResyncShip(proto::Op&& op, replicator::ShipCallback callback, void* ctx) override;
  void ResyncForget(Inode* inode) override;

  const FsOptions options_;
  InodeTable table_;
  LocalDirectWrites local_direct_writes_;
  std::atomic<Role> role_{Role::kAlone};
  std::atomic<int64_t> control_heard_ms_{0};  // steady clock, ms: the last control call (NoteControlCall)
  std::string peer_;                          // guarded by shipper_mu_

  // Namespace lock: exclusive across (local apply, Ship) of tree changes; shared by lookups that bind.
  std::shared_mutex ns_mu_;
  // Guards shipper_/server_ replacement; held shared around each Ship() call.
  std::shared_mutex shipper_mu_;
  std::unique_ptr<replicator::Shipper> shipper_;
  std::unique_ptr<replicator::ReplicationServer> server_;
  std::mutex role_change_mu_;                       // one role change at a time
  std::unique_ptr<replicator::ZoneRecord> record_;  // outlives role changes
  UniqueFd record_lock_;                            // flock'ed <record>.lock: one hamirror-fs per record
  std::unique_ptr<ResyncEngine> resync_;
  std::unique_ptr<ResyncEngine> verify_;      // the same walk, comparing only (never with resync_)
  std::atomic<bool> quarantine_next_{false};  // secondary: see ExpectResync
  std::atomic<bool> full_next_{false};        // secondary: see ExpectResync
  std::atomic<fuse_session*> session_{nullptr};
  const InitExtension* init_extension_ = nullptr;
  // HANDLE_KILLPRIV_V2 is on: the kernel leaves every privilege drop (write, truncate) to us.
  std::atomic<bool> privs_left_to_us_{false};
  // DIRECT_IO_ALLOW_MMAP is on: handles opened for synchronous writes get direct I/O (SetDirectIo).
  std::atomic<bool> sync_handles_direct_{false};
  // fsync/fdatasync requests answered with nothing to send or flush (FsStatus.syncs_covered).
  std::atomic<uint64_t> syncs_covered_{0};
  // Namespace changes (create, link, unlink, rename) counted by Ship: started before the op can be
  // answered, queued once it is on the stream (queued <= started). A flush that reads queued = n is
  // ordered after those n, locally and on the stream; an fsync that finds started still equal to a
  // covering flush's n knows no namespace change began since. See Inode::durable_full_ns.
  std::atomic<uint64_t> ns_started_{0};
  std::atomic<uint64_t> ns_queued_{0};
};

}  // namespace hamirror::fs
