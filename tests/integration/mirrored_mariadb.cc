#include "tests/integration/mirrored_mariadb.h"

#include "tests/integration/test_env.h"

namespace hamirror::itest {
namespace {
MariaDbOptions DbOptions(std::string datadir, std::string rundir) {
  MariaDbOptions o;
  o.datadir = std::move(datadir);
  o.rundir = std::move(rundir);
  return o;
}
}  // namespace

MirroredMariaDb::MirroredMariaDb(const std::string& tmp_prefix)
    : tmp(tmp_prefix),
      pair(tmp.Sub("m")),
      primary_db(DbOptions(pair.primary_dir(), tmp.Sub("run-p"))),
      secondary_db(DbOptions(pair.secondary_dir(), tmp.Sub("run-s"))) {}

Status MirroredMariaDb::StartPrimary() {
  Status s = pair.Start();
  if (!s.ok()) return s;
  for (const auto* db : {&primary_db, &secondary_db}) {
    if (s = MakeDirs(db->options().rundir); !s.ok()) return s;
  }
  if (s = primary_db.InstallDb(); !s.ok())
    return Status::IoError("install-db on the primary: " + s.ToString());
  if (s = primary_db.Start(); !s.ok()) return Status::IoError("mariadbd on the primary: " + s.ToString());
  return Status::Ok();
}

}  // namespace hamirror::itest
