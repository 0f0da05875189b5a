#include "manager/daemon/vip_keeper.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <memory>

#include "common/unique_fd.h"
#include "manager/admin/module_log.h"

namespace hamirror::daemon {
namespace {

std::string EncodeVip(const vip::VipAddress& v) {
  return v.addr + "/" + std::to_string(v.prefix_len) + "/" + v.interface;
}

bool DecodeVip(const std::string& s, vip::VipAddress* v) {
  const size_t a = s.find('/'), b = s.find('/', a == std::string::npos ? a : a + 1);
  if (a == std::string::npos || b == std::string::npos) return false;
  v->addr = s.substr(0, a);
  v->prefix_len = std::atoi(s.substr(a + 1, b - a - 1).c_str());
  v->interface = s.substr(b + 1);
  return !v->addr.empty();
}

}  // namespace

Status SpawnVipKeeper(const std::string& exe, const VipKeeperArgs& args, pid_t* pid) {
  std::vector<std::string> argv_s = {exe,
                                     "--vip-keeper",
                                     args.record,
                                     std::to_string(args.record_inode),
                                     std::to_string(args.deadline_boottime_ms),
                                     args.log_path};
  for (const auto& v : args.vips) argv_s.push_back(EncodeVip(v));
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  int report[2];
  if (pipe2(report, O_CLOEXEC) != 0) return Status::FromErrno("pipe", errno);
  UniqueFd rd(report[0]), wr(report[1]);
  pid_t child = fork();
  if (child < 0) return Status::FromErrno("fork", errno);
  if (child == 0) {
    // Own session, reparented (double fork): it must outlive this daemon and its service's stop.
    setsid();
    pid_t grandchild = fork();
    if (grandchild != 0) {
      (void)!write(report[1], &grandchild, sizeof grandchild);
      _exit(0);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    int devnull = open("/dev/null", O_RDWR);
    dup2(devnull, 0);
    dup2(devnull, 1);
    dup2(devnull, 2);
    close_range(3, ~0U, 0);
    execv(argv[0], argv.data());
    _exit(127);
  }
  wr.Reset();
  int st = 0;
  waitpid(child, &st, 0);
  pid_t got = 0;
  if (read(rd.get(), &got, sizeof got) != static_cast<ssize_t>(sizeof got) || got <= 0)
    return Status::Unavailable("the VIP keeper did not start");
  *pid = got;
  return Status::Ok();
}

int RunVipKeeper(int argc, char** argv) {
  if (argc < 4) return 64;
  VipKeeperArgs a;
  a.record = argv[0];
  a.record_inode = std::strtoull(argv[1], nullptr, 10);
  a.deadline_boottime_ms = std::strtoull(argv[2], nullptr, 10);
  a.log_path = argv[3];
  for (int i = 4; i < argc; ++i) {
    vip::VipAddress v;
    if (!DecodeVip(argv[i], &v)) return 64;
    a.vips.push_back(v);
  }
  timespec until{static_cast<time_t>(a.deadline_boottime_ms / 1000),
                 static_cast<long>(a.deadline_boottime_ms % 1000) * 1000000};
  while (clock_nanosleep(CLOCK_BOOTTIME, TIMER_ABSTIME, &until, nullptr) == EINTR) {
  }
  UniqueFd fd(open(a.record.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd) return 0;  // consumed: a new hamirrord adopted the module
  if (flock(fd.get(), LOCK_EX) != 0) return 1;
  struct stat st {};
  if (fstat(fd.get(), &st) != 0 || st.st_nlink == 0 || st.st_ino != a.record_inode) return 0;
  std::unique_ptr<admin::ModuleLog> log;
  (void)admin::ModuleLog::Open(a.log_path, false, &log);
  auto say = [&](admin::ModuleLog::Level level, const std::string& msg) {
    if (log) log->Write(level, msg);
  };
  say(admin::ModuleLog::Level::kWarning,
      "VIP keeper: no hamirrord adopted the module before the lease ran out: removing the VIP (the peer "
      "may take over); the next hamirrord takes the crash path");
  for (const auto& v : a.vips) {
    Status s = vip::Remove(v);
    say(s.ok() ? admin::ModuleLog::Level::kInfo : admin::ModuleLog::Level::kError,
        "VIP keeper: VIP " + v.addr + (s.ok() ? " removed" : ": " + s.ToString()));
  }
  unlink(a.record.c_str());
  return 0;
}

}  // namespace hamirror::daemon
