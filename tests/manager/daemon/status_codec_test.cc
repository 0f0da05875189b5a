#include "manager/daemon/status_codec.h"

#include <catch2/catch.hpp>

using namespace hamirror::daemon;
namespace core = hamirror::manager::core;

TEST_CASE("status codec: round trip, forgery, other cluster, garbage", "[daemon]") {
  StatusDatagram d;
  d.cluster_id = 42;
  d.incarnation = 1234567;
  d.to = "n2";
  d.status.from = std::string(1, 'n') + "1";
  d.status.state = core::NodeState::kPrim;
  d.status.readiness = core::Readiness::kTransient;
  d.status.data.data = core::DataState::kUpToDate;
  d.status.data.current = {7, "n1"};
  d.status.data.base = {6, ""};
  d.status.data.last_role = core::Role::kPrim;
  d.status.seq = 99;
  d.status.echo_seq = 98;
  d.status.handing_over = true;
  d.status.split_brain = true;
  const std::string key = "0123456789abcdef";
  std::string bytes = EncodeStatus(d, key);

  StatusDatagram out;
  REQUIRE(DecodeStatus(bytes, key, 42, &out) == StatusDecode::kOk);
  CHECK(out.to == "n2");
  CHECK(out.incarnation == 1234567);
  CHECK(out.status.from == "n1");
  CHECK(out.status.state == core::NodeState::kPrim);
  CHECK(out.status.readiness == core::Readiness::kTransient);
  CHECK(out.status.data == d.status.data);
  CHECK(out.status.seq == 99);
  CHECK(out.status.echo_seq == 98);
  CHECK(out.status.handing_over);
  CHECK_FALSE(out.status.swap_request);
  CHECK(out.status.split_brain);

  CHECK(DecodeStatus(bytes, "another key 12345", 42, &out) == StatusDecode::kBadTag);
  CHECK(DecodeStatus(bytes, key, 43, &out) == StatusDecode::kWrongCluster);
  std::string tampered = bytes;
  tampered[tampered.find(" 99 ") + 1] = '8';  // seq 99 -> 89
  CHECK(DecodeStatus(tampered, key, 42, &out) == StatusDecode::kBadTag);
  CHECK(DecodeStatus(bytes.substr(0, bytes.size() - 1), key, 42, &out) == StatusDecode::kGarbage);
  CHECK(DecodeStatus("HMST1 garbage\n", key, 42, &out) == StatusDecode::kGarbage);
  CHECK(DecodeStatus("", key, 42, &out) == StatusDecode::kGarbage);
}
