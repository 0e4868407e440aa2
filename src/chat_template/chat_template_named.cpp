// The chat formats that llama.cpp's --chat-template accepts by name, written
// as Jinja for runnel's template engine.  Each renders its format's published
// turn markup; a system message goes where the format puts one (llama2's
// <<SYS>> block), or, for formats without a system role (gemma), before the
// first user message.
#include <utility>

#include "runnel/chat_template.hpp"

namespace runnel {
namespace {

const std::vector<std::pair<std::string, std::string>>& table() {
  static const std::vector<std::pair<std::string, std::string>> t = {
      {"chatml",
       "{% for message in messages %}"
       "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
       "{% endfor %}"
       "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"},
      {"llama2",
       "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
       "{% set system_message = messages[0]['content'] %}"
       "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
       "{% for message in loop_messages %}"
       "{% if loop.index0 == 0 and system_message != false %}"
       "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
       "{% else %}{% set content = message['content'] %}{% endif %}"
       "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
       "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}"
       "{% endif %}{% endfor %}"},
      {"llama3",
       "{{ bos_token }}{% for message in messages %}"
       "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + "
       "message['content'] | trim + '<|eot_id|>' }}"
       "{% endfor %}"
       "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
       "{% endif %}"},
      {"zephyr",
       "{% for message in messages %}"
       "{{ '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + '\\n' }}"
       "{% endfor %}"
       "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"},
      {"gemma",
       "{{ bos_token }}{% set system = namespace(text='') %}"
       "{% for message in messages %}"
       "{% if message['role'] == 'system' %}{% set system.text = message['content'] | trim %}"
       "{% else %}"
       "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
       "{% set content = message['content'] | trim %}"
       "{% if system.text and role == 'user' %}"
       "{% set content = system.text + '\\n\\n' + content %}{% set system.text = '' %}{% endif %}"
       "{{ '<start_of_turn>' + role + '\\n' + content + '<end_of_turn>\\n' }}"
       "{% endif %}{% endfor %}"
       "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"},
      {"phi3",
       "{% for message in messages %}"
       "{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}"
       "{% endfor %}"
       "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"},
  };
  return t;
}

}  // namespace

std::string builtin_chat_template(std::string_view name) {
  for (const auto& [n, text] : table())
    if (n == name) return text;
  return {};
}

std::vector<std::string> builtin_chat_template_names() {
  std::vector<std::string> names;
  for (const auto& e : table()) names.push_back(e.first);
  return names;
}

}  // namespace runnel
