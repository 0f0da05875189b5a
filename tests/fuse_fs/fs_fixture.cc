#include "tests/fuse_fs/fs_fixture.h"

#include <dirent.h>
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <random>
#include <sstream>

#include "proto/fs_control.grpc.pb.h"

namespace hamirror::test {

std::string FsBinary() {
  const char* env = getenv("HAMIRROR_FS_BIN");
  if (env && *env) return env;
  return HAMIRROR_FS_BIN;
}

uint64_t TestSeed(const char* what) {
  const char* env = getenv("HAMIRROR_SEED");
  uint64_t seed = env && *env ? strtoull(env, nullptr, 0) : std::random_device{}();
  printf("hamirror-fs %s seed: %llu (set HAMIRROR_SEED to replay)\n", what,
         static_cast<unsigned long long>(seed));
  fflush(stdout);
  return seed;
}

Status FsProcess::Start(const std::string& dir, const std::string& control,
                        std::vector<std::string> role_args, const std::string& log_path,
                        std::chrono::milliseconds timeout) {
  dir_ = dir;
  control_ = control;
  std::vector<std::string> argv;
  if (open_file_limit_ > 0) {
    const std::string n = std::to_string(open_file_limit_);
    argv = {"prlimit", "--nofile=" + n + ":" + n, "--"};  // exec's the daemon: same PID
  }
  argv.push_back(FsBinary());
  argv.insert(argv.end(), role_args.begin(), role_args.end());
  argv.insert(argv.end(), {"--dir", dir, "--control", control});
  Status s = daemon_.Start(argv, log_path);
  if (!s.ok()) return s;
  s = WaitForMount(dir, daemon_.pid(), timeout);
  if (!s.ok()) return Status::Unavailable(s.ToString() + "\n" + daemon_.LogTail());
  // The control socket is up before the mount.
  return Status::Ok();
}

Status FsProcess::Stop(std::chrono::milliseconds timeout) {
  if (!daemon_.running()) return Status::Ok();
  Status s = daemon_.Stop(timeout);
  if (!s.ok()) {
    (void)Unmount(dir_);  // best effort: the stop failed already
    return Status::Internal(s.ToString() + "\n" + daemon_.LogTail());
  }
  if (IsMountedAs(dir_)) {
    (void)Unmount(dir_);  // best effort: reported below
    return Status::Internal(dir_ + " still mounted after a clean stop");
  }
  return Status::Ok();
}

void FsProcess::Kill() {
  daemon_.Kill();
  if (!dir_.empty()) (void)Unmount(dir_);  // best effort: a dead mount, lazily
}

FsProcess::~FsProcess() {
  if (daemon_.running()) Kill();
}

namespace {
std::unique_ptr<proto::FsControl::Stub> Stub(const std::string& control) {
  return proto::FsControl::NewStub(
      grpc::CreateChannel("unix:" + control, grpc::InsecureChannelCredentials()));
}
}  // namespace

Status FsProcess::GetStatus(proto::FsStatus* out, bool keepalive) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  proto::FsStatusRequest req;
  req.set_keepalive(keepalive);
  grpc::Status s = Stub(control_)->Status(&ctx, req, out);
  if (!s.ok()) return Status::Unavailable("Status: " + s.error_message());
  return Status::Ok();
}

Status FsProcess::SetRole(proto::FsRole role, const std::string& peer, proto::FsStatus* out) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  proto::SetRoleRequest req;
  req.set_role(role);
  req.set_peer(peer);
  proto::FsStatus tmp;
  grpc::Status s = Stub(control_)->SetRole(&ctx, req, out ? out : &tmp);
  if (!s.ok()) return Status::Unavailable("SetRole: " + s.error_message());
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------------

namespace {

class Workload {
 public:
  Workload(std::string root, uint64_t seed) : root_(std::move(root)), rng_(seed) { dirs_.push_back(""); }
  ~Workload() {
    for (auto& [fd, name] : open_) close(fd);
  }

  void Step() {
    switch (Pick(22)) {
      case 0:
      case 1:
      case 2: Count("write", WriteRandom()); break;
      case 3: Count("create", CreateFile()); break;
      case 4: Count("mkdir", MakeDir()); break;
      case 5: Count("symlink", MakeSymlink()); break;
      case 6: Count("link", MakeLink()); break;
      case 7: Count("unlink", Unlink()); break;
      case 8: Count("rmdir", Rmdir()); break;
      case 9: Count("rename", Rename(0)); break;
      case 10: Count("rename_noreplace", Rename(RENAME_NOREPLACE)); break;
      case 11: Count("rename_exchange", Rename(RENAME_EXCHANGE)); break;
      case 12: Count("truncate", Truncate()); break;
      case 13: Count("fallocate", Fallocate()); break;
      case 14: Count("chmod_chown", ChmodChown()); break;
      case 15: Count("utimens", Utimens()); break;
      case 16: Count("xattr", Xattr()); break;
      case 17: Count("copy_file_range", CopyRange()); break;
      case 18: Count("open_keep", OpenKeep()); break;
      case 19: Count("write_open", WriteOpen()); break;
      case 20: Count("fsync", Fsync()); break;
      case 21: Count("mknod", Mknod()); break;
    }
  }

  std::string Summary() const {
    std::ostringstream os;
    for (const auto& [k, v] : counts_) os << k << "=" << v.first << "/" << v.first + v.second << " ";
    return os.str();
  }

 private:
  uint64_t Pick(uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng_); }
  std::string P(const std::string& rel) const { return root_ + "/" + rel; }
  std::string NewName() {
    std::string s("n");  // (not "n" + to_string: GCC 12 warns falsely, -Wrestrict)
    s += std::to_string(next_++);
    return s;
  }
  std::string AnyDir() { return dirs_[Pick(dirs_.size())]; }
  std::string Join(const std::string& dir, const std::string& name) {
    return dir.empty() ? name : dir + "/" + name;
  }
  std::string AnyFile() { return files_.empty() ? "" : files_[Pick(files_.size())]; }
  std::string AnyEntry() {
    size_t n = files_.size() + dirs_.size() - 1;
    if (n == 0) return "";
    size_t i = Pick(n);
    return i < files_.size() ? files_[i] : dirs_[i - files_.size() + 1];
  }
  void Count(const char* what, bool ok) {
    auto& c = counts_[what];
    (ok ? c.first : c.second)++;
  }
  std::string Data(size_t n) {
    std::string s(n, '\0');
    char c = static_cast<char>('a' + Pick(26));
    for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(c + (i % 7));
    return s;
  }
  off_t Offset() {
    switch (Pick(4)) {
      case 0: return 0;
      case 1: return static_cast<off_t>(Pick(8192));
      case 2: return static_cast<off_t>(Pick(4) * 1048576 + Pick(4096));  // sparse
      default: return static_cast<off_t>(Pick(300000));
    }
  }

  bool WriteRandom() {
    std::string f = AnyFile();
    if (f.empty()) return CreateFile();
    int flags = O_WRONLY | (Pick(5) == 0 ? O_DSYNC : 0) | (Pick(6) == 0 ? O_APPEND : 0);
    int fd = open(P(f).c_str(), flags);
    if (fd < 0) return false;
    std::string d = Data(Pick(4) == 0 ? 1 + Pick(1 << 20) : 1 + Pick(20000));
    bool ok = pwrite(fd, d.data(), d.size(), Offset()) == static_cast<ssize_t>(d.size());
    close(fd);
    return ok;
  }
  bool CreateFile() {
    std::string f = Join(AnyDir(), NewName());
    int fd = open(P(f).c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600 + Pick(0200));
    if (fd < 0) return false;
    std::string d = Data(Pick(3000));
    bool ok = write(fd, d.data(), d.size()) == static_cast<ssize_t>(d.size());
    close(fd);
    files_.push_back(f);
    return ok;
  }
  bool Mknod() {
    std::string f = Join(AnyDir(), NewName());
    if (mknod(P(f).c_str(), S_IFIFO | 0640, 0) < 0) return false;
    others_.push_back(f);
    return true;
  }
  bool MakeDir() {
    std::string d = Join(AnyDir(), NewName());
    if (mkdir(P(d).c_str(), 0700 + Pick(077)) < 0) return false;
    dirs_.push_back(d);
    return true;
  }
  bool MakeSymlink() {
    std::string s = Join(AnyDir(), NewName());
    std::string target = Pick(2) ? AnyFile() : "../dangling/" + NewName();
    if (symlink(target.c_str(), P(s).c_str()) < 0) return false;
    others_.push_back(s);
    return true;
  }
  bool MakeLink() {
    std::string f = AnyFile();
    if (f.empty()) return false;
    std::string l = Join(AnyDir(), NewName());
    if (link(P(f).c_str(), P(l).c_str()) < 0) return false;
    files_.push_back(l);
    return true;
  }
  bool Unlink() {
    if (files_.empty()) return false;
    size_t i = Pick(files_.size());
    bool ok = unlink(P(files_[i]).c_str()) == 0;
    files_.erase(files_.begin() + static_cast<long>(i));
    return ok;
  }
  bool Rmdir() {
    if (dirs_.size() < 2) return false;
    size_t i = 1 + Pick(dirs_.size() - 1);
    if (rmdir(P(dirs_[i]).c_str()) < 0) return false;
    dirs_.erase(dirs_.begin() + static_cast<long>(i));
    return true;
  }
  bool Rename(unsigned flags) {
    std::string from = Pick(4) == 0 && dirs_.size() > 1 ? dirs_[1 + Pick(dirs_.size() - 1)] : AnyFile();
    if (from.empty()) return false;
    std::string to =
        (flags & RENAME_EXCHANGE) ? AnyEntry() : (Pick(3) == 0 ? AnyFile() : Join(AnyDir(), NewName()));
    if (to.empty() || to == from) return false;
    if (renameat2(AT_FDCWD, P(from).c_str(), AT_FDCWD, P(to).c_str(), flags) < 0) return false;
    // Paths below a moved directory change: rebuild the lists from the tree (cheap, small trees).
    Rescan();
    return true;
  }
  bool Truncate() {
    std::string f = AnyFile();
    return !f.empty() && truncate(P(f).c_str(), static_cast<off_t>(Pick(3) == 0 ? 0 : Pick(2000000))) == 0;
  }
  bool Fallocate() {
    std::string f = AnyFile();
    if (f.empty()) return false;
    int fd = open(P(f).c_str(), O_RDWR);
    if (fd < 0) return false;
    static const int modes[] = {0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                FALLOC_FL_ZERO_RANGE};
    int mode = modes[Pick(4)];
    bool ok = fallocate(fd, mode, static_cast<off_t>(Pick(64) * 4096),
                        static_cast<off_t>((1 + Pick(64)) * 4096)) == 0;
    close(fd);
    return ok;
  }
  bool ChmodChown() {
    std::string e = AnyEntry();
    if (e.empty()) return false;
    if (Pick(2)) return chmod(P(e).c_str(), 0700 + Pick(077)) == 0;
    return lchown(P(e).c_str(), static_cast<uid_t>(Pick(3) * 1000), static_cast<gid_t>(Pick(3) * 1000)) == 0;
  }
  bool Utimens() {
    bool nofollow = !others_.empty() && Pick(4) == 0;  // symlinks' and fifos' own times
    std::string e = nofollow ? others_[Pick(others_.size())] : AnyEntry();
    if (e.empty()) return false;
    struct timespec ts[2] = {
        {static_cast<time_t>(1600000000 + Pick(100000)), static_cast<long>(Pick(1000000000))},
        {static_cast<time_t>(1600000000 + Pick(100000)), static_cast<long>(Pick(1000000000))}};
    if (Pick(4) == 0) ts[1].tv_nsec = UTIME_NOW;
    return utimensat(AT_FDCWD, P(e).c_str(), ts, nofollow ? AT_SYMLINK_NOFOLLOW : 0) == 0;
  }
  bool Xattr() {
    std::string e = AnyEntry();
    if (e.empty()) return false;
    std::string name = "user.k" + std::to_string(Pick(3));
    if (Pick(3) == 0) return removexattr(P(e).c_str(), name.c_str()) == 0;
    std::string v = Data(Pick(200));
    return setxattr(P(e).c_str(), name.c_str(), v.data(), v.size(), 0) == 0;
  }
  bool CopyRange() {
    std::string a = AnyFile(), b = AnyFile();
    if (a.empty() || b.empty()) return false;
    int in = open(P(a).c_str(), O_RDONLY);
    int out = open(P(b).c_str(), O_WRONLY);
    bool ok = false;
    if (in >= 0 && out >= 0) {
      loff_t oi = static_cast<loff_t>(Pick(4096)), oo = static_cast<loff_t>(Pick(100000));
      ok = copy_file_range(in, &oi, out, &oo, 1 + Pick(70000), 0) >= 0;
    }
    if (in >= 0) close(in);
    if (out >= 0) close(out);
    return ok;
  }
  // Keeps a file open; later steps rename/unlink it and write through the descriptor.
  bool OpenKeep() {
    std::string f = AnyFile();
    if (f.empty() || open_.size() >= 8) return false;
    int fd = open(P(f).c_str(), O_RDWR);
    if (fd < 0) return false;
    open_.emplace_back(fd, f);
    return true;
  }
  bool WriteOpen() {
    if (open_.empty()) return false;
    size_t i = Pick(open_.size());
    std::string d = Data(1 + Pick(10000));
    bool ok = pwrite(open_[i].first, d.data(), d.size(), Offset()) == static_cast<ssize_t>(d.size());
    if (Pick(3) == 0) {
      close(open_[i].first);
      open_.erase(open_.begin() + static_cast<long>(i));
    }
    return ok;
  }
  bool Fsync() {
    if (!open_.empty() && Pick(2)) return fsync(open_[Pick(open_.size())].first) == 0;
    std::string d = AnyDir();
    int fd = open(P(d).c_str(), O_RDONLY | O_DIRECTORY);
    if (fd < 0) return false;
    bool ok = fsync(fd) == 0;
    close(fd);
    return ok;
  }

  void Rescan() {
    files_.clear();
    dirs_.assign(1, "");
    others_.clear();
    ScanDir("");
  }
  void ScanDir(const std::string& rel) {
    std::vector<std::string> names;
    if (DIR* d = opendir(P(rel).c_str())) {
      while (dirent* e = readdir(d)) {
        std::string n = e->d_name;
        if (n != "." && n != "..") names.push_back(n);
      }
      closedir(d);
    }
    std::sort(names.begin(), names.end());  // deterministic for a seed
    for (const auto& n : names) {
      std::string c = Join(rel, n);
      struct stat st;
      if (lstat(P(c).c_str(), &st) < 0) continue;
      if (S_ISDIR(st.st_mode)) {
        dirs_.push_back(c);
        ScanDir(c);
      } else if (S_ISREG(st.st_mode)) {
        files_.push_back(c);
      } else {
        others_.push_back(c);
      }
    }
  }

  std::string root_;
  std::mt19937_64 rng_;
  uint64_t next_ = 0;
  std::vector<std::string> files_, dirs_, others_;
  std::vector<std::pair<int, std::string>> open_;
  std::map<std::string, std::pair<int, int>> counts_;
};

}  // namespace

std::string RunRandomWorkload(const std::string& root, uint64_t seed, int steps) {
  Workload w(root, seed);
  for (int i = 0; i < steps; ++i) w.Step();
  return w.Summary();
}

}  // namespace hamirror::test
