#include "tests/integration/bank_workload.h"

#include <map>
#include <random>

#include "tests/integration/sql_client.h"

namespace hamirror::itest {

std::string BankReport::ToString() const {
  return "acknowledged=" + std::to_string(acknowledged) + " in_doubt=" + std::to_string(in_doubt) +
         " present=" + std::to_string(present) + " total_balance=" + std::to_string(total_balance);
}

BankWorkload::BankWorkload(std::string socket_path, BankOptions options)
    : socket_path_(std::move(socket_path)), options_(options) {}

BankWorkload::~BankWorkload() { Stop(); }

Status BankWorkload::Setup() {
  SqlClient c;
  Status s = c.Connect(socket_path_);
  if (!s.ok()) return s;
  for (const std::string& sql :
       {std::string("CREATE DATABASE bank"),
        std::string("CREATE TABLE bank.accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=InnoDB"),
        std::string("CREATE TABLE bank.transfers (id BIGINT UNSIGNED PRIMARY KEY, src INT NOT NULL, "
                    "dst INT NOT NULL, amount BIGINT NOT NULL) ENGINE=InnoDB")}) {
    if (s = c.Exec(sql); !s.ok()) return s;
  }
  std::string insert = "INSERT INTO bank.accounts VALUES ";
  for (int i = 0; i < options_.accounts; ++i) {
    if (i > 0) insert += ",";
    insert.append("(").append(std::to_string(i)).append(",");
    insert.append(std::to_string(options_.initial_balance)).append(")");
  }
  return c.Exec(insert);
}

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

void BankWorkload::ClientLoop(int thread_index) {
  SqlClient c;
  if (!c.Connect(socket_path_, "bank").ok()) return;
  std::mt19937_64 rng(std::random_device{}() ^ (static_cast<uint64_t>(thread_index) << 32));
  std::uniform_int_distribution<int> account(0, options_.accounts - 1);
  std::uniform_int_distribution<int> amount(1, 100);
  uint64_t seq = 0;
  while (!stop_) {
    const uint64_t id = (static_cast<uint64_t>(thread_index + 1 + options_.first_client_id) << 40) | ++seq;
    int a = account(rng), b = account(rng);
    if (a == b) continue;
    const int amt = amount(rng);
    {
      std::lock_guard<std::mutex> lock(mu_);
      attempted_.insert(id);
    }
    // Lock rows in id order so concurrent transfers do not deadlock.
    const int lo = std::min(a, b), hi = std::max(a, b);
    auto delta = [&](int acct) { return std::to_string(acct == a ? -amt : amt); };
    Status s = c.Exec("START TRANSACTION");
    if (s.ok())
      s = c.Exec("UPDATE accounts SET balance = balance + " + delta(lo) +
                 " WHERE id = " + std::to_string(lo));
    if (s.ok())
      s = c.Exec("UPDATE accounts SET balance = balance + " + delta(hi) +
                 " WHERE id = " + std::to_string(hi));
    if (s.ok()) {
      s = c.Exec("INSERT INTO transfers VALUES (" + std::to_string(id) + "," + std::to_string(a) + "," +
                 std::to_string(b) + "," + std::to_string(amt) + ")");
    }
    if (!s.ok()) {
      // Failed before COMMIT was sent: never acknowledged. A dead server ends the thread.
      std::lock_guard<std::mutex> lock(mu_);
      in_doubt_.insert(id);  // conservatively: a lost connection leaves it undecided server-side
      return;
    }
    s = c.Exec("COMMIT");
    std::lock_guard<std::mutex> lock(mu_);
    if (s.ok()) {
      acknowledged_.insert(id);
      ++acknowledged_count_;
    } else {
      in_doubt_.insert(id);
      return;
    }
  }
}

Status BankWorkload::Verify(const std::string& socket_path, BankReport* report) {
  SqlClient c;
  Status s = c.Connect(socket_path, "bank");
  if (!s.ok()) return s;
  std::vector<Row> rows;
  if (s = c.Query("SELECT id, balance FROM accounts ORDER BY id", &rows); !s.ok()) return s;
  if (static_cast<int>(rows.size()) != options_.accounts) {
    return Status::Corruption("accounts has " + std::to_string(rows.size()) + " rows, expected " +
                              std::to_string(options_.accounts));
  }
  std::map<int, int64_t> balance;
  int64_t total = 0;
  for (const auto& r : rows) {
    balance[std::stoi(r[0])] = std::stoll(r[1]);
    total += std::stoll(r[1]);
  }
  std::vector<Row> transfers;
  if (s = c.Query("SELECT id, src, dst, amount FROM transfers", &transfers); !s.ok()) return s;
  std::map<int, int64_t> expected;
  for (int i = 0; i < options_.accounts; ++i) expected[i] = options_.initial_balance;
  std::set<uint64_t> present;
  for (const auto& r : transfers) {
    present.insert(std::stoull(r[0]));
    const int64_t amt = std::stoll(r[3]);
    expected[std::stoi(r[1])] -= amt;
    expected[std::stoi(r[2])] += amt;
  }
  std::lock_guard<std::mutex> lock(mu_);
  report->acknowledged = acknowledged_.size();
  report->in_doubt = in_doubt_.size();
  report->present = present.size();
  report->total_balance = total;
  const int64_t want_total = options_.initial_balance * options_.accounts;
  if (total != want_total) {
    return Status::Corruption("total balance " + std::to_string(total) + " != " + std::to_string(want_total));
  }
  uint64_t missing = 0, first_missing = 0;
  for (uint64_t id : acknowledged_) {
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
    if (!attempted_.count(id))
      return Status::Corruption("transfer " + std::to_string(id) + " was never attempted");
    if (!acknowledged_.count(id) && !in_doubt_.count(id)) {
      return Status::Corruption("transfer " + std::to_string(id) + " present but its transaction failed");
    }
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
