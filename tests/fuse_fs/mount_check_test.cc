// CheckMountPoint: clear errors before anything is mounted; common/fuse_mount on plain directories
// (dead and live mounts: fs_cli_test.cc, tests/manager/daemon/release_test.cc).
#include "fuse_fs/mount_check.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "common/fuse_mount.h"
#include "fuse_fs/control_server.h"

using hamirror::fs::CheckMountPoint;

TEST_CASE("CheckMountPoint refuses a missing directory or a file", "[fuse_fs]") {
  std::string canonical;
  auto s = CheckMountPoint("/nonexistent-hamirror/dir", &canonical);
  REQUIRE(!s.ok());
  REQUIRE(s.message().find("does not exist") != std::string::npos);
  char tmpl[] = "/tmp/hamirror-mc-XXXXXX";
  int fd = mkstemp(tmpl);
  REQUIRE(fd >= 0);
  close(fd);
  s = CheckMountPoint(tmpl, &canonical);
  unlink(tmpl);
  REQUIRE(!s.ok());
  REQUIRE(s.message().find("not a directory") != std::string::npos);
}

TEST_CASE("CheckMountPoint accepts a plain directory and canonicalizes it", "[fuse_fs]") {
  char tmpl[] = "/tmp/hamirror-mc-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  std::string canonical;
  auto s = CheckMountPoint(std::string(tmpl) + "/.", &canonical);
  REQUIRE(s.ok());
  REQUIRE(canonical == tmpl);
  rmdir(tmpl);
}

TEST_CASE("Default control socket is named after the directory", "[fuse_fs]") {
  REQUIRE(hamirror::fs::DefaultControlSocket("/var/lib/mysql") == "/run/hamirror/fs/mysql.sock");
  REQUIRE(hamirror::fs::DefaultControlSocket("/var/lib/mysql/") == "/run/hamirror/fs/mysql.sock");
}

TEST_CASE("fuse_mount: probe, mount type and canonical path of plain directories", "[fuse_fs]") {
  char tmpl[] = "/tmp/hamirror-mc-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  const std::string dir = tmpl;
  hamirror::MountProbe probe = hamirror::MountProbe::kLive;
  REQUIRE(hamirror::ProbeMount(dir, &probe).ok());
  CHECK(probe == hamirror::MountProbe::kNotFuse);
  hamirror::Status missing = hamirror::ProbeMount(dir + "/missing", &probe);
  CHECK(missing.code() == hamirror::Status::Code::kNotFound);
  CHECK(hamirror::TopMountType(dir) == "");  // a plain directory is no mount point
  CHECK(hamirror::TopMountType("/") != "");
  REQUIRE(mkdir((dir + "/sub").c_str(), 0755) == 0);
  REQUIRE(symlink("sub", (dir + "/link").c_str()) == 0);
  std::string canonical;
  REQUIRE(hamirror::CanonicalMountPoint(dir + "/./link/", &canonical).ok());
  CHECK(canonical == dir + "/sub");
  unlink((dir + "/link").c_str());
  rmdir((dir + "/sub").c_str());
  rmdir(tmpl);
}
