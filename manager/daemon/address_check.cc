// Does this host hold one of a node's addresses? Asked of the kernel by binding to each.
#include "manager/daemon/address_check.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "common/unique_fd.h"

namespace hamirror::daemon {

bool AddressIsLocal(const std::string& addr) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, addr.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    len = sizeof *v4;
  } else if (inet_pton(AF_INET6, addr.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    len = sizeof *v6;
  } else {
    return false;  // cluster.xml holds numeric addresses only (checked by the loader)
  }
  UniqueFd fd(socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return false;  // e.g. IPv6 disabled: no such address here either
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) == 0) return true;
  // Only EADDRNOTAVAIL proves absence; anything else (a link-local address wanting a scope id, ...)
  // is left to the heartbeat sockets to report.
  return errno != EADDRNOTAVAIL;
}

Status CheckNodeIsLocal(const config::Cluster& cluster, const std::string& node) {
  std::string addrs;
  bool known = false;
  for (const config::Lan& lan : cluster.lans) {
    const config::ClusterNode* n = lan.FindNode(node);
    if (n == nullptr) continue;
    known = true;
    if (AddressIsLocal(n->addr)) return Status::Ok();
    addrs += (addrs.empty() ? "" : ", ") + n->addr + " (lan " + lan.name + ")";
  }
  if (!known) {
    std::string names;
    for (const std::string& n : cluster.NodeNames()) names += (names.empty() ? "" : ", ") + n;
    return Status::InvalidArgument("node '" + node + "' is not in " + cluster.file + " (nodes: " + names +
                                   "); give this host's node with --node");
  }
  return Status::InvalidArgument("node '" + node + "' is not on this host: none of its addresses in " +
                                 cluster.file + " (" + addrs +
                                 ") is configured here; is --node (default: the host name) right?");
}

}  // namespace hamirror::daemon
