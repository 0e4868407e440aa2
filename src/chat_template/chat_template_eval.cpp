// Evaluator of the chat-template language: statements, scoping and the
// expression operators, with Python/jinja2 semantics (see chat_template_value
// for ==, <, str()).  Scoping follows jinja2: every for-loop iteration and
// macro call is a fresh scope, `if` is not a scope, `set` binds in the current
// scope, namespaces carry values out of loops.
#include <cmath>
#include <stdexcept>

#include "chat_template/chat_template_interp.hpp"
#include "runnel/error.hpp"

namespace runnel::jinja {

const Value* Frame::find(std::string_view name) const {
  for (const Frame* f = this; f; f = f->parent.get()) {
    for (const auto& [k, v] : f->vars)
      if (k == name) return &v;
  }
  return nullptr;
}

void Frame::set(const std::string& name, Value v) {
  for (auto& [k, old] : vars) {
    if (k == name) {
      old = std::move(v);
      return;
    }
  }
  vars.emplace_back(name, std::move(v));
}

struct Interp::DepthGuard {
  Interp& in;
  DepthGuard(Interp& interp, int line) : in(interp) {
    if (++in.depth_ > in.limits_.max_depth)
      in.fail(line, "evaluation nested deeper than " + std::to_string(in.limits_.max_depth) +
                        " levels (runaway macro recursion?)");
  }
  ~DepthGuard() { --in.depth_; }
};

Interp::Interp(const Program& prog, const RenderLimits& limits)
    : prog_(prog), limits_(limits), made_at_start_(string_bytes_made()) {}

Interp::~Interp() {
  // Namespaces may reference each other (even themselves); empty them one by
  // one so nothing leaks and no destructor recurses deeply.
  for (auto& ns : namespaces_) {
    auto attrs = std::move(ns->attrs);
    ns->attrs.clear();
  }
}

void Interp::fail(int line, const std::string& msg) const {
  throw Error("chat template '" + prog_.name + "': line " + std::to_string(line) + ": " + msg);
}

void Interp::charge(uint64_t steps, int line) {
  steps_ += steps;
  if (steps_ > limits_.max_steps)
    fail(line, "rendering exceeded " + std::to_string(limits_.max_steps) + " evaluation steps (runaway loop?)");
  if (string_bytes_made() - made_at_start_ > limits_.max_built_bytes)
    fail(line, "strings built while rendering exceed " + std::to_string(limits_.max_built_bytes) +
                   " bytes in all (limits.max_built_bytes)");
}

void Interp::check_size(size_t bytes, int line) const {
  if (bytes > limits_.max_output_bytes)
    fail(line, "string of " + std::to_string(bytes) + " bytes exceeds the output limit of " +
                   std::to_string(limits_.max_output_bytes) + " bytes");
}

void Interp::append(std::string& out, std::string_view text, int line) const {
  if (text.size() > limits_.max_output_bytes - out.size())
    fail(line, "rendered text exceeds the output limit of " + std::to_string(limits_.max_output_bytes) + " bytes");
  out.append(text);
}

Value Interp::make_namespace() {
  auto ns = std::make_shared<NamespaceObj>();
  namespaces_.push_back(ns);
  return Value::ns(std::move(ns));
}

std::string Interp::render(std::vector<std::pair<std::string, Value>> globals) {
  auto root = std::make_shared<Frame>();
  root->vars = std::move(globals);
  auto top = std::make_shared<Frame>();
  top->parent = root;
  std::string out;
  exec(prog_.body, top, out);
  return out;
}

// ---- statements -------------------------------------------------------------

Interp::Flow Interp::exec(const Body& body, const FramePtr& f, std::string& out) {
  for (const StmtPtr& sp : body) {
    const Stmt& s = *sp;
    charge(1, s.line);
    switch (s.kind) {
      case StmtKind::Text: append(out, s.text, s.line); break;
      case StmtKind::Output: {
        Value v = eval(*s.expr, f);
        if (v.is_string()) {
          append(out, v.str(), s.line);
        } else {
          std::string text;
          try {
            text = to_str(v);
          } catch (const std::invalid_argument& e) {
            fail(s.line, e.what());
          } catch (const std::length_error& e) {
            fail(s.line, e.what());
          }
          append(out, text, s.line);
        }
        break;
      }
      case StmtKind::If: {
        DepthGuard guard(*this, s.line);
        bool taken = false;
        for (size_t i = 0; i < s.conds.size(); ++i) {
          if (truthy(eval(*s.conds[i], f))) {
            const Flow fl = exec(s.bodies[i], f, out);
            if (fl != Flow::Normal) return fl;
            taken = true;
            break;
          }
        }
        if (!taken) {
          const Flow fl = exec(s.else_body, f, out);
          if (fl != Flow::Normal) return fl;
        }
        break;
      }
      case StmtKind::For: {
        DepthGuard guard(*this, s.line);
        exec_for(s, f, out);
        break;
      }
      case StmtKind::Set: exec_set(s, f); break;
      case StmtKind::SetBlock: {
        DepthGuard guard(*this, s.line);
        std::string text;
        exec(s.body, f, text);
        Value v = Value::string(std::move(text));
        if (s.filters) {
          auto scope = std::make_shared<Frame>();
          scope->parent = f;
          scope->vars.emplace_back(kBlockBodyName, std::move(v));
          v = eval(*s.filters, scope);
        }
        assign(s, f, v);
        break;
      }
      case StmtKind::Macro: define_macro(s, f); break;
      case StmtKind::Break: return Flow::Break;
      case StmtKind::Continue: return Flow::Continue;
      case StmtKind::Scope: {
        DepthGuard guard(*this, s.line);
        const Flow fl = exec(s.body, f, out);
        if (fl != Flow::Normal) return fl;
        break;
      }
    }
  }
  return Flow::Normal;
}

namespace {
std::vector<Value> unpack(Interp& in, const Value& v, size_t n, int line) {
  std::vector<Value> parts = in.iterate(v, line);
  if (parts.size() != n)
    in.fail(line, (parts.size() > n ? "too many values to unpack (expected " : "not enough values to unpack (expected ") +
                      std::to_string(n) + ", got " + std::to_string(parts.size()) + ")");
  return parts;
}
}  // namespace

void Interp::assign(const Stmt& s, const FramePtr& f, const Value& v) {
  if (!s.attr.empty()) {
    const Value* target = f->find(s.targets[0]);
    if (!target || !target->is_namespace() || target->ns().is_loop)
      fail(s.line, "cannot assign attribute '" + s.attr + "' on '" + s.targets[0] + "': not a namespace() object");
    target->ns().set(s.attr, v);
    return;
  }
  if (!s.targets_tuple) {
    f->set(s.targets[0], v);
    return;
  }
  std::vector<Value> parts = unpack(*this, v, s.targets.size(), s.line);
  for (size_t i = 0; i < parts.size(); ++i) f->set(s.targets[i], std::move(parts[i]));
}

void Interp::exec_set(const Stmt& s, const FramePtr& f) { assign(s, f, eval(*s.expr, f)); }

Interp::Flow Interp::exec_for(const Stmt& s, const FramePtr& f, std::string& out) {
  std::vector<Value> items = iterate(eval(*s.expr, f), s.line);
  auto bind = [&](const FramePtr& scope, const Value& item) {
    if (!s.targets_tuple) {
      scope->vars.emplace_back(s.targets[0], item);
      return;
    }
    std::vector<Value> parts = unpack(*this, item, s.targets.size(), s.line);
    for (size_t i = 0; i < parts.size(); ++i) scope->set(s.targets[i], std::move(parts[i]));
  };
  if (s.cond) {
    std::vector<Value> kept;
    for (Value& item : items) {
      charge(1, s.line);
      auto scope = std::make_shared<Frame>();
      scope->parent = f;
      bind(scope, item);
      if (truthy(eval(*s.cond, scope))) kept.push_back(std::move(item));
    }
    items = std::move(kept);
  }
  if (items.empty()) return exec(s.else_body, f, out);

  // jinja2's LoopContext, updated in place each iteration.
  auto loop = std::make_shared<NamespaceObj>();
  loop->is_loop = true;
  namespaces_.push_back(loop);
  const int64_t n = static_cast<int64_t>(items.size());
  std::weak_ptr<NamespaceObj> weak = loop;
  const char* const kNames[] = {"index", "index0", "revindex", "revindex0", "first", "last",
                                "length", "depth", "depth0", "previtem", "nextitem", "cycle"};
  for (const char* k : kNames) loop->attrs.emplace_back(k, Value());
  loop->attrs[6].second = Value::integer(n);
  loop->attrs[7].second = Value::integer(1);
  loop->attrs[8].second = Value::integer(0);
  loop->attrs[11].second = Value::callable("loop.cycle", [weak](Interp& in, CallArgs& a) -> Value {
    if (a.pos.empty()) in.fail(a.line, "loop.cycle() needs at least one argument");
    auto l = weak.lock();
    if (!l) in.fail(a.line, "loop.cycle() called outside its loop");
    const int64_t i = l->attrs[1].second.as_int();
    return a.pos[static_cast<size_t>(i % static_cast<int64_t>(a.pos.size()))];
  });
  const Value loop_value = Value::ns(loop);
  for (int64_t i = 0; i < n; ++i) {
    charge(1, s.line);
    auto& attrs = loop->attrs;
    attrs[0].second = Value::integer(i + 1);
    attrs[1].second = Value::integer(i);
    attrs[2].second = Value::integer(n - i);
    attrs[3].second = Value::integer(n - i - 1);
    attrs[4].second = Value::boolean(i == 0);
    attrs[5].second = Value::boolean(i == n - 1);
    attrs[9].second = i > 0 ? items[static_cast<size_t>(i - 1)] : Value::undefined("there is no previous item");
    attrs[10].second = i + 1 < n ? items[static_cast<size_t>(i + 1)] : Value::undefined("there is no next item");
    auto scope = std::make_shared<Frame>();
    scope->parent = f;
    bind(scope, items[static_cast<size_t>(i)]);
    scope->set("loop", loop_value);
    const Flow fl = exec(s.body, scope, out);
    if (fl == Flow::Break) break;
  }
  return Flow::Normal;
}

void Interp::define_macro(const Stmt& s, const FramePtr& f) {
  std::weak_ptr<Frame> weak = f;
  const Stmt* def = &s;
  Value macro = Value::callable(s.text, [weak, def](Interp& in, CallArgs& a) -> Value {
    FramePtr defining = weak.lock();
    if (!defining) in.fail(a.line, "macro '" + def->text + "' called outside the scope that defined it");
    if (a.pos.size() > def->targets.size())
      in.fail(a.line, "macro '" + def->text + "' takes not more than " + std::to_string(def->targets.size()) +
                          " argument(s)");
    auto scope = std::make_shared<Frame>();
    scope->parent = defining;
    std::vector<bool> given(def->targets.size(), false);
    for (size_t i = 0; i < a.pos.size(); ++i) {
      scope->vars.emplace_back(def->targets[i], std::move(a.pos[i]));
      given[i] = true;
    }
    for (auto& [k, v] : a.kw) {
      size_t i = 0;
      while (i < def->targets.size() && def->targets[i] != k) ++i;
      if (i == def->targets.size()) in.fail(a.line, "macro '" + def->text + "' takes no keyword argument '" + k + "'");
      if (given[i]) in.fail(a.line, "macro '" + def->text + "' got multiple values for argument '" + k + "'");
      scope->vars.emplace_back(k, std::move(v));
      given[i] = true;
    }
    for (size_t i = 0; i < def->targets.size(); ++i) {
      if (given[i]) continue;
      if (def->defaults[i]) {
        scope->vars.emplace_back(def->targets[i], in.eval(*def->defaults[i], scope));
      } else {
        scope->vars.emplace_back(def->targets[i],
                                 Value::undefined("parameter '" + def->targets[i] + "' was not provided"));
      }
    }
    std::string text;
    DepthGuard guard(in, a.line);
    in.exec(def->body, scope, text);
    return Value::string(std::move(text));
  });
  f->set(s.text, std::move(macro));
}

// ---- expressions -------------------------------------------------------------

Value Interp::eval(const Expr& e, const FramePtr& f) {
  DepthGuard guard(*this, e.line);
  charge(1, e.line);
  try {
    return eval_inner(e, f);
  } catch (const std::invalid_argument& ex) {
    fail(e.line, ex.what());
  } catch (const std::length_error& ex) {
    fail(e.line, ex.what());
  }
}

void Interp::eval_call_args(const Expr& e, size_t first, const FramePtr& f, CallArgs& out) {
  out.line = e.line;
  for (size_t i = first; i < e.args.size(); ++i) out.pos.push_back(eval(*e.args[i], f));
  for (size_t i = 0; i < e.kwargs.size(); ++i) out.kw.emplace_back(e.kwnames[i], eval(*e.kwargs[i], f));
}

Value Interp::eval_inner(const Expr& e, const FramePtr& f) {
  switch (e.kind) {
    case ExprKind::Const: return e.value;
    case ExprKind::Name: {
      if (const Value* v = f->find(e.name)) return *v;
      Value g = global(e.name);
      if (!g.is_undefined()) return g;
      return Value::undefined("'" + e.name + "' is undefined");
    }
    case ExprKind::List:
    case ExprKind::Tuple: {
      std::vector<Value> items;
      items.reserve(e.args.size());
      for (const auto& a : e.args) items.push_back(eval(*a, f));
      return Value::list(std::move(items), e.kind == ExprKind::Tuple ? ListKind::Tuple : ListKind::List);
    }
    case ExprKind::Dict: {
      std::vector<std::pair<Value, Value>> items;
      for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
        Value k = eval(*e.args[i], f);
        if (k.is_list() && k.list().kind != ListKind::Tuple) fail(e.line, "unhashable type: 'list'");
        if (k.is_dict()) fail(e.line, "unhashable type: 'dict'");
        items.emplace_back(std::move(k), eval(*e.args[i + 1], f));
      }
      return Value::dict(std::move(items));
    }
    case ExprKind::GetAttr: return getattr(eval(*e.args[0], f), e.name, e.line);
    case ExprKind::GetItem: {
      Value obj = eval(*e.args[0], f);
      return getitem(obj, eval(*e.args[1], f), e.line);
    }
    case ExprKind::Slice: return eval_slice(e, f);
    case ExprKind::Call: {
      const Expr& callee = *e.args[0];
      if (callee.kind == ExprKind::GetAttr) {
        // obj.method(...) without materialising a bound method.
        Value obj = eval(*callee.args[0], f);
        if (has_method(obj, callee.name)) {
          CallArgs args;
          eval_call_args(e, 1, f, args);
          return *call_method(obj, callee.name, args, e.line);
        }
        Value fn = getattr(obj, callee.name, callee.line);
        CallArgs args;
        eval_call_args(e, 1, f, args);
        return call(fn, args, e.line);
      }
      Value fn = eval(callee, f);
      CallArgs args;
      eval_call_args(e, 1, f, args);
      return call(fn, args, e.line);
    }
    case ExprKind::Filter: {
      Value subject = eval(*e.args[0], f);
      CallArgs args;
      eval_call_args(e, 1, f, args);
      return apply_filter(e.name, subject, args, e.line);
    }
    case ExprKind::Test: {
      Value subject = eval(*e.args[0], f);
      CallArgs args;
      eval_call_args(e, 1, f, args);
      const bool r = apply_test(e.name, subject, args, e.line);
      return Value::boolean(e.negated ? !r : r);
    }
    case ExprKind::Neg:
    case ExprKind::Pos: {
      Value v = eval(*e.args[0], f);
      if (v.is_undefined()) fail(e.line, v.undefined_hint());
      if (!v.is_number()) fail(e.line, std::string("bad operand type for unary ") + (e.kind == ExprKind::Neg ? "-" : "+") +
                                           ": '" + type_name(v) + "'");
      if (e.kind == ExprKind::Pos) return v.is_bool() ? Value::integer(v.as_int()) : v;
      if (v.is_float()) return Value::real(-v.as_float());
      if (v.as_int() == INT64_MIN) fail(e.line, "integer overflow");
      return Value::integer(-v.as_int());
    }
    case ExprKind::Not: return Value::boolean(!truthy(eval(*e.args[0], f)));
    case ExprKind::And: {
      Value a = eval(*e.args[0], f);
      return truthy(a) ? eval(*e.args[1], f) : a;
    }
    case ExprKind::Or: {
      Value a = eval(*e.args[0], f);
      return truthy(a) ? a : eval(*e.args[1], f);
    }
    case ExprKind::Binary: {
      Value a = eval(*e.args[0], f);
      Value b = eval(*e.args[1], f);
      return eval_binary(e, a, b);
    }
    case ExprKind::Compare: return eval_compare(e, f);
    case ExprKind::CondExpr: {
      if (truthy(eval(*e.args[1], f))) return eval(*e.args[0], f);
      if (e.args[2]) return eval(*e.args[2], f);
      return Value::undefined("the inline if-expression evaluated to false and has no else clause");
    }
  }
  fail(e.line, "internal error: unknown expression kind");
}

namespace {

// Python's float floor division and modulo.
std::pair<double, double> float_divmod(double vx, double wx) {
  double mod = std::fmod(vx, wx);
  double div = (vx - mod) / wx;
  if (mod != 0.0) {
    if ((wx < 0) != (mod < 0)) {
      mod += wx;
      div -= 1.0;
    }
  } else {
    mod = std::copysign(0.0, wx);
  }
  double floordiv;
  if (div != 0.0) {
    floordiv = std::floor(div);
    if (div - floordiv > 0.5) floordiv += 1.0;
  } else {
    floordiv = std::copysign(0.0, vx / wx);
  }
  return {floordiv, mod};
}

}  // namespace

Value Interp::eval_binary(const Expr& e, const Value& a, const Value& b) {
  const BinOp op = e.op;
  const int line = e.line;
  if (op == BinOp::Concat) {
    std::string s = to_str(a);
    const std::string t = to_str(b);
    check_size(s.size() + t.size(), line);
    charge((s.size() + t.size()) / 64, line);
    s += t;
    return Value::string(std::move(s));
  }
  if (a.is_undefined()) fail(line, a.undefined_hint());
  if (b.is_undefined()) fail(line, b.undefined_hint());
  static const char* const kSym[] = {"+", "-", "*", "/", "//", "%", "**", "~"};
  auto unsupported = [&]() {
    return std::string("unsupported operand type(s) for ") + kSym[static_cast<int>(op)] + ": '" + type_name(a) +
           "' and '" + type_name(b) + "'";
  };
  if (a.is_number() && b.is_number()) {
    const bool fl = a.is_float() || b.is_float();
    if (!fl) {
      const int64_t x = a.as_int(), y = b.as_int();
      int64_t r = 0;
      switch (op) {
        case BinOp::Add:
          if (__builtin_add_overflow(x, y, &r)) fail(line, "integer overflow");
          return Value::integer(r);
        case BinOp::Sub:
          if (__builtin_sub_overflow(x, y, &r)) fail(line, "integer overflow");
          return Value::integer(r);
        case BinOp::Mul:
          if (__builtin_mul_overflow(x, y, &r)) fail(line, "integer overflow");
          return Value::integer(r);
        case BinOp::Div:
          if (y == 0) fail(line, "division by zero");
          return Value::real(static_cast<double>(x) / static_cast<double>(y));
        case BinOp::FloorDiv:
        case BinOp::Mod: {
          if (y == 0) fail(line, "integer division or modulo by zero");
          if (x == INT64_MIN && y == -1) fail(line, "integer overflow");
          int64_t q = x / y, m = x % y;
          if (m != 0 && ((m < 0) != (y < 0))) {
            q -= 1;
            m += y;
          }
          return Value::integer(op == BinOp::FloorDiv ? q : m);
        }
        case BinOp::Pow: {
          if (y < 0) {
            if (x == 0) fail(line, "0 cannot be raised to a negative power");
            return Value::real(std::pow(static_cast<double>(x), static_cast<double>(y)));
          }
          int64_t result = 1, base = x, exp = y;
          while (exp > 0) {
            if (exp & 1)
              if (__builtin_mul_overflow(result, base, &result)) fail(line, "integer overflow");
            exp >>= 1;
            if (exp > 0 && __builtin_mul_overflow(base, base, &base)) fail(line, "integer overflow");
          }
          return Value::integer(result);
        }
        default: break;
      }
    } else {
      const double x = a.to_double(), y = b.to_double();
      switch (op) {
        case BinOp::Add: return Value::real(x + y);
        case BinOp::Sub: return Value::real(x - y);
        case BinOp::Mul: return Value::real(x * y);
        case BinOp::Div:
          if (y == 0.0) fail(line, "float division by zero");
          return Value::real(x / y);
        case BinOp::FloorDiv:
        case BinOp::Mod: {
          if (y == 0.0) fail(line, "float modulo by zero");
          auto [q, m] = float_divmod(x, y);
          return Value::real(op == BinOp::FloorDiv ? q : m);
        }
        case BinOp::Pow: {
          if (x == 0.0 && y < 0.0) fail(line, "0.0 cannot be raised to a negative power");
          if (x < 0.0 && y != std::floor(y)) fail(line, "negative number raised to a fractional power (complex result)");
          const double r = std::pow(x, y);
          if (std::isinf(r) && std::isfinite(x) && std::isfinite(y)) fail(line, "float overflow in '**'");
          return Value::real(r);
        }
        default: break;
      }
    }
    fail(line, unsupported());
  }
  if (op == BinOp::Add) {
    if (a.is_string() && b.is_string()) {
      check_size(a.str().size() + b.str().size(), line);
      charge((a.str().size() + b.str().size()) / 64, line);
      return Value::string(a.str() + b.str());
    }
    if (a.is_list() && b.is_list()) {
      const ListObj& x = a.list();
      const ListObj& y = b.list();
      const bool tx = x.kind == ListKind::Tuple, ty = y.kind == ListKind::Tuple;
      if (tx != ty || (!tx && x.kind != ListKind::List) || (!ty && y.kind != ListKind::List)) fail(line, unsupported());
      charge(x.items.size() + y.items.size(), line);
      std::vector<Value> items = x.items;
      items.insert(items.end(), y.items.begin(), y.items.end());
      return Value::list(std::move(items), x.kind);
    }
    if (a.is_string() || b.is_string())
      fail(line, "can only concatenate str (not \"" + type_name(a.is_string() ? b : a) + "\") to str");
    fail(line, unsupported());
  }
  if (op == BinOp::Mul) {
    const bool a_seq = a.is_string() || (a.is_list() && (a.list().kind == ListKind::List || a.list().kind == ListKind::Tuple));
    const bool b_seq = b.is_string() || (b.is_list() && (b.list().kind == ListKind::List || b.list().kind == ListKind::Tuple));
    if ((a_seq && (b.is_int() || b.is_bool())) || (b_seq && (a.is_int() || a.is_bool()))) {
      const Value& seq = a_seq ? a : b;
      int64_t times = std::max<int64_t>(0, (a_seq ? b : a).as_int());
      // Repeating nothing gives nothing, however many times (no loop of 10^13 empty copies).
      if ((seq.is_string() && seq.str().empty()) || (seq.is_list() && seq.list().items.empty())) times = 0;
      if (seq.is_string()) {
        const size_t len = seq.str().size();
        if (len != 0 && static_cast<uint64_t>(times) > limits_.max_output_bytes / len)
          fail(line, "string repetition exceeds the output limit");
        charge(len * static_cast<uint64_t>(times) / 64, line);
        std::string out;
        out.reserve(len * static_cast<size_t>(times));
        for (int64_t i = 0; i < times; ++i) out += seq.str();
        return Value::string(std::move(out));
      }
      const auto& items = seq.list().items;
      if (!items.empty() && static_cast<uint64_t>(times) > limits_.max_steps / items.size())
        fail(line, "list repetition exceeds the evaluation step limit");
      charge(items.size() * static_cast<uint64_t>(times), line);
      std::vector<Value> out;
      for (int64_t i = 0; i < times; ++i) out.insert(out.end(), items.begin(), items.end());
      return Value::list(std::move(out), seq.list().kind);
    }
  }
  if (op == BinOp::Mod && a.is_string())
    fail(line, "unsupported printf-style string formatting ('%' on a string)");
  fail(line, unsupported());
}

Value Interp::eval_compare(const Expr& e, const FramePtr& f) {
  Value left = eval(*e.args[0], f);
  for (size_t i = 0; i < e.cmp.size(); ++i) {
    Value right = eval(*e.args[i + 1], f);
    bool r = false;
    const CmpOp op = e.cmp[i];
    switch (op) {
      case CmpOp::Eq: r = equals(left, right); break;
      case CmpOp::Ne: r = !equals(left, right); break;
      case CmpOp::Lt:
      case CmpOp::Le:
      case CmpOp::Gt:
      case CmpOp::Ge:
        if (left.is_undefined()) fail(e.line, left.undefined_hint());
        if (right.is_undefined()) fail(e.line, right.undefined_hint());
        if (op == CmpOp::Lt) r = less_than(left, right);
        if (op == CmpOp::Gt) r = less_than(right, left);
        if (op == CmpOp::Le) r = less_than(left, right) || equals(left, right);
        if (op == CmpOp::Ge) r = less_than(right, left) || equals(left, right);
        break;
      case CmpOp::In:
      case CmpOp::NotIn: {
        CallArgs args;
        args.line = e.line;
        args.pos.push_back(right);
        r = apply_test("in", left, args, e.line);
        if (op == CmpOp::NotIn) r = !r;
        break;
      }
    }
    if (!r) return Value::boolean(false);
    left = std::move(right);
  }
  return Value::boolean(true);
}

namespace {

// CPython's PySlice_AdjustIndices; returns the number of selected items.
int64_t adjust_slice(int64_t len, int64_t* start, int64_t* stop, int64_t step) {
  auto clamp = [&](int64_t* v) {
    if (*v < 0) {
      *v += len;
      if (*v < 0) *v = step < 0 ? -1 : 0;
    } else if (*v >= len) {
      *v = step < 0 ? len - 1 : len;
    }
  };
  clamp(start);
  clamp(stop);
  if (step < 0) return *stop < *start ? (*start - *stop - 1) / (-step) + 1 : 0;
  return *start < *stop ? (*stop - *start - 1) / step + 1 : 0;
}

}  // namespace

Value Interp::eval_slice(const Expr& e, const FramePtr& f) {
  Value obj = eval(*e.args[0], f);
  auto bound = [&](size_t i, bool* given) -> int64_t {
    *given = false;
    if (!e.args[i]) return 0;
    Value v = eval(*e.args[i], f);
    if (v.is_none()) return 0;
    if (v.is_int() || v.is_bool()) {
      *given = true;
      return v.as_int();
    }
    fail(e.line, "slice indices must be integers or None, not '" + type_name(v) + "'");
  };
  bool has_start, has_stop, has_step;
  int64_t start = bound(1, &has_start);
  int64_t stop = bound(2, &has_stop);
  int64_t step = bound(3, &has_step);
  if (!has_step) step = 1;
  if (step == 0) fail(e.line, "slice step cannot be zero");
  if (obj.is_undefined()) fail(e.line, obj.undefined_hint());
  if (step == INT64_MIN) fail(e.line, "slice step out of range");
  if (!has_start) start = step < 0 ? INT64_MAX : 0;
  if (!has_stop) stop = step < 0 ? INT64_MIN : INT64_MAX;
  if (obj.is_string()) {
    const std::string& s = obj.str();
    const bool ascii = std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
    if (ascii) {
      const int64_t n = adjust_slice(static_cast<int64_t>(s.size()), &start, &stop, step);
      if (step == 1) return Value::string(s.substr(static_cast<size_t>(start), static_cast<size_t>(n)));
      std::string out;
      for (int64_t i = 0, k = start; i < n; ++i, k += step) out.push_back(s[static_cast<size_t>(k)]);
      return Value::string(std::move(out));
    }
    const std::u32string cps = decode_utf8(s);
    const int64_t n = adjust_slice(static_cast<int64_t>(cps.size()), &start, &stop, step);
    std::string out;
    for (int64_t i = 0, k = start; i < n; ++i, k += step) append_utf8(out, cps[static_cast<size_t>(k)]);
    return Value::string(std::move(out));
  }
  if (obj.is_list()) {
    const ListObj& l = obj.list();
    if (l.kind == ListKind::DictItems || l.kind == ListKind::DictKeys || l.kind == ListKind::DictValues ||
        l.kind == ListKind::Iterator)
      fail(e.line, "'" + type_name(obj) + "' object is not subscriptable");
    const int64_t len = static_cast<int64_t>(l.items.size());
    const int64_t n = adjust_slice(len, &start, &stop, step);
    charge(static_cast<uint64_t>(n), e.line);
    if (l.kind == ListKind::Range) {
      return Value::range(l.range_start + start * l.range_step, l.range_start + stop * l.range_step,
                          l.range_step * step);
    }
    std::vector<Value> out;
    out.reserve(static_cast<size_t>(n));
    for (int64_t i = 0, k = start; i < n; ++i, k += step) out.push_back(l.items[static_cast<size_t>(k)]);
    return Value::list(std::move(out), l.kind);
  }
  // jinja2 compiles slices to a plain Python subscript: no Undefined fallback.
  if (obj.is_dict()) fail(e.line, "unhashable type: 'slice'");
  fail(e.line, "'" + type_name(obj) + "' object is not subscriptable");
}

// ---- objects -----------------------------------------------------------------

Value Interp::call(const Value& fn, CallArgs& args, int line) {
  args.line = line;
  if (fn.is_callable()) return fn.fn().fn(*this, args);
  if (fn.is_undefined()) fail(line, fn.undefined_hint());
  std::string msg = "'";
  msg += type_name(fn);
  msg += "' object is not callable";
  fail(line, msg);
}

namespace {
std::string object_repr(const Value& v) {
  if (v.is_none()) return "None";
  return type_name(v) + " object";
}
}  // namespace

Value Interp::getattr(const Value& obj, const std::string& name, int line) {
  switch (obj.type()) {
    case Value::Type::Undefined: fail(line, obj.undefined_hint());
    case Value::Type::Dict: {
      if (has_method(obj, name)) break;
      if (const Value* v = obj.dict().find(std::string_view(name))) return *v;
      return Value::undefined("'dict object' has no attribute '" + name + "'");
    }
    case Value::Type::Namespace:
      if (const Value* v = obj.ns().find(name)) return *v;
      return Value::undefined("'" + type_name(obj) + "' has no attribute '" + name + "'");
    case Value::Type::List:
      if (name == "append" || name == "extend" || name == "insert" || name == "pop" || name == "remove" ||
          name == "clear" || name == "sort" || name == "reverse")
        return Value::undefined("access to attribute '" + name + "' of 'list' object is unsafe (lists are immutable)");
      break;
    default: break;
  }
  if (has_method(obj, name)) {
    Value self = obj;
    return Value::callable(name, [self, name](Interp& in, CallArgs& a) -> Value {
      return *in.call_method(self, name, a, a.line);
    });
  }
  return Value::undefined("'" + object_repr(obj) + "' has no attribute '" + name + "'");
}

Value Interp::getitem(const Value& obj, const Value& key, int line) {
  switch (obj.type()) {
    case Value::Type::Undefined: fail(line, obj.undefined_hint());
    case Value::Type::Dict:
      if (const Value* v = obj.dict().find(key)) return *v;
      if (key.is_string() && has_method(obj, key.str())) return getattr(obj, key.str(), line);
      return Value::undefined("'dict object' has no attribute " + repr(key));
    case Value::Type::List:
    case Value::Type::String: {
      const bool is_view = obj.is_list() && (obj.list().kind == ListKind::DictItems ||
                                             obj.list().kind == ListKind::DictKeys ||
                                             obj.list().kind == ListKind::DictValues ||
                                             obj.list().kind == ListKind::Iterator);
      if ((key.is_int() || key.is_bool()) && !is_view) {
        int64_t i = key.as_int();
        if (obj.is_list()) {
          const auto& items = obj.list().items;
          const int64_t n = static_cast<int64_t>(items.size());
          if (i < 0) i += n;
          if (i < 0 || i >= n) return Value::undefined(type_name(obj) + " index out of range");
          return items[static_cast<size_t>(i)];
        }
        const std::string& s = obj.str();
        const std::u32string cps = decode_utf8(s);
        const int64_t n = static_cast<int64_t>(cps.size());
        if (i < 0) i += n;
        if (i < 0 || i >= n) return Value::undefined("string index out of range");
        std::string out;
        append_utf8(out, cps[static_cast<size_t>(i)]);
        return Value::string(std::move(out));
      }
      if (key.is_string()) return getattr(obj, key.str(), line);
      return Value::undefined("'" + type_name(obj) + "' indices must be integers");
    }
    case Value::Type::Namespace:
      if (key.is_string()) return getattr(obj, key.str(), line);
      return Value::undefined("'Namespace' object is not subscriptable");
    default:
      if (key.is_string()) return getattr(obj, key.str(), line);
      return Value::undefined("'" + object_repr(obj) + "' is not subscriptable");
  }
}

std::vector<Value> Interp::iterate(const Value& v, int line) {
  switch (v.type()) {
    case Value::Type::Undefined: return {};
    case Value::Type::List: {
      const ListObj& l = v.list();
      if (l.kind != ListKind::Iterator) return l.items;
      std::vector<Value> rest(l.items.begin() + static_cast<std::ptrdiff_t>(l.iter_pos), l.items.end());
      l.iter_pos = l.items.size();
      return rest;
    }
    case Value::Type::Dict: {
      std::vector<Value> keys;
      keys.reserve(v.dict().items.size());
      for (const auto& [k, val] : v.dict().items) keys.push_back(k);
      return keys;
    }
    case Value::Type::String: {
      std::vector<Value> chars;
      std::string one;
      for (char32_t c : decode_utf8(v.str())) {
        one.clear();
        append_utf8(one, c);
        chars.push_back(Value::string(one));
      }
      charge(chars.size(), line);
      return chars;
    }
    default: fail(line, "'" + type_name(v) + "' object is not iterable");
  }
}

}  // namespace runnel::jinja
