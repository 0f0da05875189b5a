// End to end: RunConfcheck (the `hamirror confcheck` verb) over scratch module directories.
#include <catch2/catch.hpp>
#include <sstream>

#include "manager/config/config.h"
#include "tests/manager/config/temp_module.h"

namespace hamirror::config {
namespace {

using testing::TempModule;

TEST_CASE("confcheck exits 0 on a valid module", "[config][unit]") {
  TempModule m;
  m.WriteScript("start_prim");
  m.WriteScript("stop_prim");
  m.WriteUserconfig(
      "<safe><service mode=\"mirror\">\n"
      "<heart keyfile=\"@KEY@\"><heartbeat name=\"default\" ident=\"flow\"/></heart>\n"
      "<vip><interface_list><interface><real_interface><virtual_addr addr=\"198.18.0.100\"/>"
      "</real_interface></interface></interface_list></vip>\n"
      "<rfs><replicated dir=\"@DATA@\"/></rfs>\n"
      "<hamirror tlsdir=\"@TLS@\"/>\n"
      "</service></safe>\n");
  std::ostringstream out;
  CHECK(RunConfcheck(m.module_dir(), m.cluster_file(), out) == 0);
  CHECK(out.str() == "configuration OK: module mysql (0 warning(s))\n");
}

TEST_CASE("confcheck exits non-zero and prints every problem", "[config][unit]") {
  TempModule m;
  m.WriteScript("start_prim", 0600);
  m.WriteUserconfig(
      "<safe><service mode=\"mirror\">\n"                                                              // 1
      "<heart pulse=\"700\" timeout=\"30000\" keyfile=\"@KEY@\"><heartbeat name=\"lan9\"/></heart>\n"  // 2
      "<vip><interface_list><interface><real_interface>\n"                                             // 3
      "<virtual_addr addr=\"VIRTUAL_TO_BE_DEFINED\"/>\n"                                               // 4
      "</real_interface></interface></interface_list></vip>\n"                                         // 5
      "<rfs acl=\"off\" bogus=\"1\"><replicated dir=\"/nonexistent/hamirror\"/></rfs>\n"               // 6
      "<hamirror tlsdir=\"@TLS@\"/>\n"                                                                 // 7
      "</service></safe>\n");
  std::ostringstream out;
  CHECK(RunConfcheck(m.module_dir(), m.cluster_file(), out) == 1);
  const std::string text = out.str();
  INFO(text);
  const std::string uc = m.userconfig();
  CHECK(text.find(uc + ":2: invalid value 'lan9' for attribute 'name' on <heartbeat>: no such lan") !=
        std::string::npos);
  CHECK(text.find(uc + ":4: invalid value 'VIRTUAL_TO_BE_DEFINED' for attribute 'addr'") !=
        std::string::npos);
  CHECK(text.find(uc + ":6: unknown attribute 'bogus' on <rfs>") != std::string::npos);
  CHECK(text.find(uc + ":6: warning: attribute 'acl' on <rfs> has no effect") != std::string::npos);
  CHECK(text.find(uc + ":6: invalid value '/nonexistent/hamirror' for attribute 'dir' on <replicated>") !=
        std::string::npos);
  CHECK(text.find(m.module_dir() + "/bin/start_prim: script is not executable") != std::string::npos);
  CHECK(text.find("5 error(s), 1 warning(s): configuration rejected\n") != std::string::npos);
}

TEST_CASE("confcheck reports missing files", "[config][unit]") {
  TempModule m;
  std::ostringstream out;
  CHECK(RunConfcheck(m.module_dir(), m.root() + "/no-cluster.xml", out) == 1);
  const std::string text = out.str();
  INFO(text);
  CHECK(text.find(m.root() + "/no-cluster.xml: cannot read file: No such file or directory") !=
        std::string::npos);
  CHECK(text.find(m.userconfig() + ": cannot read file") != std::string::npos);

  std::ostringstream out2;
  CHECK(RunConfcheck(m.root() + "/nomodule", m.cluster_file(), out2) == 1);
  CHECK(out2.str().find("module directory does not exist") != std::string::npos);
}

}  // namespace
}  // namespace hamirror::config
