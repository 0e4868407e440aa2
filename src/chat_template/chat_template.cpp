// runnel::ChatTemplate: parses once, renders many times.  JSON variables are
// read with ordered_json so dict order (visible through tojson and iteration)
// is the order of the input, as with Python dicts.
#include "runnel/chat_template.hpp"

#include <nlohmann/json.hpp>

#include "chat_template/chat_template_ast.hpp"
#include "chat_template/chat_template_interp.hpp"
#include "runnel/error.hpp"

namespace runnel {

using jinja::Value;

struct ChatTemplate::Impl {
  std::string source;
  ChatTemplateLimits limits;
  jinja::Program program;

  std::string render(std::vector<std::pair<std::string, Value>> vars) const {
    jinja::RenderLimits rl{limits.max_output_bytes, limits.max_steps, limits.max_depth, limits.max_built_bytes};
    jinja::Interp interp(program, rl);
    return interp.render(std::move(vars));
  }
};

namespace {

Value from_json(const nlohmann::ordered_json& j, const std::string& where, int depth) {
  if (depth > static_cast<int>(jinja::kMaxValueDepth))
    throw Error(where + ": JSON nested deeper than " + std::to_string(jinja::kMaxValueDepth) + " levels");
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null: return Value::none();
    case nlohmann::ordered_json::value_t::boolean: return Value::boolean(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer: return Value::integer(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      const uint64_t u = j.get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) throw Error(where + ": integer " + std::to_string(u) + " is out of range");
      return Value::integer(static_cast<int64_t>(u));
    }
    case nlohmann::ordered_json::value_t::number_float: return Value::real(j.get<double>());
    case nlohmann::ordered_json::value_t::string: return Value::string(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& x : j) items.push_back(from_json(x, where, depth + 1));
      return Value::list(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      std::vector<std::pair<Value, Value>> items;
      items.reserve(j.size());
      for (const auto& [k, v] : j.items()) items.emplace_back(Value::string(k), from_json(v, where, depth + 1));
      return Value::dict(std::move(items));
    }
    default: throw Error(where + ": unsupported JSON value");
  }
}

void set_var(std::vector<std::pair<std::string, Value>>& vars, const std::string& name, Value v) {
  for (auto& [k, old] : vars) {
    if (k == name) {
      old = std::move(v);
      return;
    }
  }
  vars.emplace_back(name, std::move(v));
}

void merge_json_object(std::vector<std::pair<std::string, Value>>& vars, std::string_view text,
                       const std::string& where) {
  nlohmann::ordered_json j;
  try {
    j = nlohmann::ordered_json::parse(text.begin(), text.end(), nullptr, true, false);
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + ": invalid JSON: " + e.what());
  }
  if (!j.is_object()) throw Error(where + ": expected a JSON object");
  for (const auto& [k, v] : j.items()) set_var(vars, k, from_json(v, where + "." + k, 1));
}

}  // namespace

ChatTemplate::ChatTemplate(std::string source, std::string name, ChatTemplateLimits limits)
    : impl_(std::make_unique<Impl>()) {
  if (limits.max_depth < 16) throw Error("chat template '" + name + "': limits.max_depth must be at least 16");
  impl_->source = std::move(source);
  impl_->limits = limits;
  impl_->program = jinja::parse(jinja::lex(impl_->source, name), name);
}

ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;

const std::string& ChatTemplate::name() const { return impl_->program.name; }
const std::string& ChatTemplate::source() const { return impl_->source; }

std::string ChatTemplate::apply(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                                const std::string& bos_token, const std::string& eos_token,
                                std::string_view extra_variables_json) const {
  std::vector<Value> msgs;
  msgs.reserve(messages.size());
  for (const ChatMessage& m : messages) {
    msgs.push_back(Value::dict({{Value::string("role"), Value::string(m.role)},
                                {Value::string("content"), Value::string(m.content)}}));
  }
  std::vector<std::pair<std::string, Value>> vars;
  vars.emplace_back("messages", Value::list(std::move(msgs)));
  vars.emplace_back("tools", Value::none());
  vars.emplace_back("documents", Value::none());
  vars.emplace_back("add_generation_prompt", Value::boolean(add_generation_prompt));
  vars.emplace_back("bos_token", Value::string(bos_token));
  vars.emplace_back("eos_token", Value::string(eos_token));
  if (!extra_variables_json.empty())
    merge_json_object(vars, extra_variables_json, "chat template '" + name() + "': extra variables");
  return impl_->render(std::move(vars));
}

std::string ChatTemplate::render_json(std::string_view variables_json) const {
  std::vector<std::pair<std::string, Value>> vars;
  vars.emplace_back("tools", Value::none());
  vars.emplace_back("documents", Value::none());
  merge_json_object(vars, variables_json, "chat template '" + name() + "': variables");
  return impl_->render(std::move(vars));
}

}  // namespace runnel
