#include "manager/config/element.h"

#include <cctype>
#include <cstring>

#include "manager/config/values.h"

namespace hamirror::config {

void FileContext::Error(int line, std::string msg) {
  ++errors_;
  diags_->push_back({file_.path(), line, std::move(msg), Diagnostic::kError});
}

void FileContext::Warning(int line, std::string msg) {
  diags_->push_back({file_.path(), line, std::move(msg), Diagnostic::kWarning});
}

void Element::CheckAttributes(std::initializer_list<AttrSpec> specs) {
  for (pugi::xml_attribute a = node_.first_attribute(); a; a = a.next_attribute()) {
    const AttrSpec* found = nullptr;
    for (const AttrSpec& s : specs) {
      if (std::strcmp(s.name, a.name()) == 0) found = &s;
    }
    if (found == nullptr) {
      std::string accepted;
      for (const AttrSpec& s : specs) accepted += std::string(accepted.empty() ? "" : ", ") + s.name;
      ctx_->Error(line(a.name()),
                  std::string("unknown attribute '") + a.name() + "' on " + tag() +
                      (accepted.empty() ? " (it takes none)" : " (accepted: " + accepted + ")"));
    } else if (found->no_effect != nullptr) {
      ctx_->Warning(line(a.name()), std::string("attribute '") + a.name() + "' on " + tag() +
                                        " has no effect in hamirror: " + found->no_effect);
    }
  }
}

void Element::CheckChildren(std::initializer_list<const char*> allowed, bool allow_text) {
  for (pugi::xml_node c = node_.first_child(); c; c = c.next_sibling()) {
    if (c.type() == pugi::node_element) {
      bool ok = false;
      for (const char* name : allowed) ok = ok || std::strcmp(name, c.name()) == 0;
      if (!ok) {
        std::string accepted;
        for (const char* name : allowed) accepted += std::string(accepted.empty() ? "<" : ", <") + name + ">";
        ctx_->Error(ctx_->file().LineOf(c),
                    std::string("unknown element <") + c.name() + "> in " + tag() +
                        (accepted.empty() ? " (it takes none)" : " (accepted: " + accepted + ")"));
      }
    } else if ((c.type() == pugi::node_pcdata || c.type() == pugi::node_cdata) && !allow_text) {
      const char* t = c.value();
      bool blank = true;
      for (; *t != '\0'; ++t) blank = blank && std::isspace(static_cast<unsigned char>(*t));
      if (!blank) Error("unexpected text inside " + tag());
    }
  }
}

std::optional<std::string> Element::Get(const char* attr) {
  pugi::xml_attribute a = node_.attribute(attr);
  if (!a) return std::nullopt;
  const std::string raw = a.value();
  const auto* macros = ctx_->macros();
  if (macros == nullptr || raw.find('%') == std::string::npos) return raw;
  // %NAME% with NAME = [A-Za-z_][A-Za-z0-9_]*; any other '%' is literal.
  std::string out;
  bool ok = true;
  std::size_t i = 0;
  while (i < raw.size()) {
    if (raw[i] == '%') {
      std::size_t j = i + 1;
      while (j < raw.size() && (std::isalnum(static_cast<unsigned char>(raw[j])) || raw[j] == '_')) ++j;
      const bool ident = j > i + 1 && j < raw.size() && raw[j] == '%' &&
                         !std::isdigit(static_cast<unsigned char>(raw[i + 1]));
      if (ident) {
        const std::string name = raw.substr(i + 1, j - i - 1);
        auto it = macros->find(name);
        if (it == macros->end()) {
          Error(attr, "undefined macro %" + name + "% in attribute '" + attr + "' on " + tag() +
                          " (define it with <macro name=\"" + name + "\" value=\"...\"/>)");
          ok = false;
        } else {
          out += it->second;
        }
        i = j + 1;
        continue;
      }
    }
    out += raw[i++];
  }
  if (!ok) return std::nullopt;
  return out;
}

std::optional<std::string> Element::Required(const char* attr) {
  if (!Has(attr)) {
    Error(std::string("missing attribute '") + attr + "' on " + tag());
    return std::nullopt;
  }
  return Get(attr);
}

void Element::BadValue(const char* attr, const std::string& value, const std::string& reason) {
  Error(attr, "invalid value '" + value + "' for attribute '" + attr + "' on " + tag() + ": " + reason);
}

void Element::Error(const char* attr, std::string msg) { ctx_->Error(line(attr), std::move(msg)); }
void Element::Error(std::string msg) { ctx_->Error(line(), std::move(msg)); }
void Element::Warning(std::string msg) { ctx_->Warning(line(), std::move(msg)); }

bool Element::Duration(const char* attr, Millis default_unit, Millis* out) {
  std::optional<std::string> v = Get(attr);
  if (!v) return !Has(attr);
  if (std::string err = ParseDuration(*v, default_unit, out); !err.empty()) {
    BadValue(attr, *v, err);
    return false;
  }
  return true;
}

bool Element::OnOff(const char* attr, bool* out) {
  std::optional<std::string> v = Get(attr);
  if (!v) return !Has(attr);
  if (std::string err = ParseOnOff(*v, out); !err.empty()) {
    BadValue(attr, *v, err);
    return false;
  }
  return true;
}

bool Element::Int64(const char* attr, std::int64_t min, std::int64_t max, std::int64_t* out) {
  std::optional<std::string> v = Get(attr);
  if (!v) return !Has(attr);
  if (std::string err = ParseInt(*v, min, max, out); !err.empty()) {
    BadValue(attr, *v, err);
    return false;
  }
  return true;
}

bool Element::Int(const char* attr, std::int64_t min, std::int64_t max, int* out) {
  std::int64_t v = *out;
  if (!Int64(attr, min, max, &v)) return false;
  *out = static_cast<int>(v);
  return true;
}

bool Element::Size(const char* attr, std::uint64_t* out) {
  std::optional<std::string> v = Get(attr);
  if (!v) return !Has(attr);
  if (std::string err = ParseSize(*v, out); !err.empty()) {
    BadValue(attr, *v, err);
    return false;
  }
  return true;
}

std::vector<pugi::xml_node> Children(const pugi::xml_node& node, const char* name) {
  std::vector<pugi::xml_node> r;
  for (pugi::xml_node c = node.child(name); c; c = c.next_sibling(name)) r.push_back(c);
  return r;
}

}  // namespace hamirror::config
