// Helpers for the replicator tests: a temporary tree (root + an "outside" canary directory next to it)
// and builders for proto ops.
#pragma once

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "proto/replication.pb.h"

namespace hamirror::replicator::testing {

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

// base/root is the replicated tree; base/outside holds a canary that must never change.
class TempTree {
 public:
  explicit TempTree(const char* tag = "repl") {
    std::string tmpl = std::string("/tmp/hamirror-") + tag + "-XXXXXX";
    base_ = mkdtemp(tmpl.data());
    root_ = base_ + "/root";
    outside_ = base_ + "/outside";
    std::filesystem::create_directory(root_);
    std::filesystem::create_directory(outside_);
    WriteFile(outside_ + "/canary", "canary");
    struct stat st;
    ::stat((outside_ + "/canary").c_str(), &st);
    canary_mtime_ = st.st_mtim;
    canary_mode_ = st.st_mode;
    root_fd_ = open(root_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  }
  ~TempTree() {
    if (root_fd_ >= 0) close(root_fd_);
    std::error_code ec;
    std::filesystem::remove_all(base_, ec);
  }
  const std::string& root() const { return root_; }
  const std::string& outside() const { return outside_; }
  int root_fd() const { return root_fd_; }
  std::string Path(const std::string& rel) const { return root_ + "/" + rel; }

  // The outside directory still holds exactly the untouched canary.
  bool OutsideUntouched() const {
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator(outside_)) {
      (void)e;
      ++n;
    }
    struct stat st;
    if (::lstat((outside_ + "/canary").c_str(), &st) != 0) return false;
    return n == 1 && ReadFile(outside_ + "/canary") == "canary" && st.st_mode == canary_mode_ &&
           st.st_mtim.tv_sec == canary_mtime_.tv_sec && st.st_mtim.tv_nsec == canary_mtime_.tv_nsec &&
           st.st_nlink == 1 && st.st_uid == 0;
  }

 private:
  std::string base_, root_, outside_;
  int root_fd_ = -1;
  timespec canary_mtime_{};
  mode_t canary_mode_ = 0;
};

inline proto::Op MakeFile(uint64_t parent, const std::string& name, uint64_t rid, uint32_t mode = 0644,
                          proto::NodeKind kind = proto::NODE_KIND_FILE) {
  proto::Op op;
  proto::MakeNode* m = op.mutable_make_node();
  m->set_parent(parent);
  m->set_name(name);
  m->set_rid(rid);
  m->set_kind(kind);
  m->set_mode(mode);
  return op;
}

inline proto::Op Bind(uint64_t rid, uint64_t parent, const std::string& name) {
  proto::Op op;
  op.mutable_bind()->set_rid(rid);
  op.mutable_bind()->set_parent(parent);
  op.mutable_bind()->set_name(name);
  return op;
}

inline proto::Op Forget(uint64_t rid) {
  proto::Op op;
  op.mutable_forget()->set_rid(rid);
  return op;
}

inline proto::Op Write(uint64_t rid, uint64_t offset, const std::string& data, bool dsync = false) {
  proto::Op op;
  proto::Write* w = op.mutable_write();
  w->set_rid(rid);
  w->set_offset(offset);
  w->set_data(data);
  w->set_checksum(XXH3_64bits(data.data(), data.size()));
  w->set_dsync(dsync);
  return op;
}

inline proto::Op Fsync(uint64_t rid, bool datasync = false) {
  proto::Op op;
  op.mutable_fsync()->set_rid(rid);
  op.mutable_fsync()->set_datasync(datasync);
  return op;
}

inline proto::Op BlockSums(uint64_t rid, uint64_t offset, uint64_t length, uint32_t block_size) {
  proto::Op op;
  proto::BlockSums* b = op.mutable_block_sums();
  b->set_rid(rid);
  b->set_offset(offset);
  b->set_length(length);
  b->set_block_size(block_size);
  return op;
}

inline proto::Op ListDir(uint64_t rid) {
  proto::Op op;
  op.mutable_list_dir()->set_rid(rid);
  return op;
}

inline proto::Op ResyncMark(uint64_t id, bool begin, bool ok = false, uint64_t bytes_total = 0) {
  proto::Op op;
  proto::ResyncMark* m = op.mutable_resync_mark();
  m->set_id(id);
  m->set_begin(begin);
  m->set_ok(ok);
  m->set_bytes_total(bytes_total);
  return op;
}

// XXH3-64 of each block_size block of data[offset, offset + length), clipped at data's end: what
// BlockSums answers for a file holding `data`.
inline std::vector<uint64_t> ExpectedSums(const std::string& data, uint64_t offset, uint64_t length,
                                          uint64_t block_size) {
  std::vector<uint64_t> sums;
  const uint64_t end = std::min<uint64_t>(offset + length, data.size());
  for (uint64_t pos = offset; pos < end; pos += block_size) {
    sums.push_back(XXH3_64bits(data.data() + pos, std::min(block_size, end - pos)));
  }
  return sums;
}

}  // namespace hamirror::replicator::testing
