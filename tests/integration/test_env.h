// Integration-test knobs and look-ups: env settings, program paths, listening ports, mkdir -p.
// Processes, temporary directories and mounts come from tests/support/daemon.h (shared by every test
// folder).
#pragma once

#include <string>

#include "common/status.h"

namespace hamirror::itest {

// True if something listens on 127.0.0.1:port or 0.0.0.0:port (read from /proc/net/tcp, no connection made).
bool IsListening(int port);

// Integer env knob with a default.
long EnvLong(const char* name, long fallback);

// Full path of a program: PATH first, then the sbin directories (mariadbd lives in /usr/sbin, which a
// non-login root environment may not have on PATH). Returns name unchanged if not found.
std::string FindProgram(const std::string& name);

// mkdir -p.
Status MakeDirs(const std::string& path);

}  // namespace hamirror::itest
