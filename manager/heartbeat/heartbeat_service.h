// HeartbeatService: sends a heartbeat to the peer on every configured network each `pulse`, receives
// the peer's, and reports what it sees. One UDP socket per network, bound to this node's address on
// that network (IP_FREEBIND, so a network whose address is not up yet does not stop the daemon).
//
// Threading: Start() creates the sockets in the CALLER's network namespace and starts one service
// thread; every listener callback runs on that thread, one at a time, in order. Callbacks must return
// quickly and must not call Stop(). SetLocalSummary() and the counters are safe from any thread.
//
// Replay protection: the sequence number grows with every packet sent (on any network); the receiver
// keeps one ReplayFilter per network. A recorded packet cannot be replayed on its own network; it could
// at most be moved to another network whose newer packets were lost, which only makes that network
// look up while the peer really is alive.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/status.h"
#include "manager/heartbeat/heartbeat_key.h"
#include "manager/heartbeat/heartbeat_packet.h"
#include "manager/heartbeat/liveness.h"

namespace hamirror::heartbeat {

inline constexpr uint16_t kDefaultHeartbeatPort = 4890;

struct NetworkEndpoint {
  std::string name;                       // <lan name="..."> from cluster.xml, used in reports and logs
  std::string local_addr;                 // this node's numeric IPv4/IPv6 address on that lan
  std::string peer_addr;                  // the peer's numeric address on that lan
  uint16_t port = kDefaultHeartbeatPort;  // same port on both nodes
};

struct HeartbeatConfig {
  uint64_t cluster_id = 0;  // ComputeClusterId(cluster.xml, module)
  HeartbeatKey key;
  std::string local_node;  // names as in cluster.xml, at most kMaxNodeName bytes
  std::string peer_node;
  std::vector<NetworkEndpoint> networks;  // at least one
  std::chrono::milliseconds pulse{700};
  std::chrono::milliseconds timeout{30000};
};

// Why received datagrams were dropped (cumulative).
struct DropCounters {
  uint64_t garbage = 0;        // truncated, bad magic/version/lengths
  uint64_t wrong_cluster = 0;  // another cluster id
  uint64_t bad_tag = 0;        // authentication failed (forged, or another key)
  uint64_t wrong_node = 0;     // authentic but not from our peer to us
  uint64_t replayed = 0;       // authentic but old (incarnation, sequence)
  uint64_t total() const { return garbage + wrong_cluster + bad_tag + wrong_node + replayed; }
};

struct NetworkCounters {
  uint64_t sent = 0;
  uint64_t send_errors = 0;  // e.g. ENETUNREACH while the link is down
  uint64_t accepted = 0;
};

class HeartbeatListener {
 public:
  virtual ~HeartbeatListener() = default;
  // Every accepted packet: "heartbeat seen on network `network` with state `summary`" (and the
  // sender's opaque payload). The same pulse arrives once per network.
  virtual void OnHeartbeat(size_t /*network*/, const std::string& /*network_name*/,
                           const PeerSummary& /*summary*/, std::string_view /*payload*/) {}
  // Called before every send (pulse or immediate). *summary and *payload hold the last values set
  // (SetLocalSummary/SetLocalPayload) or written here; what this writes is sent and kept. Lets the
  // daemon put a fresh MakeHeartbeat(now) in every packet.
  virtual void BeforeSend(PeerSummary* /*summary*/, std::string* /*payload*/) {}
  virtual void OnNetworkUp(size_t /*network*/, const std::string& /*network_name*/) {}
  // No packet on this network for `timeout` (the peer may still be alive on another one).
  virtual void OnNetworkDown(size_t /*network*/, const std::string& /*network_name*/) {}
  // First packet after start or after a loss.
  virtual void OnPeerAlive() {}
  // All networks silent for `timeout`, or nothing received within `timeout` of Start(). Edge: once
  // per loss.
  virtual void OnPeerLost() {}
};

class HeartbeatService {
 public:
  // `listener` must outlive the service.
  HeartbeatService(HeartbeatConfig config, HeartbeatListener* listener);
  ~HeartbeatService();  // Stop()
  HeartbeatService(const HeartbeatService&) = delete;
  HeartbeatService& operator=(const HeartbeatService&) = delete;

  // Validates the configuration, opens the sockets (in the caller's network namespace) and starts
  // the thread. Sends the first heartbeat at once.
  Status Start();
  // Stops the thread and closes the sockets (counters stay readable). Idempotent; Start() may follow.
  void Stop();

  // What this node advertises. Thread-safe. A change is sent at once rather than at the next pulse,
  // so the peer learns about state changes without waiting.
  void SetLocalSummary(const PeerSummary& summary);
  // Opaque bytes carried in every packet (at most kMaxPayload; longer is refused with false).
  // Thread-safe; a change is sent at once.
  bool SetLocalPayload(std::string payload);
  // Sends a heartbeat on every network now (e.g. the state machine's ActSendStatus). Thread-safe.
  void SendNow();

  DropCounters drops() const;
  NetworkCounters network_counters(size_t network) const;
  bool peer_alive() const { return peer_alive_.load(); }

 private:
  struct Net;
  void Run();
  void SendAll();
  void Receive(size_t index);
  void Dispatch(std::vector<Liveness::Change>* changes);

  const HeartbeatConfig config_;
  HeartbeatListener* const listener_;
  std::vector<std::unique_ptr<Net>> nets_;
  int wake_fd_ = -1;  // eventfd: stop request, new local summary/payload, SendNow
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> peer_alive_{false};

  void Wake();

  std::mutex mu_;  // guards local_summary_, local_payload_, send_now_
  PeerSummary local_summary_;
  std::string local_payload_;
  bool send_now_ = false;

  // Sender state (service thread only).
  uint64_t incarnation_ = 0;
  uint64_t sequence_ = 0;
  struct Accepted {
    size_t network;
    PeerSummary summary;
    std::string payload;
  };
  std::vector<Accepted> pending_;  // accepted packets of one poll round

  std::atomic<uint64_t> drop_garbage_{0}, drop_wrong_cluster_{0}, drop_bad_tag_{0}, drop_wrong_node_{0},
      drop_replayed_{0};
};

}  // namespace hamirror::heartbeat
