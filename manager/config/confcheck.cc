// `hamirror confcheck`: load a module and print every diagnostic.
#include "manager/config/config.h"

namespace hamirror::config {

int RunConfcheck(const std::string& module_dir, const std::string& cluster_file, std::ostream& out) {
  std::vector<Diagnostic> diags;
  ModuleConfig cfg;
  const Status st = LoadModule(module_dir, cluster_file, &cfg, &diags);
  int errors = 0, warnings = 0;
  for (const Diagnostic& d : diags) {
    out << d.ToString() << "\n";
    (d.severity == Diagnostic::kError ? errors : warnings)++;
  }
  if (st.ok()) {
    out << "configuration OK: module " << cfg.module_name << " (" << warnings << " warning(s))\n";
    return 0;
  }
  out << errors << " error(s), " << warnings << " warning(s): configuration rejected\n";
  return 1;
}

}  // namespace hamirror::config
