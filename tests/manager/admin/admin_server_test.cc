// Real gRPC over a real unix socket against a fake NodeControl.
#include "manager/admin/admin_server.h"

#include <grpcpp/grpcpp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <filesystem>
#include <mutex>
#include <thread>

#include "manager/admin/client.h"

using namespace hamirror;
using namespace hamirror::admin;

namespace {

class FakeNode : public NodeControl {
 public:
  explicit FakeNode(std::string log_path) : log_path_(std::move(log_path)) {
    REQUIRE(ModuleLog::Open(log_path_, false, &log_).ok());
  }
  void FillState(bool verbose, proto::StateReply* r) override {
    r->set_module("mod");
    r->mutable_local()->set_node("n1");
    r->mutable_local()->set_state(proto::NODE_STATE_WAIT);
    if (verbose) r->add_heartbeats()->set_network("default");
  }
  CommandResult Execute(Command cmd) override {
    std::lock_guard<std::mutex> lock(mu_);
    commands.push_back(cmd);
    if (cmd == Command::kSwap) return CommandResult::Refused("not PRIM");
    return CommandResult::Accepted();
  }
  CommandResult SetToggle(Toggle what, ToggleSetting how) override {
    std::lock_guard<std::mutex> lock(mu_);
    toggles.emplace_back(what, how);
    return CommandResult::Accepted(std::string(ToggleName(what)) + " " + ToggleSettingName(how));
  }
  void Print(ModuleLog::Level level, const std::string& msg) override { log_->Write(level, msg); }
  std::string LogPath() override { return log_path_; }
  ModuleLog& log() { return *log_; }

  std::mutex mu_;
  std::vector<Command> commands;
  std::vector<std::pair<Toggle, ToggleSetting>> toggles;

 private:
  std::string log_path_;
  std::unique_ptr<ModuleLog> log_;
};

std::string TempDir() {
  char tmpl[] = "/tmp/hamirror-admin-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  return tmpl;
}

}  // namespace

TEST_CASE("admin: commands, state, print and log over the unix socket", "[admin]") {
  std::string dir = TempDir();
  FakeNode node(dir + "/mod.log");
  AdminServerOptions opt;
  opt.unix_path = dir + "/mod.sock";
  std::unique_ptr<AdminServer> server;
  REQUIRE(AdminServer::Start(opt, &node, &server).ok());
  struct stat st;
  REQUIRE(stat(opt.unix_path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);

  auto stub = ConnectUnix(opt.unix_path);
  {
    grpc::ClientContext ctx;
    proto::StateRequest req;
    req.set_verbose(true);
    proto::StateReply rep;
    REQUIRE(stub->State(&ctx, req, &rep).ok());
    CHECK(rep.module() == "mod");
    CHECK(rep.local().state() == proto::NODE_STATE_WAIT);
    CHECK(rep.heartbeats_size() == 1);
  }
  {
    grpc::ClientContext ctx;
    proto::SecondRequest req;
    req.set_fullsync(true);
    proto::CommandReply rep;
    REQUIRE(stub->Second(&ctx, req, &rep).ok());
    CHECK(rep.accepted());
  }
  {
    grpc::ClientContext ctx;
    proto::CommandReply rep;
    REQUIRE(stub->Swap(&ctx, proto::CommandRequest(), &rep).ok());
    CHECK_FALSE(rep.accepted());
    CHECK(rep.reason() == "not PRIM");
  }
  {
    grpc::ClientContext ctx;
    proto::CommandReply rep;
    REQUIRE(stub->Verify(&ctx, proto::VerifyRequest(), &rep).ok());
    CHECK_FALSE(rep.accepted());  // the fake node has no verify: refused, never pretended
    CHECK(rep.reason() == "verify: not implemented here");
  }
  {
    std::lock_guard<std::mutex> lock(node.mu_);
    REQUIRE(node.commands.size() == 2);
    CHECK(node.commands[0] == Command::kSecondFullsync);
    CHECK(node.commands[1] == Command::kSwap);
  }
  {
    grpc::ClientContext ctx;
    proto::PrintRequest req;
    req.set_level(proto::PrintRequest::WARNING);
    req.set_message("hello from a script");
    proto::CommandReply rep;
    REQUIRE(stub->Print(&ctx, req, &rep).ok());
  }
  {
    // log -n 1 -f: the printed line, then a line written later arrives on the stream.
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    proto::LogRequest req;
    req.set_tail(1);
    req.set_follow(true);
    auto reader = stub->Log(&ctx, req);
    proto::LogLine line;
    REQUIRE(reader->Read(&line));
    CHECK(line.line().find(" W hello from a script") != std::string::npos);
    node.log().Error("later");
    REQUIRE(reader->Read(&line));
    CHECK(line.line().find(" E later") != std::string::npos);
    ctx.TryCancel();
    while (reader->Read(&line)) {
    }
    reader->Finish();
  }
  server->Shutdown();
  CHECK_FALSE(std::filesystem::exists(opt.unix_path));
  std::filesystem::remove_all(dir);
}

TEST_CASE("admin: stopstart, swap nosync and the runtime toggles reach the node", "[admin]") {
  std::string dir = TempDir();
  FakeNode node(dir + "/mod.log");
  AdminServerOptions opt;
  opt.unix_path = dir + "/mod.sock";
  std::unique_ptr<AdminServer> server;
  REQUIRE(AdminServer::Start(opt, &node, &server).ok());
  auto stub = ConnectUnix(opt.unix_path);
  proto::CommandReply rep;
  {
    grpc::ClientContext ctx;
    REQUIRE(stub->StopStart(&ctx, proto::CommandRequest(), &rep).ok());
    CHECK(rep.accepted());
  }
  {
    grpc::ClientContext ctx;
    REQUIRE(stub->SwapNosync(&ctx, proto::CommandRequest(), &rep).ok());
    CHECK(rep.accepted());
  }
  auto toggle = [&](proto::ToggleRequest::What what, proto::ToggleRequest::Setting setting) {
    grpc::ClientContext ctx;
    proto::ToggleRequest req;
    req.set_what(what);
    req.set_setting(setting);
    REQUIRE(stub->Toggle(&ctx, req, &rep).ok());
    return rep;
  };
  CHECK(toggle(proto::ToggleRequest::TOGGLE_ERRD, proto::ToggleRequest::TOGGLE_SUSPEND).reason() ==
        "errd suspend");
  CHECK(toggle(proto::ToggleRequest::TOGGLE_CHECKER, proto::ToggleRequest::TOGGLE_OFF).accepted());
  CHECK(toggle(proto::ToggleRequest::TOGGLE_BOOT, proto::ToggleRequest::TOGGLE_ON).accepted());
  CHECK(toggle(proto::ToggleRequest::TOGGLE_FAILOVER, proto::ToggleRequest::TOGGLE_OFF).accepted());
  // Refused by the server itself (never reach the node): suspend is errd's only, and a setting is needed.
  proto::CommandReply bad = toggle(proto::ToggleRequest::TOGGLE_BOOT, proto::ToggleRequest::TOGGLE_SUSPEND);
  CHECK_FALSE(bad.accepted());
  CHECK(bad.reason() == "boot takes on or off");
  CHECK_FALSE(toggle(proto::ToggleRequest::TOGGLE_FAILOVER, proto::ToggleRequest::TOGGLE_SETTING_UNSPECIFIED)
                  .accepted());
  CHECK_FALSE(
      toggle(proto::ToggleRequest::TOGGLE_WHAT_UNSPECIFIED, proto::ToggleRequest::TOGGLE_ON).accepted());
  {
    std::lock_guard<std::mutex> lock(node.mu_);
    CHECK(node.commands == std::vector<Command>{Command::kStopStart, Command::kSwapNosync});
    using T = std::pair<Toggle, ToggleSetting>;
    CHECK(node.toggles == std::vector<T>{{Toggle::kErrd, ToggleSetting::kSuspend},
                                         {Toggle::kChecker, ToggleSetting::kOff},
                                         {Toggle::kBoot, ToggleSetting::kOn},
                                         {Toggle::kFailover, ToggleSetting::kOff}});
  }
  server->Shutdown();
  std::filesystem::remove_all(dir);
}

TEST_CASE("admin: a second server on a live socket is refused, a stale one replaced", "[admin]") {
  std::string dir = TempDir();
  FakeNode node(dir + "/mod.log");
  AdminServerOptions opt;
  opt.unix_path = dir + "/mod.sock";
  std::unique_ptr<AdminServer> a, b;
  REQUIRE(AdminServer::Start(opt, &node, &a).ok());
  Status st = AdminServer::Start(opt, &node, &b);
  CHECK_FALSE(st.ok());
  CHECK(st.ToString().find("already serves") != std::string::npos);
  a.reset();
  // A stale socket file (no listener) is taken over.
  {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", opt.unix_path.c_str());
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    close(fd);
  }
  REQUIRE(AdminServer::Start(opt, &node, &b).ok());
  grpc::ClientContext ctx;
  proto::AdminPing p;
  CHECK(ConnectUnix(opt.unix_path)->Ping(&ctx, p, &p).ok());
  b.reset();
  std::filesystem::remove_all(dir);
}

namespace {
// CA + one node certificate (SAN IP:127.0.0.1), and a certificate from another CA.
void MakeCerts(const std::string& d) {
  const std::string sh = "set -e; cd " + d +
                         "; "
                         "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "
                         "ca.key -out ca.pem -days 1 "
                         "-subj /CN=hm-ca 2>/dev/null; "
                         "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "
                         "rogue-ca.key -out rogue-ca.pem "
                         "-days 1 -subj /CN=rogue-ca 2>/dev/null; "
                         "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost' > ext; "
                         "for who in node:ca rogue:rogue-ca; do n=${who%%:*}; c=${who#*:}; "
                         "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $n.key -out "
                         "$n.csr -subj /CN=$n "
                         "2>/dev/null; openssl x509 -req -in $n.csr -CA $c.pem -CAkey $c.key -CAcreateserial "
                         "-out $n.pem -days 1 "
                         "-extfile ext 2>/dev/null; done";
  REQUIRE(system(sh.c_str()) == 0);
}
}  // namespace

TEST_CASE("admin: TCP with mutual TLS accepts the cluster's certificates only", "[admin]") {
  std::string dir = TempDir();
  MakeCerts(dir);
  FakeNode node(dir + "/mod.log");
  AdminServerOptions opt;
  opt.tcp_addr = "127.0.0.1:0";
  opt.tls_cert_file = dir + "/node.pem";
  opt.tls_key_file = dir + "/node.key";
  opt.tls_ca_file = dir + "/ca.pem";
  std::unique_ptr<AdminServer> server;
  REQUIRE(AdminServer::Start(opt, &node, &server).ok());
  REQUIRE(server->tcp_port() > 0);
  const std::string target = "127.0.0.1:" + std::to_string(server->tcp_port());
  std::string err;
  {
    auto stub = ConnectTls(target, dir + "/ca.pem", dir + "/node.pem", dir + "/node.key", &err);
    REQUIRE(stub);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    proto::StateReply rep;
    REQUIRE(stub->State(&ctx, proto::StateRequest(), &rep).ok());
    CHECK(rep.module() == "mod");
  }
  {
    // A client certificate from another CA is refused in the handshake.
    auto stub = ConnectTls(target, dir + "/ca.pem", dir + "/rogue.pem", dir + "/rogue.key", &err);
    REQUIRE(stub);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    proto::CommandReply rep;
    CHECK_FALSE(stub->Stop(&ctx, proto::CommandRequest(), &rep).ok());
  }
  {
    std::lock_guard<std::mutex> lock(node.mu_);
    CHECK(node.commands.empty());
  }
  CHECK_FALSE(ConnectTls(target, dir + "/missing.pem", dir + "/node.pem", dir + "/node.key", &err));
  CHECK(err.find("missing.pem") != std::string::npos);
  server.reset();
  std::filesystem::remove_all(dir);
}

// Run as `admin_test --probe-as-nobody SOCK`: drops to uid/gid 65534, calls Stop, exits with the
// gRPC status code. A fresh exec keeps gRPC's threads of this process out of the child.
int ProbeAsNobody(const char* sock) {
  if (setgid(65534) != 0 || setuid(65534) != 0) return 91;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  proto::CommandReply rep;
  return static_cast<int>(ConnectUnix(sock)->Stop(&ctx, proto::CommandRequest(), &rep).error_code());
}

TEST_CASE("admin: non-root callers get PERMISSION_DENIED", "[admin][root]") {
  if (geteuid() != 0) {
    WARN("needs root to switch uid; skipped");
    return;
  }
  std::string dir = TempDir();
  chmod(dir.c_str(), 0755);
  const std::string sock = dir + "/mod.sock";
  FakeNode node(dir + "/mod.log");
  AdminServerOptions opt;
  opt.unix_path = sock;
  opt.unix_mode = 0666;  // let the file mode through so the credential check is what refuses
  std::unique_ptr<AdminServer> server;
  REQUIRE(AdminServer::Start(opt, &node, &server).ok());
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    execl("/proc/self/exe", "admin_test", "--probe-as-nobody", sock.c_str(), nullptr);
    _exit(93);
  }
  int wst = 0;
  REQUIRE(waitpid(child, &wst, 0) == child);
  REQUIRE(WIFEXITED(wst));
  CHECK(WEXITSTATUS(wst) == static_cast<int>(grpc::StatusCode::PERMISSION_DENIED));
  {
    std::lock_guard<std::mutex> lock(node.mu_);
    CHECK(node.commands.empty());
  }
  // Root is still served.
  grpc::ClientContext ctx;
  proto::CommandReply rep;
  CHECK(ConnectUnix(sock)->Stop(&ctx, proto::CommandRequest(), &rep).ok());
  server.reset();
  std::filesystem::remove_all(dir);
}

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--probe-as-nobody") return ProbeAsNobody(argv[2]);
  return Catch::Session().run(argc, argv);
}
