#include "tests/integration/sql_client.h"

#include <mysql.h>

namespace hamirror::itest {

namespace {
// "'<statement>': <server message> (errno N)". Built with append: GCC 12 warns falsely (-Wrestrict)
// on "literal" + std::string temporaries.
Status SqlError(MYSQL* conn, const std::string& sql) {
  std::string msg(1, '\'');
  msg.append(sql, 0, 200).append("': ").append(mysql_error(conn));
  msg.append(" (errno ").append(std::to_string(mysql_errno(conn))).append(")");
  return Status::IoError(std::move(msg));
}
}  // namespace

SqlClient::~SqlClient() { Close(); }

void SqlClient::Close() {
  if (conn_ != nullptr) mysql_close(conn_);
  conn_ = nullptr;
}

std::string SqlTarget::ToString() const {
  if (host.empty()) return socket_path;
  return user + "@" + host + ":" + std::to_string(port);
}

Status SqlClient::Connect(const std::string& socket_path, const std::string& database, unsigned timeout_s) {
  SqlTarget target;
  target.socket_path = socket_path;
  return Connect(target, database, timeout_s);
}

Status SqlClient::Connect(const SqlTarget& target, const std::string& database, unsigned timeout_s,
                          unsigned read_timeout_s) {
  Close();
  conn_ = mysql_init(nullptr);
  if (conn_ == nullptr) return Status::Internal("mysql_init failed");
  // Bounded: a hung server must fail the test, not hang it.
  mysql_options(conn_, MYSQL_OPT_CONNECT_TIMEOUT, &timeout_s);
  mysql_options(conn_, MYSQL_OPT_READ_TIMEOUT, &read_timeout_s);
  mysql_options(conn_, MYSQL_OPT_WRITE_TIMEOUT, &read_timeout_s);
  const bool tcp = !target.host.empty();
  if (tcp) {
    unsigned protocol = MYSQL_PROTOCOL_TCP;
    mysql_options(conn_, MYSQL_OPT_PROTOCOL, &protocol);
  }
  if (mysql_real_connect(conn_, tcp ? target.host.c_str() : nullptr, target.user.c_str(),
                         target.password.empty() ? nullptr : target.password.c_str(),
                         database.empty() ? nullptr : database.c_str(), tcp ? target.port : 0,
                         tcp ? nullptr : target.socket_path.c_str(), 0) == nullptr) {
    Status s = Status::Unavailable("connect " + target.ToString() + ": " + mysql_error(conn_));
    Close();
    return s;
  }
  return Status::Ok();
}

Status SqlClient::Exec(const std::string& sql) {
  if (conn_ == nullptr) return Status::Unavailable("not connected");
  if (mysql_real_query(conn_, sql.data(), sql.size()) != 0) {
    return SqlError(conn_, sql);
  }
  // Drain any result so the connection stays usable.
  MYSQL_RES* res = mysql_store_result(conn_);
  if (res != nullptr) mysql_free_result(res);
  return Status::Ok();
}

Status SqlClient::Query(const std::string& sql, std::vector<Row>* rows) {
  rows->clear();
  if (conn_ == nullptr) return Status::Unavailable("not connected");
  if (mysql_real_query(conn_, sql.data(), sql.size()) != 0) {
    return SqlError(conn_, sql);
  }
  MYSQL_RES* res = mysql_store_result(conn_);
  if (res == nullptr) {
    if (mysql_field_count(conn_) != 0) return SqlError(conn_, sql);
    return Status::Ok();
  }
  unsigned n = mysql_num_fields(res);
  while (MYSQL_ROW r = mysql_fetch_row(res)) {
    unsigned long* len = mysql_fetch_lengths(res);
    Row row;
    for (unsigned i = 0; i < n; ++i) row.emplace_back(r[i] == nullptr ? "" : std::string(r[i], len[i]));
    rows->push_back(std::move(row));
  }
  mysql_free_result(res);
  return Status::Ok();
}

Status SqlClient::QueryValue(const std::string& sql, std::string* value) {
  std::vector<Row> rows;
  Status s = Query(sql, &rows);
  if (!s.ok()) return s;
  if (rows.empty() || rows[0].empty()) return Status::NotFound("'" + sql + "' returned no row");
  *value = rows[0][0];
  return Status::Ok();
}

}  // namespace hamirror::itest
