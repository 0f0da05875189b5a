// CheckMountPoint: clear errors before anything is mounted.
#include "fuse_fs/mount_check.h"

#include <stdlib.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>

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
