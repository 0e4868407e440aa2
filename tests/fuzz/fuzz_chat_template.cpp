// libFuzzer target: parse and render arbitrary chat-template text with a fixed
// conversation.  runnel::Error is the expected outcome for bad templates; the
// limits keep hostile templates (loops, recursion, huge strings) fast.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "runnel/chat_template.hpp"
#include "runnel/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<runnel::ChatMessage> kMessages = {
      {"system", "You are terse."}, {"user", "Hi \xc3\xa9 \xff!"}, {"assistant", " Hello. "}, {"user", "Bye"}};
  runnel::ChatTemplateLimits limits;
  limits.max_output_bytes = 1 << 20;
  limits.max_steps = 200000;
  limits.max_built_bytes = 16u << 20;
  try {
    runnel::ChatTemplate tpl(std::string(reinterpret_cast<const char*>(data), size), "fuzz", limits);
    tpl.apply(kMessages, true, "<s>", "</s>");
    tpl.render_json(R"({"messages": [{"role": "user", "content": "x", "tool_calls": [{"name": "f"}]}],)"
                    R"( "tools": [{"a": [1, 2.5, null, true]}], "n": 3})");
  } catch (const runnel::Error&) {
  }
  return 0;
}
