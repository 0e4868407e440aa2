// Loads arbitrary bytes as a tokenizer.json (and as a SentencePiece model and a
// llama2.c tokenizer.bin); a load either succeeds or throws runnel::Error.
#include <cstdint>
#include <string>

#include "runnel/error.hpp"
#include "runnel/tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    const auto tok = runnel::Tokenizer::from_json(bytes, "fuzz.json");
    for (const char* s : {"", "Hello world", " a\tb\n\n1234 日本 🦙", "<s>x</s>", "\xFF\xFE"}) {
      const auto ids = tok.encode(s, true);
      (void)tok.decode(ids, false);
      (void)tok.decode(ids, true);
    }
  } catch (const runnel::Error&) {
  }
  try {
    const auto v = runnel::Tokenizer::parse_sentencepiece(bytes, "fuzz.model");
    const auto tok = runnel::Tokenizer::from_vocab(v);
    (void)tok.decode(tok.encode("Hello world 123", true));
  } catch (const runnel::Error&) {
  }
  try {
    const auto v = runnel::Tokenizer::parse_llama2c(bytes, 0, "fuzz.bin");
    const auto tok = runnel::Tokenizer::from_vocab(v);
    (void)tok.decode(tok.encode("Hello world 123", true));
  } catch (const runnel::Error&) {
  }
  return 0;
}
