#include "manager/vip/garp.h"

#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/log.h"

namespace hamirror::vip {
namespace {

// An open AF_PACKET socket plus what a round needs; closed when the last user drops it.
struct ArpSocket {
  int fd = -1;
  int ifindex = 0;
  unsigned char mac[6] = {};
  in_addr ip{};
  std::string interface;
  std::string addr;
  ~ArpSocket() {
    if (fd >= 0) ::close(fd);
  }
};

Status OpenArpSocket(const std::string& interface, const std::string& ipv4, ArpSocket* s) {
  s->interface = interface;
  s->addr = ipv4;
  if (inet_pton(AF_INET, ipv4.c_str(), &s->ip) != 1) {
    in6_addr v6;
    if (inet_pton(AF_INET6, ipv4.c_str(), &v6) == 1) {
      return Status::InvalidArgument("gratuitous ARP: " + ipv4 +
                                     " is IPv6; unsolicited neighbour advertisement is not implemented");
    }
    return Status::InvalidArgument("gratuitous ARP: '" + ipv4 + "' is not an IPv4 address");
  }
  if (interface.empty() || interface.size() >= IF_NAMESIZE) {
    return Status::InvalidArgument("gratuitous ARP: bad interface name '" + interface + "'");
  }
  s->fd = ::socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_ARP));
  if (s->fd < 0) return Status::FromErrno("gratuitous ARP: packet socket", errno);
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, interface.data(), interface.size());
  if (::ioctl(s->fd, SIOCGIFINDEX, &ifr) != 0)
    return Status::FromErrno("gratuitous ARP: interface " + interface, errno);
  s->ifindex = ifr.ifr_ifindex;
  if (::ioctl(s->fd, SIOCGIFHWADDR, &ifr) != 0)
    return Status::FromErrno("gratuitous ARP: MAC of " + interface, errno);
  if (ifr.ifr_hwaddr.sa_family != ARPHRD_ETHER) {
    return Status::InvalidArgument("gratuitous ARP: " + interface + " is not an Ethernet interface");
  }
  std::memcpy(s->mac, ifr.ifr_hwaddr.sa_data, 6);
  return Status::Ok();
}

// One round: an ARP request announcement and an ARP reply, both broadcast.
Status SendRound(const ArpSocket& s) {
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_protocol = htons(ETH_P_ARP);
  to.sll_ifindex = s.ifindex;
  to.sll_halen = 6;
  std::memset(to.sll_addr, 0xff, 6);
  for (uint16_t op : {uint16_t{1}, uint16_t{2}}) {
    uint8_t p[28];
    p[0] = 0, p[1] = 1;        // hardware type Ethernet
    p[2] = 0x08, p[3] = 0x00;  // protocol IPv4
    p[4] = 6, p[5] = 4;
    p[6] = 0, p[7] = static_cast<uint8_t>(op);
    std::memcpy(p + 8, s.mac, 6);
    std::memcpy(p + 14, &s.ip, 4);
    // Request: target MAC unknown (zeros, RFC 5227 announcement). Reply: broadcast.
    std::memset(p + 18, op == 1 ? 0x00 : 0xff, 6);
    std::memcpy(p + 24, &s.ip, 4);
    if (::sendto(s.fd, p, sizeof(p), 0, reinterpret_cast<const sockaddr*>(&to), sizeof(to)) != sizeof(p)) {
      return Status::FromErrno("gratuitous ARP for " + s.addr + " on " + s.interface, errno);
    }
  }
  return Status::Ok();
}

}  // namespace

Status SendGratuitousArp(const std::string& interface, const std::string& ipv4, int count,
                         std::chrono::milliseconds interval) {
  ArpSocket s;
  Status st = OpenArpSocket(interface, ipv4, &s);
  if (!st.ok()) return st;
  for (int i = 0; i < count; ++i) {
    if (i > 0) std::this_thread::sleep_for(interval);  // pacing the burst, not synchronisation
    st = SendRound(s);
    if (!st.ok()) return st;
  }
  return Status::Ok();
}

struct GarpAnnouncer::Job {
  std::shared_ptr<ArpSocket> socket;
  std::chrono::steady_clock::time_point due;
  std::chrono::steady_clock::time_point repeat_due;
  int left = 0;         // rounds left in the current burst
  int repeat_left = 0;  // rounds of the second burst, started at repeat_due
};

GarpAnnouncer::GarpAnnouncer(GarpOptions options) : options_(options), thread_([this] { Run(); }) {}

GarpAnnouncer::~GarpAnnouncer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

Status GarpAnnouncer::Announce(const std::string& interface, const std::string& ipv4) {
  auto socket = std::make_shared<ArpSocket>();
  Status st = OpenArpSocket(interface, ipv4, socket.get());
  if (!st.ok()) return st;
  auto job = std::make_shared<Job>();
  job->socket = std::move(socket);
  job->due = std::chrono::steady_clock::now();
  job->repeat_due = job->due + options_.repeat_after;
  job->left = options_.count;
  job->repeat_left = options_.repeat_count;
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::erase_if(jobs_, [&](const std::shared_ptr<Job>& j) { return j->socket->addr == ipv4; });
    jobs_.push_back(std::move(job));
  }
  cv_.notify_all();
  return Status::Ok();
}

void GarpAnnouncer::Cancel(const std::string& ipv4) {
  std::lock_guard<std::mutex> lock(mu_);
  std::erase_if(jobs_, [&](const std::shared_ptr<Job>& j) { return j->socket->addr == ipv4; });
}

uint64_t GarpAnnouncer::rounds_sent() const {
  std::lock_guard<std::mutex> lock(mu_);
  return rounds_sent_;
}

void GarpAnnouncer::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    if (jobs_.empty()) {
      cv_.wait(lock);
      continue;
    }
    auto next = std::min_element(jobs_.begin(), jobs_.end(),
                                 [](const auto& a, const auto& b) { return a->due < b->due; });
    std::shared_ptr<Job> job = *next;
    if (std::chrono::steady_clock::now() < job->due) {
      cv_.wait_until(lock, job->due);  // woken early by Announce/Cancel/stop: re-plan
      continue;
    }
    // Send outside the lock; the job stays owned by the shared_ptr even if cancelled meanwhile.
    lock.unlock();
    const Status st = SendRound(*job->socket);
    lock.lock();
    if (!st.ok()) HLOG_WARN("%s", st.ToString().c_str());
    ++rounds_sent_;
    if (--job->left <= 0 && job->repeat_left > 0) {
      job->left = job->repeat_left;
      job->repeat_left = 0;
      job->due = std::max(job->repeat_due, job->due + options_.interval);
    } else {
      job->due += options_.interval;
    }
    if (job->left <= 0) std::erase(jobs_, job);
  }
}

}  // namespace hamirror::vip
