// Checkpoint loading: config.json spellings and validation, safetensors
// (single and sharded) bounds checks, llama2.c headers, pickle refusal, and
// the binder's reports of missing / extra / wrong-shape tensors.  Every error
// must name the file and the key or tensor.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "runnel/error.hpp"
#include "runnel/loader.hpp"
#include "runnel/model.hpp"
#include "runnel/tokenizer.hpp"
#include "test_util.hpp"

namespace runnel {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// ---------------------------------------------------------------------------
// helpers

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void spit(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary);
  out.write(bytes.data(), std::streamsize(bytes.size()));
}

// The message of the runnel::Error `fn` throws ("" and a test failure if none).
template <class F>
std::string error_of(F&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a runnel::Error";
  return "";
}

#define EXPECT_ERROR_HAS(stmt, ...)                                        \
  do {                                                                     \
    const std::string msg_ = error_of([&] { stmt; });                      \
    for (const char* part_ : {__VA_ARGS__})                                \
      EXPECT_NE(msg_.find(part_), std::string::npos)                       \
          << "error message \"" << msg_ << "\" lacks \"" << part_ << "\""; \
  } while (0)

class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = fs::temp_directory_path() /
            ("runnel-loader-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& s) const { return path_ / s; }

 private:
  fs::path path_;
};

struct StTensor {
  std::string name;
  std::string dtype;  // "F32", ...
  std::vector<int64_t> shape;
  std::string bytes;
};

std::string safetensors_bytes(const std::vector<StTensor>& ts) {
  json h = json::object();
  uint64_t off = 0;
  std::string data;
  for (const StTensor& t : ts) {
    h[t.name] = {
        {"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {off, off + t.bytes.size()}}};
    off += t.bytes.size();
    data += t.bytes;
  }
  h["__metadata__"] = {{"format", "pt"}};
  std::string hs = h.dump();
  while (hs.size() % 8) hs += ' ';
  std::string out(8, '\0');
  const uint64_t n = hs.size();
  std::memcpy(out.data(), &n, 8);
  return out + hs + data;
}

std::vector<StTensor> read_safetensors(const fs::path& p) {
  const std::string bytes = slurp(p);
  const auto* base = reinterpret_cast<const uint8_t*>(bytes.data());
  std::vector<StTensor> out;
  const char* names[] = {"F32", "F16", "BF16"};
  for (const TensorInfo& t : parse_safetensors_header(base, bytes.size(), p.string()))
    out.push_back({t.name, names[int(t.dtype)], t.shape, bytes.substr(t.offset, t.nbytes)});
  return out;
}

fs::path fixture(const std::string& variant) {
  return fs::path(RUNNEL_TEST_DATA_DIR) / "models" / variant;
}

// A copy of a fixture folder whose tensors went through `edit`.
template <class F>
void copy_fixture(const std::string& variant, const fs::path& dst, F&& edit) {
  fs::create_directories(dst);
  fs::copy_file(fixture(variant) / "config.json", dst / "config.json",
                fs::copy_options::overwrite_existing);
  std::vector<StTensor> ts = read_safetensors(fixture(variant) / "model.safetensors");
  edit(ts);
  spit(dst / "model.safetensors", safetensors_bytes(ts));
}

StTensor* find(std::vector<StTensor>& ts, const std::string& name) {
  for (auto& t : ts)
    if (t.name == name) return &t;
  return nullptr;
}

std::vector<float> prompt_logits(const std::string& path, std::span<const int32_t> ids,
                                 std::optional<DType> dtype = {}) {
  LoadOptions o;
  o.threads = 1;
  o.dtype = dtype;
  auto m = Model::load(path, o);
  Sequence s(*m);
  return s.prefill(ids, Logits::All);
}

std::unique_ptr<Model> open_model(const std::string& path) {
  LoadOptions o;
  o.threads = 1;
  return Model::load(path, o);
}

const int32_t kPrompt[] = {5, 17, 99, 3, 64, 1};

// ---------------------------------------------------------------------------
// config.json

const char* kLlamaConfig = R"({
  "model_type": "llama", "vocab_size": 128, "hidden_size": 32, "num_hidden_layers": 2,
  "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 64,
  "max_position_embeddings": 128, "rms_norm_eps": 1e-5, "tie_word_embeddings": false
})";

json llama_config() { return json::parse(kLlamaConfig); }

TEST(LoaderConfig, LlamaDefaultsFollowTransformers) {
  const ModelConfig c = parse_config(kLlamaConfig, "config.json");
  EXPECT_EQ(c.family, "llama");
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_EQ(c.norm, NormKind::RmsNorm);
  EXPECT_EQ(c.position, PositionKind::Rope);
  EXPECT_EQ(c.rope_style, RopeStyle::NeoX);
  EXPECT_FLOAT_EQ(c.rope.theta, 10000.0f);
  EXPECT_EQ(c.rope.scaling, RopeScaling::None);
  EXPECT_EQ(c.mlp, MlpKind::Gated);
  EXPECT_EQ(c.activation, Activation::Silu);
  EXPECT_EQ(c.qkv_bias, Bias::None);
  EXPECT_EQ(c.lm_head, LmHead::Separate);
  EXPECT_FLOAT_EQ(c.attn_scale, 1.0f / std::sqrt(8.0f));
}

TEST(LoaderConfig, MissingOrUnknownModelType) {
  json j = llama_config();
  j.erase("model_type");
  EXPECT_ERROR_HAS(parse_config(j.dump(), "dir/config.json"), "dir/config.json", "model_type");
  j["model_type"] = "gpt2";
  EXPECT_ERROR_HAS(parse_config(j.dump(), "dir/config.json"), "dir/config.json",
                   "unknown model type \"gpt2\"", "opt, llama, bloom");
}

TEST(LoaderConfig, MissingKeysAreNamed) {
  for (const char* key : {"hidden_size", "vocab_size", "num_hidden_layers", "intermediate_size",
                          "num_attention_heads"}) {
    json j = llama_config();
    j.erase(key);
    EXPECT_ERROR_HAS(parse_config(j.dump(), "m/config.json"), "m/config.json", key);
  }
  json opt = json::parse(slurp(fixture("opt-prenorm") / "config.json"));
  opt.erase("ffn_dim");
  EXPECT_ERROR_HAS(parse_config(opt.dump(), "o/config.json"), "o/config.json", "ffn_dim");
}

TEST(LoaderConfig, InconsistentHeadCounts) {
  json j = llama_config();
  j["num_key_value_heads"] = 3;
  EXPECT_ERROR_HAS(parse_config(j.dump(), "c.json"), "c.json", "head counts", "4", "3");
  j = llama_config();
  j["num_attention_heads"] = 5;  // 32 is not a multiple of 5 and no head_dim is given
  j["num_key_value_heads"] = 5;
  EXPECT_ERROR_HAS(parse_config(j.dump(), "c.json"), "c.json", "num_attention_heads");
  json b = json::parse(
      R"({"model_type": "bloom", "vocab_size": 10, "n_embed": 30, "n_layer": 1, "n_head": 4})");
  EXPECT_ERROR_HAS(parse_config(b.dump(), "b.json"), "b.json", "n_head", "head counts");
}

TEST(LoaderConfig, WrongTypesAndValues) {
  json j = llama_config();
  j["hidden_size"] = "32";
  EXPECT_ERROR_HAS(parse_config(j.dump(), "c.json"), "c.json", "hidden_size", "integer");
  j = llama_config();
  j["hidden_size"] = -32;
  EXPECT_ERROR_HAS(parse_config(j.dump(), "c.json"), "c.json", "hidden_size");
  j = llama_config();
  j["num_hidden_layers"] = 1 << 30;
  EXPECT_ERROR_HAS(parse_config(j.dump(), "c.json"), "c.json", "layers", "out of range");
  j = llama_config();
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 2.0}};
  EXPECT_ERROR_HAS(parse_config(j.dump(), "c.json"), "c.json", "rope_scaling.rope_type", "yarn");
  j = llama_config();
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
  EXPECT_ERROR_HAS(parse_config(j.dump(), "c.json"), "c.json", "low_freq_factor");
  j = llama_config();
  j["hidden_act"] = "gelu";
  EXPECT_ERROR_HAS(parse_config(j.dump(), "c.json"), "c.json", "gated", "gelu");
  j = llama_config();
  j["hidden_act"] = "swishy";
  EXPECT_ERROR_HAS(parse_config(j.dump(), "c.json"), "c.json", "hidden_act", "swishy");
  EXPECT_ERROR_HAS(parse_config("{\"model_type\": \"llama\",", "c.json"), "c.json", "invalid JSON");
  EXPECT_ERROR_HAS(parse_config("[1, 2]", "c.json"), "c.json", "object");
  EXPECT_ERROR_HAS(parse_config(std::string(10000, '[') + std::string(10000, ']'), "c.json"),
                   "c.json", "nested");
}

TEST(LoaderConfig, RopeScalingVariants) {
  json j = llama_config();
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}};
  ModelConfig c = parse_config(j.dump(), "c.json");
  EXPECT_EQ(c.rope.scaling, RopeScaling::Linear);
  EXPECT_FLOAT_EQ(c.rope.factor, 4.0f);
  j["rope_scaling"] = {{"rope_type", "dynamic"}, {"factor", 2.0}};
  c = parse_config(j.dump(), "c.json");
  EXPECT_EQ(c.rope.scaling, RopeScaling::Dynamic);
  EXPECT_EQ(c.rope.max_positions, 128);
  j["rope_scaling"] = {{"rope_type", "llama3"},
                       {"factor", 8.0},
                       {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 64}};
  c = parse_config(j.dump(), "c.json");
  EXPECT_EQ(c.rope.scaling, RopeScaling::Llama3);
  EXPECT_EQ(c.rope.original_max_positions, 64);
  j["rope_scaling"] = nullptr;
  EXPECT_EQ(parse_config(j.dump(), "c.json").rope.scaling, RopeScaling::None);
}

TEST(LoaderConfig, BloomKeySpellings) {
  const fs::path dir = fs::path(RUNNEL_SHARED_DIR) / "testdata" / "bloom-560m";
  if (!fs::exists(dir)) GTEST_SKIP() << "shared test data not found: " << dir;
  for (const char* f : {"config.json", "config.transformers-4.30.2.json"}) {
    const ModelConfig c = load_config((dir / f).string());
    EXPECT_EQ(c.family, "bloom") << f;
    EXPECT_EQ(c.hidden_size, 1024) << f;
    EXPECT_EQ(c.n_heads, 16) << f;
    EXPECT_EQ(c.n_layers, 24) << f;
    EXPECT_EQ(c.vocab_size, 250880) << f;
    EXPECT_EQ(c.ffn_dim, 4096) << f;
    EXPECT_EQ(c.position, PositionKind::Alibi) << f;
    EXPECT_EQ(c.qkv_layout, QkvLayout::FusedPerHead) << f;
    EXPECT_EQ(c.embedding_norm, EmbeddingNorm::LayerNorm) << f;
    EXPECT_EQ(c.activation, Activation::GeluTanh) << f;
    EXPECT_FLOAT_EQ(c.norm_eps, 1e-5f) << f;
    EXPECT_EQ(c.lm_head, LmHead::Tied) << f;
  }
  json j = json::parse(slurp(dir / "config.json"));
  j["hidden_size"] = 512;  // disagrees with n_embed = 1024
  EXPECT_ERROR_HAS(parse_config(j.dump(), "bloom/config.json"), "bloom/config.json", "n_embed",
                   "hidden_size", "disagrees");
}

TEST(LoaderConfig, Opt125mAndPostNorm) {
  const fs::path p = fs::path(RUNNEL_SHARED_DIR) / "testdata" / "opt-bpe" / "config.opt-125m.json";
  if (!fs::exists(p)) GTEST_SKIP() << "shared test data not found: " << p;
  ModelConfig c = load_config(p.string());
  EXPECT_EQ(c.family, "opt");
  EXPECT_EQ(c.hidden_size, 768);
  EXPECT_EQ(c.n_heads, 12);
  EXPECT_EQ(c.ffn_dim, 3072);
  EXPECT_EQ(c.position, PositionKind::Learned);
  EXPECT_EQ(c.position_offset, 2);
  EXPECT_EQ(c.norm_placement, NormPlacement::Pre);
  EXPECT_EQ(c.final_norm, FinalNorm::Present);
  EXPECT_EQ(c.projection, EmbeddingProjection::None);
  EXPECT_EQ(c.activation, Activation::Relu);
  EXPECT_EQ(c.bos_id, 2);
  json j = json::parse(slurp(p));
  j["do_layer_norm_before"] = false;
  j["word_embed_proj_dim"] = 512;
  c = parse_config(j.dump(), "opt350/config.json");
  EXPECT_EQ(c.norm_placement, NormPlacement::Post);
  EXPECT_EQ(c.final_norm, FinalNorm::None);
  EXPECT_EQ(c.projection, EmbeddingProjection::InOut);
  EXPECT_EQ(c.embed_dim, 512);
}

// ---------------------------------------------------------------------------
// safetensors

std::string f32_bytes(size_t n, uint32_t seed = 1) {
  const std::vector<float> v = test::random_floats(n, seed);
  return std::string(reinterpret_cast<const char*>(v.data()), n * 4);
}

TEST(LoaderSafetensors, ParsesHeader) {
  const std::string b = safetensors_bytes(
      {{"a", "F32", {2, 3}, f32_bytes(6)}, {"b", "BF16", {4}, std::string(8, '\0')}});
  const auto infos = parse_safetensors_header(reinterpret_cast<const uint8_t*>(b.data()), b.size(),
                                              "m.safetensors");
  ASSERT_EQ(infos.size(), 2u);
  EXPECT_EQ(infos[0].name, "a");
  EXPECT_EQ(infos[0].dtype, DType::F32);
  EXPECT_EQ(infos[0].shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(infos[0].nbytes, 24u);
  EXPECT_EQ(infos[1].dtype, DType::BF16);
  EXPECT_EQ(infos[1].offset, infos[0].offset + 24);
}

TEST(LoaderSafetensors, BadFilesAreRejected) {
  auto parse = [](const std::string& b) {
    parse_safetensors_header(reinterpret_cast<const uint8_t*>(b.data()), b.size(),
                             "bad.safetensors");
  };
  EXPECT_ERROR_HAS(parse("abc"), "bad.safetensors", "too short");
  std::string b = safetensors_bytes({{"w", "F32", {2, 2}, f32_bytes(4)}});
  // Header length beyond the file.
  std::string big = b;
  const uint64_t huge = uint64_t(1) << 40;
  std::memcpy(big.data(), &huge, 8);
  EXPECT_ERROR_HAS(parse(big), "bad.safetensors", "header length", "exceeds the file size");
  // Truncated data: offsets now point past the end.
  EXPECT_ERROR_HAS(parse(b.substr(0, b.size() - 4)), "bad.safetensors", "\"w\"", "outside");
  // Offsets inconsistent with shape.
  json h = {{"w", {{"dtype", "F32"}, {"shape", {3, 2}}, {"data_offsets", {0, 16}}}}};
  auto with_header = [&](const json& hj, const std::string& data) {
    std::string hs = hj.dump();
    std::string out(8, '\0');
    const uint64_t n = hs.size();
    std::memcpy(out.data(), &n, 8);
    return out + hs + data;
  };
  EXPECT_ERROR_HAS(parse(with_header(h, f32_bytes(4))), "\"w\"", "needs 24");
  h = {{"w", {{"dtype", "F32"}, {"shape", {2, 2}}, {"data_offsets", {16, 0}}}}};
  EXPECT_ERROR_HAS(parse(with_header(h, f32_bytes(4))), "\"w\"", "outside");
  h = {{"w", {{"dtype", "F32"}, {"shape", {2, 2}}, {"data_offsets", {-16, 0}}}}};
  EXPECT_ERROR_HAS(parse(with_header(h, f32_bytes(4))), "\"w\"", "data_offsets");
  h = {{"w", {{"dtype", "I64"}, {"shape", {2}}, {"data_offsets", {0, 16}}}}};
  EXPECT_ERROR_HAS(parse(with_header(h, f32_bytes(4))), "bad.safetensors", "\"w\"", "I64",
                   "not supported");
  h = {{"w",
        {{"dtype", "F32"},
         {"shape", {int64_t(1) << 40, int64_t(1) << 40}},
         {"data_offsets", {0, 16}}}}};
  EXPECT_ERROR_HAS(parse(with_header(h, f32_bytes(4))), "\"w\"", "overflows");
  h = {{"w", {{"dtype", "F32"}, {"shape", {4}}}}};
  EXPECT_ERROR_HAS(parse(with_header(h, f32_bytes(4))), "\"w\"", "data_offsets");
  EXPECT_ERROR_HAS(parse(with_header(json::array({1, 2}), "")), "bad.safetensors", "object");
  std::string junk = b;
  junk[9] = '!';
  EXPECT_ERROR_HAS(parse(junk), "bad.safetensors", "invalid JSON");
}

// Two tensors may not share bytes (a file whose "b" aliases part of "a" used
// to load); adjacent and empty tensors are fine.
TEST(LoaderSafetensors, OverlappingTensorsAreRejected) {
  auto header = [](const json& hj, size_t data_bytes) {
    const std::string hs = hj.dump();
    std::string out(8, '\0');
    const uint64_t n = hs.size();
    std::memcpy(out.data(), &n, 8);
    return out + hs + std::string(data_bytes, '\0');
  };
  auto parse = [](const std::string& b) {
    return parse_safetensors_header(reinterpret_cast<const uint8_t*>(b.data()), b.size(),
                                    "over.safetensors");
  };
  auto t = [](int64_t n, uint64_t begin) {
    return json{{"dtype", "F32"}, {"shape", {n}}, {"data_offsets", {begin, begin + 4 * n}}};
  };
  EXPECT_ERROR_HAS(parse(header({{"a", t(4, 0)}, {"b", t(4, 8)}}, 24)), "over.safetensors",
                   "\"a\" (data_offsets [0, 16))", "\"b\" (data_offsets [8, 24))", "overlap");
  EXPECT_ERROR_HAS(parse(header({{"a", t(4, 0)}, {"b", t(4, 0)}}, 16)), "over.safetensors",
                   "\"a\"", "\"b\"", "overlap");
  EXPECT_ERROR_HAS(parse(header({{"a", t(6, 0)}, {"b", t(1, 12)}, {"c", t(2, 24)}}, 32)),
                   "\"a\" (data_offsets [0, 24))", "\"b\" (data_offsets [12, 16))", "overlap");
  // Adjacent, and an empty tensor at an occupied offset: accepted.
  EXPECT_EQ(parse(header({{"a", t(4, 0)}, {"b", t(2, 16)}, {"e", t(0, 8)}}, 24)).size(), 3u);
}

// ---------------------------------------------------------------------------
// binding tensors to the descriptor

TEST(LoaderBinding, MissingTensorIsNamed) {
  TempDir d;
  copy_fixture("llama-mha", d.path(), [](std::vector<StTensor>& ts) {
    std::erase_if(ts,
                  [](const StTensor& t) { return t.name == "model.layers.1.mlp.up_proj.weight"; });
  });
  const std::string dir = d.path().string();
  EXPECT_ERROR_HAS(open_model(dir), dir.c_str(), "missing tensor",
                   "model.layers.1.mlp.up_proj.weight");
}

TEST(LoaderBinding, ExtraTensorIsNamed) {
  TempDir d;
  copy_fixture("bloom-6heads", d.path(), [](std::vector<StTensor>& ts) {
    ts.push_back({"transformer.h.0.self_attention.rotary.weight", "F32", {4}, f32_bytes(4)});
  });
  EXPECT_ERROR_HAS(open_model(d.path().string()), "model.safetensors",
                   "transformer.h.0.self_attention.rotary.weight", "not used");
}

TEST(LoaderBinding, WrongShapeIsNamed) {
  TempDir d;
  copy_fixture("opt-prenorm", d.path(), [](std::vector<StTensor>& ts) {
    StTensor* t = find(ts, "model.decoder.layers.0.fc1.weight");
    ASSERT_NE(t, nullptr);
    std::swap(t->shape[0], t->shape[1]);
  });
  EXPECT_ERROR_HAS(open_model(d.path().string()), "model.safetensors",
                   "model.decoder.layers.0.fc1.weight", "shape", "[64, 32]");
}

TEST(LoaderBinding, UnsupportedDtypeIsNamed) {
  TempDir d;
  copy_fixture("llama-mha", d.path(), [](std::vector<StTensor>& ts) {
    StTensor* t = find(ts, "model.norm.weight");
    ASSERT_NE(t, nullptr);
    t->dtype = "F64";
    t->shape[0] /= 2;
  });
  EXPECT_ERROR_HAS(open_model(d.path().string()), "model.safetensors", "model.norm.weight", "F64");
}

TEST(LoaderBinding, TruncatedFile) {
  TempDir d;
  fs::copy_file(fixture("llama-mha") / "config.json", d / "config.json");
  const std::string b = slurp(fixture("llama-mha") / "model.safetensors");
  spit(d / "model.safetensors", b.substr(0, b.size() - 100));
  EXPECT_ERROR_HAS(open_model(d.path().string()), "model.safetensors", "outside", "truncated");
}

TEST(LoaderBinding, ConfigThatDoesNotMatchTheWeights) {
  TempDir d;
  copy_fixture("llama-mha", d.path(), [](std::vector<StTensor>&) {});
  json j = json::parse(slurp(d / "config.json"));
  j["attention_bias"] = true;
  spit(d / "config.json", j.dump());
  EXPECT_ERROR_HAS(open_model(d.path().string()), "missing tensor",
                   "model.layers.0.self_attn.q_proj.bias");
  j["attention_bias"] = false;
  j["num_hidden_layers"] = 1;
  spit(d / "config.json", j.dump());
  EXPECT_ERROR_HAS(open_model(d.path().string()), "model.layers.1.", "not used");
}

// Real checkpoints saved from the base model leave out "model." (OPT) or
// "transformer." (BLOOM); a stored copy of a tied head is ignored.
TEST(LoaderBinding, OptionalPrefixesAndStoredTiedHead) {
  for (const char* v : {"opt-prenorm", "bloom-4heads"}) {
    TempDir d;
    const std::string prefix = std::string(v).rfind("opt", 0) == 0 ? "model." : "transformer.";
    copy_fixture(v, d.path(), [&](std::vector<StTensor>& ts) {
      for (StTensor& t : ts)
        if (t.name.rfind(prefix, 0) == 0) t.name = t.name.substr(prefix.size());
      StTensor head = ts[0];
      for (StTensor& t : ts)
        if (t.name.find("embeddings.weight") != std::string::npos ||
            t.name.find("embed_tokens.weight") != std::string::npos)
          head = t;
      head.name = "lm_head.weight";
      ts.push_back(head);
    });
    EXPECT_EQ(prompt_logits(d.path().string(), kPrompt),
              prompt_logits(fixture(v).string(), kPrompt))
        << v;
  }
}

TEST(LoaderBinding, ShardedIndexMatchesSingleFile) {
  TempDir d;
  fs::copy_file(fixture("llama-gqa-tied-llama3") / "config.json", d / "config.json");
  const std::vector<StTensor> ts =
      read_safetensors(fixture("llama-gqa-tied-llama3") / "model.safetensors");
  std::vector<StTensor> a, b;
  json wm = json::object();
  for (size_t i = 0; i < ts.size(); ++i) {
    (i % 2 ? a : b).push_back(ts[i]);
    wm[ts[i].name] =
        i % 2 ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  spit(d / "model-00001-of-00002.safetensors", safetensors_bytes(a));
  spit(d / "model-00002-of-00002.safetensors", safetensors_bytes(b));
  spit(d / "model.safetensors.index.json",
       json{{"metadata", json::object()}, {"weight_map", wm}}.dump());
  EXPECT_EQ(prompt_logits(d.path().string(), kPrompt),
            prompt_logits(fixture("llama-gqa-tied-llama3").string(), kPrompt));

  // Point model.norm.weight at the shard it is not in.
  const std::string actual = wm["model.norm.weight"].get<std::string>();
  const std::string other = actual == "model-00001-of-00002.safetensors"
                                ? "model-00002-of-00002.safetensors"
                                : "model-00001-of-00002.safetensors";
  wm["model.norm.weight"] = other;
  spit(d / "model.safetensors.index.json", json{{"weight_map", wm}}.dump());
  EXPECT_ERROR_HAS(open_model(d.path().string()), "model.safetensors.index.json",
                   "model.norm.weight", actual.c_str(), other.c_str());
  wm["model.norm.weight"] = "../elsewhere.safetensors";
  spit(d / "model.safetensors.index.json", json{{"weight_map", wm}}.dump());
  EXPECT_ERROR_HAS(open_model(d.path().string()), "model.safetensors.index.json",
                   "../elsewhere.safetensors", "relative path");
  wm.erase("model.norm.weight");
  wm["model.extra.weight"] = "model-00001-of-00002.safetensors";
  spit(d / "model.safetensors.index.json", json{{"weight_map", wm}}.dump());
  EXPECT_ERROR_HAS(open_model(d.path().string()), "model.extra.weight", "missing from");
}

// An f16 file runs in f16 with mapped weights, and in f32 after conversion.
TEST(LoaderBinding, HalfPrecisionFile) {
  TempDir d;
  copy_fixture("llama-linear-bias", d.path(), [](std::vector<StTensor>& ts) {
    for (StTensor& t : ts) {
      const size_t n = t.bytes.size() / 4;
      std::vector<float> f(n);
      std::memcpy(f.data(), t.bytes.data(), n * 4);
      std::string h(n * 2, '\0');
      for (size_t i = 0; i < n; ++i) {
        uint32_t u;
        std::memcpy(&u, &f[i], 4);
        const uint16_t bf =
            uint16_t((u + 0x7fff + ((u >> 16) & 1)) >> 16);  // round to nearest even
        std::memcpy(h.data() + 2 * i, &bf, 2);
      }
      t.dtype = "BF16";
      t.bytes = h;
    }
  });
  LoadOptions o;
  o.threads = 1;
  auto m = Model::load(d.path().string(), o);
  EXPECT_EQ(m->file_dtype(), DType::BF16);
  EXPECT_EQ(m->weight_dtype(), DType::BF16);
  EXPECT_TRUE(m->weights_mapped());
  const std::vector<float> ref = prompt_logits(fixture("llama-linear-bias").string(), kPrompt);
  const std::vector<float> bf = prompt_logits(d.path().string(), kPrompt);
  const std::vector<float> up = prompt_logits(d.path().string(), kPrompt, DType::F32);
  EXPECT_LE(test::norm_err(bf, ref), 4e-2);
  EXPECT_LE(test::norm_err(up, bf), 1e-4);  // same rounded weights, f32 either way after load
}

TEST(LoaderCheckpoint, PickleIsRefusedWithAConversionRecipe) {
  TempDir d;
  spit(d / "config.json", kLlamaConfig);
  spit(d / "pytorch_model.bin", std::string("PK\x03\x04", 4) + "archive");
  for (const fs::path& p : {d.path(), d / "pytorch_model.bin"}) {
    EXPECT_ERROR_HAS(open_model(p.string()), "pytorch_model.bin", "pickle", "arbitrary code",
                     "safetensors.torch", "save_file");
  }
  spit(d / "model.gguf", "GGUF\x03\x00\x00\x00");
  EXPECT_ERROR_HAS(open_model((d / "model.gguf").string()), "model.gguf", "GGUF");
  spit(d / "weights.pt", "\x80\x02\x8a\x0a");
  EXPECT_ERROR_HAS(open_model((d / "weights.pt").string()), "weights.pt", "pickle");
}

// An empty or too short file is named as such, not as a bad llama2.c header;
// a .gguf file without the magic is named as not GGUF.
TEST(LoaderCheckpoint, EmptyAndTinyFilesAreNamed) {
  TempDir d;
  struct Case {
    const char* name;
    std::string bytes;
    std::vector<const char*> needles;
  };
  const Case cases[] = {
      {"empty.gguf", "", {"empty.gguf", "empty (0 bytes)"}},
      {"EMPTY.GGUF", "", {"EMPTY.GGUF", "empty (0 bytes)"}},
      {"empty.bin", "", {"empty.bin", "empty (0 bytes)"}},
      {"empty", "", {"empty", "empty (0 bytes)"}},
      {"short.gguf", "GGU", {"short.gguf", "3 bytes is too short to be a GGUF file"}},
      {"ggml.gguf", "GGML\x03\x00\x00\x00", {"ggml.gguf", "not a GGUF file"}},
      {"magic.gguf", "GGUF", {"magic.gguf", "GGUF"}},
      {"junk.bin", "0123456789", {"junk.bin", "llama2.c header", "10 bytes"}},
      {"empty.safetensors", "", {"empty.safetensors", "0 bytes is too short for a safetensors"}},
  };
  spit(d / "config.json", kLlamaConfig);  // so that .safetensors gets as far as its header
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    spit(d / c.name, c.bytes);
    const std::string msg = error_of([&] { open_checkpoint((d / c.name).string()); });
    for (const char* n : c.needles) EXPECT_NE(msg.find(n), std::string::npos) << msg;
    EXPECT_EQ(msg.find("llama2.c"), std::string(c.name) == "junk.bin" ? msg.find("llama2.c")
                                                                     : std::string::npos)
        << msg;
    fs::remove(d / c.name);
  }
}

TEST(LoaderCheckpoint, MissingPieces) {
  TempDir d;
  EXPECT_ERROR_HAS(open_model((d / "nope").string()), "nope", "no such file");
  EXPECT_ERROR_HAS(open_model(d.path().string()), "no config.json");
  spit(d / "config.json", kLlamaConfig);
  EXPECT_ERROR_HAS(open_model(d.path().string()), "no model.safetensors");
  spit(d / "x.safetensors", safetensors_bytes({}));
  fs::remove(d / "config.json");
  EXPECT_ERROR_HAS(open_model((d / "x.safetensors").string()), "x.safetensors", "config.json");
}

// ---------------------------------------------------------------------------
// llama2.c

struct TinyLlama2c {
  int32_t dim = 16, hidden = 40, layers = 2, heads = 4, kv_heads = 2, vocab = 32, seq_len = 24;
};

// Random weights in the order of the legacy layout (with RoPE tables).
struct Llama2cWeights {
  std::vector<float> emb, att_norm, wq, wk, wv, wo, ffn_norm, w1, w2, w3, final_norm, cls;
};

Llama2cWeights random_weights(const TinyLlama2c& t) {
  const int32_t hs = t.dim / t.heads, kv = hs * t.kv_heads;
  uint32_t seed = 7;
  auto r = [&](size_t n, float scale = 0.3f) {
    return test::random_floats(n, seed++, -scale, scale);
  };
  Llama2cWeights w;
  w.emb = r(size_t(t.vocab * t.dim), 1.0f);
  w.att_norm = test::random_floats(size_t(t.layers * t.dim), seed++, 0.5f, 1.5f);
  w.wq = r(size_t(t.layers * t.dim * t.dim));
  w.wk = r(size_t(t.layers * t.dim * kv));
  w.wv = r(size_t(t.layers * t.dim * kv));
  w.wo = r(size_t(t.layers * t.dim * t.dim));
  w.ffn_norm = test::random_floats(size_t(t.layers * t.dim), seed++, 0.5f, 1.5f);
  w.w1 = r(size_t(t.layers * t.dim * t.hidden));
  w.w2 = r(size_t(t.layers * t.dim * t.hidden));
  w.w3 = r(size_t(t.layers * t.dim * t.hidden));
  w.final_norm = test::random_floats(size_t(t.dim), seed++, 0.5f, 1.5f);
  w.cls = r(size_t(t.vocab * t.dim), 1.0f);
  return w;
}

std::string floats(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
}

std::string legacy_file(const TinyLlama2c& t, const Llama2cWeights& w, bool shared) {
  int32_t h[7] = {t.dim,    t.hidden, t.layers, t.heads, t.kv_heads, shared ? t.vocab : -t.vocab,
                  t.seq_len};
  std::string out(reinterpret_cast<const char*>(h), sizeof h);
  out += floats(w.emb) + floats(w.att_norm) + floats(w.wq) + floats(w.wk) + floats(w.wv) +
         floats(w.wo) + floats(w.ffn_norm) + floats(w.w1) + floats(w.w2) + floats(w.w3) +
         floats(w.final_norm);
  out += std::string(size_t(t.seq_len * (t.dim / t.heads)) * 4, '\0');  // freq_cis_real / imag
  if (!shared) out += floats(w.cls);
  return out;
}

std::string v1_file(const TinyLlama2c& t, const Llama2cWeights& w, bool shared) {
  std::string out(256, '\0');
  const uint32_t magic = 0x616b3432;
  const int32_t version = 1;
  int32_t h[7] = {t.dim, t.hidden, t.layers, t.heads, t.kv_heads, t.vocab, t.seq_len};
  std::memcpy(out.data(), &magic, 4);
  std::memcpy(out.data() + 4, &version, 4);
  std::memcpy(out.data() + 8, h, sizeof h);
  out[36] = shared ? 1 : 0;
  out += floats(w.att_norm) + floats(w.ffn_norm) + floats(w.final_norm) + floats(w.emb) +
         floats(w.wq) + floats(w.wk) + floats(w.wv) + floats(w.wo) + floats(w.w1) + floats(w.w2) +
         floats(w.w3);
  if (!shared) out += floats(w.cls);
  return out;
}

TEST(LoaderLlama2c, LegacyAndVersion1GiveTheSameModel) {
  const TinyLlama2c t;
  const Llama2cWeights w = random_weights(t);
  TempDir d;
  for (bool shared : {true, false}) {
    spit(d / "legacy.bin", legacy_file(t, w, shared));
    spit(d / "v1.bin", v1_file(t, w, shared));
    const ModelConfig c = open_checkpoint((d / "legacy.bin").string()).config;
    EXPECT_EQ(c.lm_head, shared ? LmHead::Tied : LmHead::Separate);
    EXPECT_EQ(c.n_kv_heads, 2);
    EXPECT_EQ(c.rope_style, RopeStyle::GptJ);
    const int32_t ids[] = {1, 5, 9, 31, 0, 7};
    const std::vector<float> a = prompt_logits((d / "legacy.bin").string(), ids);
    const std::vector<float> b = prompt_logits((d / "v1.bin").string(), ids);
    ASSERT_EQ(a.size(), size_t(6 * t.vocab));
    EXPECT_EQ(a, b) << (shared ? "shared" : "separate") << " classifier";
  }
  // The untied classifier is really used.
  const int32_t ids[] = {3};
  spit(d / "legacy.bin", legacy_file(t, w, true));
  const std::vector<float> tied = prompt_logits((d / "legacy.bin").string(), ids);
  spit(d / "legacy.bin", legacy_file(t, w, false));
  EXPECT_NE(tied, prompt_logits((d / "legacy.bin").string(), ids));
}

TEST(LoaderLlama2c, AbsurdHeadersAreRejected) {
  auto parse = [](const std::string& b) {
    parse_llama2c_header(reinterpret_cast<const uint8_t*>(b.data()), b.size(), "m.bin");
  };
  auto header = [](std::vector<int32_t> h) {
    return std::string(reinterpret_cast<const char*>(h.data()), h.size() * 4);
  };
  EXPECT_ERROR_HAS(parse("tiny"), "m.bin", "28-byte header");
  EXPECT_ERROR_HAS(parse(header({1 << 30, 64, 2, 4, 4, 32, 16})), "m.bin", "dim", "out of range");
  EXPECT_ERROR_HAS(parse(header({64, 64, 0, 4, 4, 32, 16})), "m.bin", "n_layers");
  EXPECT_ERROR_HAS(parse(header({64, 64, 2, 4, 8, 32, 16})), "m.bin", "n_kv_heads");
  EXPECT_ERROR_HAS(parse(header({64, 64, 2, 4, 3, 32, 16})), "m.bin", "not a multiple");
  EXPECT_ERROR_HAS(parse(header({64, 64, 2, 4, 4, INT32_MIN, 16})), "m.bin", "vocab_size");
  EXPECT_ERROR_HAS(parse(header({64, 64, 2, 4, 4, 32, -1})), "m.bin", "seq_len");
  EXPECT_ERROR_HAS(parse(header({64, 64, 2, 4, 4, 32, 16})), "m.bin", "implies", "truncated");
  const TinyLlama2c t;
  const std::string good = legacy_file(t, random_weights(t), true);
  EXPECT_NO_THROW(parse(good));
  EXPECT_ERROR_HAS(parse(good + "xxxx"), "m.bin", "implies");
  std::string v2(256, '\0');
  const uint32_t magic = 0x616b3432;
  const int32_t two = 2;
  std::memcpy(v2.data(), &magic, 4);
  std::memcpy(v2.data() + 4, &two, 4);
  EXPECT_ERROR_HAS(parse(v2), "m.bin", "version 2", "int8");
  const int32_t nine = 9;
  std::memcpy(v2.data() + 4, &nine, 4);
  EXPECT_ERROR_HAS(parse(v2), "m.bin", "unknown version 9");
}

TEST(LoaderLlama2c, TruncatedRealCheckpoint) {
  const fs::path p = fs::path(RUNNEL_SHARED_DIR) / "testdata" / "stories260K" / "stories260K.bin";
  if (!fs::exists(p)) GTEST_SKIP() << "shared test data not found: " << p;
  TempDir d;
  spit(d / "cut.bin", slurp(p).substr(0, 100000));
  EXPECT_ERROR_HAS(open_model((d / "cut.bin").string()), "cut.bin", "1056540", "100000",
                   "truncated");
}

// A llama2.c tokenizer.bin of `n` tokens: <unk> <s> </s>, then "t3", "t4", ...
std::string llama2c_tokenizer(int n) {
  std::string out;
  auto i32 = [&](int32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); };
  i32(8);  // max_token_length
  for (int i = 0; i < n; ++i) {
    const std::string piece = i == 0 ? "<unk>" : i == 1 ? "<s>" : i == 2 ? "</s>" : "t" + std::to_string(i);
    const float score = -float(i);
    out.append(reinterpret_cast<const char*>(&score), 4);
    i32(int32_t(piece.size()));
    out += piece;
  }
  return out;
}

// A tokenizer.bin with fewer tokens than the model's 32 embedding rows is
// refused at load (it used to fail only when a later id was decoded), given
// with --tokenizer or found beside the model.
TEST(LoaderLlama2c, SmallerTokenizerIsRefusedAtLoad) {
  const TinyLlama2c t;
  TempDir d;
  spit(d / "m.bin", legacy_file(t, random_weights(t), true));
  spit(d / "small.bin", llama2c_tokenizer(10));
  spit(d / "exact.bin", llama2c_tokenizer(32));
  LoadOptions o;
  o.threads = 1;
  o.tokenizer_path = (d / "small.bin").string();
  EXPECT_ERROR_HAS(Model::load((d / "m.bin").string(), o), "small.bin", "10 tokens", "m.bin",
                   "vocabulary of 32");
  o.tokenizer_path = (d / "exact.bin").string();
  const auto m = Model::load((d / "m.bin").string(), o);
  ASSERT_NE(m->tokenizer(), nullptr);
  EXPECT_EQ(m->tokenizer()->vocab_size(), 32u);
  spit(d / "tokenizer.bin", llama2c_tokenizer(31));
  EXPECT_ERROR_HAS(open_model((d / "m.bin").string()), "tokenizer.bin", "31 tokens",
                   "vocabulary of 32");
}

TEST(LoaderModel, TokenIdsAndPositionsAreChecked) {
  LoadOptions o;
  o.threads = 1;
  auto m = Model::load(fixture("opt-prenorm").string(), o);
  Sequence s(*m);
  const int32_t bad[] = {1, 128};
  EXPECT_ERROR_HAS(s.prefill(bad), "token id 128", "vocabulary");
  std::vector<int32_t> long_prompt(65, 3);  // max_position_embeddings = 64
  Sequence s2(*m);
  EXPECT_ERROR_HAS(s2.prefill(long_prompt), "65 tokens", "max_position_embeddings");
  EXPECT_ERROR_HAS(s2.prefill({}), "no tokens");
}

}  // namespace
}  // namespace runnel
