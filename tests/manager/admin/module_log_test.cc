#include "manager/admin/module_log.h"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <memory>

using hamirror::admin::ModuleLog;

namespace {
std::string TempDir() {
  char tmpl[] = "/tmp/hamirror-modlog-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  return tmpl;
}
}  // namespace

TEST_CASE("module log: tail returns the last N lines and a follow offset", "[admin]") {
  std::string dir = TempDir();
  std::unique_ptr<ModuleLog> log;
  REQUIRE(ModuleLog::Open(dir + "/m.log", false, &log).ok());
  for (int i = 0; i < 50; ++i) log->Info("line " + std::to_string(i));
  log->Error("multi\nline");
  std::vector<std::string> lines;
  uint64_t off = 0;
  REQUIRE(ModuleLog::Tail(dir + "/m.log", 3, &lines, &off).ok());
  REQUIRE(lines.size() == 3);
  CHECK(lines[0].find(" I line 48") != std::string::npos);
  CHECK(lines[1].find(" I line 49") != std::string::npos);
  CHECK(lines[2].find(" E multi line") != std::string::npos);

  log->Warning("after");
  lines.clear();
  REQUIRE(ModuleLog::ReadFrom(dir + "/m.log", &off, &lines).ok());
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].find(" W after") != std::string::npos);
  lines.clear();
  REQUIRE(ModuleLog::ReadFrom(dir + "/m.log", &off, &lines).ok());
  CHECK(lines.empty());
  std::filesystem::remove_all(dir);
}

TEST_CASE("module log: tail of a long file reads only the end", "[admin]") {
  std::string dir = TempDir();
  std::unique_ptr<ModuleLog> log;
  REQUIRE(ModuleLog::Open(dir + "/m.log", false, &log).ok());
  std::string pad(200, 'x');
  for (int i = 0; i < 2000; ++i) log->Info(std::to_string(i) + pad);
  std::vector<std::string> lines;
  uint64_t off = 0;
  REQUIRE(ModuleLog::Tail(dir + "/m.log", 1000, &lines, &off).ok());
  REQUIRE(lines.size() == 1000);
  CHECK(lines.front().find(" I 1000x") != std::string::npos);
  CHECK(lines.back().find(" I 1999x") != std::string::npos);
  CHECK(off == std::filesystem::file_size(dir + "/m.log"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("module log: missing file is a clear error", "[admin]") {
  std::vector<std::string> lines;
  uint64_t off = 0;
  auto st = ModuleLog::Tail("/nonexistent/x.log", 3, &lines, &off);
  CHECK_FALSE(st.ok());
  CHECK(st.ToString().find("/nonexistent/x.log") != std::string::npos);
}
