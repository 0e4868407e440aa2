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

// Rows of consecutive tokens from token 0, without a division per token; a
// block's table entry is read only when one of its tokens is.
struct KvWalk {
  const AttentionArgs& a;
  const char* base;
  int64_t blk = -1, off;
  const char* block = nullptr;
  KvWalk(const AttentionArgs& args, const void* cache, int64_t kh)
      : a(args), base(static_cast<const char*>(cache) + kh * args.kv_head_stride), off(args.block_size) {}
  const char* next() {
    if (off == a.block_size) {
      ++blk;
      off = 0;
      block = base + (a.block_table ? a.block_table[blk] : blk) * a.block_stride;
    }
    return block + (off++) * a.kv_tok_stride;
  }
};

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
      const float* q = a.q + i * a.q_tok_stride + h * a.q_head_stride;
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

#if defined(RUNNEL_ISA_AVX512)
// {sum(a[0]), ..., sum(a[15])}: pairs, then quads within 128-bit lanes, then
// across lanes (45 operations instead of 16 full reductions).
RUNNEL_INLINE VF hsum16(const VF* a) {
  __m512 b[8], c[4], d[2];
  for (int p = 0; p < 8; ++p)
    b[p] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * p].v, a[2 * p + 1].v), _mm512_unpackhi_ps(a[2 * p].v, a[2 * p + 1].v));
  for (int q = 0; q < 4; ++q)
    c[q] = _mm512_add_ps(_mm512_shuffle_ps(b[2 * q], b[2 * q + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(b[2 * q], b[2 * q + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  for (int r = 0; r < 2; ++r)
    d[r] = _mm512_add_ps(_mm512_shuffle_f32x4(c[2 * r], c[2 * r + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(c[2 * r], c[2 * r + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  return {_mm512_add_ps(_mm512_shuffle_f32x4(d[0], d[1], _MM_SHUFFLE(2, 0, 2, 0)),
                        _mm512_shuffle_f32x4(d[0], d[1], _MM_SHUFFLE(3, 1, 3, 1)))};
}
#endif

#if defined(RUNNEL_ISA_AVX512)
// ---------------------------------------------------------------------------
// f16 caches, head_dim 64 or 128: the arithmetic of llama.cpp's CPU attention
// (no flash attention, f16 K and V), operation for operation, so that the two
// give the same bits.  q is rounded to f16, so every product of two f16
// values is exact in f32 and only the order of the additions matters:
//  - one query (ggml_vec_dot_f16): four 16-lane accumulators, one per 16 dims
//    of every 64, folded (0 + 2) + (1 + 3);
//  - a block of queries (llamafile's tinyBLAS): one 16-lane accumulator over
//    the dims in order;
//  - then a lane tree, pairs (i, i + 8), (i, i + 4), (i, i + 2), (0, 1).
// The softmax takes exp_ggml, sums each 16 keys by that tree into a double,
// scales by float(1 / sum) and rounds the probabilities to f16.  probs x V
// sums over the keys the same way: 64 slots (key % 64) folded as above for
// one query, 16 slots (key % 16) for a block, then the lane tree.

// Lane tree of one vector.
RUNNEL_INLINE float tree16(__m512 x) {
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(x), _mm512_extractf32x8_ps(x, 1));
  const __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  const __m128 p = _mm_add_ps(q, _mm_movehl_ps(q, q));
  return _mm_cvtss_f32(_mm_add_ss(p, _mm_movehdup_ps(p)));
}

// {tree16(a[0]), ..., tree16(a[15])}: the tree's four levels across 16
// vectors at once, then one permutation back to key order.
RUNNEL_INLINE __m512 tree16x16(const __m512* a) {
  __m512 b[8], c[4], d[2];
  for (int p = 0; p < 8; ++p)  // (i, i + 8)
    b[p] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * p], a[2 * p + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_f32x4(a[2 * p], a[2 * p + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  for (int q = 0; q < 4; ++q)  // (i, i + 4)
    c[q] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * q], b[2 * q + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(b[2 * q], b[2 * q + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  for (int r = 0; r < 2; ++r)  // (i, i + 2)
    d[r] = _mm512_add_ps(_mm512_shuffle_ps(c[2 * r], c[2 * r + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(c[2 * r], c[2 * r + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  const __m512 e = _mm512_add_ps(_mm512_shuffle_ps(d[0], d[1], _MM_SHUFFLE(2, 0, 2, 0)),  // (0, 1)
                                 _mm512_shuffle_ps(d[0], d[1], _MM_SHUFFLE(3, 1, 3, 1)));
  // lane 4k + m holds key k + 4m
  const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(idx, e);
}

RUNNEL_INLINE __m512 round_f16(__m512 x) {
  return _mm512_cvtph_ps(_mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
RUNNEL_INLINE __m512 load_h(const char* row, int v) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row) + v));
}

// q . k before the lane tree, in the block or the one-query order.
template <int NV>
RUNNEL_INLINE __m512 key_dot(const __m512* q, const char* k, bool block) {
  if (block) {
    __m512 acc = _mm512_mul_ps(q[0], load_h(k, 0));
    for (int v = 1; v < NV; ++v) acc = _mm512_fmadd_ps(q[v], load_h(k, v), acc);
    return acc;
  }
  __m512 c[4];
  for (int u = 0; u < 4; ++u) c[u] = _mm512_mul_ps(q[u], load_h(k, u));
  for (int v = 4; v < NV; ++v) c[v % 4] = _mm512_fmadd_ps(q[v], load_h(k, v), c[v % 4]);
  return _mm512_add_ps(_mm512_add_ps(c[0], c[2]), _mm512_add_ps(c[1], c[3]));
}

template <int NV>
void attention_f16_ggml(const AttentionArgs& a, int64_t h0, int64_t h1, float* scores) {
  static_assert(NV % 4 == 0);
  constexpr int D = NV * 16;
  const int64_t group = a.n_heads / a.n_kv_heads;
  const bool block = a.block_order;
  const int n_slots = block ? 16 : 64;
  alignas(64) float part[64 * D];
  for (int64_t h = h0; h < h1; ++h) {
    const int64_t kh = h / group;
    const float slope = a.alibi_slopes ? a.alibi_slopes[h] : 0.0f;
    for (int64_t i = 0; i < a.n_q; ++i) {
      const float* qp = a.q + i * a.q_tok_stride + h * a.q_head_stride;
      float* out = a.out + i * a.out_tok_stride + h * D;
      const int64_t n_kv = a.pos0 + i + 1;
      __m512 q[NV];
      for (int v = 0; v < NV; ++v) q[v] = round_f16(_mm512_loadu_ps(qp + 16 * v));
      const __m512 scale = _mm512_set1_ps(a.scale);
      KvWalk kw(a, a.k, kh);
      int64_t t = 0;
      for (; t + 16 <= n_kv; t += 16) {
        __m512 acc[16];
        for (int j = 0; j < 16; ++j) acc[j] = key_dot<NV>(q, kw.next(), block);
        __m512 s = _mm512_mul_ps(tree16x16(acc), scale);
        if (slope != 0.0f) s = _mm512_fmadd_ps(VF::iota(float(t)).v, _mm512_set1_ps(slope), s);
        _mm512_storeu_ps(scores + t, s);
      }
      for (; t < n_kv; ++t) scores[t] = tree16(key_dot<NV>(q, kw.next(), block)) * a.scale + slope * float(t);

      // softmax: exp in chunks of 16 from key 0, each chunk's tree sum into a double
      float mx = -INFINITY;
      for (int64_t u = 0; u < n_kv; ++u) mx = scores[u] > mx ? scores[u] : mx;
      const VF m = VF::set1(mx);
      double sum = 0;
      for (int64_t u = 0; u < n_kv; u += 16) {
        const __mmask16 live = n_kv - u >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n_kv - u)) - 1);
        const VF x = {_mm512_maskz_loadu_ps(live, scores + u)};
        const __m512 e = _mm512_maskz_mov_ps(live, exp_ggml(x - m).v);
        _mm512_mask_storeu_ps(scores + u, live, e);
        sum += double(tree16(e));
      }
      const __m512 inv = _mm512_set1_ps(float(1.0 / sum));

      // probs x V into slots (key % n_slots), then the fold and the lane tree
      KvWalk vw(a, a.v, kh);
      const int used = int(n_kv < n_slots ? n_kv : n_slots);
      for (int64_t u = 0; u < n_kv; ++u) {
        const char* vr = vw.next();
        const __m512 p = round_f16(_mm512_mul_ps(_mm512_set1_ps(scores[u]), inv));
        float* sl = part + (u % n_slots) * D;
        if (u < n_slots)
          for (int v = 0; v < NV; ++v) _mm512_store_ps(sl + 16 * v, _mm512_mul_ps(p, load_h(vr, v)));
        else
          for (int v = 0; v < NV; ++v)
            _mm512_store_ps(sl + 16 * v, _mm512_fmadd_ps(p, load_h(vr, v), _mm512_load_ps(sl + 16 * v)));
      }
      for (int v = 0; v < NV; ++v) {
        auto slot = [&](int s) { return s < used ? _mm512_load_ps(part + s * D + 16 * v) : _mm512_setzero_ps(); };
        __m512 lane[16];
        for (int l = 0; l < 16; ++l)
          lane[l] = block ? slot(l)
                          : _mm512_add_ps(_mm512_add_ps(slot(l), slot(32 + l)), _mm512_add_ps(slot(16 + l), slot(48 + l)));
        for (int w = 8; w >= 1; w /= 2)
          for (int l = 0; l < w; ++l) lane[l] = _mm512_add_ps(lane[l], lane[l + w]);
        _mm512_storeu_ps(out + 16 * v, lane[0]);
      }
    }
  }
}
#endif

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
      const float* q = a.q + i * a.q_tok_stride + h * a.q_head_stride;
      float* out = a.out + i * a.out_tok_stride + h * D;
      const int64_t n_kv = a.pos0 + i + 1;
      if constexpr (NV > 0) {
        VF qv[NV];
        for (int v = 0; v < NV; ++v) qv[v] = VF::load(q + v * VF::N);
        int64_t t = 0;
        KvWalk kw(a, a.k, kh);
#if defined(RUNNEL_ISA_AVX512)
        // 16 keys at a time, their 16 dot products summed across lanes together.
        for (; t + 16 <= n_kv; t += 16) {
          VF acc[16];
          for (int j = 0; j < 16; ++j) {
            const char* k = kw.next();
            acc[j] = qv[0] * load_v<F16>(k, 0);
            for (int v = 1; v < NV; ++v) acc[j] = fma(qv[v], load_v<F16>(k, v * VF::N), acc[j]);
          }
          VF sv = hsum16(acc) * VF::set1(a.scale);
          if (slope != 0.0f) sv = fma(VF::iota(float(t)), VF::set1(slope), sv);
          sv.store(scores + t);
        }
#endif
        for (; t < n_kv; ++t) {
          const char* k = kw.next();
          VF acc = qv[0] * load_v<F16>(k, 0);
          for (int v = 1; v < NV; ++v) acc = fma(qv[v], load_v<F16>(k, v * VF::N), acc);
          scores[t] = acc.reduce_add() * a.scale + slope * float(t);
        }
      } else {
        KvWalk kw(a, a.k, kh);
        for (int64_t t = 0; t < n_kv; ++t) {
          const char* k = kw.next();
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
        KvWalk vw(a, a.v, kh);
        for (int64_t t = 0; t < n_kv; ++t) {
          const char* vr = vw.next();
          const VF p = VF::set1(scores[t]);
          for (int v = 0; v < NV; ++v) o[v] = fma(p, load_v<F16>(vr, v * VF::N), o[v]);
        }
        const VF iv = VF::set1(inv);
        for (int v = 0; v < NV; ++v) (o[v] * iv).store(out + v * VF::N);
      } else {
        std::memset(out, 0, sizeof(float) * size_t(D));
        KvWalk vw(a, a.v, kh);
        for (int64_t t = 0; t < n_kv; ++t) {
          const char* v = vw.next();
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
#if defined(RUNNEL_ISA_AVX512)
  if constexpr (F16) {
    if (a.head_dim == 64) return attention_f16_ggml<4>(a, h0, h1, scores);
    if (a.head_dim == 128) return attention_f16_ggml<8>(a, h0, h1, scores);
  }
#endif
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
