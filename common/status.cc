#include "common/status.h"

#include <cstring>

namespace hamirror {

Status Status::FromErrno(std::string_view what, int err) {
  std::string msg(what);
  msg += ": ";
  msg += std::strerror(err);
  return Status(Code::kIoError, std::move(msg));
}

std::string Status::ToString() const {
  switch (code_) {
    case Code::kOk: return "OK";
    case Code::kInvalidArgument: return "invalid argument: " + message_;
    case Code::kNotFound: return "not found: " + message_;
    case Code::kIoError: return "I/O error: " + message_;
    case Code::kUnavailable: return "unavailable: " + message_;
    case Code::kTimeout: return "timeout: " + message_;
    case Code::kCorruption: return "corruption: " + message_;
    case Code::kInternal: return "internal: " + message_;
  }
  return message_;
}

}  // namespace hamirror
