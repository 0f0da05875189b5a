// HeartbeatBridge over loopback (127.0.0.1 and 127.0.0.2 on lo; no root needed): two bridges carry
// the core's PeerStatus through the real HeartbeatService, repeat the last status while the state
// machine is busy, count packets, and report the peer lost when it goes silent.
#include "manager/daemon/heartbeat_bridge.h"

#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

using namespace hamirror::daemon;
namespace core = hamirror::manager::core;
namespace hb = hamirror::heartbeat;
using namespace std::chrono_literals;

namespace {

hb::HeartbeatConfig Config(const std::string& me, const std::string& peer, const std::string& my_addr,
                           const std::string& peer_addr, uint16_t port) {
  hb::HeartbeatConfig c;
  c.cluster_id = hb::ComputeClusterId("<cluster/>", "bridge-test");
  c.key = hb::HeartbeatKey("bridge-test-key-0123456789abcdef");
  c.local_node = me;
  c.peer_node = peer;
  c.networks.push_back({"lo", my_addr, peer_addr, port});
  c.pulse = 50ms;
  c.timeout = 400ms;
  return c;
}

// One side: makes statuses like the core would (seq +1 per send) unless `busy`; records what it gets.
struct Side {
  std::string name;
  std::atomic<bool> busy{false};
  std::atomic<uint64_t> seq{0};
  std::atomic<int> lost{0};
  std::mutex mu;
  std::condition_variable cv;
  std::vector<core::PeerStatus> got;

  bool Make(core::PeerStatus* out) {
    if (busy) return false;
    out->from = name;
    out->state = core::NodeState::kWait;
    out->incarnation = 77;
    out->seq = ++seq;
    out->want_serve = true;
    out->data.split_brain = true;
    return true;
  }
  void On(const core::PeerStatus& s) {
    std::lock_guard<std::mutex> lock(mu);
    got.push_back(s);
    cv.notify_all();
  }
  template <class Pred>
  bool WaitFor(Pred pred, std::chrono::milliseconds max) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, max, [&] { return pred(got); });
  }
  std::unique_ptr<HeartbeatBridge> Bridge(hb::HeartbeatConfig c) {
    return std::make_unique<HeartbeatBridge>(
        std::move(c), [this](const core::PeerStatus& s) { On(s); }, [this] { lost++; },
        [this](core::PeerStatus* out) { return Make(out); });
  }
};

}  // namespace

TEST_CASE("heartbeat bridge: statuses cross, busy repeats the last one, silence is a loss", "[daemon]") {
  const uint16_t port = static_cast<uint16_t>(41000 + getpid() % 20000);
  Side a, b;
  a.name = std::string("a");  // (a plain literal trips GCC 12's false -Wrestrict here)
  b.name = std::string("b");
  auto ba = a.Bridge(Config("a", "b", "127.0.0.1", "127.0.0.2", port));
  auto bb = b.Bridge(Config("b", "a", "127.0.0.2", "127.0.0.1", port));
  REQUIRE(ba->Start().ok());
  REQUIRE(bb->Start().ok());

  // Every field the core needs arrives (here: the flags and the persisted split-brain mark).
  REQUIRE(a.WaitFor([](const auto& g) { return g.size() >= 3; }, 3000ms));
  {
    std::lock_guard<std::mutex> lock(a.mu);
    const core::PeerStatus& s = a.got.back();
    CHECK(s.from == "b");
    CHECK(s.incarnation == 77);
    CHECK(s.want_serve);
    CHECK(s.data.split_brain);
  }

  // b's state machine is busy: packets keep coming, with b's last status (same seq) in them.
  b.busy = true;
  REQUIRE(a.WaitFor(
      [](const auto& g) {
        const size_t n = g.size();
        return n >= 3 && g[n - 1].seq == g[n - 2].seq && g[n - 2].seq == g[n - 3].seq;
      },
      3000ms));
  uint64_t last_seq;
  {
    std::lock_guard<std::mutex> lock(a.mu);
    last_seq = a.got.back().seq;
  }
  CHECK(a.lost == 0);
  b.busy = false;
  REQUIRE(a.WaitFor([&](const auto& g) { return g.back().seq > last_seq; }, 3000ms));

  auto nets = ba->Networks();
  REQUIRE(nets.size() == 1);
  CHECK(nets[0].name == "lo");
  CHECK(nets[0].up);
  CHECK(nets[0].received > 0);
  CHECK(nets[0].sent > 0);
  CHECK(nets[0].last_seen_ms_ago >= 0);
  CHECK(ba->drops().total() == 0);
  CHECK(ba->bad_payloads() == 0);

  // b goes silent: a reports the loss (timeout 400 ms; bounded wait).
  bb->Stop();
  const auto t0 = std::chrono::steady_clock::now();
  while (a.lost == 0 && std::chrono::steady_clock::now() - t0 < 3s) std::this_thread::sleep_for(20ms);
  CHECK(a.lost == 1);
  ba->Stop();
}
