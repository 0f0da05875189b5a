#include "fuse_fs/control_server.h"

#include <grpcpp/grpcpp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/run_dir.h"
#include "common/unique_fd.h"
#include "fuse_fs/filesystem.h"
#include "proto/fs_control.grpc.pb.h"

namespace hamirror::fs {

class ControlServer::Service final : public proto::FsControl::Service {
 public:
  explicit Service(Filesystem* fs) : fs_(fs) {}

  grpc::Status Status(grpc::ServerContext*, const proto::FsStatusRequest* req,
                      proto::FsStatus* out) override {
    if (req->keepalive()) fs_->NoteControlCall();  // a plain query is not a manager's sign of life
    *out = fs_->GetStatus();
    return grpc::Status::OK;
  }

  grpc::Status SetRole(grpc::ServerContext*, const proto::SetRoleRequest* req,
                       proto::FsStatus* out) override {
    fs_->NoteControlCall();
    Role role;
    switch (req->role()) {
      case proto::FS_ROLE_PRIMARY: role = Role::kPrimary; break;
      case proto::FS_ROLE_ALONE: role = Role::kAlone; break;
      case proto::FS_ROLE_SECONDARY: role = Role::kSecondary; break;
      default: return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "role must be set");
    }
    hamirror::Status s = fs_->SetRole(role, req->peer());
    if (!s.ok()) return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, s.ToString());
    *out = fs_->GetStatus();
    return grpc::Status::OK;
  }

  grpc::Status ExpectResync(grpc::ServerContext*, const proto::ExpectResyncRequest* req,
                            proto::FsStatus* out) override {
    fs_->NoteControlCall();
    hamirror::Status s = fs_->ExpectResync(req->quarantine(), req->full());
    if (!s.ok()) return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, s.ToString());
    *out = fs_->GetStatus();
    return grpc::Status::OK;
  }

  grpc::Status Verify(grpc::ServerContext*, const proto::VerifyRequest* req, proto::FsStatus* out) override {
    fs_->NoteControlCall();
    hamirror::Status s = fs_->Verify(req->repair());
    if (!s.ok()) return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, s.ToString());
    *out = fs_->GetStatus();
    return grpc::Status::OK;
  }

  grpc::Status PrepareRelease(grpc::ServerContext*, const proto::PrepareReleaseRequest*,
                              proto::FsStatus* out) override {
    fs_->NoteControlCall();
    hamirror::Status s = fs_->PrepareRelease();
    if (!s.ok()) return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, s.ToString());
    *out = fs_->GetStatus();
    return grpc::Status::OK;
  }

  grpc::Status Resync(grpc::ServerContext*, const proto::ResyncRequest* req, proto::FsStatus* out) override {
    fs_->NoteControlCall();
    hamirror::Status s = fs_->Resync(req->full());
    if (!s.ok()) return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, s.ToString());
    *out = fs_->GetStatus();
    return grpc::Status::OK;
  }

 private:
  Filesystem* fs_;
};

std::string DefaultControlSocket(const std::string& dir) {
  std::string base = dir;
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  size_t slash = base.rfind('/');
  if (slash != std::string::npos) base = base.substr(slash + 1);
  if (base.empty() || base == "/") base = "root";
  return RunDir() + "/" + kFsControlSubdir + "/" + base + ".sock";
}

namespace {
// True if some process accepts connections on the unix socket at path.
bool SocketAlive(const std::string& path) {
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  return connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
}
}  // namespace

Status ControlServer::Start(const std::string& socket_path, Filesystem* fs,
                            std::unique_ptr<ControlServer>* out) {
  if (socket_path.size() >= sizeof(sockaddr_un::sun_path)) {
    return Status::InvalidArgument("control socket path too long: " + socket_path);
  }
  // Every missing level of the parent (the default's is /run/hamirror/fs).
  for (size_t slash = socket_path.find('/', 1); slash != std::string::npos;
       slash = socket_path.find('/', slash + 1)) {
    const std::string parent = socket_path.substr(0, slash);
    if (mkdir(parent.c_str(), 0700) < 0 && errno != EEXIST)
      return Status::FromErrno("mkdir " + parent, errno);
  }
  if (SocketAlive(socket_path)) {
    return Status::InvalidArgument("control socket " + socket_path + " is in use by another process");
  }
  unlink(socket_path.c_str());
  std::unique_ptr<ControlServer> cs(new ControlServer);
  cs->path_ = socket_path;
  cs->service_ = std::make_unique<Service>(fs);
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + socket_path, grpc::InsecureServerCredentials());
  builder.RegisterService(cs->service_.get());
  // The socket is created by BuildAndStart: keep it private from the first instant.
  mode_t old = umask(0077);
  cs->server_ = builder.BuildAndStart();
  umask(old);
  if (!cs->server_) return Status::Unavailable("cannot listen on control socket " + socket_path);
  chmod(socket_path.c_str(), 0600);
  *out = std::move(cs);
  return Status::Ok();
}

ControlServer::~ControlServer() {
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  unlink(path_.c_str());
}

}  // namespace hamirror::fs
