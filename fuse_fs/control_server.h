// ControlServer: the local control endpoint of hamirror-fs (FsControl over gRPC on a unix socket,
// mode 0600, so only root reaches it). The manager reads Status and changes the role in place.
#pragma once

#include <memory>
#include <string>

#include "common/status.h"

namespace grpc {
class Server;
}

namespace hamirror::fs {

class Filesystem;

// RunDir()/fs/<basename of dir>.sock (/run/hamirror/fs/...: apart from the modules' admin sockets)
std::string DefaultControlSocket(const std::string& dir);

class ControlServer {
 public:
  // Refuses a socket another live process is serving; removes a stale one.
  static Status Start(const std::string& socket_path, Filesystem* fs, std::unique_ptr<ControlServer>* out);
  ~ControlServer();  // stops serving and removes the socket file

 private:
  ControlServer() = default;
  class Service;
  std::string path_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace hamirror::fs
