// DevChannel: the session's /dev/fuse traffic through our own read/writev (libfuse's custom I/O), so
// that the INIT handshake can ask for kernel features libfuse 3.14 does not know (init_extension.h).
// Requests and replies are otherwise passed through untouched: the same system calls libfuse makes.
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include "common/status.h"
#include "fuse_fs/init_extension.h"
#include "fuse_fs/uring_transport.h"

namespace hamirror::fs {

// Installs the channel on a mounted session (after fuse_session_mount, before the loop). ext must
// outlive the session; one session per process. transport (optional): replies to ring requests go
// there, and it is told when the INIT reply went out; it must outlive the session's traffic.
[[nodiscard]] Status InstallDevChannel(fuse_session* se, InitExtension* ext,
                                       UringTransport* transport = nullptr);

}  // namespace hamirror::fs
