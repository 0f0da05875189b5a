// The exit codes of hamirror, hamirrord and hamirror-fs: one table, documented in docs/operations.md.
// 64 and 78 are sysexits.h's EX_USAGE and EX_CONFIG.
#pragma once

namespace hamirror {

inline constexpr int kExitOk = 0;
inline constexpr int kExitRefused = 1;      // refused by the daemon, or a check failed
inline constexpr int kExitUnreachable = 2;  // daemon unreachable, or the call / the run failed
inline constexpr int kExitUsage = 64;       // bad command line
inline constexpr int kExitConfig = 78;      // bad configuration

// `state -lq` answers with SafeKit's codes instead; 5 is hamirror's: the state cannot be told
// (several modules and no -m, or a socket whose daemon does not answer).
inline constexpr int kStateStop = 0;
inline constexpr int kStateWait = 1;
inline constexpr int kStateAlone = 2;
inline constexpr int kStatePrim = 3;
inline constexpr int kStateSecond = 4;
inline constexpr int kStateUnknown = 5;

}  // namespace hamirror
