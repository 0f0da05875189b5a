#include "fuse_fs/mount_check.h"

#include <sys/stat.h>

#include <cerrno>

#include "common/fuse_mount.h"
#include "common/log.h"

namespace hamirror::fs {

bool IsHamirrorMount(const std::string& canonical_path) { return TopMountType(canonical_path) == kFsType; }

Status CheckMountPoint(const std::string& dir, std::string* canonical) {
  // statfs first: stat() of a dead mount's root may be answered from the kernel's attribute cache
  // (a primary caches for a day), which made a dead mount look alive.
  MountProbe probe = MountProbe::kNotFuse;
  Status ps = ProbeMount(dir, &probe);
  if (!ps.ok()) return ps;
  if (probe == MountProbe::kDead) {
    std::string path;
    if (Status s = CanonicalMountPoint(dir, &path); !s.ok()) return s;
    const std::string type = TopMountType(path);
    if (type != kFsType) {
      return Status::InvalidArgument(
          dir + " is a dead FUSE mount (" + (type.empty() ? "type unknown" : type) +
          ", transport endpoint is not connected); unmount it first: umount -l " + dir);
    }
    // Its hamirror-fs is gone (a crash, a kill): nothing can use it any more, take it away. Who still
    // holds files on it is only easy to tell before the detach.
    std::string holders;
    for (const auto& p : ProcessesWithFilesOn(TopMountId(path))) holders += (holders.empty() ? "" : ", ") + p;
    if (Status s = DetachMount(path); !s.ok()) return s;
    HLOG_WARN(
        "%s was a dead hamirror mount (its hamirror-fs is gone): detached (lazy unmount); processes "
        "that still hold files on it get errors until they close them%s%s",
        path.c_str(), holders.empty() ? " (none found)" : ": ", holders.c_str());
  }
  struct stat st;
  if (stat(dir.c_str(), &st) < 0) {
    int err = errno;
    if (err == ENOENT) return Status::NotFound("directory " + dir + " does not exist");
    return Status::FromErrno("stat " + dir, err);
  }
  if (!S_ISDIR(st.st_mode)) return Status::InvalidArgument(dir + " is not a directory");
  if (Status s = CanonicalMountPoint(dir, canonical); !s.ok()) return s;
  // statfs answered above: a hamirror mount here has a live hamirror-fs.
  if (IsHamirrorMount(*canonical)) {
    return Status::InvalidArgument(*canonical + " is already a hamirror mount; stop its hamirror-fs first");
  }
  return Status::Ok();
}

}  // namespace hamirror::fs
