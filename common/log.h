// Minimal thread-safe logging to stderr: "<time> <level> <component>: message".
// Daemons run in the foreground; systemd/journald captures stderr.
#pragma once

#include <cstdarg>

namespace hamirror {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

void SetLogLevel(LogLevel level);
void SetLogComponent(const char* component);  // e.g. "hamirror-fs"
void Log(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

#define HLOG_DEBUG(...) ::hamirror::Log(::hamirror::LogLevel::kDebug, __VA_ARGS__)
#define HLOG_INFO(...) ::hamirror::Log(::hamirror::LogLevel::kInfo, __VA_ARGS__)
#define HLOG_WARN(...) ::hamirror::Log(::hamirror::LogLevel::kWarning, __VA_ARGS__)
#define HLOG_ERROR(...) ::hamirror::Log(::hamirror::LogLevel::kError, __VA_ARGS__)

}  // namespace hamirror
