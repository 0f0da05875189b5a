// Whether a watch or checker of a role class (<proc class>, <tcp when>, ...) applies in a node state.
#pragma once

#include "manager/config/config.h"
#include "manager/core/node_machine.h"

namespace hamirror::daemon {

inline bool ClassActive(config::RoleClass c, manager::core::NodeState s) {
  using manager::core::NodeState;
  const bool serving = s == NodeState::kPrim || s == NodeState::kAlone;
  switch (c) {
    case config::RoleClass::kPrim: return serving;
    case config::RoleClass::kSecond: return s == NodeState::kSecond;
    case config::RoleClass::kBoth: return serving || s == NodeState::kSecond;
    case config::RoleClass::kPre: return s != NodeState::kStop;
  }
  return false;
}

}  // namespace hamirror::daemon
