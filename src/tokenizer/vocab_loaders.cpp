// Tokenizers built from a Vocab (GGUF-style data) and the readers that
// produce one: SentencePiece tokenizer.model, llama2.c tokenizer.bin and
// GPT-2 vocab.json + merges.txt.
#include <cstring>
#include <limits>

#include <nlohmann/json.hpp>

#include "runnel/error.hpp"
#include "tokenizer/tokenizer_impl.hpp"

namespace runnel {

using namespace tok;

namespace {

const char* const kSpace = "\xE2\x96\x81";  // U+2581

std::vector<BpeMerge> resolve_merges(const VocabIndex& v, const std::vector<std::pair<std::string, std::string>>& pairs,
                                     const std::string& where) {
  std::vector<BpeMerge> out;
  out.reserve(pairs.size());
  for (size_t i = 0; i < pairs.size(); ++i) {
    const auto& [a, b] = pairs[i];
    const int32_t l = v.find(a), r = v.find(b), m = v.find(a + b);
    if (l < 0 || r < 0 || m < 0)
      throw Error(where + "[" + std::to_string(i) + "]: merge \"" + a + " " + b + "\" uses a piece that is not in the vocab");
    out.push_back({l, r, m});
  }
  return out;
}

std::pair<std::string, std::string> split_merge(const std::string& s, const std::string& where, size_t i) {
  const size_t sp = s.find(' ');
  if (sp == std::string::npos || sp == 0 || sp + 1 >= s.size())
    throw Error(where + "[" + std::to_string(i) + "]: expected \"a b\", got \"" + s + "\"");
  return {s.substr(0, sp), s.substr(sp + 1)};
}

void add_eog_candidates(Tokenizer::Impl& m) {
  for (const char* t : {"</s>", "<|endoftext|>", "<|end_of_text|>", "<|eot_id|>", "<|im_end|>", "<|end|>", "<|eom_id|>",
                        "<end_of_turn>"}) {
    const int32_t id = m.piece_id(t);
    if (id >= 0 && static_cast<size_t>(id) < m.special.size() && m.special[static_cast<size_t>(id)])
      m.eog.push_back(id);
  }
}

}  // namespace

std::vector<BpeMerge> resolve_merge_strings(const VocabIndex& v, const std::vector<std::string>& merges,
                                            const std::string& where) {
  std::vector<std::pair<std::string, std::string>> pairs;
  pairs.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) pairs.push_back(split_merge(merges[i], where, i));
  return resolve_merges(v, pairs, where);
}

std::vector<BpeMerge> resolve_merge_pairs(const VocabIndex& v, const std::vector<std::pair<std::string, std::string>>& p,
                                          const std::string& where) {
  return resolve_merges(v, p, where);
}

Tokenizer Tokenizer::from_vocab(const Vocab& v) {
  auto m = std::make_unique<Impl>();
  m->name = "vocab";
  const size_t n = v.tokens.size();
  check(n > 0, "vocab: tokenizer.ggml.tokens is empty");
  check(n < (1u << 30), "vocab: tokenizer.ggml.tokens has too many entries");
  check(v.scores.empty() || v.scores.size() == n,
        "vocab: tokenizer.ggml.scores has " + std::to_string(v.scores.size()) + " entries, expected " + std::to_string(n));
  check(v.types.empty() || v.types.size() == n, "vocab: tokenizer.ggml.token_type has " +
                                                    std::to_string(v.types.size()) + " entries, expected " +
                                                    std::to_string(n));
  auto valid_id = [&](int32_t id, const char* what) {
    check(id >= -1 && id < static_cast<int64_t>(n),
          std::string("vocab: tokenizer.ggml.") + what + " = " + std::to_string(id) + " is out of range");
  };
  valid_id(v.bos_id, "bos_token_id");
  valid_id(v.eos_id, "eos_token_id");
  valid_id(v.unk_id, "unknown_token_id");
  valid_id(v.pad_id, "padding_token_id");
  m->vocab.pieces = v.tokens;
  auto type_of = [&](size_t i) { return v.types.empty() ? TokenType::Normal : v.types[i]; };
  std::vector<float> scores = v.scores;
  if (scores.empty()) scores.assign(n, 0.0f);
  m->bos = v.bos_id;
  m->eos = v.eos_id;
  m->unk = v.unk_id;
  m->pad = v.pad_id;
  m->chat_template = v.chat_template;
  m->chat_template_origin = v.chat_template_origin;
  bool has_bytes = false;
  for (size_t i = 0; i < n; ++i) {
    const TokenType t = type_of(i);
    has_bytes = has_bytes || t == TokenType::Byte;
    if (t == TokenType::Unknown && m->unk < 0) m->unk = static_cast<int32_t>(i);
    if (v.model == VocabModel::Llama2c) continue;
    if (t == TokenType::Control || t == TokenType::Unknown || t == TokenType::UserDefined) {
      AddedToken a;
      a.content = v.tokens[i];
      a.id = static_cast<int32_t>(i);
      a.special = t != TokenType::UserDefined;
      if (!a.content.empty()) m->added.push_back(std::move(a));
    }
  }
  m->finalize();  // builds the vocab lookup the models use
  switch (v.model) {
    case VocabModel::SentencePieceBpe:
    case VocabModel::SentencePieceUnigram: {
      std::vector<NormalizerPtr> norms;
      if (v.remove_extra_whitespaces) norms.push_back(make_collapse_spaces_normalizer());
      if (v.add_space_prefix) norms.push_back(make_prepend_normalizer(kSpace));
      norms.push_back(make_replace_normalizer(" ", false, kSpace));
      m->normalizer = make_sequence_normalizer(std::move(norms));
      std::vector<uint8_t> mergeable(n);
      for (size_t i = 0; i < n; ++i) {
        const TokenType t = type_of(i);
        mergeable[i] = t == TokenType::Normal || t == TokenType::UserDefined || t == TokenType::Unused ||
                       t == TokenType::Undefined;
      }
      const bool fallback = v.byte_fallback || has_bytes;
      if (v.model == VocabModel::SentencePieceBpe) {
        m->model = make_spm_bpe_model(m->vocab, scores, std::move(mergeable), m->unk, fallback);
      } else {
        // Pieces that SentencePiece never produces from text get no path in the lattice.
        VocabIndex& vi = m->vocab;
        std::vector<double> ds(scores.begin(), scores.end());
        for (size_t i = 0; i < n; ++i)
          if (!mergeable[i]) vi.lookup.erase(vi.pieces[i]);
        m->model = make_unigram_model(vi, std::move(ds), m->unk, fallback);
      }
      std::vector<DecoderPtr> decs;
      decs.push_back(make_replace_decoder(kSpace, false, " "));
      decs.push_back(make_byte_fallback_decoder());
      decs.push_back(make_fuse_decoder());
      if (v.add_space_prefix) decs.push_back(make_strip_decoder(" ", 1, 0));
      m->decoder = make_sequence_decoder(std::move(decs));
      break;
    }
    case VocabModel::ByteLevelBpe: {
      const auto merges = resolve_merge_strings(m->vocab, v.merges, "vocab: tokenizer.ggml.merges");
      m->model = make_bpe_model(m->vocab, merges, BpeOptions{});
      const std::string& pre = v.pre_tokenizer;
      if (pre.empty() || pre == "default" || pre == "gpt2" || pre == "gpt-2" || pre == "opt") {
        m->pre_tokenizer = make_byte_level_pre(false, true);
      } else if (pre == "llama3" || pre == "llama-bpe" || pre == "llama-v3") {
        std::vector<PreTokenizerPtr> p;
        p.push_back(make_split_pre(kLlama3Pattern, true, SplitBehavior::Isolated, false));
        p.push_back(make_byte_level_pre(false, false));
        m->pre_tokenizer = make_sequence_pre(std::move(p));
      } else if (pre == "smollm") {
        // SmolLM / SmolLM2: every digit is its own word, then GPT-2's byte-level split
        // (Hugging Face: Sequence[Digits(individual_digits), ByteLevel(use_regex)]).
        std::vector<PreTokenizerPtr> p;
        p.push_back(make_digits_pre(true));
        p.push_back(make_byte_level_pre(false, true));
        m->pre_tokenizer = make_sequence_pre(std::move(p));
      } else if (pre == "bloom") {
        std::vector<PreTokenizerPtr> p;
        p.push_back(make_split_pre(kBloomPattern, true, SplitBehavior::Isolated, false));
        p.push_back(make_byte_level_pre(false, false));
        m->pre_tokenizer = make_sequence_pre(std::move(p));
      } else {
        throw Error("vocab: tokenizer.ggml.pre = \"" + pre + "\" is not supported (known: default, gpt2, llama3, llama-bpe, smollm, bloom)");
      }
      m->decoder = make_byte_level_decoder();
      break;
    }
    case VocabModel::Llama2c:
      m->model = make_llama2c_model(m->vocab, scores);
      m->sanitize_input = false;
      m->llama2c = true;
      for (int32_t id : {m->unk, m->bos, m->eos})
        if (id >= 0) m->special[static_cast<size_t>(id)] = 1;
      break;
  }
  if (v.add_bos || v.add_eos) {
    PostProcessor pp;
    if (v.add_bos) {
      check(m->bos >= 0, "vocab: add_bos is set but there is no BOS token");
      pp.prefix.push_back(m->bos);
    }
    if (v.add_eos) {
      check(m->eos >= 0, "vocab: add_eos is set but there is no EOS token");
      pp.suffix.push_back(m->eos);
    }
    m->post = std::move(pp);
  }
  add_eog_candidates(*m);
  return Tokenizer(std::move(m));
}

// ---- SentencePiece protobuf ----

namespace {

class ProtoReader {
 public:
  ProtoReader(std::string_view data, std::string where) : d_(data), where_(std::move(where)) {}
  bool done() const { return pos_ >= d_.size(); }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      check(pos_ < d_.size(), where_ + ": truncated varint at byte " + std::to_string(pos_));
      const auto b = static_cast<unsigned char>(d_[pos_++]);
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    throw Error(where_ + ": varint longer than 10 bytes at byte " + std::to_string(pos_));
  }
  std::string_view bytes() {
    const uint64_t len = varint();
    check(len <= d_.size() - pos_, where_ + ": length " + std::to_string(len) + " at byte " + std::to_string(pos_) +
                                       " runs past the end (" + std::to_string(d_.size() - pos_) + " bytes left)");
    const auto out = d_.substr(pos_, static_cast<size_t>(len));
    pos_ += static_cast<size_t>(len);
    return out;
  }
  float fixed32_float() {
    check(d_.size() - pos_ >= 4, where_ + ": truncated fixed32 at byte " + std::to_string(pos_));
    float f;
    std::memcpy(&f, d_.data() + pos_, 4);
    pos_ += 4;
    return f;
  }
  void skip(uint32_t wire) {
    switch (wire) {
      case 0: varint(); break;
      case 1:
        check(d_.size() - pos_ >= 8, where_ + ": truncated fixed64");
        pos_ += 8;
        break;
      case 2: bytes(); break;
      case 5:
        check(d_.size() - pos_ >= 4, where_ + ": truncated fixed32");
        pos_ += 4;
        break;
      default: throw Error(where_ + ": unsupported wire type " + std::to_string(wire) + " at byte " + std::to_string(pos_));
    }
  }
  const std::string& where() const { return where_; }

 private:
  std::string_view d_;
  size_t pos_ = 0;
  std::string where_;
};

}  // namespace

Vocab Tokenizer::parse_sentencepiece(std::string_view data, const std::string& name) {
  Vocab v;
  v.add_bos = true;  // LlamaTokenizer's default; tokenizer_config.json may change it
  int64_t model_type = 1;  // UNIGRAM
  int64_t unk = 0, bos = 1, eos = 2, pad = -1;
  bool add_dummy_prefix = true, remove_extra = true;
  std::string norm_name;
  bool has_charsmap = false;
  ProtoReader top(data, name);
  while (!top.done()) {
    const uint64_t key = top.varint();
    const auto field = static_cast<uint32_t>(key >> 3), wire = static_cast<uint32_t>(key & 7);
    if (field == 1 && wire == 2) {  // SentencePiece pieces
      ProtoReader p(top.bytes(), name + ": pieces[" + std::to_string(v.tokens.size()) + "]");
      std::string piece;
      float score = 0;
      int64_t type = 1;
      while (!p.done()) {
        const uint64_t k = p.varint();
        const auto f = static_cast<uint32_t>(k >> 3), w = static_cast<uint32_t>(k & 7);
        if (f == 1 && w == 2) piece = std::string(p.bytes());
        else if (f == 2 && w == 5) score = p.fixed32_float();
        else if (f == 3 && w == 0) type = static_cast<int64_t>(p.varint());
        else p.skip(w);
      }
      check(type >= 1 && type <= 6, p.where() + ".type: expected 1..6, got " + std::to_string(type));
      check(v.tokens.size() < (1u << 26), name + ": too many pieces");
      v.tokens.push_back(std::move(piece));
      v.scores.push_back(score);
      v.types.push_back(static_cast<TokenType>(type));
    } else if (field == 2 && wire == 2) {  // TrainerSpec
      ProtoReader t(top.bytes(), name + ": trainer_spec");
      while (!t.done()) {
        const uint64_t k = t.varint();
        const auto f = static_cast<uint32_t>(k >> 3), w = static_cast<uint32_t>(k & 7);
        if (w != 0) {
          t.skip(w);
          continue;
        }
        const auto val = static_cast<int64_t>(static_cast<int32_t>(t.varint()));
        switch (f) {
          case 3: model_type = val; break;
          case 35: v.byte_fallback = val != 0; break;
          case 40: unk = val; break;
          case 41: bos = val; break;
          case 42: eos = val; break;
          case 43: pad = val; break;
          default: break;
        }
      }
    } else if (field == 3 && wire == 2) {  // NormalizerSpec
      ProtoReader ns(top.bytes(), name + ": normalizer_spec");
      while (!ns.done()) {
        const uint64_t k = ns.varint();
        const auto f = static_cast<uint32_t>(k >> 3), w = static_cast<uint32_t>(k & 7);
        if (f == 1 && w == 2) norm_name = std::string(ns.bytes());
        else if (f == 2 && w == 2) has_charsmap = !ns.bytes().empty();
        else if (f == 3 && w == 0) add_dummy_prefix = ns.varint() != 0;
        else if (f == 4 && w == 0) remove_extra = ns.varint() != 0;
        else ns.skip(w);
      }
    } else {
      top.skip(wire);
    }
  }
  check(!v.tokens.empty(), name + ": no pieces (not a SentencePiece model?)");
  if (model_type == 2) v.model = VocabModel::SentencePieceBpe;
  else if (model_type == 1) v.model = VocabModel::SentencePieceUnigram;
  else throw Error(name + ": trainer_spec.model_type = " + std::to_string(model_type) + " is not supported (BPE=2, UNIGRAM=1)");
  if (has_charsmap && norm_name != "identity")
    throw Error(name + ": normalizer_spec.name = \"" + norm_name +
                "\" uses a precompiled character map, which is not supported (only \"identity\")");
  const auto n = static_cast<int64_t>(v.tokens.size());
  auto id = [&](int64_t x) { return x >= 0 && x < n ? static_cast<int32_t>(x) : -1; };
  v.unk_id = id(unk);
  v.bos_id = id(bos);
  v.eos_id = id(eos);
  v.pad_id = id(pad);
  if (v.bos_id < 0) v.add_bos = false;
  v.add_space_prefix = add_dummy_prefix;
  v.remove_extra_whitespaces = remove_extra;
  return v;
}

// ---- llama2.c tokenizer.bin ----

Vocab Tokenizer::parse_llama2c(std::string_view data, int32_t vocab_size, const std::string& name) {
  Vocab v;
  v.model = VocabModel::Llama2c;
  check(data.size() >= 4, name + ": too short for max_token_length (" + std::to_string(data.size()) + " bytes)");
  int32_t max_len = 0;
  std::memcpy(&max_len, data.data(), 4);
  check(max_len > 0 && max_len < (1 << 20), name + ": max_token_length = " + std::to_string(max_len) + " is not plausible");
  size_t pos = 4;
  while (pos < data.size() && (vocab_size <= 0 || static_cast<int32_t>(v.tokens.size()) < vocab_size)) {
    const std::string where = name + ": token " + std::to_string(v.tokens.size());
    check(data.size() - pos >= 8, where + ": truncated score/length");
    float score = 0;
    int32_t len = 0;
    std::memcpy(&score, data.data() + pos, 4);
    std::memcpy(&len, data.data() + pos + 4, 4);
    pos += 8;
    check(len >= 0 && len <= max_len, where + ": length " + std::to_string(len) + " outside [0, max_token_length=" +
                                          std::to_string(max_len) + "]");
    check(data.size() - pos >= static_cast<size_t>(len), where + ": " + std::to_string(len) + " bytes run past the end");
    v.tokens.emplace_back(data.substr(pos, static_cast<size_t>(len)));
    v.scores.push_back(score);
    pos += static_cast<size_t>(len);
  }
  check(vocab_size <= 0 || static_cast<int32_t>(v.tokens.size()) == vocab_size,
        name + ": expected " + std::to_string(vocab_size) + " tokens, found " + std::to_string(v.tokens.size()));
  check(v.tokens.size() >= 3, name + ": needs at least 3 tokens (<unk>, <s>, </s>)");
  v.unk_id = 0;
  v.bos_id = 1;
  v.eos_id = 2;
  v.add_bos = true;
  v.types.assign(v.tokens.size(), TokenType::Normal);
  v.types[0] = TokenType::Unknown;
  v.types[1] = v.types[2] = TokenType::Control;
  for (size_t i = 3; i < v.tokens.size() && i < 259; ++i)
    if (v.tokens[i].size() == 6 && v.tokens[i].rfind("<0x", 0) == 0) v.types[i] = TokenType::Byte;
  return v;
}

// ---- GPT-2 vocab.json + merges.txt ----

Vocab Tokenizer::parse_gpt2(std::string_view vocab_json, std::string_view merges_txt, const std::string& name) {
  Vocab v;
  v.model = VocabModel::ByteLevelBpe;
  v.pre_tokenizer = "gpt2";
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(vocab_json);
  } catch (const nlohmann::json::exception& e) {
    throw Error(name + ": invalid JSON: " + e.what());
  }
  check(j.is_object(), name + ": expected an object {token: id}");
  check(j.size() < (1u << 26), name + ": too many entries");
  v.tokens.resize(j.size());
  std::vector<uint8_t> seen(j.size(), 0);
  for (auto it = j.begin(); it != j.end(); ++it) {
    check(it.value().is_number_integer(), name + ": \"" + it.key() + "\": expected an integer id");
    const auto id = it.value().get<int64_t>();
    check(id >= 0 && id < static_cast<int64_t>(j.size()),
          name + ": \"" + it.key() + "\": id " + std::to_string(id) + " is outside [0, " + std::to_string(j.size()) + ")");
    check(!seen[static_cast<size_t>(id)], name + ": id " + std::to_string(id) + " is used twice");
    seen[static_cast<size_t>(id)] = 1;
    v.tokens[static_cast<size_t>(id)] = it.key();
  }
  size_t pos = 0, line_no = 0;
  while (pos < merges_txt.size()) {
    size_t end = merges_txt.find('\n', pos);
    if (end == std::string_view::npos) end = merges_txt.size();
    std::string line(merges_txt.substr(pos, end - pos));
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (line_no == 1 && line.rfind("#version", 0) == 0)) continue;
    v.merges.push_back(std::move(line));
  }
  v.types.assign(v.tokens.size(), TokenType::Normal);
  auto find = [&](const char* t) -> int32_t {
    for (size_t i = 0; i < v.tokens.size(); ++i)
      if (v.tokens[i] == t) return static_cast<int32_t>(i);
    return -1;
  };
  const int32_t eot = find("<|endoftext|>"), s_end = find("</s>");
  // Special tokens as HF's slow-tokenizer defaults register them; only these are
  // matched inside text (OPT's "<s>" and "<|endoftext|>" are ordinary pieces).
  auto mark = [&](int32_t id) {
    if (id >= 0) v.types[static_cast<size_t>(id)] = TokenType::Control;
  };
  if (s_end >= 0) {
    // OPT numbering: HF's OPT tokenizer uses </s> as BOS and EOS and prepends it.
    v.bos_id = v.eos_id = s_end;
    v.pad_id = find("<pad>");
    v.unk_id = find("<unk>");
    v.add_bos = true;
    mark(s_end);
    mark(v.pad_id);
    mark(v.unk_id);
  } else if (eot >= 0) {
    v.bos_id = v.eos_id = eot;  // GPT-2: <|endoftext|> is BOS, EOS and UNK, added by nobody
    mark(eot);
  }
  return v;
}

}  // namespace runnel
