// BankWorkload: the Jepsen-style bank test on MariaDB. Accounts start with a fixed balance; client
// threads move random amounts between two accounts in one transaction that also logs the transfer
// (with a client-chosen unique id) in a transfers table. Every COMMIT the server acknowledged is
// recorded. After a crash and recovery, Verify() checks: the total balance is unchanged, every
// acknowledged transfer is present, no transfer is present that was never attempted or failed before
// its COMMIT was sent, and every account's balance equals its initial balance plus what the transfers
// log says it received minus what it sent (transactions were applied whole or not at all).
//
// With reconnect_window_s > 0 a client thread whose connection breaks (failover) reconnects to the same
// target until the window passes, so one workload runs across failovers of a virtual IP.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "tests/integration/sql_client.h"

namespace hamirror::itest {

// What became of one attempted transfer, and when the client learnt it (CLOCK_REALTIME, ns).
struct TransferOutcome {
  // kCommitting: COMMIT is about to be sent (until an outcome follows, the transfer is in doubt: a
  // client killed meanwhile never learns it).
  enum class Kind : char { kCommitting = 'C', kAcknowledged = 'A', kInDoubt = 'D', kFailed = 'F' };
  Kind kind;
  uint64_t id;
  int64_t unix_ns;
};

struct BankOptions {
  int accounts = 50;
  int64_t initial_balance = 1000;
  int threads = 4;
  // Transfer ids are ((thread index + 1 + first_client_id) << 40) | sequence. A second workload on the
  // same tables (no Setup) needs its own range, else its first INSERT hits an id already committed.
  int first_client_id = 0;
  // 0: a broken connection ends its thread. Otherwise the thread reconnects, and gives up (counted in
  // gave_up()) when no connection succeeded for this long.
  int reconnect_window_s = 0;
  // Bounds each statement's wait for an answer (a server cut off must not hang its clients).
  unsigned statement_timeout_s = 120;
  // Called for every outcome, in the order the client learnt them (under the workload's lock), and with
  // kCommitting before each COMMIT is sent.
  std::function<void(const TransferOutcome&)> on_outcome;
};

// Outcomes as the client saw them: acknowledged COMMITs, COMMITs whose answer was lost, and
// transactions that broke before COMMIT was sent (never committed).
struct BankOutcomes {
  std::set<uint64_t> acknowledged;
  std::set<uint64_t> in_doubt;
  std::set<uint64_t> failed;
};

struct BankReport {
  uint64_t acknowledged = 0;  // COMMITs the server answered OK
  uint64_t in_doubt = 0;      // COMMITs whose answer was lost (may or may not be present)
  uint64_t present = 0;       // transfers found after recovery
  int64_t total_balance = 0;
  std::string ToString() const;
};

// Checks the invariants on the server at target, in one consistent snapshot. With workload_running the
// check "every present transfer was attempted" is left out (transfers commit while it reads).
Status VerifyBank(const SqlTarget& target, const BankOptions& options, const BankOutcomes& outcomes,
                  bool workload_running, BankReport* report);

// Creates database `bank` with its tables and accounts.
Status SetupBank(const SqlTarget& target, const BankOptions& options);

class BankWorkload {
 public:
  BankWorkload(std::string socket_path, BankOptions options);
  BankWorkload(SqlTarget target, BankOptions options);
  ~BankWorkload();  // stops the threads

  Status Setup() { return SetupBank(target_, options_); }
  // Starts the client threads; they run until Stop() or until their connection fails for good.
  Status StartClients();
  // Signals the threads to stop and joins them.
  void Stop();
  uint64_t acknowledged() const { return acknowledged_count_.load(); }
  uint64_t reconnects() const { return reconnects_.load(); }
  int gave_up() const { return gave_up_.load(); }
  BankOutcomes outcomes() const;

  // Checks the invariants on a (recovered) server reachable at socket_path.
  Status Verify(const std::string& socket_path, BankReport* report);

 private:
  void ClientLoop(int thread_index);
  // Connects c, retrying within the reconnect window; false when stopped or the window passed.
  bool ConnectWithRetry(SqlClient* c);
  // Runs one transfer; false if the connection must be dropped.
  bool Transfer(SqlClient* c, uint64_t id, int a, int b, int amount);
  void Record(TransferOutcome::Kind kind, uint64_t id);

  SqlTarget target_;
  BankOptions options_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> acknowledged_count_{0};
  std::atomic<uint64_t> reconnects_{0};
  std::atomic<int> gave_up_{0};
  std::vector<std::thread> threads_;
  mutable std::mutex mu_;
  BankOutcomes outcomes_;  // guarded by mu_
};

}  // namespace hamirror::itest
