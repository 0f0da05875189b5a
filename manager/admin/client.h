// Client side of the admin API: channel to a module's unix socket (or TCP+mTLS).
#pragma once

#include <memory>
#include <string>

#include "proto/admin.grpc.pb.h"

namespace hamirror::admin {

// "unix:<path>" insecure channel; the server checks our uid via SO_PEERCRED.
std::unique_ptr<proto::Admin::Stub> ConnectUnix(const std::string& socket_path);

}  // namespace hamirror::admin

namespace hamirror::admin {

// TCP with mutual TLS: PEM files of the CA that signed the server, and our client certificate.
std::unique_ptr<proto::Admin::Stub> ConnectTls(const std::string& host_port, const std::string& ca_file,
                                               const std::string& cert_file, const std::string& key_file,
                                               std::string* error);

}  // namespace hamirror::admin
