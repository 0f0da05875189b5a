#include "manager/scripts/script_runner.h"

#include <unistd.h>

#include <map>

#include "manager/process/subprocess.h"

extern char** environ;

namespace hamirror::scripts {

const char* ScriptName(Script s) {
  switch (s) {
    case Script::kPrestart: return "prestart";
    case Script::kStartPrim: return "start_prim";
    case Script::kStopPrim: return "stop_prim";
    case Script::kStartSecond: return "start_second";
    case Script::kStopSecond: return "stop_second";
    case Script::kStartBoth: return "start_both";
    case Script::kStopBoth: return "stop_both";
    case Script::kPoststop: return "poststop";
  }
  return "?";
}

bool IsStopScript(Script s) {
  return s == Script::kStopPrim || s == Script::kStopSecond || s == Script::kStopBoth ||
         s == Script::kPoststop;
}

std::vector<std::string> ScriptEnv::Build() const {
  std::map<std::string, std::string> m;
  for (char** e = environ; e && *e; ++e) {
    std::string kv = *e;
    size_t eq = kv.find('=');
    if (eq != std::string::npos) m[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  if (m.find("PATH") == m.end()) m["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  // The CLI's dir first on PATH so scripts can simply call `hamirror printi ...`.
  if (!safe.empty()) m["PATH"] = safe + ":" + m["PATH"];
  m["SAFE"] = safe;
  m["SAFEMODULE"] = module_name;
  m["SAFEBIN"] = safebin;
  m["SAFEVAR"] = safevar;
  m["SAFEUSERBIN"] = safeuserbin;
  if (!admin_socket.empty()) m["HAMIRROR_SOCKET"] = admin_socket;
  for (const auto& [k, v] : vars) m[k] = v;
  std::vector<std::string> out;
  out.reserve(m.size());
  for (const auto& [k, v] : m) out.push_back(k + "=" + v);
  return out;
}

std::string ScriptResult::Summary() const {
  std::string s = ScriptName(script);
  if (forced) s += " force";
  if (!present) return s + ": absent";
  if (timed_out) return s + ": killed at timeout";
  return s + ": exit " + std::to_string(exit_code);
}

ScriptResult RunScript(Script script, const std::string& path, const ScriptEnv& env, const ScriptTimeouts& t,
                       bool force_first, const LineSink& sink) {
  ScriptResult res;
  res.script = script;
  if (path.empty() || access(path.c_str(), F_OK) != 0) {
    res.ok = true;
    return res;
  }
  res.present = true;
  const std::string name = ScriptName(script);
  process::ProcessSpec spec;
  spec.env = env.Build();
  if (!env.safeuserbin.empty()) spec.cwd = env.safeuserbin;
  spec.on_line = [&](std::string_view line) {
    if (sink) sink(name + (res.forced ? " force: " : ": ") + std::string(line));
  };
  auto run = [&](bool force) {
    res.forced = force;
    spec.argv = {path};
    if (force) spec.argv.push_back("force");
    spec.timeout = force ? t.force_timeout : t.timeout;
    process::ProcessResult r = process::RunProcess(spec);
    if (!r.started && sink) sink(name + ": cannot run " + path + ": " + r.error);
    res.timed_out = r.timed_out;
    res.exit_code = r.exit_code;
    res.ok = r.ok();
  };
  run(force_first && IsStopScript(script));
  if (t.rerun_with_force && res.timed_out && IsStopScript(script) && !res.forced) {
    if (sink) sink(name + ": still running after nicestoptimeout, killed; running again with force");
    run(true);
  }
  return res;
}

}  // namespace hamirror::scripts
