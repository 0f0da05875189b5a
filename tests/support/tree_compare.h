// CompareTrees: are two directory trees identical, as hamirror promises its two copies will be?
//
// Walks both trees in name order and compares, entry by entry: type, permission bits, owner, size,
// content (holes read as zeros; optional), link structure (which entries are hard links of one another),
// symlink targets, extended attributes and mtime (nanoseconds). Returns the FIRST difference as a
// readable sentence ("sub/f: size 4096 vs 0"), or "" when the trees are identical.
#pragma once

#include <string>
#include <vector>

namespace hamirror::test {

struct TreeCompareOptions {
  bool mtime = true;          // regular files, directories (incl. the roots) and specials
  bool symlink_mtime = true;  // symlinks' own mtime
  bool dir_mtime = true;      // directories' mtime (changes with every entry added/removed)
  bool owner = true;
  bool xattrs = true;
  // Regular files' bytes; false: sizes only (no open, no read: a quick check of a large tree).
  bool content = true;
  // Entry names (relative paths, e.g. "lost+found") skipped on both sides.
  std::vector<std::string> ignore;
};

std::string CompareTrees(const std::string& a, const std::string& b, const TreeCompareOptions& options = {});

}  // namespace hamirror::test
