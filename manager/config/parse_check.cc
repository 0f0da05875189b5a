// <check> (tcp, ping, intf, custom checkers) and <splitbrain> (witness).
#include <set>
#include <sstream>

#include "manager/config/sections.h"
#include "manager/config/values.h"

namespace hamirror::config {
namespace {

constexpr Millis kSec = std::chrono::seconds(1);

// ident, when, action (common to every checker). Returns false if ident is missing/bad.
bool ReadCommon(Element& e, std::set<std::string>* idents, std::string* ident, RoleClass* when,
                RecoveryAction* action) {
  e.Enum("when", kRoleClasses, when);
  e.Enum("action", kCheckActions, action);
  auto id = e.Required("ident");
  if (!id) return false;
  *ident = *id;
  if (id->empty() || id->find_first_of(" \t/") != std::string::npos) {
    e.BadValue("ident", *id, "expected a non-empty name without spaces or '/'");
    return false;
  }
  if (!idents->insert(*id).second) {
    e.Error("ident", "duplicate checker ident '" + *id + "'");
    return false;
  }
  return true;
}

// interval/timeout of a <to> or checker element, both in seconds by default.
void ReadTiming(Element& e, Millis* interval, Millis* timeout) {
  if (e.Duration("interval", kSec, interval) && *interval < Millis(100)) {
    e.BadValue("interval", e.Get("interval").value_or(""), "expected at least 100ms");
  }
  if (timeout == nullptr) return;
  if (e.Duration("timeout", kSec, timeout) && *timeout < Millis(100)) {
    e.BadValue("timeout", e.Get("timeout").value_or(""), "expected at least 100ms");
  }
}

void ParseTcp(Element& e, std::set<std::string>* idents, CheckConfig* out) {
  e.CheckAttributes({{"ident"}, {"when"}, {"action"}});
  e.CheckChildren({"to"});
  TcpCheck c;
  ReadCommon(e, idents, &c.ident, &c.when, &c.action);
  pugi::xml_node to = OnlyChild(e, "to");
  if (!to) {
    e.Error("missing <to addr=\"...\" port=\"...\"/> in <tcp>");
  } else {
    Element t(e.ctx(), to);
    t.CheckAttributes({{"addr"}, {"port"}, {"interval"}, {"timeout"}});
    t.CheckChildren({});
    if (auto a = t.Required("addr")) {
      int family;
      if (std::string err = ParseIpAddress(*a, &family); !err.empty()) t.BadValue("addr", *a, err);
      c.addr = *a;
    }
    if (t.Required("port")) t.Int("port", 1, 65535, &c.port);
    ReadTiming(t, &c.interval, &c.timeout);
  }
  out->tcp.push_back(std::move(c));
}

void ParsePing(Element& e, std::set<std::string>* idents, CheckConfig* out) {
  e.CheckAttributes({{"ident"}, {"when"}, {"action"}});
  e.CheckChildren({"to"});
  PingCheck c;
  ReadCommon(e, idents, &c.ident, &c.when, &c.action);
  std::vector<pugi::xml_node> tos = Children(e.node(), "to");
  if (tos.empty()) e.Error("missing <to addr=\"...\"/> in <ping>");
  for (pugi::xml_node to : tos) {
    Element t(e.ctx(), to);
    t.CheckAttributes({{"addr"}, {"interval"}, {"timeout"}});
    t.CheckChildren({});
    if (auto a = t.Required("addr")) {
      int family;
      if (std::string err = ParseIpAddress(*a, &family); !err.empty()) t.BadValue("addr", *a, err);
      c.addrs.push_back(*a);
    }
    ReadTiming(t, &c.interval, &c.timeout);  // the last <to> giving a value wins (one timer per checker)
  }
  out->ping.push_back(std::move(c));
}

void ParseIntf(Element& e, std::set<std::string>* idents, CheckConfig* out) {
  e.CheckAttributes({{"ident"}, {"when"}, {"action"}});
  e.CheckChildren({"to"});
  IntfCheck c;
  ReadCommon(e, idents, &c.ident, &c.when, &c.action);
  pugi::xml_node to = OnlyChild(e, "to");
  if (!to) {
    e.Error("missing <to name=\"...\"/> in <intf>");
  } else {
    Element t(e.ctx(), to);
    t.CheckAttributes({{"name"}, {"interval"}});
    t.CheckChildren({});
    if (auto n = t.Required("name")) {
      if (n->empty() || n->size() > 15 || n->find_first_of("/ \t") != std::string::npos) {
        t.BadValue("name", *n, "expected a network interface name (at most 15 characters, no '/' or space)");
      }
      c.interface = *n;
    }
    ReadTiming(t, &c.interval, nullptr);
  }
  out->intf.push_back(std::move(c));
}

void ParseCustom(Element& e, const ParseEnv& env, std::set<std::string>* idents, CheckConfig* out) {
  e.CheckAttributes({{"ident"}, {"when"}, {"action"}, {"exec"}, {"arg"}, {"interval"}, {"timeout"}});
  e.CheckChildren({});
  CustomCheck c;
  ReadCommon(e, idents, &c.ident, &c.when, &c.action);
  if (auto x = e.Required("exec")) {
    if (x->empty()) {
      e.BadValue("exec", *x, "expected a program name or path");
    } else {
      c.exec = CheckExecutable(e, "exec", *x, env);
    }
  }
  if (auto a = e.Get("arg")) c.arg = *a;
  ReadTiming(e, &c.interval, &c.timeout);
  out->custom.push_back(std::move(c));
}

}  // namespace

void ParseCheck(Element& e, const ParseEnv& env, ModuleConfig* out) {
  e.CheckAttributes({});
  e.CheckChildren({"tcp", "ping", "intf", "custom", "splitbrain"});
  std::set<std::string> idents;
  for (pugi::xml_node c = e.node().first_child(); c; c = c.next_sibling()) {
    if (c.type() != pugi::node_element) continue;
    Element ce(e.ctx(), c);
    const std::string name = c.name();
    if (name == "tcp") {
      ParseTcp(ce, &idents, &out->check);
    } else if (name == "ping") {
      ParsePing(ce, &idents, &out->check);
    } else if (name == "intf") {
      ParseIntf(ce, &idents, &out->check);
    } else if (name == "custom") {
      ParseCustom(ce, env, &idents, &out->check);
    }  // <splitbrain> here is parsed by ParseService, together with one directly in <service>.
  }
}

void ParseSplitBrain(Element& e, ModuleConfig* out) {
  if (out->has_splitbrain) {
    e.Error("duplicate <splitbrain>: one witness definition per module (in <service> or in <check>)");
    return;
  }
  out->has_splitbrain = true;
  e.CheckAttributes({{"ident"}, {"exec"}, {"arg"}});
  e.CheckChildren({});
  SplitBrainWitness& w = out->splitbrain;
  if (auto id = e.Get("ident")) w.ident = *id;
  if (auto x = e.Get("exec"); x && *x != "ping") {
    e.BadValue("exec", *x, "only the ping witness is supported (expected ping)");
  }
  if (auto a = e.Required("arg")) {
    std::istringstream in(*a);
    std::string tok;
    while (in >> tok) {
      int family;
      if (std::string err = ParseIpAddress(tok, &family); !err.empty()) {
        e.BadValue("arg", *a, "'" + tok + "' is " + err);
      } else {
        w.addrs.push_back(tok);
      }
    }
    if (w.addrs.empty()) e.BadValue("arg", *a, "expected one or more witness addresses separated by spaces");
  }
}

}  // namespace hamirror::config
