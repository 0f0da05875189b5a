#include "replicator/tls.h"

#include <grpcpp/grpcpp.h>

#include <catch2/catch.hpp>

using namespace hamirror::replicator;

TEST_CASE("address parsing and loopback detection", "[tls]") {
  std::string host;
  int port = 0;
  REQUIRE(SplitHostPort("127.0.0.1:7000", &host, &port).ok());
  CHECK(host == "127.0.0.1");
  CHECK(port == 7000);
  REQUIRE(SplitHostPort("[::1]:9", &host, &port).ok());
  CHECK(host == "::1");
  CHECK(!SplitHostPort("::1:9", &host, &port).ok());
  CHECK(!SplitHostPort("host", &host, &port).ok());
  CHECK(!SplitHostPort("host:99999", &host, &port).ok());
  CHECK(!SplitHostPort("host:x", &host, &port).ok());
  CHECK(IsLoopbackAddress("127.0.0.1:1"));
  CHECK(IsLoopbackAddress("127.3.4.5:1"));
  CHECK(IsLoopbackAddress("localhost:1"));
  CHECK(IsLoopbackAddress("[::1]:1"));
  CHECK(!IsLoopbackAddress("198.18.0.1:1"));
  CHECK(!IsLoopbackAddress("0.0.0.0:1"));
  CHECK(!IsLoopbackAddress("node2:1"));
}

TEST_CASE("plaintext only on loopback or when asked for", "[tls]") {
  std::shared_ptr<grpc::ChannelCredentials> ch;
  std::shared_ptr<grpc::ServerCredentials> sv;
  TlsOptions none;
  CHECK(MakeChannelCredentials(none, "127.0.0.1:5000", &ch, nullptr).ok());
  CHECK(MakeServerCredentials(none, "127.0.0.1:5000", &sv).ok());
  auto s = MakeChannelCredentials(none, "198.18.0.2:5000", &ch, nullptr);
  CHECK(!s.ok());
  CHECK(s.message().find("not loopback") != std::string::npos);
  CHECK(!MakeServerCredentials(none, "0.0.0.0:5000", &sv).ok());
  TlsOptions insecure;
  insecure.insecure = true;
  CHECK(MakeServerCredentials(insecure, "0.0.0.0:5000", &sv).ok());
  TlsOptions partial;
  partial.cert = "/nonexistent/cert.pem";
  s = MakeServerCredentials(partial, "127.0.0.1:5000", &sv);
  CHECK(!s.ok());
  CHECK(s.message().find("all three") != std::string::npos);
  TlsOptions missing;
  missing.cert = missing.key = missing.ca = "/nonexistent/x.pem";
  s = MakeChannelCredentials(missing, "198.18.0.2:5000", &ch, nullptr);
  CHECK(!s.ok());
  CHECK(s.message().find("/nonexistent/x.pem") != std::string::npos);
}
