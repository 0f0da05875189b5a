// cluster.xml: the nodes of the cluster and their address on each network (lan).
#include <cstring>
#include <set>

#include "manager/config/config.h"
#include "manager/config/element.h"
#include "manager/config/values.h"
#include "manager/config/xml_file.h"

namespace hamirror::config {

const ClusterNode* Lan::FindNode(const std::string& node_name) const {
  for (const ClusterNode& n : nodes) {
    if (n.name == node_name) return &n;
  }
  return nullptr;
}

const Lan* Cluster::FindLan(const std::string& lan_name) const {
  for (const Lan& l : lans) {
    if (l.name == lan_name) return &l;
  }
  return nullptr;
}

std::vector<std::string> Cluster::NodeNames() const {
  std::vector<std::string> names;
  if (!lans.empty()) {
    for (const ClusterNode& n : lans.front().nodes) names.push_back(n.name);
  }
  return names;
}

namespace {

bool ValidName(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) return false;
  }
  return true;
}

constexpr const char* kConsoleNoEffect = "hamirror has no web console; the admin API serves every lan";

}  // namespace

Status LoadCluster(const std::string& cluster_file, Cluster* out, std::vector<Diagnostic>* diags) {
  std::vector<Diagnostic> local;
  if (diags == nullptr) diags = &local;
  *out = Cluster();
  out->file = cluster_file;
  XmlFile file;
  if (!file.Load(cluster_file, diags)) return Status::InvalidArgument("cannot load " + cluster_file);
  FileContext ctx(file, diags);

  pugi::xml_node root = file.doc().document_element();
  if (std::strcmp(root.name(), "cluster") != 0) {
    ctx.Error(file.LineOf(root), std::string("root element must be <cluster>, found <") + root.name() + ">");
    return Status::InvalidArgument("invalid " + cluster_file);
  }
  Element cluster(&ctx, root);
  cluster.CheckAttributes({});
  cluster.CheckChildren({"lans"});
  std::vector<pugi::xml_node> lans_nodes = Children(root, "lans");
  if (lans_nodes.empty()) cluster.Error("missing <lans> in <cluster>");
  if (lans_nodes.size() > 1) Element(&ctx, lans_nodes[1]).Error("duplicate <lans> in <cluster>");

  if (!lans_nodes.empty()) {
    Element lans(&ctx, lans_nodes[0]);
    lans.CheckAttributes({});
    lans.CheckChildren({"lan"});
    std::vector<pugi::xml_node> lan_nodes = Children(lans_nodes[0], "lan");
    if (lan_nodes.empty()) lans.Error("no <lan> in <lans>: at least one network is needed");
    for (pugi::xml_node lan_node : lan_nodes) {
      Element e(&ctx, lan_node);
      e.CheckAttributes({{"name"},
                         {"console", kConsoleNoEffect},
                         {"command", kConsoleNoEffect},
                         {"framework", "hamirror runs one daemon per node whatever the lan"}});
      e.CheckChildren({"node"});
      Lan lan;
      if (auto name = e.Required("name")) {
        lan.name = *name;
        if (!ValidName(lan.name)) {
          e.BadValue("name", lan.name, "letters, digits, '-', '_' and '.' only");
        } else if (out->FindLan(lan.name) != nullptr) {
          e.Error("name", "duplicate lan name '" + lan.name + "'");
        }
      }
      bool b;
      e.OnOff("console", &b);
      e.OnOff("command", &b);
      e.OnOff("framework", &b);
      std::set<std::string> addrs;
      for (pugi::xml_node node_node : Children(lan_node, "node")) {
        Element n(&ctx, node_node);
        n.CheckAttributes({{"name"}, {"addr"}});
        n.CheckChildren({});
        ClusterNode node;
        if (auto name = n.Required("name")) {
          node.name = *name;
          if (!ValidName(node.name)) {
            n.BadValue("name", node.name, "letters, digits, '-', '_' and '.' only");
          } else if (lan.FindNode(node.name) != nullptr) {
            n.Error("name", "duplicate node '" + node.name + "' in lan '" + lan.name + "'");
          }
        }
        if (auto addr = n.Required("addr")) {
          int family;
          node.addr = *addr;
          if (std::string err = ParseIpAddress(*addr, &family); !err.empty()) {
            n.BadValue("addr", *addr, err);
          } else if (!addrs.insert(*addr).second) {
            n.Error("addr", "address " + *addr + " given to two nodes in lan '" + lan.name + "'");
          }
        }
        lan.nodes.push_back(node);
      }
      if (lan.nodes.size() != 2) {
        e.Error("lan '" + lan.name + "' has " + std::to_string(lan.nodes.size()) +
                " node(s): a mirror cluster has exactly 2");
      } else if (!out->lans.empty()) {
        // Every network must join the same two nodes, or heartbeats would not mean "peer alive".
        std::set<std::string> a, b2;
        for (const auto& n : out->lans.front().nodes) a.insert(n.name);
        for (const auto& n : lan.nodes) b2.insert(n.name);
        if (a != b2) {
          e.Error("lan '" + lan.name + "' names other nodes than lan '" + out->lans.front().name +
                  "': every lan must list the same nodes");
        }
      }
      out->lans.push_back(std::move(lan));
    }
  }
  if (ctx.errors() > 0) {
    return Status::InvalidArgument(std::to_string(ctx.errors()) + " error(s) in " + cluster_file);
  }
  return Status::Ok();
}

}  // namespace hamirror::config
