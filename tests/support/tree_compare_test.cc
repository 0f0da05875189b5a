// Unit tests of CompareTrees on plain directories: it must notice each kind of difference.
#include "tests/support/tree_compare.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "tests/support/daemon.h"

using hamirror::test::CompareTrees;
using hamirror::test::TempDir;

namespace {

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary) << data;
}

// Builds the same small tree in dir; variant changes one detail.
void Build(const std::string& dir, const std::string& variant) {
  mkdir((dir + "/d").c_str(), 0755);
  WriteFile(dir + "/d/f", variant == "content" ? "hellO" : "hello");
  WriteFile(dir + "/g", "x");
  if (variant != "link") {
    link((dir + "/d/f").c_str(), (dir + "/d/h").c_str());
  } else {
    WriteFile(dir + "/d/h", "hello");
  }
  symlink(variant == "symlink" ? "other" : "d/f", (dir + "/s").c_str());
  chmod((dir + "/g").c_str(), variant == "mode" ? 0600 : 0644);
  if (variant == "xattr") setxattr((dir + "/g").c_str(), "user.k", "v", 1, 0);
  if (variant == "extra") WriteFile(dir + "/d/extra", "");
  struct timespec ts[2] = {{1000, 5}, {2000, variant == "mtime" ? 7 : 6}};
  utimensat(AT_FDCWD, (dir + "/g").c_str(), ts, 0);
  utimensat(AT_FDCWD, (dir + "/d/f").c_str(), ts, 0);
  utimensat(AT_FDCWD, (dir + "/d").c_str(), ts, 0);
  utimensat(AT_FDCWD, (dir + "/s").c_str(), ts, AT_SYMLINK_NOFOLLOW);
  utimensat(AT_FDCWD, dir.c_str(), ts, 0);
}

}  // namespace

TEST_CASE("CompareTrees: identical trees and the first difference", "[support]") {
  TempDir tmp;
  REQUIRE(!tmp.path().empty());
  mkdir(tmp.Sub("a").c_str(), 0755);
  mkdir(tmp.Sub("b").c_str(), 0755);
  Build(tmp.Sub("a"), "");
  Build(tmp.Sub("b"), "");
  REQUIRE(CompareTrees(tmp.Sub("a"), tmp.Sub("b")) == "");

  struct Case {
    const char* variant;
    const char* expect;
  } cases[] = {{"content", "d/f: content differs at offset 4"},
               {"link", "d/f: link count 2 vs 1"},
               {"symlink", "s: symlink target"},
               {"mode", "g: mode 644 vs 600"},
               {"xattr", "g: xattr user.k missing in first tree"},
               {"extra", "d/extra: missing in first tree"},
               {"mtime", "d/f: mtime 2000.6 vs 2000.7"}};
  for (const auto& c : cases) {
    SECTION(c.variant) {
      TempDir t2;
      mkdir(t2.Sub("a").c_str(), 0755);
      mkdir(t2.Sub("b").c_str(), 0755);
      Build(t2.Sub("a"), "");
      Build(t2.Sub("b"), c.variant);
      std::string diff = CompareTrees(t2.Sub("a"), t2.Sub("b"));
      INFO(diff);
      REQUIRE(diff.find(c.expect) == 0);
    }
  }
}

TEST_CASE("CompareTrees: content=false and xattrs=false compare the rest only", "[support]") {
  hamirror::test::TreeCompareOptions metadata_only;
  metadata_only.content = false;
  metadata_only.xattrs = false;
  for (const char* variant : {"content", "xattr", "mode", "mtime", "extra"}) {
    SECTION(variant) {
      TempDir t;
      mkdir(t.Sub("a").c_str(), 0755);
      mkdir(t.Sub("b").c_str(), 0755);
      Build(t.Sub("a"), "");
      Build(t.Sub("b"), variant);
      const std::string diff = CompareTrees(t.Sub("a"), t.Sub("b"), metadata_only);
      INFO(diff);
      const bool ignored = std::string(variant) == "content" || std::string(variant) == "xattr";
      REQUIRE(diff.empty() == ignored);
    }
  }
}
