#include "manager/process/proc_scan.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>

#include "common/unique_fd.h"

namespace hamirror::process {
namespace {

bool ReadSmallFile(const std::string& path, std::string* out) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return false;
  char buf[4096];
  out->clear();
  for (int i = 0; i < 16; ++i) {  // cmdline can be long; 64 KiB is plenty to match on
    ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n <= 0) break;
    out->append(buf, n);
  }
  return true;
}

}  // namespace

std::vector<ProcEntry> ScanProcesses(const std::string& proc_root) {
  std::vector<ProcEntry> out;
  DIR* d = opendir(proc_root.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    if (!isdigit(static_cast<unsigned char>(e->d_name[0]))) continue;
    const std::string base = proc_root + "/" + e->d_name;
    std::string stat;
    if (!ReadSmallFile(base + "/stat", &stat)) continue;
    // "pid (comm) S ..." — comm may contain ')' so take the last one.
    size_t rp = stat.rfind(')');
    if (rp == std::string::npos || rp + 2 >= stat.size()) continue;
    if (stat[rp + 2] == 'Z' || stat[rp + 2] == 'X') continue;
    ProcEntry p;
    p.pid = atoi(e->d_name);
    if (!ReadSmallFile(base + "/comm", &p.comm)) continue;
    if (!p.comm.empty() && p.comm.back() == '\n') p.comm.pop_back();
    std::string cmd;
    ReadSmallFile(base + "/cmdline", &cmd);  // empty for kernel threads
    if (!cmd.empty() && cmd.back() == '\0') cmd.pop_back();
    std::string arg0 = cmd.substr(0, cmd.find('\0'));
    size_t slash = arg0.rfind('/');
    p.argv0 = slash == std::string::npos ? arg0 : arg0.substr(slash + 1);
    for (char& c : cmd)
      if (c == '\0') c = ' ';
    p.cmdline = std::move(cmd);
    out.push_back(std::move(p));
  }
  closedir(d);
  return out;
}

ProcMatcher::ProcMatcher(std::string name, std::string nameregex, std::string argregex)
    : name_(std::move(name)) {
  try {
    if (!nameregex.empty()) {
      name_re_ = std::regex(nameregex, std::regex::ECMAScript);
      use_name_re_ = true;
    }
    if (!argregex.empty()) {
      arg_re_ = std::regex(argregex, std::regex::ECMAScript);
      use_arg_re_ = true;
    }
  } catch (const std::regex_error&) {
    bad_ = true;
  }
}

bool ProcMatcher::Matches(const ProcEntry& e) const {
  if (bad_) return false;
  bool name_ok;
  if (use_name_re_) {
    name_ok = std::regex_match(e.comm, name_re_) || (!e.argv0.empty() && std::regex_match(e.argv0, name_re_));
  } else {
    // comm is truncated to 15 characters by the kernel: compare a long name on its prefix too.
    name_ok = e.comm == name_ || e.argv0 == name_ || (name_.size() > 15 && e.comm == name_.substr(0, 15));
  }
  if (!name_ok) return false;
  return !use_arg_re_ || std::regex_search(e.cmdline, arg_re_);
}

int CountMatching(const std::vector<ProcEntry>& procs, const ProcMatcher& m) {
  int n = 0;
  for (const auto& p : procs) n += m.Matches(p);
  return n;
}

}  // namespace hamirror::process
