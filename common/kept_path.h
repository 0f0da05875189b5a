// KeptPath: how a daemon holds on to an inode of its tree without one descriptor per inode.
//
// Holding an O_PATH descriptor for every inode the kernel (or the peer) knows runs into the
// descriptor limit (EMFILE at ~20,000 files on a default machine) long before the file system's own
// limits. So a PathKeeper hands out descriptors from a budget (by default half of the process's
// descriptor limit, leaving the rest to open files, sockets and the ring): while the budget has room
// an inode keeps its O_PATH descriptor (no extra system call per use); past it the inode keeps only
// the file system's handle for it (name_to_handle_at, ~8-20 bytes) and each use reopens it
// (open_by_handle_at, which needs CAP_DAC_READ_SEARCH: the daemons run as root). An inode whose file
// system gives no handle (or that sits on another mount below the root) keeps its descriptor over
// budget: correctness first, the limit then is the old one.
#pragma once

#include <fcntl.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "common/unique_fd.h"

namespace hamirror {

// Where an inode is found again: a descriptor, or a file handle small enough to keep inline.
class KeptPath {
 public:
  static constexpr size_t kMaxHandleBytes = 32;  // ext4: 8, xfs: 8-16, btrfs: 20, tmpfs: 12

  KeptPath() = default;
  KeptPath(const KeptPath&) = delete;
  KeptPath& operator=(const KeptPath&) = delete;

  bool has_fd() const { return fd_ >= 0; }
  int fd() const { return fd_; }  // -1 when only the handle is kept

 private:
  friend class PathKeeper;
  int fd_ = -1;  // owned; counted in the keeper's budget when in_budget_
  bool in_budget_ = false;
  uint8_t handle_size_ = 0;
  int32_t handle_type_ = 0;
  unsigned char handle_[kMaxHandleBytes] = {};
};

// A descriptor for one use of a KeptPath: borrowed when the path keeps one, else opened by handle
// and closed when this goes out of scope.
class PathFd {
 public:
  PathFd() = default;
  PathFd(PathFd&&) = default;
  PathFd& operator=(PathFd&&) = default;

  int get() const { return owned_ ? owned_.get() : borrowed_; }
  explicit operator bool() const { return get() >= 0; }
  int error() const { return error_; }  // errno when !*this

 private:
  friend class PathKeeper;
  int borrowed_ = -1;
  UniqueFd owned_;
  int error_ = 0;
};

class PathKeeper {
 public:
  // root_fd: any descriptor in the tree's file system (the O_PATH of its root); not owned, must
  // outlive the keeper. max_kept_fds: the budget; 0 = DefaultBudget().
  PathKeeper(int root_fd, size_t max_kept_fds = 0);
  PathKeeper(const PathKeeper&) = delete;
  PathKeeper& operator=(const PathKeeper&) = delete;

  // Half of RLIMIT_NOFILE's soft limit after raising it to the hard limit (done here, once).
  static size_t DefaultBudget();

  // Takes ownership of path_fd (an O_PATH | O_NOFOLLOW descriptor of the inode) into *out, which must
  // be empty: keeps it while the budget has room, else keeps its handle and closes it.
  void Keep(UniqueFd path_fd, KeptPath* out);
  // Closes what *path holds and returns its descriptor to the budget; *path is empty afterwards.
  void Release(KeptPath* path);

  // A descriptor of the inode for one use: its kept one, or a fresh O_PATH one opened by handle
  // (ESTALE once the inode is gone from the file system).
  PathFd Open(const KeptPath& path) const;

  size_t kept_fds() const { return kept_.load(std::memory_order_relaxed); }
  size_t budget() const { return budget_.load(std::memory_order_relaxed); }
  // A new budget for the inodes kept from now on (0: DefaultBudget()); descriptors kept already stay
  // until released.
  void set_budget(size_t max_kept_fds) {
    budget_.store(max_kept_fds ? max_kept_fds : DefaultBudget(), std::memory_order_relaxed);
  }
  // Descriptors held now, within the budget or past it.
  size_t held_fds() const { return kept_fds() + unhandled_fds(); }
  // Inodes kept over budget with a descriptor because no handle could be had.
  size_t unhandled_fds() const { return unhandled_.load(std::memory_order_relaxed); }

 private:
  bool TakeFromBudget();

  const int root_fd_;
  UniqueFd mount_fd_;  // the root opened for reading: open_by_handle_at's reference to the mount
  int root_mount_id_ = -1;
  bool handles_ok_ = false;
  std::atomic<size_t> budget_;
  std::atomic<size_t> kept_{0};
  std::atomic<size_t> unhandled_{0};
};

}  // namespace hamirror
