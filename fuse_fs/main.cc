// hamirror-fs: the FUSE overlay mounted over a replicated directory.
//
//   hamirror-fs primary   --dir DIR --peer HOST:PORT [--send-timeout-ms N] [--control SOCK] [tls]
//   hamirror-fs secondary --dir DIR --listen HOST:PORT [--control SOCK] [tls]
//   hamirror-fs alone     --dir DIR [--control SOCK]
// Common: --state-dir DIR (the record of what the peer may lack: DIR/fs-<basename>.record; default the
// control socket's directory when --control is given, else /var/lib/hamirror), --zone-size BYTES.
//
// Runs in the foreground. SIGTERM/SIGINT unmount cleanly once in-flight requests are answered.
// Exit codes (common/exit_codes.h): 0 clean unmount, 1 failed (or ctl: refused), 2 ctl: unreachable,
// 64 usage error.
#define FUSE_USE_VERSION 314
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "common/exit_codes.h"
#include "common/log.h"
#include "common/version.h"
#include "fuse_fs/control_client.h"
#include "fuse_fs/control_server.h"
#include "fuse_fs/dev_channel.h"
#include "fuse_fs/filesystem.h"
#include "fuse_fs/mount_check.h"
#include "fuse_fs/uring_abi.h"
#include "fuse_fs/uring_transport.h"

namespace hamirror::fs {
namespace {

int Fail(const Status& s) {
  fprintf(stderr, "hamirror-fs: error: %s\n", s.ToString().c_str());
  return 1;
}

struct Cli {
  FsOptions options;
  Role role = Role::kAlone;
  std::string control;
  std::string state_dir;
  int send_timeout_ms = 30000;
  int manager_grace_ms = 0;
  int threads = 16;
  bool debug = false;
  Transport transport = Transport::kDev;
};

// Ring entries per queue (one queue per possible CPU): requests in progress at once on one CPU's queue.
constexpr unsigned kRingEntriesPerQueue = 8;
// Largest request payload: max_write (Filesystem's 1 MiB; libfuse sets max_pages to match). The payload
// buffers get a page more.
constexpr size_t kRingPayload = size_t{1} << 20;

// --transport: the ring transport when asked for and possible. Null: /dev/fuse only. Fails only when
// the ring was required (--transport uring) and cannot be had.
Status MakeTransport(const Cli& cli, fuse_session* se, std::unique_ptr<UringTransport>* out) {
  if (cli.transport == Transport::kDev) {
    HLOG_INFO("transport: /dev/fuse");
    return Status::Ok();
  }
  const bool required = cli.transport == Transport::kUring;
  const KernelUring kernel = KernelUringSwitch();
  if (kernel != KernelUring::kOn) {
    const char* why =
        kernel == KernelUring::kOff
            ? "the kernel's FUSE over io_uring is off (/sys/module/fuse/parameters/enable_uring "
              "is N; an administrator may write Y to it)"
            : "this kernel has no FUSE over io_uring (Linux 6.14+ built with FUSE_IO_URING)";
    if (required) return Status::Unavailable(std::string("--transport uring: ") + why);
    HLOG_INFO("transport: /dev/fuse (--transport auto: %s)", why);
    return Status::Ok();
  }
  const unsigned queues = PossibleCpus();
  if (queues == 0) {
    if (required) return Status::Internal("--transport uring: cannot read /sys/devices/system/cpu/possible");
    HLOG_WARN("transport: /dev/fuse (cannot read /sys/devices/system/cpu/possible)");
    return Status::Ok();
  }
  Status s = UringTransport::Create(se, queues, kRingEntriesPerQueue, kRingPayload + 4096, required, out);
  if (!s.ok()) {
    if (required) return Status::Internal("--transport uring: " + s.ToString());
    HLOG_WARN("transport: /dev/fuse (cannot set up io_uring: %s)", s.ToString().c_str());
    out->reset();
    return Status::Ok();
  }
  HLOG_INFO("transport: FUSE over io_uring asked for in INIT (%u queues x %u entries)", queues,
            kRingEntriesPerQueue);
  return Status::Ok();
}

// libfuse's signal handler only sets the session's exit flag; the loop notices it when the signal
// interrupts the main thread (waiting for workers) or a worker's read of /dev/fuse. Delivered to any
// other thread (gRPC's, the applier's), the signal wakes nobody and the daemon never stops. So the
// stop signals are blocked before any thread exists, every thread inherits that, and only the main
// thread unblocks them right before it enters the loop (the FUSE workers it then creates inherit the
// unblocked mask, and they are in the loop too).
sigset_t StopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  return set;
}

// Resolves the directory and the paths that derive from it (control socket, state directory, record).
Status ResolvePaths(Cli& cli) {
  std::string dir;
  if (Status s = CheckMountPoint(cli.options.dir, &dir); !s.ok()) return s;
  cli.options.dir = dir;
  cli.options.send_timeout = std::chrono::milliseconds(cli.send_timeout_ms);
  cli.options.manager_grace = std::chrono::milliseconds(cli.manager_grace_ms);
  if (cli.options.node_name.empty()) {
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    cli.options.node_name = host;
  }
  if (cli.state_dir.empty()) {
    const size_t slash = cli.control.rfind('/');
    cli.state_dir = cli.control.empty()          ? "/var/lib/hamirror"
                    : slash == std::string::npos ? "."
                    : slash == 0                 ? "/"
                                                 : cli.control.substr(0, slash);
  }
  if (cli.control.empty()) cli.control = DefaultControlSocket(dir);
  if (mkdir(cli.state_dir.c_str(), 0700) < 0 && errno != EEXIST)
    return Status::FromErrno("mkdir " + cli.state_dir, errno);
  const std::string stem = StateFileStem(dir);
  cli.options.record_path = cli.state_dir + "/" + stem + ".record";
  cli.options.quarantine_dir = cli.state_dir + "/quarantine/" + stem;
  return Status::Ok();
}

int Run(Cli& cli) {
  const sigset_t stop_signals = StopSignals();
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  Status s = ResolvePaths(cli);
  if (!s.ok()) return Fail(s);
  const std::string& dir = cli.options.dir;

  // Modes come from the kernel with the caller's umask applied already.
  umask(0);
  // Opened before the mount hides it: every access to the real files goes through this descriptor.
  int root_fd = open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root_fd < 0) return Fail(Status::FromErrno("open " + dir, errno));
  struct stat st;
  if (fstat(root_fd, &st) < 0) return Fail(Status::FromErrno("stat " + dir, errno));

  auto fs = std::make_unique<Filesystem>(cli.options, root_fd, st);
  s = fs->Start(cli.role);
  if (!s.ok()) return Fail(s);
  std::unique_ptr<ControlServer> control;
  s = ControlServer::Start(cli.control, fs.get(), &control);
  if (!s.ok()) return Fail(s);

  std::vector<std::string> argv_s = {"hamirror-fs", "-o",
                                     "allow_other,default_permissions,fsname=hamirror,subtype=hamirror"};
  if (cli.debug) argv_s.push_back("-d");
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  fuse_session* se = fuse_session_new(&args, &Filesystem::Ops(), sizeof(fuse_lowlevel_ops), fs.get());
  fuse_opt_free_args(&args);
  if (se == nullptr) return Fail(Status::Internal("fuse_session_new failed"));
  fs->SetSession(se);
  std::unique_ptr<UringTransport> uring;
  if (s = MakeTransport(cli, se, &uring); !s.ok()) {
    fuse_session_destroy(se);
    return Fail(s);
  }
  if (fuse_set_signal_handlers(se) != 0) return Fail(Status::Internal("cannot install signal handlers"));
  if (fuse_session_mount(se, dir.c_str()) != 0) {
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    return Fail(Status::Unavailable("cannot mount on " + dir + " (see message above)"));
  }
  HLOG_INFO("mounted %s as %s (control %s)", dir.c_str(), RoleName(cli.role), cli.control.c_str());
  InitExtension init_extension((cli.options.killpriv_v2 ? kInitHandleKillprivV2 : 0) |
                               (cli.options.direct_io_mmap ? kInitDirectIoAllowMmap : 0) |
                               (uring != nullptr ? uring_abi::kInitOverIoUring : 0));
  fs->SetInitExtension(&init_extension);
  if (s = InstallDevChannel(se, &init_extension, uring.get()); !s.ok()) {
    fuse_session_unmount(se);
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    return Fail(s);
  }

  fuse_loop_config* cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_clone_fd(cfg, 1);
  fuse_loop_cfg_set_max_threads(cfg, static_cast<unsigned>(cli.threads));
  fuse_loop_cfg_set_idle_threads(cfg, static_cast<unsigned>(cli.threads / 2));
  pthread_sigmask(SIG_UNBLOCK, &stop_signals, nullptr);  // a signal pending since start is taken now
  int ret = fuse_session_loop_mt(se, cfg);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  fuse_loop_cfg_destroy(cfg);
  HLOG_INFO("stopping (loop returned %d)", ret);

  // Requests in flight are answered (acked, or not shipped) before the mount goes away: ring requests
  // through their entries, so the ring's threads run until then (new ring requests get ENOTCONN).
  if (uring) uring->StopAccepting();
  control.reset();
  fs->SetSession(nullptr);
  fs->Stop();
  if (uring) uring->Stop();
  fuse_session_unmount(se);
  fuse_remove_signal_handlers(se);
  fuse_session_destroy(se);
  const bool ring_failed = uring != nullptr && uring->failed() && cli.transport == Transport::kUring;
  uring.reset();
  fs.reset();
  HLOG_INFO("unmounted %s", dir.c_str());
  if (ring_failed)
    fprintf(stderr, "hamirror-fs: error: --transport uring: the kernel refused the ring (see log)\n");
  return ret < 0 || ring_failed ? 1 : 0;
}

// An on|off option that sets *flag.
void AddOnOff(CLI::App* sub, const std::string& name, bool* flag, const std::string& help) {
  sub->add_option_function<std::string>(
         name, [flag](const std::string& v) { *flag = v == "on"; }, help)
      ->check(CLI::IsMember({"on", "off"}));
}

// Options of primary, secondary and alone.
void AddCommonOptions(CLI::App* sub, Cli& cli) {
  sub->add_option("--dir", cli.options.dir, "directory to replicate (mounted over)")->required();
  sub->add_option("--control", cli.control, "control socket (default /run/hamirror/fs/<basename>.sock)");
  sub->add_option("--node-name", cli.options.node_name, "this node's name (default: hostname)");
  sub->add_option("--threads", cli.threads, "maximum FUSE worker threads")->check(CLI::Range(2, 256));
  sub->add_flag("--debug", cli.debug, "libfuse debug output");
  sub->add_option(
      "--state-dir", cli.state_dir,
      "where the record of what the peer may lack is kept (outside the replicated tree; default: the "
      "--control socket's directory, else /var/lib/hamirror)");
  sub->add_option("--zone-size", cli.options.zone_size, "record granularity in bytes (ruzone_blocksize)")
      ->check(CLI::Range(uint64_t{4096}, uint64_t{1} << 30));
  sub->add_option("--resync-workers", cli.options.resync.workers, "files resynced at once (nbrei)")
      ->check(CLI::Range(1, 64));
  sub->add_option("--resync-rate", cli.options.resync.max_rate_bps,
                  "resync bandwidth cap in bytes per second (reiallowedbw); 0: unlimited");
  AddOnOff(sub, "--killpriv-v2", &cli.options.killpriv_v2,
           "on (default): ask the kernel for HANDLE_KILLPRIV_V2 (no GETXATTR per cached write; this daemon "
           "drops set-id bits and capabilities itself); off: libfuse's INIT as it is");
  AddOnOff(sub, "--direct-io-mmap", &cli.options.direct_io_mmap,
           "on (default): ask the kernel for DIRECT_IO_ALLOW_MMAP (shared mmap of direct-I/O handles "
           "works; handles opened O_DSYNC/O_SYNC for writing then use direct I/O: no FSYNC request per "
           "sync write); off: direct-I/O handles refuse shared mmap, O_DSYNC handles stay cached");
  AddOnOff(sub, "--direct-writes,--direct-apply", &cli.options.direct_writes,
           "on (default): large aligned writes (256 KiB and more; a primary's from the mount, a "
           "secondary's from the peer) go to this node's disk with O_DIRECT, around its page cache, as "
           "DRBD writes both copies; off: through the page cache");
  sub->add_option_function<std::string>(
         "--transport", [&cli](const std::string& v) { hamirror::fs::ParseTransport(v, &cli.transport); },
         "how FUSE requests reach this daemon: dev (default): /dev/fuse; uring: FUSE over io_uring "
         "(kernel 6.14+ with fuse.enable_uring=Y; refuses to start otherwise); auto: io_uring when the "
         "kernel offers it, else /dev/fuse (docs/datapath.md)")
      ->check(CLI::IsMember({"dev", "uring", "auto"}));
  sub->add_option("--path-fd-budget", cli.options.path_fd_budget,
                  "descriptors kept open for known inodes; past it they are reopened by file handle "
                  "(default 0: half the descriptor limit)");
  sub->add_option_function<std::string>(
         "--direct-io", [&cli](const std::string& mode) { cli.options.direct_io_all = mode == "all"; },
         "odirect (default): handles opened with O_DIRECT bypass the mount's page cache; all: so do "
         "all handles opened for writing (faster writes, no shared mmap of them; docs/datapath.md)")
      ->check(CLI::IsMember({"odirect", "all"}));
}

// TLS of the replication link: primary and secondary.
void AddTlsOptions(CLI::App* sub, Cli& cli) {
  auto* cert = sub->add_option("--tls-cert", cli.options.tls.cert, "PEM certificate of this node")
                   ->check(CLI::ExistingFile);
  auto* key = sub->add_option("--tls-key", cli.options.tls.key, "PEM private key")->check(CLI::ExistingFile);
  auto* ca = sub->add_option("--tls-ca", cli.options.tls.ca, "PEM CA of the peers")->check(CLI::ExistingFile);
  auto* insecure = sub->add_flag("--insecure", cli.options.tls.insecure, "plaintext replication link");
  auto* server_name = sub->add_option("--tls-server-name", cli.options.tls.server_name,
                                      "name the peer's certificate must carry when it differs from the "
                                      "--peer host (hamirrord passes the peer's node name)");
  server_name->needs(ca);
  cert->needs(key, ca);
  key->needs(cert, ca);
  ca->needs(cert, key);
  insecure->excludes(cert, key, ca);
}

// `hamirror-fs ctl VERB`: a client of a running daemon's control socket.
CLI::App* AddCtlCommand(CLI::App& app, CtlRequest* ctl) {
  auto* ctl_cmd = app.add_subcommand("ctl", "talk to a running hamirror-fs through its control socket");
  ctl_cmd->add_option("--control", ctl->control, "its control socket")->required();
  ctl_cmd->add_option("verb", ctl->verb, "status | role | resync | verify | expect-resync | wait")
      ->required()
      ->check(CLI::IsMember({"status", "role", "resync", "verify", "expect-resync", "wait"}));
  ctl_cmd->add_option("role", ctl->role, "with role: primary | alone")
      ->check(CLI::IsMember({"primary", "alone"}));
  ctl_cmd->add_option("--peer", ctl->peer, "with role primary: the secondary's HOST:PORT");
  ctl_cmd->add_flag("--full", ctl->full, "resync, expect-resync: compare everything by checksum");
  ctl_cmd->add_flag("--repair", ctl->repair, "verify: record what differs");
  ctl_cmd->add_flag("--quarantine", ctl->quarantine, "expect-resync: save what the resync changes first");
  ctl_cmd->add_flag("--wait", ctl->wait, "resync, verify: wait until it ended");
  ctl_cmd->add_option("--after-id", ctl->after_id,
                      "wait: for the end of a resync whose id is not this one (default 0: any resync)");
  ctl_cmd->add_option("--timeout", ctl->timeout_s, "with --wait, and wait: seconds")
      ->check(CLI::Range(1, 7 * 24 * 3600));
  return ctl_cmd;
}

}  // namespace
}  // namespace hamirror::fs

int main(int argc, char** argv) {
  using hamirror::fs::Cli;
  using hamirror::fs::Role;
  hamirror::SetLogComponent("hamirror-fs");
  // Two malloc arenas, not 8 per core: write payloads (up to 1 MiB) are allocated on a FUSE worker and
  // freed on a shipper thread, and per-thread arenas each kept such blocks around. Measured with 64
  // concurrent 1 MiB O_DIRECT writes: peak RSS 81 -> 59 MiB, same throughput (docs/benchmarks.md).
  mallopt(M_ARENA_MAX, 2);
  // Write payloads (up to 1 MiB: the Op's copy, gRPC's message buffers, the secondary's parsed op) come
  // from the arenas and their memory is kept for the next one. With glibc's defaults each 1 MiB block
  // was mmap'ed or trimmed back (madvise/brk on the reply path) and the next payload faulted in fresh
  // pages: a 1 MiB sequential write went 1.5-2.5x faster through a pair without it. Free memory kept at
  // the top of an arena is bounded by the trim threshold: peak RSS under 64 concurrent 1 MiB O_DIRECT
  // writes 60-64 MiB, against 59 before (16 MiB kept: up to 66).
  mallopt(M_MMAP_THRESHOLD, 4 << 20);
  mallopt(M_TRIM_THRESHOLD, 4 << 20);
  // gRPC 1.51's default engine (epoll1) polls one process-wide epoll set from whichever thread is the
  // designated poller: the control server's idle threads then pick up the replication stream's events
  // and wake its thread for them, a hand-off per message. With "poll" every completion queue polls only
  // its own calls. Measured under sysbench: primary CPU per transaction -27 % (docs/benchmarks.md).
  // An operator's explicit GRPC_POLL_STRATEGY wins.
  setenv("GRPC_POLL_STRATEGY", "poll", /*overwrite=*/0);
  Cli cli;
  CLI::App app{"hamirror-fs: FUSE overlay that replicates a directory synchronously to a peer"};
  app.require_subcommand(1, 1);
  app.set_version_flag("--version", hamirror::VersionLine("hamirror-fs"));
  auto* primary = app.add_subcommand("primary", "read-write; every change replicated to the peer");
  hamirror::fs::AddCommonOptions(primary, cli);
  hamirror::fs::AddTlsOptions(primary, cli);
  primary->add_option("--peer", cli.options.peer, "secondary's HOST:PORT")->required();
  primary->add_option("--send-timeout-ms", cli.send_timeout_ms, "peer declared lost after this")
      ->check(CLI::Range(1, 3600 * 1000));
  auto* secondary = app.add_subcommand("secondary", "read-only to local programs; applies the peer's stream");
  hamirror::fs::AddCommonOptions(secondary, cli);
  hamirror::fs::AddTlsOptions(secondary, cli);
  secondary->add_option("--listen", cli.options.listen, "HOST:PORT to listen on")->required();
  secondary
      ->add_option("--send-timeout-ms", cli.send_timeout_ms,
                   "once switched to primary in place: peer declared lost after this")
      ->check(CLI::Range(1, 3600 * 1000));
  for (CLI::App* sub : {primary, secondary}) {
    sub->add_option("--manager-grace-ms", cli.manager_grace_ms,
                    "run by a manager (hamirrord passes it): a lost peer makes the primary go alone by "
                    "itself only if the manager was heard (a control call that changes something, or a "
                    "keepalive status poll) within this many ms; else writes wait for it (default 0: "
                    "always go alone after the send timeout)")
        ->check(CLI::Range(0, 3600 * 1000));
  }
  auto* alone = app.add_subcommand("alone", "read-write, no peer; changes recorded dirty");
  hamirror::fs::AddCommonOptions(alone, cli);
  hamirror::fs::CtlRequest ctl;
  auto* ctl_cmd = hamirror::fs::AddCtlCommand(app, &ctl);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? hamirror::kExitOk : hamirror::kExitUsage;
  }
  if (ctl_cmd->parsed()) {
    if (ctl.verb == "role" && (ctl.role.empty() || (ctl.role == "primary" && ctl.peer.empty()))) {
      fprintf(stderr, "hamirror-fs ctl: role needs primary --peer HOST:PORT, or alone\n");
      return hamirror::kExitUsage;
    }
    return hamirror::fs::RunCtl(ctl);
  }
  if (primary->parsed()) cli.role = Role::kPrimary;
  if (secondary->parsed()) cli.role = Role::kSecondary;
  if (alone->parsed()) cli.role = Role::kAlone;
  return hamirror::fs::Run(cli);
}
