#include "replicator/direct_writer.h"

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/log.h"

namespace hamirror::replicator {

namespace {

constexpr size_t kAlign = 4096;  // enough for any logical block size and memory alignment asked

// Clears O_DIRECT: the rest of the job goes through the page cache.
bool DropDirect(int fd) {
  const int flags = fcntl(fd, F_GETFL);
  return flags >= 0 && fcntl(fd, F_SETFL, flags & ~O_DIRECT) == 0;
}

}  // namespace

DirectWriter::DirectWriter(size_t buffers, size_t buffer_bytes, int threads, DoneFn done)
    : max_buffers_(buffers < 1 ? 1 : buffers),
      buffer_bytes_((buffer_bytes + kAlign - 1) / kAlign * kAlign),
      done_(std::move(done)) {
  for (int i = 0; i < std::max(1, threads); ++i) {
    threads_.emplace_back([this] {
      pthread_setname_np(pthread_self(), "hm-direct");
      Loop();
    });
  }
}

DirectWriter::~DirectWriter() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& t : threads_) t.join();
  for (char* b : all_) std::free(b);
}

char* DirectWriter::Acquire() {
  std::unique_lock<std::mutex> lock(mu_);
  free_cv_.wait(lock, [this] { return !free_.empty() || all_.size() < max_buffers_; });
  if (!free_.empty()) {
    char* b = free_.back();
    free_.pop_back();
    return b;
  }
  char* b = static_cast<char*>(std::aligned_alloc(kAlign, buffer_bytes_));
  if (b != nullptr) all_.push_back(b);
  return b;
}

void DirectWriter::Release(char* buffer) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(buffer);
  }
  free_cv_.notify_all();
}

void DirectWriter::Submit(Job job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(job));
  }
  work_cv_.notify_one();
}

void DirectWriter::WaitIdle() {
  std::unique_lock<std::mutex> lock(mu_);
  free_cv_.wait(lock, [this] { return queue_.empty() && running_.empty(); });
}

bool DirectWriter::idle() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queue_.empty() && running_.empty();
}

bool DirectWriter::OverlapsRunningLocked(const Job& job) const {
  for (const Running& r : running_) {
    if (r.dev == job.dev && r.ino == job.ino && job.offset < r.end && r.offset < job.offset + job.length)
      return true;
  }
  return false;
}

void DirectWriter::Loop() {
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      // The front job only (queue order), once no running job writes where it does.
      work_cv_.wait(lock, [this] {
        return (stopping_ && queue_.empty()) || (!queue_.empty() && !OverlapsRunningLocked(queue_.front()));
      });
      if (queue_.empty()) return;  // stopping, and everything queued is written
      job = std::move(queue_.front());
      queue_.pop_front();
      running_.push_back({job.dev, job.ino, job.offset, job.offset + job.length});
    }
    work_cv_.notify_one();  // the next job may start beside this one
    const int err = Write(job);
    job.fd.Reset();
    done_(job.seq, err);
    {
      std::lock_guard<std::mutex> lock(mu_);
      free_.push_back(job.data);
      for (size_t i = 0; i < running_.size(); ++i) {
        if (running_[i].dev == job.dev && running_[i].ino == job.ino && running_[i].offset == job.offset) {
          running_.erase(running_.begin() + static_cast<long>(i));
          break;
        }
      }
    }
    work_cv_.notify_all();  // a job waiting for this one's range may start
    free_cv_.notify_all();
  }
}

int DirectWriter::Write(Job& job) {
  const int fd = job.fd.get();
  if (refused() && !DropDirect(fd)) return errno;
  bool refused_now = false;
  int err = WriteAligned(fd, job.data, job.length, job.offset, &refused_now);
  if (refused_now && !refused_.exchange(true)) {
    HLOG_INFO("large writes applied through the page cache from now on: direct write failed (%s)",
              strerror(EINVAL));
  }
  if (err == 0 && job.datasync && fdatasync(fd) != 0) err = errno;
  return err;
}

int WriteAligned(int fd, const char* data, size_t length, uint64_t offset, bool* refused, size_t* written) {
  size_t done = 0;
  const int err = [&]() -> int {
    const int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return errno;
    bool direct = (flags & O_DIRECT) != 0;
    while (done < length) {
      const ssize_t n = pwrite(fd, data + done, length - done, static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EINVAL && direct) {
        // This file system wants another alignment, or no direct I/O at all: through the page cache.
        *refused = true;
        direct = false;
        if (!DropDirect(fd)) return errno;
        continue;
      }
      if (n < 0) return errno;  // ENOSPC, EIO, ...: the op's error ack
      if (n == 0) return EIO;
      done += static_cast<size_t>(n);
      // A short direct write leaves an end that may not be aligned any more.
      if (direct && done < length) {
        direct = false;
        if (!DropDirect(fd)) return errno;
      }
    }
    return 0;
  }();
  if (written != nullptr) *written = done;
  return err;
}

}  // namespace hamirror::replicator
