// What is mounted on a directory, told without trusting the kernel's caches: a live FUSE mount, a dead
// one (its daemon is gone: "transport endpoint is not connected"), or none. Shared by hamirror-fs (its
// start-up check) and hamirrord (which cleans a mount left by a crash before it starts hamirror-fs).
//
// Why statfs(): a FUSE mount's root attributes are cached by the kernel (hamirror-fs as primary asks
// for a day), so stat() on a dead mount may still succeed; statfs() is never cached: it always asks
// the daemon, and fails with ENOTCONN once the daemon is gone (ECONNABORTED when it served the mount
// over io_uring: the kernel aborts the ring's queues). Caveat: on a live FUSE daemon that hangs
// (stopped, deadlocked) statfs() blocks too; hamirrord calls it on a helper thread with a deadline.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "common/status.h"

namespace hamirror {

inline constexpr long kFuseSuperMagic = 0x65735546;  // FUSE_SUPER_MAGIC (linux/magic.h)

enum class MountProbe {
  kNotFuse,  // no FUSE file system answers at this path (a plain directory, or another file system)
  kLive,     // a FUSE daemon answered statfs()
  kDead,     // a FUSE mount whose daemon is gone (statfs: ENOTCONN, or ECONNABORTED after io_uring)
};

const char* ToString(MountProbe p);

// Whether a call on a FUSE mount failed because its daemon is gone: ENOTCONN, or ECONNABORTED for a
// mount that was served over io_uring.
bool DeadMountErrno(int err);

// statfs(dir). ENOENT: Status::NotFound; other errors than a dead mount's (EACCES...) as such.
Status ProbeMount(const std::string& dir, MountProbe* out);
// The same with a deadline: statfs() runs on a detached thread, left behind if a hung FUSE daemon
// never answers (Status::Timeout then: the mount is alive but not answering).
Status ProbeMountWithin(const std::string& dir, std::chrono::milliseconds timeout, MountProbe* out);

// The file-system type ("fuse.hamirror", "ext4"...) of the topmost mount whose mount point is exactly
// `canonical_path` (absolute, symlink-free), from /proc/self/mountinfo; "" when it is no mount point.
std::string TopMountType(const std::string& canonical_path);

// The absolute, symlink-free form of dir, computed without looking at dir itself (only at its parent):
// works on a dead mount point, where realpath() fails (DeadMountErrno).
Status CanonicalMountPoint(const std::string& dir, std::string* out);

// The mount id (first field of /proc/self/mountinfo) of the topmost mount at canonical_path; -1 if none.
int TopMountId(const std::string& canonical_path);

// "PID (comm)" of every process with an open file on mount `mount_id` (from /proc/*/fdinfo: works on
// a dead mount, where stat() of the files fails), at most max_processes of them. Working directories
// and memory maps are not seen.
std::vector<std::string> ProcessesWithFilesOn(int mount_id, size_t max_processes = 20);

// Lazy unmount (umount2 MNT_DETACH) of the mount on dir: new lookups see the directory underneath at
// once; processes still holding files on the old mount keep them (dead ones fail with ENOTCONN) until
// they close them.
Status DetachMount(const std::string& dir);

}  // namespace hamirror
