#include "common/kept_path.h"

#include <errno.h>
#include <string.h>
#include <sys/resource.h>

#include <algorithm>

#include "common/log.h"

namespace hamirror {
namespace {

// struct file_handle ends in a flexible array: room for the largest handle behind it.
struct HandleBuffer {
  alignas(struct file_handle) unsigned char raw[sizeof(struct file_handle) + MAX_HANDLE_SZ];
  struct file_handle* get() {
    return reinterpret_cast<struct file_handle*>(raw);
  }
};

// The handle of the inode behind fd and its mount id; false with errno set if there is none.
bool HandleOf(int fd, HandleBuffer* buf, int* mount_id) {
  buf->get()->handle_bytes = MAX_HANDLE_SZ;
  return name_to_handle_at(fd, "", buf->get(), mount_id, AT_EMPTY_PATH) == 0;
}

}  // namespace

size_t PathKeeper::DefaultBudget() {
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 512;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) getrlimit(RLIMIT_NOFILE, &rl);
  }
  if (rl.rlim_cur == RLIM_INFINITY) return 1 << 20;
  return std::max<size_t>(64, static_cast<size_t>(rl.rlim_cur) / 2);
}

PathKeeper::PathKeeper(int root_fd, size_t max_kept_fds)
    : root_fd_(root_fd), budget_(max_kept_fds ? max_kept_fds : DefaultBudget()) {
  // open_by_handle_at refuses an O_PATH descriptor as its mount reference: keep a plain one.
  mount_fd_.Reset(openat(root_fd_, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!mount_fd_) {
    HLOG_WARN(
        "cannot open the replicated tree's root (%s): one descriptor per known inode, at most "
        "about %zu inodes",
        strerror(errno), budget() * 2);
    return;
  }
  HandleBuffer buf;
  if (!HandleOf(root_fd_, &buf, &root_mount_id_)) {
    HLOG_WARN(
        "file handles unavailable on the replicated tree (%s): one descriptor per known inode, "
        "at most about %zu inodes",
        strerror(errno), budget() * 2);
    return;
  }
  // Reopening needs CAP_DAC_READ_SEARCH: try once rather than fail on the first inode over budget.
  UniqueFd fd(open_by_handle_at(mount_fd_.get(), buf.get(), O_PATH | O_CLOEXEC));
  if (!fd) {
    HLOG_WARN(
        "file handles cannot be reopened (%s): one descriptor per known inode, at most about "
        "%zu inodes",
        strerror(errno), budget() * 2);
    return;
  }
  handles_ok_ = true;
}

bool PathKeeper::TakeFromBudget() {
  size_t n = kept_.load(std::memory_order_relaxed);
  const size_t budget = this->budget();
  while (n < budget) {
    if (kept_.compare_exchange_weak(n, n + 1, std::memory_order_relaxed)) return true;
  }
  return false;
}

void PathKeeper::Keep(UniqueFd path_fd, KeptPath* out) {
  if (TakeFromBudget()) {
    out->fd_ = path_fd.Release();
    out->in_budget_ = true;
    return;
  }
  HandleBuffer buf;
  int mount_id = -1;
  if (handles_ok_ && HandleOf(path_fd.get(), &buf, &mount_id) && mount_id == root_mount_id_ &&
      buf.get()->handle_bytes <= KeptPath::kMaxHandleBytes) {
    out->handle_size_ = static_cast<uint8_t>(buf.get()->handle_bytes);
    out->handle_type_ = buf.get()->handle_type;
    memcpy(out->handle_, buf.get()->f_handle, buf.get()->handle_bytes);
    return;  // path_fd closes here
  }
  // No usable handle (another file system mounted below the root, or none at all): keep the
  // descriptor past the budget.
  out->fd_ = path_fd.Release();
  out->in_budget_ = false;
  unhandled_.fetch_add(1, std::memory_order_relaxed);
}

void PathKeeper::Release(KeptPath* path) {
  if (path->fd_ >= 0) {
    close(path->fd_);
    (path->in_budget_ ? kept_ : unhandled_).fetch_sub(1, std::memory_order_relaxed);
  }
  path->fd_ = -1;
  path->in_budget_ = false;
  path->handle_size_ = 0;
}

PathFd PathKeeper::Open(const KeptPath& path) const {
  PathFd out;
  if (path.fd_ >= 0) {
    out.borrowed_ = path.fd_;
    return out;
  }
  if (path.handle_size_ == 0) {
    out.error_ = EBADF;  // released or never kept
    return out;
  }
  HandleBuffer buf;
  struct file_handle* fh = buf.get();
  fh->handle_bytes = path.handle_size_;
  fh->handle_type = path.handle_type_;
  memcpy(fh->f_handle, path.handle_, path.handle_size_);
  out.owned_.Reset(open_by_handle_at(mount_fd_.get(), fh, O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!out.owned_) out.error_ = errno;
  return out;
}

}  // namespace hamirror
