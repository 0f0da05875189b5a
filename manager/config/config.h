// Module configuration: parses and validates a SafeKit-compatible mirror module
// (MODULE_DIR/conf/userconfig.xml + MODULE_DIR/bin/ scripts) and the cluster file
// (cluster.xml: nodes and heartbeat networks) into plain structs.
//
// Every problem is reported as a Diagnostic "file:line: reason"; LoadModule returns
// non-ok when at least one error was found, and then *out must not be used to start
// anything. Warnings (settings accepted for compatibility but without effect in
// hamirror) never block. The full reference is docs/configuration.md.
//
// All durations are std::chrono::milliseconds whatever the unit in the file, so that
// consumers never convert. Macros (%NAME%) are already expanded in every string here.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "common/status.h"

namespace hamirror::config {

using Millis = std::chrono::milliseconds;

// Where the daemon looks for cluster.xml when none is given on the command line.
inline constexpr const char* kDefaultClusterFile = "/etc/hamirror/cluster.xml";
// Relative to the module directory.
inline constexpr const char* kUserconfigRelPath = "conf/userconfig.xml";
inline constexpr const char* kScriptsRelDir = "bin";
// Defaults of <hamirror tlsdir> and <heart keyfile> (the latter is kDefaultKeyDir/<module>/heartbeat.key).
inline constexpr const char* kDefaultTlsDir = "/etc/hamirror/tls";
inline constexpr const char* kDefaultKeyDir = "/etc/hamirror";
// The files of a TLS directory: the cluster's CA and this node's certificate and private key.
inline constexpr const char* kTlsCaFile = "ca.pem";
inline constexpr const char* kTlsCertFile = "node.pem";
inline constexpr const char* kTlsKeyFile = "node.key";

struct Diagnostic {
  enum Severity { kError, kWarning };
  std::string file;  // path as given to the loader (module_dir + "/conf/userconfig.xml", cluster file)
  int line = 0;      // 1-based; 0 when the problem is not tied to a line (e.g. file missing)
  std::string message;
  Severity severity = kError;

  // "file:line: reason" for errors, "file:line: warning: reason" for warnings
  // ("file: reason" when line is 0).
  std::string ToString() const;
};

// ---------------------------------------------------------------- cluster.xml

struct ClusterNode {
  std::string name;  // node name, unique in a lan; the same names appear in every lan
  std::string addr;  // numeric IPv4/IPv6 address of this node on this lan
};

struct Lan {
  std::string name;  // referenced by <heartbeat name="...">
  std::vector<ClusterNode> nodes;
  const ClusterNode* FindNode(const std::string& node_name) const;
};

struct Cluster {
  std::string file;
  std::vector<Lan> lans;
  const Lan* FindLan(const std::string& lan_name) const;
  // Node names in the order of the first lan (every lan must name the same nodes).
  std::vector<std::string> NodeNames() const;
};

// Parses and validates cluster.xml on its own (LoadModule calls it too).
Status LoadCluster(const std::string& cluster_file, Cluster* out, std::vector<Diagnostic>* diags);

// ---------------------------------------------------------------- userconfig.xml

// <service defaultprim="...">
enum class DefaultPrim {
  kAlone,     // "alone": the survivor stays primary when the peer comes back (no automatic swap back)
  kLastPrim,  // "lastprim": each node resumes its last role
  kNode,      // "<node name>": swap back to that node once it is reintegrated (see defaultprim_node)
};

struct ServiceConfig {
  DefaultPrim defaultprim = DefaultPrim::kAlone;
  std::string defaultprim_node;                   // set when defaultprim == kNode; a node of cluster.xml
  bool failover = true;                           // failover="off": the secondary goes WAIT instead of ALONE
  int maxloop = 3;                                // restarts (errd/checkers) allowed within loop_interval...
  Millis loop_interval = std::chrono::hours(24);  // ...then the module stops locally
  bool boot = false;                              // boot="on": start the module when hamirrord starts
};

struct Heartbeat {
  std::string name;                // lan name in cluster.xml
  std::string ident;               // free text; "flow" marks the replication network
  bool flow = false;               // ident == "flow" (or the first heartbeat when none is marked)
  std::vector<ClusterNode> nodes;  // copied from the lan, for convenience
};

struct HeartConfig {
  Millis pulse{700};                     // interval between two heartbeats sent on each network
  Millis timeout{30000};                 // peer lost when every network has been silent this long
  std::vector<Heartbeat> heartbeats;     // at least one; exactly one has flow == true
  const Heartbeat& FlowNetwork() const;  // the heartbeat with flow == true
  // keyfile="PATH": the shared heartbeat key (same file on both nodes, >= 16 bytes). Always set after
  // load; default /etc/hamirror/<module>/heartbeat.key. Must exist unless derived_key.
  std::string key_file;
  // auth="derived" (explicit opt-out): no key file, the key is derived from cluster.xml (weaker:
  // anyone who can read cluster.xml can forge heartbeats). Default auth="keyfile".
  bool derived_key = false;
};

struct VirtualAddr {
  std::string addr;     // numeric IPv4 or IPv6 address, without the prefix
  int family = 0;       // AF_INET or AF_INET6
  int prefix_len = -1;  // from "addr/len"; -1 when not given (VIP module: use the interface's prefix)
  std::string where = "one_side_alias";  // only value accepted for a mirror module
};

struct VipInterface {
  std::string name;         // optional interface name; empty = interface whose subnet holds the VIP
  bool check = false;       // check="on": verify periodically that the address is still held
  bool arpreroute = false;  // arpreroute="on": gratuitous ARP / unsolicited NA on takeover
  std::vector<VirtualAddr> addrs;
};

struct VipConfig {
  std::vector<VipInterface> interfaces;  // empty = no <vip> (no virtual address)
};

enum class RecoveryAction {
  kRestart,    // stop_prim + start_prim on this node (counted against maxloop)
  kStopStart,  // whole module stop then start on this node (a failover if the peer is ready)
  kStop,       // stop the module on this node
  kWait,       // go to WAIT until the resource is back (ping/intf checkers)
};

// When a watch/checker is active, by role.
enum class RoleClass {
  kPrim,    // PRIM and ALONE
  kSecond,  // SECOND
  kBoth,    // PRIM, ALONE and SECOND
  kPre,     // as soon as the module is started, also in WAIT
};

struct ProcWatch {
  std::string name;       // process name (comm, 15 chars max as in /proc/PID/comm) — empty if nameregex
  std::string nameregex;  // ECMAScript regex over the process name (alternative to name)
  std::string argregex;   // optional ECMAScript regex over the full command line
  int atleast = 1;        // fewer running processes than this = failure
  int atmax = -1;         // more than this = failure; -1 = no maximum
  RecoveryAction action = RecoveryAction::kRestart;  // restart | stopstart | stop
  RoleClass klass = RoleClass::kPrim;
};

struct ErrdConfig {
  Millis polltimer{10000};
  std::vector<ProcWatch> procs;
};

enum class AsyncMode {
  kNone,    // async="none": the peer acknowledges after applying the change
  kSecond,  // async="second": the peer acknowledges on receipt, before applying it
};

struct NotReplicated {
  std::string path;       // relative to the replicated dir ("" when regexpath is used)
  std::string regexpath;  // ECMAScript regex over the path relative to the replicated dir
};

struct ReplicatedDir {
  std::string dir;  // absolute, normalised (no trailing '/'), exists at load time
  // mode="read_only" (default): secondary copy not writable by local programs. "read_write" is
  // accepted with a warning: hamirror's secondary is read-only whatever this says.
  bool read_only = true;
  // directio="all": every handle opened for writing bypasses the mount's page cache (hamirror-fs
  // --direct-io all); "odirect" (default): only handles opened with O_DIRECT.
  bool direct_io_all = false;
  std::vector<NotReplicated> notreplicated;
};

struct RfsConfig {
  // encryption="off" (explicit opt-out): the replication link runs in clear (hamirror-fs --insecure).
  // Default "on": mutual TLS with the files of HamirrorSettings::tls_dir, which must then exist.
  bool encryption = true;
  AsyncMode async = AsyncMode::kNone;
  int nbrei = 3;                              // parallel reintegration workers
  std::uint64_t reiallowedbw_kbps = 0;        // reintegration bandwidth cap in KB/s; 0 = unlimited
  Millis sendtimeout{30000};                  // peer ack deadline before going alone
  Millis locktimeout{100000};                 // accepted (SafeKit); see docs for its effect
  std::uint64_t ruzone_blocksize = 1u << 20;  // dirty-zone size in bytes (power of two, >= 4 KiB)
  int namespacepolicy = 0;                    // accepted for compatibility (warning when set)
  Millis syncdelta{0};                        // mtime grace period for modified-file detection after a crash
  // keepmounted="on": a stopped module keeps its directories mounted read-only (hamirror-fs as
  // secondary); "off" (default): hamirror-fs is stopped and the directories are the plain local ones.
  bool keep_mounted = false;
  std::vector<ReplicatedDir> replicated;  // at least one when <rfs> is present
};

struct TcpCheck {
  std::string ident;
  RoleClass when = RoleClass::kPrim;
  std::string addr;  // numeric address
  int port = 0;
  Millis interval{10000};
  Millis timeout{5000};
  RecoveryAction action = RecoveryAction::kRestart;
};

struct PingCheck {
  std::string ident;
  RoleClass when = RoleClass::kBoth;
  std::vector<std::string> addrs;  // one <to> each; resource down when none answers
  Millis interval{10000};
  Millis timeout{5000};
  RecoveryAction action = RecoveryAction::kWait;
};

struct IntfCheck {
  std::string ident;
  RoleClass when = RoleClass::kBoth;
  std::string interface;  // network interface name; down when link is down
  Millis interval{10000};
  RecoveryAction action = RecoveryAction::kWait;
};

struct CustomCheck {
  std::string ident;
  RoleClass when = RoleClass::kPrim;
  std::string exec;  // absolute path (relative names are resolved in MODULE_DIR/bin)
  std::string arg;   // split on spaces into argv
  Millis interval{10000};
  Millis timeout{10000};
  RecoveryAction action = RecoveryAction::kRestart;
};

struct SplitBrainWitness {
  std::string ident = "witness";
  std::vector<std::string> addrs;  // numeric addresses pinged when every heartbeat is lost
};

struct CheckConfig {
  std::vector<TcpCheck> tcp;
  std::vector<PingCheck> ping;
  std::vector<IntfCheck> intf;
  std::vector<CustomCheck> custom;
};

struct UserConfig {
  Millis nicestoptimeout{300000};   // a stop script running longer is re-run with "force"
  Millis forcestoptimeout{300000};  // the "force" run is killed after this
  bool logging = true;              // logging="userlog": script output goes to the module log; "none"
  std::vector<std::pair<std::string, std::string>> vars;  // exported to scripts, in file order
};

// Scripts found in MODULE_DIR/bin (absolute paths; empty when absent).
struct Scripts {
  std::string prestart, start_prim, stop_prim, start_second, stop_second, start_both, stop_both, poststop;
};

// What to do when both nodes wrote since they parted (the loser's changes always go to quarantine).
enum class SplitBrainPolicy {
  kManual,  // "manual" (the only one built): both wait, the operator chooses (prim/second)
};

// hamirror-only settings (optional <hamirror> element under <service>); SafeKit has fixed values.
struct HamirrorSettings {
  int heartbeat_port = 4800;    // UDP, on every heartbeat network
  int replication_port = 4801;  // TCP (mutual TLS) on the flow network
  std::string state_dir;        // always set after load; default /var/lib/hamirror/<module_name>
  std::string tls_dir;          // always set after load; default /etc/hamirror/tls (ca.pem node.pem node.key)
  SplitBrainPolicy splitbrain_policy = SplitBrainPolicy::kManual;
};

struct ModuleConfig {
  std::string module_dir;   // absolute
  std::string module_name;  // basename of module_dir
  std::string userconfig_file;
  Cluster cluster;
  ServiceConfig service;
  HeartConfig heart;
  VipConfig vip;
  ErrdConfig errd;
  RfsConfig rfs;
  CheckConfig check;
  bool has_splitbrain = false;
  SplitBrainWitness splitbrain;
  UserConfig user;
  Scripts scripts;
  HamirrorSettings hamirror;
  std::map<std::string, std::string> macros;  // as defined, already applied
};

struct LoadOptions {
  // Prepended to absolute paths when checking that they exist (replicated dirs, TLS files, heartbeat
  // key), so tests can load a production configuration ("/var/lib/mysql") against a scratch tree.
  // Empty in production.
  std::string path_root;
};

// Loads MODULE_DIR/conf/userconfig.xml against cluster_file (kDefaultClusterFile if empty),
// checks bin/ scripts, replicated directories and the security files (TLS files when <rfs> has
// encryption on, the heartbeat key unless auth="derived"). Appends every problem to *diags (may be
// nullptr). Returns InvalidArgument("N error(s) in configuration") when any error was found.
Status LoadModule(const std::string& module_dir, const std::string& cluster_file, ModuleConfig* out,
                  std::vector<Diagnostic>* diags);
Status LoadModule(const std::string& module_dir, const std::string& cluster_file, const LoadOptions& options,
                  ModuleConfig* out, std::vector<Diagnostic>* diags);

// `hamirror confcheck MODULE_DIR [--cluster FILE]`: prints every diagnostic, one per line, then a
// summary line ("configuration OK (N warning(s))" / "N error(s), M warning(s)"). Returns the exit
// code: 0 when no error, 1 when errors were found.
int RunConfcheck(const std::string& module_dir, const std::string& cluster_file, std::ostream& out);

// Helpers shared with the CLI/daemon.
const char* ToString(DefaultPrim v);
const char* ToString(RecoveryAction v);
const char* ToString(RoleClass v);
const char* ToString(AsyncMode v);
const char* ToString(SplitBrainPolicy v);

}  // namespace hamirror::config
