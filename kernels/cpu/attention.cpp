// Causal attention of a block of queries over a (possibly paged) KV cache,
// with grouped-query attention and optional ALiBi.  Two passes per query and
// head: scores into scratch, softmax, then the weighted sum of values.
#include <cmath>
#include <cstring>

#include "cpu/kernels.hpp"
#include "cpu/simd.hpp"

namespace runnel::cpu::RUNNEL_ISA_NS {
namespace {

// Address of token t's row for kv head kh.
inline const char* kv_row(const AttentionArgs& a, const void* base, int64_t t, int64_t kh) {
  const int64_t blk = t / a.block_size;
  const int64_t b = a.block_table ? a.block_table[blk] : blk;
  return static_cast<const char*>(base) + b * a.block_stride + (t % a.block_size) * a.kv_tok_stride +
         kh * a.kv_head_stride;
}

inline float load_kv(const char* row, DType dt, int64_t i) {
  if (dt == DType::F16) return f16_to_f32(reinterpret_cast<const uint16_t*>(row)[i]);
  return reinterpret_cast<const float*>(row)[i];
}

#if defined(RUNNEL_ISA_SCALAR)

void attention(const AttentionArgs& a, int64_t h0, int64_t h1, float* scores) {
  const int64_t group = a.n_heads / a.n_kv_heads;
  for (int64_t h = h0; h < h1; ++h) {
    const int64_t kh = h / group;
    const float slope = a.alibi_slopes ? a.alibi_slopes[h] : 0.0f;
    for (int64_t i = 0; i < a.n_q; ++i) {
      const float* q = a.q + i * a.q_tok_stride + h * a.head_dim;
      float* out = a.out + i * a.out_tok_stride + h * a.head_dim;
      const int64_t n_kv = a.pos0 + i + 1;
      double mx = -INFINITY;
      for (int64_t t = 0; t < n_kv; ++t) {
        const char* k = kv_row(a, a.k, t, kh);
        double s = 0;
        for (int64_t d = 0; d < a.head_dim; ++d) s += double(q[d]) * load_kv(k, a.kv_dtype, d);
        s = s * a.scale + double(slope) * double(t);
        scores[t] = float(s);
        mx = std::fmax(mx, s);
      }
      double sum = 0;
      for (int64_t t = 0; t < n_kv; ++t) sum += std::exp(double(scores[t]) - mx);
      for (int64_t d = 0; d < a.head_dim; ++d) {
        double acc = 0;
        for (int64_t t = 0; t < n_kv; ++t)
          acc += std::exp(double(scores[t]) - mx) / sum * load_kv(kv_row(a, a.v, t, kh), a.kv_dtype, d);
        out[d] = float(acc);
      }
    }
  }
}

#else

template <bool F16>
RUNNEL_INLINE VF load_v(const char* row, int64_t d) {
  if constexpr (F16) return VF::load_f16(reinterpret_cast<const uint16_t*>(row) + d);
  else return VF::load(reinterpret_cast<const float*>(row) + d);
}

// scores[t] = exp(scores[t] - max) over t < n; returns the sum.
RUNNEL_INLINE float softmax_exp(float* scores, int64_t n) {
  const int64_t nv = n - n % VF::N;
  VF mv = VF::set1(-INFINITY);
  for (int64_t t = 0; t < nv; t += VF::N) mv = max(mv, VF::load(scores + t));
  float mx = mv.reduce_max();
  for (int64_t t = nv; t < n; ++t) mx = scores[t] > mx ? scores[t] : mx;
  const VF m = VF::set1(mx);
  VF sv = VF::zero();
  for (int64_t t = 0; t < nv; t += VF::N) {
    const VF e = exp(VF::load(scores + t) - m);
    e.store(scores + t);
    sv = sv + e;
  }
  float sum = sv.reduce_add();
  for (int64_t t = nv; t < n; ++t) {
    scores[t] = std::exp(scores[t] - mx);
    sum += scores[t];
  }
  return sum;
}

// NV > 0: head_dim is NV vectors, and the query and the output row stay in
// registers.  NV == 0: any head_dim, through memory.
template <bool F16, int NV>
void attention_t(const AttentionArgs& a, int64_t h0, int64_t h1, float* scores) {
  const int64_t group = a.n_heads / a.n_kv_heads;
  const int64_t D = a.head_dim, Dv = D - D % VF::N;
  const DType dt = F16 ? DType::F16 : DType::F32;
  for (int64_t h = h0; h < h1; ++h) {
    const int64_t kh = h / group;
    const float slope = a.alibi_slopes ? a.alibi_slopes[h] : 0.0f;
    for (int64_t i = 0; i < a.n_q; ++i) {
      const float* q = a.q + i * a.q_tok_stride + h * D;
      float* out = a.out + i * a.out_tok_stride + h * D;
      const int64_t n_kv = a.pos0 + i + 1;
      if constexpr (NV > 0) {
        VF qv[NV];
        for (int v = 0; v < NV; ++v) qv[v] = VF::load(q + v * VF::N);
        for (int64_t t = 0; t < n_kv; ++t) {
          const char* k = kv_row(a, a.k, t, kh);
          VF acc = qv[0] * load_v<F16>(k, 0);
          for (int v = 1; v < NV; ++v) acc = fma(qv[v], load_v<F16>(k, v * VF::N), acc);
          scores[t] = acc.reduce_add() * a.scale + slope * float(t);
        }
      } else {
        for (int64_t t = 0; t < n_kv; ++t) {
          const char* k = kv_row(a, a.k, t, kh);
          VF acc = VF::zero();
          for (int64_t d = 0; d < Dv; d += VF::N) acc = fma(VF::load(q + d), load_v<F16>(k, d), acc);
          float s = acc.reduce_add();
          for (int64_t d = Dv; d < D; ++d) s += q[d] * load_kv(k, dt, d);
          scores[t] = s * a.scale + slope * float(t);
        }
      }
      const float inv = 1.0f / softmax_exp(scores, n_kv);
      if constexpr (NV > 0) {
        VF o[NV];
        for (int v = 0; v < NV; ++v) o[v] = VF::zero();
        for (int64_t t = 0; t < n_kv; ++t) {
          const char* vr = kv_row(a, a.v, t, kh);
          const VF p = VF::set1(scores[t]);
          for (int v = 0; v < NV; ++v) o[v] = fma(p, load_v<F16>(vr, v * VF::N), o[v]);
        }
        const VF iv = VF::set1(inv);
        for (int v = 0; v < NV; ++v) (o[v] * iv).store(out + v * VF::N);
      } else {
        std::memset(out, 0, sizeof(float) * size_t(D));
        for (int64_t t = 0; t < n_kv; ++t) {
          const char* v = kv_row(a, a.v, t, kh);
          const float p = scores[t] * inv;
          const VF vp = VF::set1(p);
          for (int64_t d = 0; d < Dv; d += VF::N) fma(vp, load_v<F16>(v, d), VF::load(out + d)).store(out + d);
          for (int64_t d = Dv; d < D; ++d) out[d] += p * load_kv(v, dt, d);
        }
      }
    }
  }
}

template <bool F16>
void attention_dt(const AttentionArgs& a, int64_t h0, int64_t h1, float* scores) {
  switch (a.head_dim) {
    case 4 * VF::N: return attention_t<F16, 4>(a, h0, h1, scores);
    case 8 * VF::N: return attention_t<F16, 8>(a, h0, h1, scores);
    default: return attention_t<F16, 0>(a, h0, h1, scores);
  }
}

void attention(const AttentionArgs& a, int64_t h0, int64_t h1, float* scores) {
  if (a.kv_dtype == DType::F16) attention_dt<true>(a, h0, h1, scores);
  else attention_dt<false>(a, h0, h1, scores);
}

#endif

}  // namespace

void register_attention(KernelTable& t) { t.attention = attention; }

}  // namespace runnel::cpu::RUNNEL_ISA_NS
