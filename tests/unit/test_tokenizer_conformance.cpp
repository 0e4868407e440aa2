// Conformance against the shared suites: token ids produced by HF tokenizers.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "runnel/error.hpp"
#include "runnel/tokenizer.hpp"

namespace {

namespace fs = std::filesystem;

const fs::path kShared = fs::path(RUNNEL_SHARED_DIR) / "testdata";

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string strip_cr(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i)
    if (!(s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n')) out += s[i];
  return out;
}

struct Case {
  std::string text;
  std::vector<int32_t> ids;
};

// `.inp`: strings separated by lines "__ggml_vocab_test__"; `.out`: one line of ids per string.
// The files in shared/ have CRLF line ends; the strings themselves are LF-only.
std::vector<Case> read_cases(const fs::path& inp, const fs::path& out) {
  const std::string in = strip_cr(slurp(inp));
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<Case> cases;
  size_t pos = 0;
  while (pos < in.size()) {
    const size_t hit = in.find(sep, pos);
    if (hit == std::string::npos) break;
    cases.push_back({in.substr(pos, hit - pos), {}});
    pos = hit + sep.size();
  }
  std::istringstream lines(strip_cr(slurp(out)));
  std::string line;
  size_t k = 0;
  while (std::getline(lines, line) && k < cases.size()) {
    std::istringstream ids(line);
    int32_t id;
    while (ids >> id) cases[k].ids.push_back(id);
    ++k;
  }
  EXPECT_EQ(k, cases.size()) << out;
  return cases;
}

std::string show(const std::vector<int32_t>& ids) {
  std::string s;
  for (auto id : ids) s += " " + std::to_string(id);
  return s;
}

void run_suite(const runnel::Tokenizer& tok, const fs::path& inp, const fs::path& out, bool check_roundtrip) {
  const auto cases = read_cases(inp, out);
  ASSERT_EQ(cases.size(), 46u);  // 46 strings in the shared files (the issue says 47)
  size_t ok = 0;
  for (const auto& c : cases) {
    const auto ids = tok.encode(c.text, /*add_special=*/false);
    EXPECT_EQ(ids, c.ids) << "text: [" << c.text << "]\n got:" << show(ids) << "\nwant:" << show(c.ids);
    ok += ids == c.ids;
    if (check_roundtrip) {
      EXPECT_EQ(tok.decode(ids), c.text) << "round trip of [" << c.text << "]";
    }
  }
  EXPECT_EQ(ok, cases.size());
}

#define REQUIRE_SHARED(dir)                                                                     \
  if (!fs::exists(kShared / dir)) GTEST_SKIP() << "shared test data not found: " << (kShared / dir)

TEST(TokenizerConformance, LlamaSpm) {
  REQUIRE_SHARED("llama-spm");
  const auto tok = runnel::load_tokenizer((kShared / "llama-spm/tokenizer.model").string());
  EXPECT_EQ(tok.vocab_size(), 32000u);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  // HF's LLaMA decode drops the one leading space it added, so texts that start
  // with a space do not round-trip; check ids only here and round trips below.
  run_suite(tok, kShared / "llama-spm/ggml-vocab-llama-spm.gguf.inp", kShared / "llama-spm/ggml-vocab-llama-spm.gguf.out",
            false);
  EXPECT_EQ(tok.encode("Hello world"), (std::vector<int32_t>{1, 15043, 3186}));
  EXPECT_EQ(tok.decode(tok.encode("Hello world"), true), "Hello world");
}

TEST(TokenizerConformance, Gpt2Bpe) {
  REQUIRE_SHARED("gpt2-bpe");
  const auto tok = runnel::load_tokenizer((kShared / "gpt2-bpe").string());
  EXPECT_EQ(tok.vocab_size(), 50257u);
  run_suite(tok, kShared / "gpt2-bpe/ggml-vocab-gpt-2.gguf.inp", kShared / "gpt2-bpe/ggml-vocab-gpt-2.gguf.out", true);
}

TEST(TokenizerConformance, OptBpe) {
  REQUIRE_SHARED("opt-bpe");
  const auto tok = runnel::load_tokenizer((kShared / "opt-bpe").string());
  run_suite(tok, kShared / "opt-bpe/cases.inp", kShared / "opt-bpe/cases.out", true);
  EXPECT_EQ(tok.bos_id(), 2);
  EXPECT_EQ(tok.encode("Hello, my dog is cute"), (std::vector<int32_t>{2, 31414, 6, 127, 2335, 16, 11962}));
  EXPECT_EQ(tok.decode(tok.encode("Hello, my dog is cute"), true), "Hello, my dog is cute");
}

}  // namespace
