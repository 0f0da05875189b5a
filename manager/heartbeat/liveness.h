// Pure liveness bookkeeping for one peer over several heartbeat networks, driven by an injected clock.
// A network is up while a valid packet arrived on it within `timeout`; the peer is alive while at
// least one network is up, and lost only when ALL networks have been silent for `timeout`.
// At start nothing has been seen: the peer is reported lost once `timeout` has passed since Start,
// so the state machine can leave WAIT when the other node never shows up.
#pragma once

#include <chrono>
#include <cstddef>
#include <vector>

namespace hamirror::heartbeat {

using Clock = std::chrono::steady_clock;

class Liveness {
 public:
  struct Change {
    enum class Kind { kNetworkUp, kNetworkDown, kPeerAlive, kPeerLost } kind;
    size_t network = 0;  // for kNetworkUp/kNetworkDown
  };

  Liveness(size_t networks, Clock::duration timeout, Clock::time_point start);

  // A valid packet arrived on `network`. Appends resulting edges (network up, peer alive) to *changes.
  void OnPacket(size_t network, Clock::time_point now, std::vector<Change>* changes);
  // Appends edges caused by the passage of time (networks down, peer lost).
  void Tick(Clock::time_point now, std::vector<Change>* changes);
  // When the next Tick can produce an edge (Clock::time_point::max() if none pending).
  Clock::time_point NextDeadline() const;

  bool peer_alive() const { return peer_alive_; }
  bool network_up(size_t network) const { return nets_[network].up; }

 private:
  struct Net {
    bool up = false;
    Clock::time_point last_seen{};
  };
  std::vector<Net> nets_;
  Clock::duration timeout_;
  Clock::time_point start_;
  bool peer_alive_ = false;
  bool lost_reported_ = false;  // "lost" is an edge: reported once per loss, and once at start
};

}  // namespace hamirror::heartbeat
