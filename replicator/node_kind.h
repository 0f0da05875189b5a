// NodeKindOf: the wire's kind of a file system object (replication.proto NodeKind) from st_mode.
#pragma once

#include <sys/stat.h>

#include "proto/replication.pb.h"

namespace hamirror::replicator {

inline proto::NodeKind NodeKindOf(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG: return proto::NODE_KIND_FILE;
    case S_IFDIR: return proto::NODE_KIND_DIR;
    case S_IFLNK: return proto::NODE_KIND_SYMLINK;
    case S_IFIFO: return proto::NODE_KIND_FIFO;
    case S_IFSOCK: return proto::NODE_KIND_SOCKET;
    case S_IFCHR: return proto::NODE_KIND_CHAR;
    case S_IFBLK: return proto::NODE_KIND_BLOCK;
    default: return proto::NODE_KIND_UNSPECIFIED;
  }
}

}  // namespace hamirror::replicator
