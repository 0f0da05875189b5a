#include "tests/integration/child_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace hamirror::itest {

namespace {
// Debian 12's glibc 2.36 <sys/pidfd.h> lacks C++ linkage; the raw system calls are simple enough.
int PidfdOpen(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }
int PidfdSendSignal(int pidfd, int sig) {
  return static_cast<int>(syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}
}  // namespace

ChildProcess::~ChildProcess() { Kill(); }

Status ChildProcess::Start(const std::vector<std::string>& argv, const std::string& log_path) {
  if (running()) return Status::Internal("ChildProcess::Start: already running pid " + std::to_string(pid_));
  if (argv.empty()) return Status::InvalidArgument("ChildProcess::Start: empty argv");
  log_path_ = log_path;
  int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) return Status::FromErrno("open " + log_path, errno);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    int err = errno;
    close(log_fd);
    return Status::FromErrno("fork", err);
  }
  if (pid == 0) {
    // Child: only async-signal-safe calls until exec.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd >= 0) dup2(null_fd, 0);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    execvp(args[0], args.data());
    const char msg[] = "exec failed\n";
    (void)!write(2, msg, sizeof(msg) - 1);
    _exit(127);
  }
  close(log_fd);
  pid_ = pid;
  wait_status_ = 0;
  pidfd_ = PidfdOpen(pid);
  if (pidfd_ < 0) {
    int err = errno;
    Kill();
    return Status::FromErrno("pidfd_open", err);
  }
  return Status::Ok();
}

void ChildProcess::Reap(int status) {
  wait_status_ = status;
  pid_ = -1;
  if (pidfd_ >= 0) close(pidfd_);
  pidfd_ = -1;
}

bool ChildProcess::Exited() {
  if (!running()) return true;
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    Reap(status);
    return true;
  }
  return false;
}

void ChildProcess::Signal(int sig) {
  if (!running()) return;
  // pidfd_send_signal cannot hit a recycled PID.
  PidfdSendSignal(pidfd_, sig);
}

Status ChildProcess::WaitExit(std::chrono::milliseconds timeout) {
  if (!running()) return Status::Ok();
  struct pollfd pfd = {pidfd_, POLLIN, 0};
  int r;
  do {
    r = poll(&pfd, 1, static_cast<int>(timeout.count()));
  } while (r < 0 && errno == EINTR);
  if (r == 0) return Status::Timeout("pid " + std::to_string(pid_) + " still running");
  int status = 0;
  if (waitpid(pid_, &status, 0) == pid_) Reap(status);
  return Status::Ok();
}

Status ChildProcess::Stop(std::chrono::milliseconds timeout) {
  if (!running()) return Status::Ok();
  pid_t pid = pid_;
  Signal(SIGTERM);
  Status s = WaitExit(timeout);
  if (!s.ok()) {
    Kill();
    return Status::Timeout("pid " + std::to_string(pid) + " ignored SIGTERM for " +
                           std::to_string(timeout.count()) + " ms; killed");
  }
  if (!WIFEXITED(wait_status_) || WEXITSTATUS(wait_status_) != 0) {
    return Status::IoError("pid " + std::to_string(pid) + " ended with wait status " +
                           std::to_string(wait_status_));
  }
  return Status::Ok();
}

void ChildProcess::Kill() {
  if (!running()) return;
  Signal(SIGKILL);
  int status = 0;
  if (waitpid(pid_, &status, 0) == pid_) Reap(status);
}

std::string ChildProcess::LogTail(size_t max_bytes) const { return FileTail(log_path_, max_bytes); }

std::string FileTail(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::stringstream ss;
  ss << in.rdbuf();
  std::string all = ss.str();
  if (all.size() > max_bytes) all = all.substr(all.size() - max_bytes);
  return all;
}

Status RunProgram(const std::vector<std::string>& argv, const std::string& log_path,
                  std::chrono::milliseconds timeout) {
  ChildProcess child;
  Status s = child.Start(argv, log_path);
  if (!s.ok()) return s;
  s = child.WaitExit(timeout);
  if (!s.ok()) {
    child.Kill();
    return Status::Timeout(argv[0] + " did not finish within " + std::to_string(timeout.count()) +
                           " ms; log tail:\n" + FileTail(log_path));
  }
  int ws = child.wait_status();
  if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) {
    return Status::IoError(argv[0] + " failed (wait status " + std::to_string(ws) + "); log tail:\n" +
                           FileTail(log_path));
  }
  return Status::Ok();
}

}  // namespace hamirror::itest
