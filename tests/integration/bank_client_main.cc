// bank-client: the bank workload (bank_workload.h) as a program, for the lab (scripts/lab/lab.sh) and
// scripts/failover-loop.sh: it runs in the client namespace against the virtual IP, reconnects after a
// failover, and logs every outcome with the time the client learnt it, so that zero loss and the
// failover time can be checked afterwards.
//
//   bank-client setup  [TARGET] [--accounts N] [--balance B]
//   bank-client run    [TARGET] --log FILE [--threads N] [--seconds S] [--stop-file F]
//                      [--reconnect-window S] [--statement-timeout S]
//   bank-client verify [TARGET] --log FILE [--live] [--accounts N] [--balance B]
//   bank-client first-ack --log FILE --after UNIX_NS     time of the first acknowledged commit after
//   bank-client max-gap --log FILE --after NS --before NS  longest pause (ms) between acknowledged commits
// TARGET: --host H --port P --user U --password P (defaults: $VIP, $MYSQL_PORT, $MYSQL_USER,
// $MYSQL_PASSWORD, as `lab.sh env` prints them) or --socket PATH (root over the unix socket).
// Log lines: "C|A|D|F <transfer id> <unix ns>": COMMIT about to be sent, acknowledged, in doubt (COMMIT
// answer lost), failed before COMMIT. A C line with no outcome after it (client killed) counts as in
// doubt. SIGTERM / SIGINT stop `run` as the stop file does.
// Exit: 0 ok, 1 check failed / workload gave up, 2 server unreachable, 64 usage.
#include <signal.h>
#include <sys/stat.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include "tests/integration/bank_workload.h"

namespace hamirror::itest {
namespace {

constexpr int kExitOk = 0, kExitCheckFailed = 1, kExitUnreachable = 2, kExitUsage = 64;

struct Args {
  std::string command;
  SqlTarget target;
  BankOptions bank;
  std::string log_path, stop_file;
  long seconds = 0;
  long max_seconds = 3600;
  bool live = false;
  int64_t after_ns = -1;
  int64_t before_ns = -1;
};

std::string Env(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

int Usage(const std::string& why) {
  std::cerr << "bank-client: " << why << "\n"
            << "usage: bank-client setup|run|verify|first-ack [options] (see the comment at the top of "
               "tests/integration/bank_client_main.cc)\n";
  return kExitUsage;
}

bool ParseLong(const std::string& text, long min, long max, long* out) {
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(text.c_str(), &end, 10);
  if (errno != 0 || end == text.c_str() || *end != '\0' || v < min || v > max) return false;
  *out = v;
  return true;
}

// Returns an error text, empty on success.
std::string ParseArgs(int argc, char** argv, Args* a) {
  if (argc < 2) return "missing command";
  a->command = argv[1];
  a->target.host = Env("VIP", "");
  a->target.user = Env("MYSQL_USER", "root");
  a->target.password = Env("MYSQL_PASSWORD", "");
  long port = 3306;
  if (!ParseLong(Env("MYSQL_PORT", "3306"), 1, 65535, &port)) return "MYSQL_PORT is not a port";
  for (int i = 2; i < argc; ++i) {
    const std::string opt = argv[i];
    if (opt == "--live") {
      a->live = true;
      continue;
    }
    if (i + 1 >= argc) return opt + " needs a value";
    const std::string val = argv[++i];
    long n = 0;
    auto number = [&](long min, long max) {
      if (!ParseLong(val, min, max, &n)) throw std::invalid_argument(opt + ": not a number in range: " + val);
      return n;
    };
    try {
      if (opt == "--host")
        a->target.host = val;
      else if (opt == "--port")
        port = number(1, 65535);
      else if (opt == "--user")
        a->target.user = val;
      else if (opt == "--password")
        a->target.password = val;
      else if (opt == "--socket")
        a->target.socket_path = val, a->target.host.clear();
      else if (opt == "--accounts")
        a->bank.accounts = static_cast<int>(number(2, 1000000));
      else if (opt == "--balance")
        a->bank.initial_balance = number(1, 1000000000);
      else if (opt == "--threads")
        a->bank.threads = static_cast<int>(number(1, 256));
      else if (opt == "--seconds")
        a->seconds = number(1, 86400);
      else if (opt == "--stop-file")
        a->stop_file = val;
      else if (opt == "--reconnect-window")
        a->bank.reconnect_window_s = static_cast<int>(number(1, 3600));
      else if (opt == "--statement-timeout")
        a->bank.statement_timeout_s = static_cast<unsigned>(number(1, 3600));
      else if (opt == "--log")
        a->log_path = val;
      else if (opt == "--after")
        a->after_ns = number(0, std::numeric_limits<long>::max());
      else if (opt == "--before")
        a->before_ns = number(0, std::numeric_limits<long>::max());
      else
        return "unknown option " + opt;
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
  }
  a->target.port = static_cast<int>(port);
  if (a->target.host.empty() && a->target.socket_path.empty() && a->command != "first-ack" &&
      a->command != "max-gap")
    return "no server: give --host (or set VIP, e.g. eval \"$(lab.sh env)\") or --socket";
  return "";
}

// Reads the outcomes logged so far; the largest client-id prefix goes to *max_client (for the next run).
Status ReadLog(const std::string& path, BankOutcomes* out, uint64_t* max_client,
               std::vector<std::pair<int64_t, uint64_t>>* acks) {
  std::ifstream in(path);
  if (!in) return Status::NotFound("cannot read log " + path);
  std::string line;
  int line_no = 0;
  std::set<uint64_t> committing;
  while (std::getline(in, line)) {
    ++line_no;
    std::istringstream fields(line);
    char kind = 0;
    uint64_t id = 0;
    int64_t ns = 0;
    if (!(fields >> kind >> id >> ns)) {
      // The last line may be cut by a client killed mid-write; anything else is damage.
      if (in.peek() == EOF) break;
      return Status::Corruption(path + ":" + std::to_string(line_no) + ": unreadable line");
    }
    if (kind == 'A')
      out->acknowledged.insert(id);
    else if (kind == 'D')
      out->in_doubt.insert(id);
    else if (kind == 'F')
      out->failed.insert(id);
    else if (kind == 'C')
      committing.insert(id);
    else
      return Status::Corruption(path + ":" + std::to_string(line_no) + ": unknown kind");
    if (max_client != nullptr) *max_client = std::max(*max_client, id >> 40);
    if (acks != nullptr && kind == 'A') acks->emplace_back(ns, id);
  }
  for (uint64_t id : committing) {
    if (!out->acknowledged.count(id) && !out->in_doubt.count(id)) out->in_doubt.insert(id);
  }
  return Status::Ok();
}

int Setup(const Args& a) {
  Status s = SetupBank(a.target, a.bank);
  if (!s.ok()) {
    std::cerr << "bank-client setup: " << s.ToString() << "\n";
    return s.code() == Status::Code::kUnavailable ? kExitUnreachable : kExitCheckFailed;
  }
  std::cout << "bank: " << a.bank.accounts << " accounts of " << a.bank.initial_balance << " on "
            << a.target.ToString() << "\n";
  return kExitOk;
}

bool Exists(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0;
}

volatile sig_atomic_t g_stop_signal = 0;
void OnStopSignal(int) { g_stop_signal = 1; }

int Run(Args a) {
  if (a.log_path.empty()) return Usage("run needs --log FILE");
  if (a.seconds == 0 && a.stop_file.empty()) return Usage("run needs --seconds S or --stop-file F");
  if (a.bank.reconnect_window_s == 0) a.bank.reconnect_window_s = 60;
  if (a.bank.statement_timeout_s == 120) a.bank.statement_timeout_s = 10;
  // Continue the id ranges of earlier runs logged in the same file.
  BankOutcomes earlier;
  uint64_t max_client = 0;
  if (Exists(a.log_path)) {
    Status s = ReadLog(a.log_path, &earlier, &max_client, nullptr);
    if (!s.ok()) return std::cerr << "bank-client run: " << s.ToString() << "\n", kExitCheckFailed;
  }
  a.bank.first_client_id = static_cast<int>(max_client);
  FILE* log = std::fopen(a.log_path.c_str(), "a");
  if (log == nullptr)
    return std::cerr << "bank-client run: cannot open " << a.log_path << "\n", kExitCheckFailed;
  // Flushed per line: the test reads the log while the workload runs (first commit after a kill).
  a.bank.on_outcome = [log](const TransferOutcome& o) {
    std::fprintf(log, "%c %llu %lld\n", static_cast<char>(o.kind), static_cast<unsigned long long>(o.id),
                 static_cast<long long>(o.unix_ns));
    std::fflush(log);
  };
  BankWorkload bank(a.target, a.bank);
  const auto start = std::chrono::steady_clock::now();
  const long limit = a.seconds > 0 ? a.seconds : a.max_seconds;
  struct sigaction sa {};
  sa.sa_handler = OnStopSignal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  Status s = bank.StartClients();
  while (s.ok() && !g_stop_signal && std::chrono::steady_clock::now() - start < std::chrono::seconds(limit) &&
         (a.stop_file.empty() || !Exists(a.stop_file)) && bank.gave_up() < a.bank.threads) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  bank.Stop();
  std::fclose(log);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const BankOutcomes o = bank.outcomes();
  std::printf("acknowledged=%zu in_doubt=%zu failed=%zu reconnects=%llu gave_up=%d seconds=%.1f tps=%.1f\n",
              o.acknowledged.size(), o.in_doubt.size(), o.failed.size(),
              static_cast<unsigned long long>(bank.reconnects()), bank.gave_up(), secs,
              static_cast<double>(o.acknowledged.size()) / secs);
  if (bank.gave_up() > 0) {
    std::cerr << "bank-client run: " << bank.gave_up() << " client thread(s) found no server for "
              << a.bank.reconnect_window_s << " s and gave up\n";
    return kExitCheckFailed;
  }
  if (o.acknowledged.empty()) {
    std::cerr << "bank-client run: no commit acknowledged by " << a.target.ToString() << "\n";
    return kExitCheckFailed;
  }
  return kExitOk;
}

int Verify(const Args& a) {
  if (a.log_path.empty()) return Usage("verify needs --log FILE");
  BankOutcomes outcomes;
  Status s = ReadLog(a.log_path, &outcomes, nullptr, nullptr);
  BankReport report;
  // The log is read before the snapshot: whatever it says was acknowledged committed before.
  if (s.ok()) s = VerifyBank(a.target, a.bank, outcomes, a.live, &report);
  if (!s.ok()) {
    std::cerr << "bank-client verify: " << s.ToString() << " (" << report.ToString() << ")\n";
    return s.code() == Status::Code::kUnavailable ? kExitUnreachable : kExitCheckFailed;
  }
  std::cout << "verified: " << report.ToString() << " failed=" << outcomes.failed.size() << "\n";
  return kExitOk;
}

int FirstAck(const Args& a) {
  if (a.log_path.empty() || a.after_ns < 0) return Usage("first-ack needs --log FILE --after UNIX_NS");
  BankOutcomes outcomes;
  std::vector<std::pair<int64_t, uint64_t>> acks;
  Status s = ReadLog(a.log_path, &outcomes, nullptr, &acks);
  if (!s.ok()) return std::cerr << "bank-client first-ack: " << s.ToString() << "\n", kExitCheckFailed;
  int64_t first = -1;
  for (const auto& [ns, id] : acks) {
    if (ns > a.after_ns && (first < 0 || ns < first)) first = ns;
  }
  if (first < 0) return kExitCheckFailed;  // nothing acknowledged after that time (yet)
  std::cout << first << "\n";
  return kExitOk;
}

// The longest interval without an acknowledged commit in [after, before], the bounds counting as
// commits: the outage a client saw.
int MaxGap(const Args& a) {
  if (a.log_path.empty() || a.after_ns < 0 || a.before_ns <= a.after_ns)
    return Usage("max-gap needs --log FILE --after NS --before NS (after < before)");
  BankOutcomes outcomes;
  std::vector<std::pair<int64_t, uint64_t>> acks;
  Status s = ReadLog(a.log_path, &outcomes, nullptr, &acks);
  if (!s.ok()) return std::cerr << "bank-client max-gap: " << s.ToString() << "\n", kExitCheckFailed;
  std::vector<int64_t> times{a.after_ns, a.before_ns};
  for (const auto& ack : acks) {
    if (ack.first > a.after_ns && ack.first < a.before_ns) times.push_back(ack.first);
  }
  std::sort(times.begin(), times.end());
  int64_t gap = 0;
  for (size_t i = 1; i < times.size(); ++i) gap = std::max(gap, times[i] - times[i - 1]);
  std::cout << gap / 1000000 << "\n";
  return kExitOk;
}

int Main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  Args a;
  const std::string err = ParseArgs(argc, argv, &a);
  if (!err.empty()) return Usage(err);
  if (a.command == "setup") return Setup(a);
  if (a.command == "run") return Run(a);
  if (a.command == "verify") return Verify(a);
  if (a.command == "first-ack") return FirstAck(a);
  if (a.command == "max-gap") return MaxGap(a);
  return Usage("unknown command " + a.command);
}

}  // namespace
}  // namespace hamirror::itest

int main(int argc, char** argv) { return hamirror::itest::Main(argc, argv); }
