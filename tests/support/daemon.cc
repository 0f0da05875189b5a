#include "tests/support/daemon.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace hamirror::test {
namespace {

pid_t Spawn(const std::vector<std::string>& argv, int out_fd) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid != 0) return pid;
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(127);
  dup2(out_fd, 1);
  dup2(out_fd, 2);
  int devnull = open("/dev/null", O_RDONLY);
  if (devnull >= 0) dup2(devnull, 0);
  setpgid(0, 0);
  execvp(args[0], args.data());
  fprintf(stderr, "exec %s: %s\n", args[0], strerror(errno));
  _exit(127);
}

std::string Unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      out.push_back(static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// Mount points at or below prefix, in mountinfo order.
std::vector<std::pair<std::string, std::string>> Mounts() {
  std::vector<std::pair<std::string, std::string>> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::vector<std::string> f;
    std::string w;
    while (ls >> w) f.push_back(w);
    size_t dash = 6;
    while (dash < f.size() && f[dash] != "-") ++dash;
    if (dash + 1 >= f.size()) continue;
    out.emplace_back(Unescape(f[4]), f[dash + 1]);
  }
  return out;
}

}  // namespace

Daemon::~Daemon() { Kill(); }

Status Daemon::Start(const std::vector<std::string>& argv, const std::string& log_path) {
  if (pid_ > 0) return Status::Internal("daemon already running");
  if (argv.empty()) return Status::InvalidArgument("Daemon::Start: empty argv");
  log_path_ = log_path;
  int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return Status::FromErrno("open " + log_path, errno);
  pid_ = Spawn(argv, fd);
  close(fd);
  if (pid_ < 0) return Status::FromErrno("fork", errno);
  return Status::Ok();
}

void Daemon::Reaped(int wait_status) {
  wait_status_ = wait_status;
  pid_ = -1;
}

void Daemon::Signal(int sig) {
  if (pid_ > 0) kill(pid_, sig);
}

bool Daemon::Exited() {
  if (pid_ <= 0) return true;
  int st;
  if (waitpid(pid_, &st, WNOHANG) == pid_) {
    Reaped(st);
    return true;
  }
  return false;
}

Status Daemon::WaitExit(std::chrono::milliseconds timeout, int* wait_status) {
  if (pid_ <= 0) return Status::Ok();
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    int st;
    pid_t r = waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      Reaped(st);
      if (wait_status) *wait_status = st;
      return Status::Ok();
    }
    if (r < 0) return Status::FromErrno("waitpid", errno);
    if (std::chrono::steady_clock::now() >= deadline) return Status::Timeout("daemon did not exit in time");
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

Status Daemon::Stop(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return Status::Ok();
  Signal(SIGTERM);
  int st = 0;
  Status s = WaitExit(timeout, &st);
  if (!s.ok()) {
    // A hang at shutdown is a bug worth a stack trace: taken with gdb when the machine has it (a
    // diagnostic only; the failure stands either way).
    std::string where;
    if (access("/usr/bin/gdb", X_OK) == 0) {
      const std::string stacks = "/tmp/hamirror-stacks-" + std::to_string(pid_) + ".txt";
      Status g =
          RunProgram({"/usr/bin/gdb", "-batch", "-p", std::to_string(pid_), "-ex", "thread apply all bt"},
                     stacks, std::chrono::seconds(60));
      where = "; thread stacks in " + stacks + " (" + g.ToString() + ")";
    }
    Kill();
    return Status::Timeout("daemon ignored SIGTERM for " + std::to_string(timeout.count()) + " ms; killed" +
                           where);
  }
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    return Status::Internal("daemon exited with wait status " + std::to_string(st));
  }
  return Status::Ok();
}

void Daemon::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int st = 0;
  waitpid(pid_, &st, 0);
  Reaped(st);
}

std::string Daemon::LogTail(size_t max_bytes) const { return FileTail(log_path_, max_bytes); }

std::string FileTail(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return s.size() > max_bytes ? s.substr(s.size() - max_bytes) : s;
}

Status RunProgram(const std::vector<std::string>& argv, const std::string& log_path,
                  std::chrono::milliseconds timeout) {
  Daemon child;
  Status s = child.Start(argv, log_path);
  if (!s.ok()) return s;
  int ws = 0;
  s = child.WaitExit(timeout, &ws);
  if (!s.ok()) {
    child.Kill();
    return Status::Timeout(argv[0] + " did not finish within " + std::to_string(timeout.count()) +
                           " ms; log tail:\n" + FileTail(log_path));
  }
  if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) {
    return Status::IoError(argv[0] + " failed (wait status " + std::to_string(ws) + "); log tail:\n" +
                           FileTail(log_path));
  }
  return Status::Ok();
}

Status RunCommand(const std::vector<std::string>& argv, std::chrono::milliseconds timeout, int* exit_code,
                  std::string* output) {
  char tmpl[] = "/tmp/hamirror-cmd-XXXXXX";
  int fd = mkstemp(tmpl);
  if (fd < 0) return Status::FromErrno("mkstemp", errno);
  pid_t pid = Spawn(argv, fd);
  Status result;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int st = 0;
  while (true) {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      result = Status::Timeout(argv[0] + " did not finish in time");
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (exit_code) *exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  if (output) {
    std::ifstream in(tmpl, std::ios::binary);
    output->assign((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }
  close(fd);
  unlink(tmpl);
  return result;
}

bool IsMountedAs(const std::string& dir, const std::string& fstype) {
  std::string top;
  bool found = false;
  for (const auto& [mp, type] : Mounts()) {
    if (mp == dir) {
      top = type;
      found = true;
    }
  }
  return found && top == fstype;
}

Status WaitForMount(const std::string& dir, pid_t pid, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!IsMountedAs(dir)) {
    if (pid > 0 && kill(pid, 0) != 0) return Status::Unavailable("daemon exited before mounting " + dir);
    if (pid > 0) {
      // A zombie still answers kill(0): look at its state.
      std::ifstream st("/proc/" + std::to_string(pid) + "/stat");
      std::string s;
      std::getline(st, s);
      size_t rp = s.rfind(')');
      if (rp != std::string::npos && rp + 2 < s.size() && s[rp + 2] == 'Z') {
        return Status::Unavailable("daemon exited before mounting " + dir);
      }
    }
    if (std::chrono::steady_clock::now() >= deadline) return Status::Timeout(dir + " not mounted in time");
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return Status::Ok();
}

Status WaitForUnmount(const std::string& dir, std::chrono::milliseconds timeout) {
  if (WaitUntil([&] { return !IsMountedAs(dir); }, timeout)) return Status::Ok();
  return Status::Timeout(dir + " still mounted");
}

Status Unmount(const std::string& dir) {
  for (int i = 0; i < 8; ++i) {
    bool mounted = false;
    for (const auto& [mp, type] : Mounts()) mounted |= mp == dir;
    if (!mounted) return Status::Ok();
    if (umount2(dir.c_str(), MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT) {
      return Status::FromErrno("umount " + dir, errno);
    }
  }
  return Status::Internal(dir + ": still mounted after repeated unmounts");
}

void UnmountTree(const std::string& dir) {
  // Mountinfo lists a mount after the one it sits on: walking it backwards unmounts deepest first.
  std::vector<std::string> below;
  for (const auto& [mp, type] : Mounts()) {
    if (mp == dir || mp.rfind(dir + "/", 0) == 0) below.push_back(mp);
  }
  for (auto it = below.rbegin(); it != below.rend(); ++it) (void)Unmount(*it);  // best effort, deepest first
}

int PickFreePort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = -1;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

TempDir::TempDir(const std::string& prefix) {
  const char* base = getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/" + prefix + "-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data())) path_ = buf.data();
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  UnmountTree(path_);
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace hamirror::test
