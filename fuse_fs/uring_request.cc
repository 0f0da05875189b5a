#include "fuse_fs/uring_request.h"

#include <errno.h>
#include <linux/fuse.h>

#include <cstring>

namespace hamirror::fs {
namespace {

struct ArgSize {
  uint8_t min;
  uint8_t max;
};

// The argument struct of each opcode the kernel routes to a ring (FORGET, BATCH_FORGET, INTERRUPT and
// INIT never are). 0: the opcode has none; its names and data are all payload.
constexpr ArgSize ArgSizeOf(uint32_t opcode) {
  switch (opcode) {
    case FUSE_LOOKUP:
    case FUSE_READLINK:
    case FUSE_SYMLINK:
    case FUSE_UNLINK:
    case FUSE_RMDIR:
    case FUSE_STATFS:
    case FUSE_REMOVEXATTR:
    case FUSE_DESTROY: return {0, 0};
    case FUSE_GETATTR: return {sizeof(fuse_getattr_in), sizeof(fuse_getattr_in)};
    case FUSE_SETATTR: return {sizeof(fuse_setattr_in), sizeof(fuse_setattr_in)};
    case FUSE_MKNOD: return {FUSE_COMPAT_MKNOD_IN_SIZE, sizeof(fuse_mknod_in)};
    case FUSE_MKDIR: return {sizeof(fuse_mkdir_in), sizeof(fuse_mkdir_in)};
    case FUSE_RENAME: return {sizeof(fuse_rename_in), sizeof(fuse_rename_in)};
    case FUSE_RENAME2: return {sizeof(fuse_rename2_in), sizeof(fuse_rename2_in)};
    case FUSE_LINK: return {sizeof(fuse_link_in), sizeof(fuse_link_in)};
    case FUSE_OPEN:
    case FUSE_OPENDIR: return {sizeof(fuse_open_in), sizeof(fuse_open_in)};
    case FUSE_READ:
    case FUSE_READDIR:
    case FUSE_READDIRPLUS: return {24, sizeof(fuse_read_in)};
    case FUSE_WRITE: return {FUSE_COMPAT_WRITE_IN_SIZE, sizeof(fuse_write_in)};
    case FUSE_RELEASE:
    case FUSE_RELEASEDIR: return {sizeof(fuse_release_in), sizeof(fuse_release_in)};
    case FUSE_FSYNC:
    case FUSE_FSYNCDIR: return {sizeof(fuse_fsync_in), sizeof(fuse_fsync_in)};
    case FUSE_SETXATTR: return {FUSE_COMPAT_SETXATTR_IN_SIZE, sizeof(fuse_setxattr_in)};
    case FUSE_GETXATTR:
    case FUSE_LISTXATTR: return {sizeof(fuse_getxattr_in), sizeof(fuse_getxattr_in)};
    case FUSE_FLUSH: return {sizeof(fuse_flush_in), sizeof(fuse_flush_in)};
    case FUSE_GETLK:
    case FUSE_SETLK:
    case FUSE_SETLKW: return {sizeof(fuse_lk_in), sizeof(fuse_lk_in)};
    case FUSE_ACCESS: return {sizeof(fuse_access_in), sizeof(fuse_access_in)};
    case FUSE_CREATE:
    case FUSE_TMPFILE: return {sizeof(fuse_create_in), sizeof(fuse_create_in)};
    case FUSE_BMAP: return {sizeof(fuse_bmap_in), sizeof(fuse_bmap_in)};
    case FUSE_IOCTL: return {sizeof(fuse_ioctl_in), sizeof(fuse_ioctl_in)};
    case FUSE_POLL: return {sizeof(fuse_poll_in), sizeof(fuse_poll_in)};
    case FUSE_FALLOCATE: return {sizeof(fuse_fallocate_in), sizeof(fuse_fallocate_in)};
    case FUSE_LSEEK: return {sizeof(fuse_lseek_in), sizeof(fuse_lseek_in)};
    case FUSE_COPY_FILE_RANGE: return {sizeof(fuse_copy_file_range_in), sizeof(fuse_copy_file_range_in)};
    case FUSE_SYNCFS: return {sizeof(fuse_syncfs_in), sizeof(fuse_syncfs_in)};
    default: return {0xff, 0};  // unknown: min > max
  }
}

static_assert(sizeof(fuse_in_header) == 40 && sizeof(fuse_out_header) == 16);
static_assert(sizeof(fuse_in_header) + uring_abi::kOpAreaSize <= kRingHeadroom);

}  // namespace

bool RingOpArgSize(uint32_t opcode, size_t* min_size, size_t* max_size) {
  const ArgSize a = ArgSizeOf(opcode);
  if (a.min > a.max) return false;
  *min_size = a.min;
  *max_size = a.max;
  return true;
}

int RebuildRingRequest(const uring_abi::ReqHeader& hdr, char* payload, size_t payload_capacity,
                       RingRequest* out) {
  fuse_in_header in;
  memcpy(&in, hdr.in_out, sizeof(in));
  const uring_abi::EntInOut& ent = hdr.ent_in_out;
  *out = RingRequest{};
  out->unique = in.unique;
  out->opcode = in.opcode;
  if (in.unique == 0 || in.unique != ent.commit_id) return EPROTO;
  size_t min_arg = 0, max_arg = 0;
  if (!RingOpArgSize(in.opcode, &min_arg, &max_arg)) return ENOSYS;
  const size_t payload_sz = ent.payload_sz;
  if (payload_sz > payload_capacity || in.len < sizeof(in) + payload_sz) return EPROTO;
  // The kernel's in.len counts the header, the argument struct and the payload: what is left for the
  // argument struct must be a size this opcode's struct can have.
  const size_t arg_sz = in.len - sizeof(in) - payload_sz;
  if (arg_sz < min_arg || arg_sz > max_arg || arg_sz > uring_abi::kOpAreaSize) return EPROTO;
  char* start = payload - sizeof(in) - arg_sz;
  memcpy(start, &in, sizeof(in));
  memcpy(start + sizeof(in), hdr.op_in, arg_sz);
  out->data = start;
  out->size = in.len;
  return 0;
}

uint64_t ReplyUnique(const struct iovec* iov, int count) {
  if (count < 1 || iov[0].iov_len < sizeof(fuse_out_header)) return 0;
  fuse_out_header out;
  memcpy(&out, iov[0].iov_base, sizeof(out));
  return out.unique;
}

int WriteRingReply(const struct iovec* iov, int count, uring_abi::ReqHeader* hdr, char* payload,
                   size_t payload_capacity) {
  if (count < 1 || iov[0].iov_len < sizeof(fuse_out_header)) return EPROTO;
  size_t total = iov[0].iov_len - sizeof(fuse_out_header);
  for (int i = 1; i < count; ++i) {
    if (iov[i].iov_len > payload_capacity) return EMSGSIZE;
    total += iov[i].iov_len;
  }
  if (total > payload_capacity) return EMSGSIZE;
  fuse_out_header out;
  memcpy(&out, iov[0].iov_base, sizeof(out));
  out.len = static_cast<uint32_t>(sizeof(out) + total);
  memcpy(hdr->in_out, &out, sizeof(out));
  // Arguments go to the payload buffer, one after the other (the kernel splits them by its own sizes).
  size_t at = 0;
  const size_t head_rest = iov[0].iov_len - sizeof(fuse_out_header);
  if (head_rest != 0) memcpy(payload, static_cast<const char*>(iov[0].iov_base) + sizeof(out), head_rest);
  at += head_rest;
  for (int i = 1; i < count; ++i) {
    if (iov[i].iov_len != 0) memcpy(payload + at, iov[i].iov_base, iov[i].iov_len);
    at += iov[i].iov_len;
  }
  hdr->ent_in_out.payload_sz = static_cast<uint32_t>(total);
  return 0;
}

void WriteRingError(uint64_t unique, int err, uring_abi::ReqHeader* hdr) {
  fuse_out_header out{};
  out.len = sizeof(out);
  out.error = -err;
  out.unique = unique;
  memcpy(hdr->in_out, &out, sizeof(out));
  hdr->ent_in_out.payload_sz = 0;
}

}  // namespace hamirror::fs
