// Whether the node named on the command line is this host: at least one of its cluster.xml
// addresses must be configured here, or the daemon would send heartbeats from nowhere and report
// ready while no peer can ever hear it.
#pragma once

#include <string>

#include "common/status.h"
#include "manager/config/config.h"

namespace hamirror::daemon {

// True when `addr` (numeric IPv4/IPv6) is on this host: a UDP socket can be bound to it (port 0).
// Only EADDRNOTAVAIL (or no socket of that family at all) means "not here".
bool AddressIsLocal(const std::string& addr);

// InvalidArgument naming the node, its addresses and "not on this host" when none of the addresses
// of `node` in cluster.xml (on any lan) is local; InvalidArgument too when the node is not there.
Status CheckNodeIsLocal(const config::Cluster& cluster, const std::string& node);

}  // namespace hamirror::daemon
