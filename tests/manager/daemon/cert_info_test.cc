// ReadCertificateInfo: subject and notAfter of a node certificate made by openssl (as hamirror-certs
// makes them), and the errors for a missing file and for a file that holds no certificate.
#include "manager/daemon/cert_info.h"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>

using hamirror::daemon::CertificateInfo;
using hamirror::daemon::ReadCertificateInfo;

namespace {

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    char tmpl[] = "/tmp/cert_info_test.XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

}  // namespace

TEST_CASE("a node certificate's subject and expiry", "[daemon][tls]") {
  TempDir dir;
  const std::string pem = (dir.path / "node.pem").string();
  const std::string cmd =
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout " +
      (dir.path / "node.key").string() + " -out " + pem + " -days 42 -subj /CN=n1 >/dev/null 2>&1";
  REQUIRE(std::system(cmd.c_str()) == 0);
  CertificateInfo info;
  const auto st = ReadCertificateInfo(pem, &info);
  REQUIRE(st.ok());
  CHECK(info.subject == "CN=n1");
  const auto want = static_cast<std::uint64_t>(time(nullptr)) + 42ULL * 86400;
  CHECK(info.not_after_s <= want);
  CHECK(info.not_after_s + 120 >= want);
}

TEST_CASE("a missing or non-certificate file is an error naming it", "[daemon][tls]") {
  TempDir dir;
  CertificateInfo info;
  const std::string missing = (dir.path / "none.pem").string();
  auto st = ReadCertificateInfo(missing, &info);
  CHECK_FALSE(st.ok());
  CHECK(st.message().find(missing) != std::string::npos);
  const std::string junk = (dir.path / "junk.pem").string();
  std::ofstream(junk) << "not a certificate\n";
  st = ReadCertificateInfo(junk, &info);
  CHECK_FALSE(st.ok());
  CHECK(st.message() == junk + ": no PEM certificate");
}
