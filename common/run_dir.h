// Where the sockets of a node live: the modules' admin sockets (<module>.sock) directly in it, the
// hamirror-fs control sockets in its fs/ subdirectory, so that the one is never taken for the other.
#pragma once

#include <cstdlib>
#include <string>

namespace hamirror {

// $HAMIRROR_RUN_DIR (tests, or a second installation), else /run/hamirror.
inline std::string RunDir() {
  const char* d = std::getenv("HAMIRROR_RUN_DIR");
  return d && *d ? d : "/run/hamirror";
}

// The subdirectory of the admin socket's directory that holds the hamirror-fs control sockets.
inline constexpr const char* kFsControlSubdir = "fs";

}  // namespace hamirror
