// FailoverStore: the last failover of this node on disk (<statedir>/last_failover), so that
// `hamirror state -v` still shows it after hamirrord restarts. Written when a failover completes.
// Format: one line "hamirror-failover-1 <at_unix_ms> <duration_ms> <state> <reason...>" (state: the
// proto NodeState number).
#pragma once

#include <string>

#include "common/status.h"
#include "proto/admin.pb.h"

namespace hamirror::daemon {

class FailoverStore {
 public:
  explicit FailoverStore(std::string path) : path_(std::move(path)) {}
  // NotFound when none was recorded. ago_ms is left 0 (the reader computes it).
  Status Load(proto::Failover* out) const;
  Status Save(const proto::Failover& f) const;

 private:
  std::string path_;
};

}  // namespace hamirror::daemon
