#include "manager/daemon/status_codec.h"

#include <catch2/catch.hpp>

using namespace hamirror::daemon;
namespace core = hamirror::manager::core;

namespace {
// (Names built at run time: a plain literal assignment trips GCC 12's false -Wrestrict here.)
core::PeerStatus Sample(int which) {
  core::PeerStatus s;
  s.from = std::string(1, 'n') + "1";
  s.state = core::NodeState::kWait;
  s.readiness = core::Readiness::kTransient;
  s.data.data = core::DataState::kInconsistent;
  s.data.current = {3, s.from};
  s.data.base = {2, std::string()};
  s.data.last_role = core::Role::kSecond;
  s.data.split_brain = which == 2;
  s.data.incarnation = 17;
  s.incarnation = 1764140000123456789ull + which;
  s.seq = (uint64_t{5} << 32) + 11;
  s.echo_incarnation = 1764139999000000001ull;
  s.echo_seq = (uint64_t{9} << 32) + 4;
  s.handing_over = which == 0;
  s.swap_request = which == 1;
  s.split_brain = which == 2;
  s.want_serve = which == 3;
  s.prefer_second = which == 4;
  return s;
}
}  // namespace

TEST_CASE("status codec: every PeerStatus field survives the wire, each flag alone", "[daemon]") {
  // One status per flag, so that a flag dropped or mapped onto another bit is caught.
  for (int which = 0; which < 6; ++which) {
    CAPTURE(which);
    const core::PeerStatus s = Sample(which);
    core::PeerStatus out;
    REQUIRE(DecodeStatus(EncodeStatus(s), &out));
    CHECK(out.from == s.from);
    CHECK(out.state == s.state);
    CHECK(out.readiness == s.readiness);
    CHECK(out.data == s.data);  // data state, generations, last role, split_brain, incarnation
    CHECK(out.incarnation == s.incarnation);
    CHECK(out.seq == s.seq);
    CHECK(out.echo_incarnation == s.echo_incarnation);
    CHECK(out.echo_seq == s.echo_seq);
    CHECK(out.handing_over == s.handing_over);
    CHECK(out.swap_request == s.swap_request);
    CHECK(out.split_brain == s.split_brain);
    CHECK(out.want_serve == s.want_serve);
    CHECK(out.prefer_second == s.prefer_second);
  }
}

TEST_CASE("status codec: empty names and garbage", "[daemon]") {
  core::PeerStatus s = Sample(5);
  s.data.current.author.clear();
  core::PeerStatus out;
  REQUIRE(DecodeStatus(EncodeStatus(s), &out));
  CHECK(out.data.current.author.empty());
  CHECK(out.data.base.author.empty());

  const std::string good = EncodeStatus(s);
  CHECK_FALSE(DecodeStatus(good.substr(0, good.size() - 1), &out));  // no newline
  CHECK_FALSE(DecodeStatus(good.substr(0, good.size() / 2) + "\n", &out));
  CHECK_FALSE(DecodeStatus(good.substr(0, good.size() - 1) + " 7\n", &out));  // trailing field
  CHECK_FALSE(DecodeStatus("HMST1" + good.substr(5), &out));                  // old format
  std::string bad_state = good;
  bad_state[bad_state.find(" n1 ") + 4] = '9';  // state 9
  CHECK_FALSE(DecodeStatus(bad_state, &out));
  CHECK_FALSE(DecodeStatus("", &out));
  CHECK_FALSE(DecodeStatus(std::string(2000, 'x') + "\n", &out));
}
