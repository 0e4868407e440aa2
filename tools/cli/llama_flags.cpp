#include "llama_flags.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <map>
#include <memory>

#include "progress.hpp"
#include "runnel/error.hpp"

namespace runnel::cli {
namespace {

// llama.cpp's multi-letter single-dash spellings and their long forms.
const std::map<std::string, std::string>& dash_aliases() {
  static const std::map<std::string, std::string> m = {
      {"-ngl", "--n-gpu-layers"},  {"-fa", "--flash-attn"},      {"-cnv", "--conversation"},
      {"-no-cnv", "--no-conversation"}, {"-sys", "--system-prompt"},
      {"-ub", "--ubatch-size"},    {"-tb", "--threads-batch"},   {"-co", "--color"},
      {"-ctk", "--cache-type-k"},  {"-ctv", "--cache-type-v"},   {"-np", "--parallel"},
      {"-npl", "--parallel"},      {"-dev", "--device"},         {"-mmp", "--mmap"},
      {"-nkvo", "--no-kv-offload"}, {"-sm", "--split-mode"},     {"-ts", "--tensor-split"},
      {"-mg", "--main-gpu"},       {"-hf", "--hf-repo"},         {"-hfr", "--hf-repo"},
      {"-hff", "--hf-file"},       {"-mu", "--model-url"},       {"-ot", "--override-tensor"},
      {"-md", "--model-draft"},    {"-jf", "--json-schema-file"}, {"-cml", "--chatml"},
      {"-mli", "--multiline-input"}, {"-st", "--single-turn"},  {"-pg", "--n-prompt-gen"},
      {"-embd", "--embeddings"},   {"-sysf", "--system-prompt-file"},
  };
  return m;
}

// Flags whose value llama.cpp makes optional, with the value meant when none
// is given ("-fa" alone is "-fa on").
const std::map<std::string, std::vector<std::string>>& optional_values() {
  static const std::map<std::string, std::vector<std::string>> m = {
      {"--flash-attn", {"on", "off", "auto", "1", "0", "true", "false", "enabled", "disabled"}},
      {"--color", {"on", "off", "auto", "1", "0", "true", "false", "always", "never"}},
  };
  return m;
}

bool is_multi_letter_dash(const std::string& a) {
  return a.size() >= 3 && a[0] == '-' && a[1] != '-' && std::isalpha(static_cast<unsigned char>(a[1])) &&
         std::isalpha(static_cast<unsigned char>(a[2]));
}

const CLI::Option* find_option(const CLI::App& top, const CLI::App* sub, const std::string& name) {
  if (sub)
    if (const CLI::Option* o = sub->get_option_no_throw(name)) return o;
  return top.get_option_no_throw(name);
}

struct Refusal {
  CLI::Option* option;
  std::string name;  // the first name given to add_refused
  std::string why;
};
std::map<const CLI::App*, std::vector<Refusal>>& refusals() {
  static std::map<const CLI::App*, std::vector<Refusal>> r;
  return r;
}

}  // namespace

void translate_args(std::vector<std::string>& args, const CLI::App& top, const CLI::App* sub) {
  for (size_t i = 0; i < args.size(); ++i) {
    std::string& a = args[i];
    if (a == "--") break;
    if (a.size() < 2 || a[0] != '-') continue;
    const size_t eq = a.find('=');
    std::string name = a.substr(0, eq);
    const std::string value = eq == std::string::npos ? std::string() : a.substr(eq);
    if (is_multi_letter_dash(name)) {
      const auto it = dash_aliases().find(name);
      if (it == dash_aliases().end()) {
        // A value such as "-inf" only follows a flag that takes one; those
        // were skipped below, so this word is in a flag's place.
        throw Error(fmt::format(
            "{}: unknown flag (runnel's flags are --name or a single letter, -x; see 'runnel{}{} "
            "--help')",
            name, sub ? " " : "", sub ? sub->get_name() : ""));
      }
      name = it->second;
      a = name + value;
    }
    const CLI::Option* opt = find_option(top, sub, name);
    if (!opt || !value.empty()) continue;
    const auto ov = optional_values().find(name);
    if (ov != optional_values().end()) {
      const bool has_value = i + 1 < args.size() &&
                             std::find(ov->second.begin(), ov->second.end(), args[i + 1]) !=
                                 ov->second.end();
      if (!has_value) args.insert(args.begin() + std::ptrdiff_t(i) + 1, ov->second.front());
      ++i;
      continue;
    }
    // Skip the value of an option that takes one, so that a value such as
    // "-1" or "-x" is not read as a flag.
    if (opt->get_items_expected_min() > 0) ++i;
  }
}

void add_refused(CLI::App& app, const std::string& names, bool takes_value, std::string why) {
  // One option per name, so that the error names the flag as it was typed.
  static std::vector<std::shared_ptr<std::string>> sinks;  // values of refused options
  size_t pos = 0;
  while (pos <= names.size()) {
    const size_t end = std::min(names.find(',', pos), names.size());
    const std::string name = names.substr(pos, end - pos);
    pos = end + 1;
    if (name.empty()) continue;
    CLI::Option* o = nullptr;
    if (takes_value) {
      sinks.push_back(std::make_shared<std::string>());
      o = app.add_option(name, *sinks.back());
    } else {
      o = app.add_flag(name);
    }
    o->group("");
    refusals()[&app].push_back({o, name, why});
  }
}

void check_refused(const CLI::App& app) {
  const auto it = refusals().find(&app);
  if (it == refusals().end()) return;
  for (const Refusal& r : it->second)
    if (r.option->count() > 0) throw Error(r.name + ": " + r.why);
}

void add_device_flags(CLI::App& app, DeviceFlags& f) {
  const std::string g = "llama.cpp compatibility";
  app.add_option("--n-gpu-layers,--gpu-layers", f.n_gpu_layers,
                 "-ngl: layers to run on the GPU; this build runs every layer on the CPU, so any "
                 "value is accepted with a warning when above 0")
      ->check(CLI::Range(-1, 1 << 20))
      ->group(g);
  app.add_option("--flash-attn", f.flash_attn,
                 "-fa [on|off|auto]: accepted; runnel's attention is always one fused pass over "
                 "the cache, so the value changes nothing")
      ->check(CLI::IsMember({"on", "off", "auto", "1", "0", "true", "false", "enabled", "disabled"}))
      ->group(g);
  app.add_flag("--no-mmap", f.no_mmap,
               "Read the weights into memory instead of mapping the file")
      ->group(g);
  app.add_flag("--mlock", f.mlock, "Lock the weights in memory (mlock), so they are never paged out")
      ->group(g);
  app.add_flag("--no-kv-offload", f.no_kv_offload,
               "-nkvo: accepted; the KV cache is on the device the layers run on (the CPU here)")
      ->group(g);
  const std::string one_device = "runnel runs a model on one device; it has no multi-GPU split";
  add_refused(app, "--split-mode", true, one_device);
  add_refused(app, "--tensor-split", true, one_device);
  add_refused(app, "--main-gpu", true, one_device);
  add_refused(app, "--hf-repo,--hf-file,--model-url", true,
              "runnel does not download models; download the GGUF file (or Hugging Face folder) "
              "and pass -m PATH");
  add_refused(app, "--lora,--lora-scaled,--control-vector", true,
              "LoRA adapters and control vectors are not supported");
  add_refused(app, "--override-tensor,--override-kv", true,
              "tensor and metadata overrides are not supported");
  add_refused(app, "--model-draft", true, "speculative decoding is not supported");
  add_refused(app, "--numa", true, "NUMA placement is not supported; -t sets the threads");
  add_refused(app, "--threads-batch", true,
              "runnel uses the -t threads for prompts and generation alike");
  add_refused(app,
              "--rope-scaling,--rope-scale,--rope-freq-base,--rope-freq-scale,--yarn-orig-ctx,"
              "--yarn-ext-factor,--yarn-attn-factor,--yarn-beta-fast,--yarn-beta-slow",
              true, "runnel takes the RoPE settings from the model's config or GGUF metadata");
}

void warn_device_flags(const DeviceFlags& f) {
  if (f.n_gpu_layers != 0 && log_enabled(LogLevel::Warn))
    std::fputs("runnel: warning: --n-gpu-layers: this build has no GPU compute; every layer runs "
               "on the CPU\n",
               stderr);
}

}  // namespace runnel::cli
