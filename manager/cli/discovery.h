// Which module a `hamirror` command talks to, and what `state -lq` answers when it cannot ask one.
// Discovery counts modules, not sockets: only the admin sockets directly in the run directory
// (<module>.sock); hamirror-fs's control sockets are kept in its fs/ subdirectory and never count.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "proto/admin.grpc.pb.h"

namespace hamirror::cli {

// The admin sockets in run_dir: entries named <module>.sock that are sockets, sorted.
std::vector<std::string> ListModuleSockets(const std::string& run_dir);

struct SocketChoice {
  enum Kind { kChosen, kNoModule, kSeveralModules };
  Kind kind = kNoModule;
  std::string path;     // kChosen: the admin socket (or HOST:PORT over TCP)
  bool on_disk = true;  // path is a socket file (false over TCP: nothing to look at)
  std::string error;    // otherwise: why none was chosen, one line
};

// Explicit --socket, else -m MODULE (RunDir()/MODULE.sock), else $HAMIRROR_SOCKET (exported to user
// scripts by hamirrord), else $SAFEMODULE, else the only module in RunDir().
SocketChoice ChooseSocket(const std::string& socket_opt, const std::string& module_opt);

// `state -lq`: SafeKit's codes (STOP 0 ... SECOND 4) from the daemon, STOP when no daemon runs for the
// module (no socket), and 5 (unknown) when it cannot tell: several modules and none chosen, or a socket
// whose daemon does not answer. `stub` is null unless choice is kChosen. A reason goes to `err` for 5.
int QuietState(const SocketChoice& choice, proto::Admin::Stub* stub, std::ostream& err);

}  // namespace hamirror::cli
