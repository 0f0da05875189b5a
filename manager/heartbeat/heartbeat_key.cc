#include "manager/heartbeat/heartbeat_key.h"

#include <openssl/sha.h>
#include <xxhash.h>

#include <cerrno>
#include <fstream>
#include <iterator>

namespace hamirror::heartbeat {

Status HeartbeatKey::FromFile(const std::string& path, HeartbeatKey* key) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT) return Status::NotFound(path + ": no heartbeat key file");
    return Status::FromErrno(path, errno);
  }
  std::string secret((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // A trailing newline from `echo ... > file` on one node but not the other must not split the
  // cluster: strip trailing whitespace.
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r' || secret.back() == ' ')) {
    secret.pop_back();
  }
  if (secret.size() < 16) {
    return Status::InvalidArgument(path + ": heartbeat key must hold at least 16 bytes, has " +
                                   std::to_string(secret.size()));
  }
  *key = HeartbeatKey(std::move(secret));
  return Status::Ok();
}

HeartbeatKey HeartbeatKey::DeriveFromConfig(std::string_view cluster_xml, std::string_view module_name) {
  std::string material = "hamirror-heartbeat-key-v1\n";
  material.append(module_name);
  material.push_back('\n');
  material.append(cluster_xml);
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(material.data()), material.size(), digest);
  return HeartbeatKey(std::string(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

uint64_t ComputeClusterId(std::string_view cluster_xml, std::string_view module_name) {
  std::string material(module_name);
  material.push_back('\0');
  material.append(cluster_xml);
  return XXH3_64bits(material.data(), material.size());
}

}  // namespace hamirror::heartbeat
