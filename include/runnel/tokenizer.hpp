#pragma once
// Tokenizers that give the same ids as Hugging Face `tokenizers`.
//
// Formats: HF tokenizer.json, SentencePiece tokenizer.model, GPT-2 style
// vocab.json + merges.txt, llama2.c tokenizer.bin, and a `Vocab` built from
// GGUF metadata (tokenizer.ggml.*).
//
// Input text is UTF-8.  Invalid UTF-8 is replaced by U+FFFD before
// tokenization, exactly as Python's `bytes.decode("utf-8", errors="replace")`
// does (one U+FFFD per maximal invalid subsequence); HF's API only takes valid
// strings, so this is the input HF would see.  The llama2.c tokenizer is the
// exception: it works on raw bytes like llama2.c's run.c `encode`.
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace runnel {

// Token types, numbered as SentencePiece and GGUF (tokenizer.ggml.token_type).
enum class TokenType : int32_t {
  Undefined = 0,
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6,
};

// Which segmentation algorithm a Vocab uses.
enum class VocabModel {
  SentencePieceBpe,      // GGUF "llama": merge the adjacent pair whose piece scores highest
  SentencePieceUnigram,  // GGUF "t5"-style unigram: Viterbi over piece scores
  ByteLevelBpe,          // GGUF "gpt2": byte-level BPE with ranked merges
  Llama2c,               // llama2.c tokenizer.bin: scored merges over raw bytes, byte id = byte + 3
};

// The format-neutral description of a vocabulary: what GGUF metadata carries
// (tokenizer.ggml.model / tokens / scores / token_type / merges / pre / *_token_id).
struct Vocab {
  VocabModel model = VocabModel::SentencePieceBpe;
  std::vector<std::string> tokens;  // [n_vocab] piece text; SentencePiece pieces use U+2581 for space
  std::vector<float> scores;        // [n_vocab] or empty
  std::vector<TokenType> types;     // [n_vocab] or empty (all Normal)
  std::vector<std::string> merges;  // ByteLevelBpe: "a b", in rank order
  // ByteLevelBpe pre-tokenizer, as GGUF tokenizer.ggml.pre names it:
  // "default"/"gpt2"/"gpt-2", "llama3"/"llama-bpe", "bloom".
  std::string pre_tokenizer = "default";
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t unk_id = -1;
  int32_t pad_id = -1;
  bool add_bos = false;
  bool add_eos = false;
  bool add_space_prefix = true;         // SentencePiece add_dummy_prefix
  bool remove_extra_whitespaces = false;  // SentencePiece normalizer flag
  bool byte_fallback = false;           // SentencePiece: unknown characters become <0xNN> tokens
  std::string chat_template;
  std::string chat_template_origin;  // where it came from, for messages ("m.gguf: tokenizer.chat_template")
};

class Tokenizer {
 public:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // Builds a tokenizer from GGUF-style vocabulary data.
  static Tokenizer from_vocab(const Vocab& vocab);
  // Parses an HF tokenizer.json document; `name` is used in error messages.
  static Tokenizer from_json(std::string_view json, const std::string& name = "tokenizer.json");
  // Parses the bytes of a SentencePiece tokenizer.model.
  static Vocab parse_sentencepiece(std::string_view bytes, const std::string& name = "tokenizer.model");
  // Parses the bytes of a llama2.c tokenizer.bin; `vocab_size` 0 reads to the end of the data.
  static Vocab parse_llama2c(std::string_view bytes, int32_t vocab_size = 0,
                             const std::string& name = "tokenizer.bin");
  // GPT-2 style vocab.json + merges.txt contents.
  static Vocab parse_gpt2(std::string_view vocab_json, std::string_view merges_txt,
                          const std::string& name = "vocab.json");

  // Token ids of `text`.  `add_special` adds BOS/EOS as the model's
  // post-processor or add_bos/add_eos settings say.
  std::vector<int32_t> encode(std::string_view text, bool add_special = true) const;
  // Text of `ids`, as HF's Tokenizer.decode.  Ids out of range throw.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;
  // The raw vocabulary entry for `id` (e.g. "▁Hello", "Ġworld", "<0x0A>").
  const std::string& token_to_piece(int32_t id) const;
  std::optional<int32_t> piece_to_id(std::string_view piece) const;

  int32_t bos_id() const;  // -1 when absent
  int32_t eos_id() const;
  int32_t pad_id() const;
  int32_t unk_id() const;
  bool is_special(int32_t id) const;
  // Control / special tokens that generation should stop on (EOS and the like).
  bool is_eog(int32_t id) const;
  size_t vocab_size() const;
  // The chat template from tokenizer_config.json or GGUF metadata, or "".
  const std::string& chat_template() const;
  // Where the chat template came from, to name it in errors:
  // "<dir>/tokenizer_config.json: chat_template", "m.gguf: tokenizer.chat_template";
  // "chat_template" when unknown.
  const std::string& chat_template_origin() const;

  const Impl& impl() const { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// Turns ids into text one token at a time, as HF's DecodeStream: it decodes a
// short window of recent ids and emits the new text after the window's prefix.
// Never emits a partial UTF-8 sequence: while the decoded text ends in U+FFFD
// (an incomplete character, e.g. the first <0xE6> of three byte-fallback
// tokens) nothing is emitted.  The concatenated output equals decode(all ids).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special = false);
  // The complete characters that `id` finishes (possibly "").
  std::string push(int32_t id);
  // Whatever is held back, with invalid or incomplete bytes as U+FFFD.
  std::string flush();
  void reset();

 private:
  const Tokenizer* tok_;
  bool skip_special_;
  std::vector<int32_t> ids_;  // window of recent ids
  std::string prefix_;        // decode of ids_[0, prefix_index_) already emitted
  size_t prefix_index_ = 0;
};

// Loads a tokenizer from a file or a model directory:
//   directory: tokenizer.json, else tokenizer.model, else vocab.json + merges.txt
//              (else tokenizer.bin / tok*.bin);
//   file: tokenizer.json (a JSON object), tokenizer.model (protobuf),
//         llama2.c tokenizer.bin, vocab.json (merges.txt beside it), or a GGUF
//         file (its embedded tokenizer.ggml.* vocabulary).
// tokenizer_config.json / generation_config.json / special_tokens_map.json
// beside it set BOS/EOS/PAD, add_bos_token/add_eos_token and chat_template.
Tokenizer load_tokenizer(const std::string& path);

}  // namespace runnel
