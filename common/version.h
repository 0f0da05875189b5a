// The version every binary prints for --version: CMake's project(VERSION), plus the git commit when
// the build was configured from a checkout.
#pragma once

#include <string>

namespace hamirror {

// "<program> 0.1.0 (git e849e41)", or "<program> 0.1.0" when built from a source tree without git.
std::string VersionLine(const std::string& program);

}  // namespace hamirror
