// Quarantine: what the discarded side of a split brain keeps of what a resync is about to change.
//
// Before the resync overwrites or removes an entry of the target's tree, the target copies it (a
// file with its mode, owner, times and xattrs; a symlink; a directory with everything below it) to
// <root>/<resync id>/<path> and appends a line to <root>/<resync id>/MANIFEST:
//   <kind> <size in bytes> <path>\n     (kind: file, dir, symlink, other; path relative to the tree)
// Both the copy and the manifest are fsync'ed before the call returns, so the fix that follows in
// the stream never overtakes the saved copy. docs/reintegration.md says how to recover from it.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace hamirror::replicator {

// True if path is relative, non-empty, made of valid components (no "", ".", ".."), <= 4096 bytes.
bool IsValidRelativePath(const std::string& path);

// Saves entry `name` of directory parent_fd (O_PATH is fine; symlinks are never followed) as
// dest_dir/path, creating the parents. An entry saved already (same path, same resync) is kept
// as first saved. *saved_bytes: data bytes copied.
Status SaveToQuarantine(int parent_fd, const std::string& name, const std::string& dest_dir,
                        const std::string& path, uint64_t* saved_bytes);

}  // namespace hamirror::replicator
