// The shared cluster key that authenticates heartbeats, and the cluster id that keeps two clusters
// on one LAN apart.
//
// Key sources, strongest first:
//   1. A key file (<heart keyfile>, default /etc/hamirror/<module>/heartbeat.key) with at least 16
//      bytes of secret, same content on both nodes, readable by root only. Its whole content is the
//      key. The configuration requires it (hamirror-certs makes one).
//   2. Only when the configuration opts out (<heart auth="derived">): derived from cluster.xml's
//      content and the module name. Anyone who can read cluster.xml (or guess it) can forge
//      heartbeats, so the daemon logs a warning.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace hamirror::heartbeat {

class HeartbeatKey {
 public:
  HeartbeatKey() = default;
  explicit HeartbeatKey(std::string secret) : secret_(std::move(secret)) {}

  // Reads the key file. NotFound if it does not exist, InvalidArgument if shorter than 16 bytes
  // (trailing whitespace not counted). The configuration loader checks with this too.
  static Status FromFile(const std::string& path, HeartbeatKey* key);
  // Weaker fallback; see above.
  static HeartbeatKey DeriveFromConfig(std::string_view cluster_xml, std::string_view module_name);

  const std::string& secret() const { return secret_; }
  bool empty() const { return secret_.empty(); }

 private:
  std::string secret_;
};

// Cluster id: 64-bit hash (XXH3) of cluster.xml's content and the module name. Both nodes must use
// byte-identical cluster.xml files.
uint64_t ComputeClusterId(std::string_view cluster_xml, std::string_view module_name);

}  // namespace hamirror::heartbeat
