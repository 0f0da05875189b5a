// <rfs>: replicated directories and replication settings.
#include <sys/stat.h>

#include <filesystem>

#include "manager/config/sections.h"

namespace hamirror::config {
namespace {

// Lexically normal absolute path without a trailing '/' ("/" stays "/").
std::string Normalize(const std::string& p) {
  std::string n = std::filesystem::path(p).lexically_normal().string();
  while (n.size() > 1 && n.back() == '/') n.pop_back();
  return n;
}

bool IsUnder(const std::string& child, const std::string& parent) {
  return child == parent || (child.size() > parent.size() && child.compare(0, parent.size(), parent) == 0 &&
                             (parent == "/" || child[parent.size()] == '/'));
}

void ParseReplicated(Element& e, const ParseEnv& env, RfsConfig* out) {
  e.CheckAttributes({{"dir"}, {"mode"}, {"directio"}});
  e.CheckChildren({"notreplicated"});
  ReplicatedDir rd;
  if (auto dir = e.Required("dir")) {
    if (!dir->starts_with('/')) {
      e.BadValue("dir", *dir, "expected an absolute path");
    } else {
      rd.dir = Normalize(*dir);
      const std::string on_disk = env.options.path_root + rd.dir;
      struct stat st;
      if (rd.dir == "/") {
        e.BadValue("dir", *dir, "the root directory cannot be replicated");
      } else if (::stat(on_disk.c_str(), &st) != 0) {
        e.BadValue("dir", *dir, "directory " + on_disk + " does not exist");
      } else if (!S_ISDIR(st.st_mode)) {
        e.BadValue("dir", *dir, on_disk + " is not a directory");
      } else {
        for (const ReplicatedDir& other : out->replicated) {
          if (IsUnder(rd.dir, other.dir) || IsUnder(other.dir, rd.dir)) {
            e.BadValue("dir", *dir, "overlaps replicated dir " + other.dir);
          }
        }
      }
    }
  }
  if (e.Enum<bool>("mode", {{"read_only", true}, {"read_write", false}}, &rd.read_only) && !rd.read_only) {
    e.ctx()->Warning(e.line("mode"),
                     "mode=\"read_write\" on <replicated> has no effect in hamirror: the secondary's copy is "
                     "always read-only to local programs (their writes would be overwritten by replication)");
  }
  e.Enum<bool>("directio", {{"odirect", false}, {"all", true}}, &rd.direct_io_all);
  for (pugi::xml_node n : Children(e.node(), "notreplicated")) {
    Element ne(e.ctx(), n);
    ne.CheckAttributes({{"path"}, {"regexpath"}});
    ne.CheckChildren({});
    NotReplicated nr;
    if (ne.Has("path") == ne.Has("regexpath")) {
      ne.Error("<notreplicated> needs exactly one of 'path' and 'regexpath'");
    }
    if (auto p = ne.Get("path")) {
      const std::string norm = std::filesystem::path(*p).lexically_normal().string();
      if (p->empty() || p->starts_with('/') || norm == "." || norm.starts_with("..")) {
        ne.BadValue("path", *p, "expected a path relative to the replicated dir, inside it");
      }
      nr.path = norm;
      while (nr.path.size() > 1 && nr.path.back() == '/') nr.path.pop_back();
    }
    if (auto r = ne.Get("regexpath")) {
      if (std::string err = RegexError(*r); !err.empty()) ne.BadValue("regexpath", *r, err);
      nr.regexpath = *r;
    }
    rd.notreplicated.push_back(std::move(nr));
  }
  out->replicated.push_back(std::move(rd));
}

}  // namespace

void ParseRfs(Element& e, const ParseEnv& env, RfsConfig* out) {
  e.CheckAttributes({
      {"encryption"},
      {"async"},
      {"nbrei"},
      {"sendtimeout"},
      {"reiallowedbw"},
      {"ruzone_blocksize"},
      {"keepmounted"},
      {"acl", "hamirror always replicates owners, modes and extended attributes (POSIX ACLs included)"},
      {"mountover", "hamirror always mounts its overlay over the replicated directory"},
      {"locktimeout", "hamirror takes no cluster-wide file locks"},
      {"namespacepolicy", "namespace changes are always replicated synchronously, in order"},
      {"syncdelta",
       "hamirror's dirty-zone record is crash-safe, so no file is re-copied on the strength of its mtime"},
  });
  e.CheckChildren({"replicated"});
  e.OnOff("encryption", &out->encryption);
  e.Enum("async", {{"second", AsyncMode::kSecond}, {"none", AsyncMode::kNone}}, &out->async);
  e.Int("nbrei", 1, 64, &out->nbrei);
  if (e.Duration("sendtimeout", std::chrono::seconds(1), &out->sendtimeout) &&
      (out->sendtimeout < Millis(100) || out->sendtimeout > std::chrono::hours(1))) {
    e.BadValue("sendtimeout", e.Get("sendtimeout").value_or(""), "expected between 100ms and 1h");
  }
  std::int64_t bw = static_cast<std::int64_t>(out->reiallowedbw_kbps);
  if (e.Int64("reiallowedbw", 0, std::int64_t{1} << 40, &bw))
    out->reiallowedbw_kbps = static_cast<std::uint64_t>(bw);
  if (e.Size("ruzone_blocksize", &out->ruzone_blocksize)) {
    const std::uint64_t z = out->ruzone_blocksize;
    if (z < 4096 || z > (1u << 30) || (z & (z - 1)) != 0) {
      e.BadValue("ruzone_blocksize", e.Get("ruzone_blocksize").value_or(""),
                 "expected a power of two between 4K and 1G (bytes, or with K/M/G)");
    }
  }
  e.OnOff("keepmounted", &out->keep_mounted);
  bool ignored_bool;
  e.OnOff("acl", &ignored_bool);
  e.OnOff("mountover", &ignored_bool);
  e.Duration("locktimeout", std::chrono::seconds(1), &out->locktimeout);
  e.Int("namespacepolicy", 0, 100, &out->namespacepolicy);
  e.Duration("syncdelta", std::chrono::seconds(1), &out->syncdelta);

  for (pugi::xml_node r : Children(e.node(), "replicated")) {
    Element re(e.ctx(), r);
    ParseReplicated(re, env, out);
  }
  if (out->replicated.empty()) e.Error("no <replicated> in <rfs>: name at least one directory");
}

}  // namespace hamirror::config
