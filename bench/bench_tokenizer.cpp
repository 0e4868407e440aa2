// Encodes about 1 MB of mixed text with each tokenizer family.  The text is the
// corpus of tests/data/tokenizers/corpus.json (its plain-text entries joined by
// "\n"), repeated to 1 MB; tools/reference/bench_tokenizers.py builds the same
// text and times HF tokenizers on it, single-threaded.
#include <benchmark/benchmark.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "runnel/tokenizer.hpp"

namespace {

namespace fs = std::filesystem;
const fs::path kRoot = fs::path(__FILE__).parent_path().parent_path();
const fs::path kData = kRoot / "tests/data/tokenizers";
const fs::path kShared = kRoot.parent_path() / "shared/testdata";

const std::string& bench_text() {
  static const std::string text = [] {
    std::ifstream f(kData / "corpus.json", std::ios::binary);
    const auto corpus = nlohmann::json::parse(f);
    std::string unit;
    for (const auto& e : corpus)
      if (e.contains("text")) unit += e["text"].get<std::string>() + "\n";
    std::string out;
    while (out.size() + unit.size() <= 1000000) out += unit;
    return out;
  }();
  return text;
}

const runnel::Tokenizer* get(const std::string& path) {
  static std::map<std::string, runnel::Tokenizer> cache;
  auto it = cache.find(path);
  if (it == cache.end()) {
    if (!fs::exists(path)) return nullptr;
    it = cache.emplace(path, runnel::load_tokenizer(path)).first;
  }
  return &it->second;
}

void run(benchmark::State& state, const std::string& path) {
  const runnel::Tokenizer* tok = get(path);
  if (!tok) {
    state.SkipWithError(("not found: " + path).c_str());
    return;
  }
  const std::string& text = bench_text();
  size_t n = 0;
  for (auto _ : state) {
    auto ids = tok->encode(text, false);
    n = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["tokens"] = static_cast<double>(n);
}

void BM_EncodeLlama3Json(benchmark::State& s) { run(s, (kData / "llama3/tokenizer.json").string()); }
void BM_EncodeBloomJson(benchmark::State& s) { run(s, (kData / "bloom/tokenizer.json").string()); }
void BM_EncodeOptVocabMerges(benchmark::State& s) { run(s, (kShared / "opt-bpe").string()); }
void BM_EncodeLlamaSpm(benchmark::State& s) { run(s, (kShared / "llama-spm/tokenizer.model").string()); }

void BM_DecodeLlamaSpm(benchmark::State& state) {
  const runnel::Tokenizer* tok = get((kShared / "llama-spm/tokenizer.model").string());
  if (!tok) {
    state.SkipWithError("llama-spm not found");
    return;
  }
  const auto ids = tok->encode(bench_text(), false);
  for (auto _ : state) {
    auto text = tok->decode(ids);
    benchmark::DoNotOptimize(text.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bench_text().size()));
}

BENCHMARK(BM_EncodeLlama3Json)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_EncodeBloomJson)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_EncodeOptVocabMerges)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_EncodeLlamaSpm)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_DecodeLlamaSpm)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
