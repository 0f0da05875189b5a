// A scratch module directory for config tests: MODULE/conf/userconfig.xml, MODULE/bin/*, a
// cluster.xml next to it and a data/ directory to replicate. Removed on destruction.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace hamirror::config::testing {

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void WriteFile(const std::string& path, const std::string& text, mode_t mode = 0644) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
  ::chmod(path.c_str(), mode);
}

// Replaces every occurrence of `from` in s.
inline std::string ReplaceAll(std::string s, const std::string& from, const std::string& to) {
  for (std::size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) {
    s.replace(p, from.size(), to);
  }
  return s;
}

inline constexpr const char* kTwoNodeCluster =
    "<cluster>\n"
    "  <lans>\n"
    "    <lan name=\"default\">\n"
    "      <node name=\"node1\" addr=\"198.18.0.1\"/>\n"
    "      <node name=\"node2\" addr=\"198.18.0.2\"/>\n"
    "    </lan>\n"
    "    <lan name=\"repl\">\n"
    "      <node name=\"node1\" addr=\"198.19.0.1\"/>\n"
    "      <node name=\"node2\" addr=\"198.19.0.2\"/>\n"
    "    </lan>\n"
    "  </lans>\n"
    "</cluster>\n";

class TempModule {
 public:
  TempModule() {
    char tmpl[] = "/tmp/hamirror-config-test-XXXXXX";
    root_ = ::mkdtemp(tmpl);
    module_dir_ = root_ + "/mysql";
    std::filesystem::create_directories(module_dir_ + "/conf");
    std::filesystem::create_directories(module_dir_ + "/bin");
    std::filesystem::create_directories(data_dir());
    WriteCluster(kTwoNodeCluster);
    WriteSecurityFiles(tls_dir(), key_file());
  }
  ~TempModule() {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }
  TempModule(const TempModule&) = delete;
  TempModule& operator=(const TempModule&) = delete;

  const std::string& root() const { return root_; }
  const std::string& module_dir() const { return module_dir_; }
  std::string userconfig() const { return module_dir_ + "/conf/userconfig.xml"; }
  std::string cluster_file() const { return root_ + "/cluster.xml"; }
  std::string data_dir() const { return root_ + "/data"; }

  // A TLS directory and a heartbeat key made by the constructor, for a configuration that must load:
  // <hamirror tlsdir="@TLS@"> and <heart keyfile="@KEY@">.
  std::string tls_dir() const { return root_ + "/tls"; }
  std::string key_file() const { return root_ + "/heartbeat.key"; }

  // "@DATA@" in text becomes data_dir(), "@TLS@" tls_dir(), "@KEY@" key_file().
  void WriteUserconfig(const std::string& text) const {
    WriteFile(userconfig(), ReplaceAll(ReplaceAll(ReplaceAll(text, "@DATA@", data_dir()), "@TLS@", tls_dir()),
                                       "@KEY@", key_file()));
  }

  // Placeholder TLS files (ca.pem, node.pem, node.key) in tls_dir and a 32-byte heartbeat key: the
  // loader checks that they are there and readable, not what they hold. Secrets get mode 0600.
  static void WriteSecurityFiles(const std::string& tls_dir, const std::string& key_file) {
    WriteFile(tls_dir + "/ca.pem", "-----BEGIN CERTIFICATE-----\n");
    WriteFile(tls_dir + "/node.pem", "-----BEGIN CERTIFICATE-----\n");
    WriteFile(tls_dir + "/node.key", "-----BEGIN PRIVATE KEY-----\n", 0600);
    WriteFile(key_file, "0123456789abcdef0123456789abcdef", 0600);
  }

  // A scratch root (LoadOptions::path_root) for a production configuration with default paths:
  // ROOT/var/lib/mysql, and the TLS files and heartbeat key of module `module` where the defaults are.
  std::string MakeFsRoot(const std::string& module = "mysql") const {
    const std::string fsroot = root_ + "/fsroot";
    std::filesystem::create_directories(fsroot + "/var/lib/mysql");
    WriteSecurityFiles(fsroot + "/etc/hamirror/tls", fsroot + "/etc/hamirror/" + module + "/heartbeat.key");
    return fsroot;
  }
  void WriteCluster(const std::string& text) const { WriteFile(cluster_file(), text); }
  void WriteScript(const std::string& name, mode_t mode = 0755) const {
    WriteFile(module_dir_ + "/bin/" + name, "#!/bin/sh\nexit 0\n", mode);
  }

 private:
  std::string root_;
  std::string module_dir_;
};

}  // namespace hamirror::config::testing
