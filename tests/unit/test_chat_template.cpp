// Chat-template renderer: checked against jinja2 (in transformers' chat-template
// environment) through the fixtures in tests/data/chat_templates, written by
// tools/reference/make_chat_template_fixtures.py, plus error, limit and
// robustness tests.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "runnel/chat_template.hpp"
#include "runnel/error.hpp"

namespace {

using nlohmann::ordered_json;
namespace fs = std::filesystem;

const fs::path kDataDir = fs::path(RUNNEL_TEST_DATA_DIR) / "chat_templates";

ordered_json load_fixture(const std::string& file) {
  std::ifstream in(kDataDir / file, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open fixture " + (kDataDir / file).string());
  std::stringstream ss;
  ss << in.rdbuf();
  return ordered_json::parse(ss.str());
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const runnel::Error& e) {
    return e.what();
  }
  return "<no error>";
}

// Whether a case's messages are plain {role, content} strings (usable with apply()).
bool simple_messages(const ordered_json& messages, std::vector<runnel::ChatMessage>* out) {
  for (const auto& m : messages) {
    if (m.size() != 2 || !m.contains("role") || !m.contains("content") || !m["role"].is_string() ||
        !m["content"].is_string())
      return false;
    out->push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
  }
  return true;
}

class ChatTemplateModel : public ::testing::TestWithParam<std::string> {};

TEST_P(ChatTemplateModel, MatchesJinja2Reference) {
  const ordered_json fx = load_fixture(GetParam() + ".json");
  const runnel::ChatTemplate tpl(fx["template"].get<std::string>(), GetParam());
  int rendered = 0, errors = 0, via_apply = 0;
  for (size_t i = 0; i < fx["cases"].size(); ++i) {
    const auto& c = fx["cases"][i];
    SCOPED_TRACE(GetParam() + " case " + std::to_string(i) + ": " + c["messages"].dump());
    ordered_json vars = ordered_json::object();
    vars["messages"] = c["messages"];
    vars["add_generation_prompt"] = c["add_generation_prompt"];
    vars["bos_token"] = c["bos_token"];
    vars["eos_token"] = c["eos_token"];
    if (c.contains("extra"))
      for (const auto& [k, v] : c["extra"].items()) vars[k] = v;
    const bool agp = c["add_generation_prompt"].get<bool>();
    const std::string bos = c["bos_token"].get<std::string>();
    const std::string eos = c["eos_token"].get<std::string>();
    std::vector<runnel::ChatMessage> msgs;
    const bool simple = simple_messages(c["messages"], &msgs) && !c.contains("extra");

    if (c.contains("expected")) {
      const std::string expected = c["expected"].get<std::string>();
      EXPECT_EQ(tpl.render_json(vars.dump()), expected);
      if (simple) {
        EXPECT_EQ(tpl.apply(msgs, agp, bos, eos), expected);
        ++via_apply;
      } else if (c.contains("extra")) {
        std::vector<runnel::ChatMessage> m2;
        if (simple_messages(c["messages"], &m2)) {
          EXPECT_EQ(tpl.apply(m2, agp, bos, eos, c["extra"].dump()), expected);
          ++via_apply;
        }
      }
      ++rendered;
    } else {
      const std::string err = error_of([&] { tpl.render_json(vars.dump()); });
      EXPECT_NE(err, "<no error>");
      if (c["error_type"] == "raise_exception") {
        EXPECT_NE(err.find(c["error"].get<std::string>()), std::string::npos) << err;
        EXPECT_NE(err.find("chat template '" + GetParam() + "'"), std::string::npos) << err;
      }
      if (simple) {
        EXPECT_THROW(tpl.apply(msgs, agp, bos, eos), runnel::Error);
      }
      ++errors;
    }
  }
  EXPECT_GT(rendered, 0);
  EXPECT_GT(via_apply, 0);
  RecordProperty("rendered", rendered);
  RecordProperty("errors", errors);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ChatTemplateModel,
                         ::testing::Values("llama-2-chat", "llama-3-instruct", "smollm2-instruct", "tinyllama-chat",
                                           "mistral-instruct-v0.1", "mistral-v0.3-style", "qwen2-instruct",
                                           "qwen2.5-instruct", "gemma-it", "phi-3-mini"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string n = info.param;
                           for (char& ch : n)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return n;
                         });

// Templates as published with the models (tests/data/chat_templates/published/,
// collected by llama.cpp from the models' tokenizer_config.json files, and
// the default model's GGUF), rendered by jinja2 for the same conversations.
std::vector<std::string> published_fixtures() {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(kDataDir / "published", ec))
    if (e.path().extension() == ".json") out.push_back("published/" + e.path().stem().string());
  std::sort(out.begin(), out.end());
  return out;
}

TEST(ChatTemplatePublished, EveryCollectedTemplateHasAFixture) {
  EXPECT_EQ(published_fixtures().size(), 23u);
}

INSTANTIATE_TEST_SUITE_P(Published, ChatTemplateModel, ::testing::ValuesIn(published_fixtures()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string n = info.param.substr(std::string("published/").size());
                           for (char& ch : n)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return n;
                         });

TEST(ChatTemplateConstructs, MatchJinja2Reference) {
  const ordered_json fx = load_fixture("constructs.json");
  const std::string context = fx["context"].dump();
  int ok = 0, errors = 0;
  for (const auto& c : fx["cases"]) {
    const std::string name = c["name"].get<std::string>();
    SCOPED_TRACE(name + ": " + c["template"].get<std::string>());
    if (c.contains("expected")) {
      std::string got;
      try {
        runnel::ChatTemplate tpl(c["template"].get<std::string>(), name);
        got = tpl.render_json(context);
      } catch (const runnel::Error& e) {
        ADD_FAILURE() << "unexpected error: " << e.what();
        continue;
      }
      EXPECT_EQ(got, c["expected"].get<std::string>());
      ++ok;
    } else {
      const std::string err = error_of([&] {
        runnel::ChatTemplate tpl(c["template"].get<std::string>(), name);
        tpl.render_json(context);
      });
      EXPECT_NE(err, "<no error>") << "jinja2 failed with " << c["error_type"] << ": " << c["reference_message"];
      if (c["error_type"] == "raise_exception") {
        EXPECT_NE(err.find(c["error"].get<std::string>()), std::string::npos) << err;
      }
      EXPECT_NE(err.find("chat template '" + name + "'"), std::string::npos) << err;
      EXPECT_NE(err.find("line "), std::string::npos) << err;
      ++errors;
    }
  }
  EXPECT_GE(ok, 80);
  EXPECT_GE(errors, 30);
}

// ---- API ---------------------------------------------------------------------

TEST(ChatTemplate, ApplyWithMessagesAndExtraVariables) {
  const runnel::ChatTemplate tpl(
      "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m['content'] }}{% endfor %}"
      "{% if add_generation_prompt %}<assistant>{% endif %}[{{ date_string | default('no date') }}]"
      "{{ tools is none }}",
      "demo");
  EXPECT_EQ(tpl.name(), "demo");
  const std::vector<runnel::ChatMessage> msgs = {{"system", "S"}, {"user", "U"}};
  EXPECT_EQ(tpl.apply(msgs, true, "<s>", "</s>"), "<s><system>S<user>U<assistant>[no date]True");
  EXPECT_EQ(tpl.apply(msgs, false, "<s>", "</s>", R"({"date_string": "26 Jul 2024", "tools": [1]})"),
            "<s><system>S<user>U[26 Jul 2024]False");
  // Extra variables may replace messages.
  EXPECT_EQ(tpl.apply({}, false, "", "", R"({"messages": [{"role": "r", "content": "c", "x": 1}]})"),
            "<r>c[no date]True");
  EXPECT_THROW(tpl.apply(msgs, false, "", "", "[1, 2]"), runnel::Error);
  EXPECT_THROW(tpl.apply(msgs, false, "", "", "{not json"), runnel::Error);
  EXPECT_THROW(tpl.render_json("{\"messages\": 18446744073709551615}"), runnel::Error);
}

TEST(ChatTemplate, RendersRepeatedlyAndMoves) {
  runnel::ChatTemplate a("{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% endfor %}"
                         "{{ ns.n }}");
  runnel::ChatTemplate b = std::move(a);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(b.apply({{"user", "a"}, {"assistant", "b"}}, false, "", ""), "2");
}

TEST(ChatTemplate, InvalidUtf8ContentPassesThrough) {
  const runnel::ChatTemplate tpl("[{{ messages[0].content }}|{{ messages[0].content[1:] }}|"
                                 "{{ messages[0].content | length }}]");
  const std::string bad = std::string("a\xff\xc3") + "b";
  EXPECT_EQ(tpl.apply({{"user", bad}}, false, "", ""), "[" + bad + "|" + bad.substr(1) + "|4]");
  const runnel::ChatTemplate js("{{ messages[0].content | tojson }}");
  EXPECT_THROW(js.apply({{"user", bad}}, false, "", ""), runnel::Error);
}

// ---- errors name the construct and the line ------------------------------------

TEST(ChatTemplateErrors, UnsupportedConstructsAreNamedWithLine) {
  struct Case {
    const char* src;
    const char* needle;
  };
  const Case cases[] = {
      {"line1\n{% include 'other.jinja' %}", "line 2: unsupported statement '{% include %}'"},
      {"{% extends 'base' %}", "unsupported statement '{% extends %}'"},
      {"{% block body %}{% endblock %}", "unsupported statement '{% block %}'"},
      {"{% import 'm' as m %}", "unsupported statement '{% import %}'"},
      {"{% call m() %}{% endcall %}", "unsupported statement '{% call %}'"},
      {"{% filter upper %}x{% endfilter %}", "unsupported statement '{% filter %}'"},
      {"{% with a = 1 %}{% endwith %}", "unsupported statement '{% with %}'"},
      {"a\nb\n{{ x | wordwrap(5) }}", "line 3: unsupported filter 'wordwrap'"},
      {"{{ x is escaped }}", "unsupported test 'escaped'"},
      {"{% for x in y recursive %}{% endfor %}", "unsupported recursive for loop"},
      {"{{ f(*args) }}", "unsupported '*args'"},
      {"{{ '%s' % 'x' }}", "unsupported printf-style string formatting"},
      {"{{ 'a {}'.format(1) }}", "unsupported string method 'format'"},
      {"{{ '\\N{BULLET}' }}", "unsupported \\N{...} escape"},
      {"{{ 'É'|lower }}", "case conversion of non-ASCII letters is not supported"},
      {"{% if x %}\n\n{% endfor %}", "line 3: unexpected '{% endfor %}'"},
      {"\n{% if x %}never closed", "line 2: '{% if %}' is never closed"},
      {"{{ x }\n}", "line 1:"},
      {"{% break %}", "'{% break %}' outside a for loop"},
  };
  for (const Case& c : cases) {
    const std::string err = error_of([&] {
      runnel::ChatTemplate tpl(c.src, "t");
      tpl.render_json("{\"x\": 1, \"y\": [1]}");
    });
    EXPECT_NE(err.find(c.needle), std::string::npos) << "template: " << c.src << "\nerror: " << err;
    EXPECT_EQ(err.rfind("chat template 't': line ", 0), 0u) << err;
  }
}

TEST(ChatTemplateErrors, RuntimeErrorsCarryTheLine) {
  const runnel::ChatTemplate tpl("{% for m in messages %}\n{% if m.role == 'bad' %}\n"
                                 "{{ raise_exception('role ' + m.role + ' is not allowed') }}\n"
                                 "{% endif %}{% endfor %}",
                                 "strict");
  const std::string err = error_of([&] { tpl.apply({{"user", "x"}, {"bad", "y"}}, false, "", ""); });
  EXPECT_EQ(err, "chat template 'strict': line 3: template raised an exception: role bad is not allowed");
  const runnel::ChatTemplate undef("\n\n{{ foo.bar }}", "u");
  EXPECT_EQ(error_of([&] { undef.apply({}, false, "", ""); }), "chat template 'u': line 3: 'foo' is undefined");
}

// ---- limits --------------------------------------------------------------------

TEST(ChatTemplateLimits, OutputSizeIsBounded) {
  runnel::ChatTemplateLimits lim;
  lim.max_output_bytes = 1000;
  const runnel::ChatTemplate loop("{% for i in range(100) %}0123456789+{% endfor %}", "big", lim);
  EXPECT_NE(error_of([&] { loop.apply({}, false, "", ""); }).find("output limit"), std::string::npos);
  const runnel::ChatTemplate rep("{{ 'x' * 100000 }}", "rep", lim);
  EXPECT_NE(error_of([&] { rep.apply({}, false, "", ""); }).find("output limit"), std::string::npos);
  // Doubling a string in a namespace hits the size check before memory runs out.
  const runnel::ChatTemplate dbl("{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}"
                                 "{% endfor %}", "dbl");
  EXPECT_NE(error_of([&] { dbl.apply({}, false, "", ""); }).find("exceeds the output limit"), std::string::npos);
}

TEST(ChatTemplateLimits, StepsAreBounded) {
  runnel::ChatTemplateLimits lim;
  lim.max_steps = 100000;
  const runnel::ChatTemplate nested(
      "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}", "spin", lim);
  EXPECT_NE(error_of([&] { nested.apply({}, false, "", ""); }).find("evaluation steps"), std::string::npos);
  // Quadratic list growth is charged per copied item.
  const runnel::ChatTemplate grow(
      "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = ns.l + [i] %}{% endfor %}", "grow");
  EXPECT_NE(error_of([&] { grow.apply({}, false, "", ""); }).find("evaluation steps"), std::string::npos);
  EXPECT_NE(error_of([&] { runnel::ChatTemplate("{{ range(100001) }}").apply({}, false, "", ""); })
                .find("range too big"),
            std::string::npos);
}

TEST(ChatTemplateLimits, StringsKeptInALoopAreBoundedInAll) {
  // Each string stays under max_output_bytes, but a list keeps them all: 2000
  // strings of 1 MB would hold 2 GB.  The sum of strings built is bounded.
  runnel::ChatTemplateLimits lim;
  lim.max_output_bytes = 1 << 20;
  lim.max_built_bytes = 8u << 20;
  const runnel::ChatTemplate keep(
      "{% set ns = namespace(l=[]) %}{% for i in range(2000) %}{% set ns.l = ns.l + ['x' * 1000000] %}{% endfor %}",
      "keep", lim);
  const std::string err = error_of([&] { keep.apply({}, false, "", ""); });
  EXPECT_NE(err.find("chat template 'keep'"), std::string::npos) << err;
  EXPECT_NE(err.find("8388608 bytes in all"), std::string::npos) << err;
  // The default budget leaves room for ordinary templates built by concatenation.
  const runnel::ChatTemplate acc(
      "{% set ns = namespace(s='') %}{% for m in messages %}{% set ns.s = ns.s + m.content %}{% endfor %}{{ ns.s }}",
      "acc");
  std::vector<runnel::ChatMessage> msgs(200, {"user", std::string(1000, 'y')});
  EXPECT_EQ(acc.apply(msgs, false, "", "").size(), 200000u);
}

TEST(ChatTemplateLimits, RepeatingAnEmptyValueAHugeNumberOfTimesIsQuick) {
  // Found by fuzz_chat_template: '' * 20000002000000 looped 2e13 times.
  runnel::ChatTemplateLimits lim;
  lim.max_steps = 100000;
  EXPECT_EQ(runnel::ChatTemplate("[{{ '' * 20000002000000 }}][{{ ([] * 20000002000000)|length }}]", "rep", lim)
                .apply({}, false, "", ""),
            "[][0]");
}

TEST(ChatTemplateLimits, RecursionIsBounded) {
  const runnel::ChatTemplate rec("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "rec");
  EXPECT_NE(error_of([&] { rec.apply({}, false, "", ""); }).find("nested deeper"), std::string::npos);
  const std::string deep_parens = std::string(5000, '(') + "1" + std::string(5000, ')');
  EXPECT_NE(error_of([&] { runnel::ChatTemplate("{{ " + deep_parens + " }}"); }).find("nested"), std::string::npos);
  std::string deep_ifs;
  for (int i = 0; i < 2000; ++i) deep_ifs += "{% if true %}";
  EXPECT_NE(error_of([&] { runnel::ChatTemplate{deep_ifs}; }).find("nested deeper"), std::string::npos);
  std::string chain = "{{ x";
  for (int i = 0; i < 5000; ++i) chain += ".a";
  EXPECT_NE(error_of([&] { runnel::ChatTemplate(chain + " }}"); }).find("nested deeper"), std::string::npos);
  std::string nots = "{{ ";
  for (int i = 0; i < 5000; ++i) nots += "not ";
  EXPECT_NE(error_of([&] { runnel::ChatTemplate(nots + "x }}"); }).find("nested"), std::string::npos);
  // Values nested without bound (a list wrapping itself in a loop).
  const runnel::ChatTemplate wrap(
      "{% set ns = namespace(v=[]) %}{% for i in range(1000) %}{% set ns.v = [ns.v] %}{% endfor %}{{ ns.v }}", "wrap");
  EXPECT_NE(error_of([&] { wrap.apply({}, false, "", ""); }).find("nesting"), std::string::npos);
  // A namespace that contains itself cannot be printed forever (nor leak).
  const runnel::ChatTemplate cyc("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}", "cyc");
  EXPECT_NE(error_of([&] { cyc.apply({}, false, "", ""); }).find("too deep"), std::string::npos);
}

// ---- robustness ----------------------------------------------------------------

TEST(ChatTemplateRobustness, RandomTemplatesNeverCrash) {
  // Random splices of template fragments: each must render or throw runnel::Error.
  const char* const frags[] = {"{{", "}}", "{%", "%}", "{#", "#}", "-", "+", " ", "\n", "if", "for", "in", "endif",
                               "endfor", "else", "elif", "set", "x", "messages", "loop.index", "(", ")", "[", "]",
                               "{", "}", ":", ",", "'", "\"", "|", "trim", "length", "tojson", "is", "not", "defined",
                               "1", "0", "-1", "2.5", "~", "*", "**", "/", "//", "%", "==", "<", "and", "or",
                               "namespace(", "ns.a", "range(", "raise_exception(", "macro", "endmacro", "\\", "é"};
  std::mt19937 rng(12345);
  runnel::ChatTemplateLimits lim;
  lim.max_output_bytes = 1 << 16;
  lim.max_steps = 100000;
  int parsed = 0, rendered = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string src;
    const int n = 1 + static_cast<int>(rng() % 24);
    for (int i = 0; i < n; ++i) src += frags[rng() % (sizeof(frags) / sizeof(frags[0]))];
    try {
      runnel::ChatTemplate tpl(src, "fuzz", lim);
      ++parsed;
      tpl.apply({{"user", "hi"}, {"assistant", "yo"}}, true, "<s>", "</s>");
      ++rendered;
    } catch (const runnel::Error&) {
    }
  }
  EXPECT_GT(parsed, 100);
  EXPECT_GT(rendered, 50);
}

}  // namespace
