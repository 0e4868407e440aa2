// Quantization: an opened checkpoint rewritten as GGUF with its matrix
// weights in another type.  Every source tensor goes through f32 (the traits
// table's reference conversions), so any loadable checkpoint — f32, f16,
// bf16 or already quantized — can be written in any type this build has a
// row for.  The file layout itself is write_checkpoint's.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "model/arch.hpp"
#include "runnel/error.hpp"
#include "runnel/gguf.hpp"
#include "runnel/loader.hpp"
#include "runnel/tokenizer.hpp"
#include "gguf/names.hpp"

namespace runnel::gguf {

namespace {

namespace fs = std::filesystem;
using model::Slot;

// Type names the flag accepts; the ones this build lacks are refused as such.
constexpr std::string_view kKnownTypes[] = {
    "f32",    "f16",    "bf16",   "q8_0",   "q4_0",   "q4_1",   "q5_0",   "q5_1",
    "q2_k",   "q3_k",   "q4_k",   "q5_k",   "q6_k",   "q3_k_s", "q3_k_m", "q3_k_l",
    "q4_k_s", "q4_k_m", "q5_k_s", "q5_k_m", "q2_k_s"};

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The slot and layer of a checkpoint tensor name (the descriptor's names,
// with or without its optional prefixes).
bool find_slot(const model::ArchDescriptor& arch, const std::string& name, Slot* slot,
               int64_t* layer) {
  for (const model::TensorName& n : arch.names) {
    std::vector<std::string> patterns = {n.name};
    for (const char* p : arch.optional_prefixes)
      if (std::string_view(n.name).starts_with(p)) patterns.push_back(n.name + std::strlen(p));
    for (const std::string& pat : patterns) {
      if (!model::name_matches(pat, name)) continue;
      *slot = n.slot;
      *layer = 0;
      if (const size_t p = pat.find("{}"); p != std::string::npos) {
        const size_t tail = pat.size() - p - 2;
        const std::string digits = name.substr(p, name.size() - p - tail);
        if (digits.size() > 9) return false;  // no model has that many layers
        *layer = std::stoll(digits);
      }
      return true;
    }
  }
  return false;
}

// The type a matrix of rows of `cols` elements is written in: `want`, or,
// when its blocks do not divide the row, the type llama.cpp's quantizer falls
// back to (tensor_type_fallback: the K-quants to the 32-element type of about
// their size, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, Q2_K / Q3_K -> Q4_0),
// else f16.
DType fit_type(DType want, int64_t cols) {
  if (cols % traits(want).block_size == 0) return want;
  std::optional<DType> next;
  switch (want) {
    case DType::Q4_K: next = DType::Q5_0; break;
    case DType::Q5_K: next = DType::Q5_1; break;
    case DType::Q6_K: next = DType::Q8_0; break;
    default: break;
  }
  if (next && cols % traits(*next).block_size == 0) return *next;
  return DType::F16;
}

// llama.cpp's use_more_bits: the first and last eighth of the layers and
// every third one between them.
bool use_more_bits(int64_t layer, int64_t n_layers) {
  return layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2;
}

// The type llama.cpp's Q4_K_M (Q5_K_M) gives a matrix (llama_tensor_get_type
// for the tensors of llama, bloom and opt models, which have no experts): Q6_K
// for the LM head (for a tied head, the token embeddings; Q8_0 when its rows
// are not whole super-blocks), for attn_v (bloom: attn_qkv) and ffn_down of
// the layers use_more_bits picks; `base` (Q4_K; Q5_K) for the rest.
DType k_m_type(DType base, Slot slot, int64_t layer, int64_t n_layers, int64_t cols, bool tied) {
  if (slot == Slot::LmHead || (tied && slot == Slot::TokenEmbedding))
    return cols % traits(DType::Q4_K).block_size != 0 ? DType::Q8_0 : DType::Q6_K;
  if ((slot == Slot::VWeight || slot == Slot::QkvWeight || slot == Slot::DownWeight) &&
      use_more_bits(layer, n_layers))
    return DType::Q6_K;
  return base;
}

DType mix_base(QuantizeMix m) { return m == QuantizeMix::Q5_K_M ? DType::Q5_K : DType::Q4_K; }

// general.file_type (llama.cpp's llama_ftype) of a file written with
// `options`, or -1 when llama.cpp has none for it (pure Q4_K).
int64_t file_type_of(const QuantizeOptions& options) {
  if (options.mix == QuantizeMix::Q4_K_M) return kFileTypeQ4_K_M;
  if (options.mix == QuantizeMix::Q5_K_M) return kFileTypeQ5_K_M;
  switch (options.type) {
    case DType::F32: return 0;
    case DType::F16: return 1;
    case DType::Q4_0: return 2;
    case DType::Q4_1: return 3;
    case DType::Q8_0: return 7;
    case DType::Q5_0: return 8;
    case DType::Q5_1: return 9;
    case DType::Q6_K: return 18;
    case DType::BF16: return 32;
    default: return -1;
  }
}

// Converts `src` to `dst_type` row by row through f32, on a few threads.
void convert_rows(const Tensor& src, DType dst_type, void* dst, const std::string& name) {
  const DTypeTraits& st = traits(src.dtype());
  const DTypeTraits& dt = traits(dst_type);
  if (!st.is_float || !st.to_float)
    throw Error(fmt::format("tensor \"{}\": dtype {} cannot be converted", name, st.name));
  if (!dt.from_float) throw Error(fmt::format("dtype {} has no conversion from f32", dt.name));
  const int64_t cols = src.ndim() == 0 ? 1 : src.dim(-1);
  const int64_t rows = cols == 0 ? 0 : src.numel() / cols;
  const size_t in_row = row_bytes(src.dtype(), cols), out_row = row_bytes(dst_type, cols);
  const auto* in = static_cast<const uint8_t*>(src.data());
  auto* out = static_cast<uint8_t*>(dst);
  const int64_t n_threads = std::clamp<int64_t>(
      std::min<int64_t>(int64_t(std::thread::hardware_concurrency()), rows / 64), 1, 16);
  auto work = [&](int64_t r0, int64_t r1) {
    std::vector<float> tmp(static_cast<size_t>(cols));
    for (int64_t r = r0; r < r1; ++r) {
      st.to_float(in + size_t(r) * in_row, tmp.data(), cols);
      dt.from_float(tmp.data(), out + size_t(r) * out_row, cols);
    }
  };
  if (n_threads == 1) return work(0, rows);
  std::vector<std::thread> pool;
  const int64_t chunk = (rows + n_threads - 1) / n_threads;
  for (int64_t t = 0; t < n_threads; ++t) {
    const int64_t r0 = t * chunk, r1 = std::min(rows, r0 + chunk);
    if (r0 < r1) pool.emplace_back(work, r0, r1);
  }
  for (std::thread& th : pool) th.join();
}

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw Error(p.string() + ": cannot open");
  return std::string(std::istreambuf_iterator<char>(f), {});
}

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

// GGUF's byte-level pre-tokenizer names for the pre_tokenizer objects of
// tokenizer.json that runnel's vocab loader knows; "" for the others.
std::string pre_name(const nlohmann::json& pre) {
  if (!pre.is_object()) return "";
  const std::string type = pre.value("type", "");
  if (type == "ByteLevel") return pre.value("use_regex", true) ? "gpt2" : "";
  if (type != "Sequence" || !pre.contains("pretokenizers")) return "";
  const auto& seq = pre["pretokenizers"];
  if (seq.is_array() && seq.size() == 2 && seq[0].is_object() && seq[1].is_object() &&
      seq[0].value("type", "") == "Digits" &&
      seq[0].value("individual_digits", false) && seq[1].value("type", "") == "ByteLevel" &&
      seq[1].value("use_regex", true))
    return "smollm";
  return "";
}

// A llama2.c tokenizer.bin is SentencePiece's vocabulary with U+2581 spelt as
// a space: written back as a "llama" vocabulary, as llama.cpp's llama2.c
// converter does.
Vocab sentencepiece_from_llama2c(Vocab v) {
  v.model = VocabModel::SentencePieceBpe;
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    if (!v.types.empty() && v.types[i] != TokenType::Normal) continue;
    std::string& t = v.tokens[i];
    std::string out;
    for (char ch : t) out += ch == ' ' ? std::string("\xE2\x96\x81") : std::string(1, ch);
    t = std::move(out);
  }
  v.add_space_prefix = true;
  v.byte_fallback = true;
  return v;
}

// A Vocab from a tokenizer.json whose model is byte-level BPE.
std::optional<Vocab> vocab_from_json_doc(const fs::path& file, const nlohmann::json& j,
                                         std::string* why) {
  if (!j.is_object()) throw Error(file.string() + ": expected a JSON object");
  const auto& m = j.value("model", nlohmann::json::object());
  if (!m.is_object()) throw Error(file.string() + ": model: expected an object");
  if (m.value("type", "") != "BPE" || !m.contains("vocab") || !m["vocab"].is_object()) {
    *why = "its model is not BPE";
    return std::nullopt;
  }
  Vocab v;
  v.model = VocabModel::ByteLevelBpe;
  v.pre_tokenizer = pre_name(j.value("pre_tokenizer", nlohmann::json()));
  if (v.pre_tokenizer.empty()) {
    *why = "its pre_tokenizer has no GGUF name runnel knows (gpt2, smollm)";
    return std::nullopt;
  }
  v.add_space_prefix = false;
  int64_t n = 0;
  for (const auto& [piece, id] : m["vocab"].items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= (1 << 24))
      throw Error(file.string() + ": model.vocab[\"" + piece + "\"]: expected a token id");
    n = std::max(n, id.get<int64_t>() + 1);
  }
  const auto& added = j.value("added_tokens", nlohmann::json::array());
  for (const auto& a : added)
    if (a.is_object() && a.contains("id") && a["id"].is_number_integer() && a["id"].get<int64_t>() >= 0 &&
        a["id"].get<int64_t>() < (1 << 24))
      n = std::max(n, a["id"].get<int64_t>() + 1);
  v.tokens.assign(size_t(n), "");
  v.types.assign(size_t(n), TokenType::Normal);
  for (const auto& [piece, id] : m["vocab"].items()) v.tokens[size_t(id.get<int64_t>())] = piece;
  for (const auto& a : added) {
    if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() ||
        !a.contains("content") || !a["content"].is_string())
      continue;
    const auto id = size_t(a["id"].get<int64_t>());
    if (id >= v.tokens.size()) continue;
    v.tokens[id] = a["content"].get<std::string>();
    v.types[id] = a.value("special", false) ? TokenType::Control : TokenType::UserDefined;
  }
  for (size_t i = 0; i < v.tokens.size(); ++i)
    if (v.tokens[i].empty()) {
      v.tokens[i] = fmt::format("[PAD{}]", i);
      v.types[i] = TokenType::Unused;
    }
  const auto& merges = m.value("merges", nlohmann::json::array());
  for (size_t i = 0; i < merges.size(); ++i) {
    const auto& mg = merges[i];
    if (mg.is_string()) {
      v.merges.push_back(mg.get<std::string>());
    } else if (mg.is_array() && mg.size() == 2 && mg[0].is_string() && mg[1].is_string()) {
      v.merges.push_back(mg[0].get<std::string>() + " " + mg[1].get<std::string>());
    } else {
      throw Error(fmt::format("{}: model.merges[{}]: expected \"a b\" or [\"a\",\"b\"]",
                              file.string(), i));
    }
  }
  // BOS / EOS as the tokenizer_config.json beside it names them.
  const fs::path cfg = file.parent_path() / "tokenizer_config.json";
  if (is_file(cfg)) {
    try {
      const auto c = nlohmann::json::parse(read_text(cfg));
      auto id_of = [&](const char* key) -> int32_t {
        if (!c.contains(key)) return -1;
        const auto& t = c[key];
        const std::string s = t.is_string()   ? t.get<std::string>()
                              : t.is_object() ? t.value("content", "")
                                              : "";
        for (size_t i = 0; i < v.tokens.size(); ++i)
          if (!s.empty() && v.tokens[i] == s) return int32_t(i);
        return -1;
      };
      v.bos_id = id_of("bos_token");
      v.eos_id = id_of("eos_token");
      v.unk_id = id_of("unk_token");
      v.pad_id = id_of("pad_token");
      v.add_bos = c.value("add_bos_token", false) && v.bos_id >= 0;
      if (c.contains("chat_template") && c["chat_template"].is_string())
        v.chat_template = c["chat_template"].get<std::string>();
    } catch (const nlohmann::json::exception& e) {
      throw Error(cfg.string() + ": not valid JSON: " + e.what());
    }
  }
  return v;
}

std::optional<Vocab> vocab_from_json(const fs::path& file, std::string* why) {
  try {
    return vocab_from_json_doc(file, nlohmann::json::parse(read_text(file)), why);
  } catch (const nlohmann::json::exception& e) {
    throw Error(file.string() + ": " + e.what());
  }
}

// The vocabulary of a tokenizer file or folder; nullopt with `why` when it
// cannot be written as tokenizer.ggml.*.
std::optional<Vocab> vocab_from_path(const std::string& path, std::string* why) {
  fs::path p(path);
  std::error_code ec;
  if (fs::is_directory(p, ec)) {
    for (const char* name : {"tokenizer.model", "tokenizer.json", "vocab.json", "tokenizer.bin"})
      if (is_file(p / name)) return vocab_from_path((p / name).string(), why);
    throw Error(path + ": no tokenizer.model, tokenizer.json, vocab.json or tokenizer.bin");
  }
  if (!is_file(p)) throw Error(path + ": no such tokenizer file");
  const std::string name = p.filename().string();
  char head[4] = {};
  {
    std::ifstream f(p, std::ios::binary);
    if (!f) throw Error(path + ": cannot open");
    f.read(head, 4);
  }
  if (std::memcmp(head, "GGUF", 4) == 0) {
    std::optional<Vocab> v = read_vocab(File::open(path));
    if (!v) *why = "the GGUF file has no tokenizer.ggml.* vocabulary";
    return v;
  }
  if (name.ends_with(".model"))
    return Tokenizer::parse_sentencepiece(read_text(p), path);
  if (name.ends_with(".json") && name != "vocab.json") return vocab_from_json(p, why);
  if (name == "vocab.json") {
    const fs::path merges = p.parent_path() / "merges.txt";
    if (!is_file(merges)) throw Error(path + ": no merges.txt beside it");
    return Tokenizer::parse_gpt2(read_text(p), read_text(merges), path);
  }
  return sentencepiece_from_llama2c(Tokenizer::parse_llama2c(read_text(p), 0, path));
}

uint64_t file_size(const std::string& path) {
  std::error_code ec;
  const auto n = fs::file_size(path, ec);
  return ec ? 0 : uint64_t(n);
}

}  // namespace

namespace {

// A dtype this build can write: conversions both ways and a GGUF type.
bool writable(const DTypeTraits& t) {
  if (!t.is_float || !t.from_float || !t.to_float) return false;
  try {
    ggml_type_of(t.dtype);
  } catch (const Error&) {
    return false;
  }
  return true;
}

// The types llama.cpp's Q4_K_M and Q5_K_M write (with the fallbacks of rows
// that are not whole super-blocks).
constexpr DType kQ4_K_M_Types[] = {DType::Q4_K, DType::Q6_K, DType::Q5_0, DType::Q8_0};
constexpr DType kQ5_K_M_Types[] = {DType::Q5_K, DType::Q6_K, DType::Q5_1, DType::Q8_0};

template <size_t N>
bool have_all(const DType (&types)[N]) {
  for (DType d : types)
    if (!writable(traits(d))) return false;
  return true;
}
bool have_q4_k_m() { return have_all(kQ4_K_M_Types); }
bool have_q5_k_m() { return have_all(kQ5_K_M_Types); }
bool have_mix(QuantizeMix m) {
  return m == QuantizeMix::None || (m == QuantizeMix::Q4_K_M ? have_q4_k_m() : have_q5_k_m());
}
const char* mix_name(QuantizeMix m) { return m == QuantizeMix::Q5_K_M ? "q5_k_m" : "q4_k_m"; }

// The --type names this build accepts, for messages.
std::string available_types() {
  std::string out;
  for (int i = 0; i < kNumDTypes; ++i) {
    const DTypeTraits& t = traits(static_cast<DType>(i));
    if (writable(t)) out += fmt::format("{}{}", out.empty() ? "" : ", ", t.name);
  }
  if (have_q4_k_m()) out += ", q4_k_m";
  if (have_q5_k_m()) out += ", q5_k_m";
  return out;
}

}  // namespace

DType quantize_type(std::string_view name, std::string_view what) {
  const std::string want = lower(name);
  for (int i = 0; i < kNumDTypes; ++i) {
    const DTypeTraits& t = traits(static_cast<DType>(i));
    if (writable(t) && t.name == want) return t.dtype;
  }
  if ((want == "q4_k_m" && have_q4_k_m()) || (want == "q5_k_m" && have_q5_k_m()))
    throw Error(fmt::format("{}: {} is a mix of types, not one type", what, want));
  if (std::find(std::begin(kKnownTypes), std::end(kKnownTypes), want) != std::end(kKnownTypes))
    throw Error(fmt::format("{}: {} is not supported in this build (supported: {})", what, want,
                            available_types()));
  throw Error(fmt::format("{}: unknown type \"{}\" (expected one of {})", what, name,
                          available_types()));
}

QuantizeOptions quantize_type_or_mix(std::string_view name, std::string_view what) {
  QuantizeOptions o;
  if (lower(name) == "q4_k_m" && have_q4_k_m()) {
    o.type = DType::Q4_K;
    o.mix = QuantizeMix::Q4_K_M;
    return o;
  }
  if (lower(name) == "q5_k_m" && have_q5_k_m()) {
    o.type = DType::Q5_K;
    o.mix = QuantizeMix::Q5_K_M;
    return o;
  }
  o.type = quantize_type(name, what);
  return o;
}

std::string quantize_type_name(const QuantizeOptions& options) {
  if (options.mix != QuantizeMix::None) return mix_name(options.mix);
  return std::string(dtype_name(options.type));
}

QuantizeReport quantize_checkpoint(const Checkpoint& ck, const std::string& out_path,
                                   const QuantizeOptions& options) {
  const ModelConfig& c = ck.config;
  const model::ArchDescriptor* arch = model::find_arch(c.family);
  if (!arch) throw Error(ck.path + ": no descriptor for family " + c.family);
  // Notes are given once the file is written: a refused model gets its error alone.
  std::vector<std::string> notes;
  auto note = [&](const std::string& s) { notes.push_back(s); };
  const DTypeTraits& want = traits(options.type);
  if (!want.is_float || !want.from_float)
    throw Error(fmt::format("quantize: {} is not a weight type", want.name));
  ggml_type_of(options.type);  // throws for dtypes GGUF cannot store
  if (!have_mix(options.mix))
    throw Error(fmt::format("quantize: {} is not supported in this build", mix_name(options.mix)));

  QuantizeReport report;

  // The vocabulary to embed.
  std::optional<Vocab> vocab;
  std::string why;
  if (!options.tokenizer_path.empty()) {
    vocab = vocab_from_path(options.tokenizer_path, &why);
    if (!vocab)
      throw Error(fmt::format("{}: cannot embed this tokenizer: {}", options.tokenizer_path, why));
    report.vocab_source = options.tokenizer_path;
  } else if (ck.vocab) {
    vocab = *ck.vocab;
    report.vocab_source = ck.path + " (embedded)";
  } else if (!ck.tokenizer_path.empty()) {
    vocab = vocab_from_path(ck.tokenizer_path, &why);
    if (vocab)
      report.vocab_source = ck.tokenizer_path;
    else
      note(fmt::format("the tokenizer at {} is not embedded: {}", ck.tokenizer_path, why));
  } else {
    note("no tokenizer found beside the model: the GGUF file has no vocabulary (pass --tokenizer)");
  }
  if (vocab) {
    const auto n = int64_t(vocab->tokens.size());
    if (n > c.vocab_size) {
      note(fmt::format("the tokenizer has {} tokens but the model's embeddings {} rows: it is "
                       "not embedded",
                       n, c.vocab_size));
      vocab.reset();
      report.vocab_source.clear();
    } else if (n < c.vocab_size) {
      // As llama.cpp's converter does: pad to the embedding rows.
      for (int64_t i = n; i < c.vocab_size; ++i) {
        vocab->tokens.push_back(fmt::format("[PAD{}]", i));
        if (!vocab->scores.empty()) vocab->scores.push_back(0.0f);
        if (!vocab->types.empty()) vocab->types.push_back(TokenType::Unused);
      }
    }
  }

  // The converted weights.
  struct Fallback {
    DType from, to;
    std::string name;
  };
  std::vector<Fallback> fallbacks;  // matrices whose rows are not whole blocks of their type
  int64_t n_matrices = 0;
  Checkpoint out;
  out.path = ck.path;
  out.format = ck.format;
  out.config = c;
  for (const auto& [name, e] : ck.weights.entries()) {
    const Tensor& t = e.tensor;
    Slot slot = Slot::kCount;
    int64_t layer = 0;
    const bool known = find_slot(*arch, name, &slot, &layer);
    if (known && slot == Slot::LmHead && c.lm_head == LmHead::Tied) continue;
    bool ignored = false;
    for (const char* pat : arch->ignored) ignored = ignored || model::name_matches(pat, name);
    if (ignored) continue;
    if (!known) {  // write_checkpoint names it in its error
      out.weights.add(name, t, e.source);
      continue;
    }
    if (!t.is_contiguous())
      throw Error(fmt::format("{}: tensor \"{}\" is not contiguous", e.source, name));
    const std::string gname = tensor_name(slot, layer);
    const bool matrix = t.ndim() == 2 && slot != Slot::PositionEmbedding;
    DType target = DType::F32;
    if (matrix) {
      ++n_matrices;
      const DType want_here =
          options.mix != QuantizeMix::None
              ? k_m_type(mix_base(options.mix), slot, layer, c.n_layers, t.dim(-1), c.lm_head == LmHead::Tied)
              : options.type;
      target = fit_type(want_here, t.dim(-1));
      if (target != want_here) fallbacks.push_back({want_here, target, gname.empty() ? name : gname});
    }
    QuantizedTensor q;
    q.name = gname.empty() ? name : gname;
    q.from = std::string(dtype_name(t.dtype()));
    q.to = ggml_type_of(target);
    q.shape.assign(t.shape().begin(), t.shape().begin() + t.ndim());
    q.bytes_in = t.nbytes();
    if (t.dtype() == target) {
      out.weights.add(name, t, e.source);
      q.bytes_out = t.nbytes();
    } else {
      const int64_t cols = t.ndim() == 0 ? 1 : t.dim(-1);
      const size_t bytes = row_bytes(target, cols) * size_t(t.numel() / std::max<int64_t>(cols, 1));
      auto buf = std::make_shared<HostBuffer>(std::max<size_t>(bytes, 1));
      convert_rows(t, target, buf->data(), name);
      out.weights.add(name, Tensor::view(buf->data(), target, t.shape().data(), t.ndim()),
                      e.source);
      out.weights.keep_alive(buf);
      q.bytes_out = bytes;
    }
    report.weight_bytes_in += q.bytes_in;
    report.weight_bytes_out += q.bytes_out;
    report.tensors.push_back(std::move(q));
  }
  // One note for the matrices whose rows are not whole blocks of their type:
  // how many, each fallback (with its count when there are several), and the
  // first few names.
  if (!fallbacks.empty()) {
    std::map<std::pair<DType, DType>, int64_t> pairs;
    int64_t block = 0;
    for (const Fallback& f : fallbacks) {
      ++pairs[{f.from, f.to}];
      block = std::max(block, traits(f.from).block_size);
    }
    std::string how;
    for (const auto& [p, n] : pairs)
      how += fmt::format("{}{}{} -> {}", how.empty() ? "" : ", ",
                         pairs.size() > 1 ? fmt::format("{} ", n) : std::string(),
                         dtype_name(p.first), dtype_name(p.second));
    std::string list;
    for (size_t i = 0; i < fallbacks.size() && i < 4; ++i)
      list += (i ? ", " : "") + fallbacks[i].name;
    if (fallbacks.size() > 4) list += fmt::format(" and {} more", fallbacks.size() - 4);
    note(fmt::format("{} of {} matrices have rows not a multiple of {}: {} ({})", fallbacks.size(),
                     n_matrices, block, how, list));
  }

  // Written beside the destination and renamed: a failed run leaves no partial file.
  const std::string part = out_path + ".part";
  try {
    write_checkpoint(out, part, vocab ? &*vocab : nullptr, file_type_of(options));
  } catch (...) {
    std::error_code ec;
    fs::remove(part, ec);
    throw;
  }
  std::error_code ec;
  fs::rename(part, out_path, ec);
  if (ec) {
    fs::remove(part, ec);
    throw Error(out_path + ": cannot write: " + ec.message());
  }
  report.file_bytes = file_size(out_path);
  if (options.note)
    for (const std::string& s : notes) options.note(s);
  return report;
}

}  // namespace runnel::gguf
