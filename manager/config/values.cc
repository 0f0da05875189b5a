#include "manager/config/values.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <cctype>
#include <charconv>
#include <limits>

namespace hamirror::config {
namespace {

std::string Lower(std::string_view s) {
  std::string r(s);
  for (char& c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Splits "123abc" into digits and suffix; false when there is no leading digit.
bool SplitNumber(std::string_view s, std::uint64_t* number, std::string* suffix) {
  std::size_t i = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
  if (i == 0) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + i, *number);
  if (ec != std::errc() || ptr != s.data() + i) return false;
  *suffix = Lower(Trim(s.substr(i)));
  return true;
}

}  // namespace

std::string ParseDuration(std::string_view text, Millis default_unit, Millis* out) {
  std::uint64_t n = 0;
  std::string suffix;
  if (!SplitNumber(Trim(text), &n, &suffix)) {
    return "expected a non-negative integer with an optional unit (ms, s, m, h)";
  }
  std::uint64_t unit_ms;
  if (suffix.empty()) {
    unit_ms = static_cast<std::uint64_t>(default_unit.count());
  } else if (suffix == "ms") {
    unit_ms = 1;
  } else if (suffix == "s") {
    unit_ms = 1000;
  } else if (suffix == "m" || suffix == "min") {
    unit_ms = 60'000;
  } else if (suffix == "h") {
    unit_ms = 3'600'000;
  } else {
    return "unknown unit '" + suffix + "' (accepted: ms, s, m, h)";
  }
  // Cap at ~292 million years... but far earlier: a year is plenty for any timer here.
  constexpr std::uint64_t kMaxMs = 366ull * 24 * 3'600'000;
  if (n > kMaxMs / unit_ms) return "duration too large (at most 366 days)";
  *out = Millis(static_cast<Millis::rep>(n * unit_ms));
  return "";
}

std::string ParseOnOff(std::string_view text, bool* out) {
  const std::string v = Lower(Trim(text));
  if (v == "on" || v == "yes" || v == "true" || v == "1") {
    *out = true;
    return "";
  }
  if (v == "off" || v == "no" || v == "false" || v == "0") {
    *out = false;
    return "";
  }
  return "expected on or off";
}

std::string ParseInt(std::string_view text, std::int64_t min, std::int64_t max, std::int64_t* out) {
  std::string_view s = Trim(text);
  std::int64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || ptr != s.data() + s.size()) {
    return "expected an integer";
  }
  if (v < min || v > max) {
    return "expected an integer between " + std::to_string(min) + " and " + std::to_string(max);
  }
  *out = v;
  return "";
}

std::string ParseSize(std::string_view text, std::uint64_t* out) {
  std::uint64_t n = 0;
  std::string suffix;
  if (!SplitNumber(Trim(text), &n, &suffix)) {
    return "expected a size in bytes with an optional K, M or G suffix";
  }
  if (suffix.size() > 1 && (suffix.ends_with("ib"))) suffix.resize(suffix.size() - 2);
  if (suffix.size() > 1 && suffix.back() == 'b') suffix.pop_back();
  if (suffix == "b") suffix.clear();
  int shift;
  if (suffix.empty()) {
    shift = 0;
  } else if (suffix == "k") {
    shift = 10;
  } else if (suffix == "m") {
    shift = 20;
  } else if (suffix == "g") {
    shift = 30;
  } else {
    return "unknown size suffix '" + suffix + "' (accepted: K, M, G)";
  }
  if (n > (std::numeric_limits<std::uint64_t>::max() >> shift)) return "size too large";
  *out = n << shift;
  return "";
}

std::string ParseIpAddress(std::string_view text, int* family) {
  const std::string s(Trim(text));
  unsigned char buf[sizeof(struct in6_addr)];
  if (inet_pton(AF_INET, s.c_str(), buf) == 1) {
    *family = AF_INET;
    return "";
  }
  if (inet_pton(AF_INET6, s.c_str(), buf) == 1) {
    *family = AF_INET6;
    return "";
  }
  return "not a numeric IPv4 or IPv6 address (host names are not resolved)";
}

std::string ParseIpWithPrefix(std::string_view text, std::string* addr, int* family, int* prefix_len) {
  std::string_view s = Trim(text);
  std::string_view a = s;
  std::string_view p;
  const std::size_t slash = s.find('/');
  if (slash != std::string_view::npos) {
    a = s.substr(0, slash);
    p = s.substr(slash + 1);
  }
  if (std::string err = ParseIpAddress(a, family); !err.empty()) return err;
  int len = -1;
  if (slash != std::string_view::npos) {
    const std::int64_t max = *family == AF_INET ? 32 : 128;
    std::int64_t v = 0;
    if (!ParseInt(p, 0, max, &v).empty()) {
      return "bad prefix length '" + std::string(p) + "' (0.." + std::to_string(max) + ")";
    }
    len = static_cast<int>(v);
  }
  *addr = std::string(a);
  *prefix_len = len;
  return "";
}

}  // namespace hamirror::config
