// A stopped module releases its data directory (root only, label "netns"; the lab is cluster_lab.h):
// after `hamirror stop` and after hamirrord's clean exit the directory is no FUSE mount and local
// programs write to it; `start` mounts it again; what was written by hand meanwhile reaches the peer
// (the record was marked before the release); a dead mount left by a crash is cleaned when hamirrord
// starts.
//
// Before: the directory stayed a read-only FUSE mount after `stop` and after hamirrord exited, and a
// dead mount made hamirror-fs refuse to start ("already a hamirror mount" / "umount -l").
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include "common/fuse_mount.h"
#include "tests/manager/daemon/cluster_lab.h"
#include "tests/support/daemon.h"
#include "tests/support/netns.h"
#include "tests/support/tree_compare.h"

using namespace hamirror::test;
using namespace std::chrono_literals;
using hamirror::MountProbe;

namespace {

// What statfs() says of dir (the test shares the mount namespace of hamirrord and its hamirror-fs).
std::string Probe(const std::string& dir) {
  MountProbe p = MountProbe::kNotFuse;
  hamirror::Status s = hamirror::ProbeMountWithin(dir, 3s, &p);
  return s.ok() ? hamirror::ToString(p) : s.ToString();
}

const std::string kPlain = hamirror::ToString(MountProbe::kNotFuse);
const std::string kLive = hamirror::ToString(MountProbe::kLive);
const std::string kDead = hamirror::ToString(MountProbe::kDead);

bool Released(const std::string& dir) {
  return Probe(dir) == kPlain && hamirror::TopMountType(dir).find("fuse") == std::string::npos;
}

// A local program (not hamirror) writes into dir.
bool WriteByHand(const std::string& dir, const std::string& name, const std::string& content) {
  CommandResult r =
      RunCommand("printf %s " + ShellQuote(content) + " > " + ShellQuote(dir + "/by-hand/" + name) + " 2>&1");
  INFO(r.output);
  return r.ok();
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace

TEST_CASE("release: stop frees the data directory, start mounts it again, hand writes reach the peer",
          "[netns][daemon][fs]") {
  if (SkipWithoutFs()) return;
  Cluster c({.rfs = true});
  c.FirstStart();
  const std::string data = c.Dir(1) + "/data";
  REQUIRE(Probe(data) == kLive);
  // The hand writes go into a directory both copies have (a change in the root directory itself would
  // be found anyway: its metadata is compared by every resync).
  std::filesystem::create_directory(data + "/by-hand");
  REQUIRE(Cluster::WaitFor([&] { return std::filesystem::is_directory(c.Under(2) + "/by-hand"); }, 5s));

  // n2 goes away with a clean record; n1 carries on alone, then is stopped.
  c.PowerOff(2);
  REQUIRE(c.WaitState(1, "ALONE (Ready)", 15s));
  CommandResult stop = c.Cli(1, "stop");
  INFO(stop.output);
  REQUIRE(stop.status == 0);
  REQUIRE(c.WaitState(1, "STOP (Ready)", 20s));
  INFO(c.Log(1));
  REQUIRE(Cluster::WaitFor([&] { return Released(data); }, 10s));
  // A DBA's program works on the plain directory: these changes bypass hamirror-fs and its record.
  REQUIRE(WriteByHand(data, "while-stopped", "written while the module was stopped\n"));
  REQUIRE(ReadFile(c.Under(1) + "/by-hand/while-stopped") == "written while the module was stopped\n");

  // Started again: mounted again (n1 alone), then n2 returns and is resynced from n1.
  REQUIRE(c.Cli(1, "start").status == 0);
  REQUIRE(c.WaitState(1, "WAIT (Ready)", 10s));
  REQUIRE(c.Cli(1, "prim").status == 0);
  REQUIRE(c.WaitState(1, "ALONE (Ready)", 15s));
  CHECK(Probe(data) == kLive);
  // (Nothing looks at the new file through n1's mount before n2 is back: a lookup of it would reach
  // n2 as an operation it cannot apply, which marks n1's record by itself and hides a missing mark.)
  c.StartDaemon(2);
  REQUIRE(c.Cli(2, "start").status == 0);
  CommandResult second = c.Cli(2, "second");
  INFO(second.output);
  REQUIRE((second.status == 0 || second.output.find("is SECOND") != std::string::npos));
  REQUIRE(c.WaitState(2, "SECOND (Ready)", 60s));
  REQUIRE(c.WaitState(1, "PRIM (Ready)", 30s));
  // Without the record's mark the resync would have sent only what n1's record named (nothing).
  CHECK(ReadFile(c.Under(2) + "/by-hand/while-stopped") == "written while the module was stopped\n");
  CHECK(CompareTrees(c.Under(1), c.Under(2)) == "");
  CHECK(ReadFile(data + "/by-hand/while-stopped") == "written while the module was stopped\n");

  // hamirrord's clean exit (SIGTERM) stops the module and releases the directory too.
  REQUIRE(c.StopDaemon(1));
  CHECK(Released(data));
  REQUIRE(WriteByHand(data, "after-exit", "x"));
  CHECK(ReadFile(c.Under(1) + "/by-hand/after-exit") == "x");
}

TEST_CASE("release: hand changes on a stopped node that returns as SECOND are overwritten by the resync",
          "[netns][daemon][fs]") {
  if (SkipWithoutFs()) return;
  Cluster c({.rfs = true});
  c.FirstStart();
  const std::string data2 = c.Dir(2) + "/data";
  std::filesystem::create_directory(c.Dir(1) + "/data/by-hand");
  std::ofstream(c.Dir(1) + "/data/by-hand/kept") << "the primary's\n";
  REQUIRE(Cluster::WaitFor([&] { return ReadFile(c.Under(2) + "/by-hand/kept") == "the primary's\n"; }, 5s));

  CommandResult stop = c.Cli(2, "stop");
  INFO(stop.output);
  REQUIRE(stop.status == 0);
  REQUIRE(c.WaitState(2, "STOP (Ready)", 20s));
  REQUIRE(Cluster::WaitFor([&] { return Released(data2); }, 10s));
  REQUIRE(c.WaitState(1, "ALONE (Ready)", 15s));
  // Someone changes the stopped secondary's copy by hand: it is not the reference, and after the
  // return the copies must be equal again (n1's record names nothing: n1 wrote nothing alone).
  REQUIRE(WriteByHand(data2, "rogue", "only on n2\n"));
  REQUIRE(WriteByHand(data2, "kept", "changed on n2\n"));

  REQUIRE(c.Cli(2, "start").status == 0);
  CommandResult second = c.Cli(2, "second");
  INFO(second.output);
  REQUIRE((second.status == 0 || second.output.find("is SECOND") != std::string::npos));
  REQUIRE(c.WaitState(2, "SECOND (Ready)", 60s));
  REQUIRE(c.WaitState(1, "PRIM (Ready)", 30s));
  CHECK(CompareTrees(c.Under(1), c.Under(2)) == "");
  CHECK(ReadFile(c.Under(2) + "/by-hand/kept") == "the primary's\n");
}

TEST_CASE("release: a dead mount left by a crash is cleaned when hamirrord starts", "[netns][daemon][fs]") {
  if (SkipWithoutFs()) return;
  Cluster c({.rfs = true});
  const std::string data = c.Dir(1) + "/data";
  c.StartDaemon(1);
  REQUIRE(c.Cli(1, "start").status == 0);
  REQUIRE(c.Cli(1, "prim").status == 0);
  REQUIRE(c.WaitState(1, "ALONE (Ready)", 15s));
  std::ofstream(data + "/written-alone") << "before the crash\n";
  // Attributes of the mount's root cached the way an application's use caches them.
  REQUIRE(std::filesystem::exists(data + "/written-alone"));

  // An application that keeps a file open (its name is what hamirrord reports before the detach).
  Daemon holder;
  REQUIRE(holder
              .Start({"/bin/sh", "-c", "exec 3<" + ShellQuote(data + "/written-alone") + "; exec sleep 120"},
                     c.Dir(1) + "/holder.log")
              .ok());
  REQUIRE(Cluster::WaitFor(
      [&] {
        return RunCommand("ls -l /proc/" + std::to_string(holder.pid()) + "/fd | grep -q written-alone").ok();
      },
      5s));

  // Crash of the processes (not of the machine): the dead FUSE mount stays.
  c.PowerOff(1, /*keep_dead_mount=*/true);
  REQUIRE(Probe(data) == kDead);

  c.StartDaemon(1);  // boot is off: the module stays STOP, its directory must be usable
  REQUIRE(Cluster::WaitFor([&] { return Released(data); }, 10s));
  const std::string log = c.Log(1);
  CHECK(log.find("dead FUSE mount") != std::string::npos);
  CHECK(log.find(std::to_string(holder.pid()) + " (sleep)") != std::string::npos);
  holder.Kill();
  CHECK(ReadFile(data + "/written-alone") == "before the crash\n");

  REQUIRE(c.Cli(1, "start").status == 0);
  REQUIRE(c.Cli(1, "prim").status == 0);
  REQUIRE(c.WaitState(1, "ALONE (Ready)", 15s));
  CHECK(Probe(data) == kLive);
  CHECK(ReadFile(data + "/written-alone") == "before the crash\n");
  REQUIRE(c.StopDaemon(1));
  CHECK(Released(data));
}

TEST_CASE("release: keepmounted=on keeps a stopped module's directory mounted read-only",
          "[netns][daemon][fs]") {
  if (SkipWithoutFs()) return;
  Cluster c({.rfs = true, .keepmounted = true});
  const std::string data = c.Dir(1) + "/data";
  c.StartDaemon(1);
  REQUIRE(c.Cli(1, "start").status == 0);
  REQUIRE(c.Cli(1, "prim").status == 0);
  REQUIRE(c.WaitState(1, "ALONE (Ready)", 15s));
  REQUIRE(std::filesystem::create_directory(data + "/by-hand"));
  REQUIRE(WriteByHand(data, "while-alone", "x"));
  REQUIRE(c.Cli(1, "stop").status == 0);
  REQUIRE(c.WaitState(1, "STOP (Ready)", 20s));
  INFO(c.Log(1));
  CHECK(Probe(data) == kLive);
  CHECK(ReadFile(data + "/by-hand/while-alone") == "x");
  CHECK_FALSE(WriteByHand(data, "refused", "x"));  // read-only (hamirror-fs as secondary)
  CHECK(c.Log(1).find("released") == std::string::npos);
}
