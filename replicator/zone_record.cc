#include "replicator/zone_record.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/log.h"

namespace hamirror::replicator {

struct ZoneRecordEntry {
  uint8_t type = 0;
  uint32_t aux = 0;
  uint64_t a = 0;
  uint64_t b = 0;
};

struct ZoneRecordImage {
  bool missing = false;
  std::string damage;  // empty: the whole file parsed
  bool clean = false;  // the last entry is a clean end
  bool full = false;
  bool tree = false;
  std::string full_reason, tree_reason;
  std::vector<ZoneRecordEntry> entries;  // zone, tail, whole, meta and directory entries, in file order
};

namespace {

constexpr char kMagic[8] = {'H', 'M', 'Z', 'O', 'N', 'E', 'S', '\n'};
constexpr uint32_t kFormatVersion = 1;
constexpr size_t kHeaderSize = 32;
constexpr size_t kEntrySize = 32;
constexpr size_t kTextBytes = 16;          // reason bytes per text entry
constexpr size_t kMaxReason = 1024;        // longer reasons are cut
constexpr uint64_t kMaxRangeZones = 1024;  // a longer range is recorded as a tail

enum EntryType : uint8_t {
  kOpenEntry = 1,
  kCleanEntry = 2,
  kZoneEntry = 3,
  kTailEntry = 4,
  kWholeEntry = 5,
  kMetaEntry = 6,
  kDirEntry = 7,
  kFullEntry = 8,
  kTreeEntry = 9,
  kTextEntry = 10,
};

void Put32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>(v >> (8 * i));
}
void Put64(char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>(v >> (8 * i));
}
uint64_t GetLe(const char* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
uint64_t Get64(const char* p) { return GetLe(p, 8); }

Status Errno(const std::string& path, const std::string& what, int err) {
  return Status::FromErrno("zone record " + path + ": " + what, err);
}

std::string EncodeHeader(uint64_t zone_size) {
  std::string h(kHeaderSize, '\0');
  std::memcpy(h.data(), kMagic, sizeof(kMagic));
  Put32(h.data() + 8, kFormatVersion);
  Put32(h.data() + 12, kEntrySize);
  Put64(h.data() + 16, zone_size);
  Put64(h.data() + 24, XXH3_64bits(h.data(), 24));
  return h;
}

// Appends e, as it will sit at file offset `offset`, to out.
void EncodeEntry(const ZoneRecordEntry& e, uint64_t offset, std::string* out) {
  char p[kEntrySize] = {};
  p[0] = static_cast<char>(e.type);
  Put32(p + 4, e.aux);
  Put64(p + 8, e.a);
  Put64(p + 16, e.b);
  Put64(p + 24, XXH3_64bits_withSeed(p, 24, offset));
  out->append(p, kEntrySize);
}

// Text entries carrying `text` (kTextBytes each, zero padded) after a full/tree entry.
void AddText(uint8_t type, const std::string& text, std::vector<ZoneRecordEntry>* out) {
  out->push_back({type, static_cast<uint32_t>(text.size()), 0, 0});
  for (size_t i = 0; i < text.size(); i += kTextBytes) {
    char chunk[kTextBytes] = {};
    std::memcpy(chunk, text.data() + i, std::min(kTextBytes, text.size() - i));
    out->push_back({kTextEntry, 0, Get64(chunk), Get64(chunk + 8)});
  }
}

std::string CutReason(const std::string& reason) {
  return reason.size() <= kMaxReason ? reason : reason.substr(0, kMaxReason);
}

Status WriteAll(int fd, const std::string& data, uint64_t offset, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno(path, "pwrite", errno);
    }
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status ReadAll(int fd, const std::string& path, std::string* out) {
  out->clear();
  char buf[65536];
  while (true) {
    ssize_t n = pread(fd, buf, sizeof(buf), static_cast<off_t>(out->size()));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno(path, "read", errno);
    }
    if (n == 0) return Status::Ok();
    out->append(buf, static_cast<size_t>(n));
  }
}

std::string DirName(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// Parses the header; "" if it is valid, else what is wrong (with the offset).
std::string ParseHeader(const std::string& data, uint64_t zone_size) {
  if (data.size() < kHeaderSize) {
    return "offset 0: truncated header (" + std::to_string(data.size()) + " of 32 bytes)";
  }
  const char* p = data.data();
  if (std::memcmp(p, kMagic, sizeof(kMagic)) != 0) return "offset 0: bad magic (not a zone record)";
  uint64_t version = GetLe(p + 8, 4);
  if (version != kFormatVersion) return "offset 8: unsupported version " + std::to_string(version);
  if (Get64(p + 24) != XXH3_64bits(p, 24)) return "offset 24: header checksum mismatch";
  if (GetLe(p + 12, 4) != kEntrySize) return "offset 12: unsupported entry size";
  uint64_t file_zone_size = Get64(p + 16);
  if (file_zone_size != zone_size) {
    return "offset 16: zone size changed (file has " + std::to_string(file_zone_size) + ", configured " +
           std::to_string(zone_size) + ")";
  }
  return "";
}

// Decodes the entry at off; "" if valid (checksum, reserved bytes, fields unused by its type).
std::string DecodeEntry(const std::string& data, uint64_t off, ZoneRecordEntry* e) {
  if (data.size() - off < kEntrySize) {
    return "truncated entry (" + std::to_string(data.size() - off) + " of 32 bytes)";
  }
  const char* p = data.data() + off;
  if (Get64(p + 24) != XXH3_64bits_withSeed(p, 24, off)) return "entry checksum mismatch";
  if (p[1] != 0 || p[2] != 0 || p[3] != 0) return "nonzero reserved bytes";
  *e = {static_cast<uint8_t>(p[0]), static_cast<uint32_t>(GetLe(p + 4, 4)), Get64(p + 8), Get64(p + 16)};
  bool uses_aux = e->type == kFullEntry || e->type == kTreeEntry;
  bool uses_a = e->type >= kZoneEntry && e->type <= kDirEntry;
  bool uses_b = e->type == kZoneEntry || e->type == kTailEntry;
  if (e->type == kTextEntry) return e->aux == 0 ? "" : "nonzero unused field";
  if (e->type < kOpenEntry || e->type > kTextEntry) return "unknown entry type " + std::to_string(e->type);
  if ((!uses_aux && e->aux != 0) || (!uses_a && e->a != 0) || (!uses_b && e->b != 0)) {
    return "nonzero unused field";
  }
  if (uses_aux && e->aux > kMaxReason) return "reason too long";
  return "";
}

// Reads the text entries after the full/tree entry `head` at *off; advances *off past them.
std::string DecodeText(const std::string& data, const ZoneRecordEntry& head, uint64_t* off,
                       std::string* text) {
  text->clear();
  while (text->size() < head.aux) {
    *off += kEntrySize;
    ZoneRecordEntry t;
    if (*off >= data.size()) return "truncated reason text";
    std::string err = DecodeEntry(data, *off, &t);
    if (!err.empty()) return err;
    if (t.type != kTextEntry) return "missing reason text";
    char chunk[kTextBytes];
    Put64(chunk, t.a);
    Put64(chunk + 8, t.b);
    size_t n = std::min(kTextBytes, head.aux - text->size());
    for (size_t i = n; i < kTextBytes; ++i) {
      if (chunk[i] != 0) return "nonzero reason padding";
    }
    text->append(chunk, n);
  }
  return "";
}

// Parses a whole file into *image (image->damage says where and why parsing stopped).
void ParseImage(const std::string& data, uint64_t zone_size, const std::string& path,
                ZoneRecordImage* image) {
  auto damaged = [&](uint64_t off, const std::string& what) {
    image->damage = "zone record " + path + " is damaged at offset " + std::to_string(off) + ": " + what;
  };
  std::string err = ParseHeader(data, zone_size);
  if (!err.empty()) {
    image->damage = "zone record " + path + " is damaged at " + err;
    return;
  }
  bool after_clean = false;
  for (uint64_t off = kHeaderSize; off < data.size(); off += kEntrySize) {
    ZoneRecordEntry e;
    err = DecodeEntry(data, off, &e);
    if (err.empty() && after_clean && e.type != kOpenEntry)
      err = "entry after a clean end without an open entry";
    if (err.empty() && e.type == kTextEntry) err = "reason text without a full/tree entry";
    std::string text;
    if (err.empty() && (e.type == kFullEntry || e.type == kTreeEntry)) err = DecodeText(data, e, &off, &text);
    if (!err.empty()) {
      damaged(off, err);  // off: the entry that failed (a text entry's own offset)
      return;
    }
    image->clean = e.type == kCleanEntry;
    after_clean = image->clean;
    if (e.type == kFullEntry) {
      image->full = true;
      image->full_reason = text;
    } else if (e.type == kTreeEntry) {
      image->tree = true;
      image->tree_reason = text;
    } else if (e.type >= kZoneEntry && e.type <= kDirEntry) {
      image->entries.push_back(e);
    }
  }
}

// Opens (flags) and parses path into *image (image->missing when it does not exist). Fails only when it
// exists but cannot be opened; *fd_out: the descriptor opened.
Status ReadImage(const std::string& path, int flags, uint64_t zone_size, ZoneRecordImage* image,
                 int* fd_out) {
  int fd = open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      image->missing = true;
      return Status::Ok();
    }
    return Errno(path, "open", errno);
  }
  *fd_out = fd;
  std::string data;
  Status s = ReadAll(fd, path, &data);
  if (!s.ok()) {
    image->damage = "zone record " + path + " cannot be read: " + s.message();
    return Status::Ok();
  }
  ParseImage(data, zone_size, path, image);
  return Status::Ok();
}

}  // namespace

void ZoneRecord::Fd::Reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

size_t ZoneRecord::ZoneKeyHash::operator()(const ZoneKey& k) const {
  uint64_t h = k.ino * 0x9E3779B97F4A7C15ULL ^ (k.zone + 0x632BE59BD9B4E019ULL);
  h ^= h >> 31;
  h *= 0xBF58476D1CE4E5B9ULL;
  h ^= h >> 29;
  return static_cast<size_t>(h);
}

bool ZoneRecord::File::Unused() const {
  return !whole.set && !meta.set && sticky_tail == kToEnd && active_tails.empty() && disk_tail == kToEnd;
}

ZoneRecord::ZoneRecord(const ZoneRecordOptions& options)
    : path_(options.path), zone_size_(options.zone_size), activity_zones_(options.activity_zones) {}

ZoneRecord::~ZoneRecord() = default;

Status ZoneRecord::Open(const ZoneRecordOptions& options, std::unique_ptr<ZoneRecord>* out) {
  if (options.path.empty()) return Status::InvalidArgument("zone record: empty path");
  if (options.zone_size == 0) return Status::InvalidArgument("zone record " + options.path + ": zone size 0");
  std::unique_ptr<ZoneRecord> r(new ZoneRecord(options));
  ZoneRecordImage image;
  int fd = -1;
  Status s = ReadImage(options.path, O_RDWR, options.zone_size, &image, &fd);
  Fd held(fd);
  if (!s.ok()) return s;
  r->Load(image);
  std::unique_lock<std::mutex> lk(r->mu_);
  if (image.missing || !image.damage.empty()) {
    if (!image.damage.empty()) HLOG_WARN("%s; resync will compare everything", image.damage.c_str());
    s = r->Rewrite(lk, RewriteMode::kKeep);  // fresh file (keeping full)
  } else {
    r->fd_ = std::move(held);
    struct stat st;
    if (fstat(r->fd_.get(), &st) != 0) return Errno(options.path, "fstat", errno);
    r->file_size_ = static_cast<uint64_t>(st.st_size);
    s = r->WaitDurable(lk, r->Queue(kOpenEntry, 0, 0, 0));
  }
  if (!s.ok()) return s;
  lk.unlock();
  *out = std::move(r);
  return Status::Ok();
}

Status ZoneRecord::Inspect(const std::string& path, uint64_t zone_size, RecordSnapshot* out) {
  if (zone_size == 0) return Status::InvalidArgument("zone record " + path + ": zone size 0");
  ZoneRecordImage image;
  int fd = -1;
  Status s = ReadImage(path, O_RDONLY, zone_size, &image, &fd);
  Fd held(fd);
  if (!s.ok()) return s;
  ZoneRecord r(ZoneRecordOptions{path, zone_size, 0});
  r.Load(image);
  *out = r.Snapshot();
  return Status::Ok();
}

// Everything read from the file is sticky (whether the peer has it is unknown).
void ZoneRecord::Load(const ZoneRecordImage& image) {
  std::lock_guard<std::mutex> lk(mu_);
  uint64_t ver = ++version_clock_;
  auto set = [ver](Flag* f) { *f = Flag{true, ver, 0}; };
  if (image.full) {
    set(&full_);
    full_reason_ = image.full_reason;
  }
  if (image.tree) {
    set(&tree_);
    tree_reason_ = image.tree_reason;
  }
  if (image.missing) {
    set(&full_);
    full_reason_ = "no record: history unknown (" + path_ + " did not exist)";
  } else if (!image.damage.empty()) {
    set(&full_);
    full_reason_ = CutReason(image.damage + "; history unknown");
    set(&tree_);
    tree_reason_ = "whether the previous session ended cleanly is unknown (record damaged)";
  } else if (!image.clean && !tree_.set) {
    set(&tree_);
    tree_reason_ = "previous session ended uncleanly";
  }
  for (const ZoneRecordEntry& e : image.entries) {
    if (e.type == kZoneEntry) {
      auto [it, inserted] = zones_.try_emplace(ZoneKey{e.a, e.b});
      if (!inserted) continue;
      it->second.sticky = true;
      it->second.version = ver;
      Account(it->second, +1);
    } else if (e.type == kTailEntry) {
      File& f = files_[e.a];
      f.sticky_tail = std::min(f.sticky_tail, e.b);
      f.disk_tail = f.sticky_tail;
      f.tail_version = ver;
    } else if (e.type == kWholeEntry) {
      set(&files_[e.a].whole);
    } else if (e.type == kMetaEntry) {
      set(&files_[e.a].meta);
    } else if (e.type == kDirEntry) {
      set(&dirs_[e.a]);
    }
  }
}

bool ZoneRecord::ZoneRange(uint64_t offset, uint64_t length, uint64_t* first, uint64_t* last) const {
  *first = offset / zone_size_;
  if (length == kToEnd || length > UINT64_MAX - offset) return false;
  *last = (offset + length - 1) / zone_size_;
  return *last - *first < kMaxRangeZones;
}

void ZoneRecord::Account(const Zone& z, int sign) {
  auto add = [sign](uint64_t* counter, bool yes) {
    if (yes) *counter = sign > 0 ? *counter + 1 : *counter - 1;
  };
  add(&sticky_zones_, z.sticky);
  add(&active_zones_, z.inflight > 0);
  add(&retirable_zones_, !z.sticky && z.inflight == 0);
}

uint64_t ZoneRecord::Queue(uint8_t type, uint32_t aux, uint64_t a, uint64_t b) {
  if (clean_ && type != kOpenEntry) {
    pending_.push_back({kOpenEntry, 0, 0, 0});
    ++last_lsn_;
  }
  clean_ = false;
  pending_.push_back({type, aux, a, b});
  return ++last_lsn_;
}

uint64_t ZoneRecord::QueueText(uint8_t type, const std::string& text) {
  std::vector<ZoneRecordEntry> entries;
  AddText(type, text, &entries);
  uint64_t lsn = 0;
  for (const ZoneRecordEntry& e : entries) lsn = Queue(e.type, e.aux, e.a, e.b);
  return lsn;
}

uint64_t ZoneRecord::BeginZonesLocked(uint64_t ino, uint64_t first, uint64_t last, bool sticky) {
  uint64_t need = 0;
  uint64_t use = ++use_clock_;
  const uint64_t ver = sticky ? ++version_clock_ : 0;
  for (uint64_t z = first; z <= last; ++z) {
    auto [it, inserted] = zones_.try_emplace(ZoneKey{ino, z});
    Zone& zone = it->second;
    if (inserted) {
      zone.lsn = Queue(kZoneEntry, 0, ino, z);
    } else {
      Account(zone, -1);
    }
    if (sticky) {
      zone.sticky = true;
      zone.version = ver;  // marked again: a resync that saw it before must not forget it
    } else {
      // A replicated write does not make the zone newer for ForgetResynced: the peer gets it (if it
      // does not, End() marks the zone sticky with a new version). Else a zone the application keeps
      // writing (a log's tail) could never be forgotten by a resync.
      ++zone.inflight;
    }
    zone.last_use = use;
    Account(zone, +1);
    need = std::max(need, zone.lsn);
  }
  if (need > durable_lsn_) LookAheadLocked(ino, first, last, use);
  return need;
}

// A sequential writer opens a new zone every zone_size bytes, and each would wait for its own append
// and fdatasync (a disk flush per MiB at the default zone size, on the write's path). When a write
// opens a zone right after one this file used in the last few Begin()s, the zones that follow (up to
// 16 of them, at most kLookAheadBytes) go into the same append as retirable zones: the next writes find them
// durable. On disk a retirable zone is a zone like any other, so a crash can only make the record a larger
// superset (what a resync compares grows by at most 16 zones per sequential writer).
void ZoneRecord::LookAheadLocked(uint64_t ino, uint64_t first, uint64_t last, uint64_t use) {
  constexpr uint64_t kLookAheadBytes = 16 << 20;
  constexpr uint64_t kLookAheadZones = 16;  // small zones: a flush per 16 of them is cheap enough
  constexpr uint64_t kRecentUses = 64;      // "lately": several writers may interleave their Begin()s
  if (first == 0) return;
  auto prev = zones_.find(ZoneKey{ino, first - 1});
  if (prev == zones_.end() || prev->second.last_use + kRecentUses < use) return;
  const uint64_t count = std::clamp<uint64_t>(kLookAheadBytes / zone_size_, 1, kLookAheadZones);
  for (uint64_t z = last + 1; z <= last + count; ++z) {
    auto [it, inserted] = zones_.try_emplace(ZoneKey{ino, z});
    if (!inserted) continue;
    it->second.lsn = Queue(kZoneEntry, 0, ino, z);
    it->second.last_use = use;
    Account(it->second, +1);
  }
}

uint64_t ZoneRecord::BeginTailLocked(uint64_t ino, uint64_t first, bool sticky) {
  File& f = files_[ino];
  if (sticky) {
    f.sticky_tail = std::min(f.sticky_tail, first);
    f.tail_version = ++version_clock_;
  } else {
    ++f.active_tails[first];  // (no new version: see BeginZonesLocked)
  }
  if (f.disk_tail > first) {
    f.disk_tail = first;
    f.disk_tail_lsn = Queue(kTailEntry, 0, ino, first);
  }
  return f.disk_tail_lsn;
}

// A Begin() could not make its range durable: no End() follows, so its zones become sticky.
void ZoneRecord::FailBeginLocked(uint64_t ino, uint64_t first, uint64_t last, bool tail, bool sticky) {
  uint64_t ver = ++version_clock_;
  if (tail) {
    File& f = files_[ino];
    if (!sticky) {
      auto it = f.active_tails.find(first);
      if (it != f.active_tails.end() && --it->second == 0) f.active_tails.erase(it);
    }
    f.sticky_tail = std::min(f.sticky_tail, first);
    f.tail_version = ver;
    return;
  }
  for (uint64_t z = first; z <= last; ++z) {
    auto it = zones_.find(ZoneKey{ino, z});
    if (it == zones_.end()) continue;
    Account(it->second, -1);
    if (!sticky && it->second.inflight > 0) --it->second.inflight;
    it->second.sticky = true;
    it->second.version = ver;
    Account(it->second, +1);
  }
}

Status ZoneRecord::Begin(uint64_t ino, uint64_t offset, uint64_t length, bool sticky) {
  if (length == 0) return Status::Ok();
  uint64_t first = 0, last = 0;
  bool tail = !ZoneRange(offset, length, &first, &last);
  std::unique_lock<std::mutex> lk(mu_);
  uint64_t need = tail ? BeginTailLocked(ino, first, sticky) : BeginZonesLocked(ino, first, last, sticky);
  if (need <= durable_lsn_) return Status::Ok();  // hot path: already durable
  Status s = WaitDurable(lk, need);
  if (!s.ok()) {
    FailBeginLocked(ino, first, last, tail, sticky);
    return s;
  }
  if (CompactionDueLocked()) {
    // This Begin's range is durable already; a failed compaction leaves the record broken (reported
    // by the next call that needs a disk write).
    Status c = Rewrite(lk, RewriteMode::kCompact);
    if (!c.ok()) HLOG_ERROR("%s", c.ToString().c_str());
  }
  return Status::Ok();
}

void ZoneRecord::End(uint64_t ino, uint64_t offset, uint64_t length, bool peer_has_it) {
  if (length == 0) return;
  uint64_t first = 0, last = 0;
  bool tail = !ZoneRange(offset, length, &first, &last);
  std::lock_guard<std::mutex> lk(mu_);
  uint64_t ver = peer_has_it ? 0 : ++version_clock_;
  if (tail) {
    auto fit = files_.find(ino);
    if (fit == files_.end()) return;
    File& f = fit->second;
    auto it = f.active_tails.find(first);
    if (it != f.active_tails.end() && --it->second == 0) f.active_tails.erase(it);
    if (!peer_has_it) {
      f.sticky_tail = std::min(f.sticky_tail, first);
      f.tail_version = ver;
    }
    return;
  }
  uint64_t use = ++use_clock_;
  for (uint64_t z = first; z <= last; ++z) {
    auto it = zones_.find(ZoneKey{ino, z});
    if (it == zones_.end()) continue;  // not begun: nothing to end
    Zone& zone = it->second;
    Account(zone, -1);
    if (zone.inflight > 0) --zone.inflight;
    zone.last_use = use;
    if (!peer_has_it) {
      zone.sticky = true;
      zone.version = ver;
    }
    Account(zone, +1);
  }
}

Status ZoneRecord::Mark(uint8_t type, uint64_t ino, const std::string* reason) {
  std::unique_lock<std::mutex> lk(mu_);
  Flag* flag = nullptr;
  std::string* reason_out = nullptr;
  switch (type) {
    case kWholeEntry: flag = &files_[ino].whole; break;
    case kMetaEntry: flag = &files_[ino].meta; break;
    case kDirEntry: flag = &dirs_[ino]; break;
    case kTreeEntry: flag = &tree_; break;
    default: flag = &full_; break;
  }
  if (reason) reason_out = type == kTreeEntry ? &tree_reason_ : &full_reason_;
  if (!flag->set) {
    flag->set = true;
    if (reason_out) {
      *reason_out = CutReason(*reason);
      flag->lsn = QueueText(type, *reason_out);
    } else {
      flag->lsn = Queue(type, 0, ino, 0);
    }
  }
  flag->version = ++version_clock_;
  uint64_t need = flag->lsn;  // flag may go (ForgetResynced) while this waits
  if (need <= durable_lsn_) return Status::Ok();
  return WaitDurable(lk, need);
}

Status ZoneRecord::MarkFile(uint64_t ino) { return Mark(kWholeEntry, ino, nullptr); }
Status ZoneRecord::MarkMeta(uint64_t ino) { return Mark(kMetaEntry, ino, nullptr); }
Status ZoneRecord::MarkDir(uint64_t ino) { return Mark(kDirEntry, ino, nullptr); }
Status ZoneRecord::MarkTree(const std::string& reason) { return Mark(kTreeEntry, 0, &reason); }
Status ZoneRecord::MarkFull(const std::string& reason) { return Mark(kFullEntry, 0, &reason); }

// Group commit: the first waiter that finds no I/O in progress writes every queued entry with one
// pwrite + fdatasync; the others wait for it (and one of them then writes what was queued meanwhile).
Status ZoneRecord::WaitDurable(std::unique_lock<std::mutex>& lk, uint64_t lsn) {
  while (durable_lsn_ < lsn) {
    if (!broken_.ok()) return broken_;
    if (io_busy_) {
      cv_.wait(lk);
      continue;
    }
    io_busy_ = true;
    std::vector<ZoneRecordEntry> batch;
    batch.swap(pending_);
    uint64_t upto = last_lsn_;
    uint64_t offset = file_size_;
    int fd = fd_.get();
    lk.unlock();
    std::string data;
    data.reserve(batch.size() * kEntrySize);
    for (const ZoneRecordEntry& e : batch) EncodeEntry(e, offset + data.size(), &data);
    Status s = WriteAll(fd, data, offset, path_);
    if (s.ok() && fdatasync(fd) != 0) s = Errno(path_, "fdatasync", errno);
    lk.lock();
    io_busy_ = false;
    if (s.ok()) {
      file_size_ = offset + data.size();
      durable_lsn_ = upto;
      appends_ += batch.size();
      ++syncs_;
    } else {
      broken_ = s;  // never fdatasync the same file again: only a rewrite repairs
      HLOG_ERROR("%s", s.ToString().c_str());
    }
    cv_.notify_all();
  }
  return Status::Ok();
}

bool ZoneRecord::CompactionDueLocked() const { return retirable_zones_ > activity_zones_; }

// Erases all but the `keep` most recently used retirable zones.
void ZoneRecord::RetireLocked(size_t keep) {
  if (retirable_zones_ <= keep) return;
  std::vector<std::pair<uint64_t, ZoneKey>> candidates;
  candidates.reserve(retirable_zones_);
  for (const auto& [key, zone] : zones_) {
    if (!zone.sticky && zone.inflight == 0) candidates.emplace_back(zone.last_use, key);
  }
  size_t drop = candidates.size() - std::min(keep, candidates.size());
  std::nth_element(candidates.begin(), candidates.begin() + drop, candidates.end(),
                   [](const auto& x, const auto& y) { return x.first < y.first; });
  for (size_t i = 0; i < drop; ++i) {
    auto it = zones_.find(candidates[i].second);
    Account(it->second, -1);
    zones_.erase(it);
  }
}

// The state to keep, as a whole file. Retires zones first (kClose: every zone not sticky, after making
// the ones still in flight sticky); tails not sticky nor in flight are retired too.
std::string ZoneRecord::EncodeStateLocked(RewriteMode mode) {
  if (mode == RewriteMode::kClose) {
    uint64_t ver = ++version_clock_;
    for (auto& [key, zone] : zones_) {
      if (zone.inflight == 0) continue;
      Account(zone, -1);
      zone.inflight = 0;
      zone.sticky = true;
      zone.version = ver;
      Account(zone, +1);
    }
    for (auto& [ino, f] : files_) {
      if (f.active_tails.empty()) continue;
      f.sticky_tail = std::min(f.sticky_tail, f.active_tails.begin()->first);
      f.tail_version = ver;
      f.active_tails.clear();
    }
  }
  RetireLocked(mode == RewriteMode::kClose ? 0 : activity_zones_ / 2);
  std::vector<ZoneRecordEntry> es;
  if (mode != RewriteMode::kClose) es.push_back({kOpenEntry, 0, 0, 0});
  if (full_.set) AddText(kFullEntry, full_reason_, &es);
  if (tree_.set) AddText(kTreeEntry, tree_reason_, &es);
  for (auto it = files_.begin(); it != files_.end();) {
    File& f = it->second;
    uint64_t ino = it->first;
    // The tail kept covers no more than the one in the old file: its lsn stays valid.
    f.disk_tail =
        f.active_tails.empty() ? f.sticky_tail : std::min(f.sticky_tail, f.active_tails.begin()->first);
    if (f.Unused()) {
      it = files_.erase(it);
      continue;
    }
    if (f.whole.set) es.push_back({kWholeEntry, 0, ino, 0});
    if (f.meta.set) es.push_back({kMetaEntry, 0, ino, 0});
    if (f.disk_tail != kToEnd) es.push_back({kTailEntry, 0, ino, f.disk_tail});
    ++it;
  }
  for (const auto& [ino, flag] : dirs_) es.push_back({kDirEntry, 0, ino, 0});
  for (const auto& [key, zone] : zones_) es.push_back({kZoneEntry, 0, key.ino, key.zone});
  if (mode == RewriteMode::kClose) es.push_back({kCleanEntry, 0, 0, 0});
  std::string data = EncodeHeader(zone_size_);
  data.reserve(kHeaderSize + es.size() * kEntrySize);
  for (const ZoneRecordEntry& e : es) EncodeEntry(e, data.size(), &data);
  return data;
}

// Writes data to a temp file, fsyncs it, renames it over path_ and fsyncs the directory. *renamed once
// the rename happened (then *fd_out holds the new file even if the directory fsync failed).
Status ZoneRecord::WriteReplacement(const std::string& data, Fd* fd_out, bool* renamed) const {
  std::string tmp = path_ + ".tmp";
  Fd fd(open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (fd.get() < 0) return Errno(tmp, "create", errno);
  Status s = WriteAll(fd.get(), data, 0, tmp);
  if (s.ok() && fsync(fd.get()) != 0) s = Errno(tmp, "fsync", errno);
  if (s.ok() && rename(tmp.c_str(), path_.c_str()) != 0) s = Errno(path_, "rename from " + tmp, errno);
  if (!s.ok()) {
    unlink(tmp.c_str());
    return s;
  }
  *renamed = true;
  *fd_out = std::move(fd);
  std::string dir = DirName(path_);
  Fd dfd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd.get() < 0) return Errno(path_, "open directory " + dir, errno);
  if (fsync(dfd.get()) != 0) return Errno(path_, "fsync directory " + dir, errno);
  return Status::Ok();
}

// Replaces the file with the state in memory. Everything queued is in it, so the queue is dropped and
// counts as durable once the rename is. Zones retired here leave memory before the new file is written:
// a Begin() of one meanwhile queues it again, to be appended to the new file.
Status ZoneRecord::Rewrite(std::unique_lock<std::mutex>& lk, RewriteMode mode) {
  cv_.wait(lk, [this] { return !io_busy_; });
  if (mode == RewriteMode::kCompact && !CompactionDueLocked()) return Status::Ok();  // done meanwhile
  io_busy_ = true;
  std::string data = EncodeStateLocked(mode);
  uint64_t upto = last_lsn_;
  pending_.clear();
  clean_ = mode == RewriteMode::kClose;  // later appends must start with an open entry
  lk.unlock();
  Fd fd;
  bool renamed = false;
  Status s = WriteReplacement(data, &fd, &renamed);
  lk.lock();
  io_busy_ = false;
  if (renamed) {
    fd_ = std::move(fd);
    file_size_ = data.size();
  }
  if (s.ok()) {
    durable_lsn_ = std::max(durable_lsn_, upto);
    broken_ = Status::Ok();
    ++rewrites_;
    if (mode == RewriteMode::kCompact) ++compactions_;
  } else {
    broken_ = s;  // what was queued is lost: the waiters fail, the next rewrite retries
  }
  cv_.notify_all();
  return s;
}

RecordSnapshot ZoneRecord::Snapshot() const {
  std::lock_guard<std::mutex> lk(mu_);
  RecordSnapshot snap;
  snap.zone_size = zone_size_;
  snap.full = full_.set;
  snap.tree = tree_.set;
  snap.full_reason = full_reason_;
  snap.tree_reason = tree_reason_;
  snap.versions.full = full_.version;
  snap.versions.tree = tree_.version;
  for (const auto& [ino, flag] : dirs_) {
    snap.dirs.insert(ino);
    snap.versions.dirs[ino] = flag.version;
  }
  for (const auto& [key, zone] : zones_) {
    if (!zone.sticky && zone.inflight == 0) continue;
    snap.files[key.ino].zones.push_back(key.zone);
    snap.versions.zones[{key.ino, key.zone}] = zone.version;
  }
  for (const auto& [ino, f] : files_) {
    uint64_t tail =
        f.active_tails.empty() ? f.sticky_tail : std::min(f.sticky_tail, f.active_tails.begin()->first);
    if (!f.whole.set && !f.meta.set && tail == kToEnd) continue;
    RecordedFile& rf = snap.files[ino];
    rf.whole = f.whole.set;
    rf.meta = f.meta.set;
    rf.tail_from_zone = tail;
    if (f.whole.set) snap.versions.whole[ino] = f.whole.version;
    if (f.meta.set) snap.versions.meta[ino] = f.meta.version;
    if (tail != kToEnd) snap.versions.tail[ino] = f.tail_version;
  }
  for (auto& [ino, rf] : snap.files) std::sort(rf.zones.begin(), rf.zones.end());
  return snap;
}

bool ZoneRecord::Empty() const {
  std::lock_guard<std::mutex> lk(mu_);
  if (sticky_zones_ > 0 || !dirs_.empty() || full_.set || tree_.set) return false;
  for (const auto& [ino, f] : files_) {
    if (f.whole.set || f.meta.set || f.sticky_tail != kToEnd) return false;
  }
  return true;
}

RecordCounts ZoneRecord::Counts() const {
  std::lock_guard<std::mutex> lk(mu_);
  RecordCounts c;
  std::unordered_map<uint64_t, bool> inos;
  for (const auto& [key, zone] : zones_) {
    if (!zone.sticky && zone.inflight == 0) continue;
    inos[key.ino] = true;
    ++c.zones;
  }
  for (const auto& [ino, f] : files_) {
    if (f.whole.set || f.meta.set || f.sticky_tail != kToEnd || !f.active_tails.empty()) inos[ino] = true;
  }
  c.files = inos.size();
  c.dirs = dirs_.size();
  c.active_zones = active_zones_;
  c.disk_zones = zones_.size();
  c.appends = appends_;
  c.syncs = syncs_;
  c.compactions = compactions_;
  c.rewrites = rewrites_;
  c.full = full_.set;
  c.tree = tree_.set;
  return c;
}

// Forgets one file's entries of a snapshot that were not marked again since.
void ZoneRecord::ForgetFileLocked(uint64_t ino, const RecordedFile& rf, const RecordSnapshot::Versions& v) {
  for (uint64_t z : rf.zones) {
    auto vit = v.zones.find({ino, z});
    auto it = zones_.find(ZoneKey{ino, z});
    if (vit == v.zones.end() || it == zones_.end() || it->second.version != vit->second) continue;
    Account(it->second, -1);
    it->second.sticky = false;  // in flight: stays active
    Account(it->second, +1);
  }
  auto fit = files_.find(ino);
  if (fit == files_.end()) return;
  File& f = fit->second;
  auto same = [&](const std::map<uint64_t, uint64_t>& m, uint64_t version) {
    auto it = m.find(ino);
    return it != m.end() && it->second == version;
  };
  if (rf.whole && f.whole.set && same(v.whole, f.whole.version)) f.whole = Flag{};
  if (rf.meta && f.meta.set && same(v.meta, f.meta.version)) f.meta = Flag{};
  if (rf.tail_from_zone <= f.sticky_tail && f.sticky_tail != kToEnd && same(v.tail, f.tail_version)) {
    f.sticky_tail = kToEnd;
  }
}

Status ZoneRecord::ForgetResynced(const RecordSnapshot& snap) {
  std::unique_lock<std::mutex> lk(mu_);
  const RecordSnapshot::Versions& v = snap.versions;
  if (snap.full && full_.set && v.full == full_.version) {
    full_ = Flag{};
    full_reason_.clear();
  }
  if (snap.tree && tree_.set && v.tree == tree_.version) {
    tree_ = Flag{};
    tree_reason_.clear();
  }
  for (uint64_t ino : snap.dirs) {
    auto vit = v.dirs.find(ino);
    auto it = dirs_.find(ino);
    if (vit != v.dirs.end() && it != dirs_.end() && it->second.version == vit->second) dirs_.erase(it);
  }
  for (const auto& [ino, rf] : snap.files) ForgetFileLocked(ino, rf, v);
  return Rewrite(lk, RewriteMode::kKeep);
}

Status ZoneRecord::Reset() {
  std::unique_lock<std::mutex> lk(mu_);
  full_ = tree_ = Flag{};
  full_reason_.clear();
  tree_reason_.clear();
  dirs_.clear();
  for (auto& [ino, f] : files_) {
    f.whole = f.meta = Flag{};
    f.sticky_tail = kToEnd;
  }
  for (auto& [key, zone] : zones_) {
    Account(zone, -1);
    zone.sticky = false;
    Account(zone, +1);
  }
  return Rewrite(lk, RewriteMode::kKeep);
}

Status ZoneRecord::Close() {
  std::unique_lock<std::mutex> lk(mu_);
  return Rewrite(lk, RewriteMode::kClose);
}

}  // namespace hamirror::replicator
