// Gratuitous ARP on takeover, so switches and neighbours forget the old primary's MAC at once.
// Each round sends one ARP request announcement (sender = target = VIP, RFC 5227) and one ARP reply
// (target MAC broadcast), as arping -U / -A would, through an AF_PACKET socket.
// Like Pacemaker's IPaddr2 the default burst is 5 rounds 200 ms apart; like keepalived a second burst
// follows 5 s later (catches a switch port that was still coming up).
//
// IPv6 (unsolicited neighbour advertisement) is not implemented: SendGratuitousArp returns
// InvalidArgument for an IPv6 address and GarpAnnouncer logs and skips it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"

namespace hamirror::vip {

// Blocking burst: `count` rounds, `interval` apart (no wait after the last). Uses the calling thread's
// network namespace.
Status SendGratuitousArp(const std::string& interface, const std::string& ipv4, int count = 5,
                         std::chrono::milliseconds interval = std::chrono::milliseconds(200));

struct GarpOptions {
  int count = 5;
  std::chrono::milliseconds interval{200};
  int repeat_count = 5;                          // 0: no second burst
  std::chrono::milliseconds repeat_after{5000};  // from the start of the first burst
};

// Non-blocking announcements for the daemon: Announce() returns at once, a background thread sends
// the bursts on schedule. The packet socket is opened in Announce()'s caller thread, so the packets
// leave from the caller's network namespace.
class GarpAnnouncer {
 public:
  explicit GarpAnnouncer(GarpOptions options = {});
  ~GarpAnnouncer();  // drops whatever is still scheduled
  GarpAnnouncer(const GarpAnnouncer&) = delete;
  GarpAnnouncer& operator=(const GarpAnnouncer&) = delete;

  // Schedules the bursts for `ipv4` on `interface` (replacing any pending ones for that address).
  // Errors (no such interface, not IPv4) are returned at once.
  Status Announce(const std::string& interface, const std::string& ipv4);
  // Forgets pending rounds for `ipv4`: call it when the VIP is removed.
  void Cancel(const std::string& ipv4);
  uint64_t rounds_sent() const;

 private:
  struct Job;
  void Run();

  const GarpOptions options_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<Job>> jobs_;
  bool stop_ = false;
  uint64_t rounds_sent_ = 0;
  std::thread thread_;
};

}  // namespace hamirror::vip
