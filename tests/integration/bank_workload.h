// BankWorkload: the Jepsen-style bank test on MariaDB. Accounts start with a fixed balance; client
// threads move random amounts between two accounts in one transaction that also logs the transfer
// (with a client-chosen unique id) in a transfers table. Every COMMIT the server acknowledged is
// recorded. After a crash and recovery, Verify() checks: the total balance is unchanged, every
// acknowledged transfer is present, no transfer is present that was never attempted, and every
// account's balance equals its initial balance plus what the transfers log says it received minus
// what it sent (transactions were applied whole or not at all).
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"

namespace hamirror::itest {

struct BankOptions {
  int accounts = 50;
  int64_t initial_balance = 1000;
  int threads = 4;
  // Transfer ids are ((thread index + 1 + first_client_id) << 40) | sequence. A second workload on the
  // same tables (no Setup) needs its own range, else its first INSERT hits an id already committed.
  int first_client_id = 0;
};

struct BankReport {
  uint64_t acknowledged = 0;  // COMMITs the server answered OK
  uint64_t in_doubt = 0;      // COMMITs whose answer was lost (may or may not be present)
  uint64_t present = 0;       // transfers found after recovery
  int64_t total_balance = 0;
  std::string ToString() const;
};

class BankWorkload {
 public:
  BankWorkload(std::string socket_path, BankOptions options);
  ~BankWorkload();  // stops the threads

  // Creates database `bank` with its tables and accounts.
  Status Setup();
  // Starts the client threads; they run until Stop() or until their connection fails (server killed).
  Status StartClients();
  // Signals the threads to stop and joins them.
  void Stop();
  uint64_t acknowledged() const { return acknowledged_count_.load(); }

  // Checks the invariants on a (recovered) server reachable at socket_path.
  Status Verify(const std::string& socket_path, BankReport* report);

 private:
  void ClientLoop(int thread_index);

  std::string socket_path_;
  BankOptions options_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> acknowledged_count_{0};
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::set<uint64_t> acknowledged_;  // guarded by mu_
  std::set<uint64_t> in_doubt_;      // guarded by mu_
  std::set<uint64_t> attempted_;     // guarded by mu_
};

}  // namespace hamirror::itest
