// CPU kernel benchmarks with a measured roofline.
//
//   build/release/bin/bench_kernels [--threads N] [google-benchmark flags]
//
// Before the benchmarks run, two probes measure this machine: the streaming
// read bandwidth over a buffer much larger than the last-level cache, and the
// FMA peak, both with N threads and the selected ISA.  Every matrix-vector
// benchmark then reports GB/s and its % of that bandwidth; every large product
// reports GFLOP/s and its % of the FMA peak.  Matrix-vector weights are cycled
// over enough copies that the working set exceeds the cache.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "cpu/half.hpp"
#include "cpu/kernels.hpp"
#include "runnel/runnel.hpp"

namespace {

using namespace runnel;

int g_threads = 2;
double g_read_gbs = 0;     // measured read bandwidth, GB/s
double g_peak_gflops = 0;  // measured FMA peak, GFLOP/s
size_t g_cycle_bytes = size_t(1) << 30;  // working set of matrix-vector benchmarks

Context& ctx() {
  static Context c(g_threads);
  return c;
}

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// FMA peak: register-only FMA chains on every thread, best of 3; GFLOP/s.
double measure_peak() {
  const cpu::KernelTable& k = cpu::kernels();
  const int64_t iters = 20'000'000;
  volatile float sink = 0;
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const double t0 = now();
    ctx().pool.run([&](int, int) { sink = k.fma_probe(iters); });
    const double dt = now() - t0;
    best = std::max(best, double(iters) * double(k.fma_probe_flops) * g_threads / dt / 1e9);
  }
  (void)sink;
  return best;
}

void measure_roofline() {
  const cpu::KernelTable& k = cpu::kernels();
  // Read bandwidth: each thread streams its own slice of a 1 GiB buffer.
  const size_t n = g_cycle_bytes / sizeof(float);
  auto buf = std::make_unique<HostBuffer>(n * sizeof(float));
  float* p = static_cast<float*>(buf->data());
  ctx().pool.parallel_for(int64_t(n), 4096, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) p[i] = float(i & 7);
  });
  double best = 0;
  volatile float sink = 0;
  for (int rep = 0; rep < 5; ++rep) {
    const double t0 = now();
    ctx().pool.parallel_for(int64_t(n), 1 << 16, [&](int64_t b, int64_t e) { sink = k.read_probe(p + b, e - b); });
    const double dt = now() - t0;
    best = std::max(best, double(n * sizeof(float)) / dt / 1e9);
  }
  g_read_gbs = best;
  g_peak_gflops = measure_peak();
  (void)sink;
}

// Weights of one dtype, replicated so that cycling through them streams from memory.
struct WeightSet {
  std::vector<std::unique_ptr<HostBuffer>> copies;
  int64_t n, k;
  DType dt;
  WeightSet(DType dt_, int64_t n_, int64_t k_) : n(n_), k(k_), dt(dt_) {
    const size_t bytes = size_t(n) * row_bytes(dt, k);
    const size_t count = std::max<size_t>(2, (g_cycle_bytes + bytes - 1) / bytes);
    // One copy converted (the reference quantizers are slow), the others
    // copied from it: the product's speed does not depend on the values.
    for (size_t c = 0; c < count; ++c) {
      copies.push_back(std::make_unique<HostBuffer>(bytes));
      char* base = static_cast<char*>(copies.back()->data());
      if (c > 0) {
        const char* first = static_cast<const char*>(copies.front()->data());
        ctx().pool.parallel_for(int64_t(bytes), 1 << 20, [&](int64_t b0, int64_t b1) {
          std::memcpy(base + b0, first + b0, size_t(b1 - b0));
        });
        continue;
      }
      ctx().pool.parallel_for(n, 64, [&](int64_t r0, int64_t r1) {
        std::vector<float> tmp(static_cast<size_t>(k));
        for (int64_t r = r0; r < r1; ++r) {
          for (int64_t i = 0; i < k; ++i) tmp[size_t(i)] = float((r * 31 + i * 17) % 97) / 97.0f - 0.5f;
          traits(dt).from_float(tmp.data(), base + size_t(r) * row_bytes(dt, k), k);
        }
      });
    }
  }
  Tensor tensor(size_t i) const {
    return Tensor::view(copies[i % copies.size()]->data(), dt, {n, k});
  }
};

// Streams every copy of the weights once with the read probe, split over the
// threads as the matrix-vector kernel splits them; returns GB/s.
double probe_weights(const WeightSet& ws) {
  const cpu::KernelTable& k = cpu::kernels();
  const size_t bytes = size_t(ws.n) * row_bytes(ws.dt, ws.k);
  volatile float sink = 0;
  const double t0 = now();
  for (const auto& c : ws.copies) {
    const float* p = static_cast<const float*>(c->data());
    ctx().pool.parallel_for(int64_t(bytes / 4), 1 << 14, [&](int64_t b, int64_t e) { sink = k.read_probe(p + b, e - b); });
  }
  (void)sink;
  return double(bytes) * double(ws.copies.size()) / (now() - t0) / 1e9;
}

// `f32_act`: the quantized weights through the kernel table's f32-activation
// kernels (matmul[dtype], split over the threads as ops::matmul splits them)
// instead of ops::matmul's int8-activation path: the before/after pair.
void BM_Matvec(benchmark::State& state, DType dt, bool f32_act) {
  const int64_t n = state.range(0), k = state.range(1), m = state.range(2);
  WeightSet ws(dt, n, k);
  std::vector<float> x(size_t(m * k), 0.01f), y(size_t(m * n));
  // The probe runs on the same memory right before and after the product, so
  // the ratio compares the two under the same machine conditions.
  double probe = probe_weights(ws);
  size_t i = 0;
  const double t0 = now();
  const cpu::MatmulFn f32_kernel = cpu::kernels().matmul[int(dt)];
  if (f32_act && !f32_kernel) {
    state.SkipWithError("no f32-activation kernel for this dtype");
    return;
  }
  for (auto _ : state) {
    if (f32_act) {
      const cpu::MatmulArgs a{x.data(), k, ws.copies[i++ % ws.copies.size()]->data(), int64_t(row_bytes(dt, k)),
                              nullptr, y.data(), n, m, k};
      ctx().pool.parallel_for(n, 16, [&](int64_t j0, int64_t j1) { f32_kernel(a, j0, j1); });
    } else {
      ops::matmul(ctx(), Tensor::view(x.data(), DType::F32, {m, k}), ws.tensor(i++), nullptr,
                  Tensor::view(y.data(), DType::F32, {m, n}));
    }
    benchmark::DoNotOptimize(y.data());
  }
  const double dt_s = now() - t0;
  probe = std::max(probe, probe_weights(ws));
  const double bytes = double(n) * double(row_bytes(dt, k));
  const double gbs = bytes * double(state.iterations()) / dt_s / 1e9;
  state.counters["GB/s"] = gbs;
  state.counters["probe_GB/s"] = probe;
  state.counters["pct_bw"] = 100.0 * gbs / probe;
  state.SetLabel(std::string(dtype_name(dt)) + " weights" + (f32_act ? " (f32 activations)" : "") + ", " +
                 std::to_string(ws.copies.size()) + " copies");
}

void BM_Prompt(benchmark::State& state, DType dt, bool dnnl) {
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  WeightSet ws(dt, n, k);
  std::vector<float> x(size_t(m * k), 0.01f), y(size_t(m * n));
  ctx().cpu.use_dnnl = dnnl;
  double peak = measure_peak();
  const double t0 = now();
  for (auto _ : state) {
    ops::matmul(ctx(), Tensor::view(x.data(), DType::F32, {m, k}), ws.tensor(0), nullptr,
                Tensor::view(y.data(), DType::F32, {m, n}));
    benchmark::DoNotOptimize(y.data());
  }
  const double dt_s = now() - t0;
  peak = std::max(peak, measure_peak());
  ctx().cpu.use_dnnl = true;
  const double gflops = 2.0 * double(m) * double(n) * double(k) * double(state.iterations()) / dt_s / 1e9;
  state.counters["GFLOP/s"] = gflops;
  state.counters["peak_GFLOP/s"] = peak;
  state.counters["pct_peak"] = 100.0 * gflops / peak;
  state.SetLabel(std::string(dtype_name(dt)) + (dnnl ? " oneDNN" : " runnel-blocked"));
}

void register_all() {
  // Quantized weights also through the f32-activation kernels (matvec_f32act/):
  // the int8-activation path's baseline.  K-quant rows need k % 256 == 0,
  // so their w2 shape has k = 11264 (11008 rounded up).
  for (DType dt : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q4_K,
                   DType::Q5_K, DType::Q6_K}) {
    for (bool f32_act : {false, true}) {
      const bool quant = traits(dt).block_size > 1;
      if (f32_act && (!quant || traits(dt).block_size == 256)) continue;
      const std::string name = std::string(f32_act ? "matvec_f32act/" : "matvec/") + std::string(dtype_name(dt));
      auto* b = benchmark::RegisterBenchmark(name.c_str(), BM_Matvec, dt, f32_act);
      // LLaMA-7B shapes [n, k]: wq/wo, w1/w3, w2; m = rows of x (1 = decode).
      const int64_t k_w2 = traits(dt).block_size == 256 ? 11264 : 11008;
      b->Args({4096, 4096, 1})->Args({11008, 4096, 1})->Args({4096, k_w2, 1})->Args({4096, 4096, 4});
      b->ArgNames({"n", "k", "m"})->UseRealTime()->MinTime(0.5);
    }
  }
  for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
    for (bool dnnl : {true, false}) {
      const std::string name = std::string("prompt/") + std::string(dtype_name(dt)) + (dnnl ? "/onednn" : "/runnel");
      benchmark::RegisterBenchmark(name.c_str(), BM_Prompt, dt, dnnl)
          ->Args({512, 4096, 4096})
          ->ArgNames({"m", "n", "k"})
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond)
          ->MinTime(1.0);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  // Our own flags first; the rest go to Google Benchmark.
  std::vector<char*> rest{argv[0]};
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc) g_threads = std::atoi(argv[++i]);
    else if (std::strncmp(argv[i], "--threads=", 10) == 0) g_threads = std::atoi(argv[i] + 10);
    else if (std::strcmp(argv[i], "--cycle-mb") == 0 && i + 1 < argc) g_cycle_bytes = size_t(std::atoll(argv[++i])) << 20;
    else rest.push_back(argv[i]);
  }
  if (g_threads < 1) {
    std::fprintf(stderr, "bench_kernels: --threads must be at least 1\n");
    return 2;
  }
  int rc = static_cast<int>(rest.size());
  benchmark::Initialize(&rc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(rc, rest.data())) return 2;
  measure_roofline();
  std::printf("threads: %d  isa: %s\nroofline: read bandwidth %.1f GB/s, FMA peak %.1f GFLOP/s\n", g_threads,
              cpu_isa(), g_read_gbs, g_peak_gflops);
  benchmark::AddCustomContext("threads", std::to_string(g_threads));
  benchmark::AddCustomContext("isa", cpu_isa());
  benchmark::AddCustomContext("read_bandwidth_GBps", std::to_string(g_read_gbs));
  benchmark::AddCustomContext("fma_peak_GFLOPps", std::to_string(g_peak_gflops));
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
