// RegexError: does a configured regular expression compile (ECMAScript, as std::regex uses it)?
// Kept alone in this file because GCC 12 with -fsanitize=address reports -Wmaybe-uninitialized
// inside libstdc++'s regex compiler (a false positive in the library's own code); the pragma must
// not hide anything in the rest of the parser.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <regex>

#include "manager/config/sections.h"

namespace hamirror::config {

std::string RegexError(const std::string& re) {
  try {
    std::regex r(re, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    return std::string("not a valid regular expression (") + e.what() + ")";
  }
  return "";
}

}  // namespace hamirror::config
