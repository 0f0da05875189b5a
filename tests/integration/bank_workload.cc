#include "tests/integration/bank_workload.h"

#include <time.h>

#include <chrono>
#include <map>
#include <random>

namespace hamirror::itest {

namespace {
int64_t UnixNanos() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

SqlTarget SocketTarget(std::string socket_path) {
  SqlTarget t;
  t.socket_path = std::move(socket_path);
  return t;
}

// Reads accounts and transfers in one snapshot, so that a check while transfers commit sees whole ones.
Status ReadSnapshot(SqlClient* c, std::vector<Row>* accounts, std::vector<Row>* transfers) {
  Status s = c->Exec("START TRANSACTION WITH CONSISTENT SNAPSHOT");
  if (s.ok()) s = c->Query("SELECT id, balance FROM accounts ORDER BY id", accounts);
  if (s.ok()) s = c->Query("SELECT id, src, dst, amount FROM transfers", transfers);
  if (s.ok()) s = c->Exec("COMMIT");
  return s;
}
}  // namespace

std::string BankReport::ToString() const {
  return "acknowledged=" + std::to_string(acknowledged) + " in_doubt=" + std::to_string(in_doubt) +
         " present=" + std::to_string(present) + " total_balance=" + std::to_string(total_balance);
}

Status SetupBank(const SqlTarget& target, const BankOptions& options) {
  SqlClient c;
  Status s = c.Connect(target, "", 10);
  if (!s.ok()) return s;
  for (const std::string& sql :
       {std::string("CREATE DATABASE bank"),
        std::string("CREATE TABLE bank.accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=InnoDB"),
        std::string("CREATE TABLE bank.transfers (id BIGINT UNSIGNED PRIMARY KEY, src INT NOT NULL, "
                    "dst INT NOT NULL, amount BIGINT NOT NULL) ENGINE=InnoDB")}) {
    if (s = c.Exec(sql); !s.ok()) return s;
  }
  std::string insert = "INSERT INTO bank.accounts VALUES ";
  for (int i = 0; i < options.accounts; ++i) {
    if (i > 0) insert += ",";
    insert.append("(").append(std::to_string(i)).append(",");
    insert.append(std::to_string(options.initial_balance)).append(")");
  }
  return c.Exec(insert);
}

BankWorkload::BankWorkload(std::string socket_path, BankOptions options)
    : BankWorkload(SocketTarget(std::move(socket_path)), std::move(options)) {}

BankWorkload::BankWorkload(SqlTarget target, BankOptions options)
    : target_(std::move(target)), options_(std::move(options)) {}

BankWorkload::~BankWorkload() { Stop(); }

Status BankWorkload::StartClients() {
  stop_ = false;
  for (int t = 0; t < options_.threads; ++t) threads_.emplace_back([this, t] { ClientLoop(t); });
  return Status::Ok();
}

void BankWorkload::Stop() {
  stop_ = true;
  for (auto& t : threads_) t.join();
  threads_.clear();
}

BankOutcomes BankWorkload::outcomes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return outcomes_;
}

void BankWorkload::Record(TransferOutcome::Kind kind, uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  switch (kind) {
    case TransferOutcome::Kind::kAcknowledged:
      outcomes_.acknowledged.insert(id);
      ++acknowledged_count_;
      break;
    case TransferOutcome::Kind::kInDoubt: outcomes_.in_doubt.insert(id); break;
    case TransferOutcome::Kind::kFailed: outcomes_.failed.insert(id); break;
    case TransferOutcome::Kind::kCommitting: break;
  }
  if (options_.on_outcome) options_.on_outcome(TransferOutcome{kind, id, UnixNanos()});
}

bool BankWorkload::ConnectWithRetry(SqlClient* c) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(options_.reconnect_window_s);
  while (!stop_) {
    // A short connect timeout: while the virtual IP moves, attempts fail fast and are retried.
    const unsigned connect_timeout_s = options_.reconnect_window_s > 0 ? 2 : 10;
    if (c->Connect(target_, "bank", connect_timeout_s, options_.statement_timeout_s).ok()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

bool BankWorkload::Transfer(SqlClient* c, uint64_t id, int a, int b, int amount) {
  // Lock rows in id order so concurrent transfers do not deadlock.
  const int lo = std::min(a, b), hi = std::max(a, b);
  auto delta = [&](int acct) { return std::to_string(acct == a ? -amount : amount); };
  Status s = c->Exec("START TRANSACTION");
  if (s.ok())
    s = c->Exec("UPDATE accounts SET balance = balance + " + delta(lo) + " WHERE id = " + std::to_string(lo));
  if (s.ok())
    s = c->Exec("UPDATE accounts SET balance = balance + " + delta(hi) + " WHERE id = " + std::to_string(hi));
  if (s.ok()) {
    s = c->Exec("INSERT INTO transfers VALUES (" + std::to_string(id) + "," + std::to_string(a) + "," +
                std::to_string(b) + "," + std::to_string(amount) + ")");
  }
  if (!s.ok()) {
    // COMMIT was never sent: the transaction is not committed once the connection is closed (the caller
    // closes it; continuing on it could commit a half transaction implicitly).
    Record(TransferOutcome::Kind::kFailed, id);
    return false;
  }
  Record(TransferOutcome::Kind::kCommitting, id);
  s = c->Exec("COMMIT");
  Record(s.ok() ? TransferOutcome::Kind::kAcknowledged : TransferOutcome::Kind::kInDoubt, id);
  return s.ok();
}

void BankWorkload::ClientLoop(int thread_index) {
  SqlClient c;
  std::mt19937_64 rng(std::random_device{}() ^ (static_cast<uint64_t>(thread_index) << 32));
  std::uniform_int_distribution<int> account(0, options_.accounts - 1);
  std::uniform_int_distribution<int> amount(1, 100);
  uint64_t seq = 0;
  bool first_connect = true;
  while (!stop_) {
    if (!c.connected()) {
      if (!first_connect && options_.reconnect_window_s == 0) return;  // no reconnection wanted
      if (!ConnectWithRetry(&c)) {
        if (!stop_) ++gave_up_;
        return;
      }
      if (!first_connect) ++reconnects_;
      first_connect = false;
    }
    const uint64_t id = (static_cast<uint64_t>(thread_index + 1 + options_.first_client_id) << 40) | ++seq;
    const int a = account(rng), b = account(rng);
    if (a == b) continue;
    if (!Transfer(&c, id, a, b, amount(rng))) c.Close();
  }
}

Status BankWorkload::Verify(const std::string& socket_path, BankReport* report) {
  return VerifyBank(SocketTarget(socket_path), options_, outcomes(), false, report);
}

Status VerifyBank(const SqlTarget& target, const BankOptions& options, const BankOutcomes& outcomes,
                  bool workload_running, BankReport* report) {
  SqlClient c;
  Status s = c.Connect(target, "bank", 10);
  if (!s.ok()) return s;
  std::vector<Row> rows, transfers;
  if (s = ReadSnapshot(&c, &rows, &transfers); !s.ok()) return s;
  if (static_cast<int>(rows.size()) != options.accounts) {
    return Status::Corruption("accounts has " + std::to_string(rows.size()) + " rows, expected " +
                              std::to_string(options.accounts));
  }
  std::map<int, int64_t> balance;
  int64_t total = 0;
  for (const auto& r : rows) {
    balance[std::stoi(r[0])] = std::stoll(r[1]);
    total += std::stoll(r[1]);
  }
  std::map<int, int64_t> expected;
  for (int i = 0; i < options.accounts; ++i) expected[i] = options.initial_balance;
  std::set<uint64_t> present;
  for (const auto& r : transfers) {
    present.insert(std::stoull(r[0]));
    const int64_t amt = std::stoll(r[3]);
    expected[std::stoi(r[1])] -= amt;
    expected[std::stoi(r[2])] += amt;
  }
  report->acknowledged = outcomes.acknowledged.size();
  report->in_doubt = outcomes.in_doubt.size();
  report->present = present.size();
  report->total_balance = total;
  const int64_t want_total = options.initial_balance * options.accounts;
  if (total != want_total) {
    return Status::Corruption("total balance " + std::to_string(total) + " != " + std::to_string(want_total));
  }
  uint64_t missing = 0, first_missing = 0;
  for (uint64_t id : outcomes.acknowledged) {
    if (!present.count(id)) {
      if (missing++ == 0) first_missing = id;
    }
  }
  if (missing > 0) {
    return Status::Corruption(std::to_string(missing) +
                              " acknowledged transfers missing after recovery (first id " +
                              std::to_string(first_missing) + ")");
  }
  for (uint64_t id : present) {
    if (outcomes.failed.count(id)) {
      return Status::Corruption("transfer " + std::to_string(id) + " present but its transaction failed");
    }
    if (!workload_running && !outcomes.acknowledged.count(id) && !outcomes.in_doubt.count(id))
      return Status::Corruption("transfer " + std::to_string(id) + " was never attempted");
  }
  for (const auto& [acct, want] : expected) {
    if (balance[acct] != want) {
      return Status::Corruption("account " + std::to_string(acct) + " balance " +
                                std::to_string(balance[acct]) + " disagrees with the transfers log (" +
                                std::to_string(want) + ")");
    }
  }
  return Status::Ok();
}

}  // namespace hamirror::itest
