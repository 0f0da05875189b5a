#include "replicator/tls.h"

#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include <fstream>
#include <sstream>

namespace hamirror::replicator {

namespace {

Status ReadPem(const std::string& what, const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::InvalidArgument("TLS " + what + " file " + path + ": cannot be read");
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  if (out->find("-----BEGIN ") == std::string::npos) {
    return Status::InvalidArgument("TLS " + what + " file " + path + ": not a PEM file");
  }
  return Status::Ok();
}

struct Pems {
  std::string cert, key, ca;
};

// Decides between plaintext (returns Ok with *use_tls false) and mutual TLS (files read into *pems).
Status Decide(const TlsOptions& tls, const std::string& address, bool* use_tls, Pems* pems) {
  std::string host;
  int port = 0;
  Status s = SplitHostPort(address, &host, &port);
  if (!s.ok()) return s;
  const bool any = !tls.cert.empty() || !tls.key.empty() || !tls.ca.empty();
  if (tls.insecure || (!any && IsLoopbackAddress(address))) {
    *use_tls = false;
    return Status::Ok();
  }
  if (!any) {
    return Status::InvalidArgument("address " + address +
                                   " is not loopback: TLS cert, key and ca are required (or set insecure "
                                   "explicitly to send in clear)");
  }
  if (tls.cert.empty() || tls.key.empty() || tls.ca.empty()) {
    return Status::InvalidArgument("TLS needs all three of cert, key and ca (mutual authentication)");
  }
  *use_tls = true;
  if (!(s = ReadPem("cert", tls.cert, &pems->cert)).ok()) return s;
  if (!(s = ReadPem("key", tls.key, &pems->key)).ok()) return s;
  return ReadPem("ca", tls.ca, &pems->ca);
}

}  // namespace

Status SplitHostPort(const std::string& host_port, std::string* host, int* port) {
  size_t colon;
  if (!host_port.empty() && host_port[0] == '[') {
    const size_t close = host_port.find(']');
    if (close == std::string::npos || close + 1 >= host_port.size() || host_port[close + 1] != ':') {
      return Status::InvalidArgument("address '" + host_port + "': expected [IPv6]:PORT");
    }
    *host = host_port.substr(1, close - 1);
    colon = close + 1;
  } else {
    colon = host_port.rfind(':');
    if (colon == std::string::npos || colon == 0) {
      return Status::InvalidArgument("address '" + host_port + "': expected HOST:PORT");
    }
    *host = host_port.substr(0, colon);
    if (host->find(':') != std::string::npos) {
      return Status::InvalidArgument("address '" + host_port + "': IPv6 addresses need brackets, [::1]:PORT");
    }
  }
  const std::string p = host_port.substr(colon + 1);
  if (p.empty() || p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos) {
    return Status::InvalidArgument("address '" + host_port + "': bad port '" + p + "'");
  }
  *port = std::stoi(p);
  if (*port > 65535) return Status::InvalidArgument("address '" + host_port + "': port out of range");
  return Status::Ok();
}

bool IsLoopbackAddress(const std::string& host_port) {
  std::string host;
  int port;
  if (!SplitHostPort(host_port, &host, &port).ok()) return false;
  if (host == "localhost") return true;
  in_addr v4;
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6;
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
  return false;
}

Status MakeChannelCredentials(const TlsOptions& tls, const std::string& target,
                              std::shared_ptr<grpc::ChannelCredentials>* out, grpc::ChannelArguments* args) {
  bool use_tls = false;
  Pems pems;
  Status s = Decide(tls, target, &use_tls, &pems);
  if (!s.ok()) return s;
  if (!use_tls) {
    *out = grpc::InsecureChannelCredentials();
    return Status::Ok();
  }
  grpc::SslCredentialsOptions opts;
  opts.pem_root_certs = pems.ca;
  opts.pem_private_key = pems.key;
  opts.pem_cert_chain = pems.cert;
  *out = grpc::SslCredentials(opts);
  if (!tls.server_name.empty()) {
    if (args == nullptr) return Status::InvalidArgument("TLS server_name needs channel arguments");
    args->SetSslTargetNameOverride(tls.server_name);
  }
  return Status::Ok();
}

Status MakeServerCredentials(const TlsOptions& tls, const std::string& listen,
                             std::shared_ptr<grpc::ServerCredentials>* out) {
  bool use_tls = false;
  Pems pems;
  Status s = Decide(tls, listen, &use_tls, &pems);
  if (!s.ok()) return s;
  if (!use_tls) {
    *out = grpc::InsecureServerCredentials();
    return Status::Ok();
  }
  grpc::SslServerCredentialsOptions opts(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  opts.pem_root_certs = pems.ca;
  opts.pem_key_cert_pairs.push_back({pems.key, pems.cert});
  *out = grpc::SslServerCredentials(opts);
  return Status::Ok();
}

}  // namespace hamirror::replicator
