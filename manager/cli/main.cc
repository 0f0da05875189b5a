// hamirror: command line over the admin API of hamirrord, with SafeKit's verbs.
//   hamirror [-m MODULE | --socket PATH] state [-v] [-lq] [--json] [-w [--interval S] [--count N]]
//   hamirror start|stop|restart|stopstart|forcestop|prim|second [fullsync] [--wait]|primforce|swap [nosync]
//   hamirror resync|rfssync [--wait];  hamirror verify|rfsverify [--repair] [--no-wait];  rfsdiff [--no-wait]
//   hamirror errd on|off|suspend|resume;  checker on|off;  boot on|off|status;  failover on|off
//   hamirror log [-f] [-n N];  hamirror printi|printw|printe MSG...
//   hamirror confcheck MODULE_DIR [--cluster FILE]   (no daemon needed);  hamirror certs ARGS
//   (hamirror-certs) hamirror --version
// Invoked as `safekit` (the link next to it, for SafeKit's module scripts) it is the same command;
// options such as -m may follow the verb, as SafeKit writes them (`safekit state -m mysql -lq`).
// Exit codes (common/exit_codes.h): 0 ok/accepted, 1 refused, 2 daemon unreachable or call failed,
// 64 usage; `state -lq`: STOP 0, WAIT 1, ALONE 2, PRIM 3, SECOND 4, 5 unknown (cli/discovery.h).
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>

#include "common/exit_codes.h"
#include "common/version.h"
#include "manager/admin/client.h"
#include "manager/cli/discovery.h"
#include "manager/cli/format.h"
#include "manager/cli/wait.h"
#include "manager/cli/watch.h"
#ifdef HAMIRROR_HAVE_CONFIG
#include "manager/config/config.h"
#endif

namespace {

using namespace hamirror;
bool g_over_tcp = false;  // --tcp: no socket file to look at when explaining errors

std::chrono::system_clock::time_point Deadline(int seconds) {
  return std::chrono::system_clock::now() + std::chrono::seconds(seconds);
}

// Turns a failed call into an operator-facing sentence.
int ReportRpcError(const grpc::Status& s, const std::string& socket) {
  struct stat st;
  const int stat_err = g_over_tcp || stat(socket.c_str(), &st) == 0 ? 0 : errno;
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE && stat_err == ENOENT) {
    std::cerr << "hamirror: hamirrord is not running (no socket " << socket << ")\n";
  } else if (stat_err == EACCES) {
    std::cerr << "hamirror: permission denied: " << socket << " (the admin API is for root only)\n";
    return kExitUnreachable;
  } else if (s.error_code() == grpc::StatusCode::PERMISSION_DENIED) {
    std::cerr << "hamirror: permission denied: " << s.error_message() << "\n";
  } else if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
    std::cerr << "hamirror: cannot reach hamirrord at " << socket << ": " << s.error_message() << "\n";
  } else {
    std::cerr << "hamirror: " << socket << ": " << s.error_message() << " (code " << s.error_code() << ")\n";
  }
  return kExitUnreachable;
}

int ReportReply(const grpc::Status& s, const proto::CommandReply& rep, const std::string& what,
                const std::string& socket) {
  if (!s.ok()) return ReportRpcError(s, socket);
  if (!rep.accepted()) {
    std::cerr << "hamirror: " << what << " refused: " << rep.reason() << "\n";
    return kExitRefused;
  }
  if (!rep.reason().empty()) std::cout << what << ": " << rep.reason() << "\n";
  return 0;
}

// "safekit" when invoked through that name, else "hamirror".
std::string ProgramName(const char* argv0) {
  const std::string a = argv0 ? argv0 : "";
  return a.substr(a.rfind('/') + 1) == "safekit" ? "safekit" : "hamirror";
}

// `hamirror certs ARGS...` is scripts/hamirror-certs, installed next to this binary: run it in place.
int ExecCerts(int argc, char** argv) {
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) {
    std::cerr << "hamirror: cannot find my own binary to locate hamirror-certs: " << strerror(errno) << "\n";
    return kExitUnreachable;
  }
  std::string dir(self, static_cast<size_t>(n));
  dir.resize(dir.rfind('/'));
  const std::string tool = dir + "/hamirror-certs";
  std::vector<char*> args = {const_cast<char*>(tool.c_str())};
  for (int i = 2; i < argc; ++i) args.push_back(argv[i]);
  args.push_back(nullptr);
  execv(tool.c_str(), args.data());
  std::cerr << "hamirror: cannot run " << tool << ": " << strerror(errno) << "\n";
  return kExitUnreachable;
}

// SafeKit's runtime toggles: `errd on|off|suspend|resume`, `checker|boot|failover on|off`.
struct ToggleVerb {
  const char* name;
  const char* help;
  proto::ToggleRequest::What what;
  std::vector<std::string> settings;
};

const std::vector<ToggleVerb>& ToggleVerbs() {
  static const std::vector<ToggleVerb> verbs = {
      {"errd",
       "process watchdog: off (not polled) until `errd on`; suspend/resume: polled, failures not acted on; "
       "until hamirrord restarts",
       proto::ToggleRequest::TOGGLE_ERRD,
       {"on", "off", "suspend", "resume"}},
      {"checker",
       "<check> checkers (tcp, custom, ping, intf) run or not, until hamirrord restarts",
       proto::ToggleRequest::TOGGLE_CHECKER,
       {"on", "off"}},
      {"boot",
       "start the module when hamirrord starts (kept across restarts); status: show it",
       proto::ToggleRequest::TOGGLE_BOOT,
       {"on", "off", "status"}},
      {"failover",
       "automatic takeover of a lost peer (kept across restarts); off: WAIT instead",
       proto::ToggleRequest::TOGGLE_FAILOVER,
       {"on", "off"}}};
  return verbs;
}

int RunToggle(proto::Admin::Stub& stub, const ToggleVerb& verb, const std::string& setting,
              const std::string& socket) {
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(10));
  if (setting == "status") {
    proto::StateRequest req;
    proto::StateReply rep;
    grpc::Status s = stub.State(&ctx, req, &rep);
    if (!s.ok()) return ReportRpcError(s, socket);
    std::cout << verb.name << " " << (rep.boot() ? "on" : "off") << "\n";
    return 0;
  }
  proto::ToggleRequest req;
  req.set_what(verb.what);
  req.set_setting(setting == "on"        ? proto::ToggleRequest::TOGGLE_ON
                  : setting == "off"     ? proto::ToggleRequest::TOGGLE_OFF
                  : setting == "suspend" ? proto::ToggleRequest::TOGGLE_SUSPEND
                                         : proto::ToggleRequest::TOGGLE_RESUME);
  proto::CommandReply rep;
  return ReportReply(stub.Toggle(&ctx, req, &rep), rep, std::string(verb.name) + " " + setting, socket);
}

// The command line: CLI11's verbs and the values their options were given.
struct Invocation {
  explicit Invocation(const std::string& program)
      : app("hamirror: control a hamirror module (two-node HA mirror)", program) {}
  CLI::App app;
  std::string socket_opt, module_opt, tcp_opt, tls_dir = "/etc/hamirror/tls";
  CLI::App* state = nullptr;
  bool verbose = false, lq = false, json = false, watch = false;
  double interval_s = 2;
  uint64_t watch_count = 0;
  std::map<std::string, CLI::App*> simple_cmds;  // verbs that take no argument but `swap nosync`
  std::string swap_arg;
  CLI::App* second = nullptr;
  std::string second_arg;
  bool wait = false;
  CLI::App *verify = nullptr, *rfsdiff = nullptr;
  bool repair = false, no_wait = false;
  std::map<std::string, CLI::App*> toggle_cmds;
  std::string toggle_setting;
  CLI::App* log = nullptr;
  bool follow = false;
  unsigned tail = 100;
  CLI::App *printi = nullptr, *printw = nullptr, *printe = nullptr;
  std::vector<std::string> print_words;
  CLI::App* confcheck = nullptr;
  std::string conf_dir, conf_cluster;
};

void DefineStateVerb(Invocation* c) {
  CLI::App& app = c->app;
  app.require_subcommand(1);
  app.set_version_flag("--version", VersionLine("hamirror"));
  app.fallthrough();  // before the verbs: they inherit it, so -m, --socket ... may follow the verb
  app.add_option("-m,--module", c->module_opt, "module name (socket /run/hamirror/MODULE.sock)");
  app.add_option("--socket", c->socket_opt, "admin socket path");
  app.add_option("--tcp", c->tcp_opt, "reach hamirrord over TCP with mutual TLS: HOST:PORT");
  app.add_option("--tls-dir", c->tls_dir,
                 "with --tcp: ca.pem, node.pem, node.key (default /etc/hamirror/tls)");

  c->state = app.add_subcommand("state", "state of the local node and its peer");
  c->state->add_flag("-v,--verbose", c->verbose,
                     "resources: heartbeats, VIP, fs, resync, watchdog, checkers");
  c->state->add_flag("--lq,-q", c->lq,
                     "quiet; exit code STOP 0, WAIT 1, ALONE 2, PRIM 3, SECOND 4, 5 unknown");
  c->state->add_flag("--json", c->json, "full state as JSON");
  auto* watch_flag = c->state->add_flag("-w,--watch", c->watch,
                                        "refresh the -v screen in place until Ctrl-C (like crm_mon)");
  c->state->add_option("--interval", c->interval_s, "with -w: seconds between refreshes (default 2)")
      ->check(CLI::Range(0.1, 3600.0))
      ->needs(watch_flag);
  c->state->add_option("--count", c->watch_count, "with -w: stop after N refreshes")->needs(watch_flag);
}

void DefineModuleVerbs(Invocation* c) {
  struct Simple {
    const char* name;
    const char* help;
  };
  const Simple simple[] = {
      {"start", "start the module on this node"},
      {"stop", "stop the module on this node (stop scripts, release the VIP)"},
      {"restart", "stop_prim + start_prim (or stop_second + start_second) locally"},
      {"stopstart", "module stop then start on this node (the peer takes over meanwhile)"},
      {"forcestop", "stop at once: stop scripts with `force`"},
      {"prim", "first start / after split brain: this node's data is the reference"},
      {"primforce", "become primary even with data not up to date (data loss risk)"},
      {"swap", "planned switch of roles with the peer (no resync when both are in sync)"},
      {"resync", "on the secondary: resynchronise from the primary (what its record names)"}};
  for (const auto& s : simple) c->simple_cmds[s.name] = c->app.add_subcommand(s.name, s.help);

  c->simple_cmds["swap"]
      ->add_option("mode", c->swap_arg, "nosync: on the primary, refused if a resync would follow the swap")
      ->check(CLI::IsMember({"nosync"}));
  c->simple_cmds["resync"]->alias("rfssync");
  c->second = c->app.add_subcommand(
      "second",
      "become secondary; `fullsync`: the resync into this node compares every file of the replicated "
      "directories by block checksums and copies the blocks that differ (not only what the record names)");
  c->second->add_option("mode", c->second_arg, "fullsync")->check(CLI::IsMember({"fullsync"}));
  c->second->add_flag("--wait", c->wait,
                      "wait until this node is SECOND (ready) after a resync, with progress");
  c->simple_cmds["resync"]->add_flag("--wait", c->wait, "wait until the resync is done, with progress");
  c->verify =
      c->app.add_subcommand("verify", "on the primary: compare both copies online by block checksums");
  c->verify->add_flag("--repair", c->repair, "record what differs, so that the peer is resynced");
  c->verify->add_flag("--no-wait", c->no_wait, "start it and return (results in `state -v`)");
  c->verify->alias("rfsverify");
  c->rfsdiff =
      c->app.add_subcommand("rfsdiff", "verify without repair: list what differs between both copies");
  c->rfsdiff->add_flag("--no-wait", c->no_wait, "start it and return (results in `state -v`)");
}

void DefineOtherVerbs(Invocation* c) {
  CLI::App& app = c->app;
  for (const auto& t : ToggleVerbs()) {
    c->toggle_cmds[t.name] = app.add_subcommand(t.name, t.help);
    c->toggle_cmds[t.name]
        ->add_option("setting", c->toggle_setting, "what to set (or show: boot status)")
        ->required()
        ->check(CLI::IsMember(t.settings));
  }

  c->log = app.add_subcommand("log", "module log");
  c->log->add_flag("-f,--follow", c->follow, "keep printing new lines");
  c->log->add_option("-n,--lines", c->tail, "number of last lines");

  c->printi = app.add_subcommand("printi", "information line into the module log");
  c->printw = app.add_subcommand("printw", "warning line into the module log");
  c->printe = app.add_subcommand("printe", "error line into the module log");
  for (auto* p : {c->printi, c->printw, c->printe})
    p->add_option("message", c->print_words, "text")->required();

  c->confcheck = app.add_subcommand("confcheck", "check a module configuration (no daemon needed)");
  c->confcheck->add_option("module_dir", c->conf_dir, "module directory (conf/userconfig.xml, bin/)")
      ->required();
  c->confcheck->add_option("--cluster", c->conf_cluster, "cluster.xml (default /etc/hamirror/cluster.xml)");

  app.add_subcommand("certs", "make a CA, node certificates and the heartbeat key (hamirror-certs --help)")
      ->prefix_command();
}

// The stub for --tcp (mutual TLS) or for the chosen admin socket; null when none (target->error says why).
std::unique_ptr<proto::Admin::Stub> Connect(const Invocation& c, cli::SocketChoice* target) {
  if (c.tcp_opt.empty()) {
    *target = cli::ChooseSocket(c.socket_opt, c.module_opt);
    return target->kind == cli::SocketChoice::kChosen ? admin::ConnectUnix(target->path) : nullptr;
  }
  g_over_tcp = true;
  target->kind = cli::SocketChoice::kChosen;
  target->path = c.tcp_opt;
  target->on_disk = false;
  return admin::ConnectTls(c.tcp_opt, c.tls_dir + "/ca.pem", c.tls_dir + "/node.pem", c.tls_dir + "/node.key",
                           &target->error);
}

int RunState(const Invocation& c, proto::Admin::Stub* stub, const std::string& socket) {
  if (c.watch) {
    const bool colour = cli::UseColour(STDOUT_FILENO);
    cli::WatchOptions wo{isatty(STDOUT_FILENO) != 0,
                         std::chrono::milliseconds(std::llround(c.interval_s * 1000)), c.watch_count};
    return cli::WatchState(
        cli::FetchFromStub(stub, true),
        [&](const proto::StateReply& r) {
          return c.json ? cli::FormatStateJson(r) : cli::FormatState(r, true, colour);
        },
        std::cout, wo);
  }
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(5));
  proto::StateRequest req;
  req.set_verbose(c.verbose || c.json);
  proto::StateReply rep;
  grpc::Status s = stub->State(&ctx, req, &rep);
  if (!s.ok()) return ReportRpcError(s, socket);
  std::cout << (c.json ? cli::FormatStateJson(rep)
                       : cli::FormatState(rep, c.verbose, cli::UseColour(STDOUT_FILENO)));
  return 0;
}

int RunLog(const Invocation& c, proto::Admin::Stub* stub, const std::string& socket) {
  grpc::ClientContext ctx;
  if (!c.follow) ctx.set_deadline(Deadline(30));
  proto::LogRequest req;
  req.set_tail(c.tail);
  req.set_follow(c.follow);
  auto reader = stub->Log(&ctx, req);
  proto::LogLine line;
  while (reader->Read(&line)) {
    std::cout << line.line() << "\n";
    if (c.follow) std::cout.flush();
  }
  grpc::Status s = reader->Finish();
  return s.ok() ? 0 : ReportRpcError(s, socket);
}

int RunPrint(const Invocation& c, proto::Admin::Stub* stub, const std::string& socket) {
  proto::PrintRequest req;
  req.set_level(c.printi->parsed()   ? proto::PrintRequest::INFO
                : c.printw->parsed() ? proto::PrintRequest::WARNING
                                     : proto::PrintRequest::ERROR);
  std::string msg;
  for (const auto& w : c.print_words) msg += (msg.empty() ? "" : " ") + w;
  req.set_message(msg);
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(10));
  proto::CommandReply rep;
  return ReportReply(stub->Print(&ctx, req, &rep), rep, "print", socket);
}

// The module verbs: verify/rfsdiff, second, and the simple ones, with their waits.
int RunModuleVerb(const Invocation& c, proto::Admin::Stub* stub, const std::string& socket) {
  // The verbose state, for the waits.
  cli::FetchState fetch = [stub](proto::StateReply* out) {
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline(5));
    proto::StateRequest req;
    req.set_verbose(true);
    return stub->State(&ctx, req, out).ok();
  };
  cli::WaitOptions wait_options;
  wait_options.tty = isatty(STDOUT_FILENO) != 0;
  proto::StateReply before;
  const bool verifying = c.verify->parsed() || c.rfsdiff->parsed();
  if ((c.wait || verifying) && !fetch(&before)) {
    std::cerr << "hamirror: cannot reach hamirrord at " << socket << "\n";
    return kExitUnreachable;
  }
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(30));
  proto::CommandReply rep;
  if (verifying) {
    proto::VerifyRequest req;
    req.set_repair(c.repair);
    if (int rc = ReportReply(stub->Verify(&ctx, req, &rep), rep, "verify", socket); rc != 0 || c.no_wait)
      return rc;
    return cli::WaitVerify(fetch, before, std::cout, wait_options);
  }
  if (c.second->parsed()) {
    proto::SecondRequest req;
    req.set_fullsync(c.second_arg == "fullsync");
    if (int rc = ReportReply(stub->Second(&ctx, req, &rep), rep, "second", socket); rc != 0 || !c.wait)
      return rc;
    return cli::WaitSecondReady(fetch, before, std::cout, wait_options);
  }
  using Call = grpc::Status (proto::Admin::Stub::*)(grpc::ClientContext*, const proto::CommandRequest&,
                                                    proto::CommandReply*);
  const std::map<std::string, Call> calls = {
      {"start", &proto::Admin::Stub::Start},        {"stop", &proto::Admin::Stub::Stop},
      {"restart", &proto::Admin::Stub::Restart},    {"forcestop", &proto::Admin::Stub::Forcestop},
      {"prim", &proto::Admin::Stub::Prim},          {"primforce", &proto::Admin::Stub::Primforce},
      {"swap", &proto::Admin::Stub::Swap},          {"resync", &proto::Admin::Stub::Resync},
      {"stopstart", &proto::Admin::Stub::StopStart}};
  for (const auto& [name, cmd] : c.simple_cmds) {
    if (!cmd->parsed()) continue;
    Call call = name == "swap" && c.swap_arg == "nosync" ? &proto::Admin::Stub::SwapNosync : calls.at(name);
    const int rc = ReportReply((stub->*call)(&ctx, proto::CommandRequest(), &rep), rep, name, socket);
    if (rc != 0 || !c.wait || name != "resync") return rc;
    return cli::WaitSecondReady(fetch, before, std::cout, wait_options);
  }
  std::cerr << c.app.help();
  return kExitUsage;
}

int RunConfcheck(const Invocation& c) {
#ifdef HAMIRROR_HAVE_CONFIG
  return config::RunConfcheck(c.conf_dir, c.conf_cluster, std::cout);
#else
  (void)c;
  std::cerr << "hamirror: confcheck not available in this build\n";
  return kExitUsage;
#endif
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == "certs") return ExecCerts(argc, argv);
  Invocation c(ProgramName(argv[0]));
  DefineStateVerb(&c);
  DefineModuleVerbs(&c);
  DefineOtherVerbs(&c);
  // SafeKit spells the quiet state flag "-lq"; CLI11 would read it as -l -q. Rewrite it first.
  std::vector<std::string> args(argv + 1, argv + argc);
  for (auto& a : args)
    if (a == "-lq") a = "--lq";
  std::reverse(args.begin(), args.end());  // CLI11 parses a reversed vector
  try {
    c.app.parse(args);
  } catch (const CLI::ParseError& e) {
    int rc = c.app.exit(e);
    return rc == 0 ? 0 : kExitUsage;
  }
  if (c.confcheck->parsed()) return RunConfcheck(c);

  cli::SocketChoice target;
  std::unique_ptr<proto::Admin::Stub> stub = Connect(c, &target);
  if (c.state->parsed() && c.lq) return cli::QuietState(target, stub.get(), std::cerr);
  if (!stub) {
    std::cerr << "hamirror: " << target.error << "\n";
    return kExitUnreachable;
  }
  const std::string& socket = target.path;
  if (c.state->parsed()) return RunState(c, stub.get(), socket);
  if (c.log->parsed()) return RunLog(c, stub.get(), socket);
  if (c.printi->parsed() || c.printw->parsed() || c.printe->parsed()) return RunPrint(c, stub.get(), socket);
  for (const auto& t : ToggleVerbs())
    if (c.toggle_cmds.at(t.name)->parsed()) return RunToggle(*stub, t, c.toggle_setting, socket);
  return RunModuleVerb(c, stub.get(), socket);
}
