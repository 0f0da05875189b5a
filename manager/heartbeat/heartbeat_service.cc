#include "manager/heartbeat/heartbeat_service.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "common/log.h"

namespace hamirror::heartbeat {

struct HeartbeatService::Net {
  int fd = -1;
  sockaddr_storage peer{};
  socklen_t peer_len = 0;
  ReplayFilter replay;
  std::atomic<uint64_t> sent{0}, send_errors{0}, accepted{0};
  ~Net() {
    if (fd >= 0) ::close(fd);
  }
};

namespace {

// Parses a numeric address into a sockaddr with the given port.
bool ParseAddr(const std::string& addr, uint16_t port, sockaddr_storage* out, socklen_t* len) {
  std::memset(out, 0, sizeof(*out));
  auto* v4 = reinterpret_cast<sockaddr_in*>(out);
  if (inet_pton(AF_INET, addr.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    *len = sizeof(sockaddr_in);
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(out);
  if (inet_pton(AF_INET6, addr.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    *len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

uint64_t WallClockNs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace

HeartbeatService::HeartbeatService(HeartbeatConfig config, HeartbeatListener* listener)
    : config_(std::move(config)), listener_(listener) {
  // Created here, not in Start(), so SetLocal*()/SendNow() from other threads never race with it.
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

HeartbeatService::~HeartbeatService() {
  Stop();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

Status HeartbeatService::Start() {
  if (thread_.joinable()) return Status::Internal("heartbeat service already started");
  if (config_.networks.empty()) return Status::InvalidArgument("heartbeat: no network configured");
  if (config_.local_node.empty() || config_.peer_node.empty() || config_.local_node.size() > kMaxNodeName ||
      config_.peer_node.size() > kMaxNodeName) {
    return Status::InvalidArgument("heartbeat: node names must have 1.." + std::to_string(kMaxNodeName) +
                                   " bytes");
  }
  if (config_.key.empty()) return Status::InvalidArgument("heartbeat: empty cluster key");
  if (config_.pulse.count() <= 0 || config_.timeout <= config_.pulse) {
    return Status::InvalidArgument("heartbeat: need 0 < pulse < timeout");
  }
  std::vector<std::unique_ptr<Net>> nets;
  for (const NetworkEndpoint& ep : config_.networks) {
    auto net = std::make_unique<Net>();
    sockaddr_storage local{};
    socklen_t local_len = 0;
    if (!ParseAddr(ep.local_addr, ep.port, &local, &local_len)) {
      return Status::InvalidArgument("heartbeat network " + ep.name + ": bad local address '" +
                                     ep.local_addr + "'");
    }
    if (!ParseAddr(ep.peer_addr, ep.port, &net->peer, &net->peer_len) ||
        net->peer.ss_family != local.ss_family) {
      return Status::InvalidArgument("heartbeat network " + ep.name + ": bad peer address '" + ep.peer_addr +
                                     "'");
    }
    net->fd = ::socket(local.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (net->fd < 0) return Status::FromErrno("heartbeat socket", errno);
    const int one = 1;
    setsockopt(net->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(net->fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof(one));
    const int tos = 0xc0;  // CS6 (network control): heartbeats should not queue behind replication
    if (local.ss_family == AF_INET) {
      setsockopt(net->fd, IPPROTO_IP, IP_TOS, &tos, sizeof(tos));
    } else {
      setsockopt(net->fd, IPPROTO_IPV6, IPV6_TCLASS, &tos, sizeof(tos));
    }
    if (::bind(net->fd, reinterpret_cast<sockaddr*>(&local), local_len) != 0) {
      return Status::FromErrno(
          "heartbeat network " + ep.name + ": bind " + ep.local_addr + ":" + std::to_string(ep.port), errno);
    }
    nets.push_back(std::move(net));
  }
  if (wake_fd_ < 0) return Status::Internal("heartbeat: eventfd could not be created");
  nets_ = std::move(nets);
  incarnation_ = WallClockNs();
  sequence_ = 0;
  stop_ = false;
  peer_alive_ = false;
  thread_ = std::thread([this] { Run(); });
  return Status::Ok();
}

void HeartbeatService::Stop() {
  if (!thread_.joinable()) return;
  stop_ = true;
  const uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof(one));
  thread_.join();
  uint64_t drain;
  (void)!::read(wake_fd_, &drain, sizeof(drain));
  // Sockets closed; the Net objects stay so their counters remain readable after Stop().
  for (auto& net : nets_) {
    ::close(net->fd);
    net->fd = -1;
  }
}

void HeartbeatService::Wake() {
  const uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof(one));
}

void HeartbeatService::SetLocalSummary(const PeerSummary& summary) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (summary == local_summary_) return;
    local_summary_ = summary;
    send_now_ = true;
  }
  Wake();
}

bool HeartbeatService::SetLocalPayload(std::string payload) {
  if (payload.size() > kMaxPayload) return false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (payload == local_payload_) return true;
    local_payload_ = std::move(payload);
    send_now_ = true;
  }
  Wake();
  return true;
}

void HeartbeatService::SendNow() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    send_now_ = true;
  }
  Wake();
}

DropCounters HeartbeatService::drops() const {
  DropCounters d;
  d.garbage = drop_garbage_.load();
  d.wrong_cluster = drop_wrong_cluster_.load();
  d.bad_tag = drop_bad_tag_.load();
  d.wrong_node = drop_wrong_node_.load();
  d.replayed = drop_replayed_.load();
  return d;
}

NetworkCounters HeartbeatService::network_counters(size_t network) const {
  NetworkCounters c;
  if (network >= nets_.size()) return c;
  c.sent = nets_[network]->sent.load();
  c.send_errors = nets_[network]->send_errors.load();
  c.accepted = nets_[network]->accepted.load();
  return c;
}

void HeartbeatService::SendAll() {
  HeartbeatPacket packet;
  packet.cluster_id = config_.cluster_id;
  packet.incarnation = incarnation_;
  packet.sender = config_.local_node;
  packet.receiver = config_.peer_node;
  {
    std::lock_guard<std::mutex> lock(mu_);
    packet.summary = local_summary_;
    packet.payload = local_payload_;
    send_now_ = false;
  }
  // Outside the lock: the listener may call SetLocal*() itself.
  const PeerSummary old_summary = packet.summary;
  const std::string old_payload = packet.payload;
  listener_->BeforeSend(&packet.summary, &packet.payload);
  if (packet.payload.size() > kMaxPayload) {
    HLOG_ERROR("heartbeat: payload of %zu bytes exceeds %zu, sent empty", packet.payload.size(), kMaxPayload);
    packet.payload.clear();
  }
  if (!(packet.summary == old_summary) || packet.payload != old_payload) {
    std::lock_guard<std::mutex> lock(mu_);
    local_summary_ = packet.summary;
    local_payload_ = packet.payload;
  }
  uint8_t buf[kMaxPacketSize];
  for (size_t i = 0; i < nets_.size(); ++i) {
    Net& net = *nets_[i];
    packet.sequence = ++sequence_;
    const size_t len = EncodeHeartbeat(packet, config_.key, buf, sizeof(buf));
    const ssize_t n =
        ::sendto(net.fd, buf, len, MSG_DONTWAIT, reinterpret_cast<const sockaddr*>(&net.peer), net.peer_len);
    if (n == static_cast<ssize_t>(len)) {
      net.sent.fetch_add(1);
    } else {
      // Expected while a link is down; counted, logged only at debug level to keep the log quiet.
      if (net.send_errors.fetch_add(1) == 0) {
        HLOG_WARN("heartbeat network %s: send to %s failed: %s (further failures counted silently)",
                  config_.networks[i].name.c_str(), config_.networks[i].peer_addr.c_str(),
                  std::strerror(errno));
      }
    }
  }
}

void HeartbeatService::Receive(size_t index) {
  Net& net = *nets_[index];
  uint8_t buf[kMaxPacketSize + 1];  // +1: an oversized datagram is detected, not silently truncated
  // Bounded drain: a flood on one network cannot starve the sender or the other networks.
  for (int i = 0; i < 64; ++i) {
    const ssize_t n = ::recv(net.fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n < 0) break;
    HeartbeatPacket packet;
    const DecodeError err =
        DecodeHeartbeat(buf, static_cast<size_t>(n), config_.cluster_id, config_.key, &packet);
    switch (err) {
      case DecodeError::kGarbage: drop_garbage_.fetch_add(1); continue;
      case DecodeError::kWrongCluster: drop_wrong_cluster_.fetch_add(1); continue;
      case DecodeError::kBadTag: drop_bad_tag_.fetch_add(1); continue;
      case DecodeError::kNone: break;
    }
    if (packet.sender != config_.peer_node || packet.receiver != config_.local_node) {
      drop_wrong_node_.fetch_add(1);
      continue;
    }
    if (!net.replay.Accept(packet.incarnation, packet.sequence)) {
      drop_replayed_.fetch_add(1);
      continue;
    }
    net.accepted.fetch_add(1);
    pending_.push_back({index, packet.summary, std::move(packet.payload)});
  }
}

void HeartbeatService::Dispatch(std::vector<Liveness::Change>* changes) {
  for (const Liveness::Change& c : *changes) {
    const std::string& name =
        c.kind == Liveness::Change::Kind::kNetworkUp || c.kind == Liveness::Change::Kind::kNetworkDown
            ? config_.networks[c.network].name
            : config_.peer_node;
    switch (c.kind) {
      case Liveness::Change::Kind::kNetworkUp:
        HLOG_INFO("heartbeat: network %s up (peer %s)", name.c_str(), config_.peer_node.c_str());
        listener_->OnNetworkUp(c.network, name);
        break;
      case Liveness::Change::Kind::kNetworkDown:
        HLOG_WARN("heartbeat: network %s silent for %lld ms", name.c_str(),
                  static_cast<long long>(config_.timeout.count()));
        listener_->OnNetworkDown(c.network, name);
        break;
      case Liveness::Change::Kind::kPeerAlive:
        HLOG_INFO("heartbeat: peer %s alive", name.c_str());
        peer_alive_ = true;
        listener_->OnPeerAlive();
        break;
      case Liveness::Change::Kind::kPeerLost:
        HLOG_WARN("heartbeat: peer %s lost: all networks silent for %lld ms", name.c_str(),
                  static_cast<long long>(config_.timeout.count()));
        peer_alive_ = false;
        listener_->OnPeerLost();
        break;
    }
  }
  changes->clear();
}

void HeartbeatService::Run() {
  const auto start = Clock::now();
  Liveness liveness(nets_.size(), config_.timeout, start);
  std::vector<Liveness::Change> changes;
  std::vector<pollfd> fds(nets_.size() + 1);
  for (size_t i = 0; i < nets_.size(); ++i) fds[i] = {nets_[i]->fd, POLLIN, 0};
  fds.back() = {wake_fd_, POLLIN, 0};
  Clock::time_point next_send = start;
  while (!stop_.load()) {
    Clock::time_point now = Clock::now();
    if (now >= next_send) {
      SendAll();
      // Keep the cadence, but never try to catch up with a burst after a stall.
      next_send += config_.pulse;
      if (next_send <= now) next_send = now + config_.pulse;
    }
    liveness.Tick(now, &changes);
    Dispatch(&changes);

    const Clock::time_point deadline = std::min(next_send, liveness.NextDeadline());
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1;
    const int timeout_ms = static_cast<int>(std::clamp<long long>(wait, 0, config_.pulse.count()));
    for (pollfd& p : fds) p.revents = 0;
    const int ready = ::poll(fds.data(), fds.size(), timeout_ms);
    if (ready <= 0) continue;  // timeout or EINTR: the loop re-checks the clock
    if (fds.back().revents & POLLIN) {
      uint64_t value;
      (void)!::read(wake_fd_, &value, sizeof(value));
      bool dirty;
      {
        std::lock_guard<std::mutex> lock(mu_);
        dirty = send_now_;
      }
      if (dirty && !stop_.load()) SendAll();
    }
    for (size_t i = 0; i < nets_.size(); ++i) {
      if (fds[i].revents & (POLLIN | POLLERR)) Receive(i);
    }
    now = Clock::now();
    for (const Accepted& a : pending_) {
      liveness.OnPacket(a.network, now, &changes);
      Dispatch(&changes);
      listener_->OnHeartbeat(a.network, config_.networks[a.network].name, a.summary, a.payload);
    }
    pending_.clear();
  }
}

}  // namespace hamirror::heartbeat
