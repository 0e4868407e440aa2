// Checks runnel's K-quant kernels against ggml's own functions, loaded at run
// time from llama-cpp-python's libggml-base.so / libggml-cpu.so, on every Q4_K
// and Q6_K tensor of a GGUF file.  Not part of the runnel build or its tests.
//
// Per tensor:
//   dequantization: ggml's dequantize_row_q4_K / _q6_K against runnel's
//     scalar reference (traits().to_float) and the to_f32 kernel of every ISA
//     this CPU runs; bit-exact expected (max |d| = 0, no differing bits).
//   activations: one fixed N(0, 1) vector x quantized to Q8_K by ggml's
//     quantize_row_q8_K and by runnel (from_f32[Q8_K] of every ISA); bytes
//     compared.
//   dot products: each weight row against x's Q8_K row, ggml's
//     ggml_vec_dot_q*_K_q8_K against runnel's qmatmul (every ISA); both are
//     float sums in different orders, so only max |d| / max |ggml dot| is
//     reported.
//
// Build from the repository root, after building runnel in build/kq (one
// command; see bench/compare/README.md, "K-quants (Q4_K_M)"):
//   g++ -O2 -std=c++20 -Iinclude -Ikernels -Ibuild/kq/include
//     bench/compare/kquant_check.cpp build/kq/src/librunnel.a
//     build/kq/kernels/librunnel_kernels.a -ldnnl -lfmt -lpcre2-8 -lutf8proc
//     -lgomp -lpthread -ldl -o build/kq/kquant_check
//   build/kq/kquant_check FILE.gguf bench/compare/.venv/lib/python3.*/site-packages/llama_cpp/lib
#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "cpu/kernels.hpp"
#include "runnel/dtype.hpp"
#include "runnel/error.hpp"
#include "runnel/gguf.hpp"

namespace {

using DequantFn = void (*)(const void* x, float* y, int64_t k);
using QuantFn = void (*)(const float* x, void* y, int64_t k);
using VecDotFn = void (*)(int n, float* s, size_t bs, const void* vx, size_t bx, const void* vy,
                          size_t by, int nrc);

void* sym(void* lib, const char* name) {
  void* p = dlsym(lib, name);
  if (!p) {
    std::fprintf(stderr, "dlsym %s: %s\n", name, dlerror());
    std::exit(2);
  }
  return p;
}

struct Stats {
  int tensors = 0;
  int64_t elements = 0;
  int64_t differing = 0;  // elements whose bits differ
  double max_abs = 0;
  double max_rel_dot = 0;
  int64_t q8k_bytes_differing = 0;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s FILE.gguf LLAMA_CPP_LIB_DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[2];
  void* base = dlopen((dir + "/libggml-base.so").c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (!base) {
    std::fprintf(stderr, "dlopen: %s\n", dlerror());
    return 2;
  }
  void* cpu = dlopen((dir + "/libggml-cpu.so").c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (!cpu) {
    std::fprintf(stderr, "dlopen: %s\n", dlerror());
    return 2;
  }
  reinterpret_cast<void (*)()>(sym(cpu, "ggml_cpu_init"))();
  const auto ggml_quant_q8k = reinterpret_cast<QuantFn>(sym(cpu, "quantize_row_q8_K"));
  struct Kind {
    runnel::DType dtype;
    DequantFn ggml_dequant;
    VecDotFn ggml_dot;
  };
  const std::map<uint32_t, Kind> kinds = {
      {12, {runnel::DType::Q4_K, reinterpret_cast<DequantFn>(sym(base, "dequantize_row_q4_K")),
            reinterpret_cast<VecDotFn>(sym(cpu, "ggml_vec_dot_q4_K_q8_K"))}},
      {14, {runnel::DType::Q6_K, reinterpret_cast<DequantFn>(sym(base, "dequantize_row_q6_K")),
            reinterpret_cast<VecDotFn>(sym(cpu, "ggml_vec_dot_q6_K_q8_K"))}},
  };

  std::vector<std::pair<std::string, const runnel::cpu::KernelTable*>> impls;
  for (int i = 0; i < runnel::cpu::kNumIsas; ++i) {
    const auto isa = static_cast<runnel::cpu::Isa>(i);
    if (const auto* t = runnel::cpu::kernels_for(isa)) impls.emplace_back(runnel::cpu::isa_name(isa), t);
  }

  try {
    const auto f = runnel::gguf::File::open(argv[1]);
    // per (type, implementation)
    std::map<std::string, Stats> stats;
    int failures = 0;
    for (const auto& t : f.tensors()) {
      auto it = kinds.find(t.type_id);
      if (it == kinds.end()) continue;
      const Kind& kind = it->second;
      const int64_t k = t.ne[0];
      int64_t rows = 1;
      for (size_t d = 1; d < t.ne.size(); ++d) rows *= t.ne[d];
      const int64_t n = k * rows;
      const uint8_t* w = f.tensor_data(t);
      const size_t row_bytes = runnel::row_bytes(kind.dtype, k);

      std::vector<float> ref(n), got(n);
      kind.ggml_dequant(w, ref.data(), n);

      // x and its Q8_K rows
      std::mt19937 rng(1234);
      std::normal_distribution<float> nd;
      std::vector<float> x(k);
      for (auto& v : x) v = nd(rng);
      const size_t q8k_bytes = runnel::row_bytes(runnel::DType::Q8_K, k);
      std::vector<uint8_t> xq_ggml(q8k_bytes), xq(q8k_bytes);
      ggml_quant_q8k(x.data(), xq_ggml.data(), k);
      std::vector<float> dot_ref(rows), dot(rows);
      for (int64_t r = 0; r < rows; ++r)
        kind.ggml_dot(int(k), &dot_ref[r], 0, w + r * row_bytes, 0, xq_ggml.data(), 0, 1);
      double dot_scale = 0;
      for (float v : dot_ref) dot_scale = std::max(dot_scale, double(std::fabs(v)));

      const std::string tname(runnel::dtype_name(kind.dtype));
      auto check_dequant = [&](const std::string& impl, runnel::ToFloatFn fn) {
        std::fill(got.begin(), got.end(), std::nanf(""));
        for (int64_t r = 0; r < rows; ++r) fn(w + r * row_bytes, got.data() + r * k, k);
        Stats& s = stats[tname + " " + impl];
        s.tensors++;
        s.elements += n;
        for (int64_t i = 0; i < n; ++i) {
          if (std::memcmp(&ref[i], &got[i], 4) != 0) {
            s.differing++;
            s.max_abs = std::max(s.max_abs, std::isnan(got[i] - ref[i])
                                                ? INFINITY
                                                : double(std::fabs(got[i] - ref[i])));
          }
        }
        return s;
      };
      check_dequant("reference", runnel::traits(kind.dtype).to_float);
      for (const auto& [name, tab] : impls) {
        check_dequant(name, tab->to_f32[int(kind.dtype)]);
        Stats& s = stats[tname + " " + name];
        tab->from_f32[int(runnel::DType::Q8_K)](x.data(), xq.data(), k);
        for (size_t i = 0; i < q8k_bytes; ++i) s.q8k_bytes_differing += xq[i] != xq_ggml[i];
        // runnel's dots over ggml's Q8_K row, so only the dot kernel differs
        runnel::cpu::QMatmulArgs a{};
        a.xq = xq_ggml.data();
        a.ldxq = int64_t(q8k_bytes);
        a.w = w;
        a.ldw = int64_t(row_bytes);
        a.bias = nullptr;
        a.y = dot.data();
        a.ldy = rows;
        a.m = 1;
        a.k = k;
        const auto qm = tab->qmatmul[int(kind.dtype)];
        if (!qm) {
          std::printf("%s %s: no qmatmul kernel\n", tname.c_str(), name.c_str());
          continue;
        }
        qm(a, 0, rows);
        double md = 0;
        for (int64_t r = 0; r < rows; ++r) md = std::max(md, double(std::fabs(dot[r] - dot_ref[r])));
        s.max_rel_dot = std::max(s.max_rel_dot, dot_scale > 0 ? md / dot_scale : md);
      }
      std::printf("%-28s %s [%lld x %lld]\n", t.name.c_str(), tname.c_str(), (long long)rows,
                  (long long)k);
    }
    std::printf("\n| type | runnel implementation | tensors | elements | differing | max abs diff "
                "| Q8_K bytes differing | dot max rel diff |\n| --- | --- | --- | --- | --- | --- | "
                "--- | --- |\n");
    for (const auto& [key, s] : stats) {
      const auto sp = key.find(' ');
      const bool has_dot = key.substr(sp + 1) != "reference";
      char bytes[32] = "-", rel[32] = "-";
      if (has_dot) {
        std::snprintf(bytes, sizeof bytes, "%lld", (long long)s.q8k_bytes_differing);
        std::snprintf(rel, sizeof rel, "%.3g", s.max_rel_dot);
      }
      std::printf("| %s | %s | %d | %lld | %lld | %.3g | %s | %s |\n", key.substr(0, sp).c_str(),
                  key.substr(sp + 1).c_str(), s.tensors, (long long)s.elements,
                  (long long)s.differing, s.max_abs, bytes, rel);
      failures += s.differing != 0;
    }
    if (stats.empty()) std::printf("(no Q4_K or Q6_K tensors)\n");
    return failures ? 1 : 0;
  } catch (const runnel::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
