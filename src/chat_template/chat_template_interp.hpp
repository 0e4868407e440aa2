#pragma once
// Tree-walking evaluator of a parsed chat template.  One Interp renders once:
// it owns the scopes, the output limits and the namespaces created while
// rendering (which it clears at the end, so reference cycles through
// namespaces cannot leak).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "chat_template/chat_template_ast.hpp"
#include "chat_template/chat_template_value.hpp"

namespace runnel::jinja {

struct RenderLimits {
  size_t max_output_bytes;  // rendered text and any string built on the way
  uint64_t max_steps;       // evaluated nodes + loop iterations + copied elements
  int max_depth;            // nested evaluation (statements, expressions, macro calls)
  uint64_t max_built_bytes; // every string value made, summed
};

// One scope: a for-loop iteration, a macro call, the template's top level.
struct Frame {
  std::vector<std::pair<std::string, Value>> vars;
  std::shared_ptr<Frame> parent;
  const Value* find(std::string_view name) const;
  void set(const std::string& name, Value v);
};
using FramePtr = std::shared_ptr<Frame>;

class Interp {
 public:
  Interp(const Program& prog, const RenderLimits& limits);
  ~Interp();
  Interp(const Interp&) = delete;
  Interp& operator=(const Interp&) = delete;

  std::string render(std::vector<std::pair<std::string, Value>> globals);

  [[noreturn]] void fail(int line, const std::string& msg) const;
  void charge(uint64_t steps, int line);
  void check_size(size_t bytes, int line) const;

  Value call(const Value& fn, CallArgs& args, int line);
  Value getattr(const Value& obj, const std::string& name, int line);
  Value getitem(const Value& obj, const Value& key, int line);
  // Items of an iterable (list, string characters, dict keys); Undefined is empty.
  std::vector<Value> iterate(const Value& v, int line);
  Value make_namespace();

  // Builtins (chat_template_builtins.cpp).
  Value apply_filter(const std::string& name, const Value& subject, CallArgs& args, int line);
  bool apply_test(const std::string& name, const Value& subject, CallArgs& args, int line);
  // obj.name(args) for str / dict methods; nullopt when obj has no such method.
  std::optional<Value> call_method(const Value& obj, const std::string& name, CallArgs& args, int line);
  bool has_method(const Value& obj, const std::string& name) const;
  Value global(const std::string& name) const;  // range, namespace, ...; Undefined if none

 private:
  enum class Flow { Normal, Break, Continue };
  struct DepthGuard;

  Value eval(const Expr& e, const FramePtr& f);
  Value eval_inner(const Expr& e, const FramePtr& f);
  Value eval_binary(const Expr& e, const Value& a, const Value& b);
  Value eval_compare(const Expr& e, const FramePtr& f);
  Value eval_slice(const Expr& e, const FramePtr& f);
  void eval_call_args(const Expr& e, size_t first, const FramePtr& f, CallArgs& out);
  Flow exec(const Body& body, const FramePtr& f, std::string& out);
  Flow exec_for(const Stmt& s, const FramePtr& f, std::string& out);
  void exec_set(const Stmt& s, const FramePtr& f);
  void define_macro(const Stmt& s, const FramePtr& f);
  void append(std::string& out, std::string_view text, int line) const;
  void assign(const Stmt& s, const FramePtr& f, const Value& v);

  const Program& prog_;
  RenderLimits limits_;
  uint64_t steps_ = 0;
  uint64_t made_at_start_ = 0;  // string_bytes_made() when the render began
  int depth_ = 0;
  std::vector<std::shared_ptr<NamespaceObj>> namespaces_;
};

}  // namespace runnel::jinja
