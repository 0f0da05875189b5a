#include "manager/daemon/state_store.h"

#include <catch2/catch.hpp>
#include <fstream>

#include "manager/daemon/failover_store.h"
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

TEST_CASE("state store: split_brain and incarnation persist, version-1 files still load", "[daemon]") {
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

TEST_CASE("failover store: the last failover survives a restart, a corrupt file is said so", "[daemon]") {
  hamirror::test::TempDir tmp("hamirror-store");
  const std::string path = tmp.path() + "/last_failover";
  FailoverStore store(path);
  hamirror::proto::Failover f;
  CHECK(store.Load(&f).code() == hamirror::Status::Code::kNotFound);
  f.set_at_unix_ms(1764000000123);
  f.set_duration_ms(4200);
  f.set_reason("peer n1 lost (no heartbeat\non any network)");
  f.set_state(hamirror::proto::NODE_STATE_ALONE);
  REQUIRE(store.Save(f).ok());
  hamirror::proto::Failover g;
  REQUIRE(store.Load(&g).ok());
  CHECK(g.at_unix_ms() == 1764000000123);
  CHECK(g.duration_ms() == 4200);
  CHECK(g.reason() == "peer n1 lost (no heartbeat on any network)");  // kept on one line
  CHECK(g.state() == hamirror::proto::NODE_STATE_ALONE);
  std::ofstream(path) << "hamirror-failover-1 12 3 99 bad state";
  CHECK(store.Load(&g).code() == hamirror::Status::Code::kCorruption);
}
