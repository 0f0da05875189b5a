// AdoptStore: what an exiting hamirrord (SIGUSR2) leaves for the next one so that it adopts the
// running module instead of starting it again (<statedir>/adopt, docs/operations.md "Restarting
// hamirrord"). Written atomically (WriteFileAtomic) once the event loop has stopped stepping; read and
// removed at once by the next hamirrord (under flock, so that the VIP keeper and the reader never both
// act on one record): a record is used at most once.
//
// Format (text, one fact per line, the last line a checksum of the others):
//   hamirror-adopt-1
//   module <name>            node <name>            boot <boot_id>
//   written <CLOCK_BOOTTIME ms>   daemon_pid <pid>
//   handoff <state> <vip 0|1> <linked 0|1> <forced 0|1> <lease_left_ms>
//   generation <counter> <author|->
//   peer 0 | peer 1 <from> <state> <readiness> <data> <cur> <cur_author> <base> <base_author> <last_role>
//                   <split 0|1> <p_incarnation> <incarnation> <seq> <echo_seq> <echo_inc> <want_serve>
//                   <prefer_second> <handing_over> <swap_request> <split_brain>
//   fs <pid> <start_time> <role> <dir>     (one per replicated directory; pid 0: not running)
//   checksum <fnv-1a 64 of every line above, hex>
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "manager/core/node_machine.h"

namespace hamirror::daemon {

// One hamirror-fs session as the exiting daemon saw it.
struct FsSession {
  std::string dir;
  uint32_t pid = 0;         // 0: not running
  uint64_t start_time = 0;  // /proc/<pid>/stat field 22 (clock ticks since boot): tells a new process
  int role = 0;             // proto::FsRole
  bool operator==(const FsSession&) const = default;
};

struct AdoptionRecord {
  std::string module, node;
  std::string boot_id;
  uint64_t written_ms = 0;  // CLOCK_BOOTTIME
  uint32_t daemon_pid = 0;
  manager::core::Handoff handoff;
  manager::core::Generation generation;  // the persisted current generation at the handoff
  std::vector<FsSession> fs;
};

// /proc/sys/kernel/random/boot_id ("" when unreadable).
std::string BootId();
// CLOCK_BOOTTIME in ms (counts suspend too; comparable between processes of one boot).
uint64_t BoottimeMs();
// /proc/<pid>/stat field 22 (0 when the process does not exist).
uint64_t ProcessStartTime(uint32_t pid);

std::string FormatAdoptionRecord(const AdoptionRecord& r);
Status ParseAdoptionRecord(const std::string& text, AdoptionRecord* out);

class AdoptStore {
 public:
  explicit AdoptStore(std::string path) : path_(std::move(path)) {}
  Status Save(const AdoptionRecord& r) const;
  // Reads the record and removes it (NotFound: none; Corruption: unreadable, removed too).
  Status Consume(AdoptionRecord* out) const;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace hamirror::daemon
