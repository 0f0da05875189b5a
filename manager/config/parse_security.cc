// Secure by default: the replication link needs its TLS files and the heartbeats their shared key,
// unless the configuration opts out explicitly (<rfs encryption="off">, <heart auth="derived">).
// A missing file is a configuration error, so `hamirror confcheck` reports it and hamirrord refuses
// to start instead of falling back to clear text or a guessable key.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/unique_fd.h"
#include "manager/config/sections.h"
#include "manager/heartbeat/heartbeat_key.h"

namespace hamirror::config {
namespace {

constexpr const char* kCertsHint =
    "generate them with `hamirror-certs --out DIR NODE1 NODE2` and copy DIR/<node>/* into this "
    "directory on each node";

// "" when path is a readable, non-empty regular file; otherwise why not.
std::string FileProblem(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return errno == ENOENT ? "missing" : std::strerror(errno);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return std::strerror(errno);
  if (!S_ISREG(st.st_mode)) return "not a regular file";
  if (st.st_size == 0) return "empty";
  char c;
  if (::read(fd.get(), &c, 1) != 1) return std::string("unreadable: ") + std::strerror(errno);
  return "";
}

// A secret readable by other users than its owner is no secret.
void WarnIfShared(FileContext* ctx, int line, const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    ctx->Warning(line, path + " is readable by other users (mode " + mode + "): chmod 600 " + path);
  }
}

void CheckTls(Element& service, const ParseEnv& env, const ModuleConfig& cfg) {
  std::vector<pugi::xml_node> rfs_nodes = Children(service.node(), "rfs");
  if (rfs_nodes.empty()) return;  // nothing is replicated: no replication link
  Element rfs(service.ctx(), rfs_nodes.front());
  if (!cfg.rfs.encryption) {
    rfs.ctx()->Warning(rfs.line("encryption"),
                       "encryption=\"off\" on <rfs>: the replication link runs in clear (no TLS); anyone on "
                       "the flow network can read and inject replicated data");
    return;
  }
  // Where the operator can act: <hamirror tlsdir> when set, else the <rfs> element.
  std::vector<pugi::xml_node> hm = Children(service.node(), "hamirror");
  const bool explicit_dir = !hm.empty() && hm.front().attribute("tlsdir");
  const int line = explicit_dir ? service.ctx()->file().LineOf(hm.front(), "tlsdir") : rfs.line();

  const std::string dir = env.options.path_root + cfg.hamirror.tls_dir;
  std::string missing, other;
  for (const char* name : {kTlsCaFile, kTlsCertFile, kTlsKeyFile}) {
    const std::string problem = FileProblem(dir + "/" + name);
    if (problem.empty()) continue;
    if (problem == "missing") {
      missing += (missing.empty() ? "" : ", ") + std::string(name);
    } else {
      other += (other.empty() ? "" : ", ") + std::string(name) + ": " + problem;
    }
  }
  if (missing.empty() && other.empty()) {
    WarnIfShared(service.ctx(), line, dir + "/" + kTlsKeyFile);
    return;
  }
  std::string what = "replication link (TLS) not usable: ";
  if (!missing.empty()) what += "missing " + missing + " in " + dir;
  if (!other.empty()) what += (missing.empty() ? "in " + dir + ": " : "; ") + other;
  service.ctx()->Error(
      line, what + "; " + kCertsHint + ", or set encryption=\"off\" on <rfs> to replicate in clear");
}

void CheckHeartbeatKey(Element& service, const ParseEnv& env, const ModuleConfig& cfg) {
  std::vector<pugi::xml_node> hearts = Children(service.node(), "heart");
  if (hearts.empty()) return;  // already reported: no <heart>
  Element heart(service.ctx(), hearts.front());
  if (cfg.heart.derived_key) {
    heart.ctx()->Warning(heart.line("auth"),
                         "auth=\"derived\" on <heart>: the heartbeat key is derived from cluster.xml; anyone "
                         "who can read it can forge heartbeats (use a key file: hamirror-certs makes one)");
    return;
  }
  const int line = heart.Has("keyfile") ? heart.line("keyfile") : heart.line();
  const std::string path = env.options.path_root + cfg.heart.key_file;
  heartbeat::HeartbeatKey key;
  const Status st = heartbeat::HeartbeatKey::FromFile(path, &key);
  if (st.ok()) {
    WarnIfShared(service.ctx(), line, path);
    return;
  }
  const std::string fix =
      "; create it with `hamirror-certs` (DIR/heartbeat.key, the same file on both nodes, mode 0600), "
      "or set auth=\"derived\" on <heart> to derive the key from cluster.xml (weaker)";
  if (st.code() == Status::Code::kNotFound) {
    service.ctx()->Error(line, "heartbeat key file " + path + " does not exist" + fix);
  } else {
    service.ctx()->Error(line, "heartbeat key file not usable: " + st.message() + fix);
  }
}

}  // namespace

void CheckSecurityFiles(Element& e, const ParseEnv& env, ModuleConfig* out) {
  if (out->hamirror.tls_dir.empty()) out->hamirror.tls_dir = kDefaultTlsDir;
  if (out->heart.key_file.empty()) {
    out->heart.key_file = std::string(kDefaultKeyDir) + "/" + out->module_name + "/heartbeat.key";
  }
  CheckTls(e, env, *out);
  CheckHeartbeatKey(e, env, *out);
}

}  // namespace hamirror::config
