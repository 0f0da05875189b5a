// This node's TLS certificate as `hamirror state -v` shows it: subject and expiry of
// <hamirror tlsdir>/node.pem, read when the state is asked for (a renewed file shows at once).
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace hamirror::daemon {

struct CertificateInfo {
  std::string subject;            // e.g. "CN=n1"
  std::uint64_t not_after_s = 0;  // expiry, seconds since the epoch (UTC)
};

// Reads the first certificate of the PEM file at `path`. Errors: the file cannot be read, or holds no
// PEM certificate, or its notAfter cannot be converted.
Status ReadCertificateInfo(const std::string& path, CertificateInfo* out);

}  // namespace hamirror::daemon
