// Real weights: llama2.c checkpoints from ../shared/testdata reproduce the
// greedy text llama2.c's run.c prints (-t 0 -n 256): the prompt, then the
// continuation, then a newline; run.c stops early when the model emits BOS.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "test_generate.hpp"
#include "runnel/loader.hpp"
#include "runnel/model.hpp"
#include "runnel/tokenizer.hpp"

namespace runnel {
namespace {

namespace fs = std::filesystem;

fs::path shared(const std::string& rel) { return fs::path(RUNNEL_SHARED_DIR) / "testdata" / rel; }

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct GreedyCase {
  const char* model;
  const char* tokenizer;
  const char* prompt;
  const char* expected;
};

const GreedyCase kCases[] = {
    {"stories260K/stories260K.bin", "stories260K/tok512.bin", "",
     "stories260K/greedy-no-prompt-256.txt"},
    {"stories260K/stories260K.bin", "stories260K/tok512.bin", "There was a big",
     "stories260K/greedy-there-was-a-big-256.txt"},
    {"babyllama-tok105/model5000_tok105.bin", "babyllama-tok105/tok105.bin", "",
     "babyllama-tok105/greedy-no-prompt-256.txt"},
};

class Llama2cGreedy : public ::testing::TestWithParam<GreedyCase> {};

// run.c's loop: 256 positions, the prompt forced, BOS ends the text.
std::string run_c_text(Model& model, const Tokenizer& tok, const std::string& prompt, DType kv) {
  std::vector<int32_t> ids = tok.encode(prompt, true);
  if (ids.empty() || ids[0] != 1) ids.insert(ids.begin(), 1);
  std::vector<int32_t> out = test::generate_ids(model, ids, 256 - int(ids.size()) + 1, kv, {1});
  if (!out.empty() && out.back() == 1) out.pop_back();
  std::vector<int32_t> all(ids.begin(), ids.end());
  all.insert(all.end(), out.begin(), out.end());
  return tok.decode(all, /*skip_special=*/true) + "\n";
}

TEST_P(Llama2cGreedy, ReproducesRunC) {
  const GreedyCase& c = GetParam();
  if (!fs::exists(shared(c.model)))
    GTEST_SKIP() << "shared test data not found: " << shared(c.model)
                 << " (../shared next to the repository)";
  LoadOptions o;
  o.tokenizer_path = shared(c.tokenizer).string();
  o.threads = 1;
  auto model = Model::load(shared(c.model).string(), o);
  ASSERT_NE(model->tokenizer(), nullptr);
  EXPECT_EQ(model->format(), "llama2.c");
  EXPECT_EQ(model->config().rope_style, RopeStyle::GptJ);
  EXPECT_TRUE(model->weights_mapped());
  const std::string want = slurp(shared(c.expected));
  EXPECT_EQ(run_c_text(*model, *model->tokenizer(), c.prompt, DType::F32), want);
}

INSTANTIATE_TEST_SUITE_P(Shared, Llama2cGreedy, ::testing::ValuesIn(kCases));

TEST(Llama2cModel, Stories260KConfigFromHeader) {
  const fs::path p = shared("stories260K/stories260K.bin");
  if (!fs::exists(p)) GTEST_SKIP() << "shared test data not found: " << p;
  const Checkpoint ck = open_checkpoint(p.string());
  const ModelConfig& c = ck.config;
  EXPECT_EQ(c.family, "llama");
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.ffn_dim, 172);
  EXPECT_EQ(c.n_layers, 5);
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.max_positions, 512);
  EXPECT_EQ(c.lm_head, LmHead::Tied);
  EXPECT_EQ(ck.weights.size(), size_t(1 + 1 + 5 * 9));
  ASSERT_NE(ck.weights.find("model.layers.4.mlp.down_proj.weight"), nullptr);
  EXPECT_EQ(ck.weights.find("model.layers.4.mlp.down_proj.weight")->tensor.dim(1), 172);
}

// Converting the real weights to f16 / bf16 keeps the first greedy tokens.
TEST(Llama2cModel, Stories260KHalfPrecisionAgreesEarly) {
  const fs::path p = shared("stories260K/stories260K.bin");
  if (!fs::exists(p)) GTEST_SKIP() << "shared test data not found: " << p;
  LoadOptions o;
  o.threads = 1;
  auto ref = Model::load(p.string(), o);
  const std::vector<int32_t> prompt = {1};
  const std::vector<int32_t> want = test::generate_ids(*ref, prompt, 24);
  for (DType dt : {DType::F16, DType::BF16}) {
    o.dtype = dt;
    auto m = Model::load(p.string(), o);
    const std::vector<int32_t> got = test::generate_ids(*m, prompt, 24);
    const size_t check = dt == DType::F16 ? 24 : 8;
    for (size_t i = 0; i < check; ++i)
      EXPECT_EQ(got[i], want[i]) << dtype_name(dt) << " step " << i;
  }
}

}  // namespace
}  // namespace runnel
