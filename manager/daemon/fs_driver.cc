#include "manager/daemon/fs_driver.h"

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "common/fuse_mount.h"
#include "proto/fs_control.grpc.pb.h"

namespace hamirror::daemon {
namespace {

proto::FsRole ToProto(manager::core::FsRole r) {
  switch (r) {
    case manager::core::FsRole::kPrimary: return proto::FS_ROLE_PRIMARY;
    case manager::core::FsRole::kSecondary: return proto::FS_ROLE_SECONDARY;
    case manager::core::FsRole::kAlone: return proto::FS_ROLE_ALONE;
  }
  return proto::FS_ROLE_UNSPECIFIED;
}

std::unique_ptr<proto::FsControl::Stub> Connect(const std::string& sock) {
  return proto::FsControl::NewStub(grpc::CreateChannel("unix:" + sock, grpc::InsecureChannelCredentials()));
}

// keepalive: the monitor's periodic polls only (FsStatusRequest.keepalive): never the queries the
// crash path makes before it has stopped the application.
grpc::Status QueryStatus(const std::string& sock, proto::FsStatus* st, int timeout_ms, bool keepalive = false) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
  proto::FsStatusRequest req;
  req.set_keepalive(keepalive);
  return Connect(sock)->Status(&ctx, req, st);
}

}  // namespace

Status FsDriver::CleanDeadMount(const FsDir& d) {
  MountProbe probe = MountProbe::kNotFuse;
  Status s = ProbeMountWithin(d.dir, std::chrono::seconds(2), &probe);
  if (!s.ok()) return s;
  if (probe != MountProbe::kDead) return Status::Ok();
  // Its FUSE daemon is gone (a crash, a kill): the mount can serve nobody and hides the directory.
  // Who still holds files on it is only easy to tell before the detach (the path leads there now).
  std::string canonical, holders;
  if (CanonicalMountPoint(d.dir, &canonical).ok()) {
    for (const auto& p : ProcessesWithFilesOn(TopMountId(canonical)))
      holders += (holders.empty() ? "" : ", ") + p;
  }
  if (Status ds = DetachMount(d.dir); !ds.ok()) return ds;
  log_->Warning(d.dir + ": dead FUSE mount (transport endpoint is not connected) left by a crash: detached " +
                "(lazy unmount); programs still holding files on it get errors until they close them" +
                (holders.empty() ? std::string(" (none found)") : ": " + holders + ": stop them") +
                " (docs/operations.md \"A dead mount\")");
  return Status::Ok();
}

Status FsDriver::CleanDeadMounts() {
  Status result;
  for (const auto& d : dirs_) {
    if (Status s = CleanDeadMount(d); !s.ok()) {
      log_->Error(d.dir + ": " + s.ToString());
      result = s;
    }
  }
  return result;
}

Status FsDriver::StopProcess(const FsDir& d, pid_t pid) {
  if (pid > 0) kill(pid, SIGTERM);
  for (int i = 0; i < 100; ++i) {  // up to 10 s for in-flight requests and the unmount
    if (pid <= 0 || kill(pid, 0) != 0) return Status::Ok();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return Status::Timeout("hamirror-fs " + d.dir + " (pid " + std::to_string(pid) + ") did not exit");
}

Status FsDriver::Release() {
  Status result;
  for (const auto& d : dirs_) {
    proto::FsStatus st;
    if (QueryStatus(d.control, &st, 1000).ok()) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
      grpc::Status g = Connect(d.control)->PrepareRelease(&ctx, proto::PrepareReleaseRequest(), &st);
      if (!g.ok()) {
        result = Status::Unavailable("hamirror-fs " + d.dir + ": mark the record before release: " +
                                     g.error_message() + " (kept mounted)");
        continue;
      }
      if (Status s = StopProcess(d, static_cast<pid_t>(st.pid())); !s.ok()) {
        result = s;
        continue;
      }
    }
    if (Status s = CleanDeadMount(d); !s.ok()) {
      result = s;
      continue;
    }
    // The mount table, not statfs: the directory may live on a FUSE file system itself (a container's
    // fuse-overlayfs); what must be gone is a hamirror mount on it.
    std::string canonical;
    if (Status cs = CanonicalMountPoint(d.dir, &canonical); !cs.ok()) {
      result = cs;
      continue;
    }
    if (const std::string type = TopMountType(canonical); type == "fuse.hamirror") {
      result = Status::Unavailable(d.dir + " is still a hamirror mount after its hamirror-fs stopped");
      continue;
    }
    log_->Info("released " + d.dir + ": hamirror-fs stopped, the directory is the plain local one");
  }
  return result;
}

std::vector<std::string> FsCommandLine(const FsDir& d, const FsLaunch& launch) {
  // Always started as secondary (read-only to local programs, so nothing is written before the role
  // is set), then switched with SetRole: only the secondary/primary command lines take the TLS
  // options and the send timeout a later switch to primary needs.
  std::vector<std::string> args = {launch.fs_bin, "secondary", "--listen", d.listen,      "--dir",
                                   d.dir,         "--control", d.control,  "--node-name", launch.node_name};
  if (launch.encryption) {
    // The configuration loader checked the files; should they be gone since, hamirror-fs refuses to
    // start (never a fallback to clear text).
    const std::string ca = launch.tls_dir + "/ca.pem", cert = launch.tls_dir + "/node.pem",
                      key = launch.tls_dir + "/node.key";
    args.insert(args.end(), {"--tls-cert", cert, "--tls-key", key, "--tls-ca", ca});
    // The peer is dialled by address; its certificate names the node (hamirror-certs).
    if (!launch.peer_name.empty()) args.insert(args.end(), {"--tls-server-name", launch.peer_name});
  } else {
    args.push_back("--insecure");
  }
  if (d.direct_io_all) args.insert(args.end(), {"--direct-io", "all"});
  if (!launch.state_dir.empty()) args.insert(args.end(), {"--state-dir", launch.state_dir});
  args.insert(args.end(), {"--zone-size", std::to_string(launch.zone_size), "--resync-workers",
                           std::to_string(launch.resync_workers), "--send-timeout-ms",
                           std::to_string(launch.send_timeout_ms)});
  // Without a manager heard within this, a primary whose peer is lost holds its writes instead of
  // going alone (docs/datapath.md "Without a manager, never alone").
  args.insert(args.end(), {"--manager-grace-ms", std::to_string(launch.manager_grace_ms)});
  if (launch.resync_rate_bps != 0)
    args.insert(args.end(), {"--resync-rate", std::to_string(launch.resync_rate_bps)});
  return args;
}

Status FsDriver::Spawn(const FsDir& d) {
  if (Status s = CleanDeadMount(d); !s.ok()) return s;
  if (!launch_.encryption) log_->Warning("encryption=\"off\" on <rfs>: replication link in clear (no TLS)");
  std::vector<std::string> args = FsCommandLine(d, launch_);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  log_->Info("starting hamirror-fs for " + d.dir);
  int out = open(d.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  pid_t pid = fork();
  if (pid < 0) return Status::FromErrno("fork", errno);
  if (pid == 0) {
    // Detached from the daemon: own session, survives the manager (double fork reparents it).
    setsid();
    if (fork() != 0) _exit(0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    if (out >= 0) {
      dup2(out, 1);
      dup2(out, 2);
    }
    close_range(3, ~0U, 0);
    execv(argv[0], argv.data());
    _exit(127);
  }
  if (out >= 0) close(out);
  int st;
  waitpid(pid, &st, 0);
  // Wait for its control endpoint (it answers once mounted).
  for (int i = 0; i < 50; ++i) {
    proto::FsStatus s;
    if (QueryStatus(d.control, &s, 200).ok()) return Status::Ok();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return Status::Unavailable("hamirror-fs for " + d.dir + " did not come up (see " + d.log_path + ")");
}

// hamirror-fs changes roles in place except into secondary (it must be restarted: unmount, start as
// secondary — the application is stopped on this node by then), and it goes secondary -> alone as
// "primary without a peer".
Status FsDriver::SetRole(manager::core::FsRole role) {
  Status result;
  for (const auto& d : dirs_) {
    proto::FsStatus st;
    bool running = QueryStatus(d.control, &st, 1000).ok();
    if (running && role == manager::core::FsRole::kSecondary && st.role() != proto::FS_ROLE_SECONDARY) {
      log_->Info("restarting hamirror-fs for " + d.dir + " as secondary (pid " + std::to_string(st.pid()) +
                 ")");
      if (Status s = StopProcess(d, static_cast<pid_t>(st.pid())); !s.ok()) {
        result = s;
        continue;
      }
      running = false;
    }
    if (!running) {
      Status s = Spawn(d);
      if (!s.ok()) {
        result = s;
        continue;
      }
      if (role == manager::core::FsRole::kSecondary) continue;  // started as secondary
      if (!QueryStatus(d.control, &st, 1000).ok()) continue;
    }
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    proto::SetRoleRequest req;
    req.set_role(ToProto(role));
    if (role == manager::core::FsRole::kPrimary) req.set_peer(d.peer);
    if (role == manager::core::FsRole::kAlone && st.role() == proto::FS_ROLE_SECONDARY)
      req.set_role(proto::FS_ROLE_PRIMARY);  // no peer: alone
    grpc::Status g = Connect(d.control)->SetRole(&ctx, req, &st);
    if (!g.ok()) result = Status::Unavailable("hamirror-fs " + d.dir + ": set role: " + g.error_message());
  }
  return result;
}

Status FsDriver::ExpectResync(bool quarantine, bool full) {
  Status result;
  for (const auto& d : dirs_) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    proto::ExpectResyncRequest req;
    req.set_quarantine(quarantine);
    req.set_full(full);
    proto::FsStatus st;
    grpc::Status g = Connect(d.control)->ExpectResync(&ctx, req, &st);
    if (!g.ok())
      result = Status::Unavailable("hamirror-fs " + d.dir + ": expect resync: " + g.error_message());
  }
  return result;
}

Status FsDriver::Verify(bool repair) {
  for (const auto& d : dirs_) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    proto::VerifyRequest req;
    req.set_repair(repair);
    proto::FsStatus st;
    grpc::Status g = Connect(d.control)->Verify(&ctx, req, &st);
    if (!g.ok()) return Status::Unavailable("hamirror-fs " + d.dir + ": verify: " + g.error_message());
  }
  return Status::Ok();
}

std::vector<ResyncTargetView> FsDriver::ResyncTargets() {
  std::vector<ResyncTargetView> out;
  for (const auto& d : dirs_) {
    ResyncTargetView& v = out.emplace_back();
    proto::FsStatus st;
    if (!QueryStatus(d.control, &st, 1000).ok() || st.role() != proto::FS_ROLE_SECONDARY) continue;
    v.known = true;
    v.id = st.resync_target().id();
    v.phase = st.resync_target().phase();
  }
  return out;
}

std::vector<FsSession> FsDriver::Sessions() {
  std::vector<FsSession> out;
  for (const auto& d : dirs_) {
    FsSession& f = out.emplace_back();
    f.dir = d.dir;
    proto::FsStatus st;
    if (!QueryStatus(d.control, &st, 1000).ok()) continue;
    f.pid = st.pid();
    f.start_time = ProcessStartTime(st.pid());
    f.role = st.role();
  }
  return out;
}

void FsDriver::FillStatus(proto::StateReply* reply) {
  for (const auto& d : dirs_) {
    auto* f = reply->add_fs();
    f->set_dir(d.dir);
    proto::FsStatus st;
    grpc::Status g = QueryStatus(d.control, &st, 1000, /*keepalive=*/true);
    f->set_running(g.ok());
    if (!g.ok()) continue;
    f->set_role(st.role());
    f->set_peer_connected(st.peer_connected());
    f->set_dirty_files(st.dirty_files());
    f->set_dirty_zones(st.dirty_zones());
    f->set_namespace_dirty(st.namespace_dirty());
    f->set_last_error(st.last_error());
    f->set_pid(st.pid());
    f->set_peer_errors(st.peer_errors());
    f->set_reconnects(st.reconnects());
    *f->mutable_resync() = st.resync();
    *f->mutable_record() = st.record();
    *f->mutable_resync_target() = st.resync_target();
    f->set_in_sync(st.in_sync());
    *f->mutable_verify() = st.verify();
  }
}

}  // namespace hamirror::daemon
