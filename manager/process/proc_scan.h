// Process table scan for the <errd> watchdog: counts live processes matching a name, the way
// SafeKit's `<proc name=...>` does (the kernel's comm, or the basename of argv[0]), or a regex over
// the name, optionally narrowed by a regex over the whole command line.
#pragma once

#include <regex>
#include <string>
#include <vector>

namespace hamirror::process {

struct ProcEntry {
  int pid = 0;
  std::string comm;     // /proc/PID/comm (at most 15 chars)
  std::string argv0;    // basename of argv[0]
  std::string cmdline;  // argv joined by spaces
};

// Reads /proc (or another procfs root, for tests). Processes that vanish mid-scan are skipped;
// zombies are not counted (a dead service is not running).
std::vector<ProcEntry> ScanProcesses(const std::string& proc_root = "/proc");

class ProcMatcher {
 public:
  // name: exact comm or argv[0] basename (ignored when nameregex is set); nameregex: ECMAScript,
  // full match over comm or argv[0] basename; argregex: search in the command line ("" = any).
  // Regexes were validated by the config loader; an invalid one matches nothing.
  explicit ProcMatcher(std::string name, std::string nameregex = "", std::string argregex = "");
  bool Matches(const ProcEntry& e) const;

 private:
  std::string name_;
  bool use_name_re_ = false, use_arg_re_ = false, bad_ = false;
  std::regex name_re_, arg_re_;
};

int CountMatching(const std::vector<ProcEntry>& procs, const ProcMatcher& m);

}  // namespace hamirror::process
