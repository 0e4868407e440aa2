// HF tokenizer.json, the model-directory loader and the config files beside it.
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "runnel/error.hpp"
#include "runnel/gguf.hpp"
#include "tokenizer/tokenizer_impl.hpp"

namespace runnel {

using namespace tok;
using json = nlohmann::json;

std::vector<BpeMerge> resolve_merge_strings(const VocabIndex& v, const std::vector<std::string>& merges,
                                            const std::string& where);
std::vector<BpeMerge> resolve_merge_pairs(const VocabIndex& v, const std::vector<std::pair<std::string, std::string>>& p,
                                          const std::string& where);

namespace {

const json& field(const json& obj, const char* key, const std::string& where) {
  check(obj.is_object(), where + ": expected an object");
  const auto it = obj.find(key);
  check(it != obj.end(), where + ": missing \"" + key + "\"");
  return *it;
}

std::string get_string(const json& obj, const char* key, const std::string& where) {
  const json& v = field(obj, key, where);
  check(v.is_string(), where + "." + key + ": expected a string");
  return v.get<std::string>();
}

std::string opt_string(const json& obj, const char* key, const std::string& dflt) {
  const auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : dflt;
}

bool opt_bool(const json& obj, const char* key, bool dflt, const std::string& where) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return dflt;
  check(it->is_boolean(), where + "." + key + ": expected true or false");
  return it->get<bool>();
}

size_t opt_size(const json& obj, const char* key, size_t dflt, const std::string& where) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return dflt;
  check(it->is_number_unsigned() || (it->is_number_integer() && it->get<int64_t>() >= 0),
        where + "." + key + ": expected a non-negative integer");
  return static_cast<size_t>(std::min<uint64_t>(it->get<uint64_t>(), 1u << 20));
}

// {"String": "x"} or {"Regex": "x"}.
std::pair<std::string, bool> get_pattern(const json& obj, const std::string& where) {
  const json& p = field(obj, "pattern", where);
  check(p.is_object(), where + ".pattern: expected {\"String\": ...} or {\"Regex\": ...}");
  if (p.contains("String") && p["String"].is_string()) return {p["String"].get<std::string>(), false};
  if (p.contains("Regex") && p["Regex"].is_string()) return {p["Regex"].get<std::string>(), true};
  throw Error(where + ".pattern: expected {\"String\": ...} or {\"Regex\": ...}");
}

std::string type_of(const json& obj, const std::string& where) { return get_string(obj, "type", where); }

NormalizerPtr parse_normalizer(const json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  const std::string t = type_of(j, where);
  if (t == "Sequence") {
    const json& items = field(j, "normalizers", where);
    check(items.is_array(), where + ".normalizers: expected an array");
    std::vector<NormalizerPtr> out;
    for (size_t i = 0; i < items.size(); ++i)
      if (auto n = parse_normalizer(items[i], where + ".normalizers[" + std::to_string(i) + "]")) out.push_back(std::move(n));
    return make_sequence_normalizer(std::move(out));
  }
  if (t == "NFC") return make_unicode_normalizer(NormalForm::NFC);
  if (t == "NFD") return make_unicode_normalizer(NormalForm::NFD);
  if (t == "NFKC") return make_unicode_normalizer(NormalForm::NFKC);
  if (t == "NFKD") return make_unicode_normalizer(NormalForm::NFKD);
  if (t == "Lowercase") return make_lowercase_normalizer();
  if (t == "Prepend") return make_prepend_normalizer(get_string(j, "prepend", where));
  if (t == "Replace") {
    const auto [pat, is_regex] = get_pattern(j, where);
    return make_replace_normalizer(pat, is_regex, get_string(j, "content", where));
  }
  if (t == "Strip")
    return make_strip_normalizer(opt_bool(j, "strip_left", true, where), opt_bool(j, "strip_right", true, where));
  throw Error(where + ": normalizer type \"" + t + "\" is not supported");
}

SplitBehavior parse_behavior(const json& j, const std::string& where, SplitBehavior dflt) {
  const auto it = j.find("behavior");
  if (it == j.end()) return dflt;
  check(it->is_string(), where + ".behavior: expected a string");
  const std::string b = it->get<std::string>();
  if (b == "Removed") return SplitBehavior::Removed;
  if (b == "Isolated") return SplitBehavior::Isolated;
  if (b == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::MergedWithNext;
  if (b == "Contiguous") return SplitBehavior::Contiguous;
  throw Error(where + ".behavior: unknown value \"" + b + "\"");
}

PrependScheme parse_scheme(const json& j, const std::string& where) {
  const auto it = j.find("prepend_scheme");
  if (it != j.end() && !it->is_null()) {
    check(it->is_string(), where + ".prepend_scheme: expected a string");
    const std::string s = it->get<std::string>();
    if (s == "first") return PrependScheme::First;
    if (s == "always") return PrependScheme::Always;
    if (s == "never") return PrependScheme::Never;
    throw Error(where + ".prepend_scheme: expected first, always or never, got \"" + s + "\"");
  }
  return opt_bool(j, "add_prefix_space", true, where) ? PrependScheme::Always : PrependScheme::Never;
}

std::string metaspace_replacement(const json& j, const std::string& where) {
  const std::string r = opt_string(j, "replacement", opt_string(j, "str_rep", "\xE2\x96\x81"));
  // One character, as in HF tokenizers (a longer one would multiply the text's size).
  size_t i = 0;
  if (!r.empty() && is_valid_utf8(r)) next_codepoint(r, i);
  check(!r.empty() && i == r.size(), where + ".replacement: must be one character, got \"" +
                                         (r.size() <= 16 ? r : r.substr(0, 16) + "...") + "\"");
  return r;
}

PreTokenizerPtr parse_pre(const json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  const std::string t = type_of(j, where);
  if (t == "Sequence") {
    const json& items = field(j, "pretokenizers", where);
    check(items.is_array(), where + ".pretokenizers: expected an array");
    std::vector<PreTokenizerPtr> out;
    for (size_t i = 0; i < items.size(); ++i)
      if (auto p = parse_pre(items[i], where + ".pretokenizers[" + std::to_string(i) + "]")) out.push_back(std::move(p));
    return make_sequence_pre(std::move(out));
  }
  if (t == "ByteLevel")
    return make_byte_level_pre(opt_bool(j, "add_prefix_space", true, where), opt_bool(j, "use_regex", true, where));
  if (t == "Split") {
    const auto [pat, is_regex] = get_pattern(j, where);
    const SplitBehavior behavior = parse_behavior(j, where, SplitBehavior::Isolated);
    const bool invert = opt_bool(j, "invert", false, where);
    try {
      return make_split_pre(pat, is_regex, behavior, invert);
    } catch (const Error& e) {  // the regex engine knows neither the file nor the field
      throw Error(where + ".pattern: " + e.what());
    }
  }
  if (t == "Metaspace")
    return make_metaspace_pre(metaspace_replacement(j, where), parse_scheme(j, where), opt_bool(j, "split", true, where));
  if (t == "Digits") return make_digits_pre(opt_bool(j, "individual_digits", false, where));
  if (t == "WhitespaceSplit") return make_whitespace_split_pre();
  if (t == "Whitespace") return make_whitespace_pre();
  if (t == "Punctuation") return make_punctuation_pre(parse_behavior(j, where, SplitBehavior::Isolated));
  throw Error(where + ": pre-tokenizer type \"" + t + "\" is not supported");
}

DecoderPtr parse_decoder(const json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  const std::string t = type_of(j, where);
  if (t == "Sequence") {
    const json& items = field(j, "decoders", where);
    check(items.is_array(), where + ".decoders: expected an array");
    std::vector<DecoderPtr> out;
    for (size_t i = 0; i < items.size(); ++i)
      if (auto d = parse_decoder(items[i], where + ".decoders[" + std::to_string(i) + "]")) out.push_back(std::move(d));
    return make_sequence_decoder(std::move(out));
  }
  if (t == "ByteLevel") return make_byte_level_decoder();
  if (t == "Metaspace") return make_metaspace_decoder(metaspace_replacement(j, where), parse_scheme(j, where));
  if (t == "ByteFallback") return make_byte_fallback_decoder();
  if (t == "Fuse") return make_fuse_decoder();
  if (t == "Strip") {
    const std::string c = get_string(j, "content", where);
    check(!c.empty(), where + ".content: must be one character");
    return make_strip_decoder(c, opt_size(j, "start", 0, where), opt_size(j, "stop", 0, where));
  }
  if (t == "Replace") {
    const auto [pat, is_regex] = get_pattern(j, where);
    return make_replace_decoder(pat, is_regex, get_string(j, "content", where));
  }
  if (t == "WordPiece") return make_wordpiece_decoder(opt_string(j, "prefix", "##"), opt_bool(j, "cleanup", true, where));
  if (t == "BPEDecoder") return make_bpe_suffix_decoder(opt_string(j, "suffix", "</w>"));
  throw Error(where + ": decoder type \"" + t + "\" is not supported");
}

int32_t special_id(const json& pair, const std::string& where) {
  check(pair.is_array() && pair.size() == 2 && pair[1].is_number_integer(), where + ": expected [\"token\", id]");
  const auto id = pair[1].get<int64_t>();
  check(id >= 0 && id < (1 << 30), where + ": id out of range");
  return static_cast<int32_t>(id);
}

void parse_post(const json& j, const std::string& where, std::optional<PostProcessor>& out) {
  if (j.is_null()) return;
  const std::string t = type_of(j, where);
  if (t == "Sequence") {
    const json& items = field(j, "processors", where);
    check(items.is_array(), where + ".processors: expected an array");
    for (size_t i = 0; i < items.size(); ++i) parse_post(items[i], where + ".processors[" + std::to_string(i) + "]", out);
    return;
  }
  if (t == "ByteLevel") return;  // offsets only
  if (t == "RobertaProcessing" || t == "BertProcessing") {
    PostProcessor p;
    p.prefix.push_back(special_id(field(j, "cls", where), where + ".cls"));
    p.suffix.push_back(special_id(field(j, "sep", where), where + ".sep"));
    out = std::move(p);
    return;
  }
  if (t == "TemplateProcessing") {
    const json& single = field(j, "single", where);
    check(single.is_array(), where + ".single: expected an array");
    const json& specials = j.contains("special_tokens") ? j["special_tokens"] : json::object();
    PostProcessor p;
    bool seen_seq = false;
    for (size_t i = 0; i < single.size(); ++i) {
      const std::string w = where + ".single[" + std::to_string(i) + "]";
      const json& item = single[i];
      check(item.is_object(), w + ": expected {\"SpecialToken\": ...} or {\"Sequence\": ...}");
      if (item.contains("Sequence")) {
        check(!seen_seq, w + ": more than one sequence in a single-sequence template");
        seen_seq = true;
        continue;
      }
      check(item.contains("SpecialToken"), w + ": expected {\"SpecialToken\": ...} or {\"Sequence\": ...}");
      const std::string name = get_string(item["SpecialToken"], "id", w + ".SpecialToken");
      check(specials.is_object() && specials.contains(name), w + ": special token \"" + name + "\" is not in special_tokens");
      const json& ids = field(specials[name], "ids", where + ".special_tokens." + name);
      check(ids.is_array(), where + ".special_tokens." + name + ".ids: expected an array");
      for (const auto& id : ids) {
        check(id.is_number_integer() && id.get<int64_t>() >= 0 && id.get<int64_t>() < (1 << 30),
              where + ".special_tokens." + name + ".ids: expected ids");
        (seen_seq ? p.suffix : p.prefix).push_back(id.get<int32_t>());
      }
    }
    out = std::move(p);
    return;
  }
  throw Error(where + ": post-processor type \"" + t + "\" is not supported");
}

void parse_model(const json& j, Tokenizer::Impl& m) {
  const std::string where = m.name + ": model";
  check(j.is_object(), where + ": expected an object");
  std::string t = opt_string(j, "type", "");
  const json& vocab = field(j, "vocab", where);
  if (t.empty()) t = j.contains("merges") ? "BPE" : vocab.is_array() ? "Unigram" : "WordLevel";
  if (t == "BPE") {
    check(vocab.is_object(), where + ".vocab: expected an object {token: id}");
    check(vocab.size() < (1u << 26), where + ".vocab: too many entries");
    int64_t max_id = -1;
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      check(it->is_number_integer(), where + ".vocab[\"" + it.key() + "\"]: expected an integer id");
      const auto id = it->get<int64_t>();
      check(id >= 0 && id < static_cast<int64_t>(vocab.size()) + (1 << 20),
            where + ".vocab[\"" + it.key() + "\"]: id " + std::to_string(id) + " out of range");
      max_id = std::max(max_id, id);
    }
    m.vocab.pieces.assign(static_cast<size_t>(max_id + 1), std::string());
    for (auto it = vocab.begin(); it != vocab.end(); ++it) m.vocab.pieces[it->get<size_t>()] = it.key();
    m.vocab.lookup.clear();
    for (auto it = vocab.begin(); it != vocab.end(); ++it) m.vocab.lookup[it.key()] = it->get<int32_t>();
    BpeOptions o;
    const std::string unk = opt_string(j, "unk_token", "");
    if (!unk.empty()) {
      o.unk_id = m.vocab.find(unk);
      check(o.unk_id >= 0, where + ".unk_token: \"" + unk + "\" is not in the vocab");
      m.unk = o.unk_id;
    }
    o.fuse_unk = opt_bool(j, "fuse_unk", false, where);
    o.byte_fallback = opt_bool(j, "byte_fallback", false, where);
    o.ignore_merges = opt_bool(j, "ignore_merges", false, where);
    o.continuing_subword_prefix = opt_string(j, "continuing_subword_prefix", "");
    o.end_of_word_suffix = opt_string(j, "end_of_word_suffix", "");
    check(!j.contains("dropout") || j["dropout"].is_null() || j["dropout"] == 0.0,
          where + ".dropout: BPE dropout is not supported");
    const json& merges = field(j, "merges", where);
    check(merges.is_array(), where + ".merges: expected an array");
    std::vector<std::pair<std::string, std::string>> pairs;
    pairs.reserve(merges.size());
    for (size_t i = 0; i < merges.size(); ++i) {
      const json& e = merges[i];
      const std::string w = where + ".merges[" + std::to_string(i) + "]";
      if (e.is_string()) {
        const std::string s = e.get<std::string>();
        const size_t sp = s.find(' ');
        check(sp != std::string::npos && sp > 0 && sp + 1 < s.size(), w + ": expected \"a b\" or [\"a\",\"b\"]");
        pairs.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      } else {
        check(e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string(), w + ": expected \"a b\" or [\"a\",\"b\"]");
        pairs.emplace_back(e[0].get<std::string>(), e[1].get<std::string>());
      }
    }
    // The model keeps a reference to m.vocab, which lives as long as the Impl.
    m.model = make_bpe_model(m.vocab, resolve_merge_pairs(m.vocab, pairs, where + ".merges"), std::move(o));
    return;
  }
  if (t == "Unigram") {
    check(vocab.is_array(), where + ".vocab: expected an array of [piece, score]");
    check(vocab.size() < (1u << 26), where + ".vocab: too many entries");
    std::vector<double> scores;
    for (size_t i = 0; i < vocab.size(); ++i) {
      const json& e = vocab[i];
      check(e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_number(),
            where + ".vocab[" + std::to_string(i) + "]: expected [piece, score]");
      m.vocab.pieces.push_back(e[0].get<std::string>());
      scores.push_back(e[1].get<double>());
    }
    for (size_t i = 0; i < m.vocab.pieces.size(); ++i) m.vocab.lookup.emplace(m.vocab.pieces[i], static_cast<int32_t>(i));
    int32_t unk = -1;
    if (j.contains("unk_id") && !j["unk_id"].is_null()) {
      check(j["unk_id"].is_number_integer() && j["unk_id"].get<int64_t>() >= 0 &&
                j["unk_id"].get<int64_t>() < static_cast<int64_t>(vocab.size()),
            where + ".unk_id: expected an id in the vocab");
      unk = j["unk_id"].get<int32_t>();
    }
    m.unk = unk;
    m.model = make_unigram_model(m.vocab, std::move(scores), unk, opt_bool(j, "byte_fallback", false, where));
    return;
  }
  throw Error(where + ".type: \"" + t + "\" is not supported (BPE, Unigram)");
}

int32_t find_first(const Tokenizer::Impl& m, std::initializer_list<const char*> names) {
  for (const char* n : names) {
    const int32_t id = m.piece_id(n);
    if (id >= 0) return id;
  }
  return -1;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  check(f.good(), path + ": cannot open");
  f.seekg(0, std::ios::end);
  const auto size = static_cast<std::streamoff>(f.tellg());
  check(size >= 0 && size < (static_cast<std::streamoff>(4) << 30), path + ": cannot read (size)");
  f.seekg(0);
  std::string data(static_cast<size_t>(size), '\0');
  f.read(data.data(), size);
  check(f.good() || f.eof(), path + ": read failed");
  return data;
}

}  // namespace

Tokenizer Tokenizer::from_json(std::string_view text, const std::string& name) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw Error(name + ": invalid JSON: " + e.what());
  }
  check(j.is_object(), name + ": expected a JSON object");
  auto m = std::make_unique<Impl>();
  m->name = name;
  try {
    parse_model(field(j, "model", name), *m);
    if (j.contains("added_tokens") && !j["added_tokens"].is_null()) {
      const json& at = j["added_tokens"];
      check(at.is_array(), name + ": added_tokens: expected an array");
      for (size_t i = 0; i < at.size(); ++i) {
        const std::string w = name + ": added_tokens[" + std::to_string(i) + "]";
        AddedToken a;
        a.content = get_string(at[i], "content", w);
        const json& id = field(at[i], "id", w);
        check(id.is_number_integer() && id.get<int64_t>() >= 0 &&
                  id.get<int64_t>() < static_cast<int64_t>(m->vocab.pieces.size()) + (1 << 20),
              w + ".id: expected an id below the vocab size + 2^20");
        a.id = id.get<int32_t>();
        a.special = opt_bool(at[i], "special", false, w);
        a.lstrip = opt_bool(at[i], "lstrip", false, w);
        a.rstrip = opt_bool(at[i], "rstrip", false, w);
        a.single_word = opt_bool(at[i], "single_word", false, w);
        a.normalized = opt_bool(at[i], "normalized", !a.special, w);
        m->added.push_back(std::move(a));
      }
    }
    m->normalizer = parse_normalizer(j.value("normalizer", json()), name + ": normalizer");
    m->pre_tokenizer = parse_pre(j.value("pre_tokenizer", json()), name + ": pre_tokenizer");
    m->decoder = parse_decoder(j.value("decoder", json()), name + ": decoder");
    parse_post(j.value("post_processor", json()), name + ": post_processor", m->post);
  } catch (const json::exception& e) {
    throw Error(name + ": " + e.what());
  }
  // finalize() rebuilds the lookup from pieces; keep the JSON's (duplicates, gaps).
  auto lookup = std::move(m->vocab.lookup);
  m->finalize();
  m->vocab.lookup = std::move(lookup);
  if (m->post && !m->post->prefix.empty()) m->bos = m->post->prefix.front();
  if (m->post && !m->post->suffix.empty()) m->eos = m->post->suffix.back();
  for (int32_t id : m->post ? m->post->prefix : std::vector<int32_t>{})
    check(static_cast<size_t>(id) < m->id_to_piece.size(), name + ": post_processor: id " + std::to_string(id) + " out of range");
  for (int32_t id : m->post ? m->post->suffix : std::vector<int32_t>{})
    check(static_cast<size_t>(id) < m->id_to_piece.size(), name + ": post_processor: id " + std::to_string(id) + " out of range");
  if (m->bos < 0) m->bos = find_first(*m, {"<s>", "<|begin_of_text|>", "<|startoftext|>", "<bos>"});
  if (m->eos < 0) m->eos = find_first(*m, {"</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>"});
  for (const char* t : {"</s>", "<|endoftext|>", "<|end_of_text|>", "<|eot_id|>", "<|im_end|>", "<|end|>", "<|eom_id|>",
                        "<end_of_turn>"}) {
    const int32_t id = m->piece_id(t);
    if (id >= 0 && m->special[static_cast<size_t>(id)]) m->eog.push_back(id);
  }
  m->pad = find_first(*m, {"<pad>"});
  return Tokenizer(std::move(m));
}

// ---- configs beside the tokenizer ----

namespace {

std::optional<json> read_json_if_present(const std::filesystem::path& p) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(p, ec)) return std::nullopt;
  try {
    return json::parse(read_file(p.string()));
  } catch (const json::exception& e) {
    throw Error(p.string() + ": invalid JSON: " + e.what());
  }
}

// "bos_token": "<s>" or {"content": "<s>", ...}.
std::optional<std::string> token_text(const json& cfg, const char* key) {
  if (!cfg.is_object() || !cfg.contains(key)) return std::nullopt;
  const json& v = cfg[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return std::nullopt;
}

}  // namespace

void apply_model_configs(Tokenizer::Impl& m, const std::string& dir, bool post_from_file) {
  namespace fs = std::filesystem;
  const auto tc = read_json_if_present(fs::path(dir) / "tokenizer_config.json");
  const auto stm = read_json_if_present(fs::path(dir) / "special_tokens_map.json");
  const auto gc = read_json_if_present(fs::path(dir) / "generation_config.json");
  auto set_token = [&](const char* key, int32_t& slot) {
    for (const auto* cfg : {&stm, &tc}) {  // tokenizer_config.json wins
      if (!*cfg) continue;
      if (const auto text = token_text(**cfg, key)) {
        const int32_t id = m.piece_id(*text);
        if (id >= 0) slot = id;
      }
    }
  };
  set_token("bos_token", m.bos);
  set_token("eos_token", m.eos);
  set_token("pad_token", m.pad);
  set_token("unk_token", m.unk);
  if (gc && gc->is_object()) {
    auto id_of = [&](const char* key) -> std::vector<int32_t> {
      std::vector<int32_t> ids;
      if (!gc->contains(key)) return ids;
      const json& v = (*gc)[key];
      if (v.is_number_integer()) ids.push_back(v.get<int32_t>());
      if (v.is_array())
        for (const auto& e : v)
          if (e.is_number_integer()) ids.push_back(e.get<int32_t>());
      return ids;
    };
    for (int32_t id : id_of("eos_token_id"))
      if (id >= 0 && static_cast<size_t>(id) < m.id_to_piece.size()) m.eog.push_back(id);
    const auto b = id_of("bos_token_id");
    if (m.bos < 0 && !b.empty() && b[0] >= 0 && static_cast<size_t>(b[0]) < m.id_to_piece.size()) m.bos = b[0];
  }
  if (m.eos >= 0) m.eog.push_back(m.eos);
  if (tc && tc->is_object()) {
    if (tc->contains("chat_template")) {
      const json& ct = (*tc)["chat_template"];
      const std::string file = (fs::path(dir) / "tokenizer_config.json").string();
      if (ct.is_string()) {
        m.chat_template = ct.get<std::string>();
        m.chat_template_origin = file + ": chat_template";
      } else if (ct.is_array()) {
        for (const auto& e : ct)
          if (e.is_object() && e.value("name", "") == "default" && e.contains("template") && e["template"].is_string()) {
            m.chat_template = e["template"].get<std::string>();
            m.chat_template_origin = file + ": chat_template \"default\"";
          }
      }
    }
    const bool has_bos_flag = tc->contains("add_bos_token") && (*tc)["add_bos_token"].is_boolean();
    const bool has_eos_flag = tc->contains("add_eos_token") && (*tc)["add_eos_token"].is_boolean();
    const std::string cls = tc->value("tokenizer_class", std::string());
    // transformers rebuilds the post-processor from these flags for LLaMA-style
    // tokenizers and uses them directly for slow-tokenizer files.
    const bool flags_rule = !post_from_file || cls.find("Llama") != std::string::npos ||
                            cls.find("Gemma") != std::string::npos;
    if ((has_bos_flag || has_eos_flag) && flags_rule && !m.llama2c) {
      const bool add_bos = has_bos_flag ? (*tc)["add_bos_token"].get<bool>() : (m.post && !m.post->prefix.empty());
      const bool add_eos = has_eos_flag ? (*tc)["add_eos_token"].get<bool>() : (m.post && !m.post->suffix.empty());
      PostProcessor pp;
      if (add_bos && m.bos >= 0) pp.prefix.push_back(m.bos);
      if (add_eos && m.eos >= 0) pp.suffix.push_back(m.eos);
      if (pp.prefix.empty() && pp.suffix.empty())
        m.post.reset();
      else
        m.post = std::move(pp);
    }
  }
}

Tokenizer load_tokenizer(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path p(path);
  auto finish = [](Tokenizer t, const fs::path& dir, bool post_from_file) {
    apply_model_configs(const_cast<Tokenizer::Impl&>(t.impl()), dir.string(), post_from_file);
    return t;
  };
  auto load_gpt2 = [&](const fs::path& vocab, const fs::path& merges) {
    Tokenizer t = Tokenizer::from_vocab(
        Tokenizer::parse_gpt2(read_file(vocab.string()), read_file(merges.string()), vocab.string()));
    const_cast<Tokenizer::Impl&>(t.impl()).name = vocab.string();
    return finish(std::move(t), vocab.parent_path(), false);
  };
  auto load_spm = [&](const fs::path& f) {
    Tokenizer t = Tokenizer::from_vocab(Tokenizer::parse_sentencepiece(read_file(f.string()), f.string()));
    const_cast<Tokenizer::Impl&>(t.impl()).name = f.string();
    return finish(std::move(t), f.parent_path(), false);
  };
  auto load_json = [&](const fs::path& f) {
    return finish(Tokenizer::from_json(read_file(f.string()), f.string()), f.parent_path(), true);
  };
  auto load_llama2c = [&](const fs::path& f) {
    Tokenizer t = Tokenizer::from_vocab(Tokenizer::parse_llama2c(read_file(f.string()), 0, f.string()));
    const_cast<Tokenizer::Impl&>(t.impl()).name = f.string();
    return t;
  };
  if (fs::is_directory(p, ec)) {
    if (fs::is_regular_file(p / "tokenizer.json", ec)) return load_json(p / "tokenizer.json");
    if (fs::is_regular_file(p / "tokenizer.model", ec)) return load_spm(p / "tokenizer.model");
    if (fs::is_regular_file(p / "vocab.json", ec) && fs::is_regular_file(p / "merges.txt", ec))
      return load_gpt2(p / "vocab.json", p / "merges.txt");
    if (fs::is_regular_file(p / "encoder.json", ec) && fs::is_regular_file(p / "vocab.bpe", ec))
      return load_gpt2(p / "encoder.json", p / "vocab.bpe");
    if (fs::is_regular_file(p / "tokenizer.bin", ec)) return load_llama2c(p / "tokenizer.bin");
    throw Error(path + ": no tokenizer.json, tokenizer.model, vocab.json + merges.txt or tokenizer.bin in this directory");
  }
  check(fs::is_regular_file(p, ec), path + ": no such file or directory");
  const std::string fname = p.filename().string();
  check(fname != "merges.txt" && fname != "vocab.bpe",
        path + ": a merges file alone is not a tokenizer; pass the vocab.json beside it or the folder");
  if (fname == "vocab.json" || fname == "encoder.json") {
    const fs::path merges = p.parent_path() / (fname == "vocab.json" ? "merges.txt" : "vocab.bpe");
    check(fs::is_regular_file(merges, ec), path + ": " + merges.filename().string() + " is missing beside it");
    return load_gpt2(p, merges);
  }
  std::string head;
  {
    std::ifstream f(path, std::ios::binary);
    check(f.good(), path + ": cannot open");
    head.resize(64);
    f.read(head.data(), 64);
    head.resize(static_cast<size_t>(f.gcount()));
  }
  if (head.rfind("GGUF", 0) == 0 || p.extension() == ".gguf") {
    // The embedded vocabulary (tokenizer.ggml.*); File::open checks the magic and every offset.
    const gguf::File f = gguf::File::open(path);
    std::optional<Vocab> vocab = gguf::read_vocab(f);
    check(vocab.has_value(),
          path + ": GGUF file carries no vocabulary (no tokenizer.ggml.model / tokenizer.ggml.tokens)");
    Tokenizer t = Tokenizer::from_vocab(*vocab);
    const_cast<Tokenizer::Impl&>(t.impl()).name = path;
    return t;
  }
  const size_t first = head.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && head[first] == '{') return load_json(p);
  if (p.extension() == ".model") return load_spm(p);
  if (p.extension() == ".bin") return load_llama2c(p);
  if (!head.empty() && head[0] == 0x0A) return load_spm(p);  // protobuf field 1, length-delimited
  return load_llama2c(p);
}

}  // namespace runnel
