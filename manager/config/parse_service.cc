// <safe>, <macro>, <service>, <heart>, <user>, <hamirror>, <failover>.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "manager/config/sections.h"

namespace hamirror::config {

pugi::xml_node OnlyChild(Element& e, const char* name) {
  std::vector<pugi::xml_node> v = Children(e.node(), name);
  for (std::size_t i = 1; i < v.size(); ++i) {
    Element(e.ctx(), v[i])
        .Error(std::string("duplicate <") + name + "> in " + e.tag() + " (first at line " +
               std::to_string(e.ctx()->file().LineOf(v[0])) + ")");
  }
  return v.empty() ? pugi::xml_node() : v[0];
}

bool IsIdentifier(const std::string& s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  }
  return true;
}

std::string CheckExecutable(Element& e, const char* attr, const std::string& value, const ParseEnv& env) {
  const std::string path =
      value.starts_with('/') ? value : env.module_dir + "/" + kScriptsRelDir + "/" + value;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    e.BadValue(attr, value, path + " does not exist");
  } else if (!S_ISREG(st.st_mode)) {
    e.BadValue(attr, value, path + " is not a regular file");
  } else if ((st.st_mode & 0111) == 0) {
    e.BadValue(attr, value, path + " is not executable (chmod +x)");
  }
  return path;
}

namespace {

void CollectMacros(Element& parent, std::map<std::string, std::string>* macros) {
  for (pugi::xml_node m : Children(parent.node(), "macro")) {
    Element e(parent.ctx(), m);
    e.CheckAttributes({{"name"}, {"value"}});
    e.CheckChildren({});
    // Macro values are taken literally (no nested expansion): read them raw.
    pugi::xml_attribute name = m.attribute("name");
    pugi::xml_attribute value = m.attribute("value");
    if (!name) e.Error("missing attribute 'name' on <macro>");
    if (!value) e.Error("missing attribute 'value' on <macro>");
    if (!name || !value) continue;
    if (!IsIdentifier(name.value())) {
      e.BadValue("name", name.value(), "letters, digits and '_' only, not starting with a digit");
    } else if (!macros->emplace(name.value(), value.value()).second) {
      e.Error("name", std::string("duplicate macro '") + name.value() + "'");
    }
  }
}

void ParseFailover(Element& e) {
  e.CheckAttributes({});
  e.CheckChildren({}, /*allow_text=*/true);
  e.Warning(
      "<failover> rules are not supported by hamirror and are ignored: the built-in rules apply "
      "(see docs/configuration.md)");
}

}  // namespace

void ParseSafe(Element& safe, const ParseEnv& env, ModuleConfig* out) {
  safe.CheckAttributes({});
  safe.CheckChildren({"service", "macro"});
  pugi::xml_node service = OnlyChild(safe, "service");
  // Macros may be defined under <safe> or <service>; all are known before any value is read.
  CollectMacros(safe, &out->macros);
  if (service) {
    Element s(safe.ctx(), service);
    CollectMacros(s, &out->macros);
  }
  safe.ctx()->set_macros(&out->macros);
  if (!service) {
    safe.Error("missing <service> in <safe>");
    return;
  }
  Element s(safe.ctx(), service);
  ParseService(s, env, out);
}

void ParseService(Element& e, const ParseEnv& env, ModuleConfig* out) {
  e.CheckAttributes({{"mode"}, {"defaultprim"}, {"failover"}, {"maxloop"}, {"loop_interval"}, {"boot"}});
  e.CheckChildren(
      {"heart", "vip", "errd", "rfs", "check", "user", "failover", "splitbrain", "macro", "hamirror"});

  if (auto mode = e.Get("mode"); mode && *mode != "mirror") {
    e.BadValue("mode", *mode, "hamirror implements mirror modules only (expected mirror)");
  }
  ServiceConfig& svc = out->service;
  if (auto dp = e.Get("defaultprim")) {
    if (*dp == "alone") {
      svc.defaultprim = DefaultPrim::kAlone;
    } else if (*dp == "lastprim") {
      svc.defaultprim = DefaultPrim::kLastPrim;
    } else {
      svc.defaultprim = DefaultPrim::kNode;
      svc.defaultprim_node = *dp;
      if (env.cluster != nullptr && env.cluster->lans.size() > 0 &&
          env.cluster->lans.front().FindNode(*dp) == nullptr) {
        std::string nodes;
        for (const std::string& n : env.cluster->NodeNames()) nodes += ", " + n;
        e.BadValue("defaultprim", *dp, "expected alone, lastprim or a node of " + env.cluster->file + nodes);
      }
    }
  }
  e.OnOff("failover", &svc.failover);
  e.OnOff("boot", &svc.boot);
  e.Int("maxloop", 0, 1000, &svc.maxloop);
  if (e.Duration("loop_interval", std::chrono::hours(1), &svc.loop_interval) && e.Has("loop_interval") &&
      svc.loop_interval.count() == 0) {
    e.BadValue("loop_interval", *e.Get("loop_interval"), "must be greater than 0");
  }

  if (pugi::xml_node n = OnlyChild(e, "heart")) {
    Element c(e.ctx(), n);
    ParseHeart(c, env, &out->heart);
  } else {
    e.Error("missing <heart> in <service>: a mirror module needs at least one <heartbeat>");
  }
  if (pugi::xml_node n = OnlyChild(e, "vip")) {
    Element c(e.ctx(), n);
    ParseVip(c, &out->vip);
  }
  if (pugi::xml_node n = OnlyChild(e, "errd")) {
    Element c(e.ctx(), n);
    ParseErrd(c, &out->errd);
  }
  if (pugi::xml_node n = OnlyChild(e, "rfs")) {
    Element c(e.ctx(), n);
    ParseRfs(c, env, &out->rfs);
  }
  if (pugi::xml_node n = OnlyChild(e, "check")) {
    Element c(e.ctx(), n);
    ParseCheck(c, env, out);
  }
  // <splitbrain> is accepted directly in <service> as well as in <check>, but only once overall:
  // the first in document order is used, any later one is reported.
  std::vector<pugi::xml_node> witnesses = Children(e.node(), "splitbrain");
  for (pugi::xml_node check : Children(e.node(), "check")) {
    for (pugi::xml_node w : Children(check, "splitbrain")) witnesses.push_back(w);
  }
  std::sort(witnesses.begin(), witnesses.end(), [](const pugi::xml_node& a, const pugi::xml_node& b) {
    return a.offset_debug() < b.offset_debug();
  });
  for (pugi::xml_node n : witnesses) {
    Element c(e.ctx(), n);
    ParseSplitBrain(c, out);
  }
  if (pugi::xml_node n = OnlyChild(e, "user")) {
    Element c(e.ctx(), n);
    ParseUser(c, &out->user);
  }
  if (pugi::xml_node n = OnlyChild(e, "failover")) {
    Element c(e.ctx(), n);
    ParseFailover(c);
  }
  if (pugi::xml_node n = OnlyChild(e, "hamirror")) {
    Element c(e.ctx(), n);
    ParseHamirror(c, &out->hamirror);
  }
  CheckSecurityFiles(e, env, out);
}

void ParseHeart(Element& e, const ParseEnv& env, HeartConfig* out) {
  e.CheckAttributes({{"pulse"}, {"timeout"}, {"keyfile"}, {"auth"}});
  e.CheckChildren({"heartbeat"});
  if (auto v = e.Get("keyfile")) {
    if (!v->starts_with('/')) {
      e.BadValue("keyfile", *v, "expected an absolute path");
    } else {
      out->key_file = *v;
    }
  }
  e.Enum<bool>("auth", {{"keyfile", false}, {"derived", true}}, &out->derived_key);
  if (out->derived_key && e.Has("keyfile")) {
    e.Error("auth", "auth=\"derived\" uses no key file: remove keyfile or auth");
  }
  e.Duration("pulse", Millis(1), &out->pulse);
  e.Duration("timeout", Millis(1), &out->timeout);
  if (out->pulse < Millis(10) || out->pulse > Millis(60000)) {
    e.BadValue("pulse", e.Get("pulse").value_or(""), "expected between 10ms and 60s");
  } else if (out->timeout < 2 * out->pulse) {
    e.Error(e.Has("timeout") ? "timeout" : "pulse",
            "heartbeat timeout (" + std::to_string(out->timeout.count()) +
                "ms) must be at least twice pulse (" + std::to_string(out->pulse.count()) + "ms)");
  }

  int flows = 0;
  for (pugi::xml_node hb : Children(e.node(), "heartbeat")) {
    Element h(e.ctx(), hb);
    h.CheckAttributes({{"name"}, {"ident"}});
    h.CheckChildren({});
    Heartbeat beat;
    if (auto name = h.Required("name")) {
      beat.name = *name;
      for (const Heartbeat& other : out->heartbeats) {
        if (other.name == beat.name) h.Error("name", "duplicate heartbeat on lan '" + beat.name + "'");
      }
      if (env.cluster != nullptr) {
        if (const Lan* lan = env.cluster->FindLan(beat.name)) {
          beat.nodes = lan->nodes;
        } else {
          std::string lans;
          for (const Lan& l : env.cluster->lans) lans += (lans.empty() ? "" : ", ") + l.name;
          h.BadValue("name", beat.name, "no such lan in " + env.cluster->file + " (lans: " + lans + ")");
        }
      }
    }
    if (auto ident = h.Get("ident")) beat.ident = *ident;
    beat.flow = beat.ident == "flow";
    if (beat.flow && ++flows == 2) {
      h.Error("ident", "a second heartbeat with ident=\"flow\": replication uses exactly one network");
    }
    out->heartbeats.push_back(std::move(beat));
  }
  if (out->heartbeats.empty()) {
    e.Error("no <heartbeat> in <heart>: at least one network is needed");
  } else if (flows == 0) {
    out->heartbeats.front().flow = true;  // as documented: the first network carries replication
  }
}

void ParseUser(Element& e, UserConfig* out) {
  e.CheckAttributes({{"nicestoptimeout"}, {"forcestoptimeout"}, {"logging"}});
  e.CheckChildren({"var"});
  e.Duration("nicestoptimeout", std::chrono::seconds(1), &out->nicestoptimeout);
  e.Duration("forcestoptimeout", std::chrono::seconds(1), &out->forcestoptimeout);
  e.Enum<bool>("logging", {{"userlog", true}, {"none", false}}, &out->logging);
  std::set<std::string> names;
  for (pugi::xml_node v : Children(e.node(), "var")) {
    Element ve(e.ctx(), v);
    ve.CheckAttributes({{"name"}, {"value"}});
    ve.CheckChildren({});
    auto name = ve.Required("name");
    auto value = ve.Required("value");
    if (!name || !value) continue;
    if (!IsIdentifier(*name)) {
      ve.BadValue("name", *name,
                  "an environment variable name: letters, digits and '_', not starting with a digit");
    } else if (!names.insert(*name).second) {
      ve.Error("name", "duplicate <var> '" + *name + "'");
    } else if (name->starts_with("SAFE") || name->starts_with("HAMIRROR")) {
      ve.BadValue("name", *name, "names starting with SAFE or HAMIRROR are set by hamirror for scripts");
    } else {
      out->vars.emplace_back(*name, *value);
    }
  }
}

void ParseHamirror(Element& e, HamirrorSettings* out) {
  e.CheckAttributes({{"heartport"}, {"rfsport"}, {"statedir"}, {"tlsdir"}, {"splitbrainpolicy"}});
  e.CheckChildren({});
  e.Int("heartport", 1, 65535, &out->heartbeat_port);
  e.Int("rfsport", 1, 65535, &out->replication_port);
  if (out->heartbeat_port == out->replication_port) {
    e.Error("rfsport", "rfsport and heartport must differ (" + std::to_string(out->heartbeat_port) + ")");
  }
  for (const char* attr : {"statedir", "tlsdir"}) {
    if (auto v = e.Get(attr)) {
      if (!v->starts_with('/')) {
        e.BadValue(attr, *v, "expected an absolute path");
      } else {
        (std::strcmp(attr, "statedir") == 0 ? out->state_dir : out->tls_dir) = *v;
      }
    }
  }
  // The automatic policies were parsed and then ignored (both nodes waited as with "manual"): refused
  // until built. (discard-younger-primary would also pick the wrong side after a witness partition:
  // the node that took over became primary last and holds the acknowledged commits.)
  if (std::optional<std::string> v = e.Get("splitbrainpolicy");
      v && (*v == "discard-younger-primary" || *v == "discard-least-changes")) {
    e.BadValue("splitbrainpolicy", *v,
               "not implemented: only \"manual\" (after a split brain both nodes wait; `hamirror second` "
               "on the side to discard, its changes kept in quarantine)");
    return;
  }
  e.Enum("splitbrainpolicy", {{"manual", SplitBrainPolicy::kManual}}, &out->splitbrain_policy);
}

}  // namespace hamirror::config
