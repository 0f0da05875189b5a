#include "manager/heartbeat/heartbeat_packet.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "manager/heartbeat/heartbeat_key.h"

namespace hb = hamirror::heartbeat;

namespace {

hb::HeartbeatPacket SamplePacket() {
  hb::HeartbeatPacket p;
  p.cluster_id = hb::ComputeClusterId("<cluster/>", "mysql");
  p.incarnation = 1234567890123ull;
  p.sequence = 42;
  p.sender = "node1";
  p.receiver = "node2";
  p.summary = {.state = 3,
               .sub_state = 1,
               .data_generation = 0x0102030405060708ull,
               .up_to_date = true,
               .last_primary = false};
  return p;
}

std::vector<uint8_t> Encode(const hb::HeartbeatPacket& p, const hb::HeartbeatKey& key) {
  std::vector<uint8_t> buf(hb::kMaxPacketSize);
  buf.resize(hb::EncodeHeartbeat(p, key, buf.data(), buf.size()));
  return buf;
}

}  // namespace

TEST_CASE("heartbeat packet round trip", "[heartbeat]") {
  const hb::HeartbeatKey key("0123456789abcdef-secret");
  hb::HeartbeatPacket p = SamplePacket();
  for (bool up : {false, true}) {
    for (bool last : {false, true}) {
      p.summary.up_to_date = up;
      p.summary.last_primary = last;
      std::vector<uint8_t> buf = Encode(p, key);
      REQUIRE(buf.size() == 44 + 1 + 5 + 1 + 5 + 2 + hb::kTagSize);
      hb::HeartbeatPacket out;
      REQUIRE(hb::DecodeHeartbeat(buf.data(), buf.size(), p.cluster_id, key, &out) == hb::DecodeError::kNone);
      CHECK(out == p);
    }
  }
  // Empty and maximal names and payloads (binary payload, NULs included).
  p.sender = std::string(hb::kMaxNodeName, 'a');
  p.receiver = "";
  p.payload = std::string(hb::kMaxPayload, '\0');
  for (size_t i = 0; i < p.payload.size(); ++i) p.payload[i] = static_cast<char>(i * 7);
  std::vector<uint8_t> buf = Encode(p, key);
  REQUIRE(buf.size() == hb::kMaxPacketSize - hb::kMaxNodeName);
  hb::HeartbeatPacket out;
  REQUIRE(hb::DecodeHeartbeat(buf.data(), buf.size(), p.cluster_id, key, &out) == hb::DecodeError::kNone);
  CHECK(out == p);
  p.payload = "short";
  buf = Encode(p, key);
  REQUIRE(hb::DecodeHeartbeat(buf.data(), buf.size(), p.cluster_id, key, &out) == hb::DecodeError::kNone);
  CHECK(out == p);
}

TEST_CASE("heartbeat encode refuses oversized names and small buffers", "[heartbeat]") {
  const hb::HeartbeatKey key("0123456789abcdef-secret");
  hb::HeartbeatPacket p = SamplePacket();
  uint8_t buf[hb::kMaxPacketSize];
  CHECK(hb::EncodeHeartbeat(p, key, buf, 20) == 0);
  p.sender = std::string(hb::kMaxNodeName + 1, 'x');
  CHECK(hb::EncodeHeartbeat(p, key, buf, sizeof(buf)) == 0);
  p.sender = std::string("a");
  p.payload = std::string(hb::kMaxPayload + 1, 'x');
  CHECK(hb::EncodeHeartbeat(p, key, buf, sizeof(buf)) == 0);
}

TEST_CASE("heartbeat decode rejects garbage, other clusters and forgeries", "[heartbeat]") {
  const hb::HeartbeatKey key("0123456789abcdef-secret");
  hb::HeartbeatPacket p = SamplePacket();
  p.payload = "opaque status";
  const std::vector<uint8_t> good = Encode(p, key);
  hb::HeartbeatPacket out;

  SECTION("every truncation is garbage") {
    for (size_t len = 0; len < good.size(); ++len) {
      INFO("len " << len);
      CHECK(hb::DecodeHeartbeat(good.data(), len, p.cluster_id, key, &out) == hb::DecodeError::kGarbage);
    }
  }
  SECTION("trailing bytes are garbage") {
    std::vector<uint8_t> longer = good;
    longer.push_back(0);
    CHECK(hb::DecodeHeartbeat(longer.data(), longer.size(), p.cluster_id, key, &out) ==
          hb::DecodeError::kGarbage);
  }
  SECTION("bad magic, version, flags, name length") {
    for (size_t offset : {size_t{0}, size_t{4}, size_t{34}, size_t{44}, size_t{57}}) {
      std::vector<uint8_t> bad = good;
      bad[offset] ^= 0x80;
      INFO("offset " << offset);
      CHECK(hb::DecodeHeartbeat(bad.data(), bad.size(), p.cluster_id, key, &out) ==
            hb::DecodeError::kGarbage);
    }
  }
  SECTION("random bytes") {
    std::vector<uint8_t> noise(100);
    uint32_t x = 12345;
    for (int round = 0; round < 200; ++round) {
      for (auto& b : noise) {
        x = x * 1664525u + 1013904223u;
        b = static_cast<uint8_t>(x >> 24);
      }
      CHECK(hb::DecodeHeartbeat(noise.data(), noise.size(), p.cluster_id, key, &out) !=
            hb::DecodeError::kNone);
    }
  }
  SECTION("wrong cluster id") {
    CHECK(hb::DecodeHeartbeat(good.data(), good.size(), p.cluster_id + 1, key, &out) ==
          hb::DecodeError::kWrongCluster);
  }
  SECTION("any flipped bit after the header fails the tag") {
    // Bytes 8..15 are the cluster id (reported as wrong cluster); the length bytes (names at 44 and
    // 50, payload at 56-57) are structural.
    for (size_t i = 16; i < good.size(); ++i) {
      if (i == 34 || i == 44 || i == 50 || i == 56 || i == 57) continue;
      std::vector<uint8_t> bad = good;
      bad[i] ^= 0x01;
      INFO("byte " << i);
      CHECK(hb::DecodeHeartbeat(bad.data(), bad.size(), p.cluster_id, key, &out) == hb::DecodeError::kBadTag);
    }
  }
  SECTION("another key") {
    const hb::HeartbeatKey other("0123456789abcdef-secreT");
    CHECK(hb::DecodeHeartbeat(good.data(), good.size(), p.cluster_id, other, &out) ==
          hb::DecodeError::kBadTag);
  }
}

TEST_CASE("replay filter accepts only newer (incarnation, sequence)", "[heartbeat]") {
  hb::ReplayFilter f;
  CHECK(f.Accept(10, 5));
  CHECK_FALSE(f.Accept(10, 5));
  CHECK_FALSE(f.Accept(10, 4));
  CHECK(f.Accept(10, 6));
  CHECK(f.Accept(10, 100));        // gaps are fine: lost packets
  CHECK_FALSE(f.Accept(9, 1000));  // an older incarnation (recorded before a restart)
  CHECK(f.Accept(11, 1));          // the peer restarted
  CHECK_FALSE(f.Accept(10, 101));
}

TEST_CASE("cluster id and derived key depend on cluster.xml and module", "[heartbeat]") {
  CHECK(hb::ComputeClusterId("<a/>", "m") == hb::ComputeClusterId("<a/>", "m"));
  CHECK(hb::ComputeClusterId("<a/>", "m") != hb::ComputeClusterId("<b/>", "m"));
  CHECK(hb::ComputeClusterId("<a/>", "m") != hb::ComputeClusterId("<a/>", "n"));
  const auto k1 = hb::HeartbeatKey::DeriveFromConfig("<a/>", "m");
  CHECK(k1.secret().size() == 32);
  CHECK(k1.secret() == hb::HeartbeatKey::DeriveFromConfig("<a/>", "m").secret());
  CHECK(k1.secret() != hb::HeartbeatKey::DeriveFromConfig("<a/>", "n").secret());
}

TEST_CASE("heartbeat key file", "[heartbeat]") {
  char dir_template[] = "/tmp/hm-hbkey-XXXXXX";
  REQUIRE(mkdtemp(dir_template) != nullptr);
  const std::string dir = dir_template;
  hb::HeartbeatKey key;
  CHECK(hb::HeartbeatKey::FromFile(dir + "/missing", &key).code() == hamirror::Status::Code::kNotFound);
  std::ofstream(dir + "/short") << "tooshort\n";
  const hamirror::Status s = hb::HeartbeatKey::FromFile(dir + "/short", &key);
  CHECK(s.code() == hamirror::Status::Code::kInvalidArgument);
  CHECK(s.message().find(dir + "/short") != std::string::npos);
  std::ofstream(dir + "/good") << "a-long-enough-shared-secret\n";
  REQUIRE(hb::HeartbeatKey::FromFile(dir + "/good", &key).ok());
  CHECK(key.secret() == "a-long-enough-shared-secret");
  std::remove((dir + "/short").c_str());
  std::remove((dir + "/good").c_str());
  rmdir(dir.c_str());
}
