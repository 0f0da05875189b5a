// A HeartbeatListener for tests: records every callback with its time, lets the test await one.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "manager/heartbeat/heartbeat_service.h"

namespace hamirror::heartbeat::testing {

class RecordingListener : public HeartbeatListener {
 public:
  enum class What { kHeartbeat, kNetworkUp, kNetworkDown, kPeerAlive, kPeerLost };
  struct Event {
    What what;
    size_t network;
    PeerSummary summary;
    Clock::time_point at;
    std::string payload;
  };

  void OnHeartbeat(size_t network, const std::string&, const PeerSummary& summary,
                   std::string_view payload) override {
    Add({What::kHeartbeat, network, summary, Clock::now(), std::string(payload)});
  }
  void OnNetworkUp(size_t network, const std::string&) override {
    Add({What::kNetworkUp, network, {}, Clock::now(), {}});
  }
  void OnNetworkDown(size_t network, const std::string&) override {
    Add({What::kNetworkDown, network, {}, Clock::now(), {}});
  }
  void OnPeerAlive() override { Add({What::kPeerAlive, 0, {}, Clock::now(), {}}); }
  void OnPeerLost() override { Add({What::kPeerLost, 0, {}, Clock::now(), {}}); }
  // Optional: a test can make every packet carry a fresh payload.
  void SetBeforeSend(std::function<void(std::string*)> fn) {
    std::lock_guard<std::mutex> lock(mu_);
    before_send_ = std::move(fn);
  }
  void BeforeSend(PeerSummary*, std::string* payload) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (before_send_) before_send_(payload);
  }

  // Waits until an event after index `from` matches; returns its index or -1 on timeout.
  int WaitFor(size_t from, const std::function<bool(const Event&)>& match,
              std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    int found = -1;
    cv_.wait_for(lock, timeout, [&] {
      for (size_t i = from; i < events_.size(); ++i) {
        if (match(events_[i])) {
          found = static_cast<int>(i);
          return true;
        }
      }
      return false;
    });
    return found;
  }
  int WaitFor(size_t from, What what, std::chrono::milliseconds timeout) {
    return WaitFor(
        from, [what](const Event& e) { return e.what == what; }, timeout);
  }
  size_t size() {
    std::lock_guard<std::mutex> lock(mu_);
    return events_.size();
  }
  Event at(size_t i) {
    std::lock_guard<std::mutex> lock(mu_);
    return events_.at(i);
  }
  size_t Count(size_t from, What what) {
    std::lock_guard<std::mutex> lock(mu_);
    size_t n = 0;
    for (size_t i = from; i < events_.size(); ++i) n += events_[i].what == what;
    return n;
  }

 private:
  void Add(Event e) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      events_.push_back(e);
    }
    cv_.notify_all();
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Event> events_;
  std::function<void(std::string*)> before_send_;
};

}  // namespace hamirror::heartbeat::testing
