// Test helpers for network namespaces (need root). Everything a helper creates it deletes again in
// its destructor; processes are killed by PID only.
//
//   NetNamespace ns(UniqueName("n1"));     // ip netns add; lo up
//   ns.Exec("ip addr");                      // ip netns exec <ns> sh -c '...'
//   pid_t pid = ns.Spawn({"sleep", "30"});   // child joins the namespace, then execs
//   { NetnsScope in(ns); socket(...); }      // this thread works inside the namespace for a while
//   NetLab lab({.nodes = 2, .lans = 2});     // node1..N + client joined by one bridge per lan
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace hamirror::test {

struct CommandResult {
  int status = -1;     // exit code, or -1 if it did not exit normally
  std::string output;  // stdout and stderr together
  bool ok() const { return status == 0; }
};

// Runs `/bin/sh -c shell_command` and captures its output.
CommandResult RunCommand(const std::string& shell_command);
// Quotes `s` for a POSIX shell.
std::string ShellQuote(std::string_view s);
bool IsRoot();
// A name unique to this process and call: "hmt<pid>-<n>-<role>".
std::string UniqueName(std::string_view role);

class NetNamespace {
 public:
  // Creates the namespace and brings its loopback up. Throws std::runtime_error on failure.
  explicit NetNamespace(std::string name);
  // Kills and reaps every process Spawn()ed here, then deletes the namespace.
  ~NetNamespace();
  NetNamespace(const NetNamespace&) = delete;
  NetNamespace& operator=(const NetNamespace&) = delete;

  const std::string& name() const { return name_; }
  // `ip netns exec <name> sh -c <shell_command>`.
  CommandResult Exec(const std::string& shell_command) const;
  // Starts argv[0] (PATH lookup) inside the namespace; returns its PID (or -1). Output goes to
  // `log_path` if given, else to /dev/null.
  pid_t Spawn(const std::vector<std::string>& argv, const std::string& log_path = "");
  // Sends `sig` to a process Spawn()ed here and waits up to `wait` for it to exit (reaping it).
  // Returns true if it exited.
  bool Kill(pid_t pid, int sig, std::chrono::milliseconds wait = std::chrono::milliseconds(5000));

 private:
  std::string name_;
  std::vector<pid_t> children_;
};

// Moves the calling thread into `ns` (setns) and back on destruction. Sockets created meanwhile stay
// in `ns`. Throws std::runtime_error on failure.
class NetnsScope {
 public:
  explicit NetnsScope(const NetNamespace& ns);
  ~NetnsScope();
  NetnsScope(const NetnsScope&) = delete;
  NetnsScope& operator=(const NetnsScope&) = delete;

 private:
  int saved_fd_ = -1;
};

// Test lab: `nodes` node namespaces and a client namespace, joined by one bridge per lan; the bridges
// live in their own namespace. Lan k is 198.18.k.0/24; node i (1-based) has 198.18.k.(10+i) on eth<k>;
// the client has 198.18.0.100 on eth0 (lan 0 only). Same layout as scripts/lab/lab.sh.
class NetLab {
 public:
  struct Options {
    int nodes = 2;
    int lans = 2;
  };
  explicit NetLab(Options options);  // throws std::runtime_error on failure (after cleaning up)
  ~NetLab();

  NetNamespace& node(int i) { return *nodes_.at(i - 1); }  // 1-based
  NetNamespace& client() { return *client_; }
  NetNamespace& bridge() { return *bridge_; }

  static std::string NodeAddr(int node, int lan);
  static std::string ClientAddr() { return "198.18.0.100"; }
  static int PrefixLen() { return 24; }
  static std::string NodeIf(int lan);

  // Cut: the bridge-side end of node's veth on that lan goes down (node sees NO-CARRIER).
  void CutLink(int node, int lan);
  void HealLink(int node, int lan);
  // netem packet loss on the node's interface (0 removes it). Returns false if the kernel has no netem
  // (sch_netem missing, as on some CI VMs); throws on other errors.
  bool SetLoss(int node, int lan, int percent);
  // The MAC address of node's interface on `lan` ("aa:bb:...").
  std::string NodeMac(int node, int lan);

 private:
  static void Check(const CommandResult& r, const std::string& what);
  static std::string PortName(int node, int lan);

  Options options_;
  std::unique_ptr<NetNamespace> bridge_;
  std::vector<std::unique_ptr<NetNamespace>> nodes_;
  std::unique_ptr<NetNamespace> client_;
};

}  // namespace hamirror::test
