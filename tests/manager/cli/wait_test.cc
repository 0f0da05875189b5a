// The CLI's waits (`verify`, `resync --wait`, `second --wait`) over scripted states: when they end,
// with which exit code, and what they print.
#include "manager/cli/wait.h"

#include <catch2/catch.hpp>
#include <sstream>
#include <vector>

using namespace hamirror;
using namespace std::chrono_literals;

namespace {

proto::StateReply WithFs(uint64_t verify_id, const std::string& verify_phase, uint64_t differences,
                         uint64_t target_id, const std::string& target_phase, proto::NodeState state,
                         proto::SubState sub) {
  proto::StateReply r;
  r.mutable_local()->set_state(state);
  r.mutable_local()->set_sub_state(sub);
  auto* f = r.add_fs();
  f->set_dir("/data");
  f->mutable_verify()->set_id(verify_id);
  f->mutable_verify()->set_phase(verify_phase);
  f->mutable_verify()->set_differences(differences);
  f->mutable_verify()->set_bytes_done(1 << 20);
  f->mutable_verify()->set_bytes_total(2 << 20);
  if (differences > 0) f->mutable_verify()->add_difference_list("f: bytes 0..65535 differ");
  f->mutable_resync_target()->set_id(target_id);
  f->mutable_resync_target()->set_phase(target_phase);
  return r;
}

// A fetch that plays `states` in order, then repeats the last one.
cli::FetchState Script(std::vector<proto::StateReply> states) {
  auto i = std::make_shared<size_t>(0);
  return [states, i](proto::StateReply* out) {
    *out = states[std::min(*i, states.size() - 1)];
    ++*i;
    return true;
  };
}

cli::WaitOptions Fast() {
  cli::WaitOptions o;
  o.poll = 1ms;
  o.timeout = 5s;
  return o;
}

}  // namespace

TEST_CASE("wait: verify ends when a new verify ended, exit 0 without differences, 1 with") {
  const auto before = WithFs(7, "done", 0, 0, "none", proto::NODE_STATE_PRIM, proto::SUB_STATE_READY);
  std::ostringstream out;
  SECTION("identical") {
    auto fetch =
        Script({before, WithFs(8, "running", 0, 0, "none", proto::NODE_STATE_PRIM, proto::SUB_STATE_READY),
                WithFs(8, "done", 0, 0, "none", proto::NODE_STATE_PRIM, proto::SUB_STATE_READY)});
    CHECK(cli::WaitVerify(fetch, before, out, Fast()) == cli::kWaitOk);
    CHECK(out.str().find("0 differences") != std::string::npos);
  }
  SECTION("differences are listed and make the exit code 1") {
    auto fetch = Script({WithFs(8, "done", 1, 0, "none", proto::NODE_STATE_PRIM, proto::SUB_STATE_READY)});
    CHECK(cli::WaitVerify(fetch, before, out, Fast()) == cli::kWaitFailed);
    CHECK(out.str().find("f: bytes 0..65535 differ") != std::string::npos);
  }
  SECTION("the old verify's result is not taken for the new one") {
    auto fetch = Script({before});                                                // never a new id
    CHECK(cli::WaitVerify(fetch, before, out, Fast()) == cli::kWaitUnreachable);  // timeout
  }
  SECTION("a verify that failed exits 1") {
    auto fetch = Script({WithFs(8, "failed", 0, 0, "none", proto::NODE_STATE_PRIM, proto::SUB_STATE_READY)});
    CHECK(cli::WaitVerify(fetch, before, out, Fast()) == cli::kWaitFailed);
  }
  SECTION("the daemon going away ends the wait") {
    cli::FetchState gone = [](proto::StateReply*) { return false; };
    CHECK(cli::WaitVerify(gone, before, out, Fast()) == cli::kWaitUnreachable);
  }
}

TEST_CASE("wait: second --wait ends when a new resync into this node is done and it is SECOND ready") {
  const auto before = WithFs(0, "idle", 0, 3, "done", proto::NODE_STATE_SECOND, proto::SUB_STATE_READY);
  std::ostringstream out;
  SECTION("done") {
    auto fetch =
        Script({WithFs(0, "idle", 0, 3, "done", proto::NODE_STATE_SECOND, proto::SUB_STATE_TRANSIENT),
                WithFs(0, "idle", 0, 4, "running", proto::NODE_STATE_SECOND, proto::SUB_STATE_TRANSIENT),
                WithFs(0, "idle", 0, 4, "done", proto::NODE_STATE_SECOND, proto::SUB_STATE_TRANSIENT),
                WithFs(0, "idle", 0, 4, "done", proto::NODE_STATE_SECOND, proto::SUB_STATE_READY)});
    CHECK(cli::WaitSecondReady(fetch, before, out, Fast()) == cli::kWaitOk);
    CHECK(out.str().find("resync into this node: running") != std::string::npos);
  }
  SECTION("the previous resync's done does not count") {
    auto fetch = Script({before});
    CHECK(cli::WaitSecondReady(fetch, before, out, Fast()) == cli::kWaitUnreachable);
  }
  SECTION("a failed resync ends the wait with 1") {
    auto fetch =
        Script({WithFs(0, "idle", 0, 4, "failed", proto::NODE_STATE_SECOND, proto::SUB_STATE_TRANSIENT)});
    CHECK(cli::WaitSecondReady(fetch, before, out, Fast()) == cli::kWaitFailed);
  }
  SECTION("leaving SECOND ends the wait with 1") {
    auto fetch =
        Script({WithFs(0, "idle", 0, 4, "running", proto::NODE_STATE_ALONE, proto::SUB_STATE_READY)});
    CHECK(cli::WaitSecondReady(fetch, before, out, Fast()) == cli::kWaitFailed);
  }
}
