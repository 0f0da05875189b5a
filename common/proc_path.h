// ProcPath: "/proc/self/fd/N", how a descriptor (an O_PATH handle included) is reopened with other
// flags, or used by calls that have no descriptor form.
#pragma once

#include <cstdio>

namespace hamirror {

struct ProcPath {
  explicit ProcPath(int fd) { std::snprintf(buf, sizeof(buf), "/proc/self/fd/%d", fd); }
  char buf[32];
};

}  // namespace hamirror
