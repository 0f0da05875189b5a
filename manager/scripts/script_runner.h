// User scripts of a module (MODULE_DIR/bin): prestart, start_prim, stop_prim, start_second,
// stop_second, start_both, stop_both, poststop — run with SafeKit's environment and timeouts.
//
// - Environment: the daemon's own (PATH etc.) plus SAFE, SAFEMODULE, SAFEBIN, SAFEVAR, SAFEUSERBIN,
//   HAMIRROR_SOCKET (so `hamirror printi ...` inside a script reaches this module), and every <var>.
// - Start scripts run once, killed after `timeout` (nicestoptimeout).
// - Stop scripts run once; if still running after `timeout` (nicestoptimeout) they are killed and run
//   again with the argument `force`, killed after `force_timeout` (forcestoptimeout). `Forced` runs
//   (forcestop) start directly with `force`.
// - Every output line goes to the sink as "<script>: <line>".
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hamirror::scripts {

enum class Script {
  kPrestart,
  kStartPrim,
  kStopPrim,
  kStartSecond,
  kStopSecond,
  kStartBoth,
  kStopBoth,
  kPoststop
};

const char* ScriptName(Script s);
bool IsStopScript(Script s);  // stop_prim, stop_second, stop_both, poststop

struct ScriptEnv {
  std::string safe;                                       // install dir (where the `hamirror` CLI lives)
  std::string module_name;                                // SAFEMODULE
  std::string safebin;                                    // SAFEBIN: tools dir
  std::string safevar;                                    // SAFEVAR: runtime state dir
  std::string safeuserbin;                                // SAFEUSERBIN: MODULE_DIR/bin
  std::string admin_socket;                               // HAMIRROR_SOCKET
  std::vector<std::pair<std::string, std::string>> vars;  // <var name value>

  // The child environment: this process's environ with the above added/overridden.
  std::vector<std::string> Build() const;
};

struct ScriptTimeouts {
  std::chrono::milliseconds timeout{300000};        // nicestoptimeout
  std::chrono::milliseconds force_timeout{300000};  // forcestoptimeout
  // Re-run a stop script with `force` when it times out. Off when the caller (the state machine)
  // decides about the force run itself.
  bool rerun_with_force = true;
};

struct ScriptResult {
  Script script = Script::kPrestart;
  bool present = false;    // the script exists (absent scripts are a success)
  bool ok = false;         // exit 0 (or absent)
  bool timed_out = false;  // the (last) run was killed at its deadline
  bool forced = false;     // ran with `force`
  int exit_code = 0;
  std::string Summary() const;  // "start_prim: exit 0" etc.
};

using LineSink = std::function<void(std::string_view)>;

// Blocks until the script (and its force run) finished. `path` empty or missing: not present.
ScriptResult RunScript(Script script, const std::string& path, const ScriptEnv& env, const ScriptTimeouts& t,
                       bool force_first, const LineSink& sink);

}  // namespace hamirror::scripts
