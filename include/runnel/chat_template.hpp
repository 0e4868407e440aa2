#pragma once
// Chat templates: renders a model's `chat_template` (the Jinja2 text found in
// tokenizer_config.json or the GGUF key `tokenizer.chat_template`) into the
// prompt string, the way transformers' apply_chat_template(tokenize=False) does.
//
// The interpreter implements the Jinja2 subset that chat templates use, with
// the environment transformers sets up: trim_blocks and lstrip_blocks on, the
// default Undefined (prints as "", is falsy, fails on attribute access),
// `raise_exception(msg)`, `strftime_now(fmt)`, `tojson` with ensure_ascii=False,
// loop controls, `tools` and `documents` defined as none.  A construct outside
// the subset is a runnel::Error naming it and its line, at construction when
// it is syntax (an unknown filter, `{% include %}`), at render time otherwise;
// it never renders silently different text.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace runnel {

struct ChatMessage {
  std::string role;
  std::string content;
};

// Bounds on one render, so that a hostile template cannot hang or exhaust
// memory.  Exceeding one is a runnel::Error.
struct ChatTemplateLimits {
  size_t max_output_bytes = 64u << 20;  // the rendered text and any string built on the way
  uint64_t max_steps = 50'000'000;      // evaluated nodes + loop iterations + copied items
  int max_depth = 400;                  // nested statements/expressions/macro calls at run time
  // Every string value made during the render, summed.  Strings that are kept
  // (appended to a list, set on a namespace) each stay under max_output_bytes,
  // so without this bound a loop could keep gigabytes of them alive.
  uint64_t max_built_bytes = 256u << 20;
};

class ChatTemplate {
 public:
  // Parses `source`.  Throws runnel::Error "chat template '<name>': line N: ..."
  // on syntax errors and unsupported constructs.
  explicit ChatTemplate(std::string source, std::string name = "chat_template", ChatTemplateLimits limits = {});
  ~ChatTemplate();
  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;

  const std::string& name() const;
  const std::string& source() const;

  // Renders with messages = [{"role", "content"}, ...], the given special
  // tokens and add_generation_prompt.  `extra_variables_json`, when not empty,
  // is a JSON object whose members become (or override) template variables,
  // e.g. {"tools": [...], "date_string": "26 Jul 2024", "messages": [...]}.
  // Errors raised by the template (raise_exception) and evaluation errors are
  // runnel::Error naming the template and line.
  std::string apply(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                    const std::string& bos_token, const std::string& eos_token,
                    std::string_view extra_variables_json = {}) const;

  // Renders with exactly the variables of a JSON object (plus `tools` and
  // `documents` = none unless given), for messages with fields beyond role and
  // content (tool_calls, ...).
  std::string render_json(std::string_view variables_json) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Built-in templates under llama.cpp's names for --chat-template NAME:
// chatml, llama2, llama3, zephyr, gemma, phi3.  Returns the Jinja text, or an
// empty string for a name that is not built in.
std::string builtin_chat_template(std::string_view name);
std::vector<std::string> builtin_chat_template_names();

}  // namespace runnel
