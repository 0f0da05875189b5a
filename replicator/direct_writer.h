// DirectWriter: a secondary's large aligned writes, written with O_DIRECT on threads of their own in
// the order they were queued, so that the apply thread goes back to receiving the next batch while the
// disk writes this one (a full resync's 1 MiB chunks were received and written in turn on one thread).
//
// Each job owns its data (an aligned buffer of a small pool, which bounds the bytes queued) and an
// O_DIRECT descriptor of its file. The threads write it, flush it when asked (a dsync write) and
// report done(seq, errno). Time fixes are the caller's: jobs of one file may finish in any order, so
// a time set after each would not end at the last one's. Where the file system refuses the direct
// write (EINVAL), that job goes through the page cache instead and refused() turns true: the caller
// stops queueing.
//
// Order: jobs start in the order they were queued, on a few threads (the disk writes several at once
// about as fast as one); a job waits for every running one that writes an overlapping range of the
// same file, so overlapping writes land in queue order. Completions may come out of order. Anything
// else the caller does to a file that has jobs queued (a buffered write, a truncate, a read, a flush)
// must wait for WaitIdle() first.
#pragma once

#include <sys/stat.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "common/unique_fd.h"

namespace hamirror::replicator {

// Writes length bytes of data (aligned for O_DIRECT) at offset through fd, opened with O_DIRECT. Where
// the file system refuses a direct write (EINVAL: *refused set) or one comes back short (its end may
// not be aligned), O_DIRECT is cleared on fd and the rest goes through the page cache. 0 or an errno;
// *written (if given): the bytes written before it stopped.
int WriteAligned(int fd, const char* data, size_t length, uint64_t offset, bool* refused,
                 size_t* written = nullptr);

class DirectWriter {
 public:
  // Runs on the writer thread after each job, once its data (and times, and flush) are done or failed.
  using DoneFn = std::function<void(uint64_t seq, int err)>;

  struct Job {
    uint64_t seq = 0;
    UniqueFd fd;    // the file, opened O_WRONLY | O_DIRECT
    dev_t dev = 0;  // the file's identity, for the overlap check
    ino_t ino = 0;
    uint64_t offset = 0;
    size_t length = 0;     // at most buffer_bytes
    char* data = nullptr;  // from Acquire(); returned to the pool once written
    bool datasync = false;
  };

  // buffers x buffer_bytes (a multiple of the alignment) is the most data queued at once; the buffers
  // are allocated on first use. threads: writes running at once.
  DirectWriter(size_t buffers, size_t buffer_bytes, int threads, DoneFn done);
  ~DirectWriter();  // writes what is queued, then stops
  DirectWriter(const DirectWriter&) = delete;
  DirectWriter& operator=(const DirectWriter&) = delete;

  // A buffer of buffer_bytes aligned for O_DIRECT; waits while every buffer is queued. nullptr: out
  // of memory.
  char* Acquire();
  void Release(char* buffer);  // a buffer acquired and not submitted
  void Submit(Job job);        // job.data from Acquire()
  // Returns once every job submitted before has been written and reported.
  void WaitIdle();
  bool idle() const;
  bool refused() const { return refused_.load(std::memory_order_relaxed); }
  size_t buffer_bytes() const { return buffer_bytes_; }

 private:
  struct Running {
    dev_t dev;
    ino_t ino;
    uint64_t offset, end;
  };
  void Loop();
  int Write(Job& job);
  bool OverlapsRunningLocked(const Job& job) const;

  const size_t max_buffers_;
  const size_t buffer_bytes_;
  const DoneFn done_;
  std::atomic<bool> refused_{false};

  mutable std::mutex mu_;
  std::condition_variable work_cv_;  // a job queued or finished, or stopping
  std::condition_variable free_cv_;  // a buffer returned, or the queue ran empty
  std::deque<Job> queue_;
  std::vector<Running> running_;  // jobs taken off the queue and not yet reported
  bool stopping_ = false;
  std::vector<char*> free_;
  std::vector<char*> all_;  // every buffer allocated, freed by the destructor
  std::vector<std::thread> threads_;
};

}  // namespace hamirror::replicator
