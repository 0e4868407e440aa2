// Writes a seed corpus for fuzz_gguf: small valid GGUF files (a complete tiny
// llama with an embedded SentencePiece vocabulary in f32, the same with a
// Q8_0, a Q4_0, a Q4_K, a Q5_K and a Q6_K tensor, the f32 one with
// rope_freqs.weight, and a vocabulary-only file).  libFuzzer mutates
// from these, so it starts deep inside the reader instead of at the magic.
//   make_gguf_seeds DIR
#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>

#include "runnel/gguf.hpp"
#include "runnel/tokenizer.hpp"
#include "unit/test_gguf_util.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  try {
    namespace fs = std::filesystem;
    using runnel::gguf::GgmlType;
    const fs::path dir = argv[1];
    fs::create_directories(dir);
    runnel::test::tiny_llama(GgmlType::F32).write((dir / "tiny-llama-f32.gguf").string());
    runnel::test::tiny_llama(GgmlType::Q8_0, 2).write((dir / "tiny-llama-q8_0.gguf").string());
    runnel::test::tiny_llama(GgmlType::Q4_0, 3).write((dir / "tiny-llama-q4_0.gguf").string());
    // One super-block per row of blk.0.attn_q.weight in each K-quant runnel reads.
    runnel::test::tiny_llama(GgmlType::Q4_K, 5).write((dir / "tiny-llama-q4_k.gguf").string());
    runnel::test::tiny_llama(GgmlType::Q5_K, 6).write((dir / "tiny-llama-q5_k.gguf").string());
    runnel::test::tiny_llama(GgmlType::Q6_K, 7).write((dir / "tiny-llama-q6_k.gguf").string());
    runnel::gguf::Writer freqs = runnel::test::tiny_llama(GgmlType::F32, 4);
    const float factors[2] = {1.0f, 4.0f};  // rot_dim 4
    freqs.add_tensor("rope_freqs.weight", GgmlType::F32, {2}, factors, sizeof factors);
    freqs.write((dir / "tiny-llama-rope-freqs.gguf").string());
    runnel::gguf::Writer vocab_only;
    vocab_only.set_string("general.architecture", "llama");
    runnel::gguf::write_vocab(vocab_only, runnel::test::tiny_vocab());
    vocab_only.write((dir / "vocab-only.gguf").string());
    std::printf("make_gguf_seeds: 8 files in %s\n", dir.string().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_gguf_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
