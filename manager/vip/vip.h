// Virtual IP management through netlink (libnl-route-3): add/remove the VIP as a secondary address
// ("alias") on the interface of its subnet, and check that it is still held.
//
// Every call works in the calling thread's network namespace (each opens its own netlink socket), so
// the functions are thread-safe and tests can run them inside a namespace with setns.
// Removing the VIP before the node stops being primary is the daemon's job.
#pragma once

#include <string>

#include "common/status.h"

namespace hamirror::vip {

struct VipAddress {
  std::string addr;          // numeric IPv4 or IPv6 address, e.g. "198.18.0.50"
  int prefix_len = -1;       // -1: the prefix of the interface address whose subnet holds addr
  std::string interface;     // empty: the interface holding an address in addr's subnet (SafeKit's
                             // <real_interface> without a name)
  std::string label = "hm";  // IPv4 only: the address is labelled "<interface>:<label>" (like
                             // ifconfig aliases, visible in `ip addr`); empty for no label
};

// Finds the interface whose (non-VIP) address has a subnet containing `addr`; the longest prefix wins.
// NotFound if none does.
Status FindInterfaceForAddress(const std::string& addr, std::string* interface, int* prefix_len);

// Fills in interface/prefix_len where left empty/-1 (using FindInterfaceForAddress; a VIP on a named
// interface without a matching subnet gets /32 or /128).
Status ResolveVip(const VipAddress& vip, VipAddress* resolved);

// Adds the VIP. Idempotent: already held on that interface is Ok. IPv6 addresses are added with
// IFA_F_NODAD so they are usable at once (the peer released it; waiting ~1 s for DAD slows failover).
Status Add(const VipAddress& vip);
// Removes the VIP. Idempotent: absent is Ok.
Status Remove(const VipAddress& vip);
// True if the address is currently configured on the (resolved) interface. For `check="on"`.
bool Held(const VipAddress& vip);

}  // namespace hamirror::vip
