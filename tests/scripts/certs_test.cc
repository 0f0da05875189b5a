// scripts/hamirror-certs, run as an operator would: what it makes verifies with openssl (CA, node
// certificates naming node and addresses, a 32-byte private heartbeat key), it never replaces an
// existing CA without --force, and usage errors exit 64.
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>

#include "tests/support/daemon.h"

namespace {

using namespace std::chrono_literals;

struct Run {
  int rc = -1;
  std::string out;
};

Run Exec(const std::vector<std::string>& argv) {
  Run r;
  const hamirror::Status st = hamirror::test::RunCommand(argv, 60s, &r.rc, &r.out);
  INFO(st.ToString());
  REQUIRE(st.ok());
  return r;
}

Run Certs(std::vector<std::string> args) {
  args.insert(args.begin(), HAMIRROR_CERTS_BIN);
  return Exec(args);
}

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/hamirror-certs-test-XXXXXX";
    REQUIRE(mkdtemp(tmpl));
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

mode_t Mode(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

}  // namespace

TEST_CASE("hamirror-certs makes a CA, node certificates and a heartbeat key that verify", "[certs]") {
  TempDir t;
  const std::string out = t.path + "/pki";
  std::ofstream(t.path + "/cluster.xml") << "<cluster><lans>\n"
                                            "<lan name=\"a\"><node name=\"n1\" addr=\"198.18.0.11\"/>\n"
                                            "<node addr=\"198.18.0.12\" name=\"n2\"/></lan>\n"
                                            "<lan name=\"b\"><node name=\"n1\" addr=\"198.18.1.11\"/>"
                                            "<node name=\"n2\" addr=\"198.18.1.12\"/></lan>\n"
                                            "</lans></cluster>\n";
  Run r = Certs({"--out", out, "--cluster", t.path + "/cluster.xml", "--days", "30"});
  INFO(r.out);
  REQUIRE(r.rc == 0);
  for (const char* n : {"n1", "n2"}) {
    const std::string d = out + "/" + n;
    Run v = Exec({"openssl", "verify", "-CAfile", d + "/ca.pem", "-purpose", "sslserver", d + "/node.pem"});
    INFO(v.out);
    CHECK(v.rc == 0);
    v = Exec({"openssl", "verify", "-CAfile", out + "/ca.pem", "-purpose", "sslclient", d + "/node.pem"});
    CHECK(v.rc == 0);
    CHECK(Mode(d + "/node.key") == 0600);
  }
  Run san = Exec({"openssl", "x509", "-in", out + "/n1/node.pem", "-noout", "-ext", "subjectAltName"});
  CHECK(san.out.find("DNS:n1, IP Address:198.18.0.11, IP Address:198.18.1.11") != std::string::npos);
  san = Exec({"openssl", "x509", "-in", out + "/n2/node.pem", "-noout", "-ext", "subjectAltName"});
  CHECK(san.out.find("DNS:n2, IP Address:198.18.0.12, IP Address:198.18.1.12") != std::string::npos);
  // The key of one node does not go with the other's certificate.
  Run k1 = Exec({"openssl", "pkey", "-in", out + "/n1/node.key", "-pubout"});
  Run c2 = Exec({"openssl", "x509", "-in", out + "/n2/node.pem", "-noout", "-pubkey"});
  CHECK(k1.out != c2.out);
  CHECK(std::filesystem::file_size(out + "/heartbeat.key") == 32);
  CHECK(Mode(out + "/heartbeat.key") == 0600);
  CHECK(Mode(out + "/ca.key") == 0600);

  // Nodes named on the command line, with addresses.
  r = Certs({"--out", t.path + "/pki2", "alpha=192.0.2.1,2001:db8::1", "beta"});
  INFO(r.out);
  REQUIRE(r.rc == 0);
  san = Exec({"openssl", "x509", "-in", t.path + "/pki2/alpha/node.pem", "-noout", "-ext", "subjectAltName"});
  CHECK(san.out.find("DNS:alpha, IP Address:192.0.2.1, IP Address:2001:DB8:0:0:0:0:0:1") !=
        std::string::npos);
}

TEST_CASE("hamirror-certs never replaces an existing CA without --force", "[certs]") {
  TempDir t;
  const std::string out = t.path + "/pki";
  REQUIRE(Certs({"--out", out, "n1", "n2"}).rc == 0);
  std::ifstream in(out + "/ca.pem");
  const std::string ca((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Run r = Certs({"--out", out, "n1", "n2"});
  INFO(r.out);
  CHECK(r.rc == 1);
  CHECK(r.out.find("already holds a CA") != std::string::npos);
  std::ifstream again(out + "/ca.pem");
  CHECK(std::string((std::istreambuf_iterator<char>(again)), std::istreambuf_iterator<char>()) == ca);
  r = Certs({"--out", out, "--force", "n1", "n2"});
  CHECK(r.rc == 0);
  std::ifstream forced(out + "/ca.pem");
  CHECK(std::string((std::istreambuf_iterator<char>(forced)), std::istreambuf_iterator<char>()) != ca);
}

TEST_CASE("hamirror-certs usage errors exit 64 and write nothing", "[certs]") {
  TempDir t;
  const std::string out = t.path + "/pki";
  const std::vector<std::vector<std::string>> bad = {
      {},                                                 // nothing
      {"--out", out},                                     // no node
      {"n1", "n2"},                                       // no --out
      {"--out", out, "--days", "soon", "n1"},             // bad days
      {"--out", out, "--bogus", "n1"},                    // unknown option
      {"--out", out, "bad/name"},                         // not a node name
      {"--out", out, "n1", "n1"},                         // twice
      {"--out", out, "n1=host.example", "n2"},            // not an address
      {"--out", out, "--cluster", t.path + "/none.xml"},  // unreadable cluster file
  };
  for (const auto& args : bad) {
    Run r = Certs(args);
    INFO(r.out);
    CHECK(r.rc == 64);
    CHECK(r.out.find("usage") != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(out));
  }
}

TEST_CASE("hamirror certs runs hamirror-certs with its arguments", "[certs]") {
  TempDir t;
  const std::string out = t.path + "/pki";
  Run r = Exec({HAMIRROR_CLI_BIN, "certs", "--out", out, "n1", "n2"});
  INFO(r.out);
  REQUIRE(r.rc == 0);
  CHECK(std::filesystem::exists(out + "/n1/node.pem"));
  CHECK(std::filesystem::exists(out + "/heartbeat.key"));
  r = Exec({HAMIRROR_CLI_BIN, "certs", "--out", out});  // its usage error, its exit code
  CHECK(r.rc == 64);
}
