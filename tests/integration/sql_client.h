// SqlClient: a minimal MariaDB connection (libmariadb C API) over the server's unix socket or TCP,
// for test setup, checks and the bank workload. Errors come back as Status with the server's message.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"

struct st_mysql;

namespace hamirror::itest {

using Row = std::vector<std::string>;  // NULL reads as ""

// Where a server is: its unix socket (as root, unix_socket authentication), or host:port with a user.
struct SqlTarget {
  std::string socket_path;  // used when host is empty
  std::string host;
  int port = 3306;
  std::string user = "root";
  std::string password;
  std::string ToString() const;
};

class SqlClient {
 public:
  SqlClient() = default;
  ~SqlClient();
  SqlClient(const SqlClient&) = delete;
  SqlClient& operator=(const SqlClient&) = delete;

  // Connects as root (unix_socket authentication: the tests run as root).
  Status Connect(const std::string& socket_path, const std::string& database = "", unsigned timeout_s = 10);
  // read_timeout_s bounds every statement: a server that vanished (power loss) must not hang a client.
  Status Connect(const SqlTarget& target, const std::string& database, unsigned timeout_s,
                 unsigned read_timeout_s = 120);
  void Close();
  bool connected() const { return conn_ != nullptr; }

  Status Exec(const std::string& sql);
  Status Query(const std::string& sql, std::vector<Row>* rows);
  // First column of the first row; NotFound if there is no row.
  Status QueryValue(const std::string& sql, std::string* value);

 private:
  st_mysql* conn_ = nullptr;
};

}  // namespace hamirror::itest
