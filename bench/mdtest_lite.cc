// bench-mdtest: metadata operations on many small files, timed in one process (a shell loop would
// measure fork and exec, not the file system). Used by bench/metadata-compare.sh.
//
//   bench-mdtest create DIR --files N [--per-dir M] [--size B]  mkdir DIR/dNNNNN as needed, then
//                     open(O_CREAT|O_EXCL|O_WRONLY) + B bytes written + close of DIR/dNNNNN/fNNNNNNN
//   bench-mdtest stat   DIR --files N [--per-dir M]  stat(2) of every file, by full path
//   bench-mdtest unlink DIR --files N [--per-dir M]  unlink of every file, then rmdir of their directories
//   create and unlink take --mirror DIR2: a perfect synchronous mirror of those namespace operations,
//                     the "floor" targets of bench/metadata-compare.sh. Each mkdir, create, unlink and
//                     rmdir is made in DIR, then sent over a loopback TCP socket to a peer thread that
//                     makes the same in DIR2 and answers; the next operation waits for the answer. So
//                     every operation costs the local one, a round trip and the peer's own, and
//                     nothing else (no FUSE hop unless DIR is a mount, no record, no copies).
//   bench-mdtest compare A B [--metadata-only]  hamirror::test::CompareTrees (names, types, modes,
//                     owners, sizes, content, links, xattrs, mtimes): identical or the first difference.
//                     --metadata-only: without content and xattrs (no open per file: ~20x faster
//                     through a FUSE mount)
// File i lives in directory i / M (default M = 1000). DIR itself must exist.
// Output: one line of key=value pairs on stdout, e.g.
//   phase=create files=100000 dirs=100 seconds=4.210 ops_per_s=23753
// On failure the line says how far the phase got and why, with error= last (free text):
//   phase=create files=19873 dirs=20 seconds=1.020 ops_per_s=19483 errno=24 errno_name=EMFILE error=...
// compare prints `identical=yes` or `identical=no difference=...`.
// Exit: 0 ok, 1 the phase failed (or the trees differ), 64 usage.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include "common/unique_fd.h"
#include "tests/support/tree_compare.h"

namespace hamirror::bench {
namespace {

constexpr int kExitOk = 0, kExitFailed = 1, kExitUsage = 64;

struct Args {
  std::string phase;
  std::string dir;
  std::string dir_b;   // compare only
  std::string mirror;  // create and unlink: --mirror DIR2
  bool metadata_only = false;
  long files = -1;
  long per_dir = 1000;
  long size = 0;
};

// Where a phase got to: files and directories done, and the first error (errno 0 = none).
struct Progress {
  long files = 0;
  long dirs = 0;
  int err = 0;
  std::string error;
};

int Usage(const char* why) {
  fprintf(stderr,
          "bench-mdtest: %s\n"
          "usage: bench-mdtest create|stat|unlink DIR --files N [--per-dir M] [--size B] [--mirror DIR2]\n"
          "       bench-mdtest compare A B [--metadata-only]\n",
          why);
  return kExitUsage;
}

bool ParseLong(const char* text, long min, long* out) {
  char* end = nullptr;
  errno = 0;
  long v = strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v < min) return false;
  *out = v;
  return true;
}

// Returns "" when the arguments are good, else why not.
std::string ParseArgs(int argc, char** argv, Args* a) {
  if (argc < 3) return "missing arguments";
  a->phase = argv[1];
  a->dir = argv[2];
  if (a->phase == "compare") {
    if (argc < 4 || argc > 5) return "compare takes two directories";
    a->dir_b = argv[3];
    if (argc == 5 && std::string(argv[4]) != "--metadata-only")
      return std::string("unknown option ") + argv[4];
    a->metadata_only = argc == 5;
    return "";
  }
  if (a->phase != "create" && a->phase != "stat" && a->phase != "unlink") return "unknown phase " + a->phase;
  for (int i = 3; i < argc; i += 2) {
    const std::string opt = argv[i];
    if (i + 1 >= argc) return opt + " needs a value";
    if (opt == "--mirror") {
      if (a->phase == "stat") return "--mirror is for create and unlink";
      a->mirror = argv[i + 1];
      continue;
    }
    long* target = opt == "--files"     ? &a->files
                   : opt == "--per-dir" ? &a->per_dir
                   : opt == "--size"    ? &a->size
                                        : nullptr;
    if (!target) return "unknown option " + opt;
    if (!ParseLong(argv[i + 1], opt == "--per-dir" ? 1 : 0, target)) return "bad value for " + opt;
  }
  if (a->files < 0) return "--files N is required";
  return "";
}

std::string DirPath(const Args& a, long d) {
  char name[32];
  snprintf(name, sizeof(name), "/d%05ld", d);
  return a.dir + name;
}

std::string FilePath(const Args& a, long i) {
  char name[32];
  snprintf(name, sizeof(name), "/f%07ld", i);
  return DirPath(a, i / a.per_dir) + name;
}

void Fail(Progress* p, const std::string& what) {
  p->err = errno;
  p->error = what + ": " + strerror(p->err);
}

bool TransferAll(int fd, char* buf, size_t n, bool write_it) {
  for (size_t done = 0; done < n;) {
    const ssize_t k = write_it ? write(fd, buf + done, n - done) : read(fd, buf + done, n - done);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    done += static_cast<size_t>(k);
  }
  return true;
}

// Makes one namespace operation at path: 'd' mkdir, 'c' create with size bytes, 'u' unlink, 'r' rmdir.
// 0 or an errno.
int MakeOp(char op, const std::string& path, const std::string& data) {
  switch (op) {
    case 'd': return mkdir(path.c_str(), 0755) == 0 ? 0 : errno;
    case 'u': return unlink(path.c_str()) == 0 ? 0 : errno;
    case 'r': return rmdir(path.c_str()) == 0 ? 0 : errno;
    default: break;
  }
  UniqueFd fd(open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644));
  if (!fd) return errno;
  if (!data.empty() && write(fd.get(), data.data(), data.size()) != static_cast<ssize_t>(data.size()))
    return errno != 0 ? errno : EIO;
  return close(fd.Release()) == 0 ? 0 : errno;
}

// The mirror of --mirror: a peer thread behind a loopback TCP connection that repeats each operation in
// its own directory. Request: op (1 byte), path length (2 bytes), the path under the directory; answer:
// the peer's errno (4 bytes).
class Mirror {
 public:
  ~Mirror() {
    if (client_) shutdown(client_.get(), SHUT_RDWR);  // the peer's read ends
    if (peer_.joinable()) peer_.join();
  }
  // "" or why not (*err: its errno).
  std::string Start(const std::string& dir, size_t size, int* err) {
    *err = 0;
    auto failed = [err](const char* what) {
      *err = errno;
      return std::string("mirror: ") + what + ": " + strerror(*err);
    };
    dir_ = dir;
    data_.assign(size, 'x');
    UniqueFd listener(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (!listener || bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        listen(listener.get(), 1) != 0 ||
        getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0)
      return failed("cannot listen on 127.0.0.1");
    client_.Reset(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!client_ || connect(client_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
      return failed("cannot connect");
    UniqueFd served(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!served) return failed("accept");
    const int one = 1;
    setsockopt(client_.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(served.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    peer_ = std::thread([this, fd = std::move(served)] { Serve(fd.get()); });
    return "";
  }
  // The operation on the peer: 0, its errno, or EPIPE when the peer is gone.
  int Do(char op, const std::string& rel) {
    char req[3 + 4096];
    if (rel.size() > 4096) return ENAMETOOLONG;
    req[0] = op;
    req[1] = static_cast<char>(rel.size() & 0xff);
    req[2] = static_cast<char>(rel.size() >> 8);
    memcpy(req + 3, rel.data(), rel.size());
    int32_t answer;
    if (!TransferAll(client_.get(), req, 3 + rel.size(), true) ||
        !TransferAll(client_.get(), reinterpret_cast<char*>(&answer), sizeof answer, false))
      return EPIPE;
    return answer;
  }

 private:
  void Serve(int fd) {
    char req[3 + 4096];
    while (TransferAll(fd, req, 3, false)) {
      const size_t n =
          static_cast<unsigned char>(req[1]) | static_cast<size_t>(static_cast<unsigned char>(req[2])) << 8;
      if (n > 4096 || !TransferAll(fd, req + 3, n, false)) break;
      int32_t answer = MakeOp(req[0], dir_ + "/" + std::string(req + 3, n), data_);
      if (!TransferAll(fd, reinterpret_cast<char*>(&answer), sizeof answer, true)) break;
    }
  }  // fd: owned by the thread's UniqueFd
  std::string dir_, data_;
  UniqueFd client_;
  std::thread peer_;
};

// Repeats a done operation on the mirror, if there is one; false (and *p failed) if the peer's failed.
bool Mirrored(Mirror* m, char op, const Args& a, const std::string& path, Progress* p) {
  if (m == nullptr) return true;
  const int err = m->Do(op, path.substr(a.dir.size() + 1));
  if (err == 0) return true;
  errno = err;
  Fail(p, "mirror of " + path);
  return false;
}

void Create(const Args& a, Mirror* m, Progress* p) {
  const std::string data(static_cast<size_t>(a.size), 'x');
  for (long i = 0; i < a.files; i++) {
    if (i % a.per_dir == 0) {
      const std::string dir = DirPath(a, i / a.per_dir);
      if (mkdir(dir.c_str(), 0755) != 0) return Fail(p, "mkdir " + dir);
      if (!Mirrored(m, 'd', a, dir, p)) return;
      p->dirs++;
    }
    const std::string path = FilePath(a, i);
    UniqueFd fd(open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644));
    if (!fd) return Fail(p, "open " + path);
    if (!data.empty() && write(fd.get(), data.data(), data.size()) != static_cast<ssize_t>(data.size())) {
      if (errno == 0) errno = EIO;  // short write
      return Fail(p, "write " + path);
    }
    if (close(fd.Release()) != 0) return Fail(p, "close " + path);
    if (!Mirrored(m, 'c', a, path, p)) return;
    p->files++;
  }
}

void Stat(const Args& a, Progress* p) {
  for (long i = 0; i < a.files; i++) {
    const std::string path = FilePath(a, i);
    struct stat st;
    if (stat(path.c_str(), &st) != 0) return Fail(p, "stat " + path);
    if (st.st_size != a.size) {
      errno = EIO;
      return Fail(p, "stat " + path + ": size " + std::to_string(st.st_size) + ", created with " +
                         std::to_string(a.size));
    }
    p->files++;
  }
}

// Removes the files, then every directory they were in. The directory after the last file's may exist
// too (a create that failed right after its mkdir): removed if there, no error if not.
void Unlink(const Args& a, Mirror* m, Progress* p) {
  for (long i = 0; i < a.files; i++) {
    const std::string path = FilePath(a, i);
    if (unlink(path.c_str()) != 0) return Fail(p, "unlink " + path);
    if (!Mirrored(m, 'u', a, path, p)) return;
    p->files++;
  }
  const long dirs = (a.files + a.per_dir - 1) / a.per_dir;
  for (long d = 0; d <= dirs; d++) {
    const std::string dir = DirPath(a, d);
    if (rmdir(dir.c_str()) != 0) {
      if (d == dirs && errno == ENOENT) break;
      return Fail(p, "rmdir " + dir);
    }
    if (!Mirrored(m, 'r', a, dir, p)) return;
    p->dirs++;
  }
}

int RunPhase(const Args& a) {
  std::unique_ptr<Mirror> mirror;
  if (!a.mirror.empty()) {
    mirror = std::make_unique<Mirror>();
    int err = 0;
    const std::string why = mirror->Start(a.mirror, static_cast<size_t>(a.size), &err);
    if (!why.empty()) {
      printf("phase=%s files=0 dirs=0 seconds=0 ops_per_s=0 errno=%d errno_name=%s error=%s\n",
             a.phase.c_str(), err, strerrorname_np(err) ? strerrorname_np(err) : "?", why.c_str());
      return kExitFailed;
    }
  }
  Progress p;
  const auto start = std::chrono::steady_clock::now();
  if (a.phase == "create") Create(a, mirror.get(), &p);
  if (a.phase == "stat") Stat(a, &p);
  if (a.phase == "unlink") Unlink(a, mirror.get(), &p);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  printf("phase=%s files=%ld dirs=%ld seconds=%.3f ops_per_s=%.0f", a.phase.c_str(), p.files, p.dirs, seconds,
         seconds > 0 ? static_cast<double>(p.files) / seconds : 0.0);
  if (p.err != 0) {
    const char* name = strerrorname_np(p.err);
    printf(" errno=%d errno_name=%s error=%s\n", p.err, name ? name : "?", p.error.c_str());
    return kExitFailed;
  }
  printf("\n");
  return kExitOk;
}

int Compare(const Args& a) {
  test::TreeCompareOptions options;
  options.content = !a.metadata_only;
  options.xattrs = !a.metadata_only;
  const std::string difference = test::CompareTrees(a.dir, a.dir_b, options);
  if (difference.empty()) {
    printf("identical=yes\n");
    return kExitOk;
  }
  printf("identical=no difference=%s\n", difference.c_str());
  return kExitFailed;
}

}  // namespace
}  // namespace hamirror::bench

int main(int argc, char** argv) {
  hamirror::bench::Args args;
  const std::string why = hamirror::bench::ParseArgs(argc, argv, &args);
  if (!why.empty()) return hamirror::bench::Usage(why.c_str());
  return args.phase == "compare" ? hamirror::bench::Compare(args) : hamirror::bench::RunPhase(args);
}
