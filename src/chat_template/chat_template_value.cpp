// Python semantics for chat-template values: truthiness, ==, <, str(), repr(),
// json.dumps, and the UTF-8 helpers behind code-point indexing.
#include "chat_template/chat_template_value.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace runnel::jinja {

// ---- construction -----------------------------------------------------------

Value Value::undefined(std::string hint) {
  Value v;
  if (!hint.empty()) v.p_ = std::make_shared<std::string>(std::move(hint));
  return v;
}

namespace {
thread_local uint64_t t_string_bytes_made = 0;
}  // namespace

uint64_t string_bytes_made() { return t_string_bytes_made; }

Value Value::string(std::string s) {
  t_string_bytes_made += s.size();
  Value v;
  v.type_ = Type::String;
  v.p_ = std::make_shared<std::string>(std::move(s));
  return v;
}

namespace {
uint32_t max_child_depth(const std::vector<Value>& items) {
  uint32_t d = 0;
  for (const Value& x : items) d = std::max(d, x.depth());
  return d;
}
void check_depth(uint32_t d) {
  if (d > kMaxValueDepth)
    throw std::length_error("value nesting deeper than " + std::to_string(kMaxValueDepth));
}
}  // namespace

Value Value::list(std::vector<Value> items, ListKind kind) {
  auto obj = std::make_shared<ListObj>();
  obj->depth = 1 + max_child_depth(items);
  check_depth(obj->depth);
  obj->items = std::move(items);
  obj->kind = kind;
  Value v;
  v.type_ = Type::List;
  v.p_ = std::move(obj);
  return v;
}

Value Value::range(int64_t start, int64_t stop, int64_t step) {
  std::vector<Value> items;
  if (step > 0) {
    for (int64_t i = start; i < stop; i += step) items.push_back(Value::integer(i));
  } else if (step < 0) {
    for (int64_t i = start; i > stop; i += step) items.push_back(Value::integer(i));
  }
  Value v = list(std::move(items), ListKind::Range);
  auto* obj = static_cast<ListObj*>(v.p_.get());
  obj->range_start = start;
  obj->range_stop = stop;
  obj->range_step = step;
  return v;
}

Value Value::dict(std::vector<std::pair<Value, Value>> items) {
  auto obj = std::make_shared<DictObj>();
  uint32_t d = 0;
  for (auto& [k, val] : items) {
    d = std::max({d, k.depth(), val.depth()});
    bool replaced = false;
    for (auto& [k2, v2] : obj->items) {
      if (equals(k2, k)) {
        v2 = std::move(val);
        replaced = true;
        break;
      }
    }
    if (!replaced) obj->items.emplace_back(std::move(k), std::move(val));
  }
  obj->depth = 1 + d;
  check_depth(obj->depth);
  Value v;
  v.type_ = Type::Dict;
  v.p_ = std::move(obj);
  return v;
}

Value Value::ns(std::shared_ptr<NamespaceObj> n) {
  Value v;
  v.type_ = Type::Namespace;
  v.p_ = std::move(n);
  return v;
}

Value Value::callable(std::string name, std::function<Value(Interp&, CallArgs&)> fn) {
  auto c = std::make_shared<Callable>();
  c->name = std::move(name);
  c->fn = std::move(fn);
  Value v;
  v.type_ = Type::Callable;
  v.p_ = std::move(c);
  return v;
}

std::string Value::undefined_hint() const {
  if (type_ != Type::Undefined || !p_) return "value is undefined";
  return *static_cast<const std::string*>(p_.get());
}

uint32_t Value::depth() const {
  if (type_ == Type::List) return list().depth;
  if (type_ == Type::Dict) return dict().depth;
  return 0;
}

const Value* DictObj::find(const Value& key) const {
  for (const auto& [k, v] : items)
    if (equals(k, key)) return &v;
  return nullptr;
}

const Value* DictObj::find(std::string_view key) const {
  for (const auto& [k, v] : items)
    if (k.is_string() && k.str() == key) return &v;
  return nullptr;
}

const Value* NamespaceObj::find(std::string_view name) const {
  for (const auto& [k, v] : attrs)
    if (k == name) return &v;
  return nullptr;
}

void NamespaceObj::set(const std::string& name, Value v) {
  for (auto& [k, old] : attrs) {
    if (k == name) {
      old = std::move(v);
      return;
    }
  }
  attrs.emplace_back(name, std::move(v));
}

// ---- Unicode ------------------------------------------------------------------

std::u32string decode_utf8(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    if (b0 < 0x80) {
      out.push_back(b0);
      ++i;
      continue;
    }
    int len = 0;
    char32_t cp = 0;
    char32_t min = 0;
    if ((b0 & 0xE0) == 0xC0) {
      len = 2, cp = b0 & 0x1F, min = 0x80;
    } else if ((b0 & 0xF0) == 0xE0) {
      len = 3, cp = b0 & 0x0F, min = 0x800;
    } else if ((b0 & 0xF8) == 0xF0) {
      len = 4, cp = b0 & 0x07, min = 0x10000;
    }
    bool ok = len > 0 && i + static_cast<size_t>(len) <= n;
    for (int k = 1; ok && k < len; ++k) {
      const auto b = static_cast<unsigned char>(s[i + static_cast<size_t>(k)]);
      if ((b & 0xC0) != 0x80) ok = false;
      cp = (cp << 6) | (b & 0x3F);
    }
    if (ok && (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))) ok = false;
    if (ok) {
      out.push_back(cp);
      i += static_cast<size_t>(len);
    } else {
      out.push_back(0xDC00 + b0);  // surrogateescape: round-trips the raw byte
      ++i;
    }
  }
  return out;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp >= 0xDC80 && cp <= 0xDCFF) {
    out.push_back(static_cast<char>(cp - 0xDC00));  // an escaped raw byte
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string encode_utf8(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) append_utf8(out, c);
  return out;
}

bool is_py_space(char32_t c) {
  if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
  if (c < 0x85) return false;
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

size_t space_len_at(std::string_view s, size_t pos) {
  if (pos >= s.size()) return 0;
  const auto b = static_cast<unsigned char>(s[pos]);
  if (b < 0x80) return is_py_space(b) ? 1 : 0;
  if (b != 0xC2 && b != 0xE1 && b != 0xE2 && b != 0xE3) return 0;
  const size_t len = b == 0xC2 ? 2 : 3;
  if (pos + len > s.size()) return 0;
  const std::u32string cp = decode_utf8(s.substr(pos, len));
  return cp.size() == 1 && is_py_space(cp[0]) ? len : 0;
}

size_t utf8_length(std::string_view s) {
  size_t n = 0;
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      ++n, ++i;
      continue;
    }
    // Count like decode_utf8 does, including its escaping of invalid bytes.
    size_t j = i;
    while (j < s.size() && j - i < 4 && (j == i || (static_cast<unsigned char>(s[j]) & 0xC0) == 0x80)) ++j;
    n += decode_utf8(s.substr(i, j - i)).size();
    i = j;
  }
  return n;
}

// ---- Python semantics -----------------------------------------------------------

std::string type_name(const Value& v) {
  switch (v.type()) {
    case Value::Type::Undefined: return "Undefined";
    case Value::Type::None: return "NoneType";
    case Value::Type::Bool: return "bool";
    case Value::Type::Int: return "int";
    case Value::Type::Float: return "float";
    case Value::Type::String: return "str";
    case Value::Type::List:
      switch (v.list().kind) {
        case ListKind::Tuple: return "tuple";
        case ListKind::Range: return "range";
        case ListKind::DictItems: return "dict_items";
        case ListKind::DictKeys: return "dict_keys";
        case ListKind::DictValues: return "dict_values";
        case ListKind::Iterator: return "generator";
        default: return "list";
      }
    case Value::Type::Dict: return "dict";
    case Value::Type::Namespace: return v.ns().is_loop ? "LoopContext" : "Namespace";
    case Value::Type::Callable: return "function";
  }
  return "object";
}

bool truthy(const Value& v) {
  switch (v.type()) {
    case Value::Type::Undefined:
    case Value::Type::None: return false;
    case Value::Type::Bool:
    case Value::Type::Int: return v.as_int() != 0;
    case Value::Type::Float: return v.as_float() != 0.0;
    case Value::Type::String: return !v.str().empty();
    case Value::Type::List: return v.list().kind == ListKind::Iterator || !v.list().items.empty();
    case Value::Type::Dict: return !v.dict().items.empty();
    case Value::Type::Namespace:
    case Value::Type::Callable: return true;
  }
  return false;
}

namespace {
void check_recursion(int depth) {
  if (depth > static_cast<int>(kMaxValueDepth) + 8)
    throw std::length_error("value nesting too deep (recursive namespace?)");
}
}  // namespace

bool equals(const Value& a, const Value& b, int depth) {
  check_recursion(depth);
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.to_double() == b.to_double();
    return a.as_int() == b.as_int();
  }
  if (a.type() != b.type()) return false;
  switch (a.type()) {
    case Value::Type::Undefined:
    case Value::Type::None: return true;
    case Value::Type::String: return a.str() == b.str();
    case Value::Type::List: {
      const ListObj& x = a.list();
      const ListObj& y = b.list();
      if (x.kind != y.kind) return false;
      if (x.kind == ListKind::Iterator || x.kind == ListKind::DictValues) return &x == &y;
      if (x.items.size() != y.items.size()) return false;
      if (x.kind == ListKind::DictKeys || x.kind == ListKind::DictItems) {  // set-like
        for (const Value& item : x.items) {
          bool found = false;
          for (const Value& other : y.items) {
            if (equals(item, other, depth + 1)) {
              found = true;
              break;
            }
          }
          if (!found) return false;
        }
        return true;
      }
      for (size_t i = 0; i < x.items.size(); ++i)
        if (!equals(x.items[i], y.items[i], depth + 1)) return false;
      return true;
    }
    case Value::Type::Dict: {
      const DictObj& x = a.dict();
      const DictObj& y = b.dict();
      if (x.items.size() != y.items.size()) return false;
      for (const auto& [k, v] : x.items) {
        const Value* other = y.find(k);
        if (!other || !equals(v, *other, depth + 1)) return false;
      }
      return true;
    }
    default: return a.identity() == b.identity();
  }
}

bool less_than(const Value& a, const Value& b, int depth) {
  check_recursion(depth);
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.to_double() < b.to_double();
    return a.as_int() < b.as_int();
  }
  if (a.is_string() && b.is_string()) return a.str() < b.str();  // UTF-8 order == code-point order
  if (a.is_list() && b.is_list() && a.list().kind == b.list().kind &&
      (a.list().kind == ListKind::List || a.list().kind == ListKind::Tuple)) {
    const auto& x = a.list().items;
    const auto& y = b.list().items;
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (equals(x[i], y[i], depth + 1)) continue;
      return less_than(x[i], y[i], depth + 1);
    }
    return x.size() < y.size();
  }
  throw std::invalid_argument("'<' not supported between instances of '" + type_name(a) + "' and '" +
                              type_name(b) + "'");
}

std::string float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  if (d == 0.0) return std::signbit(d) ? "-0.0" : "0.0";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string sci(buf, res.ptr);  // e.g. "-1.2345e+16" (shortest round-trip digits)
  std::string sign;
  if (sci[0] == '-') {
    sign = "-";
    sci.erase(0, 1);
  }
  const size_t epos = sci.find('e');
  const int exp = std::stoi(sci.substr(epos + 1));
  std::string digits;
  for (size_t i = 0; i < epos; ++i)
    if (sci[i] != '.') digits.push_back(sci[i]);
  const int decpt = exp + 1;  // position of the decimal point relative to digits
  std::string out = sign;
  if (decpt > -4 && decpt <= 16) {
    if (decpt <= 0) {
      out += "0." + std::string(static_cast<size_t>(-decpt), '0') + digits;
    } else if (static_cast<size_t>(decpt) >= digits.size()) {
      out += digits + std::string(static_cast<size_t>(decpt) - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, static_cast<size_t>(decpt)) + "." + digits.substr(static_cast<size_t>(decpt));
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  char ebuf[16];
  std::snprintf(ebuf, sizeof ebuf, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
  return out + ebuf;
}

namespace {

// Python's str.isprintable() approximation for repr(): ASCII controls, DEL,
// C1 controls, the non-printable spaces and escaped raw bytes are escaped.
bool repr_escapes(char32_t c) {
  if (c < 0x20 || c == 0x7F) return true;
  if (c >= 0x80 && c <= 0xA0) return true;
  if (c == 0xAD) return true;
  if (c >= 0xD800 && c <= 0xDFFF) return true;
  if (c == 0x1680 || (c >= 0x2000 && c <= 0x200F) || (c >= 0x2028 && c <= 0x202F) ||
      (c >= 0x205F && c <= 0x206F) || c == 0x3000 || c == 0xFEFF)
    return true;
  return false;
}

std::string string_repr(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos;
  const bool has_double = s.find('"') != std::string::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (char32_t c : decode_utf8(s)) {
    if (c == static_cast<char32_t>(quote) || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (repr_escapes(c)) {
      char buf[16];
      if (c < 0x100)
        std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(c));
      else
        std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
      out += buf;
    } else {
      append_utf8(out, c);
    }
  }
  out.push_back(quote);
  return out;
}

std::string seq_repr(const std::vector<Value>& items, const char* open, const char* close, int depth) {
  std::string out = open;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ", ";
    out += repr(items[i], depth + 1);
  }
  return out + close;
}

}  // namespace

std::string repr(const Value& v, int depth) {
  check_recursion(depth);
  switch (v.type()) {
    case Value::Type::String: return string_repr(v.str());
    case Value::Type::List: {
      const ListObj& l = v.list();
      switch (l.kind) {
        case ListKind::List: return seq_repr(l.items, "[", "]", depth);
        case ListKind::Tuple:
          if (l.items.size() == 1) return "(" + repr(l.items[0], depth + 1) + ",)";
          return seq_repr(l.items, "(", ")", depth);
        case ListKind::Range: {
          std::string out = "range(" + std::to_string(l.range_start) + ", " + std::to_string(l.range_stop);
          if (l.range_step != 1) out += ", " + std::to_string(l.range_step);
          return out + ")";
        }
        case ListKind::DictItems: return seq_repr(l.items, "dict_items([", "])", depth);
        case ListKind::DictKeys: return seq_repr(l.items, "dict_keys([", "])", depth);
        case ListKind::DictValues: return seq_repr(l.items, "dict_values([", "])", depth);
        case ListKind::Iterator:
          throw std::invalid_argument("cannot print a generator (apply '|list' first)");
      }
      return "";
    }
    case Value::Type::Dict: {
      std::string out = "{";
      bool first = true;
      for (const auto& [k, val] : v.dict().items) {
        if (!first) out += ", ";
        first = false;
        out += repr(k, depth + 1) + ": " + repr(val, depth + 1);
      }
      return out + "}";
    }
    case Value::Type::Namespace: {
      const NamespaceObj& n = v.ns();
      if (n.is_loop) throw std::invalid_argument("cannot print a loop object");
      std::string out = "<Namespace {";
      bool first = true;
      for (const auto& [k, val] : n.attrs) {
        if (!first) out += ", ";
        first = false;
        out += string_repr(k) + ": " + repr(val, depth + 1);
      }
      return out + "}>";
    }
    case Value::Type::Undefined: return "Undefined";
    default: return to_str(v);
  }
}

std::string to_str(const Value& v) {
  switch (v.type()) {
    case Value::Type::Undefined: return "";
    case Value::Type::None: return "None";
    case Value::Type::Bool: return v.as_bool() ? "True" : "False";
    case Value::Type::Int: return std::to_string(v.as_int());
    case Value::Type::Float: return float_repr(v.as_float());
    case Value::Type::String: return v.str();
    case Value::Type::Callable:
      throw std::invalid_argument("cannot convert function '" + v.fn().name + "' to a string");
    default: return repr(v);
  }
}

// ---- json.dumps -----------------------------------------------------------------

namespace {

void json_string(std::string& out, std::string_view s, bool ensure_ascii) {
  out.push_back('"');
  for (char32_t c : decode_utf8(s)) {
    switch (c) {
      case '"': out += "\\\""; continue;
      case '\\': out += "\\\\"; continue;
      case '\n': out += "\\n"; continue;
      case '\r': out += "\\r"; continue;
      case '\t': out += "\\t"; continue;
      case '\b': out += "\\b"; continue;
      case '\f': out += "\\f"; continue;
      default: break;
    }
    char buf[16];
    if (c < 0x20 || (ensure_ascii && c >= 0x7F) || (c >= 0xDC80 && c <= 0xDCFF)) {
      if (c >= 0xDC80 && c <= 0xDCFF && !ensure_ascii)
        throw std::invalid_argument("tojson: string is not valid UTF-8");
      if (c >= 0x10000) {
        const char32_t v = c - 0x10000;
        std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", static_cast<unsigned>(0xD800 + (v >> 10)),
                      static_cast<unsigned>(0xDC00 + (v & 0x3FF)));
      } else {
        std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
      }
      out += buf;
    } else {
      append_utf8(out, c);
    }
  }
  out.push_back('"');
}

std::string json_float(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  return float_repr(d);
}

void json_value(std::string& out, const Value& v, const JsonOptions& opt, int level) {
  check_recursion(level);
  auto newline = [&](int lvl) {
    out.push_back('\n');
    for (int i = 0; i < lvl; ++i) out += opt.indent;
  };
  switch (v.type()) {
    case Value::Type::None: out += "null"; return;
    case Value::Type::Bool: out += v.as_bool() ? "true" : "false"; return;
    case Value::Type::Int: out += std::to_string(v.as_int()); return;
    case Value::Type::Float: out += json_float(v.as_float()); return;
    case Value::Type::String: json_string(out, v.str(), opt.ensure_ascii); return;
    case Value::Type::List: {
      if (v.list().kind == ListKind::Iterator)
        throw std::invalid_argument("tojson: object of type 'generator' is not JSON serializable");
      const auto& items = v.list().items;
      if (items.empty()) {
        out += "[]";
        return;
      }
      out.push_back('[');
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += opt.item_sep;
        if (opt.has_indent) newline(level + 1);
        json_value(out, items[i], opt, level + 1);
      }
      if (opt.has_indent) newline(level);
      out.push_back(']');
      return;
    }
    case Value::Type::Dict: {
      std::vector<std::pair<std::string, const Value*>> entries;
      for (const auto& [k, val] : v.dict().items) {
        std::string key;
        switch (k.type()) {
          case Value::Type::String: key = k.str(); break;
          case Value::Type::Int: key = std::to_string(k.as_int()); break;
          case Value::Type::Float: key = json_float(k.as_float()); break;
          case Value::Type::Bool: key = k.as_bool() ? "true" : "false"; break;
          case Value::Type::None: key = "null"; break;
          default:
            throw std::invalid_argument("tojson: keys must be str, int, float, bool or None, not " +
                                        type_name(k));
        }
        entries.emplace_back(std::move(key), &val);
      }
      if (opt.sort_keys)
        std::stable_sort(entries.begin(), entries.end(),
                         [](const auto& a, const auto& b) { return a.first < b.first; });
      if (entries.empty()) {
        out += "{}";
        return;
      }
      out.push_back('{');
      for (size_t i = 0; i < entries.size(); ++i) {
        if (i) out += opt.item_sep;
        if (opt.has_indent) newline(level + 1);
        json_string(out, entries[i].first, opt.ensure_ascii);
        out += opt.key_sep;
        json_value(out, *entries[i].second, opt, level + 1);
      }
      if (opt.has_indent) newline(level);
      out.push_back('}');
      return;
    }
    default:
      throw std::invalid_argument("tojson: object of type '" + type_name(v) + "' is not JSON serializable");
  }
}

}  // namespace

std::string to_json(const Value& v, const JsonOptions& opt) {
  std::string out;
  json_value(out, v, opt, 0);
  return out;
}

}  // namespace runnel::jinja
