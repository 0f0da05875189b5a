#include "manager/admin/admin_server.h"

#include <fcntl.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/server_posix.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <fstream>
#include <sstream>

#include "common/log.h"
#include "common/run_dir.h"
#include "common/unique_fd.h"
#include "proto/admin.grpc.pb.h"

namespace hamirror::admin {

const char* CommandName(Command cmd) {
  switch (cmd) {
    case Command::kStart: return "start";
    case Command::kStop: return "stop";
    case Command::kRestart: return "restart";
    case Command::kForcestop: return "forcestop";
    case Command::kPrim: return "prim";
    case Command::kSecond: return "second";
    case Command::kSecondFullsync: return "second fullsync";
    case Command::kPrimforce: return "primforce";
    case Command::kSwap: return "swap";
    case Command::kResync: return "resync";
    case Command::kStopStart: return "stopstart";
    case Command::kSwapNosync: return "swap nosync";
  }
  return "?";
}

const char* ToggleName(Toggle t) {
  switch (t) {
    case Toggle::kErrd: return "errd";
    case Toggle::kChecker: return "checker";
    case Toggle::kBoot: return "boot";
    case Toggle::kFailover: return "failover";
  }
  return "?";
}

const char* ToggleSettingName(ToggleSetting s) {
  switch (s) {
    case ToggleSetting::kOn: return "on";
    case ToggleSetting::kOff: return "off";
    case ToggleSetting::kSuspend: return "suspend";
    case ToggleSetting::kResume: return "resume";
  }
  return "?";
}

std::string DefaultSocketPath(const std::string& module) { return RunDir() + "/" + module + ".sock"; }

namespace {

Status ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return Status::Ok();
}

// True when something accepts connections on the unix socket at `path`.
bool SocketAlive(const std::string& path) {
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  return connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
}

}  // namespace

class AdminServer::Service final : public proto::Admin::Service {
 public:
  Service(AdminServer* owner, NodeControl* control) : owner_(owner), control_(control) {}

  grpc::Status Ping(grpc::ServerContext* ctx, const proto::AdminPing*, proto::AdminPing*) override {
    return Authorize(ctx);
  }
  grpc::Status State(grpc::ServerContext* ctx, const proto::StateRequest* req,
                     proto::StateReply* rep) override {
    if (auto s = Authorize(ctx); !s.ok()) return s;
    control_->FillState(req->verbose(), rep);
    return grpc::Status::OK;
  }
  grpc::Status Start(grpc::ServerContext* c, const proto::CommandRequest*, proto::CommandReply* r) override {
    return Run(c, Command::kStart, r);
  }
  grpc::Status Stop(grpc::ServerContext* c, const proto::CommandRequest*, proto::CommandReply* r) override {
    return Run(c, Command::kStop, r);
  }
  grpc::Status Restart(grpc::ServerContext* c, const proto::CommandRequest*,
                       proto::CommandReply* r) override {
    return Run(c, Command::kRestart, r);
  }
  grpc::Status Forcestop(grpc::ServerContext* c, const proto::CommandRequest*,
                         proto::CommandReply* r) override {
    return Run(c, Command::kForcestop, r);
  }
  grpc::Status Prim(grpc::ServerContext* c, const proto::CommandRequest*, proto::CommandReply* r) override {
    return Run(c, Command::kPrim, r);
  }
  grpc::Status Second(grpc::ServerContext* c, const proto::SecondRequest* q,
                      proto::CommandReply* r) override {
    return Run(c, q->fullsync() ? Command::kSecondFullsync : Command::kSecond, r);
  }
  grpc::Status Primforce(grpc::ServerContext* c, const proto::CommandRequest*,
                         proto::CommandReply* r) override {
    return Run(c, Command::kPrimforce, r);
  }
  grpc::Status Swap(grpc::ServerContext* c, const proto::CommandRequest*, proto::CommandReply* r) override {
    return Run(c, Command::kSwap, r);
  }
  grpc::Status Resync(grpc::ServerContext* c, const proto::CommandRequest*, proto::CommandReply* r) override {
    return Run(c, Command::kResync, r);
  }
  grpc::Status StopStart(grpc::ServerContext* c, const proto::CommandRequest*,
                         proto::CommandReply* r) override {
    return Run(c, Command::kStopStart, r);
  }
  grpc::Status SwapNosync(grpc::ServerContext* c, const proto::CommandRequest*,
                          proto::CommandReply* r) override {
    return Run(c, Command::kSwapNosync, r);
  }
  grpc::Status Toggle(grpc::ServerContext* c, const proto::ToggleRequest* q,
                      proto::CommandReply* r) override {
    if (auto s = Authorize(c); !s.ok()) return s;
    CommandResult res = ApplyToggle(*q);
    r->set_accepted(res.accepted);
    r->set_reason(res.reason);
    return grpc::Status::OK;
  }
  grpc::Status Verify(grpc::ServerContext* c, const proto::VerifyRequest* q,
                      proto::CommandReply* r) override {
    if (auto s = Authorize(c); !s.ok()) return s;
    CommandResult res = control_->Verify(q->repair());
    r->set_accepted(res.accepted);
    r->set_reason(res.reason);
    return grpc::Status::OK;
  }

  grpc::Status Print(grpc::ServerContext* ctx, const proto::PrintRequest* req,
                     proto::CommandReply* rep) override {
    if (auto s = Authorize(ctx); !s.ok()) return s;
    auto level = req->level() == proto::PrintRequest::ERROR     ? ModuleLog::Level::kError
                 : req->level() == proto::PrintRequest::WARNING ? ModuleLog::Level::kWarning
                                                                : ModuleLog::Level::kInfo;
    control_->Print(level, req->message());
    rep->set_accepted(true);
    return grpc::Status::OK;
  }

  grpc::Status Log(grpc::ServerContext* ctx, const proto::LogRequest* req,
                   grpc::ServerWriter<proto::LogLine>* writer) override {
    if (auto s = Authorize(ctx); !s.ok()) return s;
    const std::string path = control_->LogPath();
    std::vector<std::string> lines;
    uint64_t offset = 0;
    Status st = ModuleLog::Tail(path, req->tail() == 0 ? 100 : req->tail(), &lines, &offset);
    if (!st.ok()) return grpc::Status(grpc::StatusCode::UNAVAILABLE, st.ToString());
    proto::LogLine out;
    for (auto& l : lines) {
      out.set_line(std::move(l));
      if (!writer->Write(out)) return grpc::Status::OK;
    }
    if (!req->follow()) return grpc::Status::OK;
    // Follow: poll the file; ends when the client cancels or the server shuts down.
    while (!ctx->IsCancelled() && !owner_->shutting_down()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      lines.clear();
      if (!ModuleLog::ReadFrom(path, &offset, &lines).ok()) continue;
      for (auto& l : lines) {
        out.set_line(std::move(l));
        if (!writer->Write(out)) return grpc::Status::OK;
      }
    }
    return grpc::Status::OK;
  }

 private:
  grpc::Status Authorize(grpc::ServerContext* ctx) {
    const std::string peer = ctx->peer();
    if (peer.rfind("ipv4:", 0) == 0 || peer.rfind("ipv6:", 0) == 0) {
      // Only the mutual-TLS listener is TCP: the handshake already required a client certificate.
      if (ctx->auth_context() && ctx->auth_context()->IsPeerAuthenticated()) return grpc::Status::OK;
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "client certificate required");
    }
    if (!owner_->options_.require_root) return grpc::Status::OK;
    int uid = owner_->PeerUid(peer);
    if (uid == 0) return grpc::Status::OK;
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        uid < 0 ? "unknown caller: the admin API is for root only"
                                : "uid " + std::to_string(uid) + " refused: the admin API is for root only");
  }

  grpc::Status Run(grpc::ServerContext* ctx, Command cmd, proto::CommandReply* rep) {
    if (auto s = Authorize(ctx); !s.ok()) return s;
    CommandResult r = control_->Execute(cmd);
    rep->set_accepted(r.accepted);
    rep->set_reason(r.reason);
    return grpc::Status::OK;
  }

  // Which settings each toggle takes: errd on|off|suspend|resume, the others on|off.
  CommandResult ApplyToggle(const proto::ToggleRequest& q) {
    admin::Toggle what;
    switch (q.what()) {
      case proto::ToggleRequest::TOGGLE_ERRD: what = admin::Toggle::kErrd; break;
      case proto::ToggleRequest::TOGGLE_CHECKER: what = admin::Toggle::kChecker; break;
      case proto::ToggleRequest::TOGGLE_BOOT: what = admin::Toggle::kBoot; break;
      case proto::ToggleRequest::TOGGLE_FAILOVER: what = admin::Toggle::kFailover; break;
      default: return CommandResult::Refused("toggle: unknown toggle");
    }
    ToggleSetting how;
    switch (q.setting()) {
      case proto::ToggleRequest::TOGGLE_ON: how = ToggleSetting::kOn; break;
      case proto::ToggleRequest::TOGGLE_OFF: how = ToggleSetting::kOff; break;
      case proto::ToggleRequest::TOGGLE_SUSPEND: how = ToggleSetting::kSuspend; break;
      case proto::ToggleRequest::TOGGLE_RESUME: how = ToggleSetting::kResume; break;
      default: return CommandResult::Refused(std::string(ToggleName(what)) + ": no setting given");
    }
    if (what != admin::Toggle::kErrd && (how == ToggleSetting::kSuspend || how == ToggleSetting::kResume))
      return CommandResult::Refused(std::string(ToggleName(what)) + " takes on or off");
    return control_->SetToggle(what, how);
  }

  AdminServer* owner_;
  NodeControl* control_;
};

Status AdminServer::Start(const AdminServerOptions& options, NodeControl* control,
                          std::unique_ptr<AdminServer>* out) {
  if (options.unix_path.empty() && options.tcp_addr.empty())
    return Status::InvalidArgument("admin server: neither unix socket nor TCP address configured");
  std::unique_ptr<AdminServer> s(new AdminServer());
  s->options_ = options;
  s->service_ = std::make_unique<Service>(s.get(), control);

  if (!options.unix_path.empty()) {
    sockaddr_un addr{};
    if (options.unix_path.size() >= sizeof addr.sun_path)
      return Status::InvalidArgument("admin socket path too long: " + options.unix_path);
    if (SocketAlive(options.unix_path))
      return Status::Unavailable("another hamirrord already serves " + options.unix_path);
    // Parent dir: created root-only-writable if missing (e.g. /run/hamirror after boot).
    std::string dir = options.unix_path.substr(0, options.unix_path.rfind('/'));
    if (!dir.empty()) mkdir(dir.c_str(), 0755);
    unlink(options.unix_path.c_str());  // stale socket of a dead daemon
    UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) return Status::FromErrno("admin socket", errno);
    addr.sun_family = AF_UNIX;
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", options.unix_path.c_str());
    if (bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        chmod(options.unix_path.c_str(), options.unix_mode) != 0 || listen(fd.get(), 64) != 0) {
      const int e = errno;  // before the message's allocation
      return Status::FromErrno("admin socket " + options.unix_path, e);
    }
    s->listen_fd_ = fd.Release();
  }

  grpc::EnableDefaultHealthCheckService(false);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.RegisterService(s->service_.get());
  if (!options.tcp_addr.empty()) {
    grpc::SslServerCredentialsOptions ssl(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
    if (Status st = ReadFile(options.tls_key_file, &pair.private_key); !st.ok()) return st;
    if (Status st = ReadFile(options.tls_cert_file, &pair.cert_chain); !st.ok()) return st;
    if (Status st = ReadFile(options.tls_ca_file, &ssl.pem_root_certs); !st.ok()) return st;
    ssl.pem_key_cert_pairs.push_back(std::move(pair));
    builder.AddListeningPort(options.tcp_addr, grpc::SslServerCredentials(ssl), &s->tcp_port_);
  }
  s->server_ = builder.BuildAndStart();
  if (!s->server_) {
    if (s->listen_fd_ >= 0) {
      close(s->listen_fd_);
      unlink(options.unix_path.c_str());
    }
    return Status::Unavailable("admin server failed to start (TCP address " + options.tcp_addr + " in use?)");
  }
  if (s->listen_fd_ >= 0) {
    s->wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    s->accept_thread_ = std::thread([p = s.get()] { p->AcceptLoop(); });
  }
  *out = std::move(s);
  return Status::Ok();
}

void AdminServer::AcceptLoop() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    int n = poll(fds, 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      HLOG_ERROR("admin accept poll: %s", strerror(errno));
      return;
    }
    if (fds[1].revents) return;
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) continue;
    ucred cred{};
    socklen_t len = sizeof cred;
    int uid = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 ? static_cast<int>(cred.uid) : -1;
    {
      // gRPC names a channel made from an fd "fd:<n>"; the fd number is reused only after this
      // connection closed, so the entry is overwritten before any call can see a stale uid.
      std::lock_guard<std::mutex> lock(mu_);
      uid_by_peer_["fd:" + std::to_string(fd)] = uid;
    }
    grpc::AddInsecureChannelFromFd(server_.get(), fd);
  }
}

int AdminServer::PeerUid(const std::string& peer) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = uid_by_peer_.find(peer);
  return it == uid_by_peer_.end() ? -1 : it->second;
}

void AdminServer::Shutdown() {
  if (shutting_down_.exchange(true)) return;
  if (wake_fd_ >= 0) {
    uint64_t one = 1;
    ssize_t n = write(wake_fd_, &one, sizeof one);
    (void)n;
  }
  if (accept_thread_.joinable()) accept_thread_.join();
  if (listen_fd_ >= 0) {
    close(listen_fd_);
    listen_fd_ = -1;
    unlink(options_.unix_path.c_str());
  }
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (wake_fd_ >= 0) {
    close(wake_fd_);
    wake_fd_ = -1;
  }
}

AdminServer::~AdminServer() { Shutdown(); }

}  // namespace hamirror::admin
