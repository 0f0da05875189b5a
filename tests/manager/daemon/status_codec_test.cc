#include "manager/daemon/status_codec.h"

#include <catch2/catch.hpp>

using namespace hamirror::daemon;
namespace core = hamirror::manager::core;

TEST_CASE("status codec: round trip, forgery, other cluster, garbage", "[daemon]") {
  StatusDatagram d;
  d.cluster_id = 42;
  d.status.incarnation = 1234567;
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
  CHECK(out.status.incarnation == 1234567);
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

TEST_CASE("status codec: every PeerStatus field survives the wire, each flag alone", "[daemon]") {
  const std::string key = "0123456789abcdef";
  // One datagram per flag, so that a flag dropped or mapped onto another bit is caught.
  for (int which = 0; which < 5; ++which) {
    StatusDatagram d;
    d.cluster_id = 7;
    d.to = "b";
    auto& s = d.status;
    s.from = "a";
    s.state = core::NodeState::kWait;
    s.data.data = core::DataState::kInconsistent;
    s.data.current = {3, "a"};
    s.data.base = {2, "b"};
    s.data.last_role = core::Role::kSecond;
    s.data.split_brain = which == 2;
    s.seq = (uint64_t{5} << 32) + 11;
    s.echo_seq = (uint64_t{9} << 32) + 4;
    s.incarnation = 1764140000123456789ull + which;
    s.echo_incarnation = 1764139999000000001ull;
    s.handing_over = which == 0;
    s.swap_request = which == 1;
    s.split_brain = which == 2;
    s.want_serve = which == 3;
    s.prefer_second = which == 4;
    StatusDatagram out;
    REQUIRE(DecodeStatus(EncodeStatus(d, key), key, 7, &out) == StatusDecode::kOk);
    CAPTURE(which);
    CHECK(out.status.from == s.from);
    CHECK(out.status.state == s.state);
    CHECK(out.status.readiness == s.readiness);
    CHECK(out.status.data.data == s.data.data);
    CHECK(out.status.data.current == s.data.current);
    CHECK(out.status.data.base == s.data.base);
    CHECK(out.status.data.last_role == s.data.last_role);
    CHECK(out.status.seq == s.seq);
    CHECK(out.status.echo_seq == s.echo_seq);
    CHECK(out.status.incarnation == s.incarnation);
    CHECK(out.status.echo_incarnation == s.echo_incarnation);
    CHECK(out.status.data.split_brain == s.data.split_brain);
    CHECK(out.status.handing_over == s.handing_over);
    CHECK(out.status.swap_request == s.swap_request);
    CHECK(out.status.split_brain == s.split_brain);
    CHECK(out.status.want_serve == s.want_serve);
    CHECK(out.status.prefer_second == s.prefer_second);
  }
}
