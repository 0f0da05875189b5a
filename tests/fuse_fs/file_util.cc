#include "tests/fuse_fs/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace hamirror::test {
namespace {
constexpr uint64_t kMiB = 1 << 20;
constexpr size_t kBlock = 64 << 10;  // the resync's block size
}  // namespace

std::string Name(const char* prefix, uint64_t n) {
  std::string s(prefix);
  s += std::to_string(n);
  return s;
}

std::string RandomBytes(std::mt19937_64& rng, size_t n) {
  std::string out(n, '\0');
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const uint64_t v = rng();
    memcpy(&out[i], &v, 8);
  }
  for (; i < n; ++i) out[i] = static_cast<char>(rng());
  return out;
}

bool MakeFile(const std::string& path, uint64_t size, uint64_t seed, mode_t mode) {
  int fd = open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, mode);
  if (fd < 0) return false;
  std::mt19937_64 rng(seed);
  bool ok = true;
  for (uint64_t off = 0; off < size && ok;) {
    const std::string chunk = RandomBytes(rng, static_cast<size_t>(std::min<uint64_t>(kMiB, size - off)));
    ok =
        pwrite(fd, chunk.data(), chunk.size(), static_cast<off_t>(off)) == static_cast<ssize_t>(chunk.size());
    off += chunk.size();
  }
  ok = fchmod(fd, mode) == 0 && ok;  // exact, whatever the umask
  return close(fd) == 0 && ok;
}

bool PwriteFile(const std::string& path, const std::string& data, uint64_t off) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok =
      pwrite(fd, data.data(), data.size(), static_cast<off_t>(off)) == static_cast<ssize_t>(data.size());
  return close(fd) == 0 && ok;
}

bool CopyFile(const std::string& from, const std::string& to) {
  std::ifstream in(from, std::ios::binary);
  std::ofstream out(to, std::ios::binary | std::ios::trunc);
  out << in.rdbuf();
  return in.good() && out.good();
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

uint64_t DifferingBytes(const std::string& from, const std::string& to) {
  const std::string a = ReadAll(from), b = ReadAll(to);
  uint64_t n = 0;
  for (size_t off = 0; off < a.size(); off += kBlock) {
    const size_t len = std::min<size_t>(kBlock, a.size() - off);
    if (off + len > b.size() || a.compare(off, len, b, off, len) != 0) n += len;
  }
  return n;
}

}  // namespace hamirror::test
