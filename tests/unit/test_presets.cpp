// Presets: each is a published checkpoint's config.json run through
// parse_config.  The parameter counts are computed here from the config with
// each family's own formula, independently of parameter_count(), and compared
// with the count transformers' num_parameters() reports for the checkpoint.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "runnel/config.hpp"
#include "runnel/error.hpp"
#include "runnel/model.hpp"

namespace {

using runnel::ModelConfig;

// LLaMA (h hidden, d head_dim, f ffn, V vocab, L layers):
//   per layer: 2h (two RMSNorms) + h * d * (n_heads + 2 n_kv_heads) (q, k, v)
//              + d * n_heads * h (o) + 3 h f (gate, up, down)
//   total: L * layer + V h (embeddings) + V h (unless tied) + h (final norm)
int64_t llama_params(const ModelConfig& c) {
  const int64_t h = c.hidden_size, d = c.head_dim, f = c.ffn_dim, V = c.vocab_size;
  const int64_t layer =
      2 * h + h * d * (c.n_heads + 2 * c.n_kv_heads) + d * c.n_heads * h + 3 * h * f;
  return c.n_layers * layer + V * h + (c.lm_head == runnel::LmHead::Tied ? 0 : V * h) + h;
}

// OPT (no projection, tied head):
//   per layer: 4h (two LayerNorms with bias) + 4 (h h + h) (q, k, v, out with bias)
//              + (h f + f) (fc1) + (f h + h) (fc2)
//   total: L * layer + V h + (max_positions + 2) h (learned positions, offset 2) + 2h (final LN)
int64_t opt_params(const ModelConfig& c) {
  const int64_t h = c.hidden_size, f = c.ffn_dim, V = c.vocab_size;
  const int64_t layer = 4 * h + 4 * (h * h + h) + (h * f + f) + (f * h + h);
  return c.n_layers * layer + V * h + (c.max_positions + 2) * h + 2 * h;
}

// BLOOM (f = 4h, tied head):
//   per layer: 4h (two LayerNorms) + (3 h h + 3h) (query_key_value) + (h h + h) (dense)
//              + (4 h h + 4h) (h_to_4h) + (4 h h + h) (4h_to_h)
//   total: L * layer + V h + 2h (embedding LN) + 2h (ln_f)
int64_t bloom_params(const ModelConfig& c) {
  const int64_t h = c.hidden_size, V = c.vocab_size;
  const int64_t layer =
      4 * h + (3 * h * h + 3 * h) + (h * h + h) + (4 * h * h + 4 * h) + (4 * h * h + h);
  return c.n_layers * layer + V * h + 4 * h;
}

int64_t formula_params(const ModelConfig& c) {
  if (c.family == "llama") return llama_params(c);
  if (c.family == "opt") return opt_params(c);
  if (c.family == "bloom") return bloom_params(c);
  ADD_FAILURE() << "no formula for family " << c.family;
  return 0;
}

struct Expected {
  const char* name;
  const char* family;
  int64_t params;  // num_parameters() of the published checkpoint
};

constexpr Expected kExpected[] = {
    {"llama-7b", "llama", 6'738'415'616},   // Llama-2-7b: "7B"
    {"llama-1b", "llama", 1'100'048'384},   // TinyLlama-1.1B
    {"llama-135m", "llama", 134'515'008},   // SmolLM2-135M
    {"llama3-8b", "llama", 8'030'261'248},  // Meta-Llama-3-8B: "8B"
    {"opt-125m", "opt", 125'239'296},       //
    {"opt-1.3b", "opt", 1'315'758'080},     //
    {"bloom-560m", "bloom", 559'214'592},   //
    {"bloom-1b1", "bloom", 1'065'314'304},  //
};

TEST(Presets, NamesAreTheExpectedOnes) {
  const auto names = runnel::preset_names();
  ASSERT_EQ(names.size(), std::size(kExpected));
  for (size_t i = 0; i < names.size(); ++i) EXPECT_EQ(names[i], kExpected[i].name);
}

TEST(Presets, EachValidatesAndHasThePublishedParameterCount) {
  for (const Expected& e : kExpected) {
    SCOPED_TRACE(e.name);
    ModelConfig c;
    ASSERT_NO_THROW(c = runnel::preset_config(e.name));
    EXPECT_NO_THROW(c.validate());
    EXPECT_EQ(c.family, e.family);
    EXPECT_EQ(c.source, std::string("preset:") + e.name);
    const int64_t p = formula_params(c);
    EXPECT_LE(std::abs(double(p - e.params)), 0.01 * double(e.params))
        << "formula gives " << p << ", published " << e.params;
    EXPECT_EQ(runnel::parameter_count(c), p);
  }
}

TEST(Presets, F32WeightBytesAreFourBytesPerParameter) {
  for (const std::string& name : runnel::preset_names()) {
    SCOPED_TRACE(name);
    const ModelConfig c = runnel::preset_config(name);
    EXPECT_EQ(runnel::Model::weight_bytes(c, runnel::DType::F32), 4 * runnel::parameter_count(c));
  }
}

TEST(Presets, ShapesOfTheSmallLlamas) {
  const ModelConfig t = runnel::preset_config("llama-1b");
  EXPECT_EQ(t.n_layers, 22);
  EXPECT_EQ(t.hidden_size, 2048);
  EXPECT_EQ(t.n_heads, 32);
  EXPECT_EQ(t.n_kv_heads, 4);
  EXPECT_EQ(t.head_dim, 64);
  EXPECT_EQ(t.ffn_dim, 5632);
  EXPECT_EQ(t.vocab_size, 32000);
  EXPECT_EQ(t.lm_head, runnel::LmHead::Separate);

  const ModelConfig s = runnel::preset_config("llama-135m");
  EXPECT_EQ(s.n_layers, 30);
  EXPECT_EQ(s.hidden_size, 576);
  EXPECT_EQ(s.n_heads, 9);
  EXPECT_EQ(s.n_kv_heads, 3);
  EXPECT_EQ(s.head_dim, 64);
  EXPECT_EQ(s.ffn_dim, 1536);
  EXPECT_EQ(s.vocab_size, 49152);
  EXPECT_EQ(s.lm_head, runnel::LmHead::Tied);
  EXPECT_FLOAT_EQ(s.rope.theta, 100000.0f);

  const ModelConfig l3 = runnel::preset_config("llama3-8b");
  EXPECT_FLOAT_EQ(l3.rope.theta, 500000.0f);
  EXPECT_EQ(l3.n_kv_heads, 8);
}

TEST(Presets, ParameterCountOfAProjectedOpt) {
  // OPT-350m's layout: word_embed_proj_dim 512 != hidden 1024 adds project_in
  // and project_out (no bias) and removes the final LayerNorm (post-norm).
  const ModelConfig c = runnel::parse_config(R"({
    "model_type": "opt", "hidden_size": 1024, "word_embed_proj_dim": 512, "ffn_dim": 4096,
    "num_hidden_layers": 24, "num_attention_heads": 16, "vocab_size": 50272,
    "max_position_embeddings": 2048, "do_layer_norm_before": false})",
                                             "opt-350m");
  EXPECT_EQ(runnel::parameter_count(c), 331'196'416);  // facebook/opt-350m num_parameters()
}

TEST(Presets, UnknownNameListsTheKnownOnes) {
  try {
    runnel::preset_config("llama-70b");
    FAIL() << "expected runnel::Error";
  } catch (const runnel::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("llama-70b"), std::string::npos) << msg;
    for (const std::string& n : runnel::preset_names())
      EXPECT_NE(msg.find(n), std::string::npos) << msg;
  }
}

}  // namespace
