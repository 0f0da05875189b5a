// TLS for hamirror's gRPC links (replication stream; reusable by the admin API).
//
// Peers authenticate each other with mutual TLS: each node holds a certificate and key signed by the
// cluster's CA; the server requires and verifies the client's certificate, the client verifies the
// server's against the same CA. Plaintext is used only when asked for explicitly (insecure = true) or
// when no TLS file is configured and the address is a loopback one; anything else is refused, so a
// forgotten setting never silently sends data in clear over a real network.
#pragma once

#include <memory>
#include <string>

#include "common/status.h"

namespace grpc {
class ChannelCredentials;
class ServerCredentials;
class ChannelArguments;
}  // namespace grpc

namespace hamirror::replicator {

struct TlsOptions {
  std::string cert;       // PEM file: this node's certificate (chain)
  std::string key;        // PEM file: its private key
  std::string ca;         // PEM file: CA that signed the peer's certificate
  bool insecure = false;  // plaintext, even on a non-loopback address
  // Client side: the name expected in the server's certificate when it differs from the host part of
  // the target address (e.g. the peer is dialled by IP but its certificate names the node).
  std::string server_name;
};

// True when HOST of "HOST:PORT" ("[v6]:PORT" too) is loopback: localhost, 127.0.0.0/8, ::1.
bool IsLoopbackAddress(const std::string& host_port);

// Splits "HOST:PORT" / "[V6]:PORT". Clear InvalidArgument on a malformed address.
Status SplitHostPort(const std::string& host_port, std::string* host, int* port);

// Client credentials for dialling `target`. Sets ssl_target_name_override in *args when
// tls.server_name is set (args may be null only when server_name is empty).
Status MakeChannelCredentials(const TlsOptions& tls, const std::string& target,
                              std::shared_ptr<grpc::ChannelCredentials>* out, grpc::ChannelArguments* args);

// Server credentials for listening on `listen`: mutual TLS (client certificate required and verified
// against tls.ca), or plaintext under the rule above.
Status MakeServerCredentials(const TlsOptions& tls, const std::string& listen,
                             std::shared_ptr<grpc::ServerCredentials>* out);

}  // namespace hamirror::replicator
