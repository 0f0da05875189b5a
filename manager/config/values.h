// Parsing of single attribute values (durations, on/off, integers, addresses, sizes).
// Each parser returns an empty string on success, or the reason the value is invalid, phrased to
// follow "invalid value 'x' for attribute 'a' on <e>: ".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "manager/config/config.h"

namespace hamirror::config {

// "<integer>[unit]" with unit one of ms, s, m|min, h; a bare integer is in default_unit.
std::string ParseDuration(std::string_view text, Millis default_unit, Millis* out);
// "on" / "off" (also "yes"/"no", "true"/"false", "1"/"0"; case-insensitive).
std::string ParseOnOff(std::string_view text, bool* out);
// Decimal integer within [min, max].
std::string ParseInt(std::string_view text, std::int64_t min, std::int64_t max, std::int64_t* out);
// "<integer>[K|M|G]" (binary multiples, optional trailing "B"/"iB"); a bare integer is in bytes.
std::string ParseSize(std::string_view text, std::uint64_t* out);
// Numeric IPv4 or IPv6 address, no prefix. Sets *family to AF_INET/AF_INET6.
std::string ParseIpAddress(std::string_view text, int* family);
// Numeric address with an optional "/prefix".
std::string ParseIpWithPrefix(std::string_view text, std::string* addr, int* family, int* prefix_len);

}  // namespace hamirror::config
