// Secure by default: the replication link's TLS files and the heartbeat key are configuration, checked
// by the loader (so by confcheck and by hamirrord before it starts anything), each opt-out explicit.
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <filesystem>

#include "manager/config/config.h"
#include "tests/manager/config/temp_module.h"

namespace hamirror::config {
namespace {

using testing::TempModule;
using testing::WriteFile;

std::string Dump(const std::vector<Diagnostic>& diags) {
  std::string s;
  for (const Diagnostic& d : diags) s += d.ToString() + "\n";
  return s;
}

// Line 1 <safe><service>, line 2 <heart ...>, line 3 <rfs ...> (when rfs_attrs is not null), then
// `extra` on line 4.
std::string Userconfig(const std::string& heart_attrs, const char* rfs_attrs, const std::string& extra = "") {
  std::string s = "<safe><service mode=\"mirror\">\n<heart" + heart_attrs +
                  "><heartbeat name=\"default\" ident=\"flow\"/></heart>\n";
  if (rfs_attrs != nullptr) s += std::string("<rfs") + rfs_attrs + "><replicated dir=\"@DATA@\"/></rfs>\n";
  return s + extra + "\n</service></safe>\n";
}

struct Loaded {
  Status status;
  ModuleConfig cfg;
  std::vector<Diagnostic> diags;
  std::string text;
  int errors = 0;
  int warnings = 0;
};

// Loads with the default paths (/etc/hamirror/...) under `path_root`.
Loaded Load(const TempModule& m, const std::string& path_root) {
  Loaded l;
  LoadOptions opts;
  opts.path_root = path_root;
  l.status = LoadModule(m.module_dir(), m.cluster_file(), opts, &l.cfg, &l.diags);
  l.text = Dump(l.diags);
  for (const Diagnostic& d : l.diags) (d.severity == Diagnostic::kError ? l.errors : l.warnings)++;
  return l;
}

bool Has(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

TEST_CASE("security: <rfs> without TLS files is an error at the <rfs> line naming the files",
          "[config][unit]") {
  TempModule m;
  const std::string root = m.root() + "/fsroot";  // no /etc/hamirror/tls there
  WriteFile(root + m.key_file(), std::string(32, 'k'), 0600);
  std::filesystem::create_directories(root + m.data_dir());
  m.WriteUserconfig(Userconfig(" keyfile=\"@KEY@\"", ""));
  Loaded l = Load(m, root);
  INFO(l.text);
  CHECK_FALSE(l.status.ok());
  CHECK(l.errors == 1);
  CHECK(Has(l.text,
            m.userconfig() + ":3: replication link (TLS) not usable: missing ca.pem, node.pem, node.key in " +
                root + "/etc/hamirror/tls; generate them with `hamirror-certs --out DIR NODE1 NODE2`"));
  CHECK(Has(l.text, "or set encryption=\"off\" on <rfs> to replicate in clear"));

  SECTION("only what is missing is named; an unusable file says why") {
    WriteFile(root + "/etc/hamirror/tls/ca.pem", "x");
    std::filesystem::create_directories(root + "/etc/hamirror/tls/node.key");  // a directory
    l = Load(m, root);
    INFO(l.text);
    CHECK(Has(l.text, ":3: replication link (TLS) not usable: missing node.pem in " + root +
                          "/etc/hamirror/tls; node.key: not a regular file;"));
  }
  SECTION("present: loads, tlsdir defaults to /etc/hamirror/tls") {
    TempModule::WriteSecurityFiles(root + "/etc/hamirror/tls", m.key_file());
    l = Load(m, root);
    INFO(l.text);
    CHECK(l.status.ok());
    CHECK(l.warnings == 0);
    CHECK(l.cfg.rfs.encryption);
    CHECK(l.cfg.hamirror.tls_dir == "/etc/hamirror/tls");
  }
  SECTION("a private key readable by others is a warning") {
    TempModule::WriteSecurityFiles(root + "/etc/hamirror/tls", m.key_file());
    ::chmod((root + "/etc/hamirror/tls/node.key").c_str(), 0644);
    l = Load(m, root);
    INFO(l.text);
    CHECK(l.status.ok());
    CHECK(Has(l.text,
              ":3: warning: " + root + "/etc/hamirror/tls/node.key is readable by other users (mode 0644)"));
  }
  SECTION("with <hamirror tlsdir> the error points at tlsdir") {
    m.WriteUserconfig(Userconfig(" keyfile=\"@KEY@\"", "", "<hamirror tlsdir=\"/nonexistent/tls\"/>"));
    l = Load(m, "");
    INFO(l.text);
    CHECK(Has(l.text, m.userconfig() + ":4: replication link (TLS) not usable: missing ca.pem, node.pem, "
                                       "node.key in /nonexistent/tls"));
  }
  SECTION("encryption=\"off\" opts out, with a warning at its line") {
    m.WriteUserconfig(Userconfig(" keyfile=\"@KEY@\"", " encryption=\"off\""));
    l = Load(m, root);
    INFO(l.text);
    CHECK(l.status.ok());
    CHECK_FALSE(l.cfg.rfs.encryption);
    REQUIRE(l.warnings == 1);
    CHECK(Has(l.text, m.userconfig() +
                          ":3: warning: encryption=\"off\" on <rfs>: the replication link runs in clear"));
  }
  SECTION("encryption takes on or off only") {
    m.WriteUserconfig(Userconfig(" keyfile=\"@KEY@\"", " encryption=\"tls\""));
    l = Load(m, root);
    CHECK(Has(l.text, ":3: invalid value 'tls' for attribute 'encryption' on <rfs>: expected on or off"));
  }
}

TEST_CASE("security: without <rfs> no TLS file is needed", "[config][unit]") {
  TempModule m;
  const std::string root = m.root() + "/fsroot";
  WriteFile(root + m.key_file(), std::string(32, 'k'), 0600);
  m.WriteUserconfig(Userconfig(" keyfile=\"@KEY@\"", nullptr));
  Loaded l = Load(m, root);
  INFO(l.text);
  CHECK(l.status.ok());
  CHECK(l.diags.empty());
}

TEST_CASE("security: the heartbeat key file must exist unless auth=\"derived\"", "[config][unit]") {
  TempModule m;
  // No <rfs> here: only the key matters. Default paths are looked up under root, keyfile= as given.
  const std::string root = m.root() + "/fsroot";
  std::filesystem::create_directories(root);

  SECTION("default path, missing: error at <heart>") {
    m.WriteUserconfig(Userconfig("", nullptr));
    Loaded l = Load(m, root);
    INFO(l.text);
    CHECK_FALSE(l.status.ok());
    CHECK(l.errors == 1);
    CHECK(
        Has(l.text, m.userconfig() + ":2: heartbeat key file " + root +
                        "/etc/hamirror/mysql/heartbeat.key does not exist; create it with `hamirror-certs`"));
    CHECK(Has(l.text, "or set auth=\"derived\" on <heart>"));
    CHECK(l.cfg.heart.key_file == "/etc/hamirror/mysql/heartbeat.key");
  }
  SECTION("default path, present") {
    WriteFile(root + "/etc/hamirror/mysql/heartbeat.key", std::string(32, 'k'), 0600);
    m.WriteUserconfig(Userconfig("", nullptr));
    Loaded l = Load(m, root);
    INFO(l.text);
    CHECK(l.status.ok());
    CHECK(l.warnings == 0);
  }
  SECTION("keyfile: used, and too short a key is an error with its path") {
    WriteFile(m.key_file(), "0123456789\n", 0600);
    m.WriteUserconfig(Userconfig(" keyfile=\"@KEY@\"", nullptr));
    Loaded l = Load(m, "");
    INFO(l.text);
    CHECK_FALSE(l.status.ok());
    CHECK(Has(l.text, m.userconfig() + ":2: heartbeat key file not usable: " + m.key_file() +
                          ": heartbeat key must hold at least 16 bytes, has 10"));
  }
  SECTION("a key readable by others is a warning") {
    ::chmod(m.key_file().c_str(), 0644);
    m.WriteUserconfig(Userconfig(" keyfile=\"@KEY@\"", nullptr));
    Loaded l = Load(m, "");
    INFO(l.text);
    CHECK(l.status.ok());
    CHECK(Has(l.text, ":2: warning: " + m.key_file() + " is readable by other users (mode 0644)"));
    CHECK(l.cfg.heart.key_file == m.key_file());
  }
  SECTION("auth=\"derived\" opts out, with a warning") {
    m.WriteUserconfig(Userconfig(" auth=\"derived\"", nullptr));
    Loaded l = Load(m, root);
    INFO(l.text);
    CHECK(l.status.ok());
    CHECK(l.cfg.heart.derived_key);
    REQUIRE(l.warnings == 1);
    CHECK(Has(l.text, m.userconfig() +
                          ":2: warning: auth=\"derived\" on <heart>: the heartbeat key is derived "
                          "from cluster.xml"));
  }
  SECTION("bad values") {
    m.WriteUserconfig(Userconfig(" auth=\"none\"", nullptr));
    CHECK(Has(Load(m, root).text,
              ":2: invalid value 'none' for attribute 'auth' on <heart>: expected one of "
              "keyfile, derived"));
    m.WriteUserconfig(Userconfig(" keyfile=\"heartbeat.key\"", nullptr));
    CHECK(Has(Load(m, root).text,
              ":2: invalid value 'heartbeat.key' for attribute 'keyfile' on <heart>: "
              "expected an absolute path"));
    m.WriteUserconfig(Userconfig(" auth=\"derived\" keyfile=\"@KEY@\"", nullptr));
    CHECK(Has(Load(m, root).text, ":2: auth=\"derived\" uses no key file: remove keyfile or auth"));
  }
}

}  // namespace
}  // namespace hamirror::config
