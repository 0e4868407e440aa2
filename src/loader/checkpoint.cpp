// Finding and opening a checkpoint: Hugging Face folders, single safetensors
// files, llama2.c .bin files; PyTorch pickles are refused.
#include <fmt/format.h>

#include <cctype>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "loader/llama2c.hpp"
#include "runnel/error.hpp"
#include "runnel/gguf.hpp"
#include "runnel/loader.hpp"

namespace runnel {
namespace {

namespace fs = std::filesystem;

bool exists_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool ends_with_ci(const std::string& s, std::string_view suffix) {
  if (s.size() < suffix.size()) return false;
  for (size_t i = 0; i < suffix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[s.size() - suffix.size() + i])) != suffix[i])
      return false;
  return true;
}

// The first bytes of a file (fewer if it is shorter).
std::string head_bytes(const fs::path& p, size_t n) {
  std::string out(n, '\0');
  FILE* f = std::fopen(p.c_str(), "rb");
  if (!f) throw Error(p.string() + ": cannot open: " + std::strerror(errno));
  out.resize(std::fread(out.data(), 1, n, f));
  std::fclose(f);
  return out;
}

bool looks_like_pickle(const fs::path& p) {
  const std::string name = p.filename().string();
  if (name.rfind("pytorch_model", 0) == 0) return true;
  for (const char* ext : {".pt", ".pth", ".ckpt"})
    if (ends_with(name, ext)) return true;
  const std::string h = head_bytes(p, 4);
  if (h.size() == 4 && h.compare(0, 4, "PK\x03\x04") == 0) return true;  // torch.save's zip
  // Legacy torch.save: a pickle (protocol 2-5) starting with its magic number.
  return h.size() >= 3 && uint8_t(h[0]) == 0x80 && h[1] >= 2 && h[1] <= 5 && uint8_t(h[2]) == 0x8a;
}

void find_tokenizer(const fs::path& dir, Checkpoint& ck) {
  for (const char* name : {"tokenizer.json", "tokenizer.model"})
    if (exists_file(dir / name)) {
      ck.tokenizer_path = dir.string();
      return;
    }
}

void open_hf_folder(const fs::path& dir, Checkpoint& ck) {
  const fs::path config = dir / "config.json";
  if (!exists_file(config))
    throw Error(dir.string() +
                ": no config.json (a Hugging Face model folder has config.json and "
                "model.safetensors)");
  if (exists_file(dir / "model.safetensors.index.json")) {
    ck.config = load_config(config.string());
    load_safetensors_index((dir / "model.safetensors.index.json").string(), ck.weights);
  } else if (exists_file(dir / "model.safetensors")) {
    ck.config = load_config(config.string());
    load_safetensors((dir / "model.safetensors").string(), ck.weights);
  } else if (exists_file(dir / "pytorch_model.bin")) {
    throw Error(pickle_refusal_message((dir / "pytorch_model.bin").string()));
  } else if (exists_file(dir / "pytorch_model.bin.index.json")) {
    throw Error(pickle_refusal_message((dir / "pytorch_model.bin.index.json").string()));
  } else {
    throw Error(dir.string() + ": no model.safetensors or model.safetensors.index.json");
  }
  ck.format = "safetensors";
  find_tokenizer(dir, ck);
}

}  // namespace

std::string pickle_refusal_message(const std::string& path) {
  return path +
         ": PyTorch pickle checkpoints are not loaded, because unpickling can run arbitrary code. "
         "Convert it to safetensors once, in Python:\n"
         "  import torch; from safetensors.torch import save_file\n"
         "  sd = torch.load(\"pytorch_model.bin\", map_location=\"cpu\", weights_only=True)\n"
         "  save_file({k: v.clone().contiguous() for k, v in sd.items()}, \"model.safetensors\", "
         "metadata={\"format\": \"pt\"})\n"
         "and keep config.json beside model.safetensors.";
}

Checkpoint open_checkpoint(const std::string& path) {
  Checkpoint ck;
  ck.path = path;
  std::error_code ec;
  const fs::path p(path);
  const fs::file_status st = fs::status(p, ec);
  if (ec || !fs::exists(st)) throw Error(path + ": no such file or directory");
  if (fs::is_directory(st)) {
    open_hf_folder(p, ck);
    return ck;
  }
  if (!fs::is_regular_file(st)) throw Error(path + ": not a regular file or directory");
  const std::string name = p.filename().string();
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  if (name == "config.json" || name == "model.safetensors.index.json") {
    open_hf_folder(dir, ck);
    return ck;
  }
  if (ends_with(name, ".safetensors")) {
    const fs::path config = dir / "config.json";
    if (!exists_file(config))
      throw Error(path + ": no config.json beside it (needed to know the architecture)");
    ck.config = load_config(config.string());
    load_safetensors(path, ck.weights);
    ck.format = "safetensors";
    find_tokenizer(dir, ck);
    return ck;
  }
  const uint64_t size = fs::file_size(p, ec);
  if (ec) throw Error(path + ": cannot read its size: " + ec.message());
  if (size == 0) throw Error(path + ": the file is empty (0 bytes): not a model");
  if (looks_like_pickle(p)) throw Error(pickle_refusal_message(path));
  const std::string head = head_bytes(p, 4);
  if (head == "GGUF") {
    gguf::load_checkpoint(path, ck);  // sets format "gguf"; the vocabulary travels in the file
    return ck;
  }
  if (ends_with_ci(name, ".gguf")) {
    if (size < 4)
      throw Error(fmt::format("{}: {} bytes is too short to be a GGUF file (it starts with the "
                              "4 bytes \"GGUF\")",
                              path, size));
    throw Error(path + ": not a GGUF file (it does not start with \"GGUF\")");
  }
  // Anything else is taken for a llama2.c checkpoint; its header checks are strict.
  load_llama2c(path, ck.config, ck.weights);
  ck.format = "llama2.c";
  if (exists_file(dir / "tokenizer.bin")) ck.tokenizer_path = (dir / "tokenizer.bin").string();
  return ck;
}

}  // namespace runnel
