#include "manager/scripts/script_runner.h"

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

using namespace hamirror::scripts;
using namespace std::chrono_literals;

namespace {

struct ModuleDir {
  std::string dir;
  ModuleDir() {
    char tmpl[] = "/tmp/hamirror-scripts-XXXXXX";
    REQUIRE(mkdtemp(tmpl));
    dir = tmpl;
  }
  ~ModuleDir() { std::filesystem::remove_all(dir); }
  std::string Write(const std::string& name, const std::string& body) {
    std::string p = dir + "/" + name;
    std::ofstream(p) << "#!/bin/sh\n" << body;
    chmod(p.c_str(), 0755);
    return p;
  }
};

ScriptEnv Env(const std::string& dir) {
  ScriptEnv e;
  e.safe = "/opt/hamirror/bin";
  e.module_name = "mysql";
  e.safebin = "/opt/hamirror/private/bin";
  e.safevar = "/var/lib/hamirror/mysql";
  e.safeuserbin = dir;
  e.admin_socket = "/run/hamirror/mysql.sock";
  e.vars = {{"DBUSER", "app"}, {"SAFEMODULE", "overridden-by-var"}};
  return e;
}

}  // namespace

TEST_CASE("scripts: SafeKit environment, arguments and log lines", "[scripts]") {
  ModuleDir m;
  std::string p = m.Write("start_prim",
                          "echo \"args=[$*] SAFE=$SAFE MOD=$SAFEMODULE BIN=$SAFEBIN VAR=$SAFEVAR "
                          "UB=$SAFEUSERBIN SOCK=$HAMIRROR_SOCKET DB=$DBUSER\"\necho cwd=$(pwd)\n");
  std::vector<std::string> lines;
  ScriptResult r = RunScript(Script::kStartPrim, p, Env(m.dir), ScriptTimeouts{}, false,
                             [&](std::string_view l) { lines.emplace_back(l); });
  CHECK(r.ok);
  CHECK(r.present);
  CHECK(r.Summary() == "start_prim: exit 0");
  REQUIRE(lines.size() == 2);
  CHECK(lines[0] ==
        "start_prim: args=[] SAFE=/opt/hamirror/bin MOD=overridden-by-var BIN=/opt/hamirror/private/bin "
        "VAR=/var/lib/hamirror/mysql UB=" +
            m.dir + " SOCK=/run/hamirror/mysql.sock DB=app");
  CHECK(lines[1] == "start_prim: cwd=" + m.dir);
}

TEST_CASE("scripts: absent script is a success, failing script reports its exit code", "[scripts]") {
  ModuleDir m;
  ScriptResult r = RunScript(Script::kPrestart, m.dir + "/prestart", Env(m.dir), {}, false, {});
  CHECK(r.ok);
  CHECK_FALSE(r.present);
  std::string p = m.Write("start_second", "exit 4\n");
  r = RunScript(Script::kStartSecond, p, Env(m.dir), {}, false, {});
  CHECK_FALSE(r.ok);
  CHECK(r.exit_code == 4);
}

TEST_CASE("scripts: a stop script stuck past nicestoptimeout is re-run with force", "[scripts]") {
  ModuleDir m;
  std::string p = m.Write("stop_prim", "if [ \"$1\" = force ]; then echo forced; exit 0; fi\nsleep 30\n");
  std::vector<std::string> lines;
  ScriptTimeouts t{300ms, 5s};
  auto t0 = std::chrono::steady_clock::now();
  ScriptResult r = RunScript(Script::kStopPrim, p, Env(m.dir), t, false,
                             [&](std::string_view l) { lines.emplace_back(l); });
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);
  CHECK(r.ok);
  CHECK(r.forced);
  CHECK(std::find(lines.begin(), lines.end(), "stop_prim force: forced") != lines.end());

  // A start script stuck past its timeout is killed, never re-run.
  std::string s = m.Write("start_prim", "sleep 30\n");
  r = RunScript(Script::kStartPrim, s, Env(m.dir), t, false, {});
  CHECK_FALSE(r.ok);
  CHECK(r.timed_out);
  CHECK_FALSE(r.forced);

  // forcestop: straight to force, which is itself bounded by forcestoptimeout.
  std::string q = m.Write("stop_second", "sleep 30\n");
  r = RunScript(Script::kStopSecond, q, Env(m.dir), ScriptTimeouts{5s, 200ms}, true, {});
  CHECK(r.forced);
  CHECK(r.timed_out);
}
