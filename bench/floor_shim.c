// LD_PRELOAD shim for bench/sysbench-compare.sh's targets "floor" and "floor_writes": MariaDB on a plain
// local directory, with mariadbd's writes and flushes costing what a perfect synchronous mirror on this
// machine would add to them at least. The "peer" is a thread at the other end of a loopback TCP
// connection (one per mariadbd thread); it writes into a file of the same disk (FLOOR_MIRROR), flushes
// when told to and answers 16 bytes. Round trips overlap the local work, and the two flushes meet on the
// one disk, as a pair sharing this VM's disk would have them.
//
// Flushes only (FLOOR_WRITES unset): every fsync/fdatasync sends 4 KiB (the data) before the real flush;
// the peer writes and flushes them; the flush returns once both are done. Nothing else is charged: no
// FUSE hop, no copies, no round trip for writes that are not flushed. An upper bound of what any
// synchronous replication of this workload can reach here, whatever its design.
//
// FLOOR_WRITES=1: the same for a mirror that keeps hamirror's promise 1 (a mutating request returns
// only once the peer has applied it): every write/pwrite64 to a regular file also sends its bytes and
// waits for the peer's pwrite. Like hamirror, a file written once and then flushed, again and again (a
// log), has its next write flushed on the peer in the same round trip, and the flush that follows pays
// no second one. Still a floor for hamirror: no FUSE hop, no copies into messages, no request
// framing; mariadbd's asynchronous page writes (io_uring) are not charged, nor the flush of a file
// that this process did not write through write/pwrite64 since its last flush (InnoDB's data files:
// the shim cannot see their io_uring writes; hamirror replicates those flushes).
//
// Without FLOOR_MIRROR in the environment the shim does nothing. At exit it writes the number of
// mirrored requests (if any) to FLOOR_MIRROR.count, so the benchmark can check that it was active.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <stdint.h>
#include <unistd.h>

enum { kFlushData = 4096, kAnswer = 16, kMaxFds = 65536 };
enum { kFlagFlush = 1 };

// One request: this header, then len bytes, which the peer writes; flushed when flags has kFlagFlush.
struct request {
  uint32_t len;
  uint32_t flags;
};

static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static ssize_t (*real_write)(int, const void*, size_t);
static ssize_t (*real_pwrite64)(int, const void*, size_t, off_t);
static int charge_writes;
// Per descriptor (FLOOR_WRITES): writes since its last flush, and whether it follows the log pattern
// (one write, then a flush) so that its next write is flushed on the peer at once.
static atomic_uint writes_since_flush[kMaxFds];
static atomic_uchar log_pattern[kMaxFds];
static int mirror_fd = -1;
static struct sockaddr_in peer_addr;
static atomic_ulong mirrored;
static __thread int conn = -1;

static int read_full(int fd, char* buf, size_t len) {
  size_t got = 0;
  while (got < len) {
    ssize_t n = read(fd, buf + got, len - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    got += (size_t)n;
  }
  return 0;
}

static void set_nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// The peer: one thread per connection (one connection per mirroring thread of mariadbd).
static void* peer(void* arg) {
  int fd = (int)(long)arg;
  size_t cap = 1 << 20;
  char* buf = malloc(cap);
  struct request req;
  while (buf != NULL && read_full(fd, (char*)&req, sizeof req) == 0) {
    if (req.len > cap) {
      free(buf);
      cap = req.len;
      if ((buf = malloc(cap)) == NULL) break;
    }
    if (read_full(fd, buf, req.len) != 0) break;
    if (req.len > 0 && pwrite(mirror_fd, buf, req.len, 0) != (ssize_t)req.len) break;
    if ((req.flags & kFlagFlush) && real_fdatasync(mirror_fd) != 0) break;
    if (real_write(fd, buf, kAnswer) != kAnswer) break;
  }
  free(buf);
  close(fd);
  return NULL;
}

static void* acceptor(void* arg) {
  int listener = (int)(long)arg;
  for (;;) {
    int c = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0) continue;
    set_nodelay(c);
    pthread_t t;
    if (pthread_create(&t, NULL, peer, (void*)(long)c) != 0) {
      close(c);
      continue;
    }
    pthread_detach(t);
  }
  return NULL;
}

// A process that mirrored nothing (a wrapper that execs or forks mariadbd, and outlives it) writes
// nothing: it must not overwrite mariadbd's count.
static void report(void) {
  if (atomic_load(&mirrored) == 0) return;
  const char* path = getenv("FLOOR_MIRROR");
  char name[4096];
  snprintf(name, sizeof name, "%s.count", path);
  FILE* f = fopen(name, "w");
  if (f == NULL) return;
  fprintf(f, "%lu\n", (unsigned long)atomic_load(&mirrored));
  fclose(f);
}

__attribute__((constructor)) static void init(void) {
  real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
  real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
  real_write = (ssize_t(*)(int, const void*, size_t))dlsym(RTLD_NEXT, "write");
  real_pwrite64 = (ssize_t(*)(int, const void*, size_t, off_t))dlsym(RTLD_NEXT, "pwrite64");
  const char* path = getenv("FLOOR_MIRROR");
  if (path == NULL) return;
  const char* writes = getenv("FLOOR_WRITES");
  charge_writes = writes != NULL && strcmp(writes, "1") == 0;
  mirror_fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  memset(&peer_addr, 0, sizeof peer_addr);
  peer_addr.sin_family = AF_INET;
  peer_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof peer_addr;
  pthread_t t;
  // The peer's threads block every signal (they inherit this mask): mariadbd waits for SIGTERM in a
  // thread of its own with sigwait, and a thread of ours with it unblocked would take it instead.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  if (mirror_fd < 0 || listener < 0 || bind(listener, (struct sockaddr*)&peer_addr, sizeof peer_addr) != 0 ||
      listen(listener, 64) != 0 || getsockname(listener, (struct sockaddr*)&peer_addr, &len) != 0 ||
      pthread_create(&t, NULL, acceptor, (void*)(long)listener) != 0) {
    fprintf(stderr, "floor_shim: cannot set up the mirror (%s): mariadbd would run unmirrored\n", strerror(errno));
    abort();
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_detach(t);
  atexit(report);
}

static void send_request(uint32_t flags, const void* data, uint32_t len) {
  if (conn < 0) {
    conn = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (conn < 0 || connect(conn, (struct sockaddr*)&peer_addr, sizeof peer_addr) != 0) abort();
    set_nodelay(conn);
  }
  struct request req = {len, flags};
  struct iovec iov[2] = {{&req, sizeof req}, {(void*)data, len}};
  size_t want = sizeof req + len;
  ssize_t n = writev(conn, iov, 2);
  if (n != (ssize_t)want) abort();  // loopback, blocking socket: a short write means a broken peer
}

static void await_answer(void) {
  char answer[kAnswer];
  if (read_full(conn, answer, kAnswer) != 0) abort();
  atomic_fetch_add(&mirrored, 1);
}

// One mirrored flush: send, flush here, wait for the peer's answer. Returns the local flush's result.
// FLOOR_WRITES: a log's flush after its one write was done on the peer with that write: local only.
static int mirrored_flush(int fd, int (*flush)(int)) {
  if (mirror_fd < 0) return flush(fd);
  if (!charge_writes) {
    static __thread char data[kFlushData];
    send_request(kFlagFlush, data, sizeof data);
  } else if (fd >= 0 && fd < kMaxFds) {
    unsigned writes = atomic_exchange(&writes_since_flush[fd], 0);
    int was_log = atomic_exchange(&log_pattern[fd], writes == 1);
    if (writes == 0) return flush(fd);  // nothing of ours to make durable
    if (was_log && writes == 1) return flush(fd);
    send_request(kFlagFlush, NULL, 0);
  } else {
    send_request(kFlagFlush, NULL, 0);
  }
  int rc = flush(fd);
  int err = errno;
  await_answer();
  errno = err;
  return rc;
}

int fsync(int fd) { return mirrored_flush(fd, real_fsync); }
int fdatasync(int fd) { return mirrored_flush(fd, real_fdatasync); }

static int is_regular(int fd) {
  struct stat st;
  return fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

// FLOOR_WRITES: a write to a regular file returns once it is done here and the peer has it.
// offset < 0: write(2) at the file position, else pwrite64(2) at offset.
static ssize_t mirrored_write(int fd, const void* data, size_t len, off_t offset) {
  if (real_write == NULL) real_write = (ssize_t(*)(int, const void*, size_t))dlsym(RTLD_NEXT, "write");
  if (real_pwrite64 == NULL) real_pwrite64 = (ssize_t(*)(int, const void*, size_t, off_t))dlsym(RTLD_NEXT, "pwrite64");
  int charged = charge_writes && mirror_fd >= 0 && len > 0 && len <= UINT32_MAX && is_regular(fd);
  if (charged) {
    int flush_on_peer = fd < kMaxFds && atomic_load(&log_pattern[fd]);
    send_request(flush_on_peer ? kFlagFlush : 0, data, (uint32_t)len);
  }
  ssize_t n = offset < 0 ? real_write(fd, data, len) : real_pwrite64(fd, data, len, offset);
  if (!charged) return n;
  int err = errno;
  await_answer();
  if (fd < kMaxFds) atomic_fetch_add(&writes_since_flush[fd], 1);
  errno = err;
  return n;
}

ssize_t write(int fd, const void* data, size_t len) { return mirrored_write(fd, data, len, -1); }

ssize_t pwrite64(int fd, const void* data, size_t len, off_t offset) {
  if (offset < 0) {
    errno = EINVAL;
    return -1;
  }
  return mirrored_write(fd, data, len, offset);
}
