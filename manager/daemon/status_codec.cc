#include "manager/daemon/status_codec.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <sstream>

namespace hamirror::daemon {
namespace {

constexpr size_t kTag = 32;

// Flag bits of the last field. want_serve/prefer_second carry the core's connected promotion
// handshake: without them both nodes could promote at once (two primaries).
constexpr unsigned kHandingOver = 1, kSwapRequest = 2, kSplitBrain = 4, kWantServe = 8, kPreferSecond = 16;

std::string Tag(std::string_view line, const std::string& key) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(line.data()), line.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), kTag);
}

std::string Name(const std::string& s) { return s.empty() ? "-" : s; }
std::string Unname(const std::string& s) { return s == "-" ? "" : s; }

}  // namespace

std::string EncodeStatus(const StatusDatagram& d, const std::string& key) {
  const auto& s = d.status;
  std::ostringstream o;
  unsigned flags = (s.handing_over ? kHandingOver : 0) | (s.swap_request ? kSwapRequest : 0) |
                   (s.split_brain ? kSplitBrain : 0) | (s.want_serve ? kWantServe : 0) |
                   (s.prefer_second ? kPreferSecond : 0);
  o << "HMST2 " << d.cluster_id << ' ' << s.incarnation << ' ' << Name(d.to) << ' ' << Name(s.from) << ' '
    << int(s.state) << ' ' << int(s.readiness) << ' ' << int(s.data.data) << ' ' << s.data.current.counter
    << ' ' << Name(s.data.current.author) << ' ' << s.data.base.counter << ' ' << Name(s.data.base.author)
    << ' ' << int(s.data.last_role) << ' ' << s.seq << ' ' << s.echo_seq << ' ' << flags << ' '
    << s.echo_incarnation << ' ' << (s.data.split_brain ? 1 : 0) << '\n';
  std::string line = o.str();
  return line + Tag(line, key);
}

StatusDecode DecodeStatus(std::string_view data, const std::string& key, uint64_t expected_cluster_id,
                          StatusDatagram* out) {
  size_t nl = data.find('\n');
  if (nl == std::string_view::npos || data.size() != nl + 1 + kTag || nl > 1024)
    return StatusDecode::kGarbage;
  std::string_view line = data.substr(0, nl + 1);
  std::istringstream in{std::string(line)};
  std::string magic, to, from, cur_author, base_author;
  StatusDatagram d;
  int state, ready, dstate, role;
  unsigned flags, sb;
  auto& s = d.status;
  if (!(in >> magic >> d.cluster_id >> s.incarnation >> to >> from >> state >> ready >> dstate >>
        s.data.current.counter >> cur_author >> s.data.base.counter >> base_author >> role >> s.seq >>
        s.echo_seq >> flags >> s.echo_incarnation >> sb) ||
      magic != "HMST2" || sb > 1 || state < 0 || state > 4 || ready < 0 || ready > 1 || dstate < 0 || dstate > 3 ||
      role < 0 || role > 2) {
    return StatusDecode::kGarbage;
  }
  // Constant-time compare: the tag is the only secret-dependent part.
  std::string want = Tag(line, key);
  if (CRYPTO_memcmp(want.data(), data.data() + nl + 1, kTag) != 0) return StatusDecode::kBadTag;
  if (d.cluster_id != expected_cluster_id) return StatusDecode::kWrongCluster;
  d.to = Unname(to);
  s.from = Unname(from);
  s.state = static_cast<manager::core::NodeState>(state);
  s.readiness = static_cast<manager::core::Readiness>(ready);
  s.data.data = static_cast<manager::core::DataState>(dstate);
  s.data.current.author = Unname(cur_author);
  s.data.base.author = Unname(base_author);
  s.data.last_role = static_cast<manager::core::Role>(role);
  s.data.split_brain = sb == 1;
  s.handing_over = flags & kHandingOver;
  s.swap_request = flags & kSwapRequest;
  s.split_brain = flags & kSplitBrain;
  s.want_serve = flags & kWantServe;
  s.prefer_second = flags & kPreferSecond;
  *out = std::move(d);
  return StatusDecode::kOk;
}

}  // namespace hamirror::daemon
