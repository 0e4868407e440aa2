// Whole-model checks against Hugging Face transformers fixtures
// (tests/data/models/<variant>, made by tools/reference): logits at every
// position, hidden states, greedy continuations through the KV cache,
// perplexity, and f16 / bf16 compute within looser bounds.
#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "test_generate.hpp"
#include "runnel/error.hpp"
#include "runnel/model.hpp"
#include "test_util.hpp"

namespace runnel {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const char* const kVariants[] = {
    "opt-prenorm",       "opt-350m-style",        "llama-mha",    "llama-gqa-tied-llama3",
    "llama-linear-bias", "llama-dynamic-headdim", "bloom-6heads", "bloom-4heads",
};

// Tolerances on max|ours - ref| / max|ref| of the logits.
constexpr double kTolF32 = 1e-4;   // the bound
constexpr double kTolF16 = 1e-2;   // f16 weights (11-bit mantissa); worst seen 8.6e-3
constexpr double kTolBF16 = 4e-2;  // bf16 weights (8-bit mantissa); worst seen 2.6e-2

std::unique_ptr<Model> load(const fs::path& dir, std::optional<DType> dtype = {},
                            const std::string& dump = "", int threads = 2) {
  LoadOptions o;
  o.dtype = dtype;
  o.threads = threads;
  o.dump_dir = dump;
  return Model::load(dir.string(), o);
}

fs::path variant_dir(const std::string& v) { return fs::path(RUNNEL_TEST_DATA_DIR) / "models" / v; }

json read_json(const fs::path& p) {
  std::ifstream in(p);
  if (!in) throw std::runtime_error("cannot open " + p.string());
  return json::parse(in);
}

std::vector<int32_t> ids_of(const json& j) { return j.get<std::vector<int32_t>>(); }

std::vector<float> flat(const json& rows) {
  std::vector<float> out;
  for (const json& r : rows)
    for (const json& x : r) out.push_back(x.get<float>());
  return out;
}

// Reads an f32 .npy written by the dump option.
std::vector<float> read_npy(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + p.string());
  char magic[8];
  in.read(magic, 8);
  uint16_t hlen = 0;
  in.read(reinterpret_cast<char*>(&hlen), 2);
  in.seekg(10 + hlen);
  std::vector<float> v;
  float f;
  while (in.read(reinterpret_cast<char*>(&f), 4)) v.push_back(f);
  return v;
}

class ModelFixture : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    dir_ = variant_dir(GetParam());
    ASSERT_TRUE(fs::exists(dir_ / "reference.json")) << "fixture missing: " << dir_;
    ref_ = read_json(dir_ / "reference.json");
  }
  // Worst normalised logits error over every position of every prompt.
  double logits_error(DType dtype) {
    auto model = load(dir_, dtype);
    double worst = 0;
    for (const json& p : ref_["prompts"]) {
      Sequence seq(*model);
      const std::vector<int32_t> ids = ids_of(p["ids"]);
      const std::vector<float> ours = seq.prefill(ids, Logits::All);
      const std::vector<float> want = flat(p["logits"]);
      EXPECT_EQ(ours.size(), want.size());
      worst = std::max(worst, test::norm_err(ours, want));
    }
    return worst;
  }
  fs::path dir_;
  json ref_;
};

TEST_P(ModelFixture, LogitsF32MatchTransformers) {
  const double err = logits_error(DType::F32);
  RecordProperty("f32_logits_error", std::to_string(err));
  std::printf("[ %s ] f32 logits max|d|/max|ref| = %.3g\n", GetParam(), err);
  EXPECT_LE(err, kTolF32);
}

TEST_P(ModelFixture, LogitsF16WithinBound) {
  const double err = logits_error(DType::F16);
  std::printf("[ %s ] f16 logits max|d|/max|ref| = %.3g\n", GetParam(), err);
  EXPECT_LE(err, kTolF16);
}

TEST_P(ModelFixture, LogitsBF16WithinBound) {
  const double err = logits_error(DType::BF16);
  std::printf("[ %s ] bf16 logits max|d|/max|ref| = %.3g\n", GetParam(), err);
  EXPECT_LE(err, kTolBF16);
}

TEST_P(ModelFixture, WeightsAreMappedWhenDtypeMatches) {
  auto model = load(dir_);
  EXPECT_EQ(model->file_dtype(), DType::F32);
  EXPECT_EQ(model->weight_dtype(), DType::F32);
  EXPECT_TRUE(model->weights_mapped());
  auto converted = load(dir_, DType::F16);
  EXPECT_EQ(converted->weight_dtype(), DType::F16);
  EXPECT_FALSE(converted->weights_mapped());
}

// Prefill + token-by-token decode through the KV cache (f32 and f16 cache)
// gives transformers' cached greedy continuation.
TEST_P(ModelFixture, GreedyContinuationMatches) {
  auto model = load(dir_);
  for (DType kv : {DType::F32, DType::F16}) {
    int prompt_no = 0;
    for (const json& p : ref_["prompts"]) {
      const std::vector<int32_t> want = ids_of(p["greedy"]);
      const std::vector<int32_t> got =
          test::generate_ids(*model, ids_of(p["ids"]), int(want.size()), kv);
      if (kv == DType::F32) {
        EXPECT_EQ(got, want) << "prompt " << prompt_no;
      } else {
        // An f16 cache may flip a near-tie; require agreement up to the
        // first step whose reference top-2 margin is tiny.
        size_t must = want.size();
        if (p.contains("greedy_margins"))
          for (size_t i = 0; i < want.size(); ++i)
            if (p["greedy_margins"][i].get<double>() < 1e-2) {
              must = i;
              break;
            }
        ASSERT_EQ(got.size(), want.size()) << "f16 cache, prompt " << prompt_no;
        for (size_t i = 0; i < must; ++i)
          ASSERT_EQ(got[i], want[i]) << "f16 cache, prompt " << prompt_no << " step " << i;
      }
      ++prompt_no;
    }
  }
}

// Logits can stay where they were computed: the view holds the same bits
// the copy does, [1, vocab] for the last token or [n, vocab] for all.
TEST_P(ModelFixture, LogitsViewEqualsTheCopy) {
  auto model = load(dir_);
  const std::vector<int32_t> ids = ids_of(ref_["prompts"][0]["ids"]);
  const int64_t V = model->config().vocab_size;
  for (Logits which : {Logits::Last, Logits::All}) {
    auto c1 = model->new_cache();
    auto c2 = model->new_cache();
    std::vector<float> copied;
    model->forward(*c1, ids, 0, which, copied);
    Tensor view;
    Model::BatchItem it;
    it.cache = c2.get();
    it.ids = ids;
    it.which = which;
    it.logits_view = &view;
    model->forward(std::span<const Model::BatchItem>(&it, 1));
    const int64_t rows = which == Logits::All ? int64_t(ids.size()) : 1;
    ASSERT_EQ(view.ndim(), 2);
    EXPECT_EQ(view.dim(0), rows);
    EXPECT_EQ(view.dim(1), V);
    EXPECT_EQ(view.device(), Device::CPU);
    ASSERT_EQ(copied.size(), size_t(rows * V));
    EXPECT_EQ(std::memcmp(view.data(), copied.data(), copied.size() * sizeof(float)), 0);
  }
}

// The thread count changes how work is split, never the result: logits
// bit-equal at 1, 3 and 16 threads (16 is more threads than these models
// have heads or rows per block), prefill and decode, f32 and f16 weights.
TEST_P(ModelFixture, LogitsBitEqualAcrossThreadCounts) {
  const std::vector<int32_t> ids = ids_of(ref_["prompts"][0]["ids"]);
  for (std::optional<DType> dtype : {std::optional<DType>(), std::optional<DType>(DType::F16)}) {
    std::vector<float> want;
    for (int threads : {1, 3, 16}) {
      auto model = load(dir_, dtype, "", threads);
      Sequence seq(*model);
      std::vector<float> got = seq.prefill(std::span<const int32_t>(ids).first(ids.size() - 1), Logits::All);
      const std::vector<float> last = seq.prefill(std::span<const int32_t>(ids).last(1), Logits::All);
      got.insert(got.end(), last.begin(), last.end());
      ASSERT_EQ(got.size(), ids.size() * size_t(model->config().vocab_size));
      if (want.empty()) {
        want = got;
        continue;
      }
      EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)), 0)
          << threads << " threads against 1, " << (dtype ? "f16" : "f32") << " weights";
    }
  }
}

// Decoding one token at a time gives the same logits as one batch.
TEST_P(ModelFixture, DecodeMatchesPrefill) {
  auto model = load(dir_);
  const json& p = ref_["prompts"][0];
  const std::vector<int32_t> ids = ids_of(p["ids"]);
  const std::vector<float> want = flat(p["logits"]);
  Sequence seq(*model);
  const size_t vocab = size_t(model->config().vocab_size);
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::vector<float> got = seq.decode(ids[i]);
    ASSERT_EQ(got.size(), vocab);
    EXPECT_LE(test::norm_err(got.data(), want.data() + i * vocab, vocab), kTolF32)
        << "position " << i;
  }
}

// The dump option writes the residual stream with names that line up with
// transformers' hidden states.
TEST_P(ModelFixture, DumpedHiddenStatesMatch) {
  const json& p = ref_["prompts"][0];
  if (!p.contains("embeddings")) GTEST_SKIP() << "fixture has no hidden states";
  const fs::path dump = fs::temp_directory_path() / (std::string("runnel-dump-") + GetParam());
  fs::remove_all(dump);
  auto model = load(dir_, {}, dump.string());
  Sequence seq(*model);
  seq.prefill(ids_of(p["ids"]), Logits::All);
  EXPECT_LE(test::norm_err(read_npy(dump / "0000-inp_embd.npy"), flat(p["embeddings"])), kTolF32);
  const json& layers = p["layer_outputs"];
  ASSERT_EQ(int64_t(layers.size()), model->config().n_layers);
  for (size_t l = 0; l < layers.size(); ++l)
    EXPECT_LE(test::norm_err(read_npy(dump / ("0000-l_out-" + std::to_string(l) + ".npy")),
                             flat(layers[l])),
              kTolF32)
        << "layer " << l;
  EXPECT_LE(test::norm_err(read_npy(dump / "0000-result_norm.npy"), flat(p["final_norm_hidden"])),
            kTolF32);
  fs::remove_all(dump);
}

TEST_P(ModelFixture, PerplexityMatches) {
  if (!fs::exists(dir_ / "perplexity.json")) GTEST_SKIP() << "no perplexity.json";
  const json ppl = read_json(dir_ / "perplexity.json");
  auto model = load(dir_);
  const std::vector<int32_t> ids = ids_of(ppl["ids"]);
  Sequence seq(*model);
  const std::vector<float> logits = seq.prefill(ids, Logits::All);
  const size_t vocab = size_t(model->config().vocab_size);
  double sum = 0;
  for (size_t i = 0; i + 1 < ids.size(); ++i) {
    const float* row = logits.data() + i * vocab;
    double mx = row[0];
    for (size_t j = 0; j < vocab; ++j) mx = std::max(mx, double(row[j]));
    double z = 0;
    for (size_t j = 0; j < vocab; ++j) z += std::exp(double(row[j]) - mx);
    sum += -(double(row[ids[i + 1]]) - mx - std::log(z));
  }
  const double mean = sum / double(ids.size() - 1);
  EXPECT_NEAR(mean, ppl["mean_nll"].get<double>(), 1e-4 * ppl["mean_nll"].get<double>());
}

// Temperature sampling reproduces with the same seed and follows the seed.
TEST(ModelSampling, SeededTemperatureSampling) {
  auto model = load(variant_dir("opt-prenorm"));
  const std::vector<int32_t> prompt = {2, 40, 41};
  auto run = [&](uint64_t seed, float temp) {
    return test::generate_ids(*model, prompt, 32, DType::F32, {}, temp, seed);
  };
  EXPECT_EQ(run(1, 1.0f), run(1, 1.0f));
  EXPECT_NE(run(1, 1.0f), run(2, 1.0f));
  // A tiny temperature is greedy.
  EXPECT_EQ(run(3, 1e-4f), run(0, 0.0f));
  EXPECT_THROW(test::generate_ids(*model, prompt, 8, DType::F32, {}, -1.0f), Error);
}

// Generation stops after a stop id, which is included.
TEST(ModelSampling, StopIds) {
  auto model = load(variant_dir("opt-prenorm"));
  const std::vector<int32_t> prompt = {2, 40, 41};
  const std::vector<int32_t> free_run = test::generate_ids(*model, prompt, 8);
  ASSERT_EQ(free_run.size(), 8u);
  const std::vector<int32_t> stopped =
      test::generate_ids(*model, prompt, 8, DType::F32, {free_run[2]});
  const auto first = std::find(free_run.begin(), free_run.end(), free_run[2]);
  EXPECT_EQ(stopped, std::vector<int32_t>(free_run.begin(), first + 1));
}

INSTANTIATE_TEST_SUITE_P(Variants, ModelFixture, ::testing::ValuesIn(kVariants),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& c : s)
                             if (c == '-') c = '_';
                           return s;
                         });

}  // namespace
}  // namespace runnel
