#include "manager/daemon/toggle_store.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "tests/support/daemon.h"

using namespace hamirror::daemon;

TEST_CASE("toggle store: unset by default, boot and failover kept, no temp file left", "[daemon]") {
  hamirror::test::TempDir tmp("hamirror-toggles");
  ToggleStore store(tmp.path() + "/state/toggles");
  Toggles t;
  REQUIRE(store.Load(&t).ok());
  CHECK_FALSE(t.boot.has_value());
  CHECK_FALSE(t.failover.has_value());
  t.boot = false;
  REQUIRE(store.Save(t).ok());
  Toggles u;
  REQUIRE(store.Load(&u).ok());
  CHECK(u == t);
  t.failover = true;
  t.boot = true;
  REQUIRE(store.Save(t).ok());
  REQUIRE(ToggleStore(store.path()).Load(&u).ok());  // a new store (a restarted daemon) reads it back
  CHECK(u.boot == std::optional<bool>(true));
  CHECK(u.failover == std::optional<bool>(true));
  CHECK_FALSE(std::filesystem::exists(store.path() + ".tmp"));
}

TEST_CASE("toggle store: an unreadable file is reported, not taken for defaults", "[daemon]") {
  hamirror::test::TempDir tmp("hamirror-toggles");
  ToggleStore store(tmp.path() + "/toggles");
  for (const char* junk :
       {"junk", "hamirror-toggles-1 boot=maybe failover=on", "hamirror-toggles-1 boot=on"}) {
    std::ofstream(store.path()) << junk;
    Toggles t;
    CHECK(store.Load(&t).code() == hamirror::Status::Code::kCorruption);
  }
}
