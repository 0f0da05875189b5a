// LD_PRELOAD shim for bench/sysbench-compare.sh's target "floor": MariaDB on a plain local directory,
// with every fsync/fdatasync of mariadbd costing what a perfect synchronous mirror on this machine would
// add to it at least. The flush sends 4 KiB over loopback TCP to an echo thread (the "peer") before
// the real flush; the peer writes them into a file of the same disk (FLOOR_MIRROR), fdatasyncs it and
// answers 16 bytes; the flush returns once both its own flush and the answer are done. So the round
// trip overlaps the local flush, and the two flushes meet on the one disk, as a pair sharing this VM's
// disk would have them.
// Nothing else is charged: no FUSE hop, no copies, no round trip for writes that are not flushed (a
// hamirror primary pays one for each). An upper bound of what any synchronous replication of this
// workload can reach here, not a model of hamirror.
// Without FLOOR_MIRROR in the environment the shim does nothing. At exit it writes the number of
// mirrored flushes to FLOOR_MIRROR.count, so the benchmark can check that it was active.
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
#include <unistd.h>

enum { kRequest = 4096, kAnswer = 16 };

static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
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

// The peer: one thread per connection (one connection per flushing thread of mariadbd).
static void* peer(void* arg) {
  int fd = (int)(long)arg;
  char buf[kRequest];
  while (read_full(fd, buf, sizeof buf) == 0) {
    if (pwrite(mirror_fd, buf, sizeof buf, 0) != (ssize_t)sizeof buf || real_fdatasync(mirror_fd) != 0) break;
    if (write(fd, buf, kAnswer) != kAnswer) break;
  }
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

static void report(void) {
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
  const char* path = getenv("FLOOR_MIRROR");
  if (path == NULL) return;
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

// One mirrored flush: send, flush here, wait for the peer's answer. Returns the local flush's result.
static int mirrored_flush(int fd, int (*flush)(int)) {
  if (mirror_fd < 0) return flush(fd);
  if (conn < 0) {
    conn = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (conn < 0 || connect(conn, (struct sockaddr*)&peer_addr, sizeof peer_addr) != 0) abort();
    set_nodelay(conn);
  }
  static __thread char buf[kRequest];
  if (write(conn, buf, sizeof buf) != (ssize_t)sizeof buf) abort();
  int rc = flush(fd);
  int err = errno;
  if (read_full(conn, buf, kAnswer) != 0) abort();
  atomic_fetch_add(&mirrored, 1);
  errno = err;
  return rc;
}

int fsync(int fd) { return mirrored_flush(fd, real_fsync); }
int fdatasync(int fd) { return mirrored_flush(fd, real_fdatasync); }
