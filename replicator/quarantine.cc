#include "replicator/quarantine.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "common/unique_fd.h"

namespace hamirror::replicator {
namespace {

struct ProcPath {
  explicit ProcPath(int fd) { snprintf(buf, sizeof(buf), "/proc/self/fd/%d", fd); }
  char buf[32];
};

bool IsComponent(const std::string& c) { return !c.empty() && c != "." && c != ".." && c.size() <= 255; }

// mkdir -p of dir (absolute), mode 0700 for what it creates.
Status MakeDirs(const std::string& dir) {
  std::string at;
  size_t pos = 0;
  while (pos != std::string::npos) {
    size_t next = dir.find('/', pos + 1);
    at = dir.substr(0, next);
    if (!at.empty() && mkdir(at.c_str(), 0700) != 0 && errno != EEXIST)
      return Status::FromErrno("mkdir " + at, errno);
    pos = next;
  }
  return Status::Ok();
}

void CopyXattrs(int from_path_fd, const std::string& to) {
  ProcPath p(from_path_fd);
  std::vector<char> names(65536);
  ssize_t n = llistxattr(p.buf, names.data(), names.size());
  for (ssize_t i = 0; n > 0 && i < n;) {
    std::string name(&names[static_cast<size_t>(i)]);
    i += static_cast<ssize_t>(name.size()) + 1;
    std::vector<char> value(65536);
    ssize_t vn = lgetxattr(p.buf, name.c_str(), value.data(), value.size());
    if (vn >= 0) lsetxattr(to.c_str(), name.c_str(), value.data(), static_cast<size_t>(vn), 0);
  }
}

void CopyAttrs(const struct stat& st, const std::string& to, bool symlink) {
  lchown(to.c_str(), st.st_uid, st.st_gid);
  if (!symlink) chmod(to.c_str(), st.st_mode & 07777);
  const struct timespec ts[2] = {st.st_atim, st.st_mtim};
  utimensat(AT_FDCWD, to.c_str(), ts, AT_SYMLINK_NOFOLLOW);
}

Status CopyFile(int path_fd, const struct stat& st, const std::string& to, uint64_t* bytes) {
  UniqueFd in(open(ProcPath(path_fd).buf, O_RDONLY | O_CLOEXEC));
  if (!in) return Status::FromErrno("quarantine: open the entry to save", errno);
  UniqueFd out(open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!out) return Status::FromErrno("quarantine: create " + to, errno);
  std::vector<char> buf(1 << 20);
  for (off_t off = 0;;) {
    ssize_t n = pread(in.get(), buf.data(), buf.size(), off);
    if (n < 0) return Status::FromErrno("quarantine: read", errno);
    if (n == 0) break;
    if (pwrite(out.get(), buf.data(), static_cast<size_t>(n), off) != n)
      return Status::FromErrno("quarantine: write " + to, errno ? errno : EIO);
    off += n;
    *bytes += static_cast<uint64_t>(n);
  }
  if (ftruncate(out.get(), st.st_size) != 0) return Status::FromErrno("quarantine: size " + to, errno);
  if (fsync(out.get()) != 0) return Status::FromErrno("quarantine: fsync " + to, errno);
  return Status::Ok();
}

Status SaveEntry(int parent_fd, const std::string& name, const std::string& to, uint64_t* bytes,
                 std::string* kind, int depth) {
  if (depth > 4096) return Status::InvalidArgument("quarantine: directory nesting too deep");
  UniqueFd fd(openat(parent_fd, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return Status::FromErrno("quarantine: open " + name, errno);
  struct stat st;
  if (fstatat(fd.get(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0)
    return Status::FromErrno("quarantine: stat " + name, errno);
  if (S_ISREG(st.st_mode)) {
    *kind = "file";
    if (Status s = CopyFile(fd.get(), st, to, bytes); !s.ok()) return s;
  } else if (S_ISLNK(st.st_mode)) {
    *kind = "symlink";
    std::vector<char> target(PATH_MAX + 1);
    ssize_t n = readlinkat(fd.get(), "", target.data(), target.size() - 1);
    if (n < 0) return Status::FromErrno("quarantine: readlink " + name, errno);
    target[static_cast<size_t>(n)] = '\0';
    if (symlink(target.data(), to.c_str()) != 0) return Status::FromErrno("quarantine: symlink " + to, errno);
  } else if (S_ISDIR(st.st_mode)) {
    *kind = "dir";
    if (mkdir(to.c_str(), 0700) != 0) return Status::FromErrno("quarantine: mkdir " + to, errno);
    UniqueFd dfd(openat(fd.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dfd) return Status::FromErrno("quarantine: open directory " + name, errno);
    DIR* dp = fdopendir(dfd.Release());
    if (dp == nullptr) return Status::FromErrno("quarantine: list " + name, errno);
    Status result;
    while (struct dirent* d = readdir(dp)) {
      if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0) continue;
      std::string child_kind;
      result = SaveEntry(dirfd(dp), d->d_name, to + "/" + d->d_name, bytes, &child_kind, depth + 1);
      if (!result.ok()) break;
    }
    closedir(dp);
    if (!result.ok()) return result;
  } else {
    *kind = "other";  // fifo, socket, device: recorded, recreated from its attributes
    if (mknod(to.c_str(), st.st_mode, st.st_rdev) != 0)
      return Status::FromErrno("quarantine: mknod " + to, errno);
  }
  CopyXattrs(fd.get(), to);
  CopyAttrs(st, to, S_ISLNK(st.st_mode));
  return Status::Ok();
}

}  // namespace

bool IsValidRelativePath(const std::string& path) {
  if (path.empty() || path.size() > 4096 || path.front() == '/' || path.find('\0') != std::string::npos)
    return false;
  size_t start = 0;
  while (true) {
    size_t slash = path.find('/', start);
    if (!IsComponent(path.substr(start, slash == std::string::npos ? std::string::npos : slash - start)))
      return false;
    if (slash == std::string::npos) return true;
    start = slash + 1;
  }
}

Status SaveToQuarantine(int parent_fd, const std::string& name, const std::string& dest_dir,
                        const std::string& path, uint64_t* saved_bytes) {
  *saved_bytes = 0;
  if (!IsValidRelativePath(path)) return Status::InvalidArgument("quarantine: bad path '" + path + "'");
  const std::string to = dest_dir + "/" + path;
  struct stat existing;
  if (lstat(to.c_str(), &existing) == 0) return Status::Ok();  // saved earlier in this resync
  const std::string parent = to.substr(0, to.rfind('/'));
  if (Status s = MakeDirs(parent); !s.ok()) return s;
  std::string kind;
  if (Status s = SaveEntry(parent_fd, name, to, saved_bytes, &kind, 0); !s.ok()) return s;
  UniqueFd pdir(open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (pdir) fsync(pdir.get());
  // The manifest: one line per saved entry, durable before the fix that follows.
  UniqueFd mf(open((dest_dir + "/MANIFEST").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!mf) return Status::FromErrno("quarantine: open " + dest_dir + "/MANIFEST", errno);
  const std::string line = kind + " " + std::to_string(*saved_bytes) + " " + path + "\n";
  if (write(mf.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size()) || fsync(mf.get()) != 0)
    return Status::FromErrno("quarantine: write " + dest_dir + "/MANIFEST", errno ? errno : EIO);
  return Status::Ok();
}

}  // namespace hamirror::replicator
