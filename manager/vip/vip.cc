#include "manager/vip/vip.h"

#include <arpa/inet.h>
#include <linux/if_addr.h>
#include <net/if.h>
#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/socket.h>

#include <cstring>
#include <memory>

#include "common/log.h"

namespace hamirror::vip {
namespace {

struct SockDeleter {
  void operator()(nl_sock* s) const { nl_socket_free(s); }
};
struct CacheDeleter {
  void operator()(nl_cache* c) const { nl_cache_free(c); }
};
struct AddrDeleter {
  void operator()(rtnl_addr* a) const { rtnl_addr_put(a); }
};
struct NlAddrDeleter {
  void operator()(nl_addr* a) const { nl_addr_put(a); }
};
using SockPtr = std::unique_ptr<nl_sock, SockDeleter>;
using CachePtr = std::unique_ptr<nl_cache, CacheDeleter>;

// A parsed numeric address.
struct IpAddr {
  int family = AF_UNSPEC;
  unsigned char bytes[16] = {};
  size_t len() const { return family == AF_INET ? 4 : 16; }
  int max_prefix() const { return family == AF_INET ? 32 : 128; }
};

bool ParseIp(const std::string& s, IpAddr* out) {
  if (inet_pton(AF_INET, s.c_str(), out->bytes) == 1) {
    out->family = AF_INET;
    return true;
  }
  if (inet_pton(AF_INET6, s.c_str(), out->bytes) == 1) {
    out->family = AF_INET6;
    return true;
  }
  return false;
}

bool SameSubnet(const unsigned char* a, const unsigned char* b, int prefix) {
  int full = prefix / 8;
  if (std::memcmp(a, b, full) != 0) return false;
  const int rest = prefix % 8;
  if (rest == 0) return true;
  const unsigned char mask = static_cast<unsigned char>(0xff << (8 - rest));
  return (a[full] & mask) == (b[full] & mask);
}

Status Connect(SockPtr* sock) {
  sock->reset(nl_socket_alloc());
  if (!*sock) return Status::Internal("netlink: cannot allocate socket");
  const int err = nl_connect(sock->get(), NETLINK_ROUTE);
  if (err < 0) return Status::IoError(std::string("netlink connect: ") + nl_geterror(err));
  return Status::Ok();
}

Status LoadAddrs(nl_sock* sock, CachePtr* cache) {
  nl_cache* c = nullptr;
  const int err = rtnl_addr_alloc_cache(sock, &c);
  if (err < 0) return Status::IoError(std::string("netlink address dump: ") + nl_geterror(err));
  cache->reset(c);
  return Status::Ok();
}

// Walks the address cache; fn(addr, ip bytes) returns true to stop.
template <typename Fn>
rtnl_addr* FindAddr(nl_cache* cache, Fn fn) {
  for (nl_object* obj = nl_cache_get_first(cache); obj != nullptr; obj = nl_cache_get_next(obj)) {
    auto* a = reinterpret_cast<rtnl_addr*>(obj);
    nl_addr* local = rtnl_addr_get_local(a);
    if (local == nullptr) continue;
    if (fn(a, local)) return a;
  }
  return nullptr;
}

rtnl_addr* FindHeld(nl_cache* cache, const IpAddr& ip, int ifindex) {
  return FindAddr(cache, [&](rtnl_addr* a, nl_addr* local) {
    return rtnl_addr_get_ifindex(a) == ifindex && nl_addr_get_family(local) == ip.family &&
           nl_addr_get_len(local) == ip.len() &&
           std::memcmp(nl_addr_get_binary_addr(local), ip.bytes, ip.len()) == 0;
  });
}

Status ResolveWithCache(nl_cache* cache, const VipAddress& vip, VipAddress* out, IpAddr* ip, int* ifindex) {
  if (!ParseIp(vip.addr, ip))
    return Status::InvalidArgument("VIP '" + vip.addr + "' is not a numeric IP address");
  *out = vip;
  if (out->prefix_len > ip->max_prefix()) {
    return Status::InvalidArgument("VIP " + vip.addr + ": prefix length " + std::to_string(vip.prefix_len) +
                                   " too long");
  }
  if (out->interface.empty() || out->prefix_len < 0) {
    // The interface address whose subnet contains the VIP (not the VIP itself), longest prefix first.
    int best_prefix = -1, best_ifindex = 0;
    const int named_ifindex =
        out->interface.empty() ? 0 : static_cast<int>(if_nametoindex(out->interface.c_str()));
    FindAddr(cache, [&](rtnl_addr* a, nl_addr* local) {
      const int prefix = rtnl_addr_get_prefixlen(a);
      if (nl_addr_get_family(local) != ip->family || nl_addr_get_len(local) != ip->len()) return false;
      if (prefix <= 0 || prefix >= ip->max_prefix()) return false;
      if (named_ifindex != 0 && rtnl_addr_get_ifindex(a) != named_ifindex) return false;
      const auto* bytes = static_cast<const unsigned char*>(nl_addr_get_binary_addr(local));
      if (std::memcmp(bytes, ip->bytes, ip->len()) == 0) return false;  // the VIP itself
      if (SameSubnet(bytes, ip->bytes, prefix) && prefix > best_prefix) {
        best_prefix = prefix;
        best_ifindex = rtnl_addr_get_ifindex(a);
      }
      return false;
    });
    if (out->interface.empty()) {
      if (best_ifindex == 0) {
        return Status::NotFound("VIP " + vip.addr + ": no interface has an address in its subnet; name one");
      }
      char name[IF_NAMESIZE] = {};
      if (if_indextoname(static_cast<unsigned>(best_ifindex), name) == nullptr) {
        return Status::FromErrno("VIP " + vip.addr + ": interface index " + std::to_string(best_ifindex),
                                 errno);
      }
      out->interface = name;
    }
    if (out->prefix_len < 0) out->prefix_len = best_prefix > 0 ? best_prefix : ip->max_prefix();
  }
  *ifindex = static_cast<int>(if_nametoindex(out->interface.c_str()));
  if (*ifindex == 0)
    return Status::NotFound("VIP " + vip.addr + ": no interface named '" + out->interface + "'");
  return Status::Ok();
}

// What Add, Remove, Held and ResolveVip all start from: a netlink socket, a dump of the addresses and
// the VIP resolved against that dump.
struct Lookup {
  SockPtr sock;
  CachePtr cache;
  IpAddr ip;
  int ifindex = 0;
};

// Connect/dump errors are IoError or Internal, never NotFound: a NotFound comes from resolving.
Status LookUp(const VipAddress& vip, Lookup* l, VipAddress* resolved) {
  Status s = Connect(&l->sock);
  if (s.ok()) s = LoadAddrs(l->sock.get(), &l->cache);
  if (!s.ok()) return s;
  return ResolveWithCache(l->cache.get(), vip, resolved, &l->ip, &l->ifindex);
}

std::string Label(const VipAddress& vip) {
  if (vip.label.empty()) return "";
  std::string label = vip.interface;
  label.append(":").append(vip.label);
  label.resize(std::min<size_t>(label.size(), IF_NAMESIZE - 1));  // the kernel keeps IFNAMSIZ-1 bytes
  return label;
}

}  // namespace

Status FindInterfaceForAddress(const std::string& addr, std::string* interface, int* prefix_len) {
  VipAddress vip;
  vip.addr = addr;
  VipAddress resolved;
  Status s = ResolveVip(vip, &resolved);
  if (!s.ok()) return s;
  *interface = resolved.interface;
  *prefix_len = resolved.prefix_len;
  return Status::Ok();
}

Status ResolveVip(const VipAddress& vip, VipAddress* resolved) {
  Lookup l;
  return LookUp(vip, &l, resolved);
}

Status Add(const VipAddress& vip) {
  Lookup l;
  VipAddress r;
  Status s = LookUp(vip, &l, &r);
  if (!s.ok()) return s;
  const IpAddr& ip = l.ip;
  const int ifindex = l.ifindex;
  if (FindHeld(l.cache.get(), ip, ifindex) != nullptr) return Status::Ok();

  std::unique_ptr<rtnl_addr, AddrDeleter> addr(rtnl_addr_alloc());
  std::unique_ptr<nl_addr, NlAddrDeleter> local(nl_addr_build(ip.family, ip.bytes, ip.len()));
  if (!addr || !local) return Status::Internal("netlink: out of memory");
  nl_addr_set_prefixlen(local.get(), r.prefix_len);
  rtnl_addr_set_ifindex(addr.get(), ifindex);
  int err = rtnl_addr_set_local(addr.get(), local.get());
  if (err == 0) rtnl_addr_set_prefixlen(addr.get(), r.prefix_len);
  if (err == 0 && ip.family == AF_INET) {
    const std::string label = Label(r);
    if (!label.empty()) err = rtnl_addr_set_label(addr.get(), label.c_str());
  }
  if (err == 0 && ip.family == AF_INET6) rtnl_addr_set_flags(addr.get(), IFA_F_NODAD);
  if (err == 0) err = rtnl_addr_add(l.sock.get(), addr.get(), 0);
  if (err < 0 && err != -NLE_EXIST) {
    return Status::IoError("add VIP " + r.addr + "/" + std::to_string(r.prefix_len) + " on " + r.interface +
                           ": " + nl_geterror(err));
  }
  HLOG_INFO("VIP %s/%d added on %s", r.addr.c_str(), r.prefix_len, r.interface.c_str());
  return Status::Ok();
}

Status Remove(const VipAddress& vip) {
  Lookup l;
  VipAddress r;
  Status s = LookUp(vip, &l, &r);
  if (s.code() == Status::Code::kNotFound) return Status::Ok();  // interface gone: the address is gone too
  if (!s.ok()) return s;
  // Delete the kernel's own object: it carries the exact prefix and label the kernel matches on.
  rtnl_addr* held = FindHeld(l.cache.get(), l.ip, l.ifindex);
  if (held == nullptr) return Status::Ok();
  const int err = rtnl_addr_delete(l.sock.get(), held, 0);
  if (err < 0 && err != -NLE_NOADDR && err != -NLE_OBJ_NOTFOUND) {
    return Status::IoError("remove VIP " + r.addr + " from " + r.interface + ": " + nl_geterror(err));
  }
  HLOG_INFO("VIP %s removed from %s", r.addr.c_str(), r.interface.c_str());
  return Status::Ok();
}

bool Held(const VipAddress& vip) {
  Lookup l;
  VipAddress r;
  if (!LookUp(vip, &l, &r).ok()) return false;
  return FindHeld(l.cache.get(), l.ip, l.ifindex) != nullptr;
}

}  // namespace hamirror::vip
