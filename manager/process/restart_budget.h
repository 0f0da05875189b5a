// RestartBudget: SafeKit's maxloop/loop_interval. Each local recovery (errd or checker restart,
// stopstart) consumes one unit; more than `maxloop` within `loop_interval` means the module
// stops locally instead of looping forever.
#pragma once

#include <chrono>
#include <deque>

namespace hamirror::process {

class RestartBudget {
 public:
  using Clock = std::chrono::steady_clock;
  RestartBudget(int maxloop, Clock::duration loop_interval) : maxloop_(maxloop), interval_(loop_interval) {}

  // Records a restart at `now`; false when this one exceeds the budget (caller stops instead).
  bool Consume(Clock::time_point now) {
    Expire(now);
    if (static_cast<int>(stamps_.size()) >= maxloop_) return false;
    stamps_.push_back(now);
    return true;
  }
  int used(Clock::time_point now) {
    Expire(now);
    return static_cast<int>(stamps_.size());
  }
  int maxloop() const { return maxloop_; }
  void Reset() { stamps_.clear(); }

 private:
  void Expire(Clock::time_point now) {
    while (!stamps_.empty() && now - stamps_.front() >= interval_) stamps_.pop_front();
  }
  int maxloop_;
  Clock::duration interval_;
  std::deque<Clock::time_point> stamps_;
};

}  // namespace hamirror::process
