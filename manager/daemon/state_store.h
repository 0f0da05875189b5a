// StateStore: the core's Persisted facts on disk (<statedir>/node.state), written atomically
// (temp file, fsync, rename, fsync of the directory) before the actions that follow an ActPersist run.
// Every Persisted field is stored (split_brain included: a node must not forget a split brain across a
// restart). Format: one line "hamirror-state-2 <data> <cur.counter> <cur.author> <base.counter>
// <base.author> <last_role> <split_brain 0|1> <incarnation>"; version-1 files (no last two) still load.
#pragma once

#include <string>

#include "common/status.h"
#include "manager/core/node_machine.h"

namespace hamirror::daemon {

// Replaces `path` with `text` crash-safely: temp file, fsync, rename, fsync of the directory (created
// 0700 if missing). A crash leaves either the old content or the new one, never a mix.
Status WriteFileDurably(const std::string& path, const std::string& text);

class StateStore {
 public:
  explicit StateStore(std::string path) : path_(std::move(path)) {}
  // NotFound when the file does not exist (fresh node): *out keeps its defaults.
  Status Load(manager::core::Persisted* out) const;
  Status Save(const manager::core::Persisted& p) const;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace hamirror::daemon
