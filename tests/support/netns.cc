#include "tests/support/netns.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <thread>

namespace hamirror::test {

CommandResult RunCommand(const std::string& shell_command) {
  CommandResult result;
  const std::string cmd = "( " + shell_command + " ) 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr) {
    result.output = "popen failed: " + std::string(std::strerror(errno));
    return result;
  }
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) result.output.append(buf, n);
  const int status = ::pclose(pipe);
  result.status = (status != -1 && WIFEXITED(status)) ? WEXITSTATUS(status) : -1;
  return result;
}

std::string ShellQuote(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  out += "'";
  return out;
}

bool IsRoot() { return ::geteuid() == 0; }

std::string UniqueName(std::string_view role) {
  static std::atomic<int> counter{0};
  return "hmt" + std::to_string(::getpid()) + "-" + std::to_string(counter.fetch_add(1)) + "-" +
         std::string(role);
}

NetNamespace::NetNamespace(std::string name) : name_(std::move(name)) {
  CommandResult r = RunCommand("ip netns add " + ShellQuote(name_));
  if (!r.ok()) throw std::runtime_error("ip netns add " + name_ + ": " + r.output);
  r = RunCommand("ip -n " + ShellQuote(name_) + " link set lo up");
  if (!r.ok()) {
    RunCommand("ip netns del " + ShellQuote(name_));
    throw std::runtime_error("lo up in " + name_ + ": " + r.output);
  }
}

NetNamespace::~NetNamespace() {
  for (pid_t pid : std::vector<pid_t>(children_)) Kill(pid, SIGKILL);
  RunCommand("ip netns del " + ShellQuote(name_));
}

CommandResult NetNamespace::Exec(const std::string& shell_command) const {
  return RunCommand("ip netns exec " + ShellQuote(name_) + " sh -c " + ShellQuote(shell_command));
}

pid_t NetNamespace::Spawn(const std::vector<std::string>& argv, const std::string& log_path) {
  if (argv.empty()) return -1;
  // Everything the child needs is prepared before fork: after fork in a threaded process only
  // async-signal-safe calls are allowed.
  const std::string ns_path = "/run/netns/" + name_;
  const int ns_fd = ::open(ns_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (ns_fd < 0) return -1;
  const std::string out_path = log_path.empty() ? "/dev/null" : log_path;
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (::setns(ns_fd, CLONE_NEWNET) != 0) ::_exit(126);
    const int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out >= 0) {
      ::dup2(out, 1);
      ::dup2(out, 2);
    }
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  ::close(ns_fd);
  if (pid > 0) children_.push_back(pid);
  return pid;
}

bool NetNamespace::Kill(pid_t pid, int sig, std::chrono::milliseconds wait) {
  auto it = std::find(children_.begin(), children_.end(), pid);
  if (it == children_.end()) return false;
  ::kill(pid, sig);
  const auto deadline = std::chrono::steady_clock::now() + wait;
  bool exited = false;
  while (true) {
    const pid_t r = ::waitpid(pid, nullptr, WNOHANG);
    if (r == pid || (r < 0 && errno == ECHILD)) {
      exited = true;
      break;
    }
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!exited && sig != SIGKILL) return false;  // still ours: the destructor will SIGKILL it
  if (!exited) {
    ::waitpid(pid, nullptr, 0);  // after SIGKILL the exit is certain
    exited = true;
  }
  children_.erase(std::find(children_.begin(), children_.end(), pid));
  return exited;
}

NetnsScope::NetnsScope(const NetNamespace& ns) {
  saved_fd_ = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (saved_fd_ < 0) throw std::runtime_error("open own netns: " + std::string(std::strerror(errno)));
  const std::string path = "/run/netns/" + ns.name();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) {
    const int err = errno;
    if (fd >= 0) ::close(fd);
    ::close(saved_fd_);
    throw std::runtime_error("setns " + path + ": " + std::strerror(err));
  }
  ::close(fd);
}

NetnsScope::~NetnsScope() {
  if (::setns(saved_fd_, CLONE_NEWNET) != 0) {
    std::fprintf(stderr, "NetnsScope: cannot return to the original netns: %s\n", std::strerror(errno));
    std::abort();  // continuing in the wrong namespace would make later tests lie
  }
  ::close(saved_fd_);
}

// Built with append: g++ 12 warns falsely (-Wrestrict) on "literal" + std::string temporaries.
std::string NetLab::PortName(int node, int lan) {
  std::string s = "n";
  s.append(std::to_string(node)).append("l").append(std::to_string(lan));
  return s;
}

std::string NetLab::NodeIf(int lan) {
  std::string s = "eth";
  s.append(std::to_string(lan));
  return s;
}

std::string NetLab::NodeAddr(int node, int lan) {
  std::string s = "198.18.";
  s.append(std::to_string(lan)).append(".").append(std::to_string(10 + node));
  return s;
}

void NetLab::Check(const CommandResult& r, const std::string& what) {
  if (!r.ok()) throw std::runtime_error(what + ": " + r.output);
}

NetLab::NetLab(Options options) : options_(options) {
  if (options.nodes < 1 || options.nodes > 200 || options.lans < 1 || options.lans > 8) {
    throw std::invalid_argument("NetLab: 1..200 nodes, 1..8 lans");
  }
  bridge_ = std::make_unique<NetNamespace>(UniqueName("br"));
  const std::string br = ShellQuote(bridge_->name());
  for (int lan = 0; lan < options.lans; ++lan) {
    const std::string b = "br" + std::to_string(lan);
    Check(RunCommand("ip -n " + br + " link add " + b + " type bridge stp_state 0 forward_delay 0 && ip -n " +
                     br + " link set " + b + " up"),
          "create bridge " + b);
  }
  auto attach = [&](NetNamespace& ns, const std::string& port, int lan, const std::string& addr) {
    const std::string n = ShellQuote(ns.name());
    const std::string ifname = NodeIf(lan);
    Check(RunCommand("ip -n " + br + " link add " + port + " type veth peer name " + ifname + " netns " + n +
                     " && ip -n " + br + " link set " + port + " master br" + std::to_string(lan) +
                     " up && ip -n " + n + " addr add " + addr + "/24 dev " + ifname + " && ip -n " + n +
                     " link set " + ifname + " up"),
          "attach " + ns.name() + " to lan " + std::to_string(lan));
  };
  for (int i = 1; i <= options.nodes; ++i) {
    std::string role = "n";
    role.append(std::to_string(i));
    nodes_.push_back(std::make_unique<NetNamespace>(UniqueName(role)));
    for (int lan = 0; lan < options.lans; ++lan)
      attach(*nodes_.back(), PortName(i, lan), lan, NodeAddr(i, lan));
  }
  client_ = std::make_unique<NetNamespace>(UniqueName("client"));
  attach(*client_, "c0", 0, ClientAddr());
}

NetLab::~NetLab() = default;

void NetLab::CutLink(int node, int lan) {
  Check(RunCommand("ip -n " + ShellQuote(bridge_->name()) + " link set " + PortName(node, lan) + " down"),
        "cut link");
}

void NetLab::HealLink(int node, int lan) {
  Check(RunCommand("ip -n " + ShellQuote(bridge_->name()) + " link set " + PortName(node, lan) + " up"),
        "heal link");
}

bool NetLab::SetLoss(int node, int lan, int percent) {
  const std::string n = ShellQuote(this->node(node).name());
  if (percent <= 0) {
    RunCommand("tc -n " + n + " qdisc del dev " + NodeIf(lan) + " root");
    return true;
  }
  const CommandResult r = RunCommand("tc -n " + n + " qdisc replace dev " + NodeIf(lan) +
                                     " root netem loss " + std::to_string(percent) + "%");
  if (!r.ok() && r.output.find("qdisc kind is unknown") != std::string::npos) return false;
  Check(r, "netem loss");
  return true;
}

std::string NetLab::NodeMac(int node, int lan) {
  CommandResult r = RunCommand("ip -n " + ShellQuote(this->node(node).name()) + " -o link show " +
                               NodeIf(lan) + " | sed -n 's/.*link\\/ether \\([0-9a-f:]*\\).*/\\1/p'");
  Check(r, "read mac");
  std::string mac = r.output;
  while (!mac.empty() && (mac.back() == '\n' || mac.back() == ' ')) mac.pop_back();
  return mac;
}

}  // namespace hamirror::test
