#pragma once
// Tokenizer::Impl: the assembled pipeline shared by every loader.
#include <array>
#include <string>
#include <vector>

#include "runnel/tokenizer.hpp"
#include "tokenizer/pipeline.hpp"

namespace runnel {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
  bool normalized = false;
};

struct Tokenizer::Impl {
  std::string name;                       // file name for messages
  tok::VocabIndex vocab;                  // model vocabulary (ids < vocab.pieces.size())
  std::vector<std::string> id_to_piece;   // every id, added tokens included
  std::vector<uint8_t> special;           // [n_ids] 1 for special added tokens
  std::unordered_map<std::string, int32_t> added_lookup;  // added token content -> id
  std::vector<AddedToken> added;

  tok::NormalizerPtr normalizer;
  tok::PreTokenizerPtr pre_tokenizer;
  tok::ModelPtr model;
  tok::DecoderPtr decoder;               // null: pieces joined with ' '
  std::optional<tok::PostProcessor> post;  // used when add_special

  bool sanitize_input = true;  // false for llama2.c, which works on raw bytes
  bool llama2c = false;
  int32_t bos = -1, eos = -1, pad = -1, unk = -1;
  std::vector<int32_t> eog;  // end-of-generation ids
  std::string chat_template;
  std::string chat_template_origin;  // file and field, for messages

  // Matching of added tokens: a trie over their bytes.
  struct TrieNode {
    std::unordered_map<unsigned char, int32_t> next;
    int32_t token = -1;  // index into `added`
  };
  std::vector<TrieNode> trie;
  std::array<bool, 256> first_byte{};

  void finalize();  // builds id_to_piece, special, trie; call after filling the rest
  int32_t piece_id(std::string_view piece) const;
  // Normalizes, pre-tokenizes and tokenizes one segment between added tokens;
  // the normalized text takes its bytes from `budget` (tok::TextTooLong past it).
  void encode_text(std::string_view text, bool at_start, std::vector<int32_t>& out, size_t& budget) const;
};

// Sets bos/eos/pad and add-bos/eos behaviour from the JSON files next to a
// tokenizer (tokenizer_config.json, generation_config.json, special_tokens_map.json).
void apply_model_configs(Tokenizer::Impl& impl, const std::string& dir, bool has_post_processor_from_file);

}  // namespace runnel
