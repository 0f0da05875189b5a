// Diagnostic formatting and the names of enumerated settings.
#include "manager/config/config.h"

namespace hamirror::config {

std::string Diagnostic::ToString() const {
  std::string s = file;
  if (line > 0) {
    s += ':';
    s += std::to_string(line);
  }
  s += ": ";
  if (severity == kWarning) s += "warning: ";
  s += message;
  return s;
}

const char* ToString(DefaultPrim v) {
  switch (v) {
    case DefaultPrim::kAlone: return "alone";
    case DefaultPrim::kLastPrim: return "lastprim";
    case DefaultPrim::kNode: return "node";
  }
  return "?";
}

const char* ToString(RecoveryAction v) {
  switch (v) {
    case RecoveryAction::kRestart: return "restart";
    case RecoveryAction::kStopStart: return "stopstart";
    case RecoveryAction::kStop: return "stop";
    case RecoveryAction::kWait: return "wait";
  }
  return "?";
}

const char* ToString(RoleClass v) {
  switch (v) {
    case RoleClass::kPrim: return "prim";
    case RoleClass::kSecond: return "second";
    case RoleClass::kBoth: return "both";
    case RoleClass::kPre: return "pre";
  }
  return "?";
}

const char* ToString(AsyncMode v) {
  switch (v) {
    case AsyncMode::kNone: return "none";
    case AsyncMode::kSecond: return "second";
  }
  return "?";
}

const char* ToString(SplitBrainPolicy v) {
  switch (v) {
    case SplitBrainPolicy::kManual: return "manual";
  }
  return "?";
}

}  // namespace hamirror::config
