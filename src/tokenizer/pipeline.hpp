#pragma once
// The stages of an HF-style tokenizer: normalizer, pre-tokenizer, model,
// decoder and post-processor.  Each mirrors the HF `tokenizers` component of
// the same name.
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/regex.hpp"
#include "tokenizer/unicode.hpp"

namespace runnel::tok {

// ---- bounds on rewritten text ---------------------------------------------

// Normalizers and decoders may lengthen text (Replace, Prepend, NFKC), and a
// chain of them can grow it exponentially (40 Replace a -> aa).  Their output
// is bounded by max_rewritten_bytes(n) for an input of n bytes; past it they
// throw TextTooLong, which the tokenizer reports naming its file.
size_t max_rewritten_bytes(size_t n);  // 32 n + 64 KiB
struct TextTooLong : std::length_error {
  using std::length_error::length_error;
};

// ---- normalizers -----------------------------------------------------------

struct Normalizer {
  virtual ~Normalizer() = default;
  // Throws TextTooLong if s would grow past max_bytes.
  virtual void normalize(std::string& s, size_t max_bytes) const = 0;
};
using NormalizerPtr = std::unique_ptr<Normalizer>;

NormalizerPtr make_unicode_normalizer(NormalForm form);
NormalizerPtr make_lowercase_normalizer();
NormalizerPtr make_prepend_normalizer(std::string prefix);
// Replaces every match of a literal (is_regex false) or regex by `content`.
NormalizerPtr make_replace_normalizer(const std::string& pattern, bool is_regex, std::string content);
NormalizerPtr make_strip_normalizer(bool left, bool right);
// SentencePiece remove_extra_whitespaces: trims ' ' at both ends, collapses runs of ' '.
NormalizerPtr make_collapse_spaces_normalizer();
NormalizerPtr make_sequence_normalizer(std::vector<NormalizerPtr> items);

// ---- pre-tokenizers --------------------------------------------------------

struct Split {
  std::string text;
  bool at_start = false;  // begins at offset 0 of the input (Metaspace prepend_scheme "first")
};

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

struct PreTokenizer {
  virtual ~PreTokenizer() = default;
  virtual void apply(std::vector<Split>& splits) const = 0;
};
using PreTokenizerPtr = std::unique_ptr<PreTokenizer>;

enum class PrependScheme { First, Always, Never };

extern const char* const kGpt2Pattern;
extern const char* const kLlama3Pattern;
extern const char* const kBloomPattern;

PreTokenizerPtr make_byte_level_pre(bool add_prefix_space, bool use_regex);
PreTokenizerPtr make_split_pre(const std::string& pattern, bool is_regex, SplitBehavior behavior, bool invert);
PreTokenizerPtr make_metaspace_pre(std::string replacement, PrependScheme scheme, bool split);
PreTokenizerPtr make_digits_pre(bool individual);
PreTokenizerPtr make_whitespace_split_pre();
PreTokenizerPtr make_whitespace_pre();
PreTokenizerPtr make_punctuation_pre(SplitBehavior behavior);
PreTokenizerPtr make_sequence_pre(std::vector<PreTokenizerPtr> items);

// ---- models ----------------------------------------------------------------

// Vocabulary lookup shared by the models.
struct VocabIndex {
  std::vector<std::string> pieces;                  // [n_model_vocab]
  std::unordered_map<std::string, int32_t> lookup;  // piece -> id
  int32_t find(std::string_view piece) const {
    const auto it = lookup.find(std::string(piece));
    return it == lookup.end() ? -1 : it->second;
  }
};

struct Model {
  virtual ~Model() = default;
  // Appends the ids of one pre-tokenized word.
  virtual void tokenize(std::string_view word, std::vector<int32_t>& out) const = 0;
};
using ModelPtr = std::unique_ptr<Model>;

struct BpeOptions {
  int32_t unk_id = -1;
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;
  std::string continuing_subword_prefix;
  std::string end_of_word_suffix;
};
// HF BPE: merges[i] = (left id, right id, merged id) with rank i.
struct BpeMerge {
  int32_t left, right, merged;
};
ModelPtr make_bpe_model(const VocabIndex& vocab, const std::vector<BpeMerge>& merges, BpeOptions options);
// SentencePiece BPE: the pair whose merged piece has the highest score goes
// first (leftmost on ties).  `mergeable[id]` says whether a piece may be the
// result of a merge.
ModelPtr make_spm_bpe_model(const VocabIndex& vocab, std::vector<float> scores, std::vector<uint8_t> mergeable,
                            int32_t unk_id, bool byte_fallback);
ModelPtr make_unigram_model(const VocabIndex& vocab, std::vector<double> scores, int32_t unk_id,
                            bool byte_fallback);
// llama2.c run.c `encode`: code points looked up, unknown bytes as byte + 3,
// then the best-scoring adjacent pair is merged until none is in the vocab.
ModelPtr make_llama2c_model(const VocabIndex& vocab, std::vector<float> scores);

// ---- decoders --------------------------------------------------------------

struct Decoder {
  virtual ~Decoder() = default;
  // Throws TextTooLong if the tokens would grow past max_bytes in all.
  virtual void decode_chain(std::vector<std::string>& tokens, size_t max_bytes) const = 0;
};
using DecoderPtr = std::unique_ptr<Decoder>;

DecoderPtr make_byte_level_decoder();
DecoderPtr make_metaspace_decoder(std::string replacement, PrependScheme scheme);
DecoderPtr make_byte_fallback_decoder();
DecoderPtr make_fuse_decoder();
DecoderPtr make_strip_decoder(std::string content, size_t start, size_t stop);
DecoderPtr make_replace_decoder(const std::string& pattern, bool is_regex, std::string content);
DecoderPtr make_wordpiece_decoder(std::string prefix, bool cleanup);
DecoderPtr make_bpe_suffix_decoder(std::string suffix);
DecoderPtr make_sequence_decoder(std::vector<DecoderPtr> items);

// ---- post-processors -------------------------------------------------------

// Single-sequence template: ids before and after the encoded text.
struct PostProcessor {
  std::vector<int32_t> prefix;
  std::vector<int32_t> suffix;
};

}  // namespace runnel::tok
