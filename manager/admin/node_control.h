// NodeControl: what the admin API needs from a node. hamirrord implements it over its event loop;
// tests implement it with a fake. Every method may be called concurrently from gRPC threads.
#pragma once

#include <string>

#include "manager/admin/module_log.h"
#include "proto/admin.pb.h"

namespace hamirror::admin {

enum class Command {
  kStart,
  kStop,
  kRestart,
  kForcestop,
  kPrim,
  kSecond,
  kSecondFullsync,
  kPrimforce,
  kSwap,
  kResync,      // on the secondary: resynchronise from the primary (what its record names)
  kStopStart,   // module stop then start on this node (the peer takes over meanwhile)
  kSwapNosync,  // swap, refused unless no resync would follow it
};

// Runtime toggles (`hamirror errd|checker|boot|failover ...`).
enum class Toggle { kErrd, kChecker, kBoot, kFailover };
enum class ToggleSetting { kOn, kOff, kSuspend, kResume };
const char* ToggleName(Toggle t);
const char* ToggleSettingName(ToggleSetting s);

const char* CommandName(Command cmd);

struct CommandResult {
  bool accepted = false;
  std::string reason;  // why refused, or a note when accepted
  static CommandResult Accepted(std::string note = {}) { return {true, std::move(note)}; }
  static CommandResult Refused(std::string why) { return {false, std::move(why)}; }
};

class NodeControl {
 public:
  virtual ~NodeControl() = default;
  // Fills the node's view (and the peer's as last heard). `verbose` asks for resources too.
  virtual void FillState(bool verbose, proto::StateReply* reply) = 0;
  // Decides whether the command is accepted in the current state; the work itself goes on after.
  virtual CommandResult Execute(Command cmd) = 0;
  // `hamirror verify [--repair]`: starts an online verify of the peer's copy (primary only).
  virtual CommandResult Verify(bool /*repair*/) {
    return CommandResult::Refused("verify: not implemented here");
  }
  // `hamirror errd|checker|boot|failover`: applies one toggle (its value shows in StateReply 40-43).
  virtual CommandResult SetToggle(Toggle what, ToggleSetting /*how*/) {
    return CommandResult::Refused(std::string(ToggleName(what)) + ": not implemented here");
  }
  // `hamirror printi|printw|printe`: a line into the module log.
  virtual void Print(ModuleLog::Level level, const std::string& msg) = 0;
  // The module log file that `hamirror log` tails.
  virtual std::string LogPath() = 0;
};

}  // namespace hamirror::admin
