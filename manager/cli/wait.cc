#include "manager/cli/wait.h"

#include <algorithm>
#include <sstream>
#include <string>
#include <thread>

#include "manager/cli/format.h"

namespace hamirror::cli {
namespace {

using Clock = std::chrono::steady_clock;

void Show(std::ostream& out, const WaitOptions& o, const std::string& line) {
  if (o.tty)
    out << "\r\033[K" << line << std::flush;
  else
    out << line << "\n";
}

// Polls until `step` says done (returns an exit code >= 0), the daemon is gone or the timeout.
int Poll(const FetchState& fetch, std::ostream& out, const WaitOptions& o,
         const std::function<int(const proto::StateReply&, std::string* line)>& step) {
  const auto deadline = Clock::now() + o.timeout;
  std::string last;
  for (uint64_t i = 0; Clock::now() < deadline; ++i) {
    proto::StateReply st;
    if (!fetch(&st)) {
      if (o.tty) out << "\n";
      out << "hamirror: lost the daemon while waiting\n";
      return kWaitUnreachable;
    }
    std::string line;
    const int rc = step(st, &line);
    if (!line.empty() && (o.tty || line != last)) Show(out, o, line);
    last = line;
    if (rc >= 0) {
      if (o.tty) out << "\n";
      return rc;
    }
    std::this_thread::sleep_for(o.poll);
  }
  if (o.tty) out << "\n";
  out << "hamirror: still not done after "
      << std::chrono::duration_cast<std::chrono::seconds>(o.timeout).count()
      << " s: stopped waiting (the operation goes on)\n";
  return kWaitUnreachable;
}

uint64_t OldVerifyId(const proto::StateReply& before, const std::string& dir) {
  for (const auto& f : before.fs())
    if (f.dir() == dir) return f.verify().id();
  return 0;
}

uint64_t OldTargetId(const proto::StateReply& before, const std::string& dir) {
  for (const auto& f : before.fs())
    if (f.dir() == dir) return f.resync_target().id();
  return 0;
}

}  // namespace

int WaitVerify(const FetchState& fetch, const proto::StateReply& before, std::ostream& out,
               const WaitOptions& options) {
  return Poll(fetch, out, options, [&](const proto::StateReply& st, std::string* line) {
    uint64_t done = 0, total = 0, differences = 0;
    bool all_ended = st.fs_size() > 0, failed = false;
    for (const auto& f : st.fs()) {
      const auto& v = f.verify();
      const bool mine = v.id() != 0 && v.id() != OldVerifyId(before, f.dir());
      if (!mine || v.phase() == "running") all_ended = false;
      failed |= mine && v.phase() == "failed";
      done += v.bytes_done();
      total += std::max(v.bytes_total(), v.bytes_done());
      differences += v.differences();
    }
    std::ostringstream o;
    o << "verify " << ProgressBar(total ? static_cast<double>(done) / total : 0) << " " << done / (1 << 20)
      << "/" << total / (1 << 20) << " MiB compared, " << differences << " differences";
    *line = o.str();
    if (!all_ended) return -1;
    std::ostringstream report;
    for (const auto& f : st.fs()) {
      const auto& v = f.verify();
      report << "\n"
             << f.dir() << ": " << v.phase() << ", " << v.bytes_done() << " bytes and " << v.files_done()
             << " files compared in " << v.elapsed_s() << " s, " << v.differences() << " differences";
      if (!v.error().empty()) report << " (error: " << v.error() << ")";
      for (const auto& d : v.difference_list()) report << "\n  " << d;
      if (v.differences() > static_cast<uint64_t>(v.difference_list_size())) report << "\n  ...";
      if (v.repair() && v.differences() > 0)
        report << "\n  recorded: the peer is resynced (the pair goes ALONE until that is done)";
    }
    *line += report.str();
    return failed || differences > 0 ? kWaitFailed : kWaitOk;
  });
}

int WaitSecondReady(const FetchState& fetch, const proto::StateReply& before, std::ostream& out,
                    const WaitOptions& options) {
  return Poll(fetch, out, options, [&](const proto::StateReply& st, std::string* line) {
    const auto& local = st.local();
    bool all_done = st.fs_size() > 0, failed = false;
    std::string phases;
    for (const auto& f : st.fs()) {
      const auto& t = f.resync_target();
      const bool mine = t.id() != 0 && t.id() != OldTargetId(before, f.dir());
      if (!mine || t.phase() != "done") all_done = false;
      failed |= mine && (t.phase() == "failed" || t.phase() == "interrupted");
      phases += (phases.empty() ? "" : ", ") + (mine ? t.phase() : std::string("waiting for the primary"));
    }
    std::ostringstream o;
    o << "resync into this node: " << phases << "; " << StateName(local.state()) << " ("
      << SubStateName(local.sub_state()) << ")";
    *line = o.str();
    if (local.state() != proto::NODE_STATE_SECOND && local.state() != proto::NODE_STATE_WAIT) {
      *line += "\nhamirror: the node left SECOND";
      return kWaitFailed;
    }
    if (failed) {
      *line += "\nhamirror: the resync failed; it is retried (see `hamirror log`)";
      return kWaitFailed;
    }
    const bool ready =
        local.state() == proto::NODE_STATE_SECOND && local.sub_state() == proto::SUB_STATE_READY;
    return all_done && ready ? kWaitOk : -1;
  });
}

}  // namespace hamirror::cli
