// PeerLink: UDP transport of the status datagrams (status_codec.h) on every heartbeat network.
// One socket per network bound to this node's address there (IP_FREEBIND: a missing address does
// not stop the daemon); a receiver thread authenticates datagrams, drops replays and hands each new
// status to a callback. Per-network last-seen times feed `hamirror state -v`.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "manager/daemon/status_codec.h"

namespace hamirror::daemon {

struct LinkNetwork {
  std::string name;
  std::string local_addr;
  std::string peer_addr;
};

struct LinkNetworkStatus {
  std::string name;
  std::string peer_addr;
  bool up = false;
  int64_t last_seen_ms_ago = -1;  // -1: never
};

class PeerLink {
 public:
  using OnStatus = std::function<void(const manager::core::PeerStatus&)>;

  PeerLink(std::vector<LinkNetwork> nets, int port, uint64_t cluster_id, std::string key, std::string self,
           std::string peer, std::chrono::milliseconds timeout, OnStatus on_status);
  ~PeerLink();  // Stop()
  Status Start();
  void Stop();

  // Sends `status` on every network (errors such as ENETUNREACH only counted).
  void Send(const manager::core::PeerStatus& status);

  std::vector<LinkNetworkStatus> Networks() const;
  uint64_t dropped() const { return dropped_.load(); }

 private:
  void Run();

  struct Net {
    LinkNetwork cfg;
    int fd = -1;
    std::chrono::steady_clock::time_point last_seen{};
    bool seen = false;
  };
  std::vector<Net> nets_;
  const int port_;
  const uint64_t cluster_id_;
  const std::string key_;
  const std::string self_, peer_;
  const std::chrono::milliseconds timeout_;
  const OnStatus on_status_;
  mutable std::mutex mu_;  // guards nets_[i].last_seen/seen
  int wake_fd_ = -1;
  std::thread thread_;
  std::atomic<uint64_t> dropped_{0};
  // Receiver thread only: newest (incarnation, seq) accepted from the peer.
  uint64_t peer_inc_ = 0, peer_seq_ = 0;
};

}  // namespace hamirror::daemon
