// hamirrord refuses to start on a bad configuration (exit 78, EX_CONFIG), printing every error with
// file and line: missing TLS files and heartbeat key included, unless explicitly given up.
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>

namespace {

constexpr int kExitConfigError = 78;

struct Run {
  int status = -1;  // exit code, -1 when not exited normally
  std::string out;
};

Run RunDaemon(const std::string& dir) {
  const std::string cmd = std::string(HAMIRRORD_BIN) + " --module " + dir + "/m --cluster " + dir +
                          "/cluster.xml --node n1 --socket " + dir + "/s.sock --log " + dir + "/m.log 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p);
  Run r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

// A scratch module m/ and a cluster.xml whose node n1 (198.18.0.11) is not on this host.
std::string MakeScratch(const std::string& userconfig) {
  char tmpl[] = "/tmp/hamirror-badconf-XXXXXX";
  REQUIRE(mkdtemp(tmpl));
  const std::string dir = tmpl;
  std::filesystem::create_directories(dir + "/m/conf");
  std::filesystem::create_directories(dir + "/data");
  std::filesystem::create_directories(dir + "/tls");
  std::ofstream(dir + "/m/conf/userconfig.xml") << userconfig;
  std::ofstream(dir + "/cluster.xml")
      << "<cluster><lans><lan name=\"default\"><node name=\"n1\" addr=\"198.18.0.11\"/>"
      << "<node name=\"n2\" addr=\"198.18.0.12\"/></lan></lans></cluster>\n";
  return dir;
}

}  // namespace

TEST_CASE("hamirrord: a bad configuration is refused with file, line and reason", "[daemon]") {
  const std::string dir =
      MakeScratch("<safe>\n<service mode=\"mirror\">\n  <heart pulse=\"abc\"/>\n</service>\n</safe>\n");
  const Run r = RunDaemon(dir);
  INFO(r.out);
  CHECK(r.status == kExitConfigError);
  CHECK(r.out.find(dir + "/m/conf/userconfig.xml:3: invalid value 'abc' for attribute 'pulse'") !=
        std::string::npos);
  CHECK(r.out.find("not starting") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(dir + "/s.sock"));  // nothing started
  std::filesystem::remove_all(dir);
}

TEST_CASE("hamirrord: no TLS files and no heartbeat key without an opt-out: refused, exit 78",
          "[daemon][security]") {
  auto userconfig = [](const std::string& dir, const std::string& heart, const std::string& rfs) {
    return "<safe>\n<service mode=\"mirror\">\n"  // 1-2
           "  <heart" +
           heart +
           "><heartbeat name=\"default\"/></heart>\n"  // 3
           "  <rfs" +
           rfs + "><replicated dir=\"" + dir +
           "/data\"/></rfs>\n"  // 4
           "  <hamirror tlsdir=\"" +
           dir + "/tls\" statedir=\"" + dir +
           "/state\"/>\n"  // 5
           "</service>\n</safe>\n";
  };
  const std::string dir = MakeScratch("");
  const std::string uc = dir + "/m/conf/userconfig.xml";
  std::ofstream(uc) << userconfig(dir, " keyfile=\"" + dir + "/heartbeat.key\"", "");
  Run r = RunDaemon(dir);
  INFO(r.out);
  CHECK(r.status == kExitConfigError);
  CHECK(r.out.find(uc + ":5: replication link (TLS) not usable: missing ca.pem, node.pem, node.key in " +
                   dir + "/tls") != std::string::npos);
  CHECK(r.out.find(uc + ":3: heartbeat key file " + dir + "/heartbeat.key does not exist") !=
        std::string::npos);
  CHECK(r.out.find("2 error(s) in configuration; not starting") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(dir + "/s.sock"));
  CHECK_FALSE(std::filesystem::exists(dir + "/state"));  // nothing started

  // Both given up explicitly: the configuration passes (with warnings); what stops this daemon now is
  // that node n1's address is not on this host.
  std::ofstream(uc, std::ios::trunc) << userconfig(dir, " auth=\"derived\"", " encryption=\"off\"");
  r = RunDaemon(dir);
  INFO(r.out);
  CHECK(r.status == kExitConfigError);
  CHECK(r.out.find(uc + ":4: warning: encryption=\"off\" on <rfs>") != std::string::npos);
  CHECK(r.out.find(uc + ":3: warning: auth=\"derived\" on <heart>") != std::string::npos);
  CHECK(r.out.find("error(s) in configuration") == std::string::npos);
  CHECK(r.out.find("hamirrord: node 'n1' is not on this host: none of its addresses in " + dir +
                   "/cluster.xml (198.18.0.11 (lan default)) is configured here") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(dir + "/s.sock"));
  std::filesystem::remove_all(dir);
}
