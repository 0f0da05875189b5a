// HeartbeatBridge: connects the heartbeat module (manager/heartbeat HeartbeatService: one UDP socket
// per cluster.xml heartbeat network, authentication, replay filter, per-network liveness) to the core
// state machine. Each packet carries the core's full PeerStatus as its opaque payload (status_codec.h).
//
// Threading: the HeartbeatListener callbacks run on the service's thread. Received statuses and peer
// loss are handed to callbacks that must only queue events. Before each send the bridge asks
// `make_status` for a fresh status; it returns false when the state machine is busy (the daemon's
// event loop is in the middle of a step), and the previous payload is sent again: the link stays up
// and the peer's core drops the repeated seq as a duplicate.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "manager/core/node_machine.h"
#include "manager/heartbeat/heartbeat_service.h"

namespace hamirror::daemon {

struct HeartbeatNetworkStatus {
  std::string name;
  std::string peer_addr;
  bool up = false;
  int64_t last_seen_ms_ago = -1;  // -1: never
  uint64_t received = 0;          // accepted packets
  uint64_t sent = 0;
  uint64_t send_errors = 0;
};

class HeartbeatBridge : public heartbeat::HeartbeatListener {
 public:
  using OnStatus = std::function<void(const manager::core::PeerStatus&)>;
  using OnLost = std::function<void()>;
  using MakeStatus = std::function<bool(manager::core::PeerStatus*)>;

  HeartbeatBridge(heartbeat::HeartbeatConfig config, OnStatus on_status, OnLost on_lost,
                  MakeStatus make_status);
  ~HeartbeatBridge() override;  // Stop()

  Status Start();
  void Stop();
  void SendNow() { service_.SendNow(); }  // thread-safe

  std::vector<HeartbeatNetworkStatus> Networks() const;
  heartbeat::DropCounters drops() const { return service_.drops(); }
  uint64_t bad_payloads() const;  // authentic packets whose payload was not a status from the peer

  // heartbeat::HeartbeatListener (service thread)
  void OnHeartbeat(size_t network, const std::string& network_name, const heartbeat::PeerSummary& summary,
                   std::string_view payload) override;
  void BeforeSend(heartbeat::PeerSummary* summary, std::string* payload) override;
  void OnNetworkUp(size_t network, const std::string& network_name) override;
  void OnNetworkDown(size_t network, const std::string& network_name) override;
  void OnPeerLost() override;

 private:
  const heartbeat::HeartbeatConfig config_;
  const OnStatus on_status_;
  const OnLost on_lost_;
  const MakeStatus make_status_;
  mutable std::mutex mu_;  // guards nets_, bad_payloads_
  struct Net {
    bool up = false;
    bool seen = false;
    std::chrono::steady_clock::time_point last_seen{};
  };
  std::vector<Net> nets_;
  uint64_t bad_payloads_ = 0;
  heartbeat::HeartbeatService service_;  // last: stopped (destroyed) before the members it calls back into
};

}  // namespace hamirror::daemon
