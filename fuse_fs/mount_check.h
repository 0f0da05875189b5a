// Checks that a directory can take a hamirror-fs mount: it exists, is a directory, and is not already
// a live hamirror mount. A dead hamirror mount (its hamirror-fs killed: "transport endpoint is not
// connected") is detached and the check goes on; a dead mount of another FUSE file system is refused.
#pragma once

#include <string>

#include "common/status.h"

namespace hamirror::fs {

// The file-system type hamirror mounts show in /proc/self/mountinfo.
inline constexpr const char* kFsType = "fuse.hamirror";
inline constexpr const char* kFsName = "hamirror";

// On success *canonical is the absolute, symlink-free path of dir.
Status CheckMountPoint(const std::string& dir, std::string* canonical);

// True if the topmost mount at `canonical_path` is a hamirror mount.
bool IsHamirrorMount(const std::string& canonical_path);

}  // namespace hamirror::fs
