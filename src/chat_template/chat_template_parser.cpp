// Recursive-descent parser of the chat-template language.  The grammar and
// operator precedence follow jinja2.parser; constructs outside the supported
// subset are rejected here with their name and line, so that a template either
// renders like jinja2 or fails loudly.
#include <initializer_list>
#include <string>

#include "chat_template/chat_template_ast.hpp"
#include "runnel/error.hpp"

namespace runnel::jinja {
namespace {

constexpr int kMaxExprDepth = 100;   // height of one expression tree
constexpr int kMaxBlockDepth = 64;   // nested {% for %} / {% if %} / ...

class Parser {
 public:
  Parser(std::vector<Token> toks, const std::string& name) : toks_(std::move(toks)), name_(name) {}

  Program run() {
    Program prog;
    prog.name = name_;
    prog.body = parse_body({}, "", 0);
    return prog;
  }

 private:
  // ---- token helpers ----
  const Token& cur() const { return toks_[i_]; }
  const Token& peek(size_t k = 1) const { return toks_[std::min(i_ + k, toks_.size() - 1)]; }
  bool is_op(const char* op) const { return cur().type == TokType::Op && cur().text == op; }
  bool is_name(const char* n) const { return cur().type == TokType::Name && cur().text == n; }
  Token next() {
    Token t = toks_[i_];
    if (i_ + 1 < toks_.size()) ++i_;
    return t;
  }

  [[noreturn]] void fail(int line, const std::string& msg) const {
    throw Error("chat template '" + name_ + "': line " + std::to_string(line) + ": " + msg);
  }

  static std::string describe(const Token& t) {
    switch (t.type) {
      case TokType::Data: return "template text";
      case TokType::VarBegin: return "'{{'";
      case TokType::VarEnd: return "'}}'";
      case TokType::BlockBegin: return "'{%'";
      case TokType::BlockEnd: return "'%}'";
      case TokType::Name: return "'" + t.text + "'";
      case TokType::String: return "string literal";
      case TokType::Int:
      case TokType::Float: return "number '" + t.text + "'";
      case TokType::Op: return "'" + t.text + "'";
      case TokType::Eof: return "end of template";
    }
    return "token";
  }

  void expect_op(const char* op) {
    if (!is_op(op)) fail(cur().line, std::string("expected '") + op + "', got " + describe(cur()));
    next();
  }
  std::string expect_name() {
    if (cur().type != TokType::Name) fail(cur().line, "expected a name, got " + describe(cur()));
    return next().text;
  }
  void expect_block_end(const char* what) {
    if (cur().type != TokType::BlockEnd)
      fail(cur().line, std::string("expected '%}' to close '{% ") + what + " %}', got " + describe(cur()));
    next();
  }

  ExprPtr node(ExprKind kind, int line) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = line;
    return e;
  }
  // Sets the height of e from its children and enforces the limit.
  ExprPtr fin(ExprPtr e) {
    int d = 0;
    for (const auto& a : e->args)
      if (a) d = std::max(d, static_cast<int>(a->depth));
    for (const auto& a : e->kwargs)
      if (a) d = std::max(d, static_cast<int>(a->depth));
    if (d + 1 > kMaxExprDepth)
      fail(e->line, "expression nested deeper than " + std::to_string(kMaxExprDepth) + " levels");
    e->depth = static_cast<uint16_t>(d + 1);
    return e;
  }
  ExprPtr binary(ExprKind kind, int line, ExprPtr a, ExprPtr b) {
    auto e = node(kind, line);
    e->args.push_back(std::move(a));
    e->args.push_back(std::move(b));
    return fin(std::move(e));
  }

  // Recursion guard for the parser's own stack.
  struct Guard {
    Parser& p;
    Guard(Parser& parser, int line) : p(parser) {
      if (++p.rec_ > kMaxExprDepth + kMaxBlockDepth) p.fail(line, "template nested too deeply");
    }
    ~Guard() { --p.rec_; }
  };

  // ---- statements ----

  // Parses until `{% <one of ends> %}`; leaves cur() at that end name.
  Body parse_body(std::initializer_list<const char*> ends, const char* opener, int opener_line) {
    Body body;
    while (true) {
      const Token& t = cur();
      switch (t.type) {
        case TokType::Eof:
          if (ends.size() != 0)
            fail(opener_line, std::string("'{% ") + opener + " %}' is never closed (expected '{% " +
                                  *ends.begin() + " %}')");
          return body;
        case TokType::Data: {
          auto s = std::make_unique<Stmt>();
          s->kind = StmtKind::Text;
          s->line = t.line;
          s->text = next().text;
          body.push_back(std::move(s));
          break;
        }
        case TokType::VarBegin: {
          auto s = std::make_unique<Stmt>();
          s->kind = StmtKind::Output;
          s->line = next().line;
          s->expr = parse_tuple(true, {}, false);
          if (cur().type != TokType::VarEnd) fail(cur().line, "expected '}}', got " + describe(cur()));
          next();
          body.push_back(std::move(s));
          break;
        }
        case TokType::BlockBegin: {
          const Token& kw = peek();
          if (kw.type == TokType::Name) {
            for (const char* e : ends) {
              if (kw.text == e) {
                next();
                return body;
              }
            }
          }
          next();
          body.push_back(parse_statement());
          break;
        }
        default: fail(t.line, "unexpected " + describe(t));
      }
    }
  }

  StmtPtr parse_statement() {
    const Token& t = cur();
    if (t.type != TokType::Name) fail(t.line, "expected a statement name after '{%', got " + describe(t));
    const std::string kw = t.text;
    const int line = t.line;
    if (++block_depth_ > kMaxBlockDepth)
      fail(line, "blocks nested deeper than " + std::to_string(kMaxBlockDepth) + " levels");
    Guard guard(*this, line);
    StmtPtr s;
    if (kw == "for") {
      s = parse_for();
    } else if (kw == "if") {
      s = parse_if();
    } else if (kw == "set") {
      s = parse_set();
    } else if (kw == "macro") {
      s = parse_macro();
    } else if (kw == "break" || kw == "continue") {
      next();
      if (loop_depth_ == 0) fail(line, "'{% " + kw + " %}' outside a for loop");
      expect_block_end(kw.c_str());
      s = std::make_unique<Stmt>();
      s->kind = kw == "break" ? StmtKind::Break : StmtKind::Continue;
      s->line = line;
    } else if (kw == "generation") {
      // transformers' AssistantTracker tag: renders its body unchanged.
      next();
      expect_block_end("generation");
      s = std::make_unique<Stmt>();
      s->kind = StmtKind::Scope;
      s->line = line;
      s->body = parse_body({"endgeneration"}, "generation", line);
      next();
      expect_block_end("endgeneration");
    } else if (kw == "extends" || kw == "block" || kw == "include" || kw == "import" || kw == "from" ||
               kw == "call" || kw == "filter" || kw == "with" || kw == "autoescape" || kw == "do" ||
               kw == "trans" || kw == "raw" || kw == "print") {
      fail(line, "unsupported statement '{% " + kw + " %}'");
    } else if (kw.rfind("end", 0) == 0 || kw == "else" || kw == "elif") {
      fail(line, "unexpected '{% " + kw + " %}' (no matching opening statement)");
    } else {
      fail(line, "unknown statement '{% " + kw + " %}'");
    }
    --block_depth_;
    return s;
  }

  // `a`, `a, b`, `(a, b)` as assignment targets.
  void parse_targets(Stmt& s, const char* end_name) {
    const bool paren = is_op("(");
    if (paren) next();
    while (true) {
      s.targets.push_back(expect_name());
      if (!is_op(",")) break;
      next();
      s.targets_tuple = true;
      if ((paren && is_op(")")) || (end_name && is_name(end_name))) break;
    }
    if (paren) {
      expect_op(")");
      s.targets_tuple = true;
    }
    for (const auto& t : s.targets) {
      if (t == "true" || t == "false" || t == "none" || t == "True" || t == "False" || t == "None")
        fail(s.line, "cannot assign to '" + t + "'");
    }
  }

  StmtPtr parse_for() {
    auto s = std::make_unique<Stmt>();
    s->kind = StmtKind::For;
    s->line = next().line;
    parse_targets(*s, "in");
    if (!is_name("in")) fail(cur().line, "expected 'in' in for loop, got " + describe(cur()));
    next();
    s->expr = parse_tuple(false, {"recursive"}, false);
    if (is_name("if")) {
      next();
      s->cond = parse_expression();
    }
    if (is_name("recursive")) fail(cur().line, "unsupported recursive for loop");
    expect_block_end("for");
    ++loop_depth_;
    s->body = parse_body({"endfor", "else"}, "for", s->line);
    --loop_depth_;
    if (next().text == "else") {
      expect_block_end("else");
      s->else_body = parse_body({"endfor"}, "for", s->line);
      next();
    }
    expect_block_end("endfor");
    return s;
  }

  StmtPtr parse_if() {
    auto s = std::make_unique<Stmt>();
    s->kind = StmtKind::If;
    s->line = next().line;
    while (true) {
      s->conds.push_back(parse_tuple(false, {}, false));
      expect_block_end("if");
      s->bodies.push_back(parse_body({"elif", "else", "endif"}, "if", s->line));
      const std::string kw = next().text;
      if (kw == "elif") continue;
      if (kw == "else") {
        expect_block_end("else");
        s->else_body = parse_body({"endif"}, "if", s->line);
        next();
      }
      expect_block_end("endif");
      return s;
    }
  }

  StmtPtr parse_set() {
    auto s = std::make_unique<Stmt>();
    s->line = next().line;
    if (cur().type == TokType::Name && peek().type == TokType::Op && peek().text == ".") {
      s->targets.push_back(next().text);
      next();
      s->attr = expect_name();
    } else {
      parse_targets(*s, nullptr);
    }
    if (is_op("=")) {
      next();
      s->kind = StmtKind::Set;
      s->expr = parse_tuple(true, {}, false);
      expect_block_end("set");
      return s;
    }
    if (s->targets_tuple) fail(s->line, "a block '{% set %}' takes a single name");
    s->kind = StmtKind::SetBlock;
    if (is_op("|")) {
      auto body = node(ExprKind::Name, s->line);
      body->name = kBlockBodyName;
      s->filters = parse_filter_expr(fin(std::move(body)));
    }
    expect_block_end("set");
    s->body = parse_body({"endset"}, "set", s->line);
    next();
    expect_block_end("endset");
    return s;
  }

  StmtPtr parse_macro() {
    auto s = std::make_unique<Stmt>();
    s->kind = StmtKind::Macro;
    s->line = next().line;
    s->text = expect_name();
    expect_op("(");
    while (!is_op(")")) {
      if (!s->targets.empty()) {
        expect_op(",");
        if (is_op(")")) break;
      }
      s->targets.push_back(expect_name());
      if (is_op("=")) {
        next();
        s->defaults.push_back(parse_expression());
      } else {
        if (!s->defaults.empty() && s->defaults.back())
          fail(cur().line, "macro parameter without a default after one with a default");
        s->defaults.push_back(nullptr);
      }
    }
    next();
    expect_block_end("macro");
    const int saved_loops = loop_depth_;
    loop_depth_ = 0;
    s->body = parse_body({"endmacro"}, "macro", s->line);
    loop_depth_ = saved_loops;
    next();
    expect_block_end("endmacro");
    return s;
  }

  // ---- expressions ----

  bool is_tuple_end(std::initializer_list<const char*> extra_end) const {
    const TokType t = cur().type;
    if (t == TokType::VarEnd || t == TokType::BlockEnd || t == TokType::Eof) return true;
    if (is_op(")")) return true;
    for (const char* e : extra_end)
      if (is_name(e)) return true;
    return false;
  }

  ExprPtr parse_tuple(bool with_condexpr, std::initializer_list<const char*> extra_end, bool explicit_parens) {
    const int line = cur().line;
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) expect_op(",");
      if (is_tuple_end(extra_end)) break;
      items.push_back(with_condexpr ? parse_expression() : parse_or());
      if (is_op(",")) {
        is_tuple = true;
      } else {
        break;
      }
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!explicit_parens) fail(cur().line, "expected an expression, got " + describe(cur()));
    }
    auto e = node(ExprKind::Tuple, line);
    e->args = std::move(items);
    return fin(std::move(e));
  }

  ExprPtr parse_expression() {
    Guard guard(*this, cur().line);
    int line = cur().line;
    ExprPtr expr = parse_or();
    while (is_name("if")) {
      next();
      ExprPtr cond = parse_or();
      ExprPtr other;
      if (is_name("else")) {
        next();
        other = parse_expression();
      }
      auto e = node(ExprKind::CondExpr, line);
      e->args.push_back(std::move(expr));
      e->args.push_back(std::move(cond));
      e->args.push_back(std::move(other));
      expr = fin(std::move(e));
      line = cur().line;
    }
    return expr;
  }

  ExprPtr parse_or() {
    ExprPtr left = parse_and();
    while (is_name("or")) {
      const int line = next().line;
      left = binary(ExprKind::Or, line, std::move(left), parse_and());
    }
    return left;
  }

  ExprPtr parse_and() {
    ExprPtr left = parse_not();
    while (is_name("and")) {
      const int line = next().line;
      left = binary(ExprKind::And, line, std::move(left), parse_not());
    }
    return left;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      Guard guard(*this, cur().line);
      auto e = node(ExprKind::Not, next().line);
      e->args.push_back(parse_not());
      return fin(std::move(e));
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const int line = cur().line;
    ExprPtr first = parse_math1();
    ExprPtr cmp;
    while (true) {
      CmpOp op;
      if (cur().type == TokType::Op && (cur().text == "==" || cur().text == "!=" || cur().text == "<" ||
                                        cur().text == ">" || cur().text == "<=" || cur().text == ">=")) {
        const std::string& o = cur().text;
        op = o == "==" ? CmpOp::Eq : o == "!=" ? CmpOp::Ne : o == "<" ? CmpOp::Lt
             : o == ">" ? CmpOp::Gt : o == "<=" ? CmpOp::Le : CmpOp::Ge;
        next();
      } else if (is_name("in")) {
        op = CmpOp::In;
        next();
      } else if (is_name("not") && peek().type == TokType::Name && peek().text == "in") {
        op = CmpOp::NotIn;
        next();
        next();
      } else {
        break;
      }
      if (!cmp) {
        cmp = node(ExprKind::Compare, line);
        cmp->args.push_back(std::move(first));
      }
      cmp->cmp.push_back(op);
      cmp->args.push_back(parse_math1());
    }
    return cmp ? fin(std::move(cmp)) : std::move(first);
  }

  ExprPtr bin(BinOp op, int line, ExprPtr a, ExprPtr b) {
    ExprPtr e = binary(ExprKind::Binary, line, std::move(a), std::move(b));
    e->op = op;
    return e;
  }

  ExprPtr parse_math1() {
    ExprPtr left = parse_concat();
    while (is_op("+") || is_op("-")) {
      const Token t = next();
      left = bin(t.text == "+" ? BinOp::Add : BinOp::Sub, t.line, std::move(left), parse_concat());
    }
    return left;
  }

  ExprPtr parse_concat() {
    ExprPtr left = parse_math2();
    while (is_op("~")) {
      const int line = next().line;
      left = bin(BinOp::Concat, line, std::move(left), parse_math2());
    }
    return left;
  }

  ExprPtr parse_math2() {
    ExprPtr left = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token t = next();
      const BinOp op = t.text == "*" ? BinOp::Mul : t.text == "/" ? BinOp::Div
                       : t.text == "//" ? BinOp::FloorDiv : BinOp::Mod;
      left = bin(op, t.line, std::move(left), parse_pow());
    }
    return left;
  }

  ExprPtr parse_pow() {
    ExprPtr left = parse_unary(true);
    while (is_op("**")) {
      const int line = next().line;
      left = bin(BinOp::Pow, line, std::move(left), parse_unary(true));
    }
    return left;
  }

  ExprPtr parse_unary(bool with_filter) {
    Guard guard(*this, cur().line);
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      const Token t = next();
      e = node(t.text == "-" ? ExprKind::Neg : ExprKind::Pos, t.line);
      e->args.push_back(parse_unary(false));
      e = fin(std::move(e));
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filter) e = parse_filter_expr(std::move(e));
    return e;
  }

  ExprPtr constant(int line, Value v) {
    auto e = node(ExprKind::Const, line);
    e->value = std::move(v);
    return fin(std::move(e));
  }

  ExprPtr parse_primary() {
    const Token& t = cur();
    const int line = t.line;
    switch (t.type) {
      case TokType::Name: {
        const std::string n = next().text;
        if (n == "true" || n == "True") return constant(line, Value::boolean(true));
        if (n == "false" || n == "False") return constant(line, Value::boolean(false));
        if (n == "none" || n == "None") return constant(line, Value::none());
        auto e = node(ExprKind::Name, line);
        e->name = n;
        return fin(std::move(e));
      }
      case TokType::String: {
        std::string s = next().text;
        while (cur().type == TokType::String) s += next().text;
        return constant(line, Value::string(std::move(s)));
      }
      case TokType::Int: return constant(line, Value::integer(next().ival));
      case TokType::Float: return constant(line, Value::real(next().fval));
      case TokType::Op:
        if (t.text == "(") {
          next();
          ExprPtr e = parse_tuple(true, {}, true);
          expect_op(")");
          return e;
        }
        if (t.text == "[" || t.text == "{") {
          const bool is_dict = t.text == "{";
          next();
          auto e = node(is_dict ? ExprKind::Dict : ExprKind::List, line);
          const char* close = is_dict ? "}" : "]";
          while (!is_op(close)) {
            if (!e->args.empty()) {
              expect_op(",");
              if (is_op(close)) break;
            }
            e->args.push_back(parse_expression());
            if (is_dict) {
              expect_op(":");
              e->args.push_back(parse_expression());
            }
          }
          next();
          return fin(std::move(e));
        }
        break;
      default: break;
    }
    fail(line, "unexpected " + describe(t) + " in expression");
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      if (is_op(".")) {
        const int line = next().line;
        if (cur().type == TokType::Name) {
          auto g = node(ExprKind::GetAttr, line);
          g->name = next().text;
          g->args.push_back(std::move(e));
          e = fin(std::move(g));
        } else if (cur().type == TokType::Int) {
          auto g = node(ExprKind::GetItem, line);
          g->args.push_back(std::move(e));
          g->args.push_back(constant(line, Value::integer(next().ival)));
          e = fin(std::move(g));
        } else {
          fail(cur().line, "expected an attribute name after '.', got " + describe(cur()));
        }
      } else if (is_op("[")) {
        e = parse_subscript(std::move(e));
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr subject) {
    const int line = next().line;  // '['
    std::vector<ExprPtr> indices;
    bool any_slice = false;
    while (!is_op("]")) {
      if (!indices.empty()) {
        expect_op(",");
        if (is_op("]")) break;
      }
      // One subscript: expr, or a slice start:stop:step.
      ExprPtr start;
      if (!is_op(":")) {
        start = parse_expression();
        if (!is_op(":")) {
          indices.push_back(std::move(start));
          continue;
        }
      }
      next();  // ':'
      any_slice = true;
      auto sl = node(ExprKind::Slice, line);
      sl->args.push_back(nullptr);  // subject, filled below
      sl->args.push_back(std::move(start));
      sl->args.push_back(is_op("]") || is_op(",") || is_op(":") ? nullptr : parse_expression());
      if (is_op(":")) {
        next();
        sl->args.push_back(is_op("]") || is_op(",") ? nullptr : parse_expression());
      } else {
        sl->args.push_back(nullptr);
      }
      indices.push_back(std::move(sl));
    }
    next();  // ']'
    if (indices.size() != 1) fail(line, "unsupported subscript with " + std::to_string(indices.size()) + " indices");
    if (any_slice) {
      ExprPtr sl = std::move(indices[0]);
      sl->args[0] = std::move(subject);
      return fin(std::move(sl));
    }
    auto g = node(ExprKind::GetItem, line);
    g->args.push_back(std::move(subject));
    g->args.push_back(std::move(indices[0]));
    return fin(std::move(g));
  }

  void parse_call_args(Expr& e) {
    expect_op("(");
    bool first = true;
    while (!is_op(")")) {
      if (!first) {
        expect_op(",");
        if (is_op(")")) break;
      }
      first = false;
      if (is_op("*") || is_op("**")) fail(cur().line, "unsupported '*args' / '**kwargs' in a call");
      if (cur().type == TokType::Name && peek().type == TokType::Op && peek().text == "=") {
        e.kwnames.push_back(next().text);
        next();
        e.kwargs.push_back(parse_expression());
      } else {
        if (!e.kwnames.empty()) fail(cur().line, "positional argument after a keyword argument");
        e.args.push_back(parse_expression());
      }
    }
    next();
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto e = node(ExprKind::Call, cur().line);
    e->args.push_back(std::move(callee));
    parse_call_args(*e);
    return fin(std::move(e));
  }

  ExprPtr parse_filter_expr(ExprPtr e) {
    while (true) {
      if (is_op("|")) {
        const int line = next().line;
        const std::string fname = expect_name();
        if (is_op(".")) fail(line, "unsupported dotted filter name '" + fname + ".'");
        if (!known_filter(fname)) fail(line, "unsupported filter '" + fname + "'");
        auto f = node(ExprKind::Filter, line);
        f->name = fname;
        f->args.push_back(std::move(e));
        if (is_op("(")) parse_call_args(*f);
        e = fin(std::move(f));
      } else if (is_name("is")) {
        const int line = next().line;
        auto t = node(ExprKind::Test, line);
        if (is_name("not")) {
          next();
          t->negated = true;
        }
        t->name = expect_name();
        if (is_op(".")) fail(line, "unsupported dotted test name '" + t->name + ".'");
        if (!known_test(t->name)) fail(line, "unsupported test '" + t->name + "'");
        t->args.push_back(std::move(e));
        const TokType ty = cur().type;
        if (is_op("(")) {
          parse_call_args(*t);
        } else if ((ty == TokType::Name || ty == TokType::String || ty == TokType::Int || ty == TokType::Float ||
                    is_op("[") || is_op("{")) &&
                   !is_name("else") && !is_name("or") && !is_name("and")) {
          if (is_name("is")) fail(cur().line, "cannot chain multiple tests with 'is'");
          t->args.push_back(parse_postfix(parse_primary()));
        }
        e = fin(std::move(t));
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  std::vector<Token> toks_;
  size_t i_ = 0;
  const std::string& name_;
  int rec_ = 0;
  int block_depth_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

Program parse(std::vector<Token> tokens, const std::string& name) {
  return Parser(std::move(tokens), name).run();
}

}  // namespace runnel::jinja
