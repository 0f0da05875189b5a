#include "fuse_fs/inode_table.h"

#include <algorithm>

namespace hamirror::fs {

InodeTable::~InodeTable() {
  for (auto& [key, inode] : by_key_) {
    if (inode != &root_) Destroy(inode);
  }
  if (keeper_) keeper_->Release(&root_.path);
}

void InodeTable::InitRoot(int root_fd, const struct stat& st, size_t max_kept_fds) {
  std::lock_guard<std::mutex> lock(mu_);
  keeper_ = std::make_unique<PathKeeper>(root_fd, max_kept_fds);
  keeper_->Keep(UniqueFd(root_fd), &root_.path);  // first in: always within the budget
  root_.dev = st.st_dev;
  root_.ino = st.st_ino;
  root_.type = st.st_mode & S_IFMT;
  root_.rid = 1;
  root_.nlookup = 1;  // never forgotten
  by_key_[{st.st_dev, st.st_ino}] = &root_;
  by_rid_[1] = &root_;
}

Inode* InodeTable::LookupOrInsert(UniqueFd fd, const struct stat& st, uint64_t parent_rid,
                                  const std::string& name, bool* created) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_key_.find({st.st_dev, st.st_ino});
  if (it != by_key_.end()) {
    Inode* inode = it->second;
    inode->nlookup++;
    if (inode != &root_) {
      inode->parent_rid = parent_rid;
      inode->name = name;
    }
    *created = false;
    return inode;
  }
  auto* inode = new Inode;
  keeper_->Keep(std::move(fd), &inode->path);
  inode->dev = st.st_dev;
  inode->ino = st.st_ino;
  inode->type = st.st_mode & S_IFMT;
  inode->rid = next_rid_++;
  inode->nlookup = 1;
  inode->parent_rid = parent_rid;
  inode->name = name;
  by_key_[{st.st_dev, st.st_ino}] = inode;
  by_rid_[inode->rid] = inode;
  *created = true;
  return inode;
}

uint64_t InodeTable::AllocateRid() {
  std::lock_guard<std::mutex> lock(mu_);
  return next_rid_++;
}

Inode* InodeTable::Find(dev_t dev, ino_t ino) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_key_.find({dev, ino});
  return it == by_key_.end() ? nullptr : it->second;
}

Inode* InodeTable::FindRid(uint64_t rid) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_rid_.find(rid);
  return it == by_rid_.end() ? nullptr : it->second;
}

void InodeTable::Ref(Inode* inode, uint64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  inode->nlookup += n;
}

uint64_t InodeTable::Unref(Inode* inode, uint64_t n) {
  if (inode == &root_) return 0;
  std::lock_guard<std::mutex> lock(mu_);
  inode->nlookup -= std::min(n, inode->nlookup);
  if (inode->nlookup > 0) return 0;
  by_key_.erase({inode->dev, inode->ino});
  by_rid_.erase(inode->rid);
  return inode->rid;
}

void InodeTable::Destroy(Inode* inode) {
  keeper_->Release(&inode->path);
  delete inode;
}

void InodeTable::SetName(Inode* inode, uint64_t parent_rid, const std::string& name) {
  if (inode == &root_) return;
  std::lock_guard<std::mutex> lock(mu_);
  inode->parent_rid = parent_rid;
  inode->name = name;
}

void InodeTable::ClearName(Inode* inode) {
  if (inode == &root_) return;
  std::lock_guard<std::mutex> lock(mu_);
  inode->parent_rid = 0;
  inode->name.clear();
}

bool InodeTable::GetName(Inode* inode, uint64_t* parent_rid, std::string* name) {
  std::lock_guard<std::mutex> lock(mu_);
  if (inode->parent_rid == 0) return false;
  *parent_rid = inode->parent_rid;
  *name = inode->name;
  return true;
}

std::vector<InodeTable::NamedInode> InodeTable::SnapshotParentsFirst() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<NamedInode> out;
  for (auto& [rid, inode] : by_rid_) {
    if (inode == &root_ || inode->parent_rid == 0) continue;
    // Depth by walking the recorded parents; an inode whose chain does not reach the root (a parent
    // that is no longer known) cannot be bound by name and is left out.
    int depth = 0;
    uint64_t p = inode->parent_rid;
    bool reaches_root = false;
    while (depth < 4096) {
      ++depth;
      if (p == 1) {
        reaches_root = true;
        break;
      }
      auto pit = by_rid_.find(p);
      if (pit == by_rid_.end() || pit->second->parent_rid == 0) break;
      p = pit->second->parent_rid;
    }
    if (reaches_root) out.push_back({inode, rid, inode->parent_rid, inode->name, depth});
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const NamedInode& a, const NamedInode& b) { return a.depth < b.depth; });
  return out;
}

size_t InodeTable::size() {
  std::lock_guard<std::mutex> lock(mu_);
  return by_key_.size();
}

}  // namespace hamirror::fs
