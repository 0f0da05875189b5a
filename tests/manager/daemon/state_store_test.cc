#include "manager/daemon/state_store.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

using namespace hamirror::daemon;
namespace core = hamirror::manager::core;

TEST_CASE("state store: save, load, fresh and corrupt files", "[daemon]") {
  char tmpl[] = "/tmp/hamirror-store-XXXXXX";
  REQUIRE(mkdtemp(tmpl));
  std::string dir = tmpl;
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
  std::filesystem::remove_all(dir);
}
