// hamirrord refuses to start on a bad configuration, printing every error with file and line.
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>

TEST_CASE("hamirrord: a bad configuration is refused with file, line and reason", "[daemon]") {
  char tmpl[] = "/tmp/hamirror-badconf-XXXXXX";
  REQUIRE(mkdtemp(tmpl));
  const std::string dir = tmpl;
  std::filesystem::create_directories(dir + "/m/conf");
  std::ofstream(dir + "/m/conf/userconfig.xml")
      << "<safe>\n<service mode=\"mirror\">\n  <heart pulse=\"abc\"/>\n</service>\n</safe>\n";
  std::ofstream(dir + "/cluster.xml")
      << "<cluster><lans><lan name=\"default\"><node name=\"n1\" addr=\"198.18.0.11\"/>"
      << "<node name=\"n2\" addr=\"198.18.0.12\"/></lan></lans></cluster>\n";
  const std::string cmd = std::string(HAMIRRORD_BIN) + " --module " + dir + "/m --cluster " + dir +
                          "/cluster.xml --node n1 --socket " + dir + "/s.sock --log " + dir + "/m.log 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int st = pclose(p);
  INFO(out);
  CHECK(WIFEXITED(st));
  CHECK(WEXITSTATUS(st) == 78);  // EX_CONFIG
  CHECK(out.find(dir + "/m/conf/userconfig.xml:3: invalid value 'abc' for attribute 'pulse'") !=
        std::string::npos);
  CHECK(out.find("not starting") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(dir + "/s.sock"));  // nothing started
  std::filesystem::remove_all(dir);
}
