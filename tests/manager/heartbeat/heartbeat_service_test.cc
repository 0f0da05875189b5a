// HeartbeatService over loopback (127.0.0.1 and 127.0.0.2 on lo; no root needed): two services find
// each other and exchange summaries; crafted datagrams are dropped and counted by reason.
#include "manager/heartbeat/heartbeat_service.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <thread>

#include "tests/manager/heartbeat/recording_listener.h"

namespace hb = hamirror::heartbeat;
using namespace std::chrono_literals;
using What = hb::testing::RecordingListener::What;

namespace {

uint16_t PickPort() {
  // Distinct per process so parallel test runs do not collide.
  return static_cast<uint16_t>(20000 + (getpid() % 20000));
}

hb::HeartbeatConfig Config(const std::string& me, const std::string& peer, const std::string& my_addr,
                           const std::string& peer_addr, uint16_t port) {
  hb::HeartbeatConfig c;
  c.cluster_id = hb::ComputeClusterId("<cluster/>", "test");
  c.key = hb::HeartbeatKey("loopback-test-key-0123456789");
  c.local_node = me;
  c.peer_node = peer;
  c.networks.push_back({"default", my_addr, peer_addr, port});
  c.pulse = 50ms;
  c.timeout = 400ms;
  return c;
}

// Sends raw bytes to addr:port from a throwaway socket.
void SendRaw(const std::string& addr, uint16_t port, const uint8_t* data, size_t len) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  inet_pton(AF_INET, addr.c_str(), &to.sin_addr);
  REQUIRE(sendto(fd, data, len, 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)) ==
          static_cast<ssize_t>(len));
  close(fd);
}

template <typename Pred>
bool Await(Pred pred, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

}  // namespace

TEST_CASE("two heartbeat services on loopback see each other and exchange state", "[heartbeat]") {
  const uint16_t port = PickPort();
  hb::testing::RecordingListener la, lb;
  hb::HeartbeatService a(Config("a", "b", "127.0.0.1", "127.0.0.2", port), &la);
  hb::HeartbeatService b(Config("b", "a", "127.0.0.2", "127.0.0.1", port), &lb);
  REQUIRE(a.Start().ok());
  REQUIRE(b.Start().ok());
  REQUIRE(la.WaitFor(0, What::kPeerAlive, 2s) >= 0);
  REQUIRE(lb.WaitFor(0, What::kPeerAlive, 2s) >= 0);

  const hb::PeerSummary s{
      .state = 4, .sub_state = 2, .data_generation = 77, .up_to_date = true, .last_primary = true};
  const size_t mark = la.size();
  const auto t0 = hb::Clock::now();
  b.SetLocalSummary(s);
  const int i = la.WaitFor(
      mark, [&](const auto& e) { return e.what == What::kHeartbeat && e.summary == s; }, 2s);
  REQUIRE(i >= 0);
  // Sent at once, not at the next pulse.
  CHECK(la.at(i).at - t0 < 40ms);

  // Opaque payloads: set once, or refreshed before every send.
  REQUIRE(b.SetLocalPayload("status-v1"));
  CHECK_FALSE(b.SetLocalPayload(std::string(hb::kMaxPayload + 1, 'x')));
  REQUIRE(la.WaitFor(
              mark, [](const auto& e) { return e.what == What::kHeartbeat && e.payload == "status-v1"; },
              2s) >= 0);
  std::atomic<int> counter{0};
  lb.SetBeforeSend(
      [&](std::string* payload) { *payload = std::string("fresh-").append(std::to_string(++counter)); });
  b.SendNow();
  REQUIRE(la.WaitFor(
              mark, [](const auto& e) { return e.what == What::kHeartbeat && e.payload == "fresh-3"; }, 2s) >=
          0);

  // b stops: a reports the loss within timeout (+ one pulse of scheduling slack).
  b.Stop();
  const auto stopped = hb::Clock::now();
  const int lost = la.WaitFor(0, What::kPeerLost, 2s);
  REQUIRE(lost >= 0);
  const auto delay = la.at(lost).at - stopped;
  CHECK(delay >= 400ms - 50ms - 5ms);
  CHECK(delay <= 400ms + 150ms);
  CHECK(a.drops().total() == 0);
}

TEST_CASE("a peer that never answers is reported lost once after timeout", "[heartbeat]") {
  hb::testing::RecordingListener la;
  hb::HeartbeatService a(Config("a", "b", "127.0.0.1", "127.0.0.2", PickPort() + 1), &la);
  const auto t0 = hb::Clock::now();
  REQUIRE(a.Start().ok());
  const int lost = la.WaitFor(0, What::kPeerLost, 2s);
  REQUIRE(lost >= 0);
  CHECK(la.at(lost).at - t0 >= 400ms);
  std::this_thread::sleep_for(300ms);  // observation window: no second "lost" without a new loss
  CHECK(la.Count(0, What::kPeerLost) == 1);
  CHECK(a.network_counters(0).sent >= 6);
}

TEST_CASE("heartbeat service drops garbage, other clusters, forgeries, wrong nodes and replays",
          "[heartbeat]") {
  const uint16_t port = PickPort() + 2;
  hb::testing::RecordingListener la;
  const hb::HeartbeatConfig cfg = Config("a", "b", "127.0.0.1", "127.0.0.2", port);
  hb::HeartbeatService a(cfg, &la);
  REQUIRE(a.Start().ok());

  hb::HeartbeatPacket p;
  p.cluster_id = cfg.cluster_id;
  p.incarnation = 1000;
  p.sequence = 1;
  p.sender = std::string("b");
  p.receiver = std::string("a");
  uint8_t buf[hb::kMaxPacketSize];
  auto send = [&](const hb::HeartbeatPacket& pk, const hb::HeartbeatKey& key) {
    const size_t n = hb::EncodeHeartbeat(pk, key, buf, sizeof(buf));
    REQUIRE(n > 0);
    SendRaw("127.0.0.1", port, buf, n);
  };

  // A genuine packet is accepted, the same packet again is a replay.
  send(p, cfg.key);
  REQUIRE(la.WaitFor(0, What::kHeartbeat, 2s) >= 0);
  send(p, cfg.key);
  REQUIRE(Await([&] { return a.drops().replayed == 1; }, 2s));

  const uint8_t junk[] = {1, 2, 3, 4, 5};
  SendRaw("127.0.0.1", port, junk, sizeof(junk));
  REQUIRE(Await([&] { return a.drops().garbage == 1; }, 2s));

  hb::HeartbeatPacket other = p;
  other.sequence = 2;
  other.cluster_id ^= 1;
  send(other, cfg.key);
  REQUIRE(Await([&] { return a.drops().wrong_cluster == 1; }, 2s));

  other = p;
  other.sequence = 3;
  send(other, hb::HeartbeatKey("not-the-cluster-key-at-all"));
  REQUIRE(Await([&] { return a.drops().bad_tag == 1; }, 2s));

  other = p;
  other.sequence = 4;
  other.sender = std::string("c");
  send(other, cfg.key);
  other.sender = std::string("b");
  other.receiver = std::string("b");
  send(other, cfg.key);
  REQUIRE(Await([&] { return a.drops().wrong_node == 2; }, 2s));

  // Older incarnation (recorded before a restart) is a replay too; newer sequence is fine.
  other = p;
  other.incarnation = 999;
  other.sequence = 50;
  send(other, cfg.key);
  REQUIRE(Await([&] { return a.drops().replayed == 2; }, 2s));
  other = p;
  other.sequence = 5;
  send(other, cfg.key);
  REQUIRE(Await([&] { return a.network_counters(0).accepted == 2; }, 2s));

  const hb::DropCounters d = a.drops();
  CHECK(d.garbage == 1);
  CHECK(d.wrong_cluster == 1);
  CHECK(d.bad_tag == 1);
  CHECK(d.wrong_node == 2);
  CHECK(d.replayed == 2);
  CHECK(la.Count(0, What::kHeartbeat) == 2);
}

TEST_CASE("heartbeat service rejects bad configuration", "[heartbeat]") {
  hb::testing::RecordingListener l;
  auto cfg = Config("a", "b", "127.0.0.1", "127.0.0.2", PickPort() + 3);
  SECTION("no network") { cfg.networks.clear(); }
  SECTION("bad address") { cfg.networks[0].local_addr = "not-an-address"; }
  SECTION("mixed families") { cfg.networks[0].peer_addr = "::1"; }
  SECTION("timeout not above pulse") { cfg.timeout = cfg.pulse; }
  SECTION("empty key") { cfg.key = hb::HeartbeatKey(); }
  hb::HeartbeatService s(cfg, &l);
  const hamirror::Status st = s.Start();
  CHECK(st.code() == hamirror::Status::Code::kInvalidArgument);
}
