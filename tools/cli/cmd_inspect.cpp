// runnel inspect: what a checkpoint is and what running it costs: format,
// architecture, sizes, parameter count, weight dtypes, tokenizer, context and
// a memory estimate (weights + KV cache at a context length).
#include <fmt/core.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "command.hpp"
#include "runnel/kv_cache.hpp"
#include "runnel/loader.hpp"
#include "runnel/model.hpp"
#include "runnel/runnel.hpp"
#include "runnel/tokenizer.hpp"
#include "sampling_flags.hpp"

namespace runnel::cli {
namespace {

namespace fs = std::filesystem;

struct InspectArgs {
  ModelFlags m;
  int64_t ctx = 0;
  bool json = false;
};

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024.0 && u < 4) {
    b /= 1024.0;
    ++u;
  }
  return u == 0 ? fmt::format("{:.0f} B", b) : fmt::format("{:.2f} {}", b, units[u]);
}

std::string human_count(double n) {
  if (n >= 1e9) return fmt::format("{:.2f}B", n / 1e9);
  if (n >= 1e6) return fmt::format("{:.2f}M", n / 1e6);
  if (n >= 1e3) return fmt::format("{:.2f}K", n / 1e3);
  return fmt::format("{:.0f}", n);
}

const char* vocab_model_name(VocabModel m) {
  switch (m) {
    case VocabModel::SentencePieceBpe:
      return "SentencePiece BPE";
    case VocabModel::SentencePieceUnigram:
      return "SentencePiece unigram";
    case VocabModel::ByteLevelBpe:
      return "byte-level BPE";
    case VocabModel::Llama2c:
      return "llama2.c";
  }
  return "unknown";
}

// What kind of tokenizer `path` (a file or folder) holds, from its file name
// and, for tokenizer.json, its model type.
std::string tokenizer_kind(const std::string& path) {
  std::error_code ec;
  fs::path p(path);
  if (fs::is_directory(p, ec)) {
    for (const char* name : {"tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer.bin"})
      if (fs::exists(p / name, ec)) return tokenizer_kind((p / name).string());
    return "unknown";
  }
  const std::string name = p.filename().string();
  const std::string ext = p.extension().string();
  if (ext == ".json" && name != "vocab.json") {
    try {
      const auto j = nlohmann::json::parse(read_text_file(path, "tokenizer"));
      std::string type = j.at("model").value("type", "");
      if (type.empty()) type = j.at("model").contains("merges") ? "BPE" : "Unigram";
      std::string pre;
      if (j.contains("pre_tokenizer") && j["pre_tokenizer"].is_object()) {
        const auto& pt = j["pre_tokenizer"];
        pre = pt.value("type", "");
        if (pre == "Sequence" && pt.contains("pretokenizers") && pt["pretokenizers"].is_array())
          for (const auto& s : pt["pretokenizers"])
            if (s.is_object() && s.value("type", "") == "ByteLevel") pre = "ByteLevel";
      }
      if (pre == "ByteLevel") type = "byte-level " + type;
      return "tokenizer.json (" + type + ")";
    } catch (const std::exception&) {
      return "tokenizer.json";
    }
  }
  if (name == "vocab.json") return "GPT-2 vocab.json + merges.txt (byte-level BPE)";
  if (ext == ".model") return "SentencePiece model";
  if (ext == ".bin") return "llama2.c tokenizer.bin";
  if (ext == ".gguf") return "GGUF vocabulary";
  return name;
}

std::string special_piece(const Tokenizer& tok, int32_t id) {
  if (id < 0 || size_t(id) >= tok.vocab_size()) return "";
  return tok.token_to_piece(id);
}

int run_inspect(const InspectArgs& a) {
  const DType kv = kv_dtype(a.m);
  // The tensors as stored (mapped; nothing is read but headers).
  const Checkpoint ck = open_checkpoint(a.m.model);
  double load_ms = 0;
  auto model = load_model(a.m, &load_ms);
  const ModelConfig& cfg = model->config();

  int64_t params = 0, file_bytes = 0;
  std::map<std::string, int64_t> dtype_count, dtype_params;
  for (const auto& [name, e] : ck.weights.entries()) {
    params += e.tensor.numel();
    file_bytes += int64_t(e.tensor.nbytes());
    const std::string dn(dtype_name(e.tensor.dtype()));
    dtype_count[dn] += 1;
    dtype_params[dn] += e.tensor.numel();
  }
  const int64_t weight_mem = model->stored_weight_bytes();

  const int64_t model_ctx = cfg.max_positions;
  const int64_t ctx = a.ctx > 0 ? a.ctx : (model_ctx > 0 ? model_ctx : 2048);
  const KvCacheOptions kvo = KvCacheOptions::for_model(cfg, kv);
  const int64_t kv_per_token = kvo.block_bytes() / kvo.block_size;
  const int64_t kv_bytes = kvo.blocks_for_tokens(ctx) * kvo.block_bytes();

  const Tokenizer* tok = model->tokenizer();
  std::string tok_kind = "none";
  std::string tok_source;
  if (tok) {
    if (!a.m.tokenizer.empty()) {
      tok_source = a.m.tokenizer;
      tok_kind = tokenizer_kind(a.m.tokenizer);
    } else if (ck.vocab) {
      tok_source = "embedded";
      tok_kind = std::string("GGUF ") + vocab_model_name(ck.vocab->model);
    } else {
      tok_source = ck.tokenizer_path;
      tok_kind = tokenizer_kind(ck.tokenizer_path);
    }
  }
  int64_t n_special = 0;
  if (tok)
    for (size_t i = 0; i < tok->vocab_size(); ++i) n_special += tok->is_special(int32_t(i));

  if (a.json) {
    nlohmann::json j;
    j["path"] = a.m.model;
    j["format"] = model->format();
    j["family"] = cfg.family;
    j["layers"] = cfg.n_layers;
    j["hidden_size"] = cfg.hidden_size;
    j["embed_dim"] = cfg.embed_dim;
    j["heads"] = cfg.n_heads;
    j["kv_heads"] = cfg.n_kv_heads;
    j["head_dim"] = cfg.head_dim;
    j["ffn_dim"] = cfg.ffn_dim;
    j["vocab_size"] = cfg.vocab_size;
    j["position"] = std::string(cfg.position == PositionKind::Learned ? "learned"
                                : cfg.position == PositionKind::Rope  ? "rope"
                                                                      : "alibi");
    j["context_length"] = model_ctx;
    j["parameters"] = params;
    j["tensors"] = ck.weights.size();
    j["tensor_dtypes"] = dtype_count;
    j["file_dtype"] = std::string(dtype_name(model->file_dtype()));
    j["weight_dtype"] = std::string(dtype_name(model->weight_dtype()));
    j["type"] = model->type_name();
    j["weights_mapped"] = model->weights_mapped();
    j["weights_file_bytes"] = file_bytes;
    nlohmann::json t;
    t["present"] = tok != nullptr;
    if (tok) {
      t["kind"] = tok_kind;
      t["source"] = tok_source;
      t["vocab_size"] = tok->vocab_size();
      t["bos_id"] = tok->bos_id();
      t["eos_id"] = tok->eos_id();
      t["pad_id"] = tok->pad_id();
      t["unk_id"] = tok->unk_id();
      t["bos"] = special_piece(*tok, tok->bos_id());
      t["eos"] = special_piece(*tok, tok->eos_id());
      t["special_tokens"] = n_special;
      t["chat_template"] = !tok->chat_template().empty();
    }
    j["tokenizer"] = t;
    nlohmann::json mem;
    mem["ctx"] = ctx;
    mem["kv_dtype"] = std::string(dtype_name(kv));
    mem["weights_bytes"] = weight_mem;
    mem["kv_bytes_per_token"] = kv_per_token;
    mem["kv_cache_bytes"] = kv_bytes;
    mem["total_bytes"] = weight_mem + kv_bytes;
    j["memory"] = mem;
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }

  std::printf("model:          %s\n", a.m.model.c_str());
  std::printf("format:         %s\n", model->format().c_str());
  std::printf("architecture:   %s\n", cfg.family.c_str());
  std::printf("layers:         %lld\n", static_cast<long long>(cfg.n_layers));
  std::printf("hidden size:    %lld (embeddings %lld)\n", static_cast<long long>(cfg.hidden_size),
              static_cast<long long>(cfg.embed_dim));
  std::printf("heads:          %lld (kv heads %lld, head dim %lld)\n",
              static_cast<long long>(cfg.n_heads), static_cast<long long>(cfg.n_kv_heads),
              static_cast<long long>(cfg.head_dim));
  std::printf("ffn size:       %lld\n", static_cast<long long>(cfg.ffn_dim));
  std::printf("vocab size:     %lld\n", static_cast<long long>(cfg.vocab_size));
  std::printf("positions:      %s\n", cfg.position == PositionKind::Learned ? "learned"
                                      : cfg.position == PositionKind::Rope  ? "rope"
                                                                            : "alibi");
  if (model_ctx > 0)
    std::printf("context length: %lld\n", static_cast<long long>(model_ctx));
  else
    std::printf("context length: unlimited (no position table)\n");
  std::printf("parameters:     %lld (%s)\n", static_cast<long long>(params),
              human_count(double(params)).c_str());
  std::string dts;
  for (const auto& [dn, c] : dtype_count)
    dts += fmt::format("{}{}: {} tensors", dts.empty() ? "" : ", ", dn, c);
  std::printf("tensors:        %zu (%s)\n", ck.weights.size(), dts.c_str());
  std::printf("weights:        %s in the file; %s, %s\n",
              human_bytes(double(file_bytes)).c_str(), model->type_name().c_str(),
              model->weights_mapped() ? "mapped from the file" : "converted at load");
  if (tok) {
    std::printf("tokenizer:      %s, %zu tokens (%s)\n", tok_kind.c_str(), tok->vocab_size(),
                tok_source.c_str());
    auto sp = [&](const char* what, int32_t id) {
      if (id >= 0)
        std::printf("  %s: %d %s\n", what, id,
                    nlohmann::json(special_piece(*tok, id)).dump().c_str());
    };
    sp("bos", tok->bos_id());
    sp("eos", tok->eos_id());
    sp("pad", tok->pad_id());
    sp("unk", tok->unk_id());
    std::printf("  special tokens: %lld\n", static_cast<long long>(n_special));
    std::printf("  chat template: %s\n", tok->chat_template().empty() ? "no" : "yes");
  } else {
    std::printf("tokenizer:      none found (pass --tokenizer)\n");
  }
  std::printf("memory at ctx %lld (KV %s):\n", static_cast<long long>(ctx),
              std::string(dtype_name(kv)).c_str());
  std::printf("  weights:  %s\n", human_bytes(double(weight_mem)).c_str());
  std::printf("  KV cache: %s (%s per token)\n", human_bytes(double(kv_bytes)).c_str(),
              human_bytes(double(kv_per_token)).c_str());
  std::printf("  total:    %s\n", human_bytes(double(weight_mem + kv_bytes)).c_str());
  return 0;
}

const Command inspect_cmd("inspect", [](CLI::App& app) {
  app.description("Describe a model and the memory it needs");
  app.footer(
      "Prints the format, architecture, sizes, parameter count, tensors per dtype, whether the "
      "weights are mapped, the tokenizer (kind, vocabulary, special tokens, chat template), the "
      "context length, and a memory estimate: weights + KV cache at -c tokens in --kv-dtype.");
  auto a = std::make_shared<InspectArgs>();
  add_model_flags(app, a->m, /*context=*/false);
  app.add_option("-c,--ctx-size", a->ctx,
                 "Context for the KV-cache estimate (default: the model's, else 2048)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 24));
  app.add_flag("--json", a->json, "Print JSON instead of text");
  return [a] { return run_inspect(*a); };
});

}  // namespace
}  // namespace runnel::cli
