// Reading one XML element of a configuration file with uniform diagnostics: unknown attributes and
// children are errors, attributes without effect in hamirror are warnings, every value is
// macro-expanded (%NAME%) and parsed with a message naming the attribute and what is accepted.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <optional>
#include <pugixml.hpp>
#include <string>
#include <utility>
#include <vector>

#include "manager/config/config.h"
#include "manager/config/xml_file.h"

namespace hamirror::config {

// Shared by all elements of one file.
class FileContext {
 public:
  FileContext(const XmlFile& file, std::vector<Diagnostic>* diags) : file_(file), diags_(diags) {}

  const XmlFile& file() const { return file_; }
  void Error(int line, std::string msg);
  void Warning(int line, std::string msg);
  int errors() const { return errors_; }

  // Macros expanded in attribute values; nullptr (cluster.xml) = no expansion.
  void set_macros(const std::map<std::string, std::string>* macros) { macros_ = macros; }
  const std::map<std::string, std::string>* macros() const { return macros_; }

 private:
  const XmlFile& file_;
  std::vector<Diagnostic>* diags_;
  const std::map<std::string, std::string>* macros_ = nullptr;
  int errors_ = 0;
};

struct AttrSpec {
  const char* name;
  // nullptr: supported. Otherwise the attribute is accepted for SafeKit compatibility but has no
  // effect in hamirror, and this text says why (emitted as a warning when the attribute is present).
  const char* no_effect = nullptr;
};

class Element {
 public:
  Element(FileContext* ctx, pugi::xml_node node) : ctx_(ctx), node_(node) {}

  pugi::xml_node node() const { return node_; }
  std::string tag() const { return std::string("<") + node_.name() + ">"; }
  int line() const { return ctx_->file().LineOf(node_); }
  int line(const char* attr) const { return ctx_->file().LineOf(node_, attr); }
  FileContext* ctx() const { return ctx_; }

  // Errors for attributes not listed; warnings for listed no_effect ones that are present.
  void CheckAttributes(std::initializer_list<AttrSpec> specs);
  // Errors for child elements not listed and for non-blank text (unless allow_text).
  void CheckChildren(std::initializer_list<const char*> allowed, bool allow_text = false);

  bool Has(const char* attr) const { return static_cast<bool>(node_.attribute(attr)); }
  // Macro-expanded value; nullopt when absent or when expansion failed (already reported).
  std::optional<std::string> Get(const char* attr);
  // As Get, and reports "missing attribute" when absent.
  std::optional<std::string> Required(const char* attr);

  // Typed getters: leave *out untouched when absent; report invalid values. Return false on error.
  bool Duration(const char* attr, Millis default_unit, Millis* out);
  bool OnOff(const char* attr, bool* out);
  bool Int(const char* attr, std::int64_t min, std::int64_t max, int* out);
  bool Int64(const char* attr, std::int64_t min, std::int64_t max, std::int64_t* out);
  bool Size(const char* attr, std::uint64_t* out);
  template <typename E>
  bool Enum(const char* attr, std::initializer_list<std::pair<const char*, E>> values, E* out) {
    std::optional<std::string> v = Get(attr);
    if (!v) return !Has(attr);
    std::string accepted;
    for (const auto& [name, value] : values) {
      if (*v == name) {
        *out = value;
        return true;
      }
      accepted += accepted.empty() ? "" : ", ";
      accepted += name;
    }
    BadValue(attr, *v, "expected one of " + accepted);
    return false;
  }

  // "invalid value 'v' for attribute 'a' on <e>: reason"
  void BadValue(const char* attr, const std::string& value, const std::string& reason);
  void Error(const char* attr, std::string msg);  // at the attribute's line
  void Error(std::string msg);                    // at the element's line
  void Warning(std::string msg);

 private:
  FileContext* ctx_;
  pugi::xml_node node_;
};

// Children elements of node named `name`, in document order.
std::vector<pugi::xml_node> Children(const pugi::xml_node& node, const char* name);

}  // namespace hamirror::config
