// End to end: `runnel inspect` on the fixture models (text and --json).
#include <gtest/gtest.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "test_cli_util.hpp"

namespace {

using namespace runnel::clitest;
using nlohmann::json;

json inspect_json(const std::string& args) {
  const Result r = run_cli("inspect " + args + " --json");
  EXPECT_EQ(r.code, 0) << args << "\n" << r.err;
  if (r.code != 0) return json::object();
  return json::parse(r.out);
}

// Parameters and bytes computed from config.json by hand (f32 weights).
TEST(CliInspect, LlamaGqaTiedMatchesItsConfig) {
  const json j = inspect_json("-m " + quote(fixture("llama-gqa-tied-llama3").string()) +
                              " -c 100 --kv-dtype f16");
  ASSERT_TRUE(j.contains("family"));
  EXPECT_EQ(j["format"], "safetensors");
  EXPECT_EQ(j["family"], "llama");
  EXPECT_EQ(j["layers"], 2);
  EXPECT_EQ(j["heads"], 4);
  EXPECT_EQ(j["kv_heads"], 2);
  EXPECT_EQ(j["head_dim"], 8);
  EXPECT_EQ(j["hidden_size"], 32);
  EXPECT_EQ(j["ffn_dim"], 96);
  EXPECT_EQ(j["vocab_size"], 128);
  EXPECT_EQ(j["context_length"], 256);
  EXPECT_EQ(j["position"], "rope");
  // Tied head: embeddings 128x32 stored once; per layer q 32x32, k, v 16x32,
  // o 32x32, gate/up 96x32, down 32x96, two norms of 32; final norm 32.
  const int64_t layer = 32 * 32 + 2 * 16 * 32 + 32 * 32 + 3 * 96 * 32 + 2 * 32;
  const int64_t params = 128 * 32 + 2 * layer + 32;
  EXPECT_EQ(j["parameters"].get<int64_t>(), params);
  EXPECT_EQ(j["tensor_dtypes"]["f32"].get<int64_t>(), j["tensors"].get<int64_t>());
  EXPECT_EQ(j["tensors"].get<int64_t>(), 1 + 2 * 9 + 1);
  EXPECT_TRUE(j["weights_mapped"].get<bool>());
  EXPECT_EQ(j["weights_file_bytes"].get<int64_t>(), params * 4);
  // KV: 2 layers x (K + V) x 2 kv heads x 8 dims x 2 bytes = 128 B per token,
  // allocated in blocks of 16 tokens: 100 tokens take 7 blocks.
  const json& m = j["memory"];
  EXPECT_EQ(m["kv_bytes_per_token"].get<int64_t>(), 128);
  EXPECT_EQ(m["kv_cache_bytes"].get<int64_t>(), 7 * 16 * 128);
  EXPECT_EQ(m["weights_bytes"].get<int64_t>(), params * 4);
  EXPECT_EQ(m["total_bytes"].get<int64_t>(), params * 4 + 7 * 16 * 128);
  EXPECT_EQ(m["ctx"], 100);
  EXPECT_EQ(m["kv_dtype"], "f16");
  EXPECT_FALSE(j["tokenizer"]["present"].get<bool>());
}

// The KV cache is f32 unless asked for; --llama-cpp-order makes f16 the
// default, as llama.cpp's, and an explicit --kv-dtype still wins.
TEST(CliInspect, KvDtypeDefaults) {
  const std::string m = "-m " + quote(fixture("llama-mha").string());
  EXPECT_EQ(inspect_json(m)["memory"]["kv_dtype"], "f32");
  EXPECT_EQ(inspect_json(m + " --llama-cpp-order")["memory"]["kv_dtype"], "f16");
  EXPECT_EQ(inspect_json(m + " --llama-cpp-order --kv-dtype f32")["memory"]["kv_dtype"], "f32");
}

// Converted weights: matrices in the compute dtype, norms stay f32.
TEST(CliInspect, ConvertedWeights) {
  const json j = inspect_json("-m " + quote(fixture("llama-mha").string()) + " --dtype f16");
  ASSERT_TRUE(j.contains("weights_mapped"));
  EXPECT_FALSE(j["weights_mapped"].get<bool>());
  EXPECT_EQ(j["weight_dtype"], "f16");
  EXPECT_EQ(j["file_dtype"], "f32");
  // 28832 parameters, of which 2 x 2 x 32 + 32 = 160 are norm weights.
  EXPECT_EQ(j["parameters"].get<int64_t>(), 28832);
  EXPECT_EQ(j["memory"]["weights_bytes"].get<int64_t>(), (28832 - 160) * 2 + 160 * 4);
  EXPECT_EQ(j["weights_file_bytes"].get<int64_t>(), 28832 * 4);
}

TEST(CliInspect, EveryFixtureDescribesItself) {
  for (const std::string& v : fixture_variants()) {
    SCOPED_TRACE(v);
    const json cfg = json::parse(slurp(fixture(v) / "config.json"));
    const json j = inspect_json("-m " + quote(fixture(v).string()));
    ASSERT_TRUE(j.contains("family"));
    EXPECT_EQ(j["family"], cfg["model_type"]);
    EXPECT_EQ(j["vocab_size"], cfg["vocab_size"]);
    EXPECT_GT(j["parameters"].get<int64_t>(), 0);
    EXPECT_EQ(j["weights_file_bytes"].get<int64_t>(), 4 * j["parameters"].get<int64_t>());
    const std::string pos = j["position"];
    EXPECT_EQ(pos, v.rfind("opt", 0) == 0     ? "learned"
                   : v.rfind("bloom", 0) == 0 ? "alibi"
                                              : "rope");
    // Default context: the model's; BLOOM (ALiBi) has none, so 2048.
    const int64_t ctx = j["context_length"].get<int64_t>();
    EXPECT_EQ(j["memory"]["ctx"].get<int64_t>(), ctx > 0 ? ctx : 2048);
    EXPECT_EQ(j["memory"]["kv_bytes_per_token"].get<int64_t>(),
              2 * j["layers"].get<int64_t>() * j["kv_heads"].get<int64_t>() *
                  j["head_dim"].get<int64_t>() * 4);
  }
}

TEST(CliInspect, TokenizerAndChatTemplate) {
  TempDir tmp;
  write_tiny_tokenizer(tmp.path, chat_template_text("tinyllama-chat"));
  const std::string m =
      "-m " + quote(fixture("llama-mha").string()) + " --tokenizer " + quote(tmp.path.string());
  const json j = inspect_json(m);
  ASSERT_TRUE(j.contains("tokenizer"));
  const json& t = j["tokenizer"];
  EXPECT_TRUE(t["present"].get<bool>());
  EXPECT_EQ(t["vocab_size"], 128);
  EXPECT_EQ(t["kind"], "tokenizer.json (byte-level BPE)");
  EXPECT_EQ(t["bos"], "<s>");
  EXPECT_EQ(t["eos"], "</s>");
  EXPECT_EQ(t["bos_id"], 1);
  EXPECT_EQ(t["eos_id"], 2);
  EXPECT_EQ(t["special_tokens"], 6);
  EXPECT_TRUE(t["chat_template"].get<bool>());

  const Result r = run_cli("inspect " + m + " -c 32");
  EXPECT_EQ(r.code, 0) << r.err;
  for (const char* needle :
       {"format:         safetensors", "architecture:   llama", "layers:         2",
        "heads:          4 (kv heads 4, head dim 8)", "context length: 64",
        "tokenizer:      tokenizer.json (byte-level BPE), 128 tokens", "chat template: yes",
        "bos: 1 \"<s>\"", "(f32: 21 tensors)", "mapped from the file", "memory at ctx 32 (KV f32)",
        "KV cache: 16.00 KiB (512 B per token)"})
    EXPECT_NE(r.out.find(needle), std::string::npos) << needle << "\n" << r.out;
}

TEST(CliInspect, SharedCheckpoints) {
  const fs::path gguf = shared_data("babyllama-tok105/babyllama.gguf");
  if (!fs::exists(gguf)) GTEST_SKIP() << "shared test data not found: " << gguf;
  const json j = inspect_json("-m " + quote(gguf.string()));
  ASSERT_TRUE(j.contains("format"));
  EXPECT_EQ(j["format"], "gguf");
  EXPECT_EQ(j["tokenizer"]["kind"], "GGUF SentencePiece BPE");
  EXPECT_EQ(j["tokenizer"]["vocab_size"], 105);
  const json b =
      inspect_json("-m " + quote(shared_data("stories260K/stories260K.bin").string()) +
                   " --tokenizer " + quote(shared_data("stories260K/tok512.bin").string()));
  ASSERT_TRUE(b.contains("format"));
  EXPECT_EQ(b["format"], "llama2.c");
  EXPECT_EQ(b["tokenizer"]["kind"], "llama2.c tokenizer.bin");
  EXPECT_EQ(b["parameters"], 260032);
}

TEST(CliInspect, BadInputExitsWithTwo) {
  TempDir tmp;
  const std::string m = "inspect -m " + quote(fixture("opt-prenorm").string());
  const std::pair<std::string, std::string> cases[] = {
      {"inspect -m " + quote((tmp.path / "missing").string()), "no such file"},
      {m + " --kv-dtype q4", "--kv-dtype"},
      {m + " -c -1", "-c"},
      {m + " --bogus", "bogus"},
      {"inspect", "--model"},
  };
  for (const auto& [args, needle] : cases) {
    const Result r = run_cli(args);
    SCOPED_TRACE(args);
    EXPECT_CLI_ERROR(r, needle);
  }
}

}  // namespace
