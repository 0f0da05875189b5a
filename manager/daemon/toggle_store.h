// ToggleStore: the runtime toggles an operator sets with `hamirror boot on|off` and
// `hamirror failover on|off`, kept in <statedir>/toggles so that they survive a daemon restart (SafeKit
// keeps these two; errd and checker toggles last until the daemon restarts and are not stored here).
// A toggle never set keeps the configuration's value (<service boot failover>).
// Format: one line "hamirror-toggles-1 boot=<on|off|-> failover=<on|off|->", written with
// WriteFileAtomic (temp + fsync + rename).
#pragma once

#include <optional>
#include <string>

#include "common/status.h"

namespace hamirror::daemon {

struct Toggles {
  std::optional<bool> boot;      // unset: <service boot>
  std::optional<bool> failover;  // unset: <service failover>
  bool operator==(const Toggles&) const = default;
};

class ToggleStore {
 public:
  explicit ToggleStore(std::string path) : path_(std::move(path)) {}
  // A missing file is no toggle set (Ok, *out all unset); an unreadable one is Corruption.
  Status Load(Toggles* out) const;
  Status Save(const Toggles& t) const;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace hamirror::daemon
