// Encodes arbitrary bytes with small in-memory tokenizers of each kind, then
// decodes and streams the ids.  Decoded text must always be valid UTF-8.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "runnel/error.hpp"
#include "runnel/tokenizer.hpp"
#include "tokenizer/unicode.hpp"

namespace {

std::vector<runnel::Tokenizer> make_tokenizers() {
  std::vector<runnel::Tokenizer> out;
  // Byte-level BPE with each pre-tokenizer.
  for (const char* pre : {"gpt2", "llama3", "bloom"}) {
    runnel::Vocab v;
    v.model = runnel::VocabModel::ByteLevelBpe;
    v.pre_tokenizer = pre;
    for (const auto& s : runnel::tok::byte_to_unicode()) v.tokens.push_back(s);
    const char* merges[][2] = {{"\xC4\xA0", "t"}, {"\xC4\xA0t", "h"}, {"h", "e"}, {"\xC4\xA0th", "e"}, {"1", "2"}};
    for (const auto& m : merges) {
      v.tokens.push_back(std::string(m[0]) + m[1]);
      v.merges.push_back(std::string(m[0]) + " " + m[1]);
    }
    v.tokens.push_back("<|endoftext|>");
    v.types.assign(v.tokens.size(), runnel::TokenType::Normal);
    v.types.back() = runnel::TokenType::Control;
    v.bos_id = v.eos_id = static_cast<int32_t>(v.tokens.size() - 1);
    v.add_bos = true;
    out.push_back(runnel::Tokenizer::from_vocab(v));
  }
  // SentencePiece-style BPE with byte fallback, and the llama2.c scorer on the same pieces.
  for (auto model : {runnel::VocabModel::SentencePieceBpe, runnel::VocabModel::SentencePieceUnigram,
                     runnel::VocabModel::Llama2c}) {
    runnel::Vocab v;
    v.model = model;
    v.tokens = {"<unk>", "<s>", "</s>"};
    v.types = {runnel::TokenType::Unknown, runnel::TokenType::Control, runnel::TokenType::Control};
    for (int b = 0; b < 256; ++b) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
      v.tokens.push_back(buf);
      v.types.push_back(runnel::TokenType::Byte);
    }
    const bool l2c = model == runnel::VocabModel::Llama2c;
    const std::string sp = l2c ? " " : "\xE2\x96\x81";
    for (const std::string& p : {sp, std::string("a"), std::string("b"), sp + "a", std::string("ab"), sp + "ab",
                                 std::string("\xE6\x97\xA5"), std::string("e\xCC\x81")}) {
      v.tokens.push_back(p);
      v.types.push_back(runnel::TokenType::Normal);
    }
    v.scores.assign(v.tokens.size(), 0.0f);
    for (size_t i = 259; i < v.scores.size(); ++i) v.scores[i] = -static_cast<float>(i - 259);
    v.unk_id = 0;
    v.bos_id = 1;
    v.eos_id = 2;
    v.add_bos = true;
    v.byte_fallback = true;
    out.push_back(runnel::Tokenizer::from_vocab(v));
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<runnel::Tokenizer> toks = make_tokenizers();
  if (size == 0) return 0;
  const auto& tok = toks[data[0] % toks.size()];
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    const auto ids = tok.encode(text, (data[0] & 0x80) != 0);
    const std::string decoded = tok.decode(ids, (data[0] & 0x40) != 0);
    if (!runnel::tok::is_valid_utf8(decoded)) std::abort();
    runnel::StreamDecoder stream(tok);
    std::string streamed;
    for (int32_t id : ids) {
      const std::string piece = stream.push(id);
      if (!runnel::tok::is_valid_utf8(piece)) std::abort();
      streamed += piece;
    }
    streamed += stream.flush();
    if (streamed != tok.decode(ids)) std::abort();
  } catch (const runnel::Error&) {
    // Not expected for encode/decode of valid ids, but never a crash.
  }
  return 0;
}
