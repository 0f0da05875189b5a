// LoadModule: cluster.xml + MODULE_DIR/conf/userconfig.xml + MODULE_DIR/bin scripts.
#include <dirent.h>
#include <sys/stat.h>

#include <cstring>
#include <filesystem>

#include "manager/config/config.h"
#include "manager/config/element.h"
#include "manager/config/sections.h"
#include "manager/config/xml_file.h"

namespace hamirror::config {
namespace {

struct ScriptSlot {
  const char* name;
  std::string Scripts::*field;
};

constexpr ScriptSlot kScriptSlots[] = {
    {"prestart", &Scripts::prestart},       {"start_prim", &Scripts::start_prim},
    {"stop_prim", &Scripts::stop_prim},     {"start_second", &Scripts::start_second},
    {"stop_second", &Scripts::stop_second}, {"start_both", &Scripts::start_both},
    {"stop_both", &Scripts::stop_both},     {"poststop", &Scripts::poststop},
};

// Known scripts present in bin/ must be executable regular files; other files are the user's.
void CheckScripts(const std::string& bin_dir, Scripts* out, std::vector<Diagnostic>* diags, int* errors) {
  struct stat st;
  if (::stat(bin_dir.c_str(), &st) != 0) {
    diags->push_back({bin_dir, 0, "no scripts directory: no application will be started or stopped",
                      Diagnostic::kWarning});
    return;
  }
  for (const ScriptSlot& slot : kScriptSlots) {
    const std::string path = bin_dir + "/" + slot.name;
    if (::lstat(path.c_str(), &st) != 0) continue;
    if (::stat(path.c_str(), &st) != 0) {
      diags->push_back({path, 0, "script is a dangling symbolic link", Diagnostic::kError});
      ++*errors;
    } else if (!S_ISREG(st.st_mode)) {
      diags->push_back({path, 0, "script is not a regular file", Diagnostic::kError});
      ++*errors;
    } else if ((st.st_mode & 0111) == 0) {
      diags->push_back({path, 0, "script is not executable (chmod +x)", Diagnostic::kError});
      ++*errors;
    } else {
      out->*slot.field = path;
    }
  }
}

std::string Absolute(const std::string& p) {
  std::error_code ec;
  std::filesystem::path a = std::filesystem::absolute(p, ec);
  if (ec) return p;
  std::string s = a.lexically_normal().string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

}  // namespace

Status LoadModule(const std::string& module_dir, const std::string& cluster_file, ModuleConfig* out,
                  std::vector<Diagnostic>* diags) {
  return LoadModule(module_dir, cluster_file, LoadOptions(), out, diags);
}

Status LoadModule(const std::string& module_dir, const std::string& cluster_file, const LoadOptions& options,
                  ModuleConfig* out, std::vector<Diagnostic>* diags) {
  std::vector<Diagnostic> local;
  if (diags == nullptr) diags = &local;
  const std::size_t first_diag = diags->size();
  *out = ModuleConfig();
  out->module_dir = Absolute(module_dir);
  out->module_name = std::filesystem::path(out->module_dir).filename().string();
  out->userconfig_file = module_dir + "/" + kUserconfigRelPath;
  int errors = 0;

  struct stat st;
  if (::stat(module_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    diags->push_back({module_dir, 0, "module directory does not exist", Diagnostic::kError});
    return Status::InvalidArgument("1 error(s) in configuration");
  }

  const std::string cfile = cluster_file.empty() ? kDefaultClusterFile : cluster_file;
  const bool cluster_ok = LoadCluster(cfile, &out->cluster, diags).ok();

  ParseEnv env;
  env.cluster = cluster_ok ? &out->cluster : nullptr;
  env.module_dir = out->module_dir;
  env.options = options;

  XmlFile file;
  if (file.Load(out->userconfig_file, diags)) {
    FileContext ctx(file, diags);
    pugi::xml_node root = file.doc().document_element();
    if (std::strcmp(root.name(), "safe") != 0) {
      ctx.Error(file.LineOf(root), std::string("root element must be <safe>, found <") + root.name() + ">");
    } else {
      Element safe(&ctx, root);
      ParseSafe(safe, env, out);
    }
  }
  CheckScripts(out->module_dir + "/" + kScriptsRelDir, &out->scripts, diags, &errors);

  if (out->hamirror.state_dir.empty()) out->hamirror.state_dir = "/var/lib/hamirror/" + out->module_name;
  if (out->hamirror.tls_dir.empty()) out->hamirror.tls_dir = kDefaultTlsDir;
  if (out->heart.key_file.empty()) {
    out->heart.key_file = std::string(kDefaultKeyDir) + "/" + out->module_name + "/heartbeat.key";
  }

  errors = 0;
  for (std::size_t i = first_diag; i < diags->size(); ++i) {
    if ((*diags)[i].severity == Diagnostic::kError) ++errors;
  }
  if (errors > 0) return Status::InvalidArgument(std::to_string(errors) + " error(s) in configuration");
  return Status::Ok();
}

const Heartbeat& HeartConfig::FlowNetwork() const {
  for (const Heartbeat& h : heartbeats) {
    if (h.flow) return h;
  }
  static const Heartbeat kNone;
  return heartbeats.empty() ? kNone : heartbeats.front();
}

}  // namespace hamirror::config
