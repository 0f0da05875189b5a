// Module discovery of the `hamirror` binary (HAMIRROR_RUN_DIR = a scratch run directory) against real
// admin servers on unix sockets: it counts modules, not sockets, and `state -lq` never says STOP for a
// module whose socket exists. Also `safekit`, the name SafeKit's scripts call it by.
#include "manager/cli/discovery.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "manager/admin/admin_server.h"

using namespace hamirror;
using namespace hamirror::admin;

namespace {

// A module that is always in one state.
class FixedNode : public NodeControl {
 public:
  FixedNode(std::string log_path, proto::NodeState state) : log_path_(std::move(log_path)), state_(state) {
    REQUIRE(ModuleLog::Open(log_path_, false, &log_).ok());
  }
  void FillState(bool, proto::StateReply* r) override {
    r->set_module("m");
    r->mutable_local()->set_node("n1");
    r->mutable_local()->set_state(state_);
  }
  CommandResult Execute(Command) override { return CommandResult::Accepted(); }
  void Print(ModuleLog::Level level, const std::string& msg) override { log_->Write(level, msg); }
  std::string LogPath() override { return log_path_; }

 private:
  std::string log_path_;
  proto::NodeState state_;
  std::unique_ptr<ModuleLog> log_;
};

// A scratch run directory, and the module servers started in it.
class RunDirFixture {
 public:
  RunDirFixture() {
    char tmpl[] = "/tmp/hamirror-discovery-XXXXXX";
    REQUIRE(mkdtemp(tmpl));
    dir_ = tmpl;
  }
  ~RunDirFixture() {
    for (auto& s : servers_) s->Shutdown();
    for (int fd : listeners_) close(fd);
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  const std::string& dir() const { return dir_; }

  void StartModule(const std::string& name, proto::NodeState state) {
    nodes_.push_back(std::make_unique<FixedNode>(dir_ + "/" + name + ".log", state));
    AdminServerOptions opt;
    opt.unix_path = dir_ + "/" + name + ".sock";
    std::unique_ptr<AdminServer> server;
    REQUIRE(AdminServer::Start(opt, nodes_.back().get(), &server).ok());
    servers_.push_back(std::move(server));
  }

  // A socket file at path; with listen, a listener stays on it (a live hamirror-fs control socket),
  // without, nobody does (what a SIGKILLed daemon leaves).
  void MakeSocket(const std::string& path, bool listen) {
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    if (listen) {
      REQUIRE(::listen(fd, 4) == 0);
      listeners_.push_back(fd);
    } else {
      close(fd);  // the file stays
    }
  }

 private:
  std::string dir_;
  std::vector<std::unique_ptr<FixedNode>> nodes_;
  std::vector<std::unique_ptr<AdminServer>> servers_;
  std::vector<int> listeners_;
};

struct Run {
  int rc;
  std::string out;
};

// `program args` with HAMIRROR_RUN_DIR=run_dir and nothing else naming a module.
Run Exec(const std::string& program, const std::string& run_dir, const std::string& args) {
  const std::string cmd = "env -u HAMIRROR_SOCKET -u SAFEMODULE HAMIRROR_RUN_DIR=" + run_dir + " " + program +
                          " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int st = pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

Run Hamirror(const std::string& run_dir, const std::string& args) {
  return Exec(HAMIRROR_CLI_BIN, run_dir, args);
}

std::string SafekitBin() {
  return std::filesystem::path(HAMIRROR_CLI_BIN).parent_path().string() + "/safekit";
}

}  // namespace

TEST_CASE("cli: discovery lists admin sockets only, not fs/ nor plain files", "[cli][discovery]") {
  RunDirFixture f;
  f.StartModule("mysql", proto::NODE_STATE_PRIM);
  f.MakeSocket(f.dir() + "/fs/data.sock", true);  // hamirror-fs's control socket
  std::ofstream(f.dir() + "/notes.sock") << "not a socket\n";
  CHECK(cli::ListModuleSockets(f.dir()) == std::vector<std::string>{f.dir() + "/mysql.sock"});
  CHECK(cli::ListModuleSockets(f.dir() + "/missing").empty());
}

TEST_CASE("cli: state -lq without -m counts modules, not sockets", "[cli][discovery]") {
  RunDirFixture f;
  // Nothing runs: the module is stopped.
  Run r = Hamirror(f.dir(), "state -lq");
  CHECK(r.rc == 0);
  CHECK(r.out.empty());

  // One module, PRIM, with its mounted directory's control socket beside it: PRIM, not "several".
  f.StartModule("mysql", proto::NODE_STATE_PRIM);
  f.MakeSocket(f.dir() + "/fs/mysql.sock", true);
  r = Hamirror(f.dir(), "state -lq");
  INFO(r.out);
  CHECK(r.rc == 3);
  r = Hamirror(f.dir(), "state");
  CHECK(r.rc == 0);
  CHECK(r.out.find("local  n1: PRIM") != std::string::npos);

  // A second module: which one is meant cannot be told.
  f.StartModule("pgsql", proto::NODE_STATE_SECOND);
  r = Hamirror(f.dir(), "state -lq");
  CHECK(r.rc == 5);
  CHECK(r.out.find("state unknown: several modules are running") != std::string::npos);
  CHECK(Hamirror(f.dir(), "-m pgsql state -lq").rc == 4);
  CHECK(Hamirror(f.dir(), "state -lq -m mysql").rc == 3);  // -m after the verb, as SafeKit writes it
  r = Hamirror(f.dir(), "state");
  CHECK(r.rc == 2);
  CHECK(r.out.find("choose one with -m MODULE") != std::string::npos);
}

TEST_CASE("cli: state -lq on a socket nobody answers is unknown, not STOP", "[cli][discovery]") {
  RunDirFixture f;
  f.MakeSocket(f.dir() + "/mysql.sock", false);  // a daemon killed with SIGKILL leaves this
  Run r = Hamirror(f.dir(), "state -lq");
  CHECK(r.rc == 5);
  CHECK(r.out.find("state unknown: hamirrord at " + f.dir() + "/mysql.sock does not answer") !=
        std::string::npos);
  CHECK(std::count(r.out.begin(), r.out.end(), '\n') == 1);  // one line
  CHECK(Hamirror(f.dir(), "-m mysql state -lq").rc == 5);
  // No socket at all for the module named: stopped.
  CHECK(Hamirror(f.dir(), "-m other state -lq").rc == 0);
}

TEST_CASE("cli: safekit is hamirror under SafeKit's name and argument order", "[cli][discovery]") {
  REQUIRE(std::filesystem::is_symlink(SafekitBin()));
  RunDirFixture f;
  f.StartModule("mysql", proto::NODE_STATE_SECOND);
  f.StartModule("other", proto::NODE_STATE_PRIM);
  CHECK(Exec(SafekitBin(), f.dir(), "state -m mysql -lq").rc == 4);
  CHECK(Exec(SafekitBin(), f.dir(), "state -lq -m other").rc == 3);
  Run r = Exec(SafekitBin(), f.dir(), "printw -m mysql \"Starting MySQL Server\"");
  INFO(r.out);
  CHECK(r.rc == 0);
  r = Exec(SafekitBin(), f.dir(), "log -m mysql -n 1");
  CHECK(r.rc == 0);
  CHECK(r.out.find(" W Starting MySQL Server") != std::string::npos);
  // As a user script calls it: the module comes from the environment hamirrord exports.
  r = Exec("SAFEMODULE=other " + SafekitBin(), f.dir(), "printi \"from a script\"");
  CHECK(r.rc == 0);
  CHECK(Exec(SafekitBin(), f.dir(), "-m other log -n 1").out.find(" I from a script") != std::string::npos);
  // Unknown verbs are refused as usage errors, by this name too.
  r = Exec(SafekitBin(), f.dir(), "bogusverb");
  CHECK(r.rc == 64);
}
