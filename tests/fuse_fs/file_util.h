// Small file helpers shared by the resync tests: seeded random content, partial rewrites, copies, and
// the bytes a resync must send to make one file equal to another.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <random>
#include <string>

namespace hamirror::test {

// prefix + n (not "literal" + std::to_string(n): GCC 12 warns falsely, -Wrestrict).
std::string Name(const char* prefix, uint64_t n);
// n bytes from rng.
std::string RandomBytes(std::mt19937_64& rng, size_t n);
// Writes `size` random bytes (from seed) to path, creating or truncating it, with exactly `mode`.
bool MakeFile(const std::string& path, uint64_t size, uint64_t seed, mode_t mode = 0644);
// Overwrites `data` at offset off of an existing file.
bool PwriteFile(const std::string& path, const std::string& data, uint64_t off);
bool CopyFile(const std::string& from, const std::string& to);
// The whole file ("" when it cannot be read).
std::string ReadAll(const std::string& path);
// The data bytes a resync must send to make `to` equal to `from`: every 64 KiB block of `from` whose
// bytes `to` does not hold at the same offset (all of it when `to` is missing).
uint64_t DifferingBytes(const std::string& from, const std::string& to);

}  // namespace hamirror::test
