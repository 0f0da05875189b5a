// Acceptance test (reintegration, docs/reintegration.md): the whole cycle of losing and getting back a
// node under a real database. MariaDB runs a bank workload on a hamirror-fs primary; mariadbd and the
// primary hamirror-fs are SIGKILLed at the same instant under load. The secondary's hamirror-fs goes
// alone in place (writable), MariaDB recovers on it with every acknowledged commit, and a new bank
// workload keeps writing there. The old primary's directory returns as a secondary (its record, left in
// the pair's state directory, says it ended uncleanly as a primary); the survivor links to it and a
// resync brings it up to date while the clients keep writing. The resync must have been a full checksum
// compare asked for by the returning node's own record, and once the writes stopped both directories
// must be identical (CompareTrees through both mounts: content, metadata, mtimes, links, xattrs).
//
// Env: HAMIRROR_CRASH_SEED (crash instant and kill order, printed), HAMIRROR_RESYNC_TIMEOUT_S (bound on
// the reintegration, default 480), HAMIRROR_REINT_KEEP_DIR (keep the daemons' and MariaDB's logs there).
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <random>
#include <sstream>
#include <thread>

#include "proto/fs_control.grpc.pb.h"
#include "tests/integration/bank_workload.h"
#include "tests/integration/mirrored_mariadb.h"
#include "tests/integration/require_ok.h"
#include "tests/integration/sql_client.h"
#include "tests/integration/test_env.h"
#include "tests/support/tree_compare.h"

namespace hamirror::itest {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::seconds;

long Ms(Clock::duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }

// `hamirror-fs ctl --control SOCK ARGS...`: exit code and combined output.
int Ctl(const std::string& socket, std::vector<std::string> args, std::string* output,
        std::chrono::milliseconds timeout = seconds(30)) {
  std::vector<std::string> argv = {HamirrorFsBinary(), "ctl", "--control", socket};
  argv.insert(argv.end(), args.begin(), args.end());
  int code = -1;
  Status s = test::RunCommand(argv, timeout, &code, output);
  if (!s.ok()) {
    *output += "\n(" + s.ToString() + ")";
    return -1;
  }
  return code;
}

// The JSON object a ctl command printed (its first '{' to its last '}'), parsed into an FsStatus.
Status ParseStatus(const std::string& output, proto::FsStatus* out) {
  const size_t open = output.find('{');
  const size_t close = output.rfind('}');
  if (open == std::string::npos || close == std::string::npos || close < open)
    return Status::InvalidArgument("no JSON in ctl output: " + output);
  google::protobuf::util::JsonParseOptions o;
  o.ignore_unknown_fields = true;
  auto ps = google::protobuf::util::JsonStringToMessage(output.substr(open, close - open + 1), out, o);
  if (!ps.ok()) return Status::InvalidArgument("ctl JSON: " + ps.ToString() + ": " + output);
  return Status::Ok();
}

// `ctl status`, parsed.
Status CtlStatus(const std::string& socket, proto::FsStatus* out) {
  std::string output;
  const int code = Ctl(socket, {"status"}, &output, seconds(10));
  if (code != 0) return Status::Unavailable("ctl status exit " + std::to_string(code) + ": " + output);
  return ParseStatus(output, out);
}

// What hamirrord does to make a secondary writable alone (docs/operations.md: "alone (asked as 'primary
// without a peer')"): SetRole(PRIMARY) without a peer, through the control socket.
Status SetPrimaryWithoutPeer(const std::string& socket) {
  auto stub =
      proto::FsControl::NewStub(grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + seconds(10));
  proto::SetRoleRequest req;
  req.set_role(proto::FS_ROLE_PRIMARY);
  proto::FsStatus st;
  grpc::Status g = stub->SetRole(&ctx, req, &st);
  if (!g.ok()) return Status::Unavailable("SetRole(primary, no peer): " + g.error_message());
  if (st.role() != proto::FS_ROLE_ALONE)
    return Status::Internal("SetRole(primary, no peer) left role " + proto::FsRole_Name(st.role()));
  return Status::Ok();
}

std::string ResyncLine(const proto::FsResync& r) {
  std::ostringstream o;
  o << "phase=" << r.phase() << " id=" << r.id() << " full=" << r.full() << " reason=\"" << r.reason()
    << "\" pass=" << r.pass() << " files=" << r.files_done() << "/" << r.files_total()
    << " bytes_done=" << r.bytes_done() << "/" << r.bytes_total() << " bytes_sent=" << r.bytes_sent()
    << " wire_bytes=" << r.wire_bytes() << " elapsed_s=" << r.elapsed_s() << " error=\"" << r.error() << "\"";
  return o.str();
}

// The old primary's directory served again, as a secondary. Stopped before the pair (and the temporary
// directory) go: declared after the MirroredMariaDb it lives in.
struct ReturningSecondary {
  test::Daemon daemon;
  std::string dir;
  ~ReturningSecondary() {
    daemon.Kill();
    if (!dir.empty()) test::UnmountTree(dir);
  }
};

TEST_CASE(
    "MariaDB: primary crash under load, failover, the old primary returns and ends byte-identical after a "
    "resync",
    "[mariadb][hamirror][resync]") {
  const long seed = EnvLong("HAMIRROR_CRASH_SEED", static_cast<long>(std::random_device{}() & 0x7fffffff));
  std::mt19937 rng(static_cast<unsigned>(seed));
  std::cout << "reintegration-test: seed=" << seed << std::endl;

  MirroredMariaDb env("hm-reint");
  MirrorPair& pair = env.pair;
  MariaDbServer& primary_db = env.primary_db;
  MariaDbServer& secondary_db = env.secondary_db;
  const std::string base = pair.control_socket().substr(0, pair.control_socket().rfind('/'));
  const std::string survivor_ctl = pair.secondary_control_socket();  // the new primary
  const std::string returning_ctl = base + "/old-primary.ctl";
  ReturningSecondary returning;  // after env: stopped first
  returning.dir = pair.primary_dir();
  // With HAMIRROR_REINT_KEEP_DIR set, the daemons' logs and MariaDB's error logs are kept there.
  struct KeepLogs {
    const MirroredMariaDb& env;
    ~KeepLogs() {
      const char* keep = std::getenv("HAMIRROR_REINT_KEEP_DIR");
      if (keep == nullptr || *keep == '\0') return;
      const std::string dest = std::string(keep) + "/" + env.tmp.path().substr(env.tmp.path().rfind('/') + 1);
      (void)MakeDirs(dest);
      for (const std::string& f :
           {env.tmp.Sub("m/secondary.log"), env.tmp.Sub("m/primary.log"), env.tmp.Sub("m/old-primary.log"),
            env.primary_db.error_log(), env.secondary_db.error_log()}) {
        const std::string name = f.substr(f.rfind('/', f.rfind('/') - 1) + 1);
        std::string flat = name;
        for (char& c : flat)
          if (c == '/') c = '_';
        (void)test::RunProgram({"/bin/cp", f, dest + "/" + flat}, "/dev/null", seconds(30));
      }
      std::cout << "reintegration-test: logs kept in " << dest << std::endl;
    }
  } keep_logs{env};
  auto diagnostics = [&] {
    return pair.LogTails() + "--- returning old primary (secondary) log tail:\n" +
           test::FileTail(base + "/old-primary.log", 3000) +
           "--- MariaDB on the survivor, error log tail:\n" + secondary_db.ErrorLogTail(3000);
  };

  // ---- 1. Load on the primary, then SIGKILL mariadbd and the primary hamirror-fs at one instant.
  REQUIRE_OK(env.StartPrimary());
  {
    // The pair's first resync (both records are new: a full compare of the nearly empty tree) must have
    // ended, so that what the survivor's record says later is its own history only.
    proto::FsStatus st;
    const bool synced =
        test::WaitUntil([&] { return pair.PrimaryStatus(&st).ok() && st.in_sync(); }, seconds(60));
    INFO("primary: in_sync=" << st.in_sync() << " resync: " << ResyncLine(st.resync()) << "\n"
                             << diagnostics());
    REQUIRE(synced);
  }
  BankWorkload bank(primary_db.socket_path(), BankOptions());
  REQUIRE_OK(bank.Setup());
  REQUIRE_OK(bank.StartClients());
  const auto load_start = Clock::now();
  REQUIRE(test::WaitUntil([&] { return bank.acknowledged() >= 100; }, seconds(60)));
  std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 3000)(rng)));
  proto::FsStatus before_crash;
  REQUIRE_OK(pair.PrimaryStatus(&before_crash));
  const bool fs_first = std::uniform_int_distribution<int>(0, 1)(rng) == 1;
  if (fs_first) {
    pair.SignalKillPrimary();
    primary_db.SignalKill();
  } else {
    primary_db.SignalKill();
    pair.SignalKillPrimary();
  }
  const long load_ms = Ms(Clock::now() - load_start);
  primary_db.Kill();         // reap
  pair.ReapKilledPrimary();  // reap, lazily unmount the dead mount
  bank.Stop();
  std::cout << "reintegration-test: crash after " << load_ms << " ms of load, " << bank.acknowledged()
            << " commits acknowledged, kill_first=" << (fs_first ? "hamirror-fs" : "mariadbd") << std::endl;
  CHECK(before_crash.role() == proto::FS_ROLE_PRIMARY);
  CHECK(before_crash.peer_errors() == 0);

  // ---- 2. Failover in place: the secondary's hamirror-fs goes alone (writable), MariaDB recovers there.
  {
    std::string out;
    const int code = Ctl(survivor_ctl, {"role", "alone"}, &out);
    INFO("hamirror-fs ctl role alone on the secondary: exit " << code << ": " << out);
    // docs/datapath.md lists `ctl role alone`; a secondary refuses FS_ROLE_ALONE ("ask for primary
    // without a peer") and ctl cannot ask for primary without --peer. Recorded as a failure, then the
    // failover goes on the way hamirrord does it.
    CHECK(code == 0);
    if (code != 0) REQUIRE_OK(SetPrimaryWithoutPeer(survivor_ctl));
  }
  {
    proto::FsStatus st;
    REQUIRE_OK(CtlStatus(survivor_ctl, &st));
    INFO("survivor after the failover: role=" << proto::FsRole_Name(st.role())
                                              << " last_error=" << st.last_error());
    REQUIRE(st.role() == proto::FS_ROLE_ALONE);
  }
  const auto recovery_start = Clock::now();
  {
    Status s = secondary_db.Start();
    INFO(s.ToString() << "\n" << diagnostics());
    REQUIRE(s.ok());
  }
  const long recovery_ms = Ms(Clock::now() - recovery_start);
  {
    BankReport report;
    Status s = bank.Verify(secondary_db.socket_path(), &report);
    std::cout << "reintegration-test: recovery on the survivor " << recovery_ms << " ms, verify "
              << (s.ok() ? "PASS " : "FAIL ") << report.ToString() << std::endl;
    INFO(s.ToString() << " " << report.ToString());
    REQUIRE(s.ok());
  }
  BankOptions more_options;
  more_options.first_client_id = 100;  // ids apart from the first workload's
  BankWorkload more(secondary_db.socket_path(), more_options);
  REQUIRE_OK(more.StartClients());
  REQUIRE(test::WaitUntil([&] { return more.acknowledged() >= 50; }, seconds(60)));

  // ---- 3. The old primary's directory returns as a secondary; the survivor links to it: a resync.
  const int port = test::PickFreePort();
  REQUIRE(port > 0);
  const std::string addr = "127.0.0.1:" + std::to_string(port);
  REQUIRE_OK(returning.daemon.Start({HamirrorFsBinary(), "secondary", "--dir", pair.primary_dir(), "--listen",
                                     addr, "--control", returning_ctl, "--insecure"},
                                    base + "/old-primary.log"));
  {
    Status s = test::WaitForMount(pair.primary_dir(), returning.daemon.pid(), seconds(30));
    INFO(s.ToString() << "\n" << diagnostics());
    REQUIRE(s.ok());
    REQUIRE(test::WaitUntil([&] { return IsListening(port) || returning.daemon.Exited(); }, seconds(30)));
    INFO(diagnostics());
    REQUIRE(returning.daemon.running());
    REQUIRE(IsListening(port));
  }
  const uint64_t acks_at_link = more.acknowledged();
  const auto resync_start = Clock::now();
  {
    std::string out;
    const int code = Ctl(survivor_ctl, {"role", "primary", "--peer", addr}, &out);
    INFO("ctl role primary --peer " << addr << ": exit " << code << ": " << out);
    REQUIRE(code == 0);
  }
  proto::FsStatus source, target;
  Status source_s, target_s;
  auto reintegrated = [&] {
    source_s = CtlStatus(survivor_ctl, &source);
    target_s = CtlStatus(returning_ctl, &target);
    return source_s.ok() && target_s.ok() && source.resync().phase() == "done" && source.in_sync() &&
           target.resync_target().phase() == "done";
  };
  bool done = false;
  long last_print_ms = -10000;
  const auto resync_deadline = Clock::now() + seconds(EnvLong("HAMIRROR_RESYNC_TIMEOUT_S", 480));
  while (!(done = reintegrated()) && Clock::now() < resync_deadline) {
    if (returning.daemon.Exited()) break;
    if (const long ms = Ms(Clock::now() - resync_start); ms - last_print_ms >= 10000) {
      last_print_ms = ms;
      std::cout << "reintegration-test: +" << ms / 1000 << " s: " << ResyncLine(source.resync())
                << " in_sync=" << source.in_sync() << " target=" << target.resync_target().phase()
                << " acks=" << more.acknowledged() << std::endl;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));  // poll interval
  }
  const long resync_ms = Ms(Clock::now() - resync_start);
  const uint64_t acks_during_resync = more.acknowledged() - acks_at_link;
  std::cout << "reintegration-test: reintegrated=" << done << " after " << resync_ms << " ms; "
            << ResyncLine(source.resync()) << "; target phase=" << target.resync_target().phase()
            << " id=" << target.resync_target().id()
            << "; commits acknowledged meanwhile=" << acks_during_resync << std::endl;
  {
    INFO("source: " << source_s.ToString() << " in_sync=" << source.in_sync() << " "
                    << ResyncLine(source.resync()) << "\ntarget: " << target_s.ToString()
                    << " phase=" << target.resync_target().phase() << "\n"
                    << diagnostics());
    REQUIRE(done);
  }

  // Attempts that failed before the last one (each is logged by the survivor, then retried after a pause).
  size_t failed_attempts = 0;
  {
    const std::string log = test::FileTail(base + "/secondary.log", 1 << 20);
    for (size_t at = log.find("resync: attempt "); at != std::string::npos;
         at = log.find("resync: attempt ", at + 1))
      ++failed_attempts;
  }
  std::cout << "reintegration-test: failed resync attempts before the last: " << failed_attempts << std::endl;

  // ---- 4. A full compare, asked for by the returning node's own record (it ended as a primary uncleanly).
  CHECK(source.resync().full());
  CHECK_THAT(source.resync().reason(), Catch::Contains("peer's own record"));
  CHECK(source.resync().bytes_done() > 0);
  CHECK(acks_during_resync > 0);  // the clients kept writing across the link-up and the resync
  std::cout << "reintegration-test: resync bytes_done=" << source.resync().bytes_done()
            << " bytes_sent=" << source.resync().bytes_sent() << " elapsed_s=" << source.resync().elapsed_s()
            << " files=" << source.resync().files_done() << " passes=" << source.resync().pass()
            << " wire_bytes=" << source.resync().wire_bytes() << std::endl;

  // ---- 5. Writes end; both copies must be identical.
  more.Stop();
  {
    SqlClient c;
    std::string total;
    REQUIRE_OK(c.Connect(secondary_db.socket_path(), "bank"));
    REQUIRE_OK(c.QueryValue("SELECT SUM(balance) FROM accounts", &total));
    CHECK(total == std::to_string(BankOptions().accounts * BankOptions().initial_balance));
  }
  std::cout << "reintegration-test: commits acknowledged on the survivor " << more.acknowledged()
            << std::endl;
  REQUIRE_OK(secondary_db.Stop());
  {
    const bool synced = test::WaitUntil(
        [&] { return CtlStatus(survivor_ctl, &source).ok() && source.in_sync() && source.inflight() == 0; },
        seconds(60));
    INFO("survivor: in_sync=" << source.in_sync() << " inflight=" << source.inflight() << " peer_errors="
                              << source.peer_errors() << " " << ResyncLine(source.resync()));
    REQUIRE(synced);
  }
  // Error acks from the returning node (live operations on parts of its tree the resync had not fixed
  // yet, docs/reintegration.md section 3): each one is recorded and covered by the resync.
  std::cout << "reintegration-test: survivor peer_errors=" << source.peer_errors()
            << " reconnects=" << source.reconnects() << " resync id=" << source.resync().id() << std::endl;
  const auto compare_start = Clock::now();
  const std::string difference = test::CompareTrees(pair.secondary_dir(), pair.primary_dir());
  std::cout << "reintegration-test: CompareTrees " << (difference.empty() ? "identical" : difference) << " ("
            << Ms(Clock::now() - compare_start) << " ms)" << std::endl;
  {
    INFO(diagnostics());
    CHECK(difference == "");
  }
  {
    std::string out;
    const int code = Ctl(survivor_ctl, {"verify", "--wait", "--timeout", "300"}, &out, seconds(330));
    proto::FsStatus st;
    const Status ps = ParseStatus(out, &st);
    std::cout << "reintegration-test: ctl verify exit " << code << ": "
              << (ps.ok()
                      ? ResyncLine(st.verify()) + " differences=" + std::to_string(st.verify().differences())
                      : out)
              << std::endl;
    INFO(out);
    CHECK(code == 0);
  }

  // ---- 6. Clean stops: both daemons exit 0 and unmount (the env's destructor kills what is left).
  CHECK_OK(pair.StopSecondary());
  {
    Status s = returning.daemon.Stop(seconds(30));
    INFO(s.ToString() << "\n" << diagnostics());
    CHECK(s.ok());
    CHECK_FALSE(test::IsMountedAs(pair.primary_dir()));
  }
}

}  // namespace
}  // namespace hamirror::itest
