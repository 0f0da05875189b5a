// What every binary shares: --version (CMake's project version, plus the git commit of a checkout)
// and the exit-code table of common/exit_codes.h for usage errors.
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <regex>
#include <string>

#include "common/exit_codes.h"

namespace {

struct Run {
  int rc;
  std::string out;  // stdout only
};

Run Exec(const std::string& cmd) {
  FILE* p = popen((cmd + " 2>/dev/null").c_str(), "r");
  REQUIRE(p);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int st = pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

struct Binary {
  std::string path;
  std::string name;  // as --version names it
};

std::vector<Binary> Binaries() {
  const std::string safekit = std::filesystem::path(HAMIRROR_CLI_BIN).parent_path().string() + "/safekit";
  return {{HAMIRROR_CLI_BIN, "hamirror"},
          {safekit, "hamirror"},
          {HAMIRRORD_BIN, "hamirrord"},
          {HAMIRROR_FS_BIN, "hamirror-fs"}};
}

}  // namespace

TEST_CASE("cli: every binary answers --version with the project version", "[cli][version]") {
  for (const Binary& b : Binaries()) {
    INFO(b.path);
    const Run r = Exec(b.path + " --version");
    CHECK(r.rc == hamirror::kExitOk);
    // The commit part is there exactly when the sources were a git checkout at configure time.
    const std::string commit = HAMIRROR_SOURCE_IS_GIT ? R"( \(git [0-9a-f]{7,}\))" : "";
    const std::string version = std::regex_replace(HAMIRROR_VERSION, std::regex(R"(\.)"), R"(\.)");
    CHECK(std::regex_match(r.out, std::regex(b.name + " " + version + commit + "\n")));
  }
}

TEST_CASE("cli: every binary exits 64 on a bad option or a missing argument", "[cli][version]") {
  for (const Binary& b : Binaries()) {
    INFO(b.path);
    CHECK(Exec(b.path + " --no-such-option").rc == hamirror::kExitUsage);
    CHECK(Exec(b.path).rc == hamirror::kExitUsage);  // no verb, no --module, no mode
  }
  CHECK(Exec(std::string(HAMIRROR_FS_BIN) + " ctl --control /nonexistent role").rc == hamirror::kExitUsage);
}
