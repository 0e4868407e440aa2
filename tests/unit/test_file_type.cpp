// The type a model's weights are named by (as llama.cpp names a file's type)
// and the bytes they take as stored, on a GGUF that mixes types as
// llama.cpp's Q4_1 files do: Q4_1 matrices and a Q8_0 token embedding.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <random>
#include <string>
#include <vector>

#include "runnel/gguf.hpp"
#include "runnel/model.hpp"
#include "test_cli_util.hpp"
#include "test_gguf_util.hpp"

namespace {

using namespace runnel;
using gguf::GgmlType;
using runnel::clitest::quote;
using runnel::clitest::Result;
using runnel::clitest::run_cli;

// A llama model of hidden 32 (2 heads of 16, 1 kv head), ffn 64, 2 layers,
// the 16-token tiny vocabulary and a tied head; its 14 matrices are stored
// as `matrix`, the token embedding as `embedding`.  `file_type` >= 0 is
// written as general.file_type.
gguf::Writer mixed_llama(GgmlType matrix, GgmlType embedding, int64_t file_type = -1) {
  gguf::Writer w;
  w.set_string("general.architecture", "llama");
  if (file_type >= 0) w.set_u32("general.file_type", uint32_t(file_type));
  const int64_t H = 32, F = 64, L = 2, V = 16, KV = 16;
  w.set_u32("llama.context_length", 64);
  w.set_u32("llama.embedding_length", uint32_t(H));
  w.set_u32("llama.block_count", uint32_t(L));
  w.set_u32("llama.feed_forward_length", uint32_t(F));
  w.set_u32("llama.attention.head_count", 2);
  w.set_u32("llama.attention.head_count_kv", 1);
  w.set_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  gguf::write_vocab(w, test::tiny_vocab());
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> d(-0.5f, 0.5f);
  auto add = [&](const std::string& name, std::vector<int64_t> shape, GgmlType type) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    std::vector<float> x(static_cast<size_t>(n));
    for (float& f : x) f = shape.size() == 1 ? 1.0f : d(rng);
    const DType dt = *gguf::ggml_type_info(uint32_t(type))->dtype;
    std::vector<uint8_t> bytes(row_bytes(dt, n));
    traits(dt).from_float(x.data(), bytes.data(), n);
    w.add_tensor(name, type, shape, bytes.data(), bytes.size());
  };
  add("token_embd.weight", {V, H}, embedding);
  for (int64_t l = 0; l < L; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    add(b + "attn_norm.weight", {H}, GgmlType::F32);
    add(b + "attn_q.weight", {H, H}, matrix);
    add(b + "attn_k.weight", {KV, H}, matrix);
    add(b + "attn_v.weight", {KV, H}, matrix);
    add(b + "attn_output.weight", {H, H}, matrix);
    add(b + "ffn_norm.weight", {H}, GgmlType::F32);
    add(b + "ffn_gate.weight", {F, H}, matrix);
    add(b + "ffn_up.weight", {F, H}, matrix);
    add(b + "ffn_down.weight", {H, F}, matrix);
  }
  add("output_norm.weight", {H}, GgmlType::F32);
  return w;
}

// Bytes of every tensor of `path` in its stored type.
int64_t tensor_bytes(const std::string& path) {
  // The file must outlive the loop: tensors() refers into it.
  const auto file = gguf::File::open(path);
  int64_t n = 0;
  for (const gguf::TensorInfo& t : file.tensors()) n += int64_t(t.nbytes);
  return n;
}

TEST(FileType, MostMatricesNameTheType) {
  test::GgufTempDir tmp;
  const std::string path = tmp.file("q4_1.gguf");
  mixed_llama(GgmlType::Q4_1, GgmlType::Q8_0).write(path);
  LoadOptions o;
  o.threads = 1;
  const auto m = Model::load(path, o);
  EXPECT_TRUE(m->weights_mapped());
  EXPECT_EQ(m->type_name(), "Q4_1");
  EXPECT_EQ(m->file_dtype(), DType::Q4_1);
  EXPECT_EQ(m->weight_dtype(), DType::Q4_1);
  EXPECT_EQ(m->stored_weight_bytes(), tensor_bytes(path));
  // Not the size the whole model would take in the embedding's type.
  EXPECT_LT(m->stored_weight_bytes(), Model::weight_bytes(m->config(), DType::Q8_0));
}

TEST(FileType, GeneralFileTypeNamesTheType) {
  test::GgufTempDir tmp;
  const std::string path = tmp.file("q4_k_m.gguf");
  mixed_llama(GgmlType::Q5_0, GgmlType::Q8_0, gguf::kFileTypeQ4_K_M).write(path);
  LoadOptions o;
  o.threads = 1;
  EXPECT_EQ(Model::load(path, o)->type_name(), "Q4_K - Medium");
  // Converted at load, the weights are no longer the file's type.
  o.dtype = DType::F16;
  const auto f16 = Model::load(path, o);
  EXPECT_EQ(f16->type_name(), "F16");
  EXPECT_EQ(f16->weight_dtype(), DType::F16);
  EXPECT_EQ(f16->file_dtype(), DType::Q5_0);
  EXPECT_GT(f16->stored_weight_bytes(), tensor_bytes(path));
}

TEST(FileType, NamesOfLlamaCppFileTypes) {
  EXPECT_EQ(gguf::file_type_name(0), "all F32");
  EXPECT_EQ(gguf::file_type_name(1), "F16");
  EXPECT_EQ(gguf::file_type_name(3), "Q4_1");
  EXPECT_EQ(gguf::file_type_name(7), "Q8_0");
  EXPECT_EQ(gguf::file_type_name(15), "Q4_K - Medium");
  EXPECT_EQ(gguf::file_type_name(18), "Q6_K");
  EXPECT_EQ(gguf::file_type_name(32), "BF16");
  EXPECT_EQ(gguf::file_type_name(4), "");  // removed from llama.cpp
  EXPECT_EQ(gguf::file_type_name(-1), "");
  EXPECT_EQ(gguf::file_type_name(1000), "");
}

// generate, inspect and bench name the type as the file's and give the
// weights' stored size.
TEST(FileType, CommandsNameTheFileType) {
  test::GgufTempDir tmp;
  const std::string path = tmp.file("q4_1.gguf");
  mixed_llama(GgmlType::Q4_1, GgmlType::Q8_0).write(path);
  const int64_t bytes = tensor_bytes(path);

  const Result g = run_cli("generate -m " + quote(path) + " -p ab -n 2 -t 1");
  ASSERT_EQ(g.code, 0) << g.err;
  EXPECT_NE(g.err.find("(gguf, Q4_1 weights, mapped)"), std::string::npos) << g.err;

  const Result i = run_cli("inspect -m " + quote(path) + " -t 1");
  ASSERT_EQ(i.code, 0) << i.err;
  EXPECT_NE(i.out.find("in the file; Q4_1, mapped from the file"), std::string::npos) << i.out;
  EXPECT_EQ(i.out.find("q8_0"), i.out.find("q8_0: 1 tensors")) << i.out;  // only the tensor count
  const Result ij = run_cli("inspect -m " + quote(path) + " -t 1 --json");
  ASSERT_EQ(ij.code, 0) << ij.err;
  const auto j = nlohmann::json::parse(ij.out);
  EXPECT_EQ(j["type"], "Q4_1");
  EXPECT_EQ(j["weight_dtype"], "q4_1");
  EXPECT_EQ(j["memory"]["weights_bytes"].get<int64_t>(), bytes);

  const Result b = run_cli("bench -m " + quote(path) + " -p 4 -n 0 -r 1 -t 1 -o jsonl");
  ASSERT_EQ(b.code, 0) << b.err;
  const auto row = nlohmann::json::parse(b.out.substr(0, b.out.find('\n')));
  EXPECT_EQ(row["model"], "q4_1.gguf Q4_1");
  EXPECT_EQ(row["dtype"], "q4_1");
  EXPECT_EQ(row["size_bytes"].get<int64_t>(), bytes);
}

}  // namespace
