// The adoption record a hamirrord leaving the module running writes for the next one (adopt_store.h),
// and the VIP keeper's half of the record protocol (vip_keeper.h).
#include "manager/daemon/adopt_store.h"

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>

#include "manager/daemon/vip_keeper.h"
#include "tests/support/daemon.h"

using namespace hamirror::daemon;
namespace core = hamirror::manager::core;
using Code = hamirror::Status::Code;

namespace {

AdoptionRecord Sample() {
  AdoptionRecord r;
  r.module = "mysql";
  r.node = "n1";
  r.boot_id = BootId();
  r.written_ms = BoottimeMs();
  r.daemon_pid = 4242;
  r.handoff.state = core::NodeState::kPrim;
  r.handoff.vip_held = true;
  r.handoff.fs_linked = true;
  r.handoff.lease_left_ms = 812;
  core::PeerStatus p;
  p.from = "n2";
  p.state = core::NodeState::kSecond;
  p.data.data = core::DataState::kUpToDate;
  p.data.current = {7, "n1"};
  p.data.base = {7, "n1"};
  p.data.last_role = core::Role::kSecond;
  p.data.incarnation = 12;
  p.incarnation = 1733366400123456789ull;
  p.seq = (12ull << 32) + 99;
  p.echo_seq = 5;
  p.echo_incarnation = 17;
  r.handoff.peer = p;
  r.generation = {7, "n1"};
  r.fs.push_back(FsSession{"/var/lib/my sql", 321, 98765, 1});
  return r;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST_CASE("adopt store: a record round-trips and is consumed once", "[daemon]") {
  hamirror::test::TempDir tmp("hamirror-adopt");
  AdoptStore store(tmp.path() + "/state/adopt");
  AdoptionRecord got;
  CHECK(store.Consume(&got).code() == Code::kNotFound);
  const AdoptionRecord r = Sample();
  REQUIRE(store.Save(r).ok());
  REQUIRE(store.Consume(&got).ok());
  CHECK(FormatAdoptionRecord(got) == FormatAdoptionRecord(r));
  CHECK(got.fs == r.fs);
  REQUIRE(got.handoff.peer);
  CHECK(got.handoff.peer->seq == r.handoff.peer->seq);
  CHECK(got.handoff.peer->data == r.handoff.peer->data);
  CHECK(got.handoff.lease_left_ms == 812);
  CHECK(access(store.path().c_str(), F_OK) != 0);  // removed: never adopted twice
  CHECK(store.Consume(&got).code() == Code::kNotFound);
}

TEST_CASE("adopt store: a corrupt or truncated record is refused, and removed", "[daemon]") {
  hamirror::test::TempDir tmp("hamirror-adopt");
  AdoptStore store(tmp.path() + "/adopt");
  REQUIRE(store.Save(Sample()).ok());
  std::string text = Slurp(store.path());
  // One changed digit: the checksum no longer matches.
  const size_t at = text.find("handoff 3 1 1 0 812");
  REQUIRE(at != std::string::npos);
  text[at + 16] = '9';
  std::ofstream(store.path()) << text;
  AdoptionRecord got;
  hamirror::Status s = store.Consume(&got);
  CHECK(s.code() == Code::kCorruption);
  CHECK(s.ToString().find("checksum") != std::string::npos);
  CHECK(access(store.path().c_str(), F_OK) != 0);
  std::ofstream(store.path()) << "hamirror-adopt-1\nmodule mysql\n";
  CHECK(store.Consume(&got).code() == Code::kCorruption);
  std::ofstream(store.path()) << "";
  CHECK(store.Consume(&got).code() == Code::kCorruption);
}

TEST_CASE("adopt store: boot id, boot time and process start times", "[daemon]") {
  CHECK(BootId().size() == 36);
  const uint64_t a = BoottimeMs();
  CHECK(a > 0);
  CHECK(ProcessStartTime(static_cast<uint32_t>(getpid())) > 0);
  CHECK(ProcessStartTime(0) == 0);
}

TEST_CASE("VIP keeper: leaves a record a new daemon consumed, or a newer record, alone", "[daemon]") {
  hamirror::test::TempDir tmp("hamirror-adopt");
  AdoptStore store(tmp.path() + "/adopt");
  REQUIRE(store.Save(Sample()).ok());
  struct stat st {};
  REQUIRE(stat(store.path().c_str(), &st) == 0);
  // Another record (another inode) replaced it: the keeper of the first one does nothing (no VIP given,
  // and the record must stay).
  REQUIRE(store.Save(Sample()).ok());
  std::string inode = std::to_string(st.st_ino), deadline = std::to_string(BoottimeMs());
  std::string log = tmp.path() + "/log", rec = store.path();
  char* argv[] = {rec.data(), inode.data(), deadline.data(), log.data(), nullptr};
  CHECK(RunVipKeeper(4, argv) == 0);
  CHECK(access(store.path().c_str(), F_OK) == 0);
  // Its own record, still there at the deadline: removed (with the VIPs, none here), and logged.
  REQUIRE(stat(store.path().c_str(), &st) == 0);
  inode = std::to_string(st.st_ino);
  char* argv2[] = {rec.data(), inode.data(), deadline.data(), log.data(), nullptr};
  CHECK(RunVipKeeper(4, argv2) == 0);
  CHECK(access(store.path().c_str(), F_OK) != 0);
  CHECK(Slurp(log).find("no hamirrord adopted the module before the lease ran out") != std::string::npos);
  AdoptionRecord got;
  CHECK(store.Consume(&got).code() == Code::kNotFound);
}
