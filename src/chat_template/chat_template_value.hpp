#pragma once
// Values of the chat-template interpreter (a Jinja2 subset).  They model the
// Python objects a Hugging Face chat template sees: None, bool, int, float,
// str, list/tuple, dict, jinja2's Undefined and Namespace, and callables.
// Strings, lists and dicts are immutable and shared; namespaces are the only
// mutable objects, as in jinja2's ImmutableSandboxedEnvironment.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace runnel::jinja {

class Value;
class Interp;

enum class ListKind : uint8_t {
  List,
  Tuple,
  Range,       // range(...) object; start/step kept for printing
  DictItems,   // dict.items() view
  DictKeys,    // dict.keys() view
  DictValues,  // dict.values() view
  Iterator,    // a generator (map, select, reverse, ...): single pass, no len()
};

// Deepest nesting of lists/dicts a value may have.  Printing, comparing and
// destroying values recurse, so this bounds their stack use.
inline constexpr uint32_t kMaxValueDepth = 256;

// Bytes of every string value made on this thread so far (Value::string);
// a render's difference bounds the memory its strings can hold.
uint64_t string_bytes_made();

struct ListObj {
  std::vector<Value> items;
  ListKind kind = ListKind::List;
  uint32_t depth = 1;
  int64_t range_start = 0, range_stop = 0, range_step = 1;  // kind == Range
  mutable size_t iter_pos = 0;  // kind == Iterator: items before it are consumed
};

struct DictObj {
  std::vector<std::pair<Value, Value>> items;  // insertion order, unique keys
  uint32_t depth = 1;
  const Value* find(const Value& key) const;
  const Value* find(std::string_view key) const;
};

struct NamespaceObj {
  std::vector<std::pair<std::string, Value>> attrs;
  bool is_loop = false;  // a for-loop's `loop` object: read-only
  const Value* find(std::string_view name) const;
  void set(const std::string& name, Value v);
};

struct CallArgs {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
  int line = 0;
};

struct Callable {
  std::string name;
  std::function<Value(Interp&, CallArgs&)> fn;
};

class Value {
 public:
  enum class Type : uint8_t { Undefined, None, Bool, Int, Float, String, List, Dict, Namespace, Callable };

  Value() = default;  // Undefined without a hint
  static Value undefined(std::string hint);
  static Value none() { Value v; v.type_ = Type::None; return v; }
  static Value boolean(bool b) { Value v; v.type_ = Type::Bool; v.i_ = b ? 1 : 0; return v; }
  static Value integer(int64_t i) { Value v; v.type_ = Type::Int; v.i_ = i; return v; }
  static Value real(double d) { Value v; v.type_ = Type::Float; v.f_ = d; return v; }
  // Adds s.size() to string_bytes_made().
  static Value string(std::string s);
  // list() and dict() throw std::length_error when nesting exceeds kMaxValueDepth.
  static Value list(std::vector<Value> items, ListKind kind = ListKind::List);
  static Value range(int64_t start, int64_t stop, int64_t step);
  static Value dict(std::vector<std::pair<Value, Value>> items);  // later duplicates overwrite
  static Value ns(std::shared_ptr<NamespaceObj> n);
  static Value callable(std::string name, std::function<Value(Interp&, CallArgs&)> fn);

  Type type() const { return type_; }
  bool is_undefined() const { return type_ == Type::Undefined; }
  bool is_none() const { return type_ == Type::None; }
  bool is_bool() const { return type_ == Type::Bool; }
  bool is_int() const { return type_ == Type::Int; }
  bool is_float() const { return type_ == Type::Float; }
  bool is_number() const { return type_ == Type::Int || type_ == Type::Float || type_ == Type::Bool; }
  bool is_string() const { return type_ == Type::String; }
  bool is_list() const { return type_ == Type::List; }
  bool is_dict() const { return type_ == Type::Dict; }
  bool is_namespace() const { return type_ == Type::Namespace; }
  bool is_callable() const { return type_ == Type::Callable; }

  bool as_bool() const { return i_ != 0; }
  int64_t as_int() const { return i_; }  // Int and Bool
  double as_float() const { return f_; }
  double to_double() const { return type_ == Type::Float ? f_ : static_cast<double>(i_); }
  const std::string& str() const { return *static_cast<const std::string*>(p_.get()); }
  const ListObj& list() const { return *static_cast<const ListObj*>(p_.get()); }
  const DictObj& dict() const { return *static_cast<const DictObj*>(p_.get()); }
  NamespaceObj& ns() const { return *static_cast<NamespaceObj*>(p_.get()); }
  const Callable& fn() const { return *static_cast<const Callable*>(p_.get()); }
  const void* identity() const { return p_.get(); }
  // Why this value is undefined ("'x' is undefined"), for error messages.
  std::string undefined_hint() const;
  uint32_t depth() const;  // nesting of lists/dicts, 0 for scalars

 private:
  Type type_ = Type::Undefined;
  union {
    int64_t i_ = 0;
    double f_;
  };
  std::shared_ptr<void> p_;
};

// ---- Python semantics -------------------------------------------------------

// Python type name, as used in TypeError messages ("str", "int", "list", ...).
std::string type_name(const Value& v);
bool truthy(const Value& v);
bool equals(const Value& a, const Value& b, int depth = 0);
// a < b.  Throws TypeError-like std::invalid_argument for unordered types.
bool less_than(const Value& a, const Value& b, int depth = 0);
// str(v): what {{ v }} prints.  Throws std::invalid_argument for values that have
// no stable text (functions).
std::string to_str(const Value& v);
std::string repr(const Value& v, int depth = 0);
std::string float_repr(double d);

struct JsonOptions {
  bool ensure_ascii = false;
  bool sort_keys = false;
  bool has_indent = false;
  std::string indent;
  std::string item_sep = ", ";
  std::string key_sep = ": ";
};
// Python's json.dumps.  Throws std::invalid_argument for unserialisable values.
std::string to_json(const Value& v, const JsonOptions& opt);

// ---- Unicode helpers (strings are UTF-8; invalid bytes map to U+DC80..U+DCFF) ----
std::u32string decode_utf8(std::string_view s);
void append_utf8(std::string& out, char32_t cp);
std::string encode_utf8(std::u32string_view s);
bool is_py_space(char32_t c);  // Python str.isspace()
// Byte length of the Python whitespace character at s[pos], or 0.
size_t space_len_at(std::string_view s, size_t pos);
// Number of code points.
size_t utf8_length(std::string_view s);

}  // namespace runnel::jinja
