#include "manager/daemon/status_codec.h"

#include <sstream>

namespace hamirror::daemon {
namespace {

// Flag bits of the last field.
constexpr unsigned kHandingOver = 1, kSwapRequest = 2, kSplitBrain = 4, kWantServe = 8, kPreferSecond = 16;
constexpr size_t kMaxLine = 1024;

std::string Name(const std::string& s) { return s.empty() ? "-" : s; }
std::string Unname(const std::string& s) { return s == "-" ? "" : s; }

}  // namespace

std::string EncodeStatus(const manager::core::PeerStatus& s) {
  std::ostringstream o;
  unsigned flags = (s.handing_over ? kHandingOver : 0) | (s.swap_request ? kSwapRequest : 0) |
                   (s.split_brain ? kSplitBrain : 0) | (s.want_serve ? kWantServe : 0) |
                   (s.prefer_second ? kPreferSecond : 0);
  o << "HMST2 " << s.incarnation << ' ' << Name(s.from) << ' ' << int(s.state) << ' ' << int(s.readiness)
    << ' ' << int(s.data.data) << ' ' << s.data.current.counter << ' ' << Name(s.data.current.author) << ' '
    << s.data.base.counter << ' ' << Name(s.data.base.author) << ' ' << int(s.data.last_role) << ' '
    << (s.data.split_brain ? 1 : 0) << ' ' << s.data.incarnation << ' ' << s.seq << ' ' << s.echo_incarnation
    << ' ' << s.echo_seq << ' ' << flags << '\n';
  return o.str();
}

bool DecodeStatus(std::string_view data, manager::core::PeerStatus* out) {
  if (data.empty() || data.size() > kMaxLine || data.back() != '\n' || data.find('\n') != data.size() - 1)
    return false;
  std::istringstream in{std::string(data)};
  std::string magic, from, cur_author, base_author, rest;
  manager::core::PeerStatus s;
  int state, ready, dstate, role, sb;
  unsigned flags;
  if (!(in >> magic >> s.incarnation >> from >> state >> ready >> dstate >> s.data.current.counter >>
        cur_author >> s.data.base.counter >> base_author >> role >> sb >> s.data.incarnation >> s.seq >>
        s.echo_incarnation >> s.echo_seq >> flags) ||
      (in >> rest) || magic != "HMST2" || state < 0 || state > 4 || ready < 0 || ready > 1 || dstate < 0 ||
      dstate > 3 || role < 0 || role > 2 || sb < 0 || sb > 1) {
    return false;
  }
  s.from = Unname(from);
  s.state = static_cast<manager::core::NodeState>(state);
  s.readiness = static_cast<manager::core::Readiness>(ready);
  s.data.data = static_cast<manager::core::DataState>(dstate);
  s.data.current.author = Unname(cur_author);
  s.data.base.author = Unname(base_author);
  s.data.last_role = static_cast<manager::core::Role>(role);
  s.data.split_brain = sb == 1;
  // Unknown flag bits (a newer sender) are ignored rather than rejected: rejecting would make a live
  // peer look dead, which is worse.
  s.handing_over = flags & kHandingOver;
  s.swap_request = flags & kSwapRequest;
  s.split_brain = flags & kSplitBrain;
  s.want_serve = flags & kWantServe;
  s.prefer_second = flags & kPreferSecond;
  *out = std::move(s);
  return true;
}

}  // namespace hamirror::daemon
