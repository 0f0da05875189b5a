// AdminServer: serves proto/admin.proto for one module.
// - Unix socket (default /run/hamirror/<module>.sock), mode 0600. Each accepted connection's peer
//   credentials (SO_PEERCRED) are read before gRPC sees it; calls from a non-root uid are refused
//   with PERMISSION_DENIED (the file mode alone would let root-owned-but-misconfigured dirs leak).
// - Optional TCP listener with mutual TLS (client certificate required, signed by tls_ca).
// - gRPC server reflection is on.
// Refuses to start if another live server already answers on the unix socket.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/status.h"
#include "manager/admin/node_control.h"

namespace grpc {
class Server;
}

namespace hamirror::admin {

std::string DefaultSocketPath(const std::string& module);  // RunDir()/<module>.sock (common/run_dir.h)

struct AdminServerOptions {
  std::string unix_path;      // empty: no unix socket
  mode_t unix_mode = 0600;    // tests widen it to exercise the credential check
  bool require_root = true;   // refuse unix callers whose uid != 0
  std::string tcp_addr;       // empty: no TCP; "HOST:PORT"
  std::string tls_cert_file;  // PEM, server certificate (TCP only, required then)
  std::string tls_key_file;
  std::string tls_ca_file;  // PEM, CA that signs client certificates
};

class AdminServer {
 public:
  static Status Start(const AdminServerOptions& options, NodeControl* control,
                      std::unique_ptr<AdminServer>* out);
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Stops accepting, ends streams (log -f) and waits for calls in progress (bounded).
  void Shutdown();
  int tcp_port() const { return tcp_port_; }

  // For the service: uid of the unix peer behind a gRPC peer string, or -1 when unknown.
  int PeerUid(const std::string& peer);
  bool shutting_down() const { return shutting_down_.load(); }

 private:
  class Service;
  AdminServer() = default;
  void AcceptLoop();

  AdminServerOptions options_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  int listen_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: wakes the accept loop for shutdown
  std::thread accept_thread_;
  std::atomic<bool> shutting_down_{false};
  std::mutex mu_;
  std::map<std::string, int> uid_by_peer_;  // "fd:N" -> uid of the process that connected
  int tcp_port_ = 0;
};

}  // namespace hamirror::admin
