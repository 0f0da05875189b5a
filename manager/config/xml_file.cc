#include "manager/config/xml_file.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>

namespace hamirror::config {

bool XmlFile::Load(const std::string& path, std::vector<Diagnostic>* diags) {
  path_ = path;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    diags->push_back({path, 0, std::string("cannot read file: ") + std::strerror(errno), Diagnostic::kError});
    return false;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  text_ = ss.str();
  line_starts_.assign(1, 0);
  for (std::size_t i = 0; i < text_.size(); ++i) {
    if (text_[i] == '\n') line_starts_.push_back(i + 1);
  }
  // parse_default keeps comments and the DOCTYPE out of the tree; in-situ unescaping never moves
  // node names, so offset_debug() stays an offset into text_.
  const pugi::xml_parse_result r =
      doc_.load_buffer(text_.data(), text_.size(), pugi::parse_default, pugi::encoding_utf8);
  if (!r) {
    diags->push_back(
        {path, LineOfOffset(r.offset), std::string("malformed XML: ") + r.description(), Diagnostic::kError});
    return false;
  }
  // pugixml accepts several top-level elements; an XML document has exactly one.
  int roots = 0;
  for (pugi::xml_node n = doc_.first_child(); n; n = n.next_sibling()) {
    if (n.type() == pugi::node_element && ++roots == 2) {
      diags->push_back(
          {path, LineOf(n),
           std::string("malformed XML: second root element <") + n.name() + "> (a document has exactly one)",
           Diagnostic::kError});
      return false;
    }
  }
  return true;
}

int XmlFile::LineOfOffset(std::ptrdiff_t offset) const {
  if (offset < 0) return 0;
  auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), static_cast<std::size_t>(offset));
  return static_cast<int>(it - line_starts_.begin());
}

int XmlFile::LineOf(const pugi::xml_node& node) const { return LineOfOffset(node.offset_debug()); }

int XmlFile::LineOf(const pugi::xml_node& node, const char* attr) const {
  const std::ptrdiff_t start = node.offset_debug();
  if (start < 0 || static_cast<std::size_t>(start) >= text_.size()) return LineOf(node);
  // Walk the start tag: name, then name="value" pairs, until '>' or '/>'.
  std::size_t i = static_cast<std::size_t>(start);
  auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  auto is_name_end = [&](char c) { return is_space(c) || c == '=' || c == '>' || c == '/'; };
  while (i < text_.size() && !is_name_end(text_[i])) ++i;  // element name
  const std::size_t attr_len = std::strlen(attr);
  while (i < text_.size()) {
    while (i < text_.size() && is_space(text_[i])) ++i;
    if (i >= text_.size() || text_[i] == '>' || text_[i] == '/') break;
    const std::size_t name_start = i;
    while (i < text_.size() && !is_name_end(text_[i])) ++i;
    if (i - name_start == attr_len && text_.compare(name_start, attr_len, attr) == 0) {
      return LineOfOffset(static_cast<std::ptrdiff_t>(name_start));
    }
    while (i < text_.size() && is_space(text_[i])) ++i;
    if (i < text_.size() && text_[i] == '=') ++i;
    while (i < text_.size() && is_space(text_[i])) ++i;
    if (i < text_.size() && (text_[i] == '"' || text_[i] == '\'')) {
      const char q = text_[i++];
      while (i < text_.size() && text_[i] != q) ++i;
      ++i;
    } else if (i == name_start) {
      break;  // not progressing: malformed beyond what pugixml accepted; give up
    }
  }
  return LineOf(node);
}

}  // namespace hamirror::config
