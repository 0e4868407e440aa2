#pragma once
// What llama.cpp users type by habit (llama-cli, llama-bench, llama-perplexity).
//
// llama.cpp spells some flags with one dash and several letters (-ngl, -fa,
// -cnv, -sys, -ub, ...), which CLI11 would read as a one-letter flag with an
// attached value (-ngl 99 -> -n gl).  translate_args() rewrites them to their
// long spellings before CLI11 parses, and refuses any other multi-letter
// single-dash word in a flag's place.  Flags whose meaning runnel does not
// have are declared with add_refused(): they parse, and check_refused() then
// names the flag and what runnel takes instead, in one line.
#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace runnel::cli {

// Rewrites llama.cpp's multi-letter single-dash flags (also "-flag=value") to
// their long spellings, gives flags with an optional value (--flash-attn,
// --color) their default when none follows, and throws runnel::Error naming
// an unknown multi-letter single-dash flag.  `sub` is the subcommand the
// arguments belong to (its options tell which words are values).  Stops at
// "--".
void translate_args(std::vector<std::string>& args, const CLI::App& top, const CLI::App* sub);

// Declares `names` (CLI11 spelling, e.g. "--grammar,--grammar-file") on `app`
// as a flag runnel refuses with `why`.  With `takes_value` the flag swallows
// one value.  Hidden from --help.
void add_refused(CLI::App& app, const std::string& names, bool takes_value, std::string why);
// Throws runnel::Error "FLAG: WHY" for the first refused flag `app` parsed.
void check_refused(const CLI::App& app);

// The flags about devices and memory that llama.cpp's tools share:
// -ngl/--n-gpu-layers/--gpu-layers, -fa/--flash-attn, --no-mmap, --mlock, and
// the refused multi-GPU ones (--split-mode, --tensor-split, --main-gpu,
// --no-kv-offload is accepted: the cache is where the weights are).
struct DeviceFlags {
  int n_gpu_layers = 0;
  std::string flash_attn = "auto";
  bool no_mmap = false;
  bool mlock = false;
  bool no_kv_offload = false;
};
void add_device_flags(CLI::App& app, DeviceFlags& f);
// Warnings for flags that change nothing on this build (-ngl > 0 without a GPU
// backend), at --log-level warn.
void warn_device_flags(const DeviceFlags& f);

}  // namespace runnel::cli
