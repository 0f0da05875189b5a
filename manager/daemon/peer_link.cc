#include "manager/daemon/peer_link.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/log.h"

namespace hamirror::daemon {
namespace {

bool MakeAddr(const std::string& addr, int port, sockaddr_storage* ss, socklen_t* len) {
  *ss = {};
  auto* v4 = reinterpret_cast<sockaddr_in*>(ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(ss);
  if (inet_pton(AF_INET, addr.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    *len = sizeof *v4;
    return true;
  }
  if (inet_pton(AF_INET6, addr.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    *len = sizeof *v6;
    return true;
  }
  return false;
}

}  // namespace

PeerLink::PeerLink(std::vector<LinkNetwork> nets, int port, uint64_t cluster_id, std::string key,
                   std::string self, std::string peer, std::chrono::milliseconds timeout, OnStatus on_status)
    : port_(port),
      cluster_id_(cluster_id),
      key_(std::move(key)),
      self_(std::move(self)),
      peer_(std::move(peer)),
      timeout_(timeout),
      on_status_(std::move(on_status)) {
  for (auto& n : nets) nets_.push_back(Net{std::move(n)});
}

PeerLink::~PeerLink() { Stop(); }

Status PeerLink::Start() {
  for (auto& n : nets_) {
    sockaddr_storage ss;
    socklen_t len;
    if (!MakeAddr(n.cfg.local_addr, port_, &ss, &len))
      return Status::InvalidArgument("network " + n.cfg.name + ": bad local address " + n.cfg.local_addr);
    n.fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (n.fd < 0) return Status::FromErrno("socket", errno);
    int one = 1;
    setsockopt(n.fd, SOL_IP, IP_FREEBIND, &one, sizeof one);
    setsockopt(n.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(n.fd, reinterpret_cast<sockaddr*>(&ss), len) != 0)
      return Status::FromErrno("bind " + n.cfg.local_addr + ":" + std::to_string(port_), errno);
  }
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  thread_ = std::thread([this] { Run(); });
  return Status::Ok();
}

void PeerLink::Stop() {
  if (thread_.joinable()) {
    uint64_t one = 1;
    ssize_t n = write(wake_fd_, &one, sizeof one);
    (void)n;
    thread_.join();
  }
  for (auto& n : nets_) {
    if (n.fd >= 0) close(n.fd);
    n.fd = -1;
  }
  if (wake_fd_ >= 0) close(wake_fd_);
  wake_fd_ = -1;
}

void PeerLink::Send(const manager::core::PeerStatus& status) {
  StatusDatagram d;
  d.cluster_id = cluster_id_;
  d.to = peer_;
  d.status = status;  // carries the core's incarnation: the peer's core resets its seq filter on a new one
  const std::string bytes = EncodeStatus(d, key_);
  for (auto& n : nets_) {
    if (n.fd < 0) continue;
    sockaddr_storage ss;
    socklen_t len;
    if (!MakeAddr(n.cfg.peer_addr, port_, &ss, &len)) continue;
    // Errors (link down, no route) are expected during failures: the peer simply stops hearing us.
    ssize_t r = sendto(n.fd, bytes.data(), bytes.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&ss), len);
    (void)r;
  }
}

void PeerLink::Run() {
  std::vector<pollfd> fds;
  for (auto& n : nets_) fds.push_back({n.fd, POLLIN, 0});
  fds.push_back({wake_fd_, POLLIN, 0});
  char buf[2048];
  for (;;) {
    int r = poll(fds.data(), fds.size(), 1000);
    if (r < 0 && errno != EINTR) return;
    if (fds.back().revents) return;
    for (size_t i = 0; i + 1 < fds.size(); ++i) {
      if (!(fds[i].revents & POLLIN)) continue;
      for (int k = 0; k < 64; ++k) {  // bounded drain per wake-up
        ssize_t n = recv(fds[i].fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n <= 0) break;
        StatusDatagram d;
        if (DecodeStatus(std::string_view(buf, n), key_, cluster_id_, &d) != StatusDecode::kOk ||
            d.to != self_ || d.status.from != peer_) {
          dropped_++;
          continue;
        }
        // Replays of recorded datagrams are dropped; the same status on several networks is
        // accepted once for the core but refreshes each network's liveness.
        // The daemon's incarnation is its start time (ns since epoch), so an older one is a replay.
        const uint64_t inc = d.status.incarnation;
        if (inc < peer_inc_ || (inc == peer_inc_ && d.status.seq < peer_seq_)) {
          dropped_++;
          continue;
        }
        {
          std::lock_guard<std::mutex> lock(mu_);
          nets_[i].last_seen = std::chrono::steady_clock::now();
          nets_[i].seen = true;
        }
        if (inc == peer_inc_ && d.status.seq == peer_seq_) continue;
        peer_inc_ = inc;
        peer_seq_ = d.status.seq;
        on_status_(d.status);
      }
    }
  }
}

std::vector<LinkNetworkStatus> PeerLink::Networks() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<LinkNetworkStatus> out;
  auto now = std::chrono::steady_clock::now();
  for (const auto& n : nets_) {
    LinkNetworkStatus s;
    s.name = n.cfg.name;
    s.peer_addr = n.cfg.peer_addr;
    if (n.seen) {
      auto ago = std::chrono::duration_cast<std::chrono::milliseconds>(now - n.last_seen);
      s.last_seen_ms_ago = ago.count();
      s.up = ago < timeout_;
    }
    out.push_back(s);
  }
  return out;
}

}  // namespace hamirror::daemon
