#include "manager/admin/client.h"

#include <grpcpp/grpcpp.h>

#include <fstream>
#include <sstream>

namespace hamirror::admin {

namespace {
bool Slurp(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::stringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}
}  // namespace

std::unique_ptr<proto::Admin::Stub> ConnectUnix(const std::string& socket_path) {
  auto channel = grpc::CreateChannel("unix:" + socket_path, grpc::InsecureChannelCredentials());
  return proto::Admin::NewStub(channel);
}

std::unique_ptr<proto::Admin::Stub> ConnectTls(const std::string& host_port, const std::string& ca_file,
                                               const std::string& cert_file, const std::string& key_file,
                                               std::string* error) {
  grpc::SslCredentialsOptions o;
  for (auto [path, dst] : {std::pair{&ca_file, &o.pem_root_certs}, std::pair{&cert_file, &o.pem_cert_chain},
                           std::pair{&key_file, &o.pem_private_key}}) {
    if (!Slurp(*path, dst)) {
      *error = "cannot read " + *path;
      return nullptr;
    }
  }
  return proto::Admin::NewStub(grpc::CreateChannel(host_port, grpc::SslCredentials(o)));
}

}  // namespace hamirror::admin
