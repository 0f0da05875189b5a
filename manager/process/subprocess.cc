#include "manager/process/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace hamirror::process {
namespace {

using Clock = std::chrono::steady_clock;

int DecodeWait(int st) {
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return -1;
}

// Splits complete lines from *buf into on_line; keeps the partial tail.
void EmitLines(std::string* buf, const std::function<void(std::string_view)>& on_line, bool flush) {
  size_t start = 0;
  for (;;) {
    size_t nl = buf->find('\n', start);
    if (nl == std::string::npos) break;
    if (on_line) on_line(std::string_view(*buf).substr(start, nl - start));
    start = nl + 1;
  }
  buf->erase(0, start);
  if (flush && !buf->empty()) {
    if (on_line) on_line(*buf);
    buf->clear();
  }
}

}  // namespace

ProcessResult RunProcess(const ProcessSpec& spec) {
  ProcessResult res;
  if (spec.argv.empty()) {
    res.error = "empty command";
    return res;
  }
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) {
    res.error = std::string("pipe: ") + strerror(errno);
    return res;
  }
  // Everything the child needs is prepared before fork: after fork only async-signal-safe calls.
  std::vector<char*> argv;
  for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const auto& e : spec.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const bool use_env = !spec.env.empty();
  const bool path_lookup = spec.argv[0].find('/') == std::string::npos;

  pid_t pid = fork();
  if (pid < 0) {
    res.error = std::string("fork: ") + strerror(errno);
    close(out[0]);
    close(out[1]);
    return res;
  }
  if (pid == 0) {
    setpgid(0, 0);
    // Default signal dispositions and mask: the daemon may block signals for its own loop.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int s = 1; s < NSIG; ++s) signal(s, SIG_DFL);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    dup2(out[1], 1);
    dup2(out[1], 2);
    close_range(3, ~0U, 0);
    if (!spec.cwd.empty() && chdir(spec.cwd.c_str()) != 0) _exit(126);
    if (use_env) {
      if (path_lookup)
        execvpe(argv[0], argv.data(), envp.data());
      else
        execve(argv[0], argv.data(), envp.data());
    } else {
      execvp(argv[0], argv.data());
    }
    const char msg[] = "exec failed\n";
    ssize_t n = write(2, msg, sizeof msg - 1);
    (void)n;
    _exit(127);
  }
  setpgid(pid, pid);  // also from the parent: no window where a kill(-pid) misses the child
  close(out[1]);
  res.started = true;

  const auto deadline = Clock::now() + spec.timeout;
  std::string buf;
  char chunk[4096];
  bool eof = false;
  int status = 0;
  bool exited = false;
  Clock::time_point drain_until{};
  for (;;) {
    if (!exited) {
      pid_t w = waitpid(pid, &status, WNOHANG);
      if (w == pid) {
        exited = true;
        drain_until = Clock::now() + spec.drain;
      }
    }
    auto now = Clock::now();
    if (exited && (eof || now >= drain_until)) break;
    if (!exited && now >= deadline) {
      kill(-pid, SIGKILL);
      waitpid(pid, &status, 0);
      res.timed_out = true;
      exited = true;
      drain_until = Clock::now() + spec.drain;
      continue;
    }
    int wait_ms = 50;  // bounded poll: the child's exit is noticed within this
    if (!eof) {
      pollfd p{out[0], POLLIN, 0};
      int n = poll(&p, 1, wait_ms);
      if (n > 0) {
        ssize_t r = read(out[0], chunk, sizeof chunk);
        if (r > 0) {
          buf.append(chunk, r);
          EmitLines(&buf, spec.on_line, false);
        } else if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) {
          eof = true;
        }
      }
    } else {
      usleep(wait_ms * 1000);
    }
  }
  EmitLines(&buf, spec.on_line, true);
  close(out[0]);
  res.exit_code = res.timed_out ? 128 + SIGKILL : DecodeWait(status);
  return res;
}

}  // namespace hamirror::process
