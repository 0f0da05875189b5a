#include "manager/heartbeat/liveness.h"

#include <algorithm>

namespace hamirror::heartbeat {

Liveness::Liveness(size_t networks, Clock::duration timeout, Clock::time_point start)
    : nets_(networks), timeout_(timeout), start_(start) {}

void Liveness::OnPacket(size_t network, Clock::time_point now, std::vector<Change>* changes) {
  Net& net = nets_.at(network);
  net.last_seen = now;
  if (!net.up) {
    net.up = true;
    changes->push_back({Change::Kind::kNetworkUp, network});
  }
  if (!peer_alive_) {
    peer_alive_ = true;
    lost_reported_ = false;
    changes->push_back({Change::Kind::kPeerAlive, 0});
  }
}

void Liveness::Tick(Clock::time_point now, std::vector<Change>* changes) {
  for (size_t i = 0; i < nets_.size(); ++i) {
    Net& net = nets_[i];
    if (net.up && now - net.last_seen >= timeout_) {
      net.up = false;
      changes->push_back({Change::Kind::kNetworkDown, i});
    }
  }
  const bool any_up = std::any_of(nets_.begin(), nets_.end(), [](const Net& n) { return n.up; });
  if (any_up) return;
  if (peer_alive_) {
    peer_alive_ = false;
    lost_reported_ = true;
    changes->push_back({Change::Kind::kPeerLost, 0});
  } else if (!lost_reported_ && now - start_ >= timeout_) {
    lost_reported_ = true;
    changes->push_back({Change::Kind::kPeerLost, 0});
  }
}

Clock::time_point Liveness::NextDeadline() const {
  Clock::time_point next = Clock::time_point::max();
  for (const Net& net : nets_) {
    if (net.up) next = std::min(next, net.last_seen + timeout_);
  }
  if (!peer_alive_ && !lost_reported_) next = std::min(next, start_ + timeout_);
  return next;
}

}  // namespace hamirror::heartbeat
