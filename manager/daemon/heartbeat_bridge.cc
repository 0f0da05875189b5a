#include "manager/daemon/heartbeat_bridge.h"

#include "common/log.h"
#include "manager/daemon/status_codec.h"

namespace hamirror::daemon {

HeartbeatBridge::HeartbeatBridge(heartbeat::HeartbeatConfig config, OnStatus on_status, OnLost on_lost,
                                 MakeStatus make_status)
    : config_(config),
      on_status_(std::move(on_status)),
      on_lost_(std::move(on_lost)),
      make_status_(std::move(make_status)),
      nets_(config_.networks.size()),
      service_(std::move(config), this) {}

HeartbeatBridge::~HeartbeatBridge() { Stop(); }

Status HeartbeatBridge::Start() { return service_.Start(); }
void HeartbeatBridge::Stop() { service_.Stop(); }

void HeartbeatBridge::OnHeartbeat(size_t network, const std::string& network_name,
                                  const heartbeat::PeerSummary& /*summary*/, std::string_view payload) {
  manager::core::PeerStatus st;
  if (!DecodeStatus(payload, &st) || st.from != config_.peer_node) {
    std::lock_guard<std::mutex> lock(mu_);
    if (bad_payloads_++ == 0)
      HLOG_WARN("heartbeat on %s: payload is not a status from %s (other version?)", network_name.c_str(),
                config_.peer_node.c_str());
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    nets_[network].seen = true;
    nets_[network].last_seen = std::chrono::steady_clock::now();
  }
  // The same status arrives once per network: the core drops the repeats by (incarnation, seq).
  on_status_(st);
}

void HeartbeatBridge::BeforeSend(heartbeat::PeerSummary* summary, std::string* payload) {
  manager::core::PeerStatus st;
  if (!make_status_(&st)) return;  // busy: the previous payload goes again
  summary->state = static_cast<uint8_t>(st.state);
  summary->sub_state = static_cast<uint8_t>(st.readiness);
  summary->data_generation = st.data.current.counter;
  summary->up_to_date = st.data.data == manager::core::DataState::kUpToDate;
  summary->last_primary = st.data.last_role == manager::core::Role::kPrim;
  *payload = EncodeStatus(st);
}

void HeartbeatBridge::OnNetworkUp(size_t network, const std::string& network_name) {
  std::lock_guard<std::mutex> lock(mu_);
  nets_[network].up = true;
  HLOG_INFO("heartbeat network %s up", network_name.c_str());
}

void HeartbeatBridge::OnNetworkDown(size_t network, const std::string& network_name) {
  std::lock_guard<std::mutex> lock(mu_);
  nets_[network].up = false;
  HLOG_WARN("heartbeat network %s down", network_name.c_str());
}

void HeartbeatBridge::OnPeerLost() { on_lost_(); }

std::vector<HeartbeatNetworkStatus> HeartbeatBridge::Networks() const {
  std::vector<HeartbeatNetworkStatus> out;
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < nets_.size(); ++i) {
    HeartbeatNetworkStatus s;
    s.name = config_.networks[i].name;
    s.peer_addr = config_.networks[i].peer_addr;
    s.up = nets_[i].up;
    if (nets_[i].seen)
      s.last_seen_ms_ago =
          std::chrono::duration_cast<std::chrono::milliseconds>(now - nets_[i].last_seen).count();
    const auto c = service_.network_counters(i);
    s.received = c.accepted;
    s.sent = c.sent;
    s.send_errors = c.send_errors;
    out.push_back(s);
  }
  return out;
}

uint64_t HeartbeatBridge::bad_payloads() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bad_payloads_;
}

}  // namespace hamirror::daemon
