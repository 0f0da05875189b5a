// UringTransport: FUSE requests over io_uring (kernel 6.14+, docs/datapath.md "FUSE over io_uring").
//
// libfuse 3.14 knows only /dev/fuse. With the session's traffic in our own channel (dev_channel.h),
// this transport asks for FUSE_OVER_IO_URING in the INIT reply (init_extension.h) and, once that reply
// went out, registers ring entries for every possible CPU: one io_uring and one thread per queue. Each
// request the kernel puts into an entry is rebuilt into the bytes /dev/fuse would have given
// (uring_request.h) and handed to fuse_session_process_buf. libfuse answers through the channel's
// writev, from any thread: a reply whose unique belongs to an entry is copied into that entry and
// committed by the queue's thread (COMMIT_AND_FETCH, which also waits for the next request); any other
// reply goes to /dev/fuse as before. FORGET and INTERRUPT still come on /dev/fuse, served by the
// ordinary libfuse loop.
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <sys/uio.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"
#include "fuse_fs/uring_request.h"

namespace hamirror::fs {

enum class Transport { kDev, kUring, kAuto };
// "dev", "uring", "auto".
bool ParseTransport(const std::string& name, Transport* out);

// State of the kernel's switch (module parameter fuse.enable_uring).
enum class KernelUring { kOn, kOff, kAbsent };
KernelUring KernelUringSwitch(const std::string& param_path = "/sys/module/fuse/parameters/enable_uring");

// Number of possible CPUs (the kernel makes one ring queue per possible CPU); 0 if unreadable.
unsigned PossibleCpus(const std::string& path = "/sys/devices/system/cpu/possible");

// True on a ring queue's thread while libfuse handles a ring request there: its reply must be written
// through writev (the splice path would bypass the ring).
bool HandlingRingRequest();

// The local flush a handler would otherwise wait for (fsync, full; else fdatasync), handed to the ring
// of the queue whose thread handles the current request: the kernel runs it (io_uring's own workers)
// while the queue thread serves the next requests, and done(arg, errno or 0) runs on the queue thread
// when it completes. One flush per request; fd must stay open until done runs (it does: the request
// is not answered before). False when not handling a ring request (or one already flushes), or when
// the request is alone on its queue (nothing would wait behind the flush, and handing it over costs
// wake-ups): the caller flushes inline. On /dev/fuse a worker blocks in the flush and the others go
// on; a ring queue has one thread, and every request of its CPU would wait behind the flush.
using RingFlushDone = void (*)(void* arg, int err);
bool SubmitRingFlush(int fd, bool full, RingFlushDone done, void* arg);

struct UringQueue;
struct RingEntry;

class UringTransport {
 public:
  // Sets up `queues` rings with `entries` entries each and payload buffers of payload_size bytes (at
  // least the kernel's largest request), and their threads, which wait for OnInitReplied. required: a
  // failure later on (the kernel refused the flag or an entry) ends the session instead of leaving
  // the mount on /dev/fuse.
  static Status Create(fuse_session* se, unsigned queues, unsigned entries, size_t payload_size,
                       bool required, std::unique_ptr<UringTransport>* out);
  ~UringTransport();
  UringTransport(const UringTransport&) = delete;
  UringTransport& operator=(const UringTransport&) = delete;

  // The INIT reply went out (granted: the wanted INIT flags it carries). With the ring flag, every
  // queue registers its entries (asynchronously, on its own thread); without it, the transport stays
  // unused (required: the session is ended).
  void OnInitReplied(uint64_t granted);
  // A reply on its way out (libfuse's writev, any thread). True: it answered a ring request and was
  // handed to that entry's queue; false: it belongs to /dev/fuse.
  bool TryReply(const struct iovec* iov, int count);
  // A reply libfuse spliced from a pipe on a queue thread (not expected: Read avoids splice there):
  // read back from the pipe and sent as a ring reply (not a ring request's after all: written to
  // dev_fd). Returns like splice(2).
  ssize_t SpliceReplyFromPipe(int pipe_fd, size_t len, int dev_fd);
  // The loop ended: requests arriving from now on are answered ENOTCONN; in-flight ones keep their
  // replies until Stop.
  void StopAccepting() { accepting_.store(false, std::memory_order_release); }
  // Ends the queue threads (after their pending commits) and tears the rings down.
  void Stop();

  bool active() const { return active_.load(std::memory_order_acquire); }
  // The kernel refused the ring (flag not granted, an entry refused): requests stay on /dev/fuse.
  bool failed() const { return failed_.load(std::memory_order_acquire); }
  uint64_t requests_served() const { return served_.load(std::memory_order_relaxed); }
  uint64_t flushes_on_ring() const { return flushes_.load(std::memory_order_relaxed); }

 private:
  friend struct UringQueue;
  UringTransport(fuse_session* se, bool required);
  void RunQueue(UringQueue& q);
  void HandleCompletion(UringQueue& q, uint64_t user_data, int res);
  void FlushCompleted(UringQueue& q, RingEntry& e, int res);
  friend bool SubmitRingFlush(int fd, bool full, RingFlushDone done, void* arg);
  void Fail(const std::string& why);

  fuse_session* const se_;
  const bool required_;
  std::vector<std::unique_ptr<UringQueue>> queues_;
  std::atomic<bool> active_{false};
  std::atomic<bool> accepting_{true};
  std::atomic<bool> failed_{false};
  std::atomic<uint64_t> served_{0};
  std::atomic<uint64_t> flushes_{0};
  std::mutex start_mu_;
  std::condition_variable start_cv_;
  bool started_ = false;  // guarded by start_mu_: the ring was granted, or Stop happened
  bool stopping_ = false;

  RingInFlight<RingEntry> inflight_;
};

}  // namespace hamirror::fs
