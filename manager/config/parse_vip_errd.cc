// <vip> (virtual addresses) and <errd> (process watchdog).
#include <set>

#include "manager/config/sections.h"
#include "manager/config/values.h"

namespace hamirror::config {

void ParseVip(Element& e, VipConfig* out) {
  e.CheckAttributes({});
  e.CheckChildren({"interface_list"});
  pugi::xml_node list = OnlyChild(e, "interface_list");
  if (!list) {
    e.Error("missing <interface_list> in <vip>");
    return;
  }
  Element l(e.ctx(), list);
  l.CheckAttributes({});
  l.CheckChildren({"interface"});
  std::set<std::string> seen;
  for (pugi::xml_node in : Children(list, "interface")) {
    Element ie(e.ctx(), in);
    ie.CheckAttributes({{"check"}, {"arpreroute"}, {"name"}});
    ie.CheckChildren({"real_interface"});
    VipInterface vi;
    ie.OnOff("check", &vi.check);
    ie.OnOff("arpreroute", &vi.arpreroute);
    if (auto name = ie.Get("name")) {
      if (name->empty() || name->size() > 15 || name->find_first_of("/ \t") != std::string::npos) {
        ie.BadValue("name", *name,
                    "expected a network interface name (at most 15 characters, no '/' or space)");
      }
      vi.name = *name;
    }
    pugi::xml_node real = OnlyChild(ie, "real_interface");
    if (!real) {
      ie.Error("missing <real_interface> in <interface>");
      continue;
    }
    Element re(e.ctx(), real);
    re.CheckAttributes({});
    re.CheckChildren({"virtual_addr"});
    for (pugi::xml_node va : Children(real, "virtual_addr")) {
      Element ve(e.ctx(), va);
      ve.CheckAttributes({{"addr"}, {"where"}});
      ve.CheckChildren({});
      VirtualAddr addr;
      if (auto a = ve.Required("addr")) {
        std::string err = ParseIpWithPrefix(*a, &addr.addr, &addr.family, &addr.prefix_len);
        if (!err.empty()) {
          if (*a == "VIRTUAL_TO_BE_DEFINED")
            err += "; replace VIRTUAL_TO_BE_DEFINED with the virtual IP address";
          ve.BadValue("addr", *a, err);
        } else if (!seen.insert(addr.addr).second) {
          ve.Error("addr", "virtual address " + addr.addr + " given twice");
        }
      }
      if (auto w = ve.Get("where")) {
        if (*w != "one_side_alias") {
          ve.BadValue(
              "where", *w,
              "a mirror module holds its virtual address on the primary only: expected one_side_alias");
        }
      }
      vi.addrs.push_back(std::move(addr));
    }
    if (vi.addrs.empty()) re.Error("no <virtual_addr> in <real_interface>");
    out->interfaces.push_back(std::move(vi));
  }
  if (out->interfaces.empty()) l.Error("no <interface> in <interface_list>");
}

void ParseErrd(Element& e, ErrdConfig* out) {
  e.CheckAttributes({{"polltimer"}});
  e.CheckChildren({"proc"});
  if (e.Duration("polltimer", std::chrono::seconds(1), &out->polltimer) && out->polltimer < Millis(100)) {
    e.BadValue("polltimer", e.Get("polltimer").value_or(""), "expected at least 100ms");
  }
  for (pugi::xml_node p : Children(e.node(), "proc")) {
    Element pe(e.ctx(), p);
    pe.CheckAttributes(
        {{"name"}, {"nameregex"}, {"argregex"}, {"atleast"}, {"atmax"}, {"action"}, {"class"}});
    pe.CheckChildren({});
    ProcWatch w;
    if (auto v = pe.Get("name")) w.name = *v;
    if (auto v = pe.Get("nameregex")) w.nameregex = *v;
    if (auto v = pe.Get("argregex")) w.argregex = *v;
    if (pe.Has("name") == pe.Has("nameregex")) {
      pe.Error("<proc> needs exactly one of 'name' and 'nameregex'");
    } else if (pe.Has("name") && w.name.empty()) {
      pe.BadValue("name", w.name, "expected a process name");
    }
    for (const char* attr : {"nameregex", "argregex"}) {
      if (auto v = pe.Get(attr)) {
        if (std::string err = RegexError(*v); !err.empty()) pe.BadValue(attr, *v, err);
      }
    }
    pe.Int("atleast", 0, 100000, &w.atleast);
    if (pe.Int("atmax", 0, 100000, &w.atmax) && pe.Has("atmax") && w.atmax < w.atleast) {
      pe.BadValue("atmax", *pe.Get("atmax"),
                  "must not be less than atleast (" + std::to_string(w.atleast) + ")");
    }
    if (w.atleast == 0 && !pe.Has("atmax")) {
      pe.Error("atleast", "atleast=\"0\" without atmax watches nothing");
    }
    pe.Enum("action", kActions, &w.action);
    pe.Enum("class", kRoleClasses, &w.klass);
    out->procs.push_back(std::move(w));
  }
}

}  // namespace hamirror::config
