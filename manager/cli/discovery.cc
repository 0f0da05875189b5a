#include "manager/cli/discovery.h"

#include <dirent.h>
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>

#include "common/exit_codes.h"
#include "common/run_dir.h"
#include "manager/admin/admin_server.h"
#include "manager/cli/format.h"

namespace hamirror::cli {

std::vector<std::string> ListModuleSockets(const std::string& run_dir) {
  std::vector<std::string> socks;
  DIR* d = opendir(run_dir.c_str());
  if (d == nullptr) return socks;
  while (dirent* e = readdir(d)) {
    const std::string n = e->d_name;
    if (n.size() <= 5 || n.compare(n.size() - 5, 5, ".sock") != 0) continue;
    const std::string path = run_dir + "/" + n;
    struct stat st;
    if (lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) socks.push_back(path);
  }
  closedir(d);
  std::sort(socks.begin(), socks.end());
  return socks;
}

SocketChoice ChooseSocket(const std::string& socket_opt, const std::string& module_opt) {
  SocketChoice c;
  c.kind = SocketChoice::kChosen;
  if (!socket_opt.empty()) {
    c.path = socket_opt;
  } else if (!module_opt.empty()) {
    c.path = admin::DefaultSocketPath(module_opt);
  } else if (const char* s = getenv("HAMIRROR_SOCKET"); s && *s) {
    c.path = s;
  } else if (const char* m = getenv("SAFEMODULE"); m && *m) {
    c.path = admin::DefaultSocketPath(m);
  } else {
    const std::string dir = RunDir();
    const std::vector<std::string> socks = ListModuleSockets(dir);
    if (socks.size() == 1) {
      c.path = socks[0];
    } else if (socks.empty()) {
      c.kind = SocketChoice::kNoModule;
      c.error = "no hamirrord is running (no module socket in " + dir + "); give -m MODULE or --socket PATH";
    } else {
      c.kind = SocketChoice::kSeveralModules;
      c.error = "several modules are running (" + std::to_string(socks.size()) + " sockets in " + dir +
                "); choose one with -m MODULE";
    }
  }
  return c;
}

int QuietState(const SocketChoice& choice, proto::Admin::Stub* stub, std::ostream& err) {
  if (choice.kind == SocketChoice::kNoModule) return kStateStop;
  if (choice.kind == SocketChoice::kSeveralModules || stub == nullptr) {
    err << "hamirror: state unknown: " << choice.error << "\n";
    return kStateUnknown;
  }
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  proto::StateRequest req;
  proto::StateReply rep;
  const grpc::Status s = stub->State(&ctx, req, &rep);
  if (s.ok()) return StateExitCode(rep.local().state());
  struct stat st;
  if (choice.on_disk && stat(choice.path.c_str(), &st) != 0 && errno == ENOENT)
    return kStateStop;  // no daemon for this module: it is stopped
  err << "hamirror: state unknown: hamirrord at " << choice.path << " does not answer: " << s.error_message()
      << "\n";
  return kStateUnknown;
}

}  // namespace hamirror::cli
