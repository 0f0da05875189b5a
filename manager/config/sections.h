// Parsers of the sections of userconfig.xml. Each reads one element (and its subtree) into
// ModuleConfig, reporting through the Element's FileContext. Internal to manager/config.
#pragma once

#include <string>

#include "manager/config/config.h"
#include "manager/config/element.h"

namespace hamirror::config {

struct ParseEnv {
  const Cluster* cluster = nullptr;  // nullptr when cluster.xml failed: skip cross-checks against it
  std::string module_dir;            // absolute
  LoadOptions options;
};

// The <safe> root and everything below it.
void ParseSafe(Element& safe, const ParseEnv& env, ModuleConfig* out);

void ParseService(Element& e, const ParseEnv& env, ModuleConfig* out);
void ParseHeart(Element& e, const ParseEnv& env, HeartConfig* out);
void ParseVip(Element& e, VipConfig* out);
void ParseErrd(Element& e, ErrdConfig* out);
void ParseRfs(Element& e, const ParseEnv& env, RfsConfig* out);
void ParseCheck(Element& e, const ParseEnv& env, ModuleConfig* out);
void ParseSplitBrain(Element& e, ModuleConfig* out);
void ParseUser(Element& e, UserConfig* out);
void ParseHamirror(Element& e, HamirrorSettings* out);
// After the whole <service> e is parsed: sets the defaults of tlsdir and keyfile and checks that the
// TLS files (when <rfs> has encryption on) and the heartbeat key (unless auth="derived") are usable.
void CheckSecurityFiles(Element& e, const ParseEnv& env, ModuleConfig* out);

// Shared helpers.
// The single child `name` of e, or an empty node; reports duplicates.
pugi::xml_node OnlyChild(Element& e, const char* name);
// [A-Za-z_][A-Za-z0-9_]*
bool IsIdentifier(const std::string& s);
// Compiles an ECMAScript regex; returns the error text or "".
std::string RegexError(const std::string& re);
// Resolves a script name: absolute as is, otherwise MODULE_DIR/bin/name. Reports when missing or
// not executable. Returns the resolved path.
std::string CheckExecutable(Element& e, const char* attr, const std::string& value, const ParseEnv& env);

inline constexpr std::initializer_list<std::pair<const char*, RecoveryAction>> kActions = {
    {"restart", RecoveryAction::kRestart},
    {"stopstart", RecoveryAction::kStopStart},
    {"stop", RecoveryAction::kStop}};
inline constexpr std::initializer_list<std::pair<const char*, RecoveryAction>> kCheckActions = {
    {"restart", RecoveryAction::kRestart},
    {"stopstart", RecoveryAction::kStopStart},
    {"stop", RecoveryAction::kStop},
    {"wait", RecoveryAction::kWait}};
inline constexpr std::initializer_list<std::pair<const char*, RoleClass>> kRoleClasses = {
    {"prim", RoleClass::kPrim},
    {"both", RoleClass::kBoth},
    {"second", RoleClass::kSecond},
    {"pre", RoleClass::kPre}};

}  // namespace hamirror::config
