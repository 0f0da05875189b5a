// ZoneRecord: the persistent, crash-safe record of what the peer may lack (DRBD's activity log and
// bitmap, adapted to files).
//
// hamirror-fs on the primary calls Begin() BEFORE it issues a data write (locally and to the peer), keyed
// by the local file's inode number (st_ino; the record knows no paths), and End() when the write is done.
// Promise: after a crash of the process or the machine at ANY instant, every zone that may differ between
// the two copies is in the record read back by the next Open().
//
// Zones. A file is cut into zones of zone_size bytes. A recorded zone is
//   sticky     the peer will not get (or did not get) a write to it: kept until a resync forgets it;
//   active     a write announced by Begin() is in flight (End() not called yet);
//   retirable  neither: the peer has every write to it. It stays on disk (a harmless superset) so that the
//              next write to it needs no disk write, until compaction retires it.
// A file may also have an open "tail" (every zone from N on: truncate/extend "to end"), a "whole file"
// and a "metadata" flag; directories whose entries may differ are recorded by inode; two global flags
// ask the resync for more: full (compare everything by checksum) and tree (rescan every directory's
// entries and every file's metadata).
//
// Hot path. A Begin() whose zones are all durably recorded costs a mutex and one hash lookup per zone,
// no disk write, and never waits for another thread's fdatasync (the mutex is never held during I/O; a
// rewrite holds it only while it serializes the state in memory). Only the first write into a new zone
// appends an entry and waits for fdatasync; concurrent callers share one pwrite+fdatasync (group commit:
// whoever finds no write in progress writes every queued entry, the others wait for it). A sequential
// writer pays that once per 16 MiB, not per zone: a new zone opened right after one the file used lately
// records the zones that follow (16 of them, at most 16 MiB) in the same append, as retirable zones
// (LookAheadLocked). Measured ("zone_record: hot path cost", Release, 2-core VM shared with other builds,
// uncontended): Begin+End on an already recorded zone 30-90 ns, a sticky Begin on one 15-40 ns (ASan+UBSan:
// 117 and 66 ns); a Begin on a new zone (append + fdatasync on the VM's ext4) 0.2-3.7 ms.
//
// Compaction. Retirable zones stay on disk until more than activity_zones of them are there; then the
// appending Begin() that noticed rewrites the file without the least recently used retirable zones (keeping
// activity_zones/2), atomically (temp file, fsync, rename, fsync of the directory): a crash during it
// leaves the old file, a superset. Sticky and active zones are always kept, so the file holds at most
// sticky + active + activity_zones zones (plus the flags). Concurrent Begin()s are safe: a zone retired by
// a compaction is forgotten in memory before the new file is written, so a Begin() of it meanwhile appends
// it again (after the rename, to the new file) and returns only once that is durable.
//
// File format (binary, little-endian):
//   header, 32 bytes: magic "HMZONES\n" | u32 version (1) | u32 entry size (32) | u64 zone size |
//                     u64 XXH3-64 of the previous 24 bytes
//   entries, 32 bytes each, appended: u8 type | u8 0 | u16 0 | u32 aux | u64 a | u64 b |
//                     u64 XXH3-64 (seed: the entry's file offset) of the previous 24 bytes
//   types: 1 open (a session starts)        2 clean (Close(): the session ended cleanly)
//          3 zone (a=ino, b=zone)            4 tail (a=ino, b=first zone)
//          5 whole file (a=ino)              6 metadata (a=ino)          7 directory (a=ino)
//          8 full (aux=reason length)        9 tree (aux=reason length)  10 text (16 reason bytes in a,b;
//            exactly ceil(length/16) of them follow a full/tree entry, zero padded)
//   Every unused field must be 0. The session ended cleanly iff the last entry is "clean"; the first
//   append after a clean entry is an "open" entry (Open() appends one at once), so a later crash shows.
//   The file is either appended to (new entries) or replaced atomically (rename); it is never edited.
//
// Strict parsing. ANY byte that does not parse (bad magic/version/entry size, zone size changed, a
// checksum mismatch, a nonzero unused field, an unknown type, misplaced text, a truncated last entry) is
// damage: the record comes back with full=true and a reason naming the file, the offset and the cause, and
// the file is rewritten fresh (keeping full, and the entries read before the damage). A truncated last
// entry is treated the same on purpose: a torn append means a Begin() that never returned (harmless), but
// a torn append cannot be told from a corrupted file, and only "full" is safe for the latter. Damage also
// sets tree (whether the last session ended cleanly is unknown).
//
// Errors. A failed append (pwrite/fdatasync) or rewrite makes the record "broken": every later call that
// needs a disk write fails with that error (fdatasync is never retried on the same file) until a rewrite
// (ForgetResynced, Reset or Close) succeeds. What a failed call recorded stays recorded in
// memory (sticky), so Snapshot() still shows it. Messages name the file path and the errno text.
//
// Thread-safe: every method may be called from any thread. One ZoneRecord per file (not shared between
// processes); the rewrite uses "<path>.tmp" next to it.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/status.h"

namespace hamirror::replicator {

struct ZoneRecordEntry;  // zone_record.cc: one entry of the file, decoded
struct ZoneRecordImage;  // zone_record.cc: what a file holds, parsed

struct ZoneRecordOptions {
  std::string path;  // the record file (in the module's state directory, outside the replicated tree)
  uint64_t zone_size = 1 << 20;  // ruzone_blocksize
  size_t activity_zones =
      4096;  // retirable zones kept on disk before compaction retires the least recently used
};

struct RecordedFile {
  bool whole = false;                    // compare the whole file (data and metadata)
  bool meta = false;                     // metadata (mode, owner, times, xattrs)
  std::vector<uint64_t> zones;           // sorted zone indices
  uint64_t tail_from_zone = UINT64_MAX;  // every zone >= this (truncate/extend "to end"); UINT64_MAX: none
};

struct RecordSnapshot {
  uint64_t zone_size = 0;
  bool full = false;  // compare everything by checksum
  std::string full_reason;
  bool tree = false;  // rescan every directory's entries and every file's metadata
  std::string tree_reason;
  std::set<uint64_t> dirs;                 // directory inodes whose entries may differ
  std::map<uint64_t, RecordedFile> files;  // by inode number

  // Opaque: the version of every entry above when the snapshot was taken, so that ForgetResynced only
  // forgets what was not marked again since. A caller restricting a snapshot edits only the fields above
  // (entries without a version here are never forgotten).
  struct Versions {
    uint64_t full = 0;
    uint64_t tree = 0;
    std::map<uint64_t, uint64_t> dirs, whole, meta, tail;     // by inode
    std::map<std::pair<uint64_t, uint64_t>, uint64_t> zones;  // by (inode, zone)
  };
  Versions versions;
};

struct RecordCounts {
  uint64_t files = 0;         // inodes with anything recorded (sticky or active)
  uint64_t zones = 0;         // sticky or active zones (tails not included)
  uint64_t dirs = 0;          // directories recorded
  uint64_t active_zones = 0;  // zones with writes in flight now
  uint64_t disk_zones = 0;    // zones in the file (retirable ones included)
  uint64_t appends = 0;       // entries appended since Open()
  uint64_t syncs = 0;         // fdatasyncs of appends (group commit: fewer than the appends under load)
  uint64_t compactions = 0;   // rewrites that retired least recently used zones (churn)
  uint64_t rewrites = 0;      // atomic rewrites of any kind (compaction, forget, reset, close, open)
  bool full = false;
  bool tree = false;
};

class ZoneRecord {
 public:
  static constexpr uint64_t kToEnd = UINT64_MAX;

  ~ZoneRecord();
  ZoneRecord(const ZoneRecord&) = delete;
  ZoneRecord& operator=(const ZoneRecord&) = delete;

  // Opens or creates the file. Never fails because the file is missing or damaged: a missing file gives a
  // record with full=true ("no record: history unknown"), a damaged one (bad magic/version, zone size
  // changed, checksum mismatch, truncated entry, anything unparsable) full=true with a precise reason
  // (file, offset, what) and the file rewritten fresh (keeping full). A file whose last session did not
  // end with Close() gives tree=true ("previous session ended uncleanly"), and every zone found on disk
  // stays recorded (as sticky). Fails only when the file cannot be created/written/synced (the caller then
  // refuses to start), or on invalid options (empty path, zone_size 0).
  static Status Open(const ZoneRecordOptions& options, std::unique_ptr<ZoneRecord>* out);

  // Reads a record file without changing it (tools, tests): what a crash now would leave, as Open() would
  // read it back (full with the reason when missing or damaged, tree when the session is not cleanly
  // ended; every zone in the file). Reading while another process appends may see a torn last entry.
  static Status Inspect(const std::string& path, uint64_t zone_size, RecordSnapshot* out);

  // A data write is about to be issued to [offset, offset+length) of inode ino (length kToEnd: to end of
  // file -> tail; a range of more than 1024 zones is recorded as a tail too). Returns once every zone of
  // the range is durably in the file. sticky: the peer will not get this write (alone) -- the zones stay
  // until a resync forgets them, and no End() follows. Otherwise they are "active" (in flight) until
  // End(). length 0: nothing. On error the range is recorded sticky in memory only; no End() follows.
  [[nodiscard]] Status Begin(uint64_t ino, uint64_t offset, uint64_t length, bool sticky);
  // The write announced by a non-sticky Begin() (same arguments) finished. peer_has_it=false (peer lost /
  // peer error) makes its zones sticky. Never writes to disk (the zones are there since Begin()).
  void End(uint64_t ino, uint64_t offset, uint64_t length, bool peer_has_it);

  // Sticky marks, durable on return (no disk write when already recorded; a flag set again keeps its first
  // reason, but counts as marked again for ForgetResynced):
  [[nodiscard]] Status MarkFile(uint64_t ino);  // compare the whole file
  [[nodiscard]] Status MarkMeta(uint64_t ino);  // its metadata
  [[nodiscard]] Status MarkDir(uint64_t ino);   // a directory's entries
  [[nodiscard]] Status MarkTree(const std::string& reason);
  [[nodiscard]] Status MarkFull(const std::string& reason);

  RecordSnapshot Snapshot() const;  // everything recorded (sticky and active, on disk or not)
  bool Empty() const;  // nothing sticky, no flags (active zones with writes in flight do not count)
  RecordCounts Counts() const;
  uint64_t zone_size() const { return zone_size_; }
  const std::string& path() const { return path_; }

  // After a resync covered snap (or a part of it: the caller may pass a snapshot restricted to some
  // files): forgets every entry of snap not marked again since (a Begin, End(peer_has_it=false) or Mark
  // touching it), and the flags if they were in snap and not set again; rewrites the file atomically
  // (temp file, fsync, rename, fsync of the directory). Active zones with writes in flight are never
  // forgotten. Forgotten zones become retirable (still on disk, so the next write to them is cheap).
  [[nodiscard]] Status ForgetResynced(const RecordSnapshot& snap);
  // Forgets everything (this copy was just made identical to the peer's), clears full/tree; rewrites the
  // file atomically. Zones with writes in flight stay active.
  [[nodiscard]] Status Reset();
  // Clean end: the caller guarantees no write is in flight (a zone still in flight is made sticky);
  // retires active and retirable zones, rewrites the file atomically ending with a clean entry. The record
  // stays usable: a later Begin/Mark appends an "open" entry first.
  [[nodiscard]] Status Close();

 private:
  class Fd {  // owns a file descriptor
   public:
    Fd() = default;
    explicit Fd(int fd) : fd_(fd) {}
    ~Fd() { Reset(-1); }
    Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    Fd& operator=(Fd&& other) noexcept {
      Reset(std::exchange(other.fd_, -1));
      return *this;
    }
    int get() const { return fd_; }
    void Reset(int fd);  // closes the one held

   private:
    int fd_ = -1;
  };
  struct ZoneKey {
    uint64_t ino;
    uint64_t zone;
    bool operator==(const ZoneKey&) const = default;
  };
  struct ZoneKeyHash {
    size_t operator()(const ZoneKey& k) const;
  };
  // A zone in the map is in the file (durable once lsn <= durable_lsn_); retiring erases it.
  struct Zone {
    uint64_t lsn = 0;       // log sequence number of its entry (0: read at Open)
    uint64_t version = 0;   // bumped by every mark (ForgetResynced)
    uint64_t last_use = 0;  // LRU clock
    uint32_t inflight = 0;  // Begin()s without End()
    bool sticky = false;
  };
  struct Flag {  // a sticky mark: whole file, metadata, directory, full, tree
    bool set = false;
    uint64_t version = 0;
    uint64_t lsn = 0;
  };
  struct File {
    Flag whole, meta;
    uint64_t sticky_tail = kToEnd;  // first zone of the sticky tail (kToEnd: none)
    uint64_t tail_version = 0;
    std::map<uint64_t, uint32_t> active_tails;  // first zone -> writes in flight
    uint64_t disk_tail = kToEnd;                // first zone of the tail in the file
    uint64_t disk_tail_lsn = 0;
    bool Unused() const;
  };
  enum class RewriteMode { kCompact, kKeep, kClose };

  explicit ZoneRecord(const ZoneRecordOptions& options);

  void Load(const ZoneRecordImage& image);
  bool ZoneRange(uint64_t offset, uint64_t length, uint64_t* first, uint64_t* last) const;
  void Account(const Zone& z, int sign);  // adds (+1) or removes (-1) z from the zone counters
  uint64_t Queue(uint8_t type, uint32_t aux, uint64_t a, uint64_t b);  // -> lsn of the entry
  uint64_t QueueText(uint8_t type, const std::string& text);
  uint64_t BeginZonesLocked(uint64_t ino, uint64_t first, uint64_t last, bool sticky);
  void LookAheadLocked(uint64_t ino, uint64_t first, uint64_t last, uint64_t use);
  uint64_t BeginTailLocked(uint64_t ino, uint64_t first, bool sticky);
  void FailBeginLocked(uint64_t ino, uint64_t first, uint64_t last, bool tail, bool sticky);
  Status Mark(uint8_t type, uint64_t ino, const std::string* reason);
  Status WaitDurable(std::unique_lock<std::mutex>& lk, uint64_t lsn);
  bool CompactionDueLocked() const;
  void RetireLocked(size_t keep);
  std::string EncodeStateLocked(RewriteMode mode);
  Status WriteReplacement(const std::string& data, Fd* fd_out, bool* renamed) const;
  Status Rewrite(std::unique_lock<std::mutex>& lk, RewriteMode mode);
  void ForgetFileLocked(uint64_t ino, const RecordedFile& rf, const RecordSnapshot::Versions& v);

  const std::string path_;
  const uint64_t zone_size_;
  const size_t activity_zones_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<ZoneKey, Zone, ZoneKeyHash> zones_;
  std::unordered_map<uint64_t, File> files_;  // inodes with a flag or a tail
  std::unordered_map<uint64_t, Flag> dirs_;
  Flag full_, tree_;
  std::string full_reason_, tree_reason_;
  uint64_t version_clock_ = 0;
  uint64_t use_clock_ = 0;

  // Zone counters, kept by Account().
  uint64_t sticky_zones_ = 0, active_zones_ = 0, retirable_zones_ = 0;

  // Appends: entries are queued with increasing lsns; one thread at a time (io_busy_) writes the queue
  // (or rewrites the file) while the others wait on cv_.
  Fd fd_;  // replaced only by the thread holding io_busy_
  uint64_t file_size_ = 0;
  std::vector<ZoneRecordEntry> pending_;
  uint64_t last_lsn_ = 0;
  uint64_t durable_lsn_ = 0;
  bool io_busy_ = false;
  bool clean_ = false;  // the file ends with a clean entry: the next append starts with an open entry
  Status broken_;
  uint64_t appends_ = 0, syncs_ = 0, compactions_ = 0, rewrites_ = 0;
};

}  // namespace hamirror::replicator
