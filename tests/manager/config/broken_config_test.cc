// Broken configurations, each rejected with the right "file:line: reason"; and a configuration using
// every supported element, accepted with the right values.
#include <catch2/catch.hpp>
#include <functional>

#include "manager/config/config.h"
#include "tests/manager/config/temp_module.h"

namespace hamirror::config {
namespace {

using testing::TempModule;

constexpr const char* kHeart =
    "<heart keyfile=\"@KEY@\"><heartbeat name=\"default\" ident=\"flow\"/></heart>";
constexpr const char* kRfs = "<rfs><replicated dir=\"@DATA@\"/></rfs>";

// Line 1 <safe>, line 2 <service ...>, line 3 <heart>, body from line 4.
std::string Cfg(const std::string& service_attrs, const std::string& body,
                const std::string& heart = kHeart) {
  return "<safe>\n<service mode=\"mirror\"" + service_attrs + ">\n" + heart + "\n" + body +
         "\n</service>\n</safe>\n";
}

enum class Where { kUserconfig, kCluster, kStartPrim };

struct BrokenCase {
  const char* name;
  std::string userconfig;
  Where where;
  int line;
  const char* phrase;
  const char* cluster = nullptr;                           // nullptr: the default two-lan cluster
  std::function<void(const TempModule&)> setup = nullptr;  // extra files
};

std::string Dump(const std::vector<Diagnostic>& diags) {
  std::string s;
  for (const Diagnostic& d : diags) s += d.ToString() + "\n";
  return s;
}

const char* kThreeNodes =
    "<cluster><lans>\n"
    "<lan name=\"default\">\n"
    "<node name=\"node1\" addr=\"198.18.0.1\"/><node name=\"node2\" addr=\"198.18.0.2\"/>\n"
    "<node name=\"node3\" addr=\"198.18.0.3\"/>\n"
    "</lan></lans></cluster>\n";
const char* kHostnameNode =
    "<cluster>\n"
    "<lans>\n"
    "<lan name=\"default\">\n"
    "<node name=\"node1\" addr=\"198.18.0.1\"/>\n"
    "<node name=\"node2\" addr=\"node2.example.com\"/>\n"
    "</lan>\n"
    "</lans>\n"
    "</cluster>\n";
const char* kMalformedCluster =
    "<cluster>\n"
    "<lans>\n"
    "<lan name=\"default\">\n"
    "<node name=\"node1\" addr=\"198.18.0.1\">\n"
    "</lan>\n"
    "</lans>\n"
    "</cluster>\n";
const char* kMismatchedLans =
    "<cluster><lans>\n"
    "<lan name=\"default\"><node name=\"node1\" addr=\"198.18.0.1\"/><node name=\"node2\" "
    "addr=\"198.18.0.2\"/></lan>\n"
    "<lan name=\"repl\"><node name=\"node1\" addr=\"198.19.0.1\"/><node name=\"nodeX\" "
    "addr=\"198.19.0.2\"/></lan>\n"
    "</lans></cluster>\n";

std::vector<BrokenCase> Cases() {
  const std::string vip_head = "<vip><interface_list><interface check=\"on\" arpreroute=\"on\">\n";
  const std::string vip_tail = "\n</interface></interface_list></vip>";
  auto vip = [&](const std::string& va) {
    return vip_head + "<real_interface>" + va + "</real_interface>" + vip_tail;
  };
  return {
      {"malformed XML", Cfg("", "<rfs><replicated dir=\"@DATA@\"></rfs>"), Where::kUserconfig, 4,
       "malformed XML"},
      {"unknown attribute", Cfg("", "<rfs foo=\"1\"><replicated dir=\"@DATA@\"/></rfs>"), Where::kUserconfig,
       4, "unknown attribute 'foo' on <rfs>"},
      {"unknown element", Cfg("", "<foo/>"), Where::kUserconfig, 4, "unknown element <foo> in <service>"},
      {"bad enum value", Cfg("", "<rfs async=\"third\"><replicated dir=\"@DATA@\"/></rfs>"),
       Where::kUserconfig, 4,
       "invalid value 'third' for attribute 'async' on <rfs>: expected one of second, none"},
      {"replicated dir missing", Cfg("", "<rfs>\n<replicated dir=\"/nonexistent/hamirror-test\"/></rfs>"),
       Where::kUserconfig, 5, "directory /nonexistent/hamirror-test does not exist"},
      {"replicated dir relative", Cfg("", "<rfs>\n<replicated dir=\"var/lib/mysql\"/></rfs>"),
       Where::kUserconfig, 5, "for attribute 'dir' on <replicated>: expected an absolute path"},
      {"VIP is a host name", Cfg("", vip("<virtual_addr addr=\"db.example.com\" where=\"one_side_alias\"/>")),
       Where::kUserconfig, 5, "'db.example.com' for attribute 'addr' on <virtual_addr>: not a numeric"},
      {"VIP prefix too long", Cfg("", vip("<virtual_addr addr=\"198.18.0.100/40\"/>")), Where::kUserconfig, 5,
       "bad prefix length '40'"},
      {"VIP on both sides", Cfg("", vip("<virtual_addr addr=\"198.18.0.100\" where=\"alias\"/>")),
       Where::kUserconfig, 5, "expected one_side_alias"},
      {"undefined macro", Cfg("", vip("<virtual_addr addr=\"%VIP%\"/>")), Where::kUserconfig, 5,
       "undefined macro %VIP% in attribute 'addr' on <virtual_addr>"},
      {"heartbeat not a lan", Cfg("", kRfs, "<heart><heartbeat name=\"lan9\"/></heart>"), Where::kUserconfig,
       3, "'lan9' for attribute 'name' on <heartbeat>: no such lan in"},
      {"two flow networks",
       Cfg("", kRfs,
           "<heart><heartbeat name=\"default\" ident=\"flow\"/><heartbeat name=\"repl\" "
           "ident=\"flow\"/></heart>"),
       Where::kUserconfig, 3, "a second heartbeat with ident=\"flow\""},
      {"heartbeat without name", Cfg("", kRfs, "<heart><heartbeat/></heart>"), Where::kUserconfig, 3,
       "missing attribute 'name' on <heartbeat>"},
      {"missing heart", Cfg("", kRfs, ""), Where::kUserconfig, 2, "missing <heart> in <service>"},
      {"pulse with a bad unit", Cfg("", kRfs, "<heart pulse=\"7x\"><heartbeat name=\"default\"/></heart>"),
       Where::kUserconfig, 3, "'7x' for attribute 'pulse' on <heart>: unknown unit 'x'"},
      {"timeout shorter than two pulses",
       Cfg("", kRfs, "<heart pulse=\"700\" timeout=\"1s\"><heartbeat name=\"default\"/></heart>"),
       Where::kUserconfig, 3, "must be at least twice pulse"},
      {"defaultprim not a node", Cfg(" defaultprim=\"node7\"", kRfs), Where::kUserconfig, 2,
       "'node7' for attribute 'defaultprim' on <service>: expected alone, lastprim or a node of"},
      {"failover not on/off", Cfg(" failover=\"maybe\"", kRfs), Where::kUserconfig, 2,
       "'maybe' for attribute 'failover' on <service>: expected on or off"},
      {"farm module", "<safe>\n<service mode=\"farm\">\n" + std::string(kHeart) + "\n</service></safe>",
       Where::kUserconfig, 2, "hamirror implements mirror modules only"},
      {"zero loop_interval", Cfg(" loop_interval=\"0\"", kRfs), Where::kUserconfig, 2,
       "must be greater than 0"},
      {"two root elements", "<safe>\n</safe>\n<safe/>\n", Where::kUserconfig, 3,
       "second root element <safe>"},
      {"empty file", "", Where::kUserconfig, 1, "malformed XML: No document element found"},
      {"duplicate macro", Cfg("", "<macro name=\"A\" value=\"1\"/>\n<macro name=\"A\" value=\"2\"/>"),
       Where::kUserconfig, 5, "duplicate macro 'A'"},
      {"root is not <safe>", "<module>\n</module>\n", Where::kUserconfig, 1, "root element must be <safe>"},
      {"errd action", Cfg("", "<errd>\n<proc name=\"mysqld\" action=\"reboot\"/></errd>"), Where::kUserconfig,
       5, "'reboot' for attribute 'action' on <proc>: expected one of restart, stopstart, stop"},
      {"proc without name", Cfg("", "<errd>\n<proc atleast=\"1\"/></errd>"), Where::kUserconfig, 5,
       "<proc> needs exactly one of 'name' and 'nameregex'"},
      {"atmax below atleast", Cfg("", "<errd>\n<proc name=\"x\" atleast=\"2\" atmax=\"1\"/></errd>"),
       Where::kUserconfig, 5, "must not be less than atleast (2)"},
      {"bad regexpath",
       Cfg("", "<rfs><replicated dir=\"@DATA@\">\n<notreplicated regexpath=\"([a-z\"/>\n</replicated></rfs>"),
       Where::kUserconfig, 5, "for attribute 'regexpath' on <notreplicated>: not a valid regular expression"},
      {"absolute notreplicated path",
       Cfg("", "<rfs><replicated dir=\"@DATA@\">\n<notreplicated path=\"/etc\"/>\n</replicated></rfs>"),
       Where::kUserconfig, 5, "expected a path relative to the replicated dir"},
      {"directio not a mode", Cfg("", "<rfs>\n<replicated dir=\"@DATA@\" directio=\"fast\"/></rfs>"),
       Where::kUserconfig, 5,
       "'fast' for attribute 'directio' on <replicated>: expected one of odirect, all"},
      {"keepmounted not on/off", Cfg("", "<rfs keepmounted=\"sometimes\"><replicated dir=\"@DATA@\"/></rfs>"),
       Where::kUserconfig, 4, "'sometimes' for attribute 'keepmounted' on <rfs>"},
      {"rfs without replicated", Cfg("", "<rfs nbrei=\"2\"/>"), Where::kUserconfig, 4,
       "no <replicated> in <rfs>"},
      {"nbrei zero", Cfg("", "<rfs nbrei=\"0\"><replicated dir=\"@DATA@\"/></rfs>"), Where::kUserconfig, 4,
       "'0' for attribute 'nbrei' on <rfs>: expected an integer between 1 and 64"},
      {"zone size not a power of two",
       Cfg("", "<rfs ruzone_blocksize=\"3000\"><replicated dir=\"@DATA@\"/></rfs>"), Where::kUserconfig, 4,
       "expected a power of two"},
      {"bad value on a continuation line",
       Cfg("", "<rfs nbrei=\"3\"\n     sendtimeout=\"fast\">\n<replicated dir=\"@DATA@\"/></rfs>"),
       Where::kUserconfig, 5, "'fast' for attribute 'sendtimeout' on <rfs>"},
      {"duplicate rfs", Cfg("", std::string(kRfs) + "\n" + kRfs), Where::kUserconfig, 5,
       "duplicate <rfs> in <service>"},
      {"text inside an element", Cfg("", "<rfs>hello<replicated dir=\"@DATA@\"/></rfs>"), Where::kUserconfig,
       4, "unexpected text inside <rfs>"},
      {"overlapping replicated dirs",
       Cfg("", "<rfs><replicated dir=\"@DATA@\"/>\n<replicated dir=\"@DATA@/\"/></rfs>"), Where::kUserconfig,
       5, "overlaps replicated dir"},
      {"tcp port out of range",
       Cfg("",
           "<check><tcp ident=\"db\" when=\"prim\">\n<to addr=\"127.0.0.1\" "
           "port=\"70000\"/>\n</tcp></check>"),
       Where::kUserconfig, 5,
       "'70000' for attribute 'port' on <to>: expected an integer between 1 and 65535"},
      {"tcp without target", Cfg("", "<check><tcp ident=\"db\" when=\"prim\"></tcp></check>"),
       Where::kUserconfig, 4, "missing <to addr=\"...\" port=\"...\"/> in <tcp>"},
      {"duplicate checker ident",
       Cfg("",
           "<check><ping ident=\"gw\"><to addr=\"198.18.0.254\"/></ping>\n"
           "<ping ident=\"gw\"><to addr=\"198.18.0.253\"/></ping></check>"),
       Where::kUserconfig, 5, "duplicate checker ident 'gw'"},
      {"custom checker not executable", Cfg("", "<check><custom ident=\"c\" exec=\"mycheck\"/></check>"),
       Where::kUserconfig, 4, "/bin/mycheck is not executable", nullptr,
       [](const TempModule& m) { m.WriteScript("mycheck", 0644); }},
      {"witness is a host name",
       Cfg("", "<splitbrain ident=\"witness\" exec=\"ping\" arg=\"198.18.0.254 witness.example\"/>"),
       Where::kUserconfig, 4, "'witness.example' is not a numeric IPv4 or IPv6 address"},
      {"two witnesses",
       Cfg("", "<splitbrain arg=\"198.18.0.254\"/>\n<check><splitbrain arg=\"198.18.0.253\"/></check>"),
       Where::kUserconfig, 5, "duplicate <splitbrain>"},
      {"bad var name", Cfg("", "<user>\n<var name=\"1X\" value=\"a\"/></user>"), Where::kUserconfig, 5,
       "for attribute 'name' on <var>: an environment variable name"},
      {"bad logging", Cfg("", "<user logging=\"syslog\"/>"), Where::kUserconfig, 4,
       "'syslog' for attribute 'logging' on <user>: expected one of userlog, none"},
      {"same hamirror ports", Cfg("", "<hamirror heartport=\"5000\" rfsport=\"5000\"/>"), Where::kUserconfig,
       4, "rfsport and heartport must differ"},
      {"automatic split-brain policy (not built)",
       Cfg("", "<hamirror splitbrainpolicy=\"discard-least-changes\"/>"), Where::kUserconfig, 4,
       "'discard-least-changes' for attribute 'splitbrainpolicy' on <hamirror>: not implemented"},
      {"cluster node with a host name", Cfg("", kRfs), Where::kCluster, 5,
       "'node2.example.com' for attribute 'addr' on <node>: not a numeric", kHostnameNode},
      {"cluster with three nodes", Cfg("", kRfs), Where::kCluster, 2,
       "has 3 node(s): a mirror cluster has exactly 2", kThreeNodes},
      {"malformed cluster", Cfg("", kRfs), Where::kCluster, 5, "malformed XML", kMalformedCluster},
      {"lans naming other nodes", Cfg("", kRfs), Where::kCluster, 3, "every lan must list the same nodes",
       kMismatchedLans},
      {"start_prim not executable", Cfg("", kRfs), Where::kStartPrim, 0, "script is not executable", nullptr,
       [](const TempModule& m) { m.WriteScript("start_prim", 0644); }},
  };
}

TEST_CASE("broken configurations are rejected with file, line and reason", "[config][unit]") {
  const std::vector<BrokenCase> cases = Cases();
  REQUIRE(cases.size() >= 25);
  for (const BrokenCase& c : cases) {
    DYNAMIC_SECTION(c.name) {
      TempModule m;
      m.WriteUserconfig(c.userconfig);
      if (c.cluster != nullptr) m.WriteCluster(c.cluster);
      if (c.setup) c.setup(m);
      ModuleConfig cfg;
      std::vector<Diagnostic> diags;
      const Status st = LoadModule(m.module_dir(), m.cluster_file(), &cfg, &diags);
      INFO(Dump(diags));
      CHECK_FALSE(st.ok());
      const std::string file = c.where == Where::kUserconfig ? m.userconfig()
                               : c.where == Where::kCluster  ? m.cluster_file()
                                                             : m.module_dir() + "/bin/start_prim";
      bool found = false;
      for (const Diagnostic& d : diags) {
        found = found || (d.severity == Diagnostic::kError && d.file == file && d.line == c.line &&
                          d.message.find(c.phrase) != std::string::npos);
      }
      INFO("expected " << file << ":" << c.line << ": ..." << c.phrase << "...");
      CHECK(found);
    }
  }
}

TEST_CASE("a configuration using every element loads with the right values", "[config][unit]") {
  TempModule m;
  m.WriteScript("checker");
  m.WriteScript("start_prim");
  m.WriteScript("stop_prim");
  m.WriteUserconfig(R"(<?xml version="1.0"?>
<!DOCTYPE safe>
<safe>
<macro name="VIP" value="198.18.0.100/24"/>
<service mode="mirror" defaultprim="node2" failover="off" maxloop="5" loop_interval="2h" boot="on">
  <macro name="GW" value="198.18.0.254"/>
  <heart pulse="1s" timeout="10s" keyfile="@KEY@">
    <heartbeat name="default"/>
    <heartbeat name="repl" ident="flow"/>
  </heart>
  <vip>
    <interface_list>
      <interface check="off" arpreroute="on" name="eth0">
        <real_interface>
          <virtual_addr addr="%VIP%" where="one_side_alias"/>
          <virtual_addr addr="2001:db8::100"/>
        </real_interface>
      </interface>
    </interface_list>
  </vip>
  <errd polltimer="5">
    <proc name="mysqld" atleast="1" atmax="1" action="stopstart" class="both"/>
    <proc nameregex="^mysqld_safe$" argregex="--datadir" atleast="1" action="stop" class="pre"/>
  </errd>
  <rfs async="none" nbrei="4" sendtimeout="5s" reiallowedbw="20000" ruzone_blocksize="1M" keepmounted="on">
    <replicated dir="@DATA@/" mode="read_write" directio="all">
      <notreplicated path="tmp/"/>
      <notreplicated regexpath="\.pid$"/>
    </replicated>
  </rfs>
  <check>
    <tcp ident="mysql" when="prim"><to addr="127.0.0.1" port="3306" interval="5" timeout="2s"/></tcp>
    <ping ident="gw" when="both" action="wait"><to addr="%GW%"/><to addr="198.18.0.253"/></ping>
    <intf ident="eth0" when="both"><to name="eth0"/></intf>
    <custom ident="app" when="prim" exec="checker" arg="-q 50%" action="stopstart"/>
    <splitbrain ident="w" exec="ping" arg="%GW% 2001:db8::fe"/>
  </check>
  <user nicestoptimeout="1m" forcestoptimeout="30" logging="none">
    <var name="MYSQL_PORT" value="3306"/>
  </user>
  <failover><![CDATA[ rule: if (heartbeat.* == down) then alone(); ]]></failover>
  <hamirror heartport="5800" rfsport="5801" statedir="/var/lib/hamirror-test" tlsdir="@TLS@" splitbrainpolicy="manual"/>
</service>
</safe>
)");
  ModuleConfig cfg;
  std::vector<Diagnostic> diags;
  const Status st = LoadModule(m.module_dir(), m.cluster_file(), &cfg, &diags);
  INFO(Dump(diags));
  REQUIRE(st.ok());
  REQUIRE(diags.size() == 2);  // mode="read_write" and <failover> are accepted with a warning
  CHECK(diags[0].severity == Diagnostic::kWarning);
  CHECK(diags[0].line == 26);
  CHECK(diags[0].message.find("mode=\"read_write\" on <replicated> has no effect") != std::string::npos);
  CHECK(diags[1].severity == Diagnostic::kWarning);
  CHECK(diags[1].line == 41);
  CHECK(diags[1].message.find("<failover> rules are not supported") != std::string::npos);

  CHECK(cfg.service.defaultprim == DefaultPrim::kNode);
  CHECK(cfg.service.defaultprim_node == "node2");
  CHECK_FALSE(cfg.service.failover);
  CHECK(cfg.service.maxloop == 5);
  CHECK(cfg.service.loop_interval == std::chrono::hours(2));
  CHECK(cfg.service.boot);
  CHECK(cfg.heart.pulse == std::chrono::seconds(1));
  CHECK(cfg.heart.timeout == std::chrono::seconds(10));
  REQUIRE(cfg.heart.heartbeats.size() == 2);
  CHECK_FALSE(cfg.heart.heartbeats[0].flow);
  CHECK(cfg.heart.FlowNetwork().name == "repl");
  CHECK(cfg.heart.FlowNetwork().nodes[0].addr == "198.19.0.1");
  REQUIRE(cfg.vip.interfaces.size() == 1);
  CHECK(cfg.vip.interfaces[0].name == "eth0");
  CHECK_FALSE(cfg.vip.interfaces[0].check);
  REQUIRE(cfg.vip.interfaces[0].addrs.size() == 2);
  CHECK(cfg.vip.interfaces[0].addrs[0].addr == "198.18.0.100");
  CHECK(cfg.vip.interfaces[0].addrs[0].prefix_len == 24);
  CHECK(cfg.vip.interfaces[0].addrs[1].addr == "2001:db8::100");
  CHECK(cfg.errd.polltimer == std::chrono::seconds(5));
  REQUIRE(cfg.errd.procs.size() == 2);
  CHECK(cfg.errd.procs[0].atmax == 1);
  CHECK(cfg.errd.procs[0].action == RecoveryAction::kStopStart);
  CHECK(cfg.errd.procs[0].klass == RoleClass::kBoth);
  CHECK(cfg.errd.procs[1].nameregex == "^mysqld_safe$");
  CHECK(cfg.errd.procs[1].argregex == "--datadir");
  CHECK(cfg.errd.procs[1].klass == RoleClass::kPre);
  CHECK(cfg.rfs.async == AsyncMode::kNone);
  CHECK(cfg.rfs.nbrei == 4);
  CHECK(cfg.rfs.sendtimeout == std::chrono::seconds(5));
  CHECK(cfg.rfs.reiallowedbw_kbps == 20000);
  CHECK(cfg.rfs.ruzone_blocksize == 1u << 20);
  CHECK(cfg.rfs.keep_mounted);
  REQUIRE(cfg.rfs.replicated.size() == 1);
  CHECK(cfg.rfs.replicated[0].dir == m.data_dir());
  CHECK_FALSE(cfg.rfs.replicated[0].read_only);
  CHECK(cfg.rfs.replicated[0].direct_io_all);
  REQUIRE(cfg.rfs.replicated[0].notreplicated.size() == 2);
  CHECK(cfg.rfs.replicated[0].notreplicated[0].path == "tmp");
  CHECK(cfg.rfs.replicated[0].notreplicated[1].regexpath == "\\.pid$");
  REQUIRE(cfg.check.tcp.size() == 1);
  CHECK(cfg.check.tcp[0].port == 3306);
  CHECK(cfg.check.tcp[0].interval == std::chrono::seconds(5));
  CHECK(cfg.check.tcp[0].timeout == std::chrono::seconds(2));
  CHECK(cfg.check.tcp[0].action == RecoveryAction::kRestart);
  REQUIRE(cfg.check.ping.size() == 1);
  CHECK(cfg.check.ping[0].addrs == std::vector<std::string>{"198.18.0.254", "198.18.0.253"});
  CHECK(cfg.check.ping[0].action == RecoveryAction::kWait);
  REQUIRE(cfg.check.intf.size() == 1);
  CHECK(cfg.check.intf[0].interface == "eth0");
  REQUIRE(cfg.check.custom.size() == 1);
  CHECK(cfg.check.custom[0].exec == cfg.module_dir + "/bin/checker");
  CHECK(cfg.check.custom[0].arg == "-q 50%");
  CHECK(cfg.check.custom[0].action == RecoveryAction::kStopStart);
  REQUIRE(cfg.has_splitbrain);
  CHECK(cfg.splitbrain.ident == "w");
  CHECK(cfg.splitbrain.addrs == std::vector<std::string>{"198.18.0.254", "2001:db8::fe"});
  CHECK(cfg.user.nicestoptimeout == std::chrono::minutes(1));
  CHECK(cfg.user.forcestoptimeout == std::chrono::seconds(30));
  CHECK_FALSE(cfg.user.logging);
  REQUIRE(cfg.user.vars.size() == 1);
  CHECK(cfg.user.vars[0] == std::pair<std::string, std::string>{"MYSQL_PORT", "3306"});
  CHECK(cfg.hamirror.heartbeat_port == 5800);
  CHECK(cfg.hamirror.replication_port == 5801);
  CHECK(cfg.hamirror.state_dir == "/var/lib/hamirror-test");
  CHECK(cfg.hamirror.tls_dir == m.tls_dir());
  CHECK(cfg.rfs.encryption);
  CHECK(cfg.heart.key_file == m.key_file());
  CHECK_FALSE(cfg.heart.derived_key);
  CHECK(cfg.hamirror.splitbrain_policy == SplitBrainPolicy::kManual);
  CHECK(cfg.macros.size() == 2);
}

TEST_CASE("settings without effect in hamirror are warnings, not errors", "[config][unit]") {
  TempModule m;
  m.WriteCluster(
      "<cluster><lans><lan name=\"default\" console=\"on\">\n"
      "<node name=\"a\" addr=\"198.18.0.1\"/><node name=\"b\" "
      "addr=\"198.18.0.2\"/></lan></lans></cluster>\n");
  m.WriteUserconfig(Cfg("",
                        "<rfs locktimeout=\"100\" namespacepolicy=\"1\" syncdelta=\"60\">\n"
                        "<replicated dir=\"@DATA@\"/></rfs>\n<hamirror tlsdir=\"@TLS@\"/>"));
  ModuleConfig cfg;
  std::vector<Diagnostic> diags;
  REQUIRE(LoadModule(m.module_dir(), m.cluster_file(), &cfg, &diags).ok());
  std::vector<std::string> got;
  for (const Diagnostic& d : diags) {
    CHECK(d.severity == Diagnostic::kWarning);
    got.push_back(d.ToString());
  }
  REQUIRE(got.size() == 4);
  CHECK(got[0].starts_with(m.cluster_file() + ":1: warning: attribute 'console' on <lan> has no effect"));
  CHECK(got[1].starts_with(m.userconfig() + ":4: warning: attribute 'locktimeout' on <rfs> has no effect"));
  CHECK(got[2].find("'namespacepolicy'") != std::string::npos);
  CHECK(got[3].find("'syncdelta'") != std::string::npos);
  CHECK(cfg.rfs.locktimeout == std::chrono::seconds(100));
}

}  // namespace
}  // namespace hamirror::config
