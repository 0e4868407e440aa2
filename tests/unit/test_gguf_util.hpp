#pragma once
// Helpers for the GGUF tests: a tiny but complete llama GGUF built in memory.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "runnel/gguf.hpp"
#include "runnel/tokenizer.hpp"

namespace runnel::test {

// A SentencePiece vocabulary of 16 tokens: <unk> <s> </s>, three byte tokens,
// then pieces with scores.
inline Vocab tiny_vocab() {
  Vocab v;
  v.model = VocabModel::SentencePieceBpe;
  v.tokens = {"<unk>",
              "<s>",
              "</s>",
              "<0x0A>",
              "<0x41>",
              "<0x42>",
              "\xE2\x96\x81",
              "a",
              "b",
              "c",
              "ab",
              "\xE2\x96\x81"
              "a",
              "\xE2\x96\x81"
              "ab",
              "bc",
              "abc",
              "\xE2\x96\x81"
              "b"};
  for (size_t i = 0; i < v.tokens.size(); ++i) v.scores.push_back(-float(i));
  v.types.assign(v.tokens.size(), TokenType::Normal);
  v.types[0] = TokenType::Unknown;
  v.types[1] = v.types[2] = TokenType::Control;
  v.types[3] = v.types[4] = v.types[5] = TokenType::Byte;
  v.bos_id = 1;
  v.eos_id = 2;
  v.unk_id = 0;
  v.add_bos = true;
  v.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}";
  return v;
}

// A llama model: hidden 8, 2 heads of 4 (1 kv head), ffn 16, 2 layers, vocab
// 16, untied head; attn_q of block 0 stored as `q_type` (F32 or a quantized
// type with block size 32, for which its rows are widened to 32).
inline gguf::Writer tiny_llama(gguf::GgmlType q_type = gguf::GgmlType::F32, uint32_t seed = 1) {
  using gguf::GgmlType;
  gguf::Writer w;
  w.set_string("general.architecture", "llama");
  w.set_string("general.name", "tiny");
  const int64_t H = 8, F = 16, L = 2, V = 16, KV = 4;
  w.set_u32("llama.context_length", 64);
  w.set_u32("llama.embedding_length", uint32_t(H));
  w.set_u32("llama.block_count", uint32_t(L));
  w.set_u32("llama.feed_forward_length", uint32_t(F));
  w.set_u32("llama.attention.head_count", 2);
  w.set_u32("llama.attention.head_count_kv", 1);
  w.set_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.set_f32("llama.rope.freq_base", 10000.0f);
  w.set_u32("llama.rope.dimension_count", 4);
  gguf::write_vocab(w, tiny_vocab());
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-0.5f, 0.5f);
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    size_t n = 1;
    for (int64_t s : shape) n *= size_t(s);
    std::vector<float> x(n);
    for (float& f : x) f = d(rng);
    w.add_tensor(name, GgmlType::F32, shape, x.data(), n * 4);
  };
  add("token_embd.weight", {V, H});
  for (int64_t l = 0; l < L; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    add(b + "attn_norm.weight", {H});
    if (l == 0 && q_type != GgmlType::F32) {
      const gguf::GgmlTypeInfo* ti = gguf::ggml_type_info(uint32_t(q_type));
      const int64_t cols = ti->block_size;  // one block per row
      std::vector<uint8_t> raw(size_t(H * ti->type_size), 0x11);
      w.add_tensor(b + "attn_q.weight", q_type, {H, cols}, raw.data(), raw.size());
    } else {
      add(b + "attn_q.weight", {H, H});
    }
    add(b + "attn_k.weight", {KV, H});
    add(b + "attn_v.weight", {KV, H});
    add(b + "attn_output.weight", {H, H});
    add(b + "ffn_norm.weight", {H});
    add(b + "ffn_gate.weight", {F, H});
    add(b + "ffn_up.weight", {F, H});
    add(b + "ffn_down.weight", {H, F});
  }
  add("output_norm.weight", {H});
  add("output.weight", {V, H});
  return w;
}

// A scratch directory removed at the end of the test.
struct GgufTempDir {
  std::filesystem::path path;
  GgufTempDir() {
    static int n = 0;
    path = std::filesystem::temp_directory_path() /
           ("runnel-gguf-" + std::to_string(::getpid()) + "-" + std::to_string(n++));
    std::filesystem::create_directories(path);
  }
  ~GgufTempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), std::streamsize(bytes.size()));
}

}  // namespace runnel::test
