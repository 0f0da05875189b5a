// ModuleLog: the per-module log that `hamirror log` shows. Every line goes to a file
// (<logdir>/<module>.log, appended across restarts) and to stderr through common/log.
// Line format: "2026-11-26T07:30:00.123Z I message" (I/W/E = info/warning/error).
// Thread-safe; readers tail the file, so `hamirror log -f` works across daemon restarts.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace hamirror::admin {

class ModuleLog {
 public:
  enum class Level { kInfo, kWarning, kError };

  // Opens (creates) `path` for appending; `echo_stderr` also sends lines to common/log.
  static Status Open(const std::string& path, bool echo_stderr, std::unique_ptr<ModuleLog>* out);
  ~ModuleLog();
  ModuleLog(const ModuleLog&) = delete;
  ModuleLog& operator=(const ModuleLog&) = delete;

  void Write(Level level, std::string_view msg);
  void Info(std::string_view msg) { Write(Level::kInfo, msg); }
  void Warning(std::string_view msg) { Write(Level::kWarning, msg); }
  void Error(std::string_view msg) { Write(Level::kError, msg); }

  const std::string& path() const { return path_; }

  // Reads the last `n` complete lines of the file at `path`; *end_offset is where a follower resumes.
  static Status Tail(const std::string& path, size_t n, std::vector<std::string>* lines,
                     uint64_t* end_offset);
  // Reads the complete lines appended since *offset (advancing it). A partial last line stays unread.
  static Status ReadFrom(const std::string& path, uint64_t* offset, std::vector<std::string>* lines);

 private:
  ModuleLog(std::string path, int fd, bool echo) : path_(std::move(path)), fd_(fd), echo_(echo) {}
  std::string path_;
  int fd_;
  bool echo_;
  std::mutex mu_;
};

}  // namespace hamirror::admin
