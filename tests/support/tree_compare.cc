#include "tests/support/tree_compare.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>
#include <sstream>
#include <utility>

namespace hamirror::test {
namespace {

std::string Errno(const std::string& what) { return what + ": " + strerror(errno); }

std::string Rel(const std::string& rel) { return rel.empty() ? "." : rel; }

const char* TypeName(mode_t m) {
  switch (m & S_IFMT) {
    case S_IFREG: return "file";
    case S_IFDIR: return "directory";
    case S_IFLNK: return "symlink";
    case S_IFIFO: return "fifo";
    case S_IFSOCK: return "socket";
    case S_IFCHR: return "char device";
    case S_IFBLK: return "block device";
  }
  return "unknown";
}

bool ListDir(const std::string& path, std::vector<std::string>* names, std::string* err) {
  DIR* d = opendir(path.c_str());
  if (!d) {
    *err = Errno("opendir " + path);
    return false;
  }
  while (dirent* e = readdir(d)) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    names->push_back(e->d_name);
  }
  closedir(d);
  std::sort(names->begin(), names->end());
  return true;
}

std::string CompareContent(const std::string& pa, const std::string& pb, const std::string& rel) {
  int fa = open(pa.c_str(), O_RDONLY | O_CLOEXEC);
  if (fa < 0) return Errno("open " + pa);
  int fb = open(pb.c_str(), O_RDONLY | O_CLOEXEC);
  if (fb < 0) {
    close(fa);
    return Errno("open " + pb);
  }
  std::string result;
  std::vector<char> ba(1 << 20), bb(1 << 20);
  uint64_t off = 0;
  while (true) {
    ssize_t na = pread(fa, ba.data(), ba.size(), static_cast<off_t>(off));
    ssize_t nb = pread(fb, bb.data(), bb.size(), static_cast<off_t>(off));
    if (na < 0 || nb < 0) {
      result = Errno(rel + ": read");
      break;
    }
    size_t n = static_cast<size_t>(std::min(na, nb));
    if (memcmp(ba.data(), bb.data(), n) != 0) {
      size_t i = 0;
      while (i < n && ba[i] == bb[i]) ++i;
      std::ostringstream os;
      os << rel << ": content differs at offset " << off + i << " (0x" << std::hex
         << (static_cast<unsigned>(ba[i]) & 0xff) << " vs 0x" << (static_cast<unsigned>(bb[i]) & 0xff) << ")";
      result = os.str();
      break;
    }
    if (na != nb) {
      std::ostringstream os;
      os << rel << ": content length differs after offset " << off + n;
      result = os.str();
      break;
    }
    if (na == 0) break;
    off += static_cast<uint64_t>(na);
  }
  close(fa);
  close(fb);
  return result;
}

bool ReadXattrs(const std::string& path, std::map<std::string, std::string>* out, std::string* err) {
  ssize_t n = llistxattr(path.c_str(), nullptr, 0);
  if (n < 0) {
    if (errno == ENOTSUP) return true;
    *err = Errno("llistxattr " + path);
    return false;
  }
  std::string names(static_cast<size_t>(n), '\0');
  n = llistxattr(path.c_str(), names.data(), names.size());
  if (n < 0) {
    *err = Errno("llistxattr " + path);
    return false;
  }
  names.resize(static_cast<size_t>(n));
  for (size_t pos = 0; pos < names.size();) {
    std::string name(names.c_str() + pos);
    pos += name.size() + 1;
    if (name.empty()) continue;
    ssize_t vn = lgetxattr(path.c_str(), name.c_str(), nullptr, 0);
    if (vn < 0) {
      *err = Errno("lgetxattr " + path + " " + name);
      return false;
    }
    std::string value(static_cast<size_t>(vn), '\0');
    vn = lgetxattr(path.c_str(), name.c_str(), value.data(), value.size());
    if (vn < 0) {
      *err = Errno("lgetxattr " + path + " " + name);
      return false;
    }
    value.resize(static_cast<size_t>(vn));
    (*out)[name] = value;
  }
  return true;
}

std::string Printable(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 32 && c < 127) {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[8];
      snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

class Comparer {
 public:
  Comparer(std::string a, std::string b, const TreeCompareOptions& o)
      : a_(std::move(a)), b_(std::move(b)), o_(o) {}

  std::string Entry(const std::string& rel) {
    std::string pa = rel.empty() ? a_ : a_ + "/" + rel;
    std::string pb = rel.empty() ? b_ : b_ + "/" + rel;
    struct stat sa, sb;
    if (lstat(pa.c_str(), &sa) < 0) return Errno("lstat " + pa);
    if (lstat(pb.c_str(), &sb) < 0) {
      if (errno == ENOENT) return Rel(rel) + ": missing in second tree";
      return Errno("lstat " + pb);
    }
    std::ostringstream os;
    if ((sa.st_mode & S_IFMT) != (sb.st_mode & S_IFMT)) {
      os << Rel(rel) << ": type " << TypeName(sa.st_mode) << " vs " << TypeName(sb.st_mode);
      return os.str();
    }
    if (!S_ISLNK(sa.st_mode) && (sa.st_mode & 07777) != (sb.st_mode & 07777)) {
      os << Rel(rel) << ": mode " << std::oct << (sa.st_mode & 07777) << " vs " << (sb.st_mode & 07777);
      return os.str();
    }
    if (o_.owner && (sa.st_uid != sb.st_uid || sa.st_gid != sb.st_gid)) {
      os << Rel(rel) << ": owner " << sa.st_uid << ":" << sa.st_gid << " vs " << sb.st_uid << ":"
         << sb.st_gid;
      return os.str();
    }
    if (!S_ISDIR(sa.st_mode)) {
      if (sa.st_nlink != sb.st_nlink) {
        os << Rel(rel) << ": link count " << sa.st_nlink << " vs " << sb.st_nlink;
        return os.str();
      }
      // Link structure: the first path at which each inode was met must be the same on both sides.
      auto ia = first_a_.emplace(std::make_pair(sa.st_dev, sa.st_ino), rel).first->second;
      auto ib = first_b_.emplace(std::make_pair(sb.st_dev, sb.st_ino), rel).first->second;
      if (ia != ib) {
        os << Rel(rel) << ": hard link of " << ia << " vs of " << ib;
        return os.str();
      }
      if (ia != rel) return "";  // already compared under its first name
    }
    if (S_ISREG(sa.st_mode)) {
      if (sa.st_size != sb.st_size) {
        os << Rel(rel) << ": size " << sa.st_size << " vs " << sb.st_size;
        return os.str();
      }
      if (o_.content) {
        std::string c = CompareContent(pa, pb, Rel(rel));
        if (!c.empty()) return c;
      }
    }
    if (S_ISLNK(sa.st_mode)) {
      char ta[4097], tb[4097];
      ssize_t na = readlink(pa.c_str(), ta, sizeof(ta) - 1);
      ssize_t nb = readlink(pb.c_str(), tb, sizeof(tb) - 1);
      if (na < 0 || nb < 0) return Errno("readlink " + Rel(rel));
      std::string la(ta, static_cast<size_t>(na)), lb(tb, static_cast<size_t>(nb));
      if (la != lb) return Rel(rel) + ": symlink target \"" + la + "\" vs \"" + lb + "\"";
    }
    if ((S_ISCHR(sa.st_mode) || S_ISBLK(sa.st_mode)) && sa.st_rdev != sb.st_rdev) {
      return Rel(rel) + ": device numbers differ";
    }
    if (o_.xattrs) {
      std::map<std::string, std::string> xa, xb;
      std::string err;
      if (!ReadXattrs(pa, &xa, &err) || !ReadXattrs(pb, &xb, &err)) return err;
      for (const auto& [name, value] : xa) {
        auto it = xb.find(name);
        if (it == xb.end()) return Rel(rel) + ": xattr " + name + " missing in second tree";
        if (it->second != value) {
          return Rel(rel) + ": xattr " + name + " \"" + Printable(value) + "\" vs \"" +
                 Printable(it->second) + "\"";
        }
      }
      for (const auto& [name, value] : xb) {
        if (!xa.count(name)) return Rel(rel) + ": xattr " + name + " missing in first tree";
      }
    }
    if (S_ISDIR(sa.st_mode)) {
      std::string c = Children(rel, pa, pb);
      if (!c.empty()) return c;
    }
    bool check_mtime =
        o_.mtime && (!S_ISLNK(sa.st_mode) || o_.symlink_mtime) && (!S_ISDIR(sa.st_mode) || o_.dir_mtime);
    if (check_mtime && (sa.st_mtim.tv_sec != sb.st_mtim.tv_sec || sa.st_mtim.tv_nsec != sb.st_mtim.tv_nsec)) {
      os << Rel(rel) << ": mtime " << sa.st_mtim.tv_sec << "." << sa.st_mtim.tv_nsec << " vs "
         << sb.st_mtim.tv_sec << "." << sb.st_mtim.tv_nsec;
      return os.str();
    }
    return "";
  }

 private:
  std::string Children(const std::string& rel, const std::string& pa, const std::string& pb) {
    std::vector<std::string> na, nb;
    std::string err;
    if (!ListDir(pa, &na, &err) || !ListDir(pb, &nb, &err)) return err;
    auto skip = [&](const std::string& child) {
      return std::find(o_.ignore.begin(), o_.ignore.end(), child) != o_.ignore.end();
    };
    std::set<std::string> sb(nb.begin(), nb.end());
    for (const auto& n : na) {
      std::string child = rel.empty() ? n : rel + "/" + n;
      if (skip(child)) continue;
      if (!sb.count(n)) return child + ": missing in second tree";
    }
    std::set<std::string> sa(na.begin(), na.end());
    for (const auto& n : nb) {
      std::string child = rel.empty() ? n : rel + "/" + n;
      if (skip(child)) continue;
      if (!sa.count(n)) return child + ": missing in first tree";
    }
    for (const auto& n : na) {
      std::string child = rel.empty() ? n : rel + "/" + n;
      if (skip(child)) continue;
      std::string c = Entry(child);
      if (!c.empty()) return c;
    }
    return "";
  }

  const std::string a_, b_;
  const TreeCompareOptions& o_;
  std::map<std::pair<dev_t, ino_t>, std::string> first_a_, first_b_;
};

}  // namespace

std::string CompareTrees(const std::string& a, const std::string& b, const TreeCompareOptions& options) {
  Comparer c(a, b, options);
  return c.Entry("");
}

}  // namespace hamirror::test
