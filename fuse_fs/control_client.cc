#include "fuse_fs/control_client.h"

#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include "proto/fs_control.grpc.pb.h"

namespace hamirror::fs {
namespace {

void Print(const proto::FsStatus& st) {
  std::string json;
  google::protobuf::util::JsonPrintOptions o;
  o.add_whitespace = true;
  o.always_print_primitive_fields = true;
  o.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(st, &json, o);
  fputs(json.c_str(), stdout);
}

grpc::Status Call(proto::FsControl::Stub* stub, const CtlRequest& r, proto::FsStatus* st) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  if (r.verb == "status") return stub->Status(&ctx, proto::FsStatusRequest(), st);
  if (r.verb == "role") {
    proto::SetRoleRequest req;
    req.set_role(r.role == "primary" ? proto::FS_ROLE_PRIMARY : proto::FS_ROLE_ALONE);
    req.set_peer(r.peer);
    return stub->SetRole(&ctx, req, st);
  }
  if (r.verb == "resync") {
    proto::ResyncRequest req;
    req.set_full(r.full);
    return stub->Resync(&ctx, req, st);
  }
  if (r.verb == "verify") {
    proto::VerifyRequest req;
    req.set_repair(r.repair);
    return stub->Verify(&ctx, req, st);
  }
  proto::ExpectResyncRequest req;  // expect-resync
  req.set_quarantine(r.quarantine);
  req.set_full(r.full);
  return stub->ExpectResync(&ctx, req, st);
}

std::unique_ptr<proto::FsControl::Stub> NewStub(const std::string& control) {
  return proto::FsControl::NewStub(
      grpc::CreateChannel("unix:" + control, grpc::InsecureChannelCredentials()));
}

// Polls until the resync (or verify) with an id other than `old_id` has ended. Exit code.
int WaitEnd(std::unique_ptr<proto::FsControl::Stub> stub, const CtlRequest& r, uint64_t old_id) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(r.timeout_s);
  auto unreachable_until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    proto::FsStatus st;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    if (!stub->Status(&ctx, proto::FsStatusRequest(), &st).ok()) {
      // `wait` may be called while hamirror-fs is still starting: its socket gets some time to appear.
      const auto now = std::chrono::steady_clock::now();
      if (r.verb == "wait" && now < unreachable_until) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        stub = NewStub(r.control);  // a failed channel backs off for a second or more: start afresh
        continue;
      }
      if (unreachable_until == std::chrono::steady_clock::time_point::min()) {
        fprintf(stderr, "hamirror-fs ctl: lost the control socket %s while waiting\n", r.control.c_str());
      } else {
        fprintf(stderr, "hamirror-fs ctl: no hamirror-fs answers on %s\n", r.control.c_str());
      }
      return 2;
    }
    unreachable_until = std::chrono::steady_clock::time_point::min();
    const proto::FsResync& p = r.verb == "verify" ? st.verify() : st.resync();
    if (p.id() != old_id && p.phase() != "running" && p.phase() != "idle") {
      Print(st);
      if (p.phase() != "done") return 1;
      return r.verb == "verify" && p.differences() > 0 ? 1 : 0;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  fprintf(stderr, "hamirror-fs ctl: not done after %d s\n", r.timeout_s);
  return 2;
}

}  // namespace

int RunCtl(const CtlRequest& r) {
  auto stub = NewStub(r.control);
  // wait: poll here, in one process (a script polling `status` costs a process start per poll,
  // which on a small machine competes with the resync it waits for).
  if (r.verb == "wait") return WaitEnd(std::move(stub), r, r.after_id);
  uint64_t old_id = 0;
  if (r.wait) {
    proto::FsStatus before;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    if (stub->Status(&ctx, proto::FsStatusRequest(), &before).ok())
      old_id = r.verb == "verify" ? before.verify().id() : before.resync().id();
  }
  proto::FsStatus st;
  grpc::Status g = Call(stub.get(), r, &st);
  if (!g.ok()) {
    fprintf(stderr, "hamirror-fs ctl: %s: %s\n", r.control.c_str(), g.error_message().c_str());
    return g.error_code() == grpc::StatusCode::FAILED_PRECONDITION ? 1 : 2;
  }
  if (r.wait && (r.verb == "resync" || r.verb == "verify")) return WaitEnd(std::move(stub), r, old_id);
  Print(st);
  return 0;
}

}  // namespace hamirror::fs
