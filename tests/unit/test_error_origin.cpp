// Errors in text that a model's files carry (a tokenizer.json pre-tokenizer
// regex, a chat template from tokenizer_config.json or a GGUF) name the file
// and the field they came from.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>

#include "runnel/error.hpp"
#include "runnel/gguf.hpp"
#include "runnel/tokenizer.hpp"
#include "test_cli_util.hpp"
#include "test_gguf_util.hpp"

namespace {

namespace fs = std::filesystem;
using namespace runnel;
using json = nlohmann::json;
using runnel::clitest::quote;
using runnel::clitest::Result;
using runnel::clitest::run_cli;

std::string load_error(const std::string& path) {
  try {
    load_tokenizer(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(ErrorOrigin, PreTokenizerRegexNamesTheFileAndField) {
  clitest::TempDir tmp;
  clitest::write_tiny_tokenizer(tmp.path);
  const fs::path file = tmp.path / "tokenizer.json";
  json tok = json::parse(clitest::slurp(file));
  tok["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"}, {"pattern", {{"Regex", "(a|b"}}}, {"behavior", "Isolated"}},
        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}}}};
  std::ofstream(file, std::ios::binary) << tok.dump();
  const std::string msg = load_error(file.string());
  EXPECT_NE(msg.find(file.string() + ": pre_tokenizer.pretokenizers[0].pattern: "),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("invalid regex \"(a|b\""), std::string::npos) << msg;
}

// `runnel chat` parses the model's template: a syntax error names
// tokenizer_config.json and its chat_template field.
TEST(ErrorOrigin, ChatTemplateFromTokenizerConfigNamesTheFile) {
  clitest::TempDir tmp;
  clitest::write_tiny_tokenizer(tmp.path, "{% for m in messages %}{{ m.content }}");
  const Result r = run_cli("chat -m " + quote(clitest::fixture("llama-mha").string()) +
                               " --tokenizer " + quote(tmp.path.string()) + " -n 2",
                           "hi\n");
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find((tmp.path / "tokenizer_config.json").string() + ": chat_template"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("line 1"), std::string::npos) << r.err;
}

TEST(ErrorOrigin, ChatTemplateFromGgufNamesTheFile) {
  test::GgufTempDir tmp;
  const std::string path = tmp.file("m.gguf");
  gguf::Writer w = test::tiny_llama();
  w.set_string("tokenizer.chat_template", "{{ messages | no_such_filter }}");
  w.write(path);
  const Result r = run_cli("chat -m " + quote(path) + " -n 2", "hi\n");
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find(path + ": tokenizer.chat_template"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("no_such_filter"), std::string::npos) << r.err;
}

}  // namespace
