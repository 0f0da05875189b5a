// One configuration file: its text, its pugixml tree, and file:line for any node or attribute.
// pugixml only gives byte offsets of nodes; lines are computed from the text we kept.
#pragma once

#include <cstddef>
#include <pugixml.hpp>
#include <string>
#include <vector>

#include "manager/config/config.h"

namespace hamirror::config {

class XmlFile {
 public:
  // Reads and parses path. On failure (missing file, malformed XML) appends an error with the
  // line where parsing stopped and returns false.
  bool Load(const std::string& path, std::vector<Diagnostic>* diags);

  const std::string& path() const { return path_; }
  const pugi::xml_document& doc() const { return doc_; }

  int LineOfOffset(std::ptrdiff_t offset) const;
  int LineOf(const pugi::xml_node& node) const;
  // Line of attribute `attr` in node's start tag (attributes may be spread over several lines);
  // the node's line when not found.
  int LineOf(const pugi::xml_node& node, const char* attr) const;

 private:
  std::string path_;
  std::string text_;
  std::vector<std::size_t> line_starts_;  // byte offset of the first character of each line
  pugi::xml_document doc_;
};

}  // namespace hamirror::config
