// hamirrord: the manager daemon of one hamirror module on one node.
//
//   hamirrord --module DIR [--cluster FILE] [--node NAME] [--socket PATH] [--log FILE]
//             [--fs-bin PATH] [--debug]
//
// Runs in the foreground (systemd Type=notify: READY=1 once the admin socket answers). Logs to
// stderr and to the module log (default /var/log/hamirror/<module>.log) that `hamirror log` shows.
// Refuses to start (exit 78) on any configuration error, printing every one of them: missing TLS files
// or heartbeat key without an explicit opt-out included, and a --node none of whose addresses is here.
// SIGTERM/SIGINT: stop the module (stop scripts, VIP released), then exit; a second one exits now.
// SIGUSR2: exit leaving the module running (hamirror-fs, application, VIP), with an adoption record for
// the next hamirrord, which adopts the module instead of starting it (restart, upgrade; see
// docs/operations.md "Restarting hamirrord"). `hamirrord --vip-keeper ...` is internal (vip_keeper.h).
// Exit codes (common/exit_codes.h): 0 clean exit, 1 could not start (e.g. another hamirrord serves the
// module), 64 usage error, 78 configuration error.
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <iostream>
#include <thread>

#include "common/exit_codes.h"
#include "common/log.h"
#include "common/version.h"
#include "manager/admin/admin_server.h"
#include "manager/config/config.h"
#include "manager/daemon/address_check.h"
#include "manager/daemon/node.h"
#include "manager/daemon/vip_keeper.h"

using namespace hamirror;

namespace {

std::string Dirname(const std::string& p) {
  size_t s = p.rfind('/');
  return s == std::string::npos ? "." : s == 0 ? "/" : p.substr(0, s);
}

void MakeDirs(const std::string& dir, mode_t mode) {
  for (size_t pos = 1; pos != std::string::npos;) {
    pos = dir.find('/', pos + 1);
    mkdir(dir.substr(0, pos).c_str(), mode);
  }
}

std::string SelfDir() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "/usr/sbin";
  return Dirname(std::string(buf, n));
}

// SAFE, the directory of the hamirror CLI (module scripts call $SAFE/safekit): hamirrord's own in the build
// tree or a side-by-side install; the bin/ beside a packaged sbin/ (/usr/sbin/hamirrord, /usr/bin/hamirror).
std::string CliDir(const std::string& self_dir) {
  if (access((self_dir + "/hamirror").c_str(), X_OK) == 0) return self_dir;
  if (self_dir.ends_with("/sbin")) {
    const std::string bin = self_dir.substr(0, self_dir.size() - 4) + "bin";
    if (access((bin + "/hamirror").c_str(), X_OK) == 0) return bin;
  }
  return self_dir;
}

// Signals are taken by a dedicated thread (StartSignalThread); every other thread (and, via
// subprocess, no child) inherits this mask.
sigset_t BlockDaemonSignals() {
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGHUP);
  sigaddset(&sigs, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);
  return sigs;
}

// SIGTERM/SIGINT: stop the module and exit; SIGUSR2: exit leaving it running; SIGHUP: ignored.
void StartSignalThread(daemon::Node* node, sigset_t sigs) {
  std::thread([node, sigs] {
    for (;;) {
      int sig = 0;
      if (sigwait(&sigs, &sig) != 0) continue;
      if (sig == SIGHUP) continue;  // no reload: configuration changes need a restart
      if (sig == SIGUSR2) {
        node->RequestLeave();
        continue;
      }
      node->RequestExit(true);
    }
  }).detach();
}

// The admin API on the socket, and with --admin-tcp on TCP with the module's certificates.
admin::AdminServerOptions AdminOptions(const std::string& socket_path, const std::string& admin_tcp,
                                       const config::ModuleConfig& cfg) {
  admin::AdminServerOptions aopt;
  aopt.unix_path = socket_path;
  if (!admin_tcp.empty()) {
    aopt.tcp_addr = admin_tcp;
    aopt.tls_ca_file = cfg.hamirror.tls_dir + "/ca.pem";
    aopt.tls_cert_file = cfg.hamirror.tls_dir + "/node.pem";
    aopt.tls_key_file = cfg.hamirror.tls_dir + "/node.key";
  }
  return aopt;
}

}  // namespace

int main(int argc, char** argv) {
  // Internal: the VIP keeper a hamirrord leaving the module running starts (not for operators).
  if (argc >= 2 && std::string(argv[1]) == "--vip-keeper") return daemon::RunVipKeeper(argc - 2, argv + 2);
  CLI::App app{"hamirrord: manager daemon of a hamirror module", "hamirrord"};
  app.footer(
      "Signals: SIGTERM/SIGINT stop the module (stop scripts, VIP removed) then exit (a second one: exit "
      "now); SIGUSR2 exits leaving the module running (hamirror-fs, application, VIP) for the next "
      "hamirrord, which adopts it (restart, upgrade); SIGHUP is ignored.");
  std::string module_dir, cluster_file, node_name, socket_path, log_path, fs_bin;
  bool debug = false;
  app.add_option("--module", module_dir, "module directory (conf/userconfig.xml, bin/)")->required();
  app.add_option("--cluster", cluster_file, "cluster.xml (default /etc/hamirror/cluster.xml)");
  app.add_option("--node", node_name, "this node's name in cluster.xml (default: host name)");
  app.add_option("--socket", socket_path, "admin socket (default /run/hamirror/<module>.sock)");
  app.add_option("--log", log_path, "module log (default /var/log/hamirror/<module>.log)");
  app.add_option("--fs-bin", fs_bin, "hamirror-fs binary (default: next to hamirrord)");
  std::string admin_tcp;
  app.add_option(
      "--admin-tcp", admin_tcp,
      "also serve the admin API on HOST:PORT with mutual TLS (certificates from the module's tlsdir: "
      "ca.pem, node.pem, node.key)");
  app.add_flag("--debug", debug, "debug logging on stderr");
  app.set_version_flag("--version", VersionLine("hamirrord"));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  }

  SetLogComponent("hamirrord");
  if (debug) SetLogLevel(LogLevel::kDebug);

  config::ModuleConfig cfg;
  std::vector<config::Diagnostic> diags;
  Status st = config::LoadModule(module_dir, cluster_file, &cfg, &diags);
  for (const auto& d : diags) std::cerr << d.ToString() << "\n";
  if (!st.ok()) {
    std::cerr << "hamirrord: " << st.ToString() << "; not starting\n";
    return kExitConfig;
  }
  if (node_name.empty()) {
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    node_name = host;
  }
  if (Status s = daemon::CheckNodeIsLocal(cfg.cluster, node_name); !s.ok()) {
    std::cerr << "hamirrord: " << s.message() << "; not starting\n";
    return kExitConfig;
  }
  if (socket_path.empty()) socket_path = admin::DefaultSocketPath(cfg.module_name);
  if (log_path.empty()) log_path = "/var/log/hamirror/" + cfg.module_name + ".log";
  const std::string self_dir = SelfDir();
  const std::string safe_dir = CliDir(self_dir);
  if (fs_bin.empty()) fs_bin = self_dir + "/hamirror-fs";
  MakeDirs(Dirname(log_path), 0755);
  MakeDirs(Dirname(socket_path), 0755);

  std::unique_ptr<admin::ModuleLog> log;
  if (Status s = admin::ModuleLog::Open(log_path, true, &log); !s.ok()) {
    std::cerr << "hamirrord: " << s.ToString() << "\n";
    return kExitRefused;
  }

  const sigset_t sigs = BlockDaemonSignals();

  daemon::NodeOptions opt;
  opt.cfg = cfg;
  opt.self = node_name;
  opt.admin_socket = socket_path;
  opt.safe_dir = safe_dir;
  opt.fs_bin = fs_bin;
  opt.run_dir = Dirname(socket_path);
  opt.log_dir = Dirname(log_path);
  daemon::Node node(opt, log.get());
  log->Info("hamirrord starting: module " + cfg.module_name + ", node " + node_name + ", pid " +
            std::to_string(getpid()));
  if (Status s = node.Init(); !s.ok()) {
    log->Error("hamirrord: " + s.ToString() + "; not starting");
    // InvalidArgument: what cluster.xml and the module say does not fit this node (configuration).
    return s.code() == Status::Code::kInvalidArgument ? kExitConfig : kExitRefused;
  }
  std::unique_ptr<admin::AdminServer> server;
  if (Status s = admin::AdminServer::Start(AdminOptions(socket_path, admin_tcp, cfg), &node, &server);
      !s.ok()) {
    log->Error("hamirrord: admin API: " + s.ToString() + "; not starting");
    return kExitRefused;
  }
  StartSignalThread(&node, sigs);
  sd_notify(0, "READY=1");
  log->Info("hamirrord ready; admin socket " + socket_path);
  node.Run();
  sd_notify(0, "STOPPING=1");
  server->Shutdown();
  log->Info(node.left_running() ? "hamirrord exited, module left running for the next hamirrord"
                                : "hamirrord exited");
  if (node.left_workers()) {
    fflush(nullptr);
    _exit(0);  // a script thread still runs: no destructors under it
  }
  return 0;
}
