// PathKeeper: descriptors within the budget, file handles past it, and the errors of a gone inode.
#include "common/kept_path.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

using hamirror::KeptPath;
using hamirror::PathFd;
using hamirror::PathKeeper;
using hamirror::UniqueFd;

namespace {

std::string Name(int i) {
  std::string name = "f";
  name += std::to_string(i);
  return name;
}

size_t OpenDescriptors() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

struct ScratchDir {
  ScratchDir() {
    char tmpl[] = "/var/tmp/hamirror-keptpath.XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~ScratchDir() { std::filesystem::remove_all(path); }
  std::string path;
};

}  // namespace

TEST_CASE("PathKeeper keeps descriptors within its budget and reopens the rest by handle", "[fuse_fs]") {
  ScratchDir dir;
  UniqueFd root(open(dir.path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  REQUIRE(root);
  constexpr size_t kBudget = 8;
  constexpr int kFiles = 500;
  PathKeeper keeper(root.get(), kBudget);
  const size_t fds_before = OpenDescriptors();
  std::vector<std::unique_ptr<KeptPath>> kept;
  for (int i = 0; i < kFiles; ++i) {
    const std::string name = Name(i);
    UniqueFd made(openat(root.get(), name.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
    REQUIRE(made);
    REQUIRE(write(made.get(), name.data(), name.size()) == static_cast<ssize_t>(name.size()));
    kept.push_back(std::make_unique<KeptPath>());
    keeper.Keep(UniqueFd(openat(root.get(), name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC)),
                kept.back().get());
  }
  CHECK(keeper.kept_fds() == kBudget);
  CHECK(keeper.unhandled_fds() == 0);  // ext4 and friends give handles
  // Only the budget stays open, not one descriptor per inode.
  CHECK(OpenDescriptors() <= fds_before + kBudget);

  // Every inode, kept by descriptor or by handle, leads back to its own file.
  for (int i = 0; i < kFiles; i += 7) {
    const PathFd p = keeper.Open(*kept[i]);
    REQUIRE(p);
    struct stat via_keeper, via_name;
    REQUIRE(fstatat(p.get(), "", &via_keeper, AT_EMPTY_PATH) == 0);
    REQUIRE(fstatat(root.get(), (Name(i)).c_str(), &via_name, AT_SYMLINK_NOFOLLOW) == 0);
    CHECK(via_keeper.st_ino == via_name.st_ino);
    CHECK(kept[i]->has_fd() == (static_cast<size_t>(i) < kBudget));
  }

  // A removed inode kept by handle is stale, not silently another file.
  const int victim = kFiles - 1;
  REQUIRE_FALSE(kept[victim]->has_fd());
  REQUIRE(unlinkat(root.get(), (Name(victim)).c_str(), 0) == 0);
  const PathFd gone = keeper.Open(*kept[victim]);
  CHECK_FALSE(gone);
  CHECK(gone.error() == ESTALE);

  // Releasing a kept descriptor gives its place in the budget to the next inode.
  keeper.Release(kept[0].get());
  CHECK_FALSE(keeper.Open(*kept[0]));
  CHECK(keeper.kept_fds() == kBudget - 1);
  KeptPath again;
  keeper.Keep(UniqueFd(openat(root.get(), "f1", O_PATH | O_NOFOLLOW | O_CLOEXEC)), &again);
  CHECK(again.has_fd());
  for (auto& k : kept) keeper.Release(k.get());
  keeper.Release(&again);
  CHECK(keeper.kept_fds() == 0);
  CHECK(OpenDescriptors() == fds_before);
}
