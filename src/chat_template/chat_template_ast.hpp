#pragma once
// Tokens and syntax tree of the chat-template language (a Jinja2 subset), and
// the lexer/parser entry points.  Internal to src/chat_template/.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "chat_template/chat_template_value.hpp"

namespace runnel::jinja {

// ---- lexer ------------------------------------------------------------------

enum class TokType : uint8_t {
  Data,        // template text between tags
  VarBegin,    // {{
  VarEnd,      // }}
  BlockBegin,  // {%
  BlockEnd,    // %}
  Name,
  String,      // text holds the decoded value
  Int,
  Float,
  Op,          // text holds the operator: "+", "//", "(", ...
  Eof,
};

struct Token {
  TokType type;
  int line;
  std::string text;
  int64_t ival = 0;
  double fval = 0.0;
};

// Splits `source` into tokens with HF's settings (trim_blocks, lstrip_blocks,
// no trailing newline).  `{% raw %}` bodies come back as Data tokens.
// Throws runnel::Error naming `name` and the line.
std::vector<Token> lex(std::string_view source, const std::string& name);

// ---- syntax tree ------------------------------------------------------------

enum class ExprKind : uint8_t {
  Const,     // value
  Name,      // name
  List,      // args = items
  Tuple,     // args = items
  Dict,      // args = k0, v0, k1, v1, ...
  GetAttr,   // args[0] . name
  GetItem,   // args[0] [ args[1] ]
  Slice,     // args[0] [ args[1] : args[2] : args[3] ]  (null = omitted)
  Call,      // args[0] ( args[1..], kwnames = kwargs )
  Filter,    // args[0] | name ( args[1..], kwargs )
  Test,      // args[0] is [not] name ( args[1..] )
  Neg,
  Pos,
  Not,
  And,
  Or,
  Binary,    // args[0] op args[1]
  Compare,   // args[0] cmp[0] args[1] cmp[1] args[2] ...
  CondExpr,  // args[0] if args[1] else args[2]  (args[2] may be null)
};

enum class BinOp : uint8_t { Add, Sub, Mul, Div, FloorDiv, Mod, Pow, Concat };
enum class CmpOp : uint8_t { Eq, Ne, Lt, Le, Gt, Ge, In, NotIn };

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  ExprKind kind;
  int line;
  Value value;
  std::string name;
  std::vector<ExprPtr> args;
  std::vector<std::string> kwnames;
  std::vector<ExprPtr> kwargs;
  std::vector<CmpOp> cmp;
  BinOp op = BinOp::Add;
  bool negated = false;
  uint16_t depth = 1;  // height of this subtree (bounded by the parser)
};

enum class StmtKind : uint8_t {
  Text,      // text
  Output,    // {{ expr }}
  If,        // conds[i] -> bodies[i]; else_body
  For,       // for targets in expr [if cond]: body; else_body
  Set,       // targets = expr, or ns_name.attr = expr
  SetBlock,  // {% set targets[0] %} body {% endset %}, then filters in `filters`
  Macro,     // name(params = defaults) body
  Break,
  Continue,
  Scope,     // body rendered as is ({% generation %})
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  StmtKind kind;
  int line;
  std::string text;
  ExprPtr expr;
  ExprPtr cond;
  std::vector<ExprPtr> conds;
  std::vector<Body> bodies;
  Body body;
  Body else_body;
  std::vector<std::string> targets;  // names (for/set), or params (macro)
  bool targets_tuple = false;        // `a, b` unpacking, even with one name
  std::string attr;                  // Set: ns target attribute (targets[0] is the namespace)
  std::vector<ExprPtr> defaults;     // Macro: per param, null when none
  ExprPtr filters;                   // SetBlock: filter chain applied to a Name "__body__"
};

// Name under which a `{% set x | filter %}` block's text is bound for its filters.
inline constexpr const char* kBlockBodyName = "\x01block";

struct Program {
  std::string name;
  Body body;
};

// Parses the tokens into a program.  Throws runnel::Error naming the construct
// and line for syntax errors and constructs outside the supported subset.
Program parse(std::vector<Token> tokens, const std::string& name);

// Is `name` a filter / test the evaluator implements?
bool known_filter(std::string_view name);
bool known_test(std::string_view name);

}  // namespace runnel::jinja
