#include "manager/daemon/toggle_store.h"

#include <fstream>
#include <sstream>

#include "manager/daemon/state_store.h"

namespace hamirror::daemon {
namespace {

const char* Word(const std::optional<bool>& v) { return !v ? "-" : *v ? "on" : "off"; }

// "name=on|off|-" into *out; false when the field is not that.
bool ParseField(const std::string& field, const std::string& name, std::optional<bool>* out) {
  if (field.rfind(name + "=", 0) != 0) return false;
  const std::string v = field.substr(name.size() + 1);
  if (v == "on")
    *out = true;
  else if (v == "off")
    *out = false;
  else if (v == "-")
    out->reset();
  else
    return false;
  return true;
}

}  // namespace

Status ToggleStore::Load(Toggles* out) const {
  *out = Toggles{};
  std::ifstream in(path_);
  if (!in) return Status::Ok();  // never toggled: the configuration decides
  std::string magic, boot, failover;
  Toggles t;
  if (!(in >> magic >> boot >> failover) || magic != "hamirror-toggles-1" ||
      !ParseField(boot, "boot", &t.boot) || !ParseField(failover, "failover", &t.failover))
    return Status::Corruption(path_ + ": unreadable toggles (remove it to use the configuration's values)");
  *out = t;
  return Status::Ok();
}

Status ToggleStore::Save(const Toggles& t) const {
  std::ostringstream o;
  o << "hamirror-toggles-1 boot=" << Word(t.boot) << " failover=" << Word(t.failover) << '\n';
  return WriteFileAtomic(path_, o.str());
}

}  // namespace hamirror::daemon
