// Checkers: small blocking probes, each bounded by a timeout. The daemon runs them off its event
// loop (checker thread) and feeds the results to the state machine.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace hamirror::process {

using Millis = std::chrono::milliseconds;

// <tcp>: true when a TCP connection to addr:port is established within `timeout`.
bool CheckTcp(const std::string& addr, int port, Millis timeout, std::string* detail = nullptr);

// <ping>: true when `addr` answers one ICMP echo within `timeout` (runs `ping -c1 -W<s> -n addr`;
// iputils ping works unprivileged and needs no raw socket code here).
bool CheckPing(const std::string& addr, Millis timeout, std::string* detail = nullptr);

// Split-brain witness: true when at least one of `addrs` answers a ping.
bool CheckWitness(const std::vector<std::string>& addrs, Millis timeout, std::string* detail = nullptr);

// <custom>: runs exec with args (split on spaces); up when it exits 0 within `timeout`.
bool CheckCustom(const std::string& exec, const std::string& args, const std::vector<std::string>& env,
                 Millis timeout, std::string* detail = nullptr);

}  // namespace hamirror::process
