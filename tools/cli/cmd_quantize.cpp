// runnel quantize: rewrite a model (Hugging Face folder, GGUF or llama2.c) as
// GGUF with its matrix weights in another type.  The summary goes to stdout,
// notes (type fallbacks, a tokenizer left out) to stderr.
#include <fmt/core.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <string>

#include "command.hpp"
#include "runnel/gguf.hpp"
#include "runnel/loader.hpp"
#include "runnel/runnel.hpp"

namespace runnel::cli {
namespace {

struct QuantizeArgs {
  std::string model;
  std::string output;
  std::string type;
  std::string tokenizer;
  bool quiet = false;
};

std::string mib(uint64_t bytes) { return fmt::format("{:.2f} MiB", double(bytes) / (1 << 20)); }

int run_quantize(const QuantizeArgs& a) {
  gguf::QuantizeOptions opts = gguf::quantize_type_or_mix(a.type, "--type");  // before the slow part
  opts.tokenizer_path = a.tokenizer;
  opts.note = [](const std::string& s) { std::fprintf(stderr, "runnel quantize: note: %s\n", s.c_str()); };
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(a.output, ec) && fs::exists(a.model, ec) && fs::equivalent(a.output, a.model, ec))
    throw Error(a.output + ": the output would overwrite the input model");

  const Checkpoint ck = open_checkpoint(a.model);
  const gguf::QuantizeReport r = gguf::quantize_checkpoint(ck, a.output, opts);

  std::map<std::string, int> counts;
  for (const gguf::QuantizedTensor& t : r.tensors) {
    const gguf::GgmlTypeInfo* info = gguf::ggml_type_info(uint32_t(t.to));
    ++counts[info ? std::string(info->name) : std::to_string(uint32_t(t.to))];
  }
  std::string per_type;
  for (const auto& [name, n] : counts) per_type += fmt::format("{}{} {}", per_type.empty() ? "" : ", ", n, name);
  if (!a.quiet) {
    std::printf("%s (%s, %s) -> %s (%s)\n", a.model.c_str(), ck.format.c_str(),
                ck.config.family.c_str(), a.output.c_str(), gguf::quantize_type_name(opts).c_str());
    std::printf("  tensors: %zu (%s)\n", r.tensors.size(), per_type.c_str());
    std::printf("  weights: %s -> %s (%.2fx)\n", mib(r.weight_bytes_in).c_str(),
                mib(r.weight_bytes_out).c_str(),
                r.weight_bytes_out ? double(r.weight_bytes_in) / double(r.weight_bytes_out) : 0.0);
    std::printf("  file: %s\n", mib(r.file_bytes).c_str());
    std::printf("  vocabulary: %s\n", r.vocab_source.empty() ? "none" : r.vocab_source.c_str());
  }
  return 0;
}

const Command quantize_cmd("quantize", [](CLI::App& app) {
  app.description("Write a model as GGUF with its matrix weights in another type");
  auto a = std::make_shared<QuantizeArgs>();
  app.add_option("-m,--model", a->model,
                 "Input model: a Hugging Face folder, a GGUF file or a llama2.c .bin")
      ->required();
  app.add_option("-o,--output", a->output, "Output GGUF file")->required();
  app.add_option("--type", a->type,
                 "Type of the matrix weights: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k, "
                 "or llama.cpp's mixes q4_k_m and q5_k_m (norms and biases stay f32)")
      ->required();
  app.add_option("--tokenizer", a->tokenizer,
                 "Tokenizer to embed (file or folder; default: the model's own or one beside it)");
  app.add_flag("-q,--quiet", a->quiet, "Print no summary");
  return [a] { return run_quantize(*a); };
});

}  // namespace
}  // namespace runnel::cli
