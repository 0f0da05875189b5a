// DirectWriter on a temporary file: queue order for overlapping writes, the page-cache fallback where
// O_DIRECT is refused, errors, and the buffer pool's bound.
#include "replicator/direct_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <future>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "tests/replicator/test_util.h"

using namespace hamirror;
using namespace hamirror::replicator;
using namespace hamirror::replicator::testing;

namespace {

struct Done {
  std::mutex mu;
  std::map<uint64_t, int> errors;  // seq -> errno
  std::map<uint64_t, int> counts;
  void operator()(uint64_t seq, int err) {
    std::lock_guard<std::mutex> lock(mu);
    errors[seq] = err;
    ++counts[seq];
  }
};

DirectWriter::Job MakeJob(DirectWriter& w, const std::string& path, uint64_t seq, uint64_t offset,
                          const std::string& data) {
  DirectWriter::Job job;
  job.seq = seq;
  job.fd.Reset(open(path.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC));
  REQUIRE(job.fd);
  struct stat st;
  REQUIRE(fstat(job.fd.get(), &st) == 0);
  job.dev = st.st_dev;
  job.ino = st.st_ino;
  job.offset = offset;
  job.length = data.size();
  job.data = w.Acquire();
  REQUIRE(job.data != nullptr);
  memcpy(job.data, data.data(), data.size());
  return job;
}

}  // namespace

TEST_CASE("direct writer: a later write of an overlapping range lands last", "[direct_writer]") {
  TempTree tree("direct");
  const std::string path = tree.Path("f");
  // Written and flushed first: overwrites of allocated blocks run concurrently in ext4 (no extension,
  // so no exclusive inode lock that would order them anyway).
  WriteFile(path, std::string(16 << 20, '.'));
  {
    UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    REQUIRE(fsync(fd.get()) == 0);
  }
  Done done;
  std::vector<uint64_t> order;  // seqs in the order they were reported (under done.mu)
  DirectWriter w(4, 8 << 20, 3, [&](uint64_t seq, int err) {
    done(seq, err);
    std::lock_guard<std::mutex> lock(done.mu);
    order.push_back(seq);
  });
  int concurrent = 0;  // rounds where a later, disjoint small write finished before the large one
  for (int round = 0; round < 5; ++round) {
    INFO("round " << round);
    // 8 MiB first, then 4 KiB inside it and 4 KiB elsewhere: on three threads the small ones finish
    // first unless they wait; the one inside must wait for the large one.
    const std::string large(8 << 20, static_cast<char>('a' + round));
    const std::string small(4096, static_cast<char>('A' + round));
    const uint64_t base = 3 * static_cast<uint64_t>(round);
    w.Submit(MakeJob(w, path, base + 1, 0, large));
    w.Submit(MakeJob(w, path, base + 2, 1 << 20, small));
    w.Submit(MakeJob(w, path, base + 3, 12 << 20, small));
    w.WaitIdle();
    std::string expect(16 << 20, '.');
    expect.replace(0, large.size(), large);
    expect.replace(1 << 20, 4096, small);
    expect.replace(12 << 20, 4096, small);
    CHECK((ReadFile(path) == expect));  // parenthesized: no 16 MiB expansion on failure
    std::lock_guard<std::mutex> lock(done.mu);
    auto at = [&](uint64_t seq) { return std::find(order.begin(), order.end(), seq) - order.begin(); };
    CHECK(at(base + 1) < at(base + 2));
    if (at(base + 3) < at(base + 1)) ++concurrent;
  }
  if (concurrent == 0) WARN("no disjoint write overtook a running one: the threads did not overlap here");
  std::lock_guard<std::mutex> lock(done.mu);
  CHECK(done.counts.size() == 15);
  for (auto [seq, n] : done.counts) CHECK(n == 1);
  for (auto [seq, err] : done.errors) CHECK(err == 0);
}

TEST_CASE("direct writer: an unaligned write goes through the page cache, flushed after it",
          "[direct_writer]") {
  TempTree tree("direct");
  const std::string path = tree.Path("f");
  WriteFile(path, std::string(8192, '.'));
  Done done;
  DirectWriter w(2, 1 << 20, 2, [&](uint64_t seq, int err) { done(seq, err); });
  DirectWriter::Job job = MakeJob(w, path, 7, 100, "unaligned");
  job.datasync = true;
  w.Submit(std::move(job));
  w.WaitIdle();
  {
    std::lock_guard<std::mutex> lock(done.mu);
    CHECK(done.errors[7] == 0);
  }
  std::string expect(8192, '.');
  expect.replace(100, 9, "unaligned");
  CHECK(ReadFile(path) == expect);
  if (!w.refused()) WARN("this file system took an unaligned O_DIRECT write: the fallback was not needed");
}

TEST_CASE("direct writer: errors are reported, buffers bound what is queued", "[direct_writer]") {
  TempTree tree("direct");
  const std::string path = tree.Path("f");
  WriteFile(path, "");
  Done done;
  DirectWriter w(1, 1 << 20, 1, [&](uint64_t seq, int err) { done(seq, err); });
  // Past the largest offset the file system allows.
  w.Submit(MakeJob(w, path, 1, uint64_t{1} << 62, std::string(4096, 'x')));
  w.WaitIdle();
  {
    std::lock_guard<std::mutex> lock(done.mu);
    CHECK(done.errors[1] != 0);
  }
  // One buffer: a second Acquire waits until the first comes back.
  char* first = w.Acquire();
  REQUIRE(first != nullptr);
  auto second = std::async(std::launch::async, [&] { return w.Acquire(); });
  CHECK(second.wait_for(std::chrono::milliseconds(100)) == std::future_status::timeout);
  w.Release(first);
  REQUIRE(second.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  char* again = second.get();
  CHECK(again == first);
  w.Release(again);
}
