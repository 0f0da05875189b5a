#include "manager/cli/watch.h"

#include <grpcpp/grpcpp.h>
#include <time.h>

#include <thread>

namespace hamirror::cli {
namespace {

std::string Now() {
  const time_t t = time(nullptr);
  struct tm tm;
  char buf[32];
  if (localtime_r(&t, &tm) == nullptr || strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm) == 0) return "?";
  return buf;
}

std::string Header(const WatchOptions& o) {
  char every[32];
  snprintf(every, sizeof every, "%.1f", static_cast<double>(o.interval.count()) / 1000);
  return "hamirror state -w: " + Now() + ", every " + every + " s" + (o.tty ? " (Ctrl-C to quit)" : "") +
         "\n";
}

}  // namespace

int WatchState(const FetchState& fetch, const RenderState& render, std::ostream& out, const WatchOptions& o) {
  int rc = 0;
  for (uint64_t i = 0; o.count == 0 || i < o.count; ++i) {
    if (i > 0) std::this_thread::sleep_for(o.interval);
    proto::StateReply st;
    const bool ok = fetch(&st);
    rc = ok ? 0 : kWaitUnreachable;
    std::string screen = Header(o);
    screen += ok ? render(st) : "hamirror: cannot reach hamirrord (asking again at the next refresh)\n";
    if (o.tty)
      out << "\033[H\033[2J" << screen;  // home + clear, then the new screen
    else
      out << (i > 0 ? "\n" : "") << screen;
    out.flush();
  }
  return rc;
}

FetchState FetchFromStub(proto::Admin::Stub* stub, bool verbose) {
  return [stub, verbose](proto::StateReply* out) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    proto::StateRequest req;
    req.set_verbose(verbose);
    return stub->State(&ctx, req, out).ok();
  };
}

}  // namespace hamirror::cli
