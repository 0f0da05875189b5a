#include "manager/process/checkers.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>

#include "common/unique_fd.h"
#include "manager/process/subprocess.h"

namespace hamirror::process {

bool CheckTcp(const std::string& addr, int port, Millis timeout, std::string* detail) {
  sockaddr_storage ss{};
  socklen_t len;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, addr.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    len = sizeof *v4;
  } else if (inet_pton(AF_INET6, addr.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    len = sizeof *v6;
  } else {
    if (detail) *detail = "bad address " + addr;
    return false;
  }
  UniqueFd fd(socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) {
    if (detail) *detail = std::string("socket: ") + strerror(errno);
    return false;
  }
  int err = 0;
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    if (errno != EINPROGRESS) {
      err = errno;
    } else {
      pollfd p{fd.get(), POLLOUT, 0};
      int n = poll(&p, 1, static_cast<int>(timeout.count()));
      if (n == 0) {
        err = ETIMEDOUT;
      } else if (n < 0) {
        err = errno;
      } else {
        socklen_t el = sizeof err;
        getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &el);
      }
    }
  }
  if (detail) *detail = err ? addr + ":" + std::to_string(port) + ": " + strerror(err) : "";
  return err == 0;
}

bool CheckPing(const std::string& addr, Millis timeout, std::string* detail) {
  long secs = (timeout.count() + 999) / 1000;
  if (secs < 1) secs = 1;
  ProcessSpec spec;
  spec.argv = {"ping", "-c1", "-n", "-q", "-W" + std::to_string(secs), addr};
  spec.timeout = timeout + Millis(1000);
  ProcessResult r = RunProcess(spec);
  if (detail) *detail = r.ok() ? "" : addr + (r.timed_out ? ": ping timed out" : ": no answer");
  return r.ok();
}

bool CheckWitness(const std::vector<std::string>& addrs, Millis timeout, std::string* detail) {
  std::string why;
  for (const auto& a : addrs) {
    std::string d;
    if (CheckPing(a, timeout, &d)) {
      if (detail) *detail = a + " reached";
      return true;
    }
    why += (why.empty() ? "" : "; ") + d;
  }
  if (detail) *detail = why.empty() ? "no witness address" : why;
  return false;
}

bool CheckCustom(const std::string& exec, const std::string& args, const std::vector<std::string>& env,
                 Millis timeout, std::string* detail) {
  ProcessSpec spec;
  spec.argv.push_back(exec);
  std::istringstream in(args);
  for (std::string w; in >> w;) spec.argv.push_back(w);
  spec.env = env;
  spec.timeout = timeout;
  std::string last;
  spec.on_line = [&last](std::string_view l) { last = std::string(l); };
  ProcessResult r = RunProcess(spec);
  if (detail) {
    *detail = r.ok()        ? ""
              : !r.started  ? r.error
              : r.timed_out ? "timed out"
                            : "exit " + std::to_string(r.exit_code);
    if (!r.ok() && !last.empty()) *detail += ": " + last;
  }
  return r.ok();
}

}  // namespace hamirror::process
