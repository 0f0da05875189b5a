// Random damage to a valid configuration never crashes the loader, and the verdict always agrees with
// the diagnostics: non-ok exactly when at least one error (with a file and a message) was reported.
#include <catch2/catch.hpp>
#include <random>

#include "manager/config/config.h"
#include "tests/manager/config/temp_module.h"

namespace hamirror::config {
namespace {

using testing::ReadFile;
using testing::TempModule;

TEST_CASE("damaged configurations are rejected consistently", "[config][unit]") {
  TempModule m;
  // The seed, its directory, TLS files and heartbeat key under a scratch root.
  const std::string base = ReadFile(std::string(HAMIRROR_CONFIG_TEST_DATA) + "/seed_linux_userconfig.xml");
  LoadOptions opts;
  opts.path_root = m.MakeFsRoot();
  {
    // Undamaged, it loads: the damage below is what gets rejected.
    m.WriteUserconfig(base);
    ModuleConfig cfg;
    std::vector<Diagnostic> diags;
    REQUIRE(LoadModule(m.module_dir(), m.cluster_file(), opts, &cfg, &diags).ok());
  }
  std::mt19937 rng(12345);  // fixed: a failure must reproduce
  const std::string alphabet = "<>/=\"' %abcdefghijklmnopqrstuvwxyz0123456789.-_\n!?&;";
  int rejected = 0;
  for (int i = 0; i < 300; ++i) {
    std::string text = base;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const std::size_t pos = rng() % text.size();
      switch (rng() % 3) {
        case 0: text[pos] = alphabet[rng() % alphabet.size()]; break;
        case 1: text.erase(pos, 1 + rng() % 8); break;
        default: text.insert(pos, 1, alphabet[rng() % alphabet.size()]); break;
      }
    }
    m.WriteUserconfig(text);
    ModuleConfig cfg;
    std::vector<Diagnostic> diags;
    const Status st = LoadModule(m.module_dir(), m.cluster_file(), opts, &cfg, &diags);
    int errors = 0;
    for (const Diagnostic& d : diags) {
      REQUIRE_FALSE(d.file.empty());
      REQUIRE_FALSE(d.message.empty());
      if (d.severity == Diagnostic::kError) ++errors;
    }
    INFO("iteration " << i << "\n" << text);
    REQUIRE(st.ok() == (errors == 0));
    rejected += st.ok() ? 0 : 1;
  }
  CHECK(rejected > 150);  // most random damage must be caught
}

}  // namespace
}  // namespace hamirror::config
