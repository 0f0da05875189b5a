#include "manager/daemon/state_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <sstream>

#include "common/unique_fd.h"

namespace hamirror::daemon {
namespace {
std::string Name(const std::string& s) { return s.empty() ? "-" : s; }
std::string Unname(const std::string& s) { return s == "-" ? "" : s; }

// mkdir -p, mode 0700 for created levels.
void MakeDirs(const std::string& dir) {
  for (size_t pos = 1; pos != std::string::npos;) {
    pos = dir.find('/', pos + 1);
    mkdir(dir.substr(0, pos).c_str(), 0700);
  }
}
}  // namespace

Status StateStore::Load(manager::core::Persisted* out) const {
  std::ifstream in(path_);
  if (!in) return Status::NotFound(path_ + ": no saved state (fresh node)");
  std::string magic, cur_author, base_author;
  int data, role, split = 0;
  manager::core::Persisted p;
  // hamirror-state-1 (no split_brain, no incarnation) is still read: a node upgraded in place.
  if (!(in >> magic >> data >> p.current.counter >> cur_author >> p.base.counter >> base_author >> role) ||
      (magic != "hamirror-state-1" && magic != "hamirror-state-2") || data < 0 || data > 3 || role < 0 ||
      role > 2)
    return Status::Corruption(path_ + ": unreadable saved state");
  if (magic == "hamirror-state-2" && (!(in >> split >> p.incarnation) || split < 0 || split > 1))
    return Status::Corruption(path_ + ": unreadable saved state");
  p.data = static_cast<manager::core::DataState>(data);
  p.current.author = Unname(cur_author);
  p.base.author = Unname(base_author);
  p.last_role = static_cast<manager::core::Role>(role);
  p.split_brain = split == 1;
  *out = p;
  return Status::Ok();
}

Status StateStore::Save(const manager::core::Persisted& p) const {
  std::ostringstream o;
  o << "hamirror-state-2 " << int(p.data) << ' ' << p.current.counter << ' ' << Name(p.current.author) << ' '
    << p.base.counter << ' ' << Name(p.base.author) << ' ' << int(p.last_role) << ' '
    << (p.split_brain ? 1 : 0) << ' ' << p.incarnation << '\n';
  return WriteFileAtomic(path_, o.str());
}

Status WriteFileAtomic(const std::string& path, const std::string& text) {
  const std::string dir = path.substr(0, path.rfind('/'));
  MakeDirs(dir);
  const std::string tmp = path + ".tmp";
  UniqueFd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) return Status::FromErrno("open " + tmp, errno);
  if (write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()) || fsync(fd.get()) != 0)
    return Status::FromErrno("write " + tmp, errno);
  fd.Reset();
  if (rename(tmp.c_str(), path.c_str()) != 0) return Status::FromErrno("rename " + tmp, errno);
  // The rename is durable once the directory is: without this a crash may bring the old file back.
  if (UniqueFd dfd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)); dfd) (void)fsync(dfd.get());
  return Status::Ok();
}

}  // namespace hamirror::daemon
