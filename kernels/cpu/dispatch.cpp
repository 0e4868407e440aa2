// Picks the CPU ISA once, from cpuid or RUNNEL_CPU_ISA, and builds each ISA's
// kernel table.  Compiled without ISA flags.
#include <cpuid.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include "cpu/kernels.hpp"
#include "runnel/error.hpp"

namespace runnel::cpu {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
  }
  return "?";
}

namespace {

uint64_t xgetbv0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (uint64_t(edx) << 32) | eax;
}

bool cpu_has(Isa isa) {
  if (isa == Isa::Scalar) return true;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  const bool osxsave = c & bit_OSXSAVE;
  const bool fma = c & bit_FMA, f16c = c & bit_F16C, avx = c & bit_AVX;
  if (!osxsave || !avx || !fma || !f16c) return false;
  const uint64_t xcr0 = xgetbv0();
  if ((xcr0 & 0x6) != 0x6) return false;  // XMM and YMM state
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const bool avx2 = b & bit_AVX2, bmi2 = b & bit_BMI2;
  if (!avx2 || !bmi2) return false;
  if (isa == Isa::Avx2) return true;
  // AVX-512: F, BW, VL, DQ, VNNI and BF16, and the OS saving ZMM state.
  if ((xcr0 & 0xe0) != 0xe0) return false;
  const bool f = b & bit_AVX512F, bw = b & bit_AVX512BW, vl = b & bit_AVX512VL,
             dq = b & bit_AVX512DQ, vnni = c & bit_AVX512VNNI;
  unsigned a1, b1, c1, d1;
  bool bf16 = false;
  if (__get_cpuid_count(7, 1, &a1, &b1, &c1, &d1)) bf16 = a1 & (1u << 5);
  return f && bw && vl && dq && vnni && bf16;
}

KernelTable build(Isa isa) {
  KernelTable t{};
  t.isa = isa;
#define RUNNEL_REGISTER(op) ns::register_##op(t);
  switch (isa) {
    case Isa::Scalar: {
      namespace ns = scalar;
      RUNNEL_CPU_KERNEL_OPS(RUNNEL_REGISTER)
      break;
    }
    case Isa::Avx2: {
      namespace ns = avx2;
      RUNNEL_CPU_KERNEL_OPS(RUNNEL_REGISTER)
      break;
    }
    case Isa::Avx512: {
      namespace ns = avx512;
      RUNNEL_CPU_KERNEL_OPS(RUNNEL_REGISTER)
      break;
    }
  }
#undef RUNNEL_REGISTER
  return t;
}

struct Tables {
  bool supported[kNumIsas];
  KernelTable table[kNumIsas];
  Tables() {
    for (int i = 0; i < kNumIsas; ++i) {
      supported[i] = cpu_has(Isa(i));
      table[i] = build(Isa(i));
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

Isa detect() {
  if (const char* env = std::getenv("RUNNEL_CPU_ISA"); env && *env) {
    for (int i = 0; i < kNumIsas; ++i) {
      if (std::strcmp(env, isa_name(Isa(i))) == 0) {
        if (!tables().supported[i])
          throw Error(std::string("RUNNEL_CPU_ISA=") + env + ": this CPU does not support it");
        return Isa(i);
      }
    }
    throw Error(std::string("RUNNEL_CPU_ISA=") + env +
                ": unknown ISA (expected scalar, avx2 or avx512)");
  }
  for (int i = kNumIsas - 1; i >= 0; --i)
    if (tables().supported[i]) return Isa(i);
  return Isa::Scalar;
}

std::atomic<int>& current() {
  static std::atomic<int> isa{static_cast<int>(detect())};
  return isa;
}

}  // namespace

bool isa_supported(Isa isa) { return tables().supported[static_cast<int>(isa)]; }

const KernelTable* kernels_for(Isa isa) {
  const int i = static_cast<int>(isa);
  return tables().supported[i] ? &tables().table[i] : nullptr;
}

Isa selected_isa() { return Isa(current().load(std::memory_order_relaxed)); }

void select_isa(Isa isa) {
  if (!isa_supported(isa)) throw Error(std::string("CPU ISA ") + isa_name(isa) + " is not supported by this CPU");
  current().store(static_cast<int>(isa));
}

const KernelTable& kernels() { return tables().table[current().load(std::memory_order_relaxed)]; }

}  // namespace runnel::cpu
