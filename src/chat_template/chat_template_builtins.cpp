// Filters, tests, str/dict/list methods and global functions of the chat-template
// interpreter, with the behaviour of jinja2 3.1 and Python 3 under the
// environment transformers builds for chat templates (tojson with
// ensure_ascii=False, raise_exception, strftime_now, the sandbox's range limit).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <initializer_list>
#include <optional>
#include <stdexcept>
#include <string>

#include "chat_template/chat_template_interp.hpp"

namespace runnel::jinja {
namespace {

using Args = std::vector<std::optional<Value>>;

// Binds positional and keyword arguments to `names`, like a Python signature.
Args bind(Interp& in, CallArgs& a, const std::string& fname, std::initializer_list<const char*> names) {
  Args out(names.size());
  if (a.pos.size() > names.size())
    in.fail(a.line, fname + "() takes at most " + std::to_string(names.size()) + " argument(s), got " +
                        std::to_string(a.pos.size()));
  for (size_t i = 0; i < a.pos.size(); ++i) out[i] = a.pos[i];
  for (auto& [k, v] : a.kw) {
    size_t i = 0;
    for (const char* n : names) {
      if (k == n) break;
      ++i;
    }
    if (i == names.size()) in.fail(a.line, fname + "() got an unexpected keyword argument '" + k + "'");
    if (out[i]) in.fail(a.line, fname + "() got multiple values for argument '" + k + "'");
    out[i] = v;
  }
  return out;
}

int64_t int_arg(Interp& in, const std::optional<Value>& v, int64_t dflt, const char* what, int line) {
  if (!v || v->is_none()) return dflt;
  if (v->is_int() || v->is_bool()) return v->as_int();
  in.fail(line, std::string(what) + " must be an integer, not '" + type_name(*v) + "'");
}

const std::string& str_arg(Interp& in, const std::optional<Value>& v, const char* what, int line) {
  if (!v || !v->is_string())
    in.fail(line, std::string(what) + " must be a string, not '" + (v ? type_name(*v) : std::string("missing")) + "'");
  return v->str();
}

// ---- case mapping ----
// Only ASCII letters are case-mapped.  Other characters must be caseless
// (CJK, Arabic, Indic, symbols, emoji, ...); a cased non-ASCII letter is an
// error rather than a silently unchanged character.
bool caseless_non_ascii(char32_t c) {
  if (c < 0xC0) return c != 0xB5;  // Latin-1 punctuation, except MICRO SIGN
  if (c == 0xD7 || c == 0xF7) return true;
  if (c >= 0x0590 && c < 0x10A0) return true;   // Hebrew .. Myanmar
  if (c >= 0x1100 && c < 0x13A0) return true;   // Hangul Jamo, Ethiopic
  if (c >= 0x2000 && c < 0x2070) return true;   // general punctuation
  if (c >= 0x2190 && c < 0x2460) return true;   // arrows, maths, technical
  if (c >= 0x2500 && c < 0x2C00) return true;   // box drawing .. dingbats, symbols
  if (c >= 0x2E80 && c < 0xA640) return true;   // CJK, kana, Yi
  if (c >= 0xAC00 && c < 0xD7A4) return true;   // Hangul syllables
  if (c >= 0xDC80 && c <= 0xDCFF) return true;  // escaped invalid bytes
  if (c >= 0xE000 && c < 0xFB00) return true;   // private use, CJK compatibility
  if (c >= 0xFE00 && c < 0xFF00) return true;   // variation selectors, CJK forms
  if (c >= 0x1F000 && c < 0x1FB00) return true; // emoji and pictographs
  if (c >= 0x20000 && c < 0x40000) return true; // CJK extensions
  return false;
}

enum class CaseMode { Upper, Lower, Capitalize, PyTitle, JinjaTitle };

std::string change_case(Interp& in, const std::string& s, CaseMode mode, int line) {
  std::string out;
  out.reserve(s.size());
  bool prev_cased = false;   // PyTitle
  bool word_start = true;    // JinjaTitle / Capitalize
  bool first = true;
  for (char32_t c : decode_utf8(s)) {
    if (c >= 0x80) {
      if (!caseless_non_ascii(c))
        in.fail(line, "case conversion of non-ASCII letters is not supported");
      append_utf8(out, c);
      prev_cased = false;
      if (mode == CaseMode::JinjaTitle) word_start = is_py_space(c);
      first = false;
      continue;
    }
    const char ch = static_cast<char>(c);
    const bool alpha = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
    auto up = [](char x) { return (x >= 'a' && x <= 'z') ? static_cast<char>(x - 32) : x; };
    auto low = [](char x) { return (x >= 'A' && x <= 'Z') ? static_cast<char>(x + 32) : x; };
    switch (mode) {
      case CaseMode::Upper: out.push_back(up(ch)); break;
      case CaseMode::Lower: out.push_back(low(ch)); break;
      case CaseMode::Capitalize: out.push_back(first ? up(ch) : low(ch)); break;
      case CaseMode::PyTitle:
        out.push_back(alpha ? (prev_cased ? low(ch) : up(ch)) : ch);
        prev_cased = alpha;
        break;
      case CaseMode::JinjaTitle: {
        // jinja2 do_title: words start after runs of [-\s(\{\[<].
        const bool delim = ch == '-' || is_py_space(c) || ch == '(' || ch == '{' || ch == '[' || ch == '<';
        if (delim) {
          out.push_back(ch);
          word_start = true;
        } else {
          out.push_back(word_start ? up(ch) : low(ch));
          word_start = false;
        }
        break;
      }
    }
    first = false;
  }
  return out;
}

// ---- str helpers ----

std::string strip(const std::string& s, const std::optional<Value>& chars, bool left, bool right, Interp& in,
                  int line) {
  std::u32string cps = decode_utf8(s);
  std::u32string set;
  const bool ws = !chars || chars->is_none();
  if (!ws) set = decode_utf8(str_arg(in, chars, "strip() chars", line));
  auto drop = [&](char32_t c) { return ws ? is_py_space(c) : set.find(c) != std::u32string::npos; };
  size_t b = 0, e = cps.size();
  if (left)
    while (b < e && drop(cps[b])) ++b;
  if (right)
    while (e > b && drop(cps[e - 1])) --e;
  if (b == 0 && e == cps.size()) return s;
  return encode_utf8(std::u32string_view(cps).substr(b, e - b));
}

std::vector<Value> split(const std::string& s, const std::optional<Value>& sep_v, int64_t maxsplit, bool from_right,
                         Interp& in, int line) {
  std::vector<std::string> parts;
  if (!sep_v || sep_v->is_none()) {
    // Runs of whitespace; leading/trailing whitespace dropped.
    std::u32string cps = decode_utf8(s);
    if (from_right) std::reverse(cps.begin(), cps.end());
    size_t i = 0;
    const size_t n = cps.size();
    int64_t splits = 0;
    while (true) {
      while (i < n && is_py_space(cps[i])) ++i;
      if (i >= n) break;
      if (maxsplit >= 0 && splits >= maxsplit) {
        std::u32string rest = cps.substr(i);  // keeps its trailing whitespace, as Python does
        if (from_right) std::reverse(rest.begin(), rest.end());
        parts.push_back(encode_utf8(rest));
        break;
      }
      size_t j = i;
      while (j < n && !is_py_space(cps[j])) ++j;
      std::u32string word = cps.substr(i, j - i);
      if (from_right) std::reverse(word.begin(), word.end());
      parts.push_back(encode_utf8(word));
      ++splits;
      i = j;
    }
    if (from_right) std::reverse(parts.begin(), parts.end());
  } else {
    const std::string& sep = str_arg(in, sep_v, "split() separator", line);
    if (sep.empty()) in.fail(line, "empty separator");
    if (!from_right) {
      size_t pos = 0;
      int64_t splits = 0;
      while (maxsplit < 0 || splits < maxsplit) {
        const size_t q = s.find(sep, pos);
        if (q == std::string::npos) break;
        parts.push_back(s.substr(pos, q - pos));
        pos = q + sep.size();
        ++splits;
      }
      parts.push_back(s.substr(pos));
    } else {
      size_t end = s.size();
      int64_t splits = 0;
      while (maxsplit < 0 || splits < maxsplit) {
        if (end < sep.size()) break;
        const size_t q = s.rfind(sep, end - sep.size());
        if (q == std::string::npos) break;
        parts.push_back(s.substr(q + sep.size(), end - q - sep.size()));
        end = q;
        ++splits;
      }
      parts.push_back(s.substr(0, end));
      std::reverse(parts.begin(), parts.end());
    }
  }
  in.charge(parts.size(), line);
  std::vector<Value> out;
  out.reserve(parts.size());
  for (auto& p : parts) out.push_back(Value::string(std::move(p)));
  return out;
}

// Python str.splitlines() (without keepends).
std::vector<std::string> splitlines(const std::string& s) {
  std::vector<std::string> lines;
  const std::u32string cps = decode_utf8(s);
  size_t start = 0;
  for (size_t i = 0; i < cps.size(); ++i) {
    const char32_t c = cps[i];
    const bool br = c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D || c == 0x1E ||
                    c == 0x85 || c == 0x2028 || c == 0x2029;
    if (!br) continue;
    lines.push_back(encode_utf8(std::u32string_view(cps).substr(start, i - start)));
    if (c == '\r' && i + 1 < cps.size() && cps[i + 1] == '\n') ++i;
    start = i + 1;
  }
  if (start < cps.size()) lines.push_back(encode_utf8(std::u32string_view(cps).substr(start)));
  return lines;
}

std::string replace(Interp& in, const std::string& s, const std::string& old, const std::string& with,
                    int64_t count, int line) {
  std::string out;
  int64_t done = 0;
  if (old.empty()) {
    // Python inserts `with` before every character and at the end.
    for (char32_t c : decode_utf8(s)) {
      if (count < 0 || done < count) {
        out += with;
        ++done;
      }
      append_utf8(out, c);
      in.check_size(out.size(), line);
    }
    if (count < 0 || done < count) out += with;
    in.check_size(out.size(), line);
    return out;
  }
  size_t pos = 0;
  while (count < 0 || done < count) {
    const size_t q = s.find(old, pos);
    if (q == std::string::npos) break;
    out.append(s, pos, q - pos);
    out += with;
    in.check_size(out.size(), line);
    pos = q + old.size();
    ++done;
  }
  out.append(s, pos, std::string::npos);
  in.check_size(out.size(), line);
  return out;
}

// Python float(str); nullopt when invalid.
std::optional<double> parse_py_float(const std::string& raw) {
  std::string s = raw;
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  s = s.substr(b, e - b);
  if (s.empty()) return std::nullopt;
  std::string lower;
  for (char c : s) lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  std::string body = lower;
  bool neg = false;
  if (body[0] == '+' || body[0] == '-') {
    neg = body[0] == '-';
    body.erase(0, 1);
  }
  if (body == "inf" || body == "infinity") return neg ? -HUGE_VAL : HUGE_VAL;
  if (body == "nan") return std::nan("");
  // digits[.digits][e[+-]digits] with single underscores between digits.
  std::string clean;
  bool any_digit = false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '_') {
      if (i == 0 || i + 1 >= s.size() || !std::isdigit(static_cast<unsigned char>(s[i - 1])) ||
          !std::isdigit(static_cast<unsigned char>(s[i + 1])))
        return std::nullopt;
      continue;
    }
    if (std::isdigit(static_cast<unsigned char>(c))) {
      any_digit = true;
    } else if (c != '.' && c != 'e' && c != 'E' && c != '+' && c != '-') {
      return std::nullopt;
    }
    clean.push_back(c);
  }
  if (!any_digit) return std::nullopt;
  char* end = nullptr;
  const double d = std::strtod(clean.c_str(), &end);
  if (end != clean.c_str() + clean.size()) return std::nullopt;
  return d;
}

// Python int(str, base); nullopt when invalid (or out of int64 range: flagged by overflow).
std::optional<int64_t> parse_py_int(const std::string& raw, int base, bool* overflow) {
  *overflow = false;
  size_t b = 0, e = raw.size();
  while (b < e && std::isspace(static_cast<unsigned char>(raw[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(raw[e - 1]))) --e;
  if (b == e) return std::nullopt;
  bool neg = false;
  if (raw[b] == '+' || raw[b] == '-') {
    neg = raw[b] == '-';
    ++b;
  }
  if (b + 1 < e && raw[b] == '0') {
    const char p = static_cast<char>(std::tolower(static_cast<unsigned char>(raw[b + 1])));
    const int pb = p == 'x' ? 16 : p == 'o' ? 8 : p == 'b' ? 2 : 0;
    if (pb != 0 && (base == pb || base == 0)) {
      base = pb;
      b += 2;
      if (b < e && raw[b] == '_') ++b;
    }
  }
  if (base == 0) base = 10;
  if (b == e) return std::nullopt;
  uint64_t v = 0;
  bool prev_digit = false;
  for (size_t i = b; i < e; ++i) {
    const char c = raw[i];
    if (c == '_') {
      if (!prev_digit || i + 1 >= e) return std::nullopt;
      prev_digit = false;
      continue;
    }
    int d = -1;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'z') d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'Z') d = c - 'A' + 10;
    if (d < 0 || d >= base) return std::nullopt;
    if (v > (static_cast<uint64_t>(INT64_MAX) + 1 - static_cast<uint64_t>(d)) / static_cast<uint64_t>(base)) {
      *overflow = true;
      return std::nullopt;
    }
    v = v * static_cast<uint64_t>(base) + static_cast<uint64_t>(d);
    prev_digit = true;
  }
  if (!prev_digit) return std::nullopt;
  if (!neg && v > static_cast<uint64_t>(INT64_MAX)) {
    *overflow = true;
    return std::nullopt;
  }
  return neg ? static_cast<int64_t>(0 - v) : static_cast<int64_t>(v);
}

// Python int(float); fails on inf, nan handled by caller.
int64_t float_to_int(Interp& in, double d, int line) {
  if (std::isinf(d)) in.fail(line, "cannot convert float infinity to integer");
  const double t = std::trunc(d);
  if (!(t >= -9223372036854775808.0 && t < 9223372036854775808.0)) in.fail(line, "integer overflow");
  return static_cast<int64_t>(t);
}

size_t py_len(Interp& in, const Value& v, int line) {
  switch (v.type()) {
    case Value::Type::Undefined: return 0;
    case Value::Type::String: return utf8_length(v.str());
    case Value::Type::List:
      if (v.list().kind == ListKind::Iterator) in.fail(line, "object of type 'generator' has no len()");
      return v.list().items.size();
    case Value::Type::Dict: return v.dict().items.size();
    default: in.fail(line, "object of type '" + type_name(v) + "' has no len()");
  }
}

Value iterator(std::vector<Value> items) { return Value::list(std::move(items), ListKind::Iterator); }

// `obj.a.b` for filters' attribute= arguments (jinja2 make_attrgetter; digits index).
Value attr_path(Interp& in, const Value& obj, const Value& attribute, int line) {
  if (attribute.is_int()) return in.getitem(obj, attribute, line);
  if (!attribute.is_string()) in.fail(line, "attribute must be a string or integer");
  Value cur = obj;
  const std::string& path = attribute.str();
  size_t pos = 0;
  while (true) {
    const size_t dot = path.find('.', pos);
    const std::string part = path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
    const bool digits = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (digits && part.size() < 18) {
      cur = in.getitem(cur, Value::integer(std::stoll(part)), line);
    } else {
      cur = in.getitem(cur, Value::string(part), line);
    }
    if (dot == std::string::npos) return cur;
    pos = dot + 1;
  }
}

std::vector<Value> rest_args(const CallArgs& a, size_t from) {
  return std::vector<Value>(a.pos.begin() + static_cast<std::ptrdiff_t>(std::min(from, a.pos.size())), a.pos.end());
}

// select / reject / selectattr / rejectattr.
Value select_filter(Interp& in, const Value& seq, CallArgs& a, bool by_attr, bool keep_if, int line) {
  const size_t test_pos = by_attr ? 1 : 0;
  if (by_attr && a.pos.empty()) in.fail(line, "selectattr/rejectattr need an attribute name");
  if (!a.kw.empty()) in.fail(line, "select/reject filters take no keyword arguments");
  std::optional<std::string> test;
  if (a.pos.size() > test_pos) {
    if (!a.pos[test_pos].is_string()) in.fail(line, "test name must be a string");
    test = a.pos[test_pos].str();
    if (!known_test(*test)) in.fail(line, "no test named '" + *test + "'");
  }
  std::vector<Value> out;
  if (!truthy(seq)) return iterator({});  // jinja2: `if value:` before iterating
  for (const Value& item : in.iterate(seq, line)) {
    in.charge(1, line);
    Value subject = by_attr ? attr_path(in, item, a.pos[0], line) : item;
    bool r;
    if (test) {
      CallArgs targs;
      targs.line = line;
      targs.pos = rest_args(a, test_pos + 1);
      r = in.apply_test(*test, subject, targs, line);
    } else {
      r = truthy(subject);
    }
    if (r == keep_if) out.push_back(item);
  }
  return iterator(std::move(out));
}

Value sort_filter(Interp& in, const Value& seq, CallArgs& a, int line) {
  Args p = bind(in, a, "sort", {"reverse", "case_sensitive", "attribute"});
  const bool reverse = p[0] && truthy(*p[0]);
  const bool case_sensitive = p[1] && truthy(*p[1]);
  std::vector<Value> items = in.iterate(seq, line);
  std::vector<std::pair<Value, Value>> keyed;
  for (Value& item : items) {
    Value key = p[2] && !p[2]->is_none() ? attr_path(in, item, *p[2], line) : item;
    if (!case_sensitive && key.is_string()) key = Value::string(change_case(in, key.str(), CaseMode::Lower, line));
    keyed.emplace_back(std::move(key), std::move(item));
  }
  in.charge(keyed.size() * 8, line);
  try {
    std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
      return reverse ? less_than(y.first, x.first) : less_than(x.first, y.first);
    });
  } catch (const std::invalid_argument& e) {
    in.fail(line, e.what());
  }
  std::vector<Value> out;
  for (auto& kv : keyed) out.push_back(std::move(kv.second));
  return Value::list(std::move(out));
}

Value tojson_filter(Interp& in, const Value& v, CallArgs& a, int line) {
  Args p = bind(in, a, "tojson", {"ensure_ascii", "indent", "separators", "sort_keys"});
  JsonOptions opt;
  opt.ensure_ascii = p[0] && truthy(*p[0]);
  opt.sort_keys = p[3] && truthy(*p[3]);
  if (p[1] && !p[1]->is_none()) {
    opt.has_indent = true;
    if (p[1]->is_string()) {
      opt.indent = p[1]->str();
    } else {
      const int64_t n = int_arg(in, p[1], 0, "tojson indent", line);
      if (n > 64) in.fail(line, "tojson indent too large");
      opt.indent = std::string(static_cast<size_t>(std::max<int64_t>(0, n)), ' ');
    }
    opt.item_sep = ",";
  }
  if (p[2] && !p[2]->is_none()) {
    const Value& s = *p[2];
    if (!s.is_list() || s.list().items.size() != 2 || !s.list().items[0].is_string() || !s.list().items[1].is_string())
      in.fail(line, "tojson separators must be a pair of strings");
    opt.item_sep = s.list().items[0].str();
    opt.key_sep = s.list().items[1].str();
  }
  std::string out = to_json(v, opt);
  in.check_size(out.size(), line);
  return Value::string(std::move(out));
}

Value indent_filter(Interp& in, const Value& v, CallArgs& a, int line) {
  Args p = bind(in, a, "indent", {"width", "first", "blank"});
  std::string indention;
  if (p[0] && p[0]->is_string()) {
    indention = p[0]->str();
  } else {
    const int64_t w = int_arg(in, p[0], 4, "indent width", line);
    if (w > 1024) in.fail(line, "indent width too large");
    indention = std::string(static_cast<size_t>(std::max<int64_t>(0, w)), ' ');
  }
  const bool first = p[1] && truthy(*p[1]);
  const bool blank = p[2] && truthy(*p[2]);
  if (v.is_undefined()) in.fail(line, v.undefined_hint());
  if (!v.is_string()) in.fail(line, "indent: expected a string, got '" + type_name(v) + "'");
  const std::vector<std::string> lines = splitlines(v.str() + "\n");
  std::string rv;
  if (blank) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i) rv += "\n" + indention;
      rv += lines[i];
    }
  } else {
    rv = lines.empty() ? std::string() : lines[0];
    for (size_t i = 1; i < lines.size(); ++i) {
      rv += "\n";
      if (!lines[i].empty()) rv += indention;
      rv += lines[i];
      in.check_size(rv.size(), line);
    }
  }
  if (first) rv = indention + rv;
  in.check_size(rv.size(), line);
  return Value::string(std::move(rv));
}

Value round_filter(Interp& in, const Value& v, CallArgs& a, int line) {
  Args p = bind(in, a, "round", {"precision", "method"});
  const int64_t prec = int_arg(in, p[0], 0, "round precision", line);
  const std::string method = p[1] ? str_arg(in, p[1], "round method", line) : "common";
  if (!v.is_number()) in.fail(line, "round: expected a number, got '" + type_name(v) + "'");
  const double x = v.to_double();
  if (prec < -300 || prec > 300) in.fail(line, "round precision out of range");
  if (method == "common" && !v.is_float()) {
    if (prec < 0) in.fail(line, "round with a negative precision is not supported");
    return Value::integer(v.as_int());  // Python's round(int, n) is the int itself
  }
  if (method == "common") {
    if (!std::isfinite(x)) return Value::real(x);
    if (prec == 0) return Value::real(std::nearbyint(x));  // round-half-even, like Python
    if (prec > 0) {
      char buf[512];
      std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(prec), x);  // correctly rounded
      return Value::real(std::strtod(buf, nullptr));
    }
    in.fail(line, "round with a negative precision is not supported");
  }
  if (method != "ceil" && method != "floor") in.fail(line, "round method must be 'common', 'ceil' or 'floor'");
  const double scale = std::pow(10.0, static_cast<double>(prec));
  const double r = method == "ceil" ? std::ceil(x * scale) : std::floor(x * scale);
  return Value::real(r / scale);
}

}  // namespace

// ---- filters -------------------------------------------------------------------

bool known_filter(std::string_view n) {
  static const char* const kNames[] = {
      // Not `safe` / `escape`: their Markup results change later concatenation and printing.
      "abs",    "capitalize", "count",   "d",       "default", "first",  "float",  "indent",     "int",
      "items",  "join",       "last",    "length",  "list",    "lower",  "map",    "reject",     "rejectattr",
      "replace", "reverse",   "round",   "select",  "selectattr", "sort", "string", "sum",       "title",
      "tojson", "trim",       "upper"};
  for (const char* k : kNames)
    if (n == k) return true;
  return false;
}

Value Interp::apply_filter(const std::string& name, const Value& v, CallArgs& a, int line) {
  a.line = line;
  auto no_args = [&]() {
    if (!a.pos.empty() || !a.kw.empty()) fail(line, "filter '" + name + "' takes no arguments");
  };
  if (name == "trim") {
    Args p = bind(*this, a, name, {"chars"});
    return Value::string(strip(to_str(v), p[0], true, true, *this, line));
  }
  if (name == "length" || name == "count") {
    no_args();
    return Value::integer(static_cast<int64_t>(py_len(*this, v, line)));
  }
  if (name == "tojson") return tojson_filter(*this, v, a, line);
  if (name == "upper" || name == "lower" || name == "capitalize" || name == "title") {
    no_args();
    const CaseMode m = name == "upper" ? CaseMode::Upper : name == "lower" ? CaseMode::Lower
                       : name == "capitalize" ? CaseMode::Capitalize : CaseMode::JinjaTitle;
    return Value::string(change_case(*this, to_str(v), m, line));
  }
  if (name == "default" || name == "d") {
    Args p = bind(*this, a, name, {"default_value", "boolean"});
    const bool boolean = p[1] && truthy(*p[1]);
    if (v.is_undefined() || (boolean && !truthy(v))) return p[0] ? *p[0] : Value::string("");
    return v;
  }
  if (name == "first") {
    no_args();
    if (v.is_list() && v.list().kind == ListKind::Iterator) {
      const ListObj& l = v.list();
      if (l.iter_pos < l.items.size()) return l.items[l.iter_pos++];
      return Value::undefined("no first item, sequence was empty");
    }
    if (v.is_list() && !v.list().items.empty()) return v.list().items.front();
    if (v.is_dict() && !v.dict().items.empty()) return v.dict().items.front().first;
    if (v.is_string() && !v.str().empty()) {
      std::string out;
      append_utf8(out, decode_utf8(v.str())[0]);
      return Value::string(std::move(out));
    }
    if (v.is_list() || v.is_dict() || v.is_string() || v.is_undefined())
      return Value::undefined("no first item, sequence was empty");
    fail(line, "'" + type_name(v) + "' object is not iterable");
  }
  if (name == "last") {
    no_args();
    if (v.is_list() && v.list().kind == ListKind::Iterator) fail(line, "'generator' object is not reversible");
    if (v.is_list() && !v.list().items.empty()) return v.list().items.back();
    if (v.is_dict() && !v.dict().items.empty()) return v.dict().items.back().first;
    if (v.is_string() && !v.str().empty()) {
      std::string out;
      append_utf8(out, decode_utf8(v.str()).back());
      return Value::string(std::move(out));
    }
    if (v.is_list() || v.is_dict() || v.is_string() || v.is_undefined())
      return Value::undefined("no last item, sequence was empty");
    fail(line, "'" + type_name(v) + "' object is not reversible");
  }
  if (name == "join") {
    Args p = bind(*this, a, name, {"d", "attribute"});
    const std::string sep = p[0] ? to_str(*p[0]) : std::string();
    std::string out;
    bool firstItem = true;
    for (const Value& item : iterate(v, line)) {
      if (!firstItem) out += sep;
      firstItem = false;
      out += to_str(p[1] && !p[1]->is_none() ? attr_path(*this, item, *p[1], line) : item);
      check_size(out.size(), line);
    }
    charge(out.size() / 64, line);
    return Value::string(std::move(out));
  }
  if (name == "replace") {
    Args p = bind(*this, a, name, {"old", "new", "count"});
    if (!p[0] || !p[1]) fail(line, "replace() needs the old and new strings");
    const int64_t count = int_arg(*this, p[2], -1, "replace count", line);
    return Value::string(replace(*this, to_str(v), to_str(*p[0]), to_str(*p[1]), count, line));
  }
  if (name == "string") {
    no_args();
    return v.is_string() ? v : Value::string(to_str(v));
  }
  if (name == "int") {
    Args p = bind(*this, a, name, {"default", "base"});
    const Value dflt = p[0] ? *p[0] : Value::integer(0);
    const int64_t base = int_arg(*this, p[1], 10, "int base", line);
    if (v.is_undefined()) fail(line, v.undefined_hint());
    if (v.is_int()) return v;
    if (v.is_bool()) return Value::integer(v.as_int());
    if (v.is_float()) {
      if (std::isnan(v.as_float())) return dflt;
      return Value::integer(float_to_int(*this, v.as_float(), line));
    }
    if (v.is_string()) {
      if (base != 0 && (base < 2 || base > 36)) fail(line, "int() base must be >= 2 and <= 36, or 0");
      bool overflow = false;
      if (auto r = parse_py_int(v.str(), static_cast<int>(base), &overflow)) return Value::integer(*r);
      if (overflow) fail(line, "integer overflow converting '" + v.str() + "'");
      if (auto d = parse_py_float(v.str())) {
        if (std::isnan(*d)) return dflt;
        return Value::integer(float_to_int(*this, *d, line));
      }
      return dflt;
    }
    return dflt;
  }
  if (name == "float") {
    Args p = bind(*this, a, name, {"default"});
    const Value dflt = p[0] ? *p[0] : Value::real(0.0);
    if (v.is_undefined()) fail(line, v.undefined_hint());
    if (v.is_number()) return Value::real(v.to_double());
    if (v.is_string()) {
      if (auto d = parse_py_float(v.str())) return Value::real(*d);
    }
    return dflt;
  }
  if (name == "abs") {
    no_args();
    if (v.is_float()) return Value::real(std::fabs(v.as_float()));
    if (v.is_int() || v.is_bool()) {
      if (v.as_int() == INT64_MIN) fail(line, "integer overflow");
      return Value::integer(v.as_int() < 0 ? -v.as_int() : v.as_int());
    }
    fail(line, "bad operand type for abs(): '" + type_name(v) + "'");
  }
  if (name == "round") return round_filter(*this, v, a, line);
  if (name == "list") {
    no_args();
    std::vector<Value> items = iterate(v, line);
    charge(items.size(), line);
    return Value::list(std::move(items));
  }
  if (name == "items") {
    no_args();
    if (v.is_undefined()) return iterator({});
    if (!v.is_dict()) fail(line, "items: can only get items from a mapping, not '" + type_name(v) + "'");
    std::vector<Value> out;
    for (const auto& [k, val] : v.dict().items) out.push_back(Value::list({k, val}, ListKind::Tuple));
    return iterator(std::move(out));
  }
  if (name == "reverse") {
    no_args();
    if (v.is_string()) {
      std::u32string cps = decode_utf8(v.str());
      std::reverse(cps.begin(), cps.end());
      return Value::string(encode_utf8(cps));
    }
    if (v.is_undefined()) return iterator({});
    if (v.is_list() && v.list().kind == ListKind::Iterator) {
      std::vector<Value> items = iterate(v, line);  // jinja2 falls back to list(value)[::-1]
      std::reverse(items.begin(), items.end());
      return Value::list(std::move(items));
    }
    if (v.is_list() || v.is_dict()) {
      std::vector<Value> items = iterate(v, line);
      std::reverse(items.begin(), items.end());
      return iterator(std::move(items));
    }
    fail(line, "argument to reverse must be iterable, not '" + type_name(v) + "'");
  }
  if (name == "map") {
    std::vector<Value> out;
    if (!truthy(v)) return iterator({});  // jinja2: `if value:` before iterating
    const Value* attribute = nullptr;
    const Value* dflt = nullptr;
    for (const auto& [k, val] : a.kw) {
      if (k == "attribute") attribute = &val;
      else if (k == "default") dflt = &val;
      else if (!attribute) fail(line, "map: unexpected keyword argument '" + k + "'");
    }
    if (attribute) {
      if (!a.pos.empty()) fail(line, "map: positional arguments with attribute= are not supported");
      for (const Value& item : iterate(v, line)) {
        charge(1, line);
        Value r = attr_path(*this, item, *attribute, line);
        out.push_back(r.is_undefined() && dflt ? *dflt : r);
      }
      return iterator(std::move(out));
    }
    if (a.pos.empty() || !a.pos[0].is_string()) fail(line, "map: expected a filter name or attribute=");
    const std::string fname = a.pos[0].str();
    if (!known_filter(fname)) fail(line, "map: no filter named '" + fname + "'");
    for (const Value& item : iterate(v, line)) {
      charge(1, line);
      CallArgs fa;
      fa.line = line;
      fa.pos = rest_args(a, 1);
      fa.kw = a.kw;
      out.push_back(apply_filter(fname, item, fa, line));
    }
    return iterator(std::move(out));
  }
  if (name == "select") return select_filter(*this, v, a, false, true, line);
  if (name == "reject") return select_filter(*this, v, a, false, false, line);
  if (name == "selectattr") return select_filter(*this, v, a, true, true, line);
  if (name == "rejectattr") return select_filter(*this, v, a, true, false, line);
  if (name == "sort") return sort_filter(*this, v, a, line);
  if (name == "sum") {
    Args p = bind(*this, a, name, {"attribute", "start"});
    Value total = p[1] ? *p[1] : Value::integer(0);
    Expr add;
    add.kind = ExprKind::Binary;
    add.line = line;
    add.op = BinOp::Add;
    for (const Value& item : iterate(v, line)) {
      charge(1, line);
      const Value x = p[0] && !p[0]->is_none() ? attr_path(*this, item, *p[0], line) : item;
      total = eval_binary(add, total, x);
    }
    return total;
  }
  if (name == "indent") return indent_filter(*this, v, a, line);
  fail(line, "unsupported filter '" + name + "'");
}

// ---- tests ---------------------------------------------------------------------

bool known_test(std::string_view n) {
  static const char* const kNames[] = {
      "defined",  "undefined", "none",    "boolean",  "false",      "true",   "integer", "float",
      "number",   "string",    "mapping", "iterable", "sequence",   "callable", "sameas", "eq",
      "equalto",  "==",        "ne",      "!=",       "lt",         "lessthan", "<",      "le",
      "<=",       "gt",        "greaterthan", ">",    "ge",         ">=",     "in",      "odd",
      "even",     "divisibleby", "lower", "upper",    "filter",     "test"};
  for (const char* k : kNames)
    if (n == k) return true;
  return false;
}

bool Interp::apply_test(const std::string& name, const Value& v, CallArgs& a, int line) {
  a.line = line;
  auto arg = [&]() -> const Value& {
    if (a.pos.size() != 1 || !a.kw.empty()) fail(line, "test '" + name + "' takes exactly one argument");
    return a.pos[0];
  };
  auto no_args = [&]() {
    if (!a.pos.empty() || !a.kw.empty()) fail(line, "test '" + name + "' takes no arguments");
  };
  if (name == "defined") return no_args(), !v.is_undefined();
  if (name == "undefined") return no_args(), v.is_undefined();
  if (name == "none") return no_args(), v.is_none();
  if (name == "boolean") return no_args(), v.is_bool();
  if (name == "false") return no_args(), v.is_bool() && !v.as_bool();
  if (name == "true") return no_args(), v.is_bool() && v.as_bool();
  if (name == "integer") return no_args(), v.is_int();
  if (name == "float") return no_args(), v.is_float();
  if (name == "number") return no_args(), v.is_number();
  if (name == "string") return no_args(), v.is_string();
  if (name == "mapping") return no_args(), v.is_dict();
  if (name == "iterable") return no_args(), v.is_undefined() || v.is_string() || v.is_list() || v.is_dict();
  if (name == "sequence") {
    no_args();
    if (v.is_list()) {
      const ListKind k = v.list().kind;
      return k == ListKind::List || k == ListKind::Tuple || k == ListKind::Range;
    }
    return v.is_undefined() || v.is_string() || v.is_dict();
  }
  // jinja2's Undefined and LoopContext define __call__.
  if (name == "callable") return no_args(), v.is_callable() || v.is_undefined() || (v.is_namespace() && v.ns().is_loop);
  if (name == "sameas") {
    const Value& o = arg();
    if (v.type() != o.type()) return false;
    switch (v.type()) {
      case Value::Type::Undefined:
      case Value::Type::None: return true;
      case Value::Type::Bool: return v.as_bool() == o.as_bool();
      case Value::Type::Int: return v.as_int() == o.as_int() && v.as_int() >= -5 && v.as_int() <= 256;
      case Value::Type::Float: return false;
      default: return v.identity() == o.identity();
    }
  }
  if (name == "eq" || name == "equalto" || name == "==") return equals(v, arg());
  if (name == "ne" || name == "!=") return !equals(v, arg());
  if (name == "lt" || name == "lessthan" || name == "<" || name == "le" || name == "<=" || name == "gt" ||
      name == "greaterthan" || name == ">" || name == "ge" || name == ">=") {
    const Value& o = arg();
    if (v.is_undefined()) fail(line, v.undefined_hint());
    if (o.is_undefined()) fail(line, o.undefined_hint());
    try {
      if (name == "lt" || name == "lessthan" || name == "<") return less_than(v, o);
      if (name == "gt" || name == "greaterthan" || name == ">") return less_than(o, v);
      if (name == "le" || name == "<=") return less_than(v, o) || equals(v, o);
      return less_than(o, v) || equals(v, o);
    } catch (const std::invalid_argument& e) {
      fail(line, e.what());
    }
  }
  if (name == "in") {
    const Value& seq = arg();
    switch (seq.type()) {
      case Value::Type::Undefined: return false;
      case Value::Type::String:
        if (!v.is_string())
          fail(line, "'in <string>' requires string as left operand, not " + type_name(v));
        return seq.str().find(v.str()) != std::string::npos;
      case Value::Type::List: {
        const ListObj& l = seq.list();
        if (l.kind == ListKind::Iterator) {
          while (l.iter_pos < l.items.size()) {
            charge(1, line);
            if (equals(l.items[l.iter_pos++], v)) return true;
          }
          return false;
        }
        charge(l.items.size(), line);
        for (const Value& item : l.items)
          if (equals(item, v)) return true;
        return false;
      }
      case Value::Type::Dict:
        if ((v.is_list() && v.list().kind != ListKind::Tuple) || v.is_dict() || v.is_namespace())
          fail(line, "unhashable type: '" + type_name(v) + "'");
        charge(seq.dict().items.size(), line);
        return seq.dict().find(v) != nullptr;
      default: fail(line, "argument of type '" + type_name(seq) + "' is not iterable");
    }
  }
  if (name == "odd" || name == "even" || name == "divisibleby") {
    const Value div = name == "divisibleby" ? arg() : (no_args(), Value::integer(2));
    if (!v.is_number() || !div.is_number())
      fail(line, "test '" + name + "' needs numbers, got '" + type_name(v) + "' and '" + type_name(div) + "'");
    if (v.is_float() || div.is_float()) {
      if (div.to_double() == 0.0) fail(line, "float modulo by zero");
      double m = std::fmod(v.to_double(), div.to_double());
      if (m != 0.0 && ((m < 0) != (div.to_double() < 0))) m += div.to_double();
      return name == "odd" ? m == 1.0 : m == 0.0;
    }
    const int64_t d = div.as_int();
    if (d == 0) fail(line, "integer division or modulo by zero");
    if (d == -1) return name != "odd";
    int64_t m = v.as_int() % d;
    if (m != 0 && ((m < 0) != (d < 0))) m += d;
    return name == "odd" ? m == 1 : m == 0;
  }
  if (name == "lower" || name == "upper") {
    no_args();
    const std::string s = to_str(v);
    bool cased = false;
    for (char32_t c : decode_utf8(s)) {
      if (c >= 0x80) {
        if (!caseless_non_ascii(c)) fail(line, "case tests on non-ASCII letters are not supported");
        continue;
      }
      if (c >= 'a' && c <= 'z') {
        if (name == "upper") return false;
        cased = true;
      } else if (c >= 'A' && c <= 'Z') {
        if (name == "lower") return false;
        cased = true;
      }
    }
    return cased;
  }
  if (name == "filter") return arg().is_string() && known_filter(arg().str());
  if (name == "test") return arg().is_string() && known_test(arg().str());
  fail(line, "unsupported test '" + name + "'");
}

// ---- methods -----------------------------------------------------------------

bool Interp::has_method(const Value& obj, const std::string& n) const {
  if (obj.is_string()) {
    static const char* const kStr[] = {"strip", "lstrip", "rstrip", "startswith", "endswith", "split",
                                       "rsplit", "splitlines", "upper", "lower", "title", "capitalize",
                                       "replace", "find", "rfind", "count", "join", "format", "format_map",
                                       "encode", "isdigit", "isalpha", "isalnum", "isspace", "islower",
                                       "isupper", "center", "ljust", "rjust", "zfill", "partition",
                                       "rpartition", "swapcase", "casefold", "index", "rindex",
                                       "expandtabs", "removeprefix", "removesuffix"};
    for (const char* k : kStr)
      if (n == k) return true;
    return false;
  }
  if (obj.is_dict()) return n == "items" || n == "keys" || n == "values" || n == "get";
  if (obj.is_list()) {
    const ListKind k = obj.list().kind;
    return (k == ListKind::List || k == ListKind::Tuple) && (n == "index" || n == "count");
  }
  return false;
}

std::optional<Value> Interp::call_method(const Value& obj, const std::string& n, CallArgs& a, int line) {
  a.line = line;
  if (!has_method(obj, n)) return std::nullopt;
  if (obj.is_dict()) {
    const DictObj& d = obj.dict();
    if (n == "get") {
      Args p = bind(*this, a, "get", {"key", "default"});
      if (!p[0]) fail(line, "dict.get() needs a key");
      if (const Value* v = d.find(*p[0])) return *v;
      return p[1] ? *p[1] : Value::none();
    }
    bind(*this, a, n, {});
    charge(d.items.size(), line);
    std::vector<Value> out;
    for (const auto& [k, v] : d.items) {
      if (n == "items") out.push_back(Value::list({k, v}, ListKind::Tuple));
      else out.push_back(n == "keys" ? k : v);
    }
    const ListKind kind = n == "items" ? ListKind::DictItems : n == "keys" ? ListKind::DictKeys : ListKind::DictValues;
    return Value::list(std::move(out), kind);
  }
  if (obj.is_list()) {
    Args p = bind(*this, a, n, {"value"});
    if (!p[0]) fail(line, "list." + n + "() needs an argument");
    const auto& items = obj.list().items;
    charge(items.size(), line);
    int64_t count = 0;
    for (size_t i = 0; i < items.size(); ++i) {
      if (!equals(items[i], *p[0])) continue;
      if (n == "index") return Value::integer(static_cast<int64_t>(i));
      ++count;
    }
    if (n == "index") fail(line, repr(*p[0]) + " is not in list");
    return Value::integer(count);
  }
  const std::string& s = obj.str();
  charge(s.size() / 64, line);
  if (n == "strip" || n == "lstrip" || n == "rstrip") {
    Args p = bind(*this, a, n, {"chars"});
    return Value::string(strip(s, p[0], n != "rstrip", n != "lstrip", *this, line));
  }
  if (n == "startswith" || n == "endswith") {
    Args p = bind(*this, a, n, {"prefix"});
    if (!p[0]) fail(line, n + "() needs an argument");
    auto match = [&](const Value& x) {
      if (!x.is_string()) fail(line, n + " first arg must be str or a tuple of str, not " + type_name(x));
      const std::string& t = x.str();
      if (t.size() > s.size()) return false;
      return n == "startswith" ? s.compare(0, t.size(), t) == 0 : s.compare(s.size() - t.size(), t.size(), t) == 0;
    };
    if (p[0]->is_list() && p[0]->list().kind == ListKind::Tuple) {
      for (const Value& x : p[0]->list().items)
        if (match(x)) return Value::boolean(true);
      return Value::boolean(false);
    }
    return Value::boolean(match(*p[0]));
  }
  if (n == "split" || n == "rsplit") {
    Args p = bind(*this, a, n, {"sep", "maxsplit"});
    const int64_t maxsplit = int_arg(*this, p[1], -1, "maxsplit", line);
    return Value::list(split(s, p[0], maxsplit, n == "rsplit", *this, line));
  }
  if (n == "splitlines") {
    bind(*this, a, n, {});
    std::vector<Value> out;
    for (auto& l : splitlines(s)) out.push_back(Value::string(std::move(l)));
    return Value::list(std::move(out));
  }
  if (n == "upper" || n == "lower" || n == "title" || n == "capitalize") {
    bind(*this, a, n, {});
    const CaseMode m = n == "upper" ? CaseMode::Upper : n == "lower" ? CaseMode::Lower
                       : n == "title" ? CaseMode::PyTitle : CaseMode::Capitalize;
    return Value::string(change_case(*this, s, m, line));
  }
  if (n == "replace") {
    Args p = bind(*this, a, n, {"old", "new", "count"});
    const std::string& old = str_arg(*this, p[0], "replace() old", line);
    const std::string& with = str_arg(*this, p[1], "replace() new", line);
    return Value::string(replace(*this, s, old, with, int_arg(*this, p[2], -1, "replace count", line), line));
  }
  if (n == "find" || n == "rfind" || n == "count") {
    Args p = bind(*this, a, n, {"sub"});
    const std::string& sub = str_arg(*this, p[0], (n + "() argument").c_str(), line);
    if (n == "count") {
      if (sub.empty()) return Value::integer(static_cast<int64_t>(utf8_length(s) + 1));
      int64_t c = 0;
      for (size_t pos = s.find(sub); pos != std::string::npos; pos = s.find(sub, pos + sub.size())) ++c;
      return Value::integer(c);
    }
    const size_t pos = n == "find" ? s.find(sub) : s.rfind(sub);
    if (pos == std::string::npos) return Value::integer(-1);
    return Value::integer(static_cast<int64_t>(utf8_length(std::string_view(s).substr(0, pos))));
  }
  if (n == "join") {
    Args p = bind(*this, a, n, {"iterable"});
    if (!p[0]) fail(line, "join() needs an argument");
    std::string out;
    bool first = true;
    for (const Value& item : iterate(*p[0], line)) {
      if (!item.is_string()) fail(line, "sequence item: expected str instance, " + type_name(item) + " found");
      if (!first) out += s;
      first = false;
      out += item.str();
      check_size(out.size(), line);
    }
    return Value::string(std::move(out));
  }
  fail(line, "unsupported string method '" + n + "'");
}

// ---- globals -------------------------------------------------------------------

Value Interp::global(const std::string& name) const {
  if (name == "range") {
    return Value::callable("range", [](Interp& in, CallArgs& a) -> Value {
      if (!a.kw.empty()) in.fail(a.line, "range() takes no keyword arguments");
      if (a.pos.empty() || a.pos.size() > 3) in.fail(a.line, "range() expects 1 to 3 arguments");
      int64_t v[3] = {0, 0, 1};
      for (size_t i = 0; i < a.pos.size(); ++i) {
        if (!a.pos[i].is_int() && !a.pos[i].is_bool())
          in.fail(a.line, "range() arguments must be integers, not '" + type_name(a.pos[i]) + "'");
      }
      if (a.pos.size() == 1) {
        v[1] = a.pos[0].as_int();
      } else {
        v[0] = a.pos[0].as_int();
        v[1] = a.pos[1].as_int();
        if (a.pos.size() == 3) v[2] = a.pos[2].as_int();
      }
      if (v[2] == 0) in.fail(a.line, "range() arg 3 must not be zero");
      // The sandbox's MAX_RANGE.
      const double count = v[2] > 0 ? std::ceil((static_cast<double>(v[1]) - static_cast<double>(v[0])) / static_cast<double>(v[2]))
                                    : std::ceil((static_cast<double>(v[0]) - static_cast<double>(v[1])) / static_cast<double>(-v[2]));
      if (count > 100000) in.fail(a.line, "range too big: the sandbox allows at most 100000 items");
      in.charge(static_cast<uint64_t>(std::max(0.0, count)), a.line);
      return Value::range(v[0], v[1], v[2]);
    });
  }
  if (name == "namespace") {
    return Value::callable("namespace", [](Interp& in, CallArgs& a) -> Value {
      Value ns = in.make_namespace();
      if (a.pos.size() > 1) in.fail(a.line, "namespace() takes at most one positional argument");
      if (a.pos.size() == 1) {
        if (!a.pos[0].is_dict()) in.fail(a.line, "namespace() positional argument must be a dict");
        for (const auto& [k, v] : a.pos[0].dict().items) {
          if (!k.is_string()) in.fail(a.line, "namespace() keys must be strings");
          ns.ns().set(k.str(), v);
        }
      }
      for (auto& [k, v] : a.kw) ns.ns().set(k, v);
      return ns;
    });
  }
  if (name == "dict") {
    return Value::callable("dict", [](Interp& in, CallArgs& a) -> Value {
      std::vector<std::pair<Value, Value>> items;
      if (a.pos.size() > 1) in.fail(a.line, "dict() takes at most one positional argument");
      if (a.pos.size() == 1) {
        if (!a.pos[0].is_dict()) in.fail(a.line, "dict() positional argument must be a dict");
        items = a.pos[0].dict().items;
      }
      for (auto& [k, v] : a.kw) items.emplace_back(Value::string(k), v);
      return Value::dict(std::move(items));
    });
  }
  if (name == "raise_exception") {
    return Value::callable("raise_exception", [](Interp& in, CallArgs& a) -> Value {
      const std::string msg = a.pos.empty() ? std::string() : to_str(a.pos[0]);
      in.fail(a.line, "template raised an exception: " + msg);
    });
  }
  if (name == "strftime_now") {
    return Value::callable("strftime_now", [](Interp& in, CallArgs& a) -> Value {
      if (a.pos.size() != 1 || !a.pos[0].is_string() || !a.kw.empty())
        in.fail(a.line, "strftime_now() takes one format string");
      const std::string& fmt = a.pos[0].str();
      if (fmt.empty()) return Value::string("");
      const std::time_t now = std::time(nullptr);
      std::tm tm{};
      localtime_r(&now, &tm);
      for (size_t cap = 256; cap <= 65536; cap *= 4) {
        std::string buf(cap, '\0');
        const size_t len = std::strftime(buf.data(), buf.size(), fmt.c_str(), &tm);
        if (len > 0) {
          buf.resize(len);
          return Value::string(std::move(buf));
        }
      }
      in.fail(a.line, "strftime_now(): format produced no output or is too long");
    });
  }
  return Value();
}

}  // namespace runnel::jinja
