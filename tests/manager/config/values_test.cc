#include "manager/config/values.h"

#include <arpa/inet.h>

#include <catch2/catch.hpp>

namespace hamirror::config {
namespace {

using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;

Millis Dur(const char* text, Millis unit) {
  Millis out{-1};
  const std::string err = ParseDuration(text, unit, &out);
  INFO(text << " -> " << err);
  REQUIRE(err.empty());
  return out;
}

TEST_CASE("durations take the attribute's unit when bare, or an explicit one", "[config][unit]") {
  CHECK(Dur("700", Millis(1)) == Millis(700));
  CHECK(Dur("700ms", Millis(1)) == Millis(700));
  CHECK(Dur("1s", Millis(1)) == seconds(1));
  CHECK(Dur("30", seconds(1)) == seconds(30));
  CHECK(Dur(" 30s ", seconds(1)) == seconds(30));
  CHECK(Dur("5m", seconds(1)) == minutes(5));
  CHECK(Dur("5min", seconds(1)) == minutes(5));
  CHECK(Dur("24", hours(1)) == hours(24));
  CHECK(Dur("2h", seconds(1)) == hours(2));
  CHECK(Dur("0", seconds(1)) == Millis(0));
  CHECK(Dur("500MS", seconds(1)) == Millis(500));

  Millis out{42};
  CHECK_FALSE(ParseDuration("", seconds(1), &out).empty());
  CHECK_FALSE(ParseDuration("-1", seconds(1), &out).empty());
  CHECK_FALSE(ParseDuration("1.5s", seconds(1), &out).empty());
  CHECK(ParseDuration("7x", seconds(1), &out).find("unknown unit 'x'") != std::string::npos);
  CHECK_FALSE(ParseDuration("s", seconds(1), &out).empty());
  CHECK_FALSE(ParseDuration("99999999999999h", seconds(1), &out).empty());
  CHECK(out == Millis(42));  // untouched on error
}

TEST_CASE("on/off values", "[config][unit]") {
  bool b = false;
  CHECK(ParseOnOff("on", &b).empty());
  CHECK(b);
  CHECK(ParseOnOff("OFF", &b).empty());
  CHECK_FALSE(b);
  CHECK(ParseOnOff("yes", &b).empty());
  CHECK(b);
  CHECK(ParseOnOff("maybe", &b) == "expected on or off");
}

TEST_CASE("integers are range-checked", "[config][unit]") {
  std::int64_t v = 0;
  CHECK(ParseInt("3", 1, 64, &v).empty());
  CHECK(v == 3);
  CHECK(ParseInt("0", 1, 64, &v) == "expected an integer between 1 and 64");
  CHECK(ParseInt("3x", 1, 64, &v) == "expected an integer");
  CHECK(ParseInt("", 1, 64, &v) == "expected an integer");
}

TEST_CASE("sizes accept binary suffixes", "[config][unit]") {
  std::uint64_t v = 0;
  CHECK(ParseSize("4096", &v).empty());
  CHECK(v == 4096);
  CHECK(ParseSize("8M", &v).empty());
  CHECK(v == 8u << 20);
  CHECK(ParseSize("8MiB", &v).empty());
  CHECK(v == 8u << 20);
  CHECK(ParseSize("64k", &v).empty());
  CHECK(v == 64u << 10);
  CHECK(ParseSize("1G", &v).empty());
  CHECK(v == 1u << 30);
  CHECK_FALSE(ParseSize("8T", &v).empty());
  CHECK_FALSE(ParseSize("big", &v).empty());
}

TEST_CASE("addresses are numeric only, with an optional prefix", "[config][unit]") {
  int family = 0;
  CHECK(ParseIpAddress("198.18.0.1", &family).empty());
  CHECK(family == AF_INET);
  CHECK(ParseIpAddress("2001:db8::1", &family).empty());
  CHECK(family == AF_INET6);
  CHECK(ParseIpAddress("db.example.com", &family).find("not a numeric") != std::string::npos);
  CHECK_FALSE(ParseIpAddress("198.18.0.256", &family).empty());

  std::string addr;
  int len = 0;
  CHECK(ParseIpWithPrefix("198.18.0.100/24", &addr, &family, &len).empty());
  CHECK(addr == "198.18.0.100");
  CHECK(len == 24);
  CHECK(ParseIpWithPrefix("198.18.0.100", &addr, &family, &len).empty());
  CHECK(len == -1);
  CHECK(ParseIpWithPrefix("2001:db8::5/64", &addr, &family, &len).empty());
  CHECK(family == AF_INET6);
  CHECK(len == 64);
  CHECK(ParseIpWithPrefix("198.18.0.100/33", &addr, &family, &len).find("bad prefix length") !=
        std::string::npos);
  CHECK_FALSE(ParseIpWithPrefix("198.18.0.100/", &addr, &family, &len).empty());
}

}  // namespace
}  // namespace hamirror::config
