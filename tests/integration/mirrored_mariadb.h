// MirroredMariaDb: the set-up the replicated MariaDB tests share. A temporary directory holding a
// MirrorPair (hamirror-fs secondary and primary on 127.0.0.1) and two MariaDB servers: one whose datadir
// is the primary mount, one whose datadir is the secondary's copy (started once the secondary stopped).
// Members are destroyed in reverse order: the servers first, then the pair, then the directory.
#pragma once

#include <string>

#include "common/status.h"
#include "tests/integration/mariadb_server.h"
#include "tests/integration/mirror_pair.h"
#include "tests/support/daemon.h"

namespace hamirror::itest {

struct MirroredMariaDb {
  // tmp_prefix names the temporary directory, e.g. "hm-crash".
  explicit MirroredMariaDb(const std::string& tmp_prefix);

  // Starts the pair (both mounted, peer connected), creates both run directories, installs the system
  // tables on the primary mount and starts MariaDB there. The status says which step failed.
  Status StartPrimary();

  test::TempDir tmp;
  MirrorPair pair;
  MariaDbServer primary_db;    // datadir: the primary mount, run dir tmp/run-p
  MariaDbServer secondary_db;  // datadir: the secondary's directory, run dir tmp/run-s
};

}  // namespace hamirror::itest
