#include "manager/admin/module_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <memory>

#include "common/log.h"
#include "common/unique_fd.h"

namespace hamirror::admin {
namespace {

std::string Timestamp() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char buf[64];
  snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
           tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
  return buf;
}

// Splits complete lines out of `data`; returns the number of bytes consumed.
size_t SplitLines(std::string_view data, std::vector<std::string>* lines) {
  size_t start = 0;
  for (;;) {
    size_t nl = data.find('\n', start);
    if (nl == std::string_view::npos) return start;
    lines->emplace_back(data.substr(start, nl - start));
    start = nl + 1;
  }
}

}  // namespace

Status ModuleLog::Open(const std::string& path, bool echo_stderr, std::unique_ptr<ModuleLog>* out) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd < 0) return Status::FromErrno("open log " + path, errno);
  out->reset(new ModuleLog(path, fd, echo_stderr));
  return Status::Ok();
}

ModuleLog::~ModuleLog() { close(fd_); }

void ModuleLog::Write(Level level, std::string_view msg) {
  const char tag = level == Level::kInfo ? 'I' : level == Level::kWarning ? 'W' : 'E';
  // One line per entry: embedded newlines would break `log -n` counting.
  std::string clean(msg);
  for (char& c : clean)
    if (c == '\n' || c == '\r') c = ' ';
  std::string line = Timestamp() + " " + tag + " " + clean + "\n";
  {
    std::lock_guard<std::mutex> lock(mu_);
    // O_APPEND makes each write land whole at the end even with external appenders.
    ssize_t n = ::write(fd_, line.data(), line.size());
    (void)n;
  }
  if (echo_) {
    auto l = level == Level::kInfo      ? LogLevel::kInfo
             : level == Level::kWarning ? LogLevel::kWarning
                                        : LogLevel::kError;
    Log(l, "%s", clean.c_str());
  }
}

Status ModuleLog::Tail(const std::string& path, size_t n, std::vector<std::string>* lines,
                       uint64_t* end_offset) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Status::FromErrno("open log " + path, errno);
  struct stat st;
  if (fstat(fd.get(), &st) != 0) {
    const int e = errno;  // before the message's allocation
    return Status::FromErrno("stat log " + path, e);
  }
  // Read backwards in chunks until n+1 newlines are seen (or the file start).
  const uint64_t size = st.st_size;
  uint64_t pos = size;
  std::string buf;
  size_t newlines = 0;
  while (pos > 0 && newlines <= n) {
    uint64_t chunk = pos >= 65536 ? 65536 : pos;
    pos -= chunk;
    std::string part(chunk, '\0');
    ssize_t r = pread(fd.get(), part.data(), chunk, pos);
    if (r != static_cast<ssize_t>(chunk)) {
      const int e = r < 0 ? errno : EIO;
      return Status::FromErrno("read log " + path, e);
    }
    for (char c : part) newlines += c == '\n';
    buf.insert(0, part);
  }
  std::vector<std::string> all;
  size_t used = SplitLines(buf, &all);
  // If we stopped mid-file, the first line is partial: drop it.
  if (pos > 0 && !all.empty()) all.erase(all.begin());
  size_t from = all.size() > n ? all.size() - n : 0;
  lines->assign(all.begin() + from, all.end());
  *end_offset = pos + used;
  return Status::Ok();
}

Status ModuleLog::ReadFrom(const std::string& path, uint64_t* offset, std::vector<std::string>* lines) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Status::FromErrno("open log " + path, errno);
  struct stat st;
  if (fstat(fd.get(), &st) != 0) {
    const int e = errno;  // before the message's allocation
    return Status::FromErrno("stat log " + path, e);
  }
  if (static_cast<uint64_t>(st.st_size) < *offset) *offset = 0;  // truncated/rotated: start over
  std::string buf;
  char tmp[65536];
  uint64_t pos = *offset;
  for (int i = 0; i < 1024; ++i) {  // bounded: at most 64 MiB per call
    ssize_t r = pread(fd.get(), tmp, sizeof tmp, pos);
    if (r < 0) {
      const int e = errno;
      return Status::FromErrno("read log " + path, e);
    }
    if (r == 0) break;
    buf.append(tmp, r);
    pos += r;
  }
  *offset += SplitLines(buf, lines);
  return Status::Ok();
}

}  // namespace hamirror::admin
