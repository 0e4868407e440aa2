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

// ---- rewritten text is bounded --------------------------------------------------

namespace {

// The tiny tokenizer with `field` (normalizer or decoder) replaced by `value`.
fs::path tokenizer_with(const clitest::TempDir& tmp, const std::string& field, const json& value) {
  clitest::write_tiny_tokenizer(tmp.path);
  const fs::path file = tmp.path / "tokenizer.json";
  json tok = json::parse(clitest::slurp(file));
  tok[field] = value;
  std::ofstream(file, std::ios::binary) << tok.dump();
  return file;
}

// 40 chained Replace a -> aa: 2^40 times the input if nothing stops it.
json doubling_chain(const std::string& list_key) {
  json items = json::array();
  for (int i = 0; i < 40; ++i)
    items.push_back({{"type", "Replace"}, {"pattern", {{"String", "a"}}}, {"content", "aa"}});
  return {{"type", "Sequence"}, {list_key, items}};
}

}  // namespace

TEST(RewriteBounds, ANormalizerChainThatDoublesTextIsRefusedNamingTheFile) {
  clitest::TempDir tmp;
  const fs::path file = tokenizer_with(tmp, "normalizer", doubling_chain("normalizers"));
  const Tokenizer tok = load_tokenizer(file.string());
  std::string msg = "(no error)";
  try {
    tok.encode("a banana", false);
  } catch (const Error& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find(file.string() + ": normalizer: the text grew past "), std::string::npos) << msg;
  EXPECT_NE(msg.find("from 8 bytes"), std::string::npos) << msg;
  // Text without the pattern is untouched, and a short doubling is allowed.
  EXPECT_FALSE(tok.encode("xyz", false).empty());
}

TEST(RewriteBounds, ADecoderChainThatDoublesTextIsRefusedNamingTheFile) {
  clitest::TempDir tmp;
  const fs::path file = tokenizer_with(tmp, "decoder", doubling_chain("decoders"));
  const Tokenizer tok = load_tokenizer(file.string());
  const std::vector<int32_t> ids = tok.encode("a", false);
  ASSERT_FALSE(ids.empty());
  std::string msg = "(no error)";
  try {
    tok.decode(ids, false);
  } catch (const Error& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find(file.string() + ": decoder: the text grew past "), std::string::npos) << msg;
}

TEST(RewriteBounds, AMetaspaceReplacementIsOneCharacter) {
  clitest::TempDir tmp;
  const fs::path file = tokenizer_with(
      tmp, "pre_tokenizer",
      {{"type", "Metaspace"}, {"replacement", std::string(1000, 'x')}, {"prepend_scheme", "always"}});
  const std::string msg = load_error(file.string());
  EXPECT_NE(msg.find(file.string() + ": pre_tokenizer.replacement: must be one character"), std::string::npos)
      << msg;
  // The usual U+2581 loads.
  const fs::path ok = tokenizer_with(tmp, "pre_tokenizer",
                                     {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "always"}});
  EXPECT_NO_THROW(load_tokenizer(ok.string()));
}
