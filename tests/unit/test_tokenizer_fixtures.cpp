// Generated fixtures (tools/reference/make_tokenizer_fixtures.py): ids and
// decodes from HF tokenizers for a corpus of hard strings.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "runnel/error.hpp"
#include "runnel/tokenizer.hpp"
#include "tokenizer/unicode.hpp"

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const fs::path kData = fs::path(RUNNEL_TEST_DATA_DIR) / "tokenizers";
const fs::path kShared = fs::path(RUNNEL_SHARED_DIR) / "testdata";

json read_json(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return json::parse(f);
}

std::string hex_bytes(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}

// The raw input bytes of a corpus entry (invalid UTF-8 stays invalid here).
std::string entry_bytes(const json& e) {
  if (e.contains("text")) return e["text"].get<std::string>();
  if (e.contains("hex")) return hex_bytes(e["hex"].get<std::string>());
  const std::string unit = e["repeat"].get<std::string>();
  const size_t n = e["max_bytes"].get<size_t>() / unit.size();
  std::string s;
  s.reserve(unit.size() * n);
  for (size_t k = 0; k < n; ++k) s += unit;
  return s;
}

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  std::istringstream in(s);
  int32_t id;
  while (in >> id) ids.push_back(id);
  return ids;
}

std::string fnv1a(const std::vector<int32_t>& ids) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (int32_t id : ids) {
    const auto u = static_cast<uint32_t>(id);
    for (int b = 0; b < 4; ++b) {
      h ^= (u >> (8 * b)) & 0xFF;
      h *= 0x100000001B3ull;
    }
  }
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::string printable(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02X", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out.size() > 300 ? out.substr(0, 300) + "..." : out;
}

struct FixtureCase {
  const char* name;
  const char* source;  // tokenizer path, relative to tests/data/tokenizers or "shared:<path>"
};

class TokenizerFixture : public ::testing::TestWithParam<FixtureCase> {};

TEST_P(TokenizerFixture, MatchesHf) {
  const auto& param = GetParam();
  const fs::path expected_path = kData / (std::string(param.name) + ".expected.json");
  ASSERT_TRUE(fs::exists(expected_path)) << expected_path;
  std::string source = param.source;
  fs::path tok_path;
  if (source.rfind("shared:", 0) == 0) {
    tok_path = kShared / source.substr(7);
    if (!fs::exists(tok_path)) GTEST_SKIP() << "shared test data not found: " << tok_path;
  } else {
    tok_path = kData / source;
  }
  const auto tok = runnel::load_tokenizer(tok_path.string());
  const json corpus = read_json(kData / "corpus.json");
  const json expected = read_json(expected_path);
  const json& rows = expected["rows"];
  ASSERT_EQ(rows.size(), corpus.size());
  ASSERT_GE(corpus.size(), 500u);
  size_t id_ok = 0, decode_ok = 0, stream_ok = 0;
  for (size_t k = 0; k < corpus.size(); ++k) {
    const std::string input = entry_bytes(corpus[k]);
    const json& row = rows[k];
    const auto ids = tok.encode(input, false);
    const std::string decoded = tok.decode(ids);
    if (row.contains("ids_fnv1a")) {
      EXPECT_EQ(ids.size(), row["n_ids"].get<size_t>()) << "long line";
      EXPECT_EQ(fnv1a(ids), row["ids_fnv1a"].get<std::string>()) << "long line";
      id_ok += fnv1a(ids) == row["ids_fnv1a"].get<std::string>();
      uint64_t h = 0xCBF29CE484222325ull;
      for (unsigned char c : decoded) h = (h ^ c) * 0x100000001B3ull;
      char buf[17];
      std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
      EXPECT_EQ(std::string(buf), row["decode_fnv1a"].get<std::string>()) << "long line decode";
      decode_ok += std::string(buf) == row["decode_fnv1a"].get<std::string>();
      ++stream_ok;
      continue;
    }
    const auto want = parse_ids(row["ids"].get<std::string>());
    EXPECT_EQ(ids, want) << "entry " << k << ": [" << printable(input) << "]";
    id_ok += ids == want;
    // HF decode of HF's ids; null means it equals HF's input, which for invalid
    // UTF-8 is the input with U+FFFD replacements.
    const std::string hf_decode =
        row["decode"].is_null() ? runnel::tok::sanitize_utf8(input) : row["decode"].get<std::string>();
    const std::string dec_want = tok.decode(want);
    EXPECT_EQ(dec_want, hf_decode) << "entry " << k << ": [" << printable(input) << "]";
    decode_ok += dec_want == hf_decode;
    // Streaming gives the same text, piece by piece.
    runnel::StreamDecoder stream(tok);
    std::string streamed;
    for (int32_t id : want) streamed += stream.push(id);
    streamed += stream.flush();
    EXPECT_EQ(streamed, dec_want) << "stream, entry " << k;
    stream_ok += streamed == dec_want;
    if (row.contains("ids_special")) {
      const auto with = tok.encode(input, true);
      EXPECT_EQ(with, parse_ids(row["ids_special"].get<std::string>())) << "with special, entry " << k;
      const std::string skip = tok.decode(with, true);
      const std::string want_skip = row["decode_skip_special"].is_null() ? tok.decode(want) : row["decode_skip_special"].get<std::string>();
      EXPECT_EQ(skip, want_skip) << "skip_special, entry " << k;
    }
  }
  EXPECT_EQ(id_ok, corpus.size());
  EXPECT_EQ(decode_ok, corpus.size());
  EXPECT_EQ(stream_ok, corpus.size());
}

INSTANTIATE_TEST_SUITE_P(
    Hf, TokenizerFixture,
    ::testing::Values(FixtureCase{"bloom", "bloom/tokenizer.json"}, FixtureCase{"llama3", "llama3/tokenizer.json"},
                      FixtureCase{"llama2-legacy", "llama2-legacy/tokenizer.json"},
                      FixtureCase{"llama2-metaspace", "llama2-metaspace/tokenizer.json"},
                      FixtureCase{"unigram", "unigram/tokenizer.json"}, FixtureCase{"opt-shared", "shared:opt-bpe"},
                      FixtureCase{"llama-spm-shared", "shared:llama-spm/tokenizer.model"}),
    [](const ::testing::TestParamInfo<FixtureCase>& info) {
      std::string n = info.param.name;
      for (auto& c : n)
        if (!isalnum(static_cast<unsigned char>(c))) c = '_';
      return n;
    });

}  // namespace
