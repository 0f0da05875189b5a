// `hamirror state -v`, `--json` and `-w` rendering from built replies (no daemon): the side-by-side
// node table, colours only when asked, the resync bar only while a resync runs, stable JSON.
#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "manager/cli/format.h"
#include "manager/cli/watch.h"

using namespace hamirror;
using namespace std::chrono_literals;

namespace {

// A PRIM n1 with its SECOND n2, a VIP, a heartbeat network, one fs and a failover an hour ago.
proto::StateReply Pair() {
  proto::StateReply r;
  r.set_module("mysql");
  r.set_pid(4242);
  r.set_uptime_s(7200);
  auto* l = r.mutable_local();
  l->set_node("n1");
  l->set_known(true);
  l->set_state(proto::NODE_STATE_PRIM);
  l->set_sub_state(proto::SUB_STATE_READY);
  l->set_state_age_ms(65000);
  l->set_data_state(proto::DATA_STATE_UP_TO_DATE);
  l->set_data_uptodate(true);
  l->set_generation(7);
  l->set_generation_author("n1");
  auto* p = r.mutable_peer();
  p->set_node("n2");
  p->set_known(true);
  p->set_state(proto::NODE_STATE_SECOND);
  p->set_sub_state(proto::SUB_STATE_READY);
  p->set_state_age_ms(3000);
  p->set_state_age_at_least(true);
  p->set_data_state(proto::DATA_STATE_OUTDATED);
  p->set_generation(6);
  p->set_generation_author("n2");
  p->set_split_brain(true);
  r.set_vip_holder(proto::VIP_HOLDER_LOCAL);
  auto* v = r.add_vips();
  v->set_addr("198.18.0.50");
  v->set_interface("eth0");
  v->set_held(true);
  auto* f = r.mutable_last_failover();
  f->set_at_unix_ms(1764000000000);
  f->set_ago_ms(3600 * 1000);
  f->set_duration_ms(4200);
  f->set_reason("peer n2 lost (no heartbeat on any network)");
  f->set_state(proto::NODE_STATE_ALONE);
  auto* h = r.add_heartbeats();
  h->set_network("lan0");
  h->set_peer_addr("198.18.0.2");
  h->set_up(true);
  h->set_last_seen_ms_ago(120);
  h->set_received(10);
  h->set_sent(11);
  auto* fs = r.add_fs();
  fs->set_dir("/var/lib/mysql");
  fs->set_running(true);
  fs->set_role(proto::FS_ROLE_PRIMARY);
  fs->set_peer_connected(true);
  fs->mutable_resync()->set_phase("done");
  fs->mutable_resync()->set_bytes_done(100);
  return r;
}

// The line of `text` that starts with `label` ("" if none).
std::string Line(const std::string& text, const std::string& label) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(label, 0) == 0) return line;
  return "";
}

std::string StripAnsi(const std::string& s) {
  return std::regex_replace(s, std::regex("\033\\[[0-9;]*m"), "");
}

}  // namespace

TEST_CASE("state -v: both nodes side by side, in columns", "[cli]") {
  const std::string out = cli::FormatState(Pair(), true);
  INFO(out);
  const std::string head = Line(out, "    "), state = Line(out, "state "), age = Line(out, "in state");
  REQUIRE(!state.empty());
  // The peer's column starts at the same place on every row.
  const size_t col = state.find("SECOND (Ready)");
  REQUIRE(col != std::string::npos);
  CHECK(state.find("PRIM (Ready)") < col);
  CHECK(head.find("local n1") != std::string::npos);
  CHECK(head.find("peer n2") == col);
  CHECK(age.find("1m05s") != std::string::npos);
  CHECK(age.find(">= 3.0s") == col);  // the peer was already SECOND when heard: a lower bound
  CHECK(Line(out, "data").find("up to date") < col);
  CHECK(Line(out, "data").find("outdated") == col);
  CHECK(Line(out, "generation").find("7 (n1)") < col);
  CHECK(Line(out, "generation").find("6 (n2)") == col);
  CHECK(Line(out, "split-brain").find("no") < col);
  CHECK(Line(out, "split-brain").find("YES") == col);
  CHECK(Line(out, "vip 198.18.0.50 on eth0: held by this node (n1)") != "");
  const std::string fo = Line(out, "last failover: ");
  CHECK(fo.find("(1h00m ago), took 4.2s to ALONE: peer n2 lost (no heartbeat on any network)") !=
        std::string::npos);
  CHECK(Line(out, "heartbeat lan0 (198.18.0.2): up, last packet 120ms ago, received 10, sent 11") != "");
  CHECK(Line(out, "module mysql  (hamirrord pid 4242, up 2h00m)") != "");
}

TEST_CASE("state -v: an unknown peer, the VIP on the peer or nowhere, no failover yet", "[cli]") {
  proto::StateReply r = Pair();
  r.clear_last_failover();
  r.mutable_vips(0)->set_held(false);
  r.set_vip_holder(proto::VIP_HOLDER_PEER);
  r.mutable_peer()->set_state(proto::NODE_STATE_ALONE);
  std::string out = cli::FormatState(r, true);
  CHECK(out.find("vip 198.18.0.50 on eth0: held by the peer (n2, ALONE)") != std::string::npos);
  CHECK(out.find("last failover: none recorded on this node") != std::string::npos);
  r.set_vip_holder(proto::VIP_HOLDER_NONE);
  CHECK(cli::FormatState(r, true).find("eth0: held by no node") != std::string::npos);
  r.set_vip_holder(proto::VIP_HOLDER_LOCAL);  // serving, but this address could not be added
  CHECK(cli::FormatState(r, true).find("eth0: NOT held: this node serves but could not add it") !=
        std::string::npos);
  r.mutable_peer()->Clear();
  r.mutable_peer()->set_node("n2");
  r.set_vip_holder(proto::VIP_HOLDER_UNKNOWN);
  out = cli::FormatState(r, true);
  INFO(out);
  CHECK(Line(out, "state").find("UNKNOWN (not heard)") != std::string::npos);
  CHECK(Line(out, "in state").find("-") != std::string::npos);
  CHECK(out.find("eth0: unknown (not held here, peer not heard)") != std::string::npos);
}

TEST_CASE("state: ANSI colours only when asked, the columns stay where they are", "[cli]") {
  const proto::StateReply r = Pair();
  for (bool verbose : {false, true}) {
    const std::string plain = cli::FormatState(r, verbose, false);
    const std::string coloured = cli::FormatState(r, verbose, true);
    INFO(coloured);
    CHECK(plain.find('\033') == std::string::npos);
    CHECK(coloured.find("\033[32mPRIM (Ready)\033[0m") != std::string::npos);
    CHECK(StripAnsi(coloured) == plain);
  }
  CHECK(cli::FormatState(r, true, true).find("\033[1;31mYES\033[0m") != std::string::npos);  // split brain
}

TEST_CASE("state: colour needs a terminal and no NO_COLOR", "[cli]") {
  const int devnull = open("/dev/null", O_WRONLY);
  REQUIRE(devnull >= 0);
  CHECK_FALSE(cli::UseColour(devnull));  // not a terminal
  close(devnull);
  const int tty = open("/dev/tty", O_WRONLY | O_NOCTTY);
  if (tty < 0) return;  // no controlling terminal (CI): the terminal half cannot be checked here
  unsetenv("NO_COLOR");
  CHECK(cli::UseColour(tty));
  setenv("NO_COLOR", "1", 1);
  CHECK_FALSE(cli::UseColour(tty));
  setenv("NO_COLOR", "", 1);
  CHECK(cli::UseColour(tty));  // no-color.org: only a non-empty value counts
  unsetenv("NO_COLOR");
  close(tty);
}

TEST_CASE("state -v: the resync bar shows only while a resync runs", "[cli]") {
  proto::StateReply r = Pair();
  std::string out = cli::FormatState(r, true);
  CHECK(out.find("[#") == std::string::npos);
  CHECK(out.find("[.") == std::string::npos);
  CHECK(out.find("  resync done") != std::string::npos);
  auto* rs = r.mutable_fs(0)->mutable_resync();
  rs->set_phase("running");
  rs->set_bytes_done(50);
  rs->set_bytes_total(100);
  out = cli::FormatState(r, true);
  INFO(out);
  CHECK(out.find("  resync incremental " + cli::ProgressBar(0.5) + " 50% 50/100 bytes") != std::string::npos);
  CHECK(cli::ProgressBar(0.5) == "[###############...............]");
  CHECK(cli::ProgressBar(2) == "[" + std::string(30, '#') + "]");
}

TEST_CASE("durations read like crm_mon's", "[cli]") {
  CHECK(cli::FormatDuration(0) == "0ms");
  CHECK(cli::FormatDuration(850) == "850ms");
  CHECK(cli::FormatDuration(4150) == "4.2s");
  CHECK(cli::FormatDuration(12000) == "12s");
  CHECK(cli::FormatDuration(185000) == "3m05s");
  CHECK(cli::FormatDuration(7440000) == "2h04m");
  CHECK(cli::FormatDuration(266400000) == "3d02h");
}

TEST_CASE("state --json: lower-case values, numbers as numbers, unset messages null", "[cli]") {
  proto::StateReply r = Pair();
  r.mutable_last_failover()->set_reason("say \"hi\"\n");
  const std::string j = cli::FormatStateJson(r);
  INFO(j);
  CHECK(j.find("NODE_STATE") == std::string::npos);
  CHECK(j.find("\"state\": \"prim\"") != std::string::npos);
  CHECK(j.find("\"state\": \"second\"") != std::string::npos);
  CHECK(j.find("\"sub_state\": \"ready\"") != std::string::npos);
  CHECK(j.find("\"data_state\": \"up_to_date\"") != std::string::npos);
  CHECK(j.find("\"data_state\": \"outdated\"") != std::string::npos);
  CHECK(j.find("\"role\": \"primary\"") != std::string::npos);
  CHECK(j.find("\"vip_holder\": \"local\"") != std::string::npos);
  CHECK(j.find("\"uptime_s\": 7200,") != std::string::npos);
  CHECK(j.find("\"at_unix_ms\": 1764000000000,") != std::string::npos);
  CHECK(j.find("\"state_age_at_least\": true,") != std::string::npos);
  CHECK(j.find("\"reason\": \"say \\\"hi\\\"\\u000a\"") != std::string::npos);
  CHECK(j.find("\"heartbeat_drops\": null") != std::string::npos);
  CHECK(j.find("\"processes\": []") != std::string::npos);
  CHECK(j.find("\"elapsed_s\": 0") != std::string::npos);
  r.clear_last_failover();
  CHECK(cli::FormatStateJson(r).find("\"last_failover\": null") != std::string::npos);
}

TEST_CASE("state -v: the node certificate's expiry, coloured when near or past", "[cli]") {
  proto::StateReply r = Pair();
  CHECK(cli::FormatState(r, true).find("tls ") == std::string::npos);  // no TLS: no line
  auto* c = r.mutable_tls_certificate();
  c->set_path("/etc/hamirror/tls/node.pem");
  c->set_subject("CN=n1");
  c->set_not_after_unix_s(1764000000 + 3649LL * 86400);
  c->set_expires_in_s(3649LL * 86400 + 100);
  std::string out = cli::FormatState(r, true);
  INFO(out);
  CHECK(out.find("tls /etc/hamirror/tls/node.pem: CN=n1, expires ") != std::string::npos);
  CHECK(out.find(" (in 3649 days)\n") != std::string::npos);
  c->set_expires_in_s(5 * 86400);
  out = cli::FormatState(r, true, true);
  CHECK(out.find("\033[33mexpires ") != std::string::npos);
  CHECK(out.find("(in 5d00h)") != std::string::npos);
  c->set_expires_in_s(-2 * 3600);
  out = cli::FormatState(r, true);
  CHECK(out.find("CN=n1, EXPIRED ") != std::string::npos);
  CHECK(out.find("(2h00m ago)") != std::string::npos);
  c->Clear();
  c->set_path("/etc/hamirror/tls/node.pem");
  c->set_error("/etc/hamirror/tls/node.pem: no PEM certificate");
  CHECK(cli::FormatState(r, true).find("tls /etc/hamirror/tls/node.pem: unreadable: ") != std::string::npos);
  const std::string j = cli::FormatStateJson(r);
  CHECK(j.find("\"tls_certificate\": {") != std::string::npos);
  CHECK(j.find("\"error\": \"/etc/hamirror/tls/node.pem: no PEM certificate\"") != std::string::npos);
}

// Every field name reachable from StateReply, "message.field" (each message type once).
void CollectFields(const google::protobuf::Descriptor* d, std::set<std::string>* seen_types,
                   std::set<std::string>* out) {
  if (!seen_types->insert(d->full_name()).second) return;
  for (int i = 0; i < d->field_count(); ++i) {
    const auto* f = d->field(i);
    out->insert(d->name() + "." + f->name());
    if (f->message_type()) CollectFields(f->message_type(), seen_types, out);
  }
}

TEST_CASE("state --json: the field names are stable and each one is documented", "[cli]") {
  const std::string j = cli::FormatStateJson(proto::StateReply());
  // The top level, in this order (a rename breaks scripts: it must show here first).
  std::vector<std::string> keys;
  std::regex top("\n  \"([a-z_]+)\": ");
  for (auto it = std::sregex_iterator(j.begin(), j.end(), top); it != std::sregex_iterator(); ++it)
    keys.push_back((*it)[1]);
  const std::vector<std::string> want = {"module",
                                         "local",
                                         "peer",
                                         "heartbeats",
                                         "vips",
                                         "fs",
                                         "processes",
                                         "checkers",
                                         "loop_count",
                                         "maxloop",
                                         "pid",
                                         "uptime_s",
                                         "heartbeat_drops",
                                         "last_failover",
                                         "vip_holder",
                                         "tls_certificate",
                                         "boot",
                                         "failover",
                                         "errd",
                                         "checkers_enabled"};
  CHECK(keys == want);
  // docs/operations.md documents every field as `message.field` in its JSON reference.
  std::ifstream in(HAMIRROR_OPERATIONS_MD);
  REQUIRE(in);
  const std::string doc((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::set<std::string> types, fields;
  CollectFields(proto::StateReply::descriptor(), &types, &fields);
  for (const auto& f : fields) {
    INFO("docs/operations.md does not document " << f);
    CHECK(doc.find("`" + f + "`") != std::string::npos);
  }
}

TEST_CASE("state -w: one snapshot per refresh, cleared and redrawn only on a terminal", "[cli]") {
  int calls = 0;
  cli::FetchState fetch = [&](proto::StateReply* out) {
    *out = Pair();
    out->set_uptime_s(++calls);
    return true;
  };
  auto render = [](const proto::StateReply& r) { return cli::FormatState(r, true, false); };
  std::ostringstream pipe, tty;
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(cli::WatchState(fetch, render, pipe, {false, 50ms, 2}) == 0);
  CHECK(std::chrono::steady_clock::now() - t0 >= 50ms);  // waited one interval between the two
  CHECK(calls == 2);
  INFO(pipe.str());
  CHECK(pipe.str().find('\033') == std::string::npos);
  CHECK(pipe.str().find("up 1.0s)") != std::string::npos);
  CHECK(pipe.str().find("up 2.0s)") != std::string::npos);
  CHECK(cli::WatchState(fetch, render, tty, {true, 1ms, 3}) == 0);
  const std::string screen = tty.str();
  size_t clears = 0;
  for (size_t p = screen.find("\033[H\033[2J"); p != std::string::npos;
       p = screen.find("\033[H\033[2J", p + 1))
    ++clears;
  CHECK(clears == 3);
  CHECK(screen.rfind("\033[H\033[2J") < screen.find("up 5.0s)"));  // the last screen is the newest
}

TEST_CASE("state -w: an unreachable daemon is said on screen and asked again", "[cli]") {
  int calls = 0;
  cli::FetchState fetch = [&](proto::StateReply* out) {
    *out = Pair();
    return ++calls != 2;  // the second refresh fails
  };
  std::ostringstream out;
  auto render = [](const proto::StateReply& r) { return cli::FormatState(r, true); };
  CHECK(cli::WatchState(fetch, render, out, {false, 1ms, 2}) == cli::kWaitUnreachable);
  CHECK(out.str().find("cannot reach hamirrord") != std::string::npos);
  CHECK(cli::WatchState(fetch, render, out, {false, 1ms, 1}) == 0);  // the third one answers again
}
