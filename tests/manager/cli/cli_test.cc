// The `hamirror` binary against a real admin server (unix socket) with a fake node.
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <mutex>

#include "manager/admin/admin_server.h"
#include "manager/cli/format.h"

using namespace hamirror;
using namespace hamirror::admin;

namespace {

class FakeNode : public NodeControl {
 public:
  explicit FakeNode(std::string dir) : log_path_(dir + "/m.log") {
    REQUIRE(ModuleLog::Open(log_path_, false, &log_).ok());
  }
  void FillState(bool verbose, proto::StateReply* r) override {
    std::lock_guard<std::mutex> lock(mu);
    ++state_calls;
    r->set_module("m");
    r->mutable_local()->set_node("n1");
    r->mutable_local()->set_state(state);
    r->mutable_local()->set_sub_state(proto::SUB_STATE_READY);
    r->mutable_peer()->set_node("n2");
    r->set_boot(boot);
    r->set_failover(true);
    r->set_errd("suspended");
    r->set_checkers_enabled(false);
    if (verbose) {
      auto* v = r->add_vips();
      v->set_addr("198.18.0.50");
      v->set_held(true);
      auto* c = r->add_checkers();
      c->set_kind("tcp");
      c->set_name("db");
      c->set_ok(true);
      auto* p = r->add_processes();
      p->set_name("mysqld");
      p->set_count(1);
      p->set_atleast(1);
      p->set_atmax(-1);
      p->set_ok(true);
      p->set_active(true);
      p->set_action("restart");
    }
  }
  CommandResult Execute(Command cmd) override {
    std::lock_guard<std::mutex> lock(mu);
    last = cmd;
    if (cmd == Command::kPrimforce) return CommandResult::Refused("peer is PRIM");
    return CommandResult::Accepted();
  }
  CommandResult SetToggle(Toggle what, ToggleSetting how) override {
    std::lock_guard<std::mutex> lock(mu);
    last_toggle = std::string(ToggleName(what)) + " " + ToggleSettingName(how);
    if (what == Toggle::kBoot) boot = how == ToggleSetting::kOn;
    if (what == Toggle::kErrd && how == ToggleSetting::kResume) return CommandResult::Refused("errd is off");
    return CommandResult::Accepted();
  }
  CommandResult Verify(bool repair) override {
    std::lock_guard<std::mutex> lock(mu);
    verifies.push_back(repair);
    return CommandResult::Accepted();
  }
  void Print(ModuleLog::Level level, const std::string& msg) override { log_->Write(level, msg); }
  std::string LogPath() override { return log_path_; }

  std::mutex mu;
  proto::NodeState state = proto::NODE_STATE_WAIT;
  int state_calls = 0;
  Command last = Command::kStart;
  std::string last_toggle;
  bool boot = false;
  std::vector<bool> verifies;  // repair flag of each verify

 private:
  std::string log_path_;
  std::unique_ptr<ModuleLog> log_;
};

struct Run {
  int rc;
  std::string out;
};

Run Cli(const std::string& args) {
  std::string cmd = std::string(HAMIRROR_CLI_BIN) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int st = pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

}  // namespace

TEST_CASE("cli: state -lq exit codes follow SafeKit", "[cli]") {
  CHECK(cli::StateExitCode(proto::NODE_STATE_STOP) == 0);
  CHECK(cli::StateExitCode(proto::NODE_STATE_WAIT) == 1);
  CHECK(cli::StateExitCode(proto::NODE_STATE_ALONE) == 2);
  CHECK(cli::StateExitCode(proto::NODE_STATE_PRIM) == 3);
  CHECK(cli::StateExitCode(proto::NODE_STATE_SECOND) == 4);
}

TEST_CASE("cli: verbs against a running admin server", "[cli]") {
  char tmpl[] = "/tmp/hamirror-cli-XXXXXX";
  REQUIRE(mkdtemp(tmpl));
  std::string dir = tmpl;
  FakeNode node(dir);
  AdminServerOptions opt;
  opt.unix_path = dir + "/m.sock";
  std::unique_ptr<AdminServer> server;
  REQUIRE(AdminServer::Start(opt, &node, &server).ok());
  const std::string s = "--socket " + opt.unix_path + " ";

  for (auto [st, rc] : {std::pair{proto::NODE_STATE_STOP, 0},
                        {proto::NODE_STATE_WAIT, 1},
                        {proto::NODE_STATE_ALONE, 2},
                        {proto::NODE_STATE_PRIM, 3},
                        {proto::NODE_STATE_SECOND, 4}}) {
    {
      std::lock_guard<std::mutex> lock(node.mu);
      node.state = st;
    }
    CHECK(Cli(s + "state -lq").rc == rc);
  }
  Run r = Cli(s + "state -v");
  CHECK(r.rc == 0);
  CHECK(r.out.find("\nstate         SECOND (Ready)") != std::string::npos);
  CHECK(r.out.find("vip 198.18.0.50: held") != std::string::npos);
  CHECK(r.out.find('\033') == std::string::npos);  // not a terminal: no colour
  r = Cli(s + "state --json");
  CHECK(r.rc == 0);
  CHECK(r.out.find("\"state\": \"second\"") != std::string::npos);

  // Every plain verb reaches the node as its command (docs/operations.md's verb table).
  for (auto [verb, cmd] : {std::pair{"start", Command::kStart},
                           {"stop", Command::kStop},
                           {"restart", Command::kRestart},
                           {"forcestop", Command::kForcestop},
                           {"prim", Command::kPrim},
                           {"second", Command::kSecond},
                           {"resync", Command::kResync},
                           {"rfssync", Command::kResync},
                           {"stopstart", Command::kStopStart},
                           {"swap nosync", Command::kSwapNosync}}) {
    {
      std::lock_guard<std::mutex> lock(node.mu);
      node.last = Command::kPrimforce;  // none of the verbs above
    }
    INFO(verb);
    CHECK(Cli(s + verb).rc == 0);
    std::lock_guard<std::mutex> lock(node.mu);
    CHECK(node.last == cmd);
  }
  CHECK(Cli(s + "second fullsync").rc == 0);
  CHECK(node.last == Command::kSecondFullsync);
  CHECK(Cli(s + "swap").rc == 0);
  CHECK(node.last == Command::kSwap);
  r = Cli(s + "primforce");
  CHECK(r.rc == 1);
  CHECK(r.out.find("primforce refused: peer is PRIM") != std::string::npos);
  CHECK(Cli(s + "second bogus").rc == 64);

  CHECK(Cli(s + "printw disk almost full").rc == 0);
  r = Cli(s + "log -n 1");
  CHECK(r.rc == 0);
  CHECK(r.out.find(" W disk almost full") != std::string::npos);

  server->Shutdown();
  r = Cli(s + "stop");
  CHECK(r.rc == 2);
  CHECK(r.out.find("hamirrord is not running") != std::string::npos);
  CHECK(Cli(s + "state -lq").rc == 0);  // not running counts as STOP
  std::filesystem::remove_all(dir);
}

TEST_CASE("cli: SafeKit verbs stopstart, swap nosync, toggles and the rfs names", "[cli]") {
  char tmpl[] = "/tmp/hamirror-cli-XXXXXX";
  REQUIRE(mkdtemp(tmpl));
  std::string dir = tmpl;
  FakeNode node(dir);
  AdminServerOptions opt;
  opt.unix_path = dir + "/m.sock";
  std::unique_ptr<AdminServer> server;
  REQUIRE(AdminServer::Start(opt, &node, &server).ok());
  const std::string s = "--socket " + opt.unix_path + " ";
  auto last = [&] {
    std::lock_guard<std::mutex> lock(node.mu);
    return node.last;
  };
  auto last_toggle = [&] {
    std::lock_guard<std::mutex> lock(node.mu);
    return node.last_toggle;
  };

  CHECK(Cli(s + "stopstart").rc == 0);
  CHECK(last() == Command::kStopStart);
  CHECK(Cli(s + "swap nosync").rc == 0);
  CHECK(last() == Command::kSwapNosync);
  CHECK(Cli(s + "swap").rc == 0);
  CHECK(last() == Command::kSwap);
  CHECK(Cli(s + "swap bogus").rc == 64);
  CHECK(Cli(s + "rfssync").rc == 0);
  CHECK(last() == Command::kResync);

  for (const char* t : {"errd on", "errd off", "errd suspend", "checker on", "checker off", "boot on",
                        "boot off", "failover on", "failover off"}) {
    Run r = Cli(s + t);
    INFO(t << ": " << r.out);
    CHECK(r.rc == 0);
    CHECK(last_toggle() == t);
  }
  Run r = Cli(s + "errd resume");
  CHECK(r.rc == 1);
  CHECK(r.out.find("errd resume refused: errd is off") != std::string::npos);
  for (const char* bad : {"errd", "errd maybe", "checker suspend", "boot resume", "failover status"})
    CHECK(Cli(s + bad).rc == 64);
  CHECK(Cli(s + "boot on").rc == 0);
  r = Cli(s + "boot status");
  CHECK(r.rc == 0);
  CHECK(r.out == "boot on\n");
  CHECK(Cli(s + "boot off").rc == 0);
  CHECK(Cli(s + "boot status").out == "boot off\n");
  r = Cli(s + "state -v");
  CHECK(r.out.find("boot off, failover on, errd suspended, checker off") != std::string::npos);
  CHECK(r.out.find("check tcp db: not run (checker off)") != std::string::npos);
  CHECK(r.out.find("errd mysqld: 1 running (atleast 1) ok, action restart (errd suspended: not acted on)") !=
        std::string::npos);

  CHECK(Cli(s + "rfsverify --no-wait").rc == 0);
  CHECK(Cli(s + "rfsverify --repair --no-wait").rc == 0);
  CHECK(Cli(s + "rfsdiff --no-wait").rc == 0);
  CHECK(Cli(s + "rfsdiff --repair").rc == 64);  // rfsdiff lists, never repairs
  {
    std::lock_guard<std::mutex> lock(node.mu);
    CHECK(node.verifies == std::vector<bool>{false, true, false});
  }
  server->Shutdown();
  std::filesystem::remove_all(dir);
}

TEST_CASE("cli: state -v shows the mirror's peer errors and reconnects only when there are some", "[cli]") {
  proto::StateReply r;
  r.set_module("m");
  auto* f = r.add_fs();
  f->set_dir("/var/lib/mysql");
  f->set_running(true);
  f->set_role(proto::FS_ROLE_PRIMARY);
  f->set_peer_connected(true);
  std::string out = cli::FormatState(r, true);
  INFO(out);
  CHECK(out.find("fs /var/lib/mysql: ") != std::string::npos);
  CHECK(out.find("PEER ERRORS") == std::string::npos);
  CHECK(out.find("reconnects") == std::string::npos);
  f->set_peer_errors(3);
  f->set_reconnects(2);
  out = cli::FormatState(r, true);
  INFO(out);
  CHECK(out.find("PEER ERRORS 3 (peer copy behind)") != std::string::npos);
  CHECK(out.find("reconnects 2") != std::string::npos);
}

TEST_CASE("cli: state -w --count 2 prints two snapshots one interval apart, then exits", "[cli]") {
  char tmpl[] = "/tmp/hamirror-cli-XXXXXX";
  REQUIRE(mkdtemp(tmpl));
  std::string dir = tmpl;
  FakeNode node(dir);
  AdminServerOptions opt;
  opt.unix_path = dir + "/m.sock";
  std::unique_ptr<AdminServer> server;
  REQUIRE(AdminServer::Start(opt, &node, &server).ok());
  const std::string s = "--socket " + opt.unix_path + " ";

  const auto t0 = std::chrono::steady_clock::now();
  Run r = Cli(s + "state -w --interval 0.3 --count 2");
  const auto took = std::chrono::steady_clock::now() - t0;
  INFO(r.out);
  CHECK(r.rc == 0);
  CHECK(took >= std::chrono::milliseconds(300));
  size_t screens = 0;
  for (size_t p = r.out.find("hamirror state -w: "); p != std::string::npos;
       p = r.out.find("hamirror state -w: ", p + 1))
    ++screens;
  CHECK(screens == 2);
  CHECK(r.out.find("every 0.3 s") != std::string::npos);
  CHECK(r.out.find("\nstate         WAIT (Ready)") != std::string::npos);  // the -v screen
  CHECK(r.out.find('\033') == std::string::npos);                          // a pipe: appended, not redrawn
  {
    std::lock_guard<std::mutex> lock(node.mu);
    CHECK(node.state_calls == 2);
  }
  r = Cli(s + "state -w --count 1 --json");
  CHECK(r.rc == 0);
  CHECK(r.out.find("\"state\": \"wait\"") != std::string::npos);
  CHECK(Cli(s + "state -w --interval 0 --count 1").rc == 64);  // bounded below
  CHECK(Cli(s + "state --count 2").rc == 64);                  // only with -w
  server->Shutdown();
  std::filesystem::remove_all(dir);
}
