// The seed's Linux userconfig.xml (SafeKit's stock MySQL mirror module) must load unchanged once
// VIRTUAL_TO_BE_DEFINED is replaced by an address.
#include <arpa/inet.h>

#include <catch2/catch.hpp>
#include <filesystem>

#include "manager/config/config.h"
#include "tests/manager/config/temp_module.h"

namespace hamirror::config {
namespace {

using testing::ReadFile;
using testing::TempModule;

const std::string kDataDir = HAMIRROR_CONFIG_TEST_DATA;

std::string Dump(const std::vector<Diagnostic>& diags) {
  std::string s;
  for (const Diagnostic& d : diags) s += d.ToString() + "\n";
  return s;
}

TEST_CASE("the seed's Linux userconfig.xml loads with the expected values", "[config][unit]") {
  TempModule m;
  m.WriteUserconfig(ReadFile(kDataDir + "/seed_linux_userconfig.xml"));
  m.WriteCluster(ReadFile(kDataDir + "/cluster.xml"));
  m.WriteScript("start_prim");
  m.WriteScript("stop_prim");
  // The seed replicates /var/lib/mysql and uses the default TLS directory and heartbeat key: check
  // them under a scratch root, not on this host.
  LoadOptions opts;
  opts.path_root = m.MakeFsRoot();

  ModuleConfig cfg;
  std::vector<Diagnostic> diags;
  const Status st = LoadModule(m.module_dir(), m.cluster_file(), opts, &cfg, &diags);
  INFO(Dump(diags));
  REQUIRE(st.ok());

  // Only the two SafeKit settings without effect here are flagged, each at its line.
  REQUIRE(diags.size() == 2);
  for (const Diagnostic& d : diags) {
    CHECK(d.severity == Diagnostic::kWarning);
    CHECK(d.file == m.userconfig());
    CHECK(d.line == 32);
  }
  CHECK(diags[0].message.find("'mountover' on <rfs>") != std::string::npos);
  CHECK(diags[1].message.find("'acl' on <rfs>") != std::string::npos);

  CHECK(cfg.module_name == "mysql");
  CHECK(cfg.service.defaultprim == DefaultPrim::kAlone);
  CHECK(cfg.service.maxloop == 3);
  CHECK(cfg.service.loop_interval == std::chrono::hours(24));
  CHECK(cfg.service.failover);

  CHECK(cfg.heart.pulse == Millis(700));
  CHECK(cfg.heart.timeout == Millis(30000));
  REQUIRE(cfg.heart.heartbeats.size() == 1);
  CHECK(cfg.heart.heartbeats[0].name == "default");
  CHECK(cfg.heart.heartbeats[0].flow);
  REQUIRE(cfg.heart.heartbeats[0].nodes.size() == 2);
  CHECK(cfg.heart.heartbeats[0].nodes[1].addr == "198.18.0.2");
  CHECK(cfg.heart.FlowNetwork().name == "default");

  REQUIRE(cfg.vip.interfaces.size() == 1);
  CHECK(cfg.vip.interfaces[0].check);
  CHECK(cfg.vip.interfaces[0].arpreroute);
  CHECK(cfg.vip.interfaces[0].name.empty());
  REQUIRE(cfg.vip.interfaces[0].addrs.size() == 1);
  CHECK(cfg.vip.interfaces[0].addrs[0].addr == "198.18.0.100");
  CHECK(cfg.vip.interfaces[0].addrs[0].family == AF_INET);
  CHECK(cfg.vip.interfaces[0].addrs[0].prefix_len == -1);

  CHECK(cfg.errd.polltimer == std::chrono::seconds(10));
  REQUIRE(cfg.errd.procs.size() == 1);
  CHECK(cfg.errd.procs[0].name == "mysqld");
  CHECK(cfg.errd.procs[0].atleast == 1);
  CHECK(cfg.errd.procs[0].atmax == -1);
  CHECK(cfg.errd.procs[0].action == RecoveryAction::kRestart);
  CHECK(cfg.errd.procs[0].klass == RoleClass::kPrim);

  CHECK(cfg.rfs.async == AsyncMode::kSecond);
  CHECK(cfg.rfs.nbrei == 3);
  CHECK(cfg.rfs.sendtimeout == std::chrono::seconds(30));
  CHECK(cfg.rfs.ruzone_blocksize == 1u << 20);  // the default (the seed does not set it)
  CHECK_FALSE(cfg.rfs.keep_mounted);            // the default: a stopped module releases its directory
  REQUIRE(cfg.rfs.replicated.size() == 1);
  CHECK(cfg.rfs.replicated[0].dir == "/var/lib/mysql");
  CHECK(cfg.rfs.replicated[0].read_only);

  CHECK(cfg.user.nicestoptimeout == std::chrono::seconds(300));
  CHECK(cfg.user.forcestoptimeout == std::chrono::seconds(300));
  CHECK(cfg.user.logging);
  CHECK(cfg.scripts.start_prim == cfg.module_dir + "/bin/start_prim");
  CHECK(cfg.scripts.start_second.empty());
  CHECK_FALSE(cfg.has_splitbrain);
  CHECK(cfg.hamirror.state_dir == "/var/lib/hamirror/mysql");
  CHECK(cfg.rfs.encryption);
  CHECK(cfg.hamirror.tls_dir == "/etc/hamirror/tls");
  CHECK(cfg.heart.key_file == "/etc/hamirror/mysql/heartbeat.key");
  CHECK_FALSE(cfg.heart.derived_key);
}

TEST_CASE("the seed without TLS files or heartbeat key is refused, saying what to do", "[config][unit]") {
  TempModule m;
  m.WriteUserconfig(ReadFile(kDataDir + "/seed_linux_userconfig.xml"));
  m.WriteCluster(ReadFile(kDataDir + "/cluster.xml"));
  LoadOptions opts;
  opts.path_root = m.root() + "/empty-root";
  std::filesystem::create_directories(opts.path_root + "/var/lib/mysql");
  ModuleConfig cfg;
  std::vector<Diagnostic> diags;
  CHECK_FALSE(LoadModule(m.module_dir(), m.cluster_file(), opts, &cfg, &diags).ok());
  const std::string text = Dump(diags);
  INFO(text);
  // <rfs> is at line 32, <heart> at line 6 of the seed.
  CHECK(text.find(m.userconfig() +
                  ":32: replication link (TLS) not usable: missing ca.pem, node.pem, "
                  "node.key in " +
                  opts.path_root + "/etc/hamirror/tls") != std::string::npos);
  CHECK(text.find(m.userconfig() + ":6: heartbeat key file " + opts.path_root +
                  "/etc/hamirror/mysql/heartbeat.key does not exist") != std::string::npos);
}

TEST_CASE("the seed as shipped is rejected only for its placeholder address", "[config][unit]") {
  TempModule m;
  std::string text = ReadFile(kDataDir + "/seed_linux_userconfig.xml");
  text = testing::ReplaceAll(text, "addr=\"198.18.0.100\"", "addr=\"VIRTUAL_TO_BE_DEFINED\"");
  m.WriteUserconfig(text);
  m.WriteCluster(ReadFile(kDataDir + "/cluster.xml"));
  LoadOptions opts;
  opts.path_root = m.MakeFsRoot();
  ModuleConfig cfg;
  std::vector<Diagnostic> diags;
  CHECK_FALSE(LoadModule(m.module_dir(), m.cluster_file(), opts, &cfg, &diags).ok());
  int errors = 0;
  for (const Diagnostic& d : diags) {
    if (d.severity != Diagnostic::kError) continue;
    ++errors;
    CHECK(d.ToString() ==
          m.userconfig() +
              ":18: invalid value 'VIRTUAL_TO_BE_DEFINED' for attribute 'addr' on <virtual_addr>: "
              "not a numeric IPv4 or IPv6 address (host names are not resolved); replace "
              "VIRTUAL_TO_BE_DEFINED with the virtual IP address");
  }
  CHECK(errors == 1);
}

}  // namespace
}  // namespace hamirror::config
