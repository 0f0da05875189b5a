// Runs sysbench's oltp_write_only against a MariaDbServer's socket (database sbtest, as root).
#pragma once

#include <string>

#include "common/status.h"

namespace hamirror::itest {

struct SysbenchOptions {
  int tables = 4;
  int table_size = 10000;
  int threads = 4;
  int seconds = 20;
};

// CREATE DATABASE sbtest + sysbench prepare.
Status SysbenchPrepare(const std::string& socket_path, const SysbenchOptions& o, const std::string& log_path);
// sysbench run; *tps from its "transactions: N (X per sec.)" line.
Status SysbenchRun(const std::string& socket_path, const SysbenchOptions& o, const std::string& log_path,
                   double* tps);

}  // namespace hamirror::itest
