// Tokenizer unit tests: GGUF-style Vocab construction, malformed files,
// odd inputs, streaming, config files.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "runnel/error.hpp"
#include "runnel/tokenizer.hpp"
#include "tokenizer/regex.hpp"
#include "tokenizer/unicode.hpp"

namespace {

namespace fs = std::filesystem;
const fs::path kShared = fs::path(RUNNEL_SHARED_DIR) / "testdata";
const fs::path kData = fs::path(RUNNEL_TEST_DATA_DIR) / "tokenizers";

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

const char* const kSamples[] = {"Hello world", " leading space", "tabs\tand\nnewlines\n\n", "日本語 and émoji 🦙👍🏽",
                                "numbers 1234567 and 3.14", "<s>special</s> inside", ""};

TEST(TokenizerUnicode, SanitizeMatchesPythonReplace) {
  using runnel::tok::sanitize_utf8;
  // Expected values from bytes.decode("utf-8", errors="replace").
  EXPECT_EQ(sanitize_utf8("abc"), "abc");
  EXPECT_EQ(sanitize_utf8("\xFF"), "\xEF\xBF\xBD");
  EXPECT_EQ(sanitize_utf8("\xE6\x97" "a"), "\xEF\xBF\xBD" "a");  // one U+FFFD for the truncated sequence
  EXPECT_EQ(sanitize_utf8("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate: 3
  EXPECT_EQ(sanitize_utf8("\xF0\x9F\xA6"), "\xEF\xBF\xBD");
  EXPECT_EQ(sanitize_utf8("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_TRUE(runnel::tok::is_valid_utf8("\xF0\x9F\xA6\x99"));
  EXPECT_FALSE(runnel::tok::is_valid_utf8("\xF4\x90\x80\x80"));
}

TEST(TokenizerRegex, Gpt2PatternSplitsLikeOniguruma) {
  runnel::tok::Regex re(R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)", "test");
  const std::string text = "Hello  world's 123 \xC2\x85x!";
  std::vector<std::string> parts;
  for (auto [b, e] : re.find_all(text)) parts.push_back(text.substr(b, e - b));
  // U+0085 is whitespace for Oniguruma, as HF's ByteLevel split shows.
  EXPECT_EQ(parts, (std::vector<std::string>{"Hello", " ", " world", "'s", " 123", " ", "\xC2\x85", "x", "!"}));
  EXPECT_EQ(runnel::tok::translate_onig_pattern("[^(\\s|[.,])]"), "[^(\\s\\x{85}|.,)]");
  EXPECT_THROW(runnel::tok::Regex("(", "test"), runnel::Error);
}

TEST(TokenizerVocab, GgufStyleLlamaMatchesTokenizerModel) {
  const fs::path p = kShared / "llama-spm/tokenizer.model";
  if (!fs::exists(p)) GTEST_SKIP() << "shared test data not found: " << p;
  // What the GGUF loader will do: tokens/scores/types arrays -> Vocab -> Tokenizer.
  const runnel::Vocab parsed = runnel::Tokenizer::parse_sentencepiece(slurp(p));
  runnel::Vocab v;
  v.model = runnel::VocabModel::SentencePieceBpe;
  v.tokens = parsed.tokens;
  v.scores = parsed.scores;
  v.types = parsed.types;
  v.bos_id = 1;
  v.eos_id = 2;
  v.unk_id = 0;
  v.add_bos = true;
  const auto from_gguf = runnel::Tokenizer::from_vocab(v);
  const auto from_file = runnel::load_tokenizer(p.string());
  for (const char* s : kSamples) EXPECT_EQ(from_gguf.encode(s), from_file.encode(s)) << s;
  EXPECT_EQ(from_gguf.encode("Hello world"), (std::vector<int32_t>{1, 15043, 3186}));
  EXPECT_TRUE(from_gguf.is_special(1));
  EXPECT_TRUE(from_gguf.is_eog(2));
  EXPECT_EQ(from_gguf.token_to_piece(15043), "\xE2\x96\x81Hello");
  EXPECT_EQ(from_gguf.piece_to_id("<0x0A>").value_or(-1), 13);
}

TEST(TokenizerVocab, GgufStyleGpt2MatchesVocabJson) {
  const fs::path dir = kShared / "opt-bpe";
  if (!fs::exists(dir)) GTEST_SKIP() << "shared test data not found: " << dir;
  const runnel::Vocab parsed =
      runnel::Tokenizer::parse_gpt2(slurp(dir / "vocab.json"), slurp(dir / "merges.txt"));
  runnel::Vocab v;
  v.model = runnel::VocabModel::ByteLevelBpe;
  v.tokens = parsed.tokens;
  v.merges = parsed.merges;
  v.types = parsed.types;
  v.pre_tokenizer = "gpt2";
  v.bos_id = v.eos_id = 2;
  v.add_bos = true;
  const auto from_gguf = runnel::Tokenizer::from_vocab(v);
  const auto from_file = runnel::load_tokenizer(dir.string());
  for (const char* s : kSamples) EXPECT_EQ(from_gguf.encode(s), from_file.encode(s)) << s;
  v.pre_tokenizer = "no-such-pre";
  EXPECT_THROW(runnel::Tokenizer::from_vocab(v), runnel::Error);
  v.pre_tokenizer = "gpt2";
  v.merges.push_back("notatoken alsonot");
  EXPECT_THROW(runnel::Tokenizer::from_vocab(v), runnel::Error);
}

TEST(TokenizerVocab, RejectsInconsistentArrays) {
  runnel::Vocab v;
  v.tokens = {"a", "b"};
  v.scores = {0.0f};
  EXPECT_THROW(runnel::Tokenizer::from_vocab(v), runnel::Error);
  v.scores = {};
  v.bos_id = 7;
  EXPECT_THROW(runnel::Tokenizer::from_vocab(v), runnel::Error);
  EXPECT_THROW(runnel::Tokenizer::from_vocab(runnel::Vocab{}), runnel::Error);
}

TEST(TokenizerSentencePiece, MalformedProtobufGivesErrors) {
  const fs::path p = kShared / "llama-spm/tokenizer.model";
  if (!fs::exists(p)) GTEST_SKIP() << "shared test data not found: " << p;
  const std::string good = slurp(p);
  for (size_t cut : {size_t{1}, size_t{2}, size_t{7}, size_t{1000}, good.size() / 2, good.size() - 1}) {
    try {
      runnel::Tokenizer::parse_sentencepiece(good.substr(0, cut));
    } catch (const runnel::Error& e) {
      EXPECT_NE(std::string(e.what()).find("tokenizer.model"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(runnel::Tokenizer::parse_sentencepiece(""), runnel::Error);
  EXPECT_THROW(runnel::Tokenizer::parse_sentencepiece("\x0A\xFF\xFF\xFF\xFF\x0F"), runnel::Error);  // huge length
  EXPECT_THROW(runnel::Tokenizer::parse_sentencepiece(std::string(12, '\xFF')), runnel::Error);   // bad varint
}

TEST(TokenizerJson, MalformedDocumentsGiveNamedErrors) {
  auto err = [](const std::string& doc) {
    try {
      runnel::Tokenizer::from_json(doc);
    } catch (const runnel::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(err("{").find("invalid JSON"), std::string::npos);
  EXPECT_NE(err("[]").find("expected a JSON object"), std::string::npos);
  EXPECT_NE(err("{}").find("missing \"model\""), std::string::npos);
  const std::string bad_merge =
      R"({"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b", 12]}})";
  EXPECT_NE(err(bad_merge).find("model.merges[1]: expected \"a b\" or [\"a\",\"b\"]"), std::string::npos)
      << err(bad_merge);
  EXPECT_NE(err(R"({"model":{"type":"BPE","vocab":{"a":0},"merges":[["a","zz"]]}})").find("not in the vocab"),
            std::string::npos);
  EXPECT_NE(err(R"({"model":{"type":"WordPiece","vocab":{"a":0}}})").find("not supported"), std::string::npos);
  EXPECT_NE(err(R"({"model":{"type":"BPE","vocab":{"a":0},"merges":[]},"pre_tokenizer":{"type":"Split","pattern":{"Regex":"("}}})")
                .find("invalid regex"),
            std::string::npos);
  // A minimal valid one, with merges in pair form.
  const auto tok = runnel::Tokenizer::from_json(
      R"({"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":[["a","b"]]}})");
  EXPECT_EQ(tok.encode("abab"), (std::vector<int32_t>{2, 2}));
  EXPECT_EQ(tok.decode(std::vector<int32_t>{2, 1}), "ab b");  // no decoder: pieces joined by spaces
  EXPECT_THROW(tok.decode(std::vector<int32_t>{3}), runnel::Error);
  EXPECT_THROW(tok.decode(std::vector<int32_t>{-1}), runnel::Error);
}

TEST(TokenizerInputs, OddInputsAreSafe) {
  const auto tok = runnel::load_tokenizer((kData / "llama3/tokenizer.json").string());
  EXPECT_TRUE(tok.encode("", false).empty());
  EXPECT_EQ(tok.encode("", true).size(), 1u);  // <|begin_of_text|>
  std::string junk;
  for (int i = 0; i < 4096; ++i) junk += static_cast<char>((i * 7919) & 0xFF);
  const auto ids = tok.encode(junk, false);
  EXPECT_FALSE(ids.empty());
  EXPECT_TRUE(runnel::tok::is_valid_utf8(tok.decode(ids)));
  const std::string spaces(200000, ' ');
  EXPECT_EQ(tok.decode(tok.encode(spaces, false)), spaces);
}

TEST(TokenizerStream, HoldsIncompleteCharacters) {
  const fs::path p = kShared / "llama-spm/tokenizer.model";
  if (!fs::exists(p)) GTEST_SKIP() << "shared test data not found: " << p;
  const auto tok = runnel::load_tokenizer(p.string());
  // "🦙" is four byte-fallback tokens in LLaMA's vocab.
  const auto ids = tok.encode("a \xF0\x9F\xA6\x99 b", false);
  runnel::StreamDecoder stream(tok);
  std::vector<std::string> pieces;
  for (int32_t id : ids) pieces.push_back(stream.push(id));
  pieces.push_back(stream.flush());
  std::string all;
  for (const auto& s : pieces) {
    EXPECT_TRUE(runnel::tok::is_valid_utf8(s)) << s;
    EXPECT_EQ(s.find("\xEF\xBF\xBD"), std::string::npos);
    all += s;
  }
  EXPECT_EQ(all, "a \xF0\x9F\xA6\x99 b");
  // A dangling byte token is only emitted by flush, as U+FFFD.
  runnel::StreamDecoder s2(tok);
  EXPECT_EQ(s2.push(tok.piece_to_id("<0xF0>").value()), "");
  EXPECT_EQ(s2.flush(), "\xEF\xBF\xBD");
}

TEST(TokenizerConfig, ConfigFilesSetSpecialsAndTemplate) {
  const fs::path dir = fs::temp_directory_path() / "runnel_tok_config_test";
  fs::create_directories(dir);
  fs::copy_file(kData / "llama2-legacy/tokenizer.json", dir / "tokenizer.json", fs::copy_options::overwrite_existing);
  {
    std::ofstream f(dir / "tokenizer_config.json");
    f << R"({"tokenizer_class":"LlamaTokenizer","add_bos_token":true,"add_eos_token":true,)"
      << R"("bos_token":{"content":"<s>"},"eos_token":"</s>","chat_template":"{{ bos_token }}"})";
  }
  const auto tok = runnel::load_tokenizer(dir.string());
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_EQ(tok.chat_template(), "{{ bos_token }}");
  const auto ids = tok.encode("hi", true);
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids.front(), 1);
  EXPECT_EQ(ids.back(), 2);
  fs::remove_all(dir);
}

TEST(TokenizerLoad, AutoDetectsFormats) {
  EXPECT_THROW(runnel::load_tokenizer("/nonexistent/tokenizer.json"), runnel::Error);
  EXPECT_EQ(runnel::load_tokenizer((kData / "bloom").string()).encode("x", false),
            runnel::load_tokenizer((kData / "bloom/tokenizer.json").string()).encode("x", false));
  const fs::path tok105 = kShared / "babyllama-tok105/tok105.model";
  if (!fs::exists(tok105)) GTEST_SKIP() << "shared test data not found: " << tok105;
  const auto t = runnel::load_tokenizer(tok105.string());
  EXPECT_EQ(t.vocab_size(), 105u);
  // sentencepiece 0.2.0's SentencePieceProcessor(model_file=tok105.model)
  // .encode("once upon a time"), after BOS 1.
  EXPECT_EQ(t.encode("once upon a time", true),
            (std::vector<int32_t>{1, 3, 7, 9, 22, 4, 3, 18, 20, 7, 9, 3, 5, 3, 6, 10, 16, 4}));
}

}  // namespace
