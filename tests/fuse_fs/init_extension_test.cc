// InitExtension: the INIT handshake extended only with what the kernel offered; malformed input left alone.
#include "fuse_fs/init_extension.h"

#include <linux/fuse.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <vector>

using hamirror::fs::InitExtension;
using hamirror::fs::kInitDirectIoAllowMmap;
using hamirror::fs::kInitHandleKillprivV2;

namespace {

std::vector<char> InitRequest(uint64_t unique, uint32_t flags, uint32_t flags2,
                              size_t arg_len = sizeof(fuse_init_in)) {
  fuse_in_header in{};
  in.opcode = FUSE_INIT;
  in.unique = unique;
  in.len = static_cast<uint32_t>(sizeof(in) + arg_len);
  fuse_init_in init{};
  init.major = 7;
  init.minor = 45;
  init.flags = flags;
  init.flags2 = flags2;
  std::vector<char> buf(sizeof(in) + sizeof(init));
  memcpy(buf.data(), &in, sizeof(in));
  memcpy(buf.data() + sizeof(in), &init, sizeof(init));
  buf.resize(sizeof(in) + arg_len);
  return buf;
}

struct Reply {
  fuse_out_header out{};
  fuse_init_out init{};
  struct iovec iov[2];
  Reply(uint64_t unique, uint32_t flags, int32_t error = 0) {
    out.unique = unique;
    out.error = error;
    init.major = 7;
    init.minor = 38;
    init.flags = flags;
    iov[0] = {&out, sizeof(out)};
    iov[1] = {&init, sizeof(init)};
  }
};

fuse_init_out Patched(InitExtension& ext, Reply& r, size_t* len) {
  char buf[InitExtension::kMaxInitOut];
  *len = ext.PatchReply(r.iov, 2, buf, sizeof(buf));
  fuse_init_out init{};
  if (*len) memcpy(&init, buf, sizeof(init));
  return init;
}

}  // namespace

TEST_CASE("InitExtension accepts a wanted flag the kernel offers, in the INIT reply only", "[fuse_fs]") {
  InitExtension ext(kInitHandleKillprivV2 | kInitDirectIoAllowMmap);
  const uint32_t offered = FUSE_HANDLE_KILLPRIV_V2 | FUSE_INIT_EXT | FUSE_ASYNC_READ;
  auto req = InitRequest(7, offered, /*flags2: DIRECT_IO_ALLOW_MMAP*/ 1u << 4);
  ext.OnRequest(req.data(), req.size());
  CHECK(ext.accepted() == (kInitHandleKillprivV2 | kInitDirectIoAllowMmap));

  Reply other(8, FUSE_ASYNC_READ);  // another request's reply: untouched
  size_t len = 0;
  Patched(ext, other, &len);
  CHECK(len == 0);

  Reply reply(7, FUSE_ASYNC_READ);
  fuse_init_out init = Patched(ext, reply, &len);
  REQUIRE(len == sizeof(fuse_init_out));
  CHECK(init.flags == (FUSE_ASYNC_READ | FUSE_HANDLE_KILLPRIV_V2 | FUSE_INIT_EXT));
  CHECK(init.flags2 == (1u << 4));
  CHECK(init.minor == 38);  // the rest as libfuse wrote it
  CHECK(ext.granted() == (kInitHandleKillprivV2 | kInitDirectIoAllowMmap));
  Reply again(7, FUSE_ASYNC_READ);  // the INIT is answered once
  Patched(ext, again, &len);
  CHECK(len == 0);
}

TEST_CASE("InitExtension never accepts what the kernel did not offer", "[fuse_fs]") {
  InitExtension ext(kInitHandleKillprivV2 | kInitDirectIoAllowMmap);
  auto req = InitRequest(3, FUSE_ASYNC_READ, 1u << 4);  // no FUSE_INIT_EXT: flags2 is not there
  ext.OnRequest(req.data(), req.size());
  CHECK(ext.accepted() == 0);
  Reply reply(3, FUSE_ASYNC_READ);
  size_t len = 0;
  fuse_init_out init = Patched(ext, reply, &len);
  REQUIRE(len == sizeof(fuse_init_out));
  CHECK(init.flags == FUSE_ASYNC_READ);
  CHECK(init.flags2 == 0);
  CHECK(ext.granted() == 0);
}

TEST_CASE("InitExtension leaves short or malformed requests and replies alone", "[fuse_fs]") {
  InitExtension ext(kInitHandleKillprivV2);
  auto full = InitRequest(5, FUSE_HANDLE_KILLPRIV_V2, 0);
  for (size_t cut : {size_t{0}, size_t{3}, sizeof(fuse_in_header), sizeof(fuse_in_header) + 8}) {
    ext.OnRequest(full.data(), cut);  // shorter than its header or than INIT's oldest argument
  }
  auto lying = InitRequest(5, FUSE_HANDLE_KILLPRIV_V2, 0);
  reinterpret_cast<fuse_in_header*>(lying.data())->len = 4096;  // claims more than was read
  ext.OnRequest(lying.data(), lying.size());
  CHECK(ext.accepted() == 0);

  ext.OnRequest(full.data(), full.size());
  REQUIRE(ext.accepted() == kInitHandleKillprivV2);
  size_t len = 0;
  Reply failed(5, 0, -EPROTO);  // libfuse refused the INIT: nothing to extend
  Patched(ext, failed, &len);
  CHECK(len == 0);
  ext.OnRequest(full.data(), full.size());
  Reply tiny(5, 0);
  tiny.iov[1].iov_len = 8;  // the oldest 8-byte reply has no flags
  Patched(ext, tiny, &len);
  CHECK(len == 0);
  ext.OnRequest(full.data(), full.size());
  Reply one_part(5, 0);
  char buf[InitExtension::kMaxInitOut];
  CHECK(ext.PatchReply(one_part.iov, 1, buf, sizeof(buf)) == 0);
}
