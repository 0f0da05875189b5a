#include "tests/integration/mirror_pair.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdlib>
#include <thread>

#include "proto/fs_control.grpc.pb.h"
#include "tests/integration/test_env.h"
#include "tests/support/daemon.h"

namespace hamirror::itest {

std::string HamirrorFsBinary() {
  if (const char* env = std::getenv("HAMIRROR_FS_BIN"); env != nullptr && *env != '\0') return env;
#ifdef HAMIRROR_FS_BIN
  return HAMIRROR_FS_BIN;
#else
  return "hamirror-fs";
#endif
}

MirrorPair::MirrorPair(std::string base_dir) : base_(std::move(base_dir)) {}

MirrorPair::~MirrorPair() {
  primary_.Kill();
  secondary_.Kill();
  test::UnmountTree(primary_dir());
  test::UnmountTree(secondary_dir());
}

Status MirrorPair::Start(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto left = [&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  };
  for (const auto& d : {primary_dir(), secondary_dir()}) {
    Status s = MakeDirs(d);
    if (!s.ok()) return s;
  }
  port_ = test::PickFreePort();
  if (port_ <= 0) return Status::IoError("no free loopback port");
  std::string addr = "127.0.0.1:" + std::to_string(port_);
  const std::string bin = HamirrorFsBinary();

  // Explicit control sockets: the default path is derived from the directory's basename and would
  // collide between concurrent pairs.
  Status s = secondary_.Start({bin, "secondary", "--dir", secondary_dir(), "--listen", addr, "--control",
                               secondary_control_socket(), "--insecure"},
                              base_ + "/secondary.log");
  if (!s.ok()) return s;
  s = test::WaitForMount(secondary_dir(), secondary_.pid(), left());
  if (!s.ok()) return Status::IoError("secondary: " + s.ToString() + "\n" + LogTails());
  while (!IsListening(port_)) {
    if (secondary_.Exited() || left().count() <= 0) {
      return Status::IoError("secondary does not listen on " + addr + "\n" + LogTails());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // poll interval
  }

  std::vector<std::string> primary_args = {bin,  "primary",   "--dir",          primary_dir(), "--peer",
                                           addr, "--control", control_socket(), "--insecure"};
  primary_args.insert(primary_args.end(), primary_flags_.begin(), primary_flags_.end());
  s = primary_.Start(primary_args, base_ + "/primary.log");
  if (!s.ok()) return s;
  s = test::WaitForMount(primary_dir(), primary_.pid(), left());
  if (!s.ok()) return Status::IoError("primary: " + s.ToString() + "\n" + LogTails());

  // Writes before the peer is connected would go to the dirty-zone record instead of the secondary.
  Status last;
  while (left().count() > 0) {
    if (primary_.Exited()) return Status::IoError("primary exited\n" + LogTails());
    proto::FsStatus st;
    last = PrimaryStatus(&st);
    if (last.ok() && st.peer_connected()) return Status::Ok();
    if (last.ok()) last = Status::Unavailable("peer not connected: " + st.last_error());
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // poll interval
  }
  return Status::Timeout("primary never reported its peer connected (" + last.ToString() + ")\n" +
                         LogTails());
}

Status MirrorPair::ControlStatus(const std::string& socket, proto::FsStatus* out) {
  struct stat st;
  if (stat(socket.c_str(), &st) != 0) return Status::Unavailable("no control socket " + socket + " yet");
  auto channel = grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials());
  auto stub = hamirror::proto::FsControl::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  hamirror::proto::FsStatusRequest req;
  grpc::Status gs = stub->Status(&ctx, req, out);
  if (!gs.ok()) return Status::Unavailable("control Status (" + socket + "): " + gs.error_message());
  return Status::Ok();
}

namespace {
Status StopDaemon(test::Daemon& p, const std::string& dir, const char* what,
                  std::chrono::milliseconds timeout, const std::string& tails) {
  if (!p.running()) return Status::Ok();
  Status s = p.Stop(timeout);
  if (!s.ok()) {
    test::UnmountTree(dir);
    return Status::IoError(std::string(what) + " stop: " + s.ToString() + "\n" + tails);
  }
  if (test::IsMountedAs(dir)) {
    test::UnmountTree(dir);
    return Status::IoError(std::string(what) + " exited but left " + dir + " mounted\n" + tails);
  }
  return Status::Ok();
}
}  // namespace

Status MirrorPair::StopPrimary(std::chrono::milliseconds timeout) {
  return StopDaemon(primary_, primary_dir(), "primary hamirror-fs", timeout, LogTails());
}

Status MirrorPair::StopSecondary(std::chrono::milliseconds timeout) {
  return StopDaemon(secondary_, secondary_dir(), "secondary hamirror-fs", timeout, LogTails());
}

void MirrorPair::SignalKillPrimary() { primary_.Signal(SIGKILL); }

void MirrorPair::ReapKilledPrimary() {
  primary_.Kill();
  test::UnmountTree(primary_dir());
}

std::string MirrorPair::LogTails() const {
  return "--- secondary log tail:\n" + test::FileTail(base_ + "/secondary.log", 2000) +
         "--- primary log tail:\n" + test::FileTail(base_ + "/primary.log", 2000);
}

}  // namespace hamirror::itest
