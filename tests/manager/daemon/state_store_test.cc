#include "manager/daemon/state_store.h"

#include <catch2/catch.hpp>
#include <fstream>

#include "tests/support/daemon.h"

using namespace hamirror::daemon;
namespace core = hamirror::manager::core;

TEST_CASE("state store: save, load, fresh and corrupt files", "[daemon]") {
  hamirror::test::TempDir tmp("hamirror-store");
  const std::string dir = tmp.path();
  StateStore store(dir + "/sub/node.state");
  core::Persisted p;
  CHECK(store.Load(&p).code() == hamirror::Status::Code::kNotFound);
  p.data = core::DataState::kOutdated;
  p.current = {5, "n2"};
  p.base = {4, "n1"};
  p.last_role = core::Role::kSecond;
  REQUIRE(store.Save(p).ok());
  core::Persisted q;
  REQUIRE(store.Load(&q).ok());
  CHECK(q == p);
  std::ofstream(dir + "/sub/node.state") << "junk";
  CHECK(store.Load(&q).code() == hamirror::Status::Code::kCorruption);
}

TEST_CASE("state store: split_brain and incarnation persist; version-1 files still load", "[daemon]") {
  hamirror::test::TempDir tmp("hamirror-store");
  const std::string dir = tmp.path();
  StateStore store(dir + "/node.state");
  core::Persisted p;
  p.data = core::DataState::kUpToDate;
  p.current = {9, "n1"};
  p.base = {8, ""};
  p.last_role = core::Role::kPrim;
  p.split_brain = true;
  p.incarnation = 77;
  REQUIRE(store.Save(p).ok());
  core::Persisted q;
  REQUIRE(store.Load(&q).ok());
  CHECK(q.split_brain);
  CHECK(q.incarnation == 77);
  CHECK(q == p);
  p.split_brain = false;
  REQUIRE(store.Save(p).ok());
  REQUIRE(store.Load(&q).ok());
  CHECK_FALSE(q.split_brain);

  std::ofstream(dir + "/node.state", std::ios::trunc) << "hamirror-state-1 1 4 n2 3 - 1\n";
  REQUIRE(store.Load(&q).ok());
  CHECK(q.data == core::DataState::kUpToDate);
  CHECK(q.current == core::Generation{4, "n2"});
  CHECK_FALSE(q.split_brain);
  std::ofstream(dir + "/node.state", std::ios::trunc) << "hamirror-state-2 1 4 n2 3 - 1 2 0\n";
  CHECK(store.Load(&q).code() == hamirror::Status::Code::kCorruption);
}
