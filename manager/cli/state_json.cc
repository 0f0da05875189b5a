// `hamirror state --json`: the StateReply written through protobuf reflection, so that every field
// is there under its proto name (docs/operations.md), with values a script can rely on: enum values
// in lower case without their type prefix (NODE_STATE_PRIM -> "prim"), 64-bit integers as numbers
// (protobuf's own JSON quotes them), every field printed (an unset message as null).
#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "manager/cli/format.h"

namespace hamirror::cli {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

void AppendQuoted(std::string_view s, std::string* out) {
  out->push_back('"');
  for (const char c : s) {
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(c);
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned char>(c));
      out->append(buf);
    } else {
      out->push_back(c);
    }
  }
  out->push_back('"');
}

// "NodeState" -> "NODE_STATE_": the prefix every value of the enum carries.
std::string EnumPrefix(const std::string& type_name) {
  std::string prefix;
  for (size_t i = 0; i < type_name.size(); ++i) {
    if (i > 0 && std::isupper(static_cast<unsigned char>(type_name[i]))) prefix.push_back('_');
    prefix.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(type_name[i]))));
  }
  return prefix + "_";
}

// NODE_STATE_PRIM -> "prim", DATA_STATE_UP_TO_DATE -> "up_to_date" (values without the prefix: as is).
std::string EnumValue(const FieldDescriptor* f, int number) {
  const auto* v = f->enum_type()->FindValueByNumber(number);
  if (v == nullptr) return std::to_string(number);
  std::string name = v->name();
  const std::string prefix = EnumPrefix(f->enum_type()->name());
  if (name.size() > prefix.size() && name.compare(0, prefix.size(), prefix) == 0)
    name.erase(0, prefix.size());
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

void AppendDouble(double d, std::string* out) {
  if (!std::isfinite(d)) {
    out->append("null");
    return;
  }
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, d);
  out->append(buf, r.ptr);
}

void AppendMessage(const Message& m, int indent, std::string* out);

// One value of field f (element `index` of a repeated field, -1 for a singular one).
void AppendValue(const Message& m, const FieldDescriptor* f, int index, int indent, std::string* out) {
  const Reflection* r = m.GetReflection();
  const bool rep = index >= 0;
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      out->append(std::to_string(rep ? r->GetRepeatedInt32(m, f, index) : r->GetInt32(m, f)));
      break;
    case FieldDescriptor::CPPTYPE_INT64:
      out->append(std::to_string(rep ? r->GetRepeatedInt64(m, f, index) : r->GetInt64(m, f)));
      break;
    case FieldDescriptor::CPPTYPE_UINT32:
      out->append(std::to_string(rep ? r->GetRepeatedUInt32(m, f, index) : r->GetUInt32(m, f)));
      break;
    case FieldDescriptor::CPPTYPE_UINT64:
      out->append(std::to_string(rep ? r->GetRepeatedUInt64(m, f, index) : r->GetUInt64(m, f)));
      break;
    case FieldDescriptor::CPPTYPE_DOUBLE:
      AppendDouble(rep ? r->GetRepeatedDouble(m, f, index) : r->GetDouble(m, f), out);
      break;
    case FieldDescriptor::CPPTYPE_FLOAT:
      AppendDouble(rep ? r->GetRepeatedFloat(m, f, index) : r->GetFloat(m, f), out);
      break;
    case FieldDescriptor::CPPTYPE_BOOL:
      out->append((rep ? r->GetRepeatedBool(m, f, index) : r->GetBool(m, f)) ? "true" : "false");
      break;
    case FieldDescriptor::CPPTYPE_ENUM:
      AppendQuoted(EnumValue(f, rep ? r->GetRepeatedEnumValue(m, f, index) : r->GetEnumValue(m, f)), out);
      break;
    case FieldDescriptor::CPPTYPE_STRING:
      AppendQuoted(rep ? r->GetRepeatedString(m, f, index) : r->GetString(m, f), out);
      break;
    case FieldDescriptor::CPPTYPE_MESSAGE:
      if (!rep && !r->HasField(m, f))
        out->append("null");
      else
        AppendMessage(rep ? r->GetRepeatedMessage(m, f, index) : r->GetMessage(m, f), indent, out);
      break;
  }
}

void AppendField(const Message& m, const FieldDescriptor* f, int indent, std::string* out) {
  const std::string pad(indent, ' ');
  out->append(pad);
  AppendQuoted(f->name(), out);
  out->append(": ");
  if (!f->is_repeated()) return AppendValue(m, f, -1, indent, out);
  const int n = m.GetReflection()->FieldSize(m, f);
  if (n == 0) {
    out->append("[]");
    return;
  }
  out->append("[\n");
  for (int i = 0; i < n; ++i) {
    out->append(pad + "  ");
    AppendValue(m, f, i, indent + 2, out);
    out->append(i + 1 < n ? ",\n" : "\n");
  }
  out->append(pad + "]");
}

void AppendMessage(const Message& m, int indent, std::string* out) {
  const auto* d = m.GetDescriptor();
  out->append("{\n");
  for (int i = 0; i < d->field_count(); ++i) {
    AppendField(m, d->field(i), indent + 2, out);
    out->append(i + 1 < d->field_count() ? ",\n" : "\n");
  }
  out->append(std::string(indent, ' ') + "}");
}

}  // namespace

std::string FormatStateJson(const proto::StateReply& reply) {
  std::string out;
  AppendMessage(reply, 0, &out);
  out.push_back('\n');
  return out;
}

}  // namespace hamirror::cli
