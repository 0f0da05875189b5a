#include "manager/daemon/failover_store.h"

#include <fstream>
#include <sstream>

#include "manager/daemon/state_store.h"

namespace hamirror::daemon {

Status FailoverStore::Load(proto::Failover* out) const {
  std::ifstream in(path_);
  if (!in) return Status::NotFound(path_ + ": no failover recorded");
  std::string magic, reason;
  uint64_t at = 0, duration = 0;
  int state = 0;
  if (!(in >> magic >> at >> duration >> state) || magic != "hamirror-failover-1" ||
      !proto::NodeState_IsValid(state))
    return Status::Corruption(path_ + ": unreadable failover record");
  std::getline(in >> std::ws, reason);
  out->Clear();
  out->set_at_unix_ms(at);
  out->set_duration_ms(duration);
  out->set_state(static_cast<proto::NodeState>(state));
  out->set_reason(reason);
  return Status::Ok();
}

Status FailoverStore::Save(const proto::Failover& f) const {
  std::string reason = f.reason();
  for (char& c : reason)
    if (c == '\n' || c == '\r') c = ' ';  // one line
  std::ostringstream o;
  o << "hamirror-failover-1 " << f.at_unix_ms() << ' ' << f.duration_ms() << ' ' << int(f.state()) << ' '
    << reason << '\n';
  return WriteFileAtomic(path_, o.str());
}

}  // namespace hamirror::daemon
