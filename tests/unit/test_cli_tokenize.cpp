// End to end: the built `runnel tokenize` / `runnel detokenize` binary.
// Ids go to stdout on one line; bad input is one line on stderr and exit code 2.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "test_cli_util.hpp"

namespace {

namespace fs = std::filesystem;

using runnel::clitest::quote;
using runnel::clitest::Result;
using runnel::clitest::run_cli;

// A scratch file removed at the end of the test.
struct TempFile {
  fs::path path;
  TempFile(const std::string& name, const std::string& content)
      : path(fs::temp_directory_path() / (std::to_string(::getpid()) + "-" + name)) {
    std::ofstream(path, std::ios::binary) << content;
  }
  ~TempFile() {
    std::error_code ec;
    fs::remove(path, ec);
  }
  std::string q() const { return quote(path.string()); }
};

fs::path shared(const std::string& rel) { return fs::path(RUNNEL_SHARED_DIR) / "testdata" / rel; }

#define REQUIRE_SHARED(p) \
  if (!fs::exists(p)) GTEST_SKIP() << "shared test data not found: " << (p)

// One line on stderr (no stack of messages), naming `what`.
void expect_one_line_error(const Result& r, const std::string& what) {
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
  EXPECT_NE(r.err.find(what), std::string::npos) << r.err;
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
}

const char* kOptIds = "2 31414 6 127 2335 16 11962";

TEST(CliTokenize, OptHfExampleFromFolderAndVocabJson) {
  REQUIRE_SHARED(shared("opt-bpe/vocab.json"));
  // transformers' OPT docs: tokenizer("Hello, my dog is cute") with </s>=2 prepended.
  const Result dir = run_cli("tokenize -m " + quote(shared("opt-bpe").string()) +
                             " 'Hello, my dog is cute'");
  EXPECT_EQ(dir.code, 0) << dir.err;
  EXPECT_EQ(dir.out, std::string(kOptIds) + "\n");
  const Result file = run_cli("tokenize -m " + quote(shared("opt-bpe/vocab.json").string()) +
                              " 'Hello, my dog is cute'");
  EXPECT_EQ(file.code, 0) << file.err;
  EXPECT_EQ(file.out, dir.out);
  const Result no_bos = run_cli("tokenize -m " + quote(shared("opt-bpe").string()) +
                                " --no-bos 'Hello, my dog is cute'");
  EXPECT_EQ(no_bos.code, 0) << no_bos.err;
  EXPECT_EQ(no_bos.out, "31414 6 127 2335 16 11962\n");
}

TEST(CliTokenize, OptRoundTripThroughDetokenize) {
  REQUIRE_SHARED(shared("opt-bpe/vocab.json"));
  const std::string m = "-m " + quote(shared("opt-bpe").string());
  const std::string text = "Hello, my dog is cute.\n  Über 12345 \xF0\x9F\x98\x80 </s> tabs\tend";
  const TempFile in("opt-roundtrip.txt", text);
  const Result ids = run_cli("tokenize " + m + " --no-bos -f " + in.q());
  ASSERT_EQ(ids.code, 0) << ids.err;
  ASSERT_FALSE(ids.out.empty());
  ASSERT_EQ(ids.out.back(), '\n');
  const std::string id_line = ids.out.substr(0, ids.out.size() - 1);
  const Result back = run_cli("detokenize " + m + " " + quote(id_line));
  EXPECT_EQ(back.code, 0) << back.err;
  EXPECT_EQ(back.out, text + "\n");

  // Special tokens: kept by default, left out with --skip-special.
  const Result with_bos = run_cli("detokenize " + m + " " + quote(kOptIds));
  EXPECT_EQ(with_bos.code, 0) << with_bos.err;
  EXPECT_EQ(with_bos.out, "</s>Hello, my dog is cute\n");
  const Result skipped = run_cli("detokenize " + m + " --skip-special " + quote(kOptIds));
  EXPECT_EQ(skipped.code, 0) << skipped.err;
  EXPECT_EQ(skipped.out, "Hello, my dog is cute\n");
  // Comma-separated, and spread over several arguments.
  EXPECT_EQ(run_cli("detokenize " + m + " --skip-special 2,31414,6,127,2335,16,11962").out,
            skipped.out);
  EXPECT_EQ(run_cli("detokenize " + m + " --skip-special 2 31414 '6, 127' 2335 16 11962").out,
            skipped.out);
}

TEST(CliTokenize, LlamaSpmGgufVocabMatchesTokenizerModel) {
  REQUIRE_SHARED(shared("llama-spm/ggml-vocab-llama-spm.gguf"));
  const std::string gguf = "-m " + quote(shared("llama-spm/ggml-vocab-llama-spm.gguf").string());
  const std::string spm = "-m " + quote(shared("llama-spm/tokenizer.model").string());
  // From llama.cpp's ggml-vocab-llama-spm.gguf.inp/.out: "Hello world" -> 15043 3186.
  const Result g = run_cli("tokenize " + gguf + " --no-bos 'Hello world'");
  EXPECT_EQ(g.code, 0) << g.err;
  EXPECT_EQ(g.out, "15043 3186\n");
  const Result g2 = run_cli("tokenize " + gguf + " --no-bos ' Hello, world!'");
  EXPECT_EQ(g2.out, "29871 15043 29892 3186 29991\n");
  // With BOS (LLaMA adds <s>=1), the same ids as tokenizer.model.
  const Result gb = run_cli("tokenize " + gguf + " 'Hello world'");
  const Result sb = run_cli("tokenize " + spm + " 'Hello world'");
  EXPECT_EQ(gb.code, 0) << gb.err;
  EXPECT_EQ(sb.code, 0) << sb.err;
  EXPECT_EQ(gb.out, "1 15043 3186\n");
  EXPECT_EQ(gb.out, sb.out);
  const Result back = run_cli("detokenize " + gguf + " --skip-special 1 15043 3186");
  EXPECT_EQ(back.code, 0) << back.err;
  EXPECT_EQ(back.out, "Hello world\n");
}

TEST(CliTokenize, PiecesOnePerLine) {
  REQUIRE_SHARED(shared("opt-bpe/vocab.json"));
  const Result r =
      run_cli("tokenize -m " + quote(shared("opt-bpe").string()) + " --pieces 'Hello, my dog'");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "</s>\nHello\n,\n\xC4\xA0my\n\xC4\xA0" "dog\n");  // Ġ = U+0120
  REQUIRE_SHARED(shared("llama-spm/tokenizer.model"));
  const Result s = run_cli("tokenize -m " + quote(shared("llama-spm/tokenizer.model").string()) +
                           " --no-bos --pieces 'Hello world'");
  EXPECT_EQ(s.code, 0) << s.err;
  EXPECT_EQ(s.out, "\xE2\x96\x81Hello\n\xE2\x96\x81world\n");  // ▁ = U+2581
}

TEST(CliTokenize, PiecesEscapeControlBytes) {
  // Pieces holding a tab, a backslash and a control byte are printed escaped.
  const TempFile tok("escape-tokenizer.json",
                     R"({"model":{"type":"BPE","vocab":{"a":0,"\t":1,"\\":2,"\u0001":3},"merges":[]}})");
  const TempFile text("escape-text.txt", std::string("a\t\\\x01", 4));
  const Result r = run_cli("tokenize -m " + tok.q() + " --pieces -f " + text.q());
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "a\n\\t\n\\\\\n\\x01\n");
  const Result ids = run_cli("tokenize -m " + tok.q() + " -f " + text.q());
  EXPECT_EQ(ids.out, "0 1 2 3\n");
}

TEST(CliTokenize, Llama2cModelNeedsTokenizer) {
  REQUIRE_SHARED(shared("stories260K/stories260K.bin"));
  const std::string model = quote(shared("stories260K/stories260K.bin").string());
  expect_one_line_error(run_cli("tokenize -m " + model + " 'Once upon a time'"), "--tokenizer");
  const Result r = run_cli("tokenize -m " + model + " --tokenizer " +
                           quote(shared("stories260K/tok512.bin").string()) + " 'Once upon a time'");
  EXPECT_EQ(r.code, 0) << r.err;
  ASSERT_FALSE(r.out.empty());
  EXPECT_EQ(r.out.rfind("1 ", 0), 0u) << r.out;  // llama2.c's BOS
  const std::string ids = r.out.substr(0, r.out.size() - 1);
  const Result back = run_cli("detokenize -m " + model + " --tokenizer " +
                              quote(shared("stories260K/tok512.bin").string()) + " --skip-special " +
                              quote(ids));
  EXPECT_EQ(back.code, 0) << back.err;
  EXPECT_EQ(back.out, "Once upon a time\n");
}

TEST(CliTokenize, BadInputExitsWithTwo) {
  REQUIRE_SHARED(shared("opt-bpe/vocab.json"));
  const std::string m = "-m " + quote(shared("opt-bpe").string());
  // An id past the vocabulary is named.
  expect_one_line_error(run_cli("detokenize " + m + " 2 99999999"), "99999999");
  expect_one_line_error(run_cli("detokenize " + m + " 2 9999999999"), "9999999999");
  expect_one_line_error(run_cli("detokenize " + m + " '2 x7'"), "x7");
  expect_one_line_error(run_cli("detokenize " + m + " ,"), "no token ids");
  expect_one_line_error(run_cli("tokenize " + m), "no text");
  const TempFile in("both.txt", "x");
  expect_one_line_error(run_cli("tokenize " + m + " -f " + in.q() + " hello"), "not both");
  expect_one_line_error(run_cli("tokenize " + m + " -f /nonexistent/text.txt"),
                        "/nonexistent/text.txt");
  expect_one_line_error(run_cli("tokenize -m /nonexistent/tokenizer.json hi"),
                        "/nonexistent/tokenizer.json");
  expect_one_line_error(run_cli("tokenize -m " + quote(shared("opt-bpe/merges.txt").string()) + " hi"),
                        "vocab.json");
  const TempFile bad_json("bad-tokenizer.json", "{\"model\": 3}");
  expect_one_line_error(run_cli("tokenize -m " + bad_json.q() + " hi"), "model");
  const TempFile bad_gguf("bad.gguf", "GGUF\x03");
  expect_one_line_error(run_cli("tokenize -m " + bad_gguf.q() + " hi"), "bad.gguf");
  // Unknown flags are CLI errors, also exit code 2.
  EXPECT_EQ(run_cli("tokenize " + m + " --no-such-flag hi").code, 2);
  EXPECT_EQ(run_cli("detokenize " + m).code, 2);  // ids are required
}

TEST(CliTokenize, EmptyTextGivesOnlySpecialTokens) {
  REQUIRE_SHARED(shared("opt-bpe/vocab.json"));
  const std::string m = "-m " + quote(shared("opt-bpe").string());
  EXPECT_EQ(run_cli("tokenize " + m + " ''").out, "2\n");
  const Result r = run_cli("tokenize " + m + " --no-bos ''");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "\n");
}

}  // namespace
