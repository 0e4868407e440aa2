// y = x W^T + b.  Few rows of x: the memory-bound small-batch kernels (for
// quantized weights: x's rows quantized to the weight's vec_dot_type, then
// integer dot products).  Many rows: Q8_0/Q4_0/Q4_1/Q5_0/Q5_1 weights through the int8
// GEMM (AVX-512 VNNI); others through oneDNN's matmul primitive (f32) run on
// the pool's threads, with runnel's blocked kernel as the fallback.  f16/bf16
// and the other quantized weights are widened to f32 a panel at a time.
#include <algorithm>
#include <string>

#include "common.hpp"
#include "ops_cpu.hpp"

#if defined(RUNNEL_WITH_DNNL)
#include <omp.h>

#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace runnel::ops::cpu_impl {
using namespace detail;
namespace {

struct Operands {
  cpu::MatmulArgs a;
  int64_t n;
  DType wtype;
};

Operands check_matmul(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) {
  const char* op = "matmul";
  const Rows X = rows_of(x, op, "x"), Y = rows_of(y, op, "y");
  expect_cpu(w, op, "weight");
  expect_ndim(w, 2, op, "weight");
  const int64_t n = w.dim(0), k = w.dim(1);
  if (X.n != k)
    throw Error("matmul: x " + x.shape_str() + " has " + std::to_string(X.n) + " columns, weight " +
                w.shape_str() + " expects " + std::to_string(k));
  if (Y.rows != X.rows || Y.n != n)
    throw Error("matmul: y " + y.shape_str() + " must be [" + std::to_string(X.rows) + ", " + std::to_string(n) +
                "] for x " + x.shape_str() + " and weight " + w.shape_str());
  if (K().matmul[int(w.dtype())] == nullptr && K().qmatmul[int(w.dtype())] == nullptr)
    throw Error("matmul: weights of dtype " + std::string(dtype_name(w.dtype())) + " are not supported");
  if (w.stride_bytes(1) != traits(w.dtype()).type_size)
    throw Error("matmul: weight " + w.shape_str() + " must be contiguous in its last dimension");
  if (bias) vector_of(*bias, n, op, "bias");
  Operands o{};
  o.a.x = X.row(0);
  o.a.ldx = X.stride / 4;
  o.a.w = w.data();
  o.a.ldw = w.stride_bytes(0);
  o.a.bias = bias ? bias->data_as<const float>() : nullptr;
  o.a.y = Y.row(0);
  o.a.ldy = Y.stride / 4;
  o.a.m = X.rows;
  o.a.k = k;
  o.n = n;
  o.wtype = w.dtype();
  if (X.stride % 4 || Y.stride % 4) throw Error("matmul: row strides must be whole floats");
  return o;
}

// Weight rows per task: a multiple of the kernels' 4-row tile.
constexpr int64_t kRowGrain = 16;

void small_batch(Context& ctx, const Operands& o) {
  const DType xt = traits(o.wtype).vec_dot_type;
  auto qfn = K().qmatmul[int(o.wtype)];
  auto quant = K().quant_act[int(xt)];
  if (qfn && quant && xt != DType::F32) {
    // x's rows quantized once per call into scratch (4-byte aligned, as
    // Q8_K's f32 scale wants), shared by every thread's weight rows.
    const cpu::MatmulArgs& a = o.a;
    const size_t xrow = row_bytes(xt, a.k);
    const int64_t ldxq = int64_t((xrow + 63) / 64 * 64);
    char* xq = reinterpret_cast<char*>(ctx.scratch((size_t(a.m) * size_t(ldxq) + 3) / 4));
    ctx.pool.parallel_for(a.m, 1, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) quant(a.x + i * a.ldx, xq + i * ldxq, a.k);
    });
    const cpu::QMatmulArgs qa{xq, ldxq, a.w, a.ldw, a.bias, a.y, a.ldy, a.m, a.k};
    ctx.pool.parallel_for(o.n, kRowGrain, [&](int64_t j0, int64_t j1) { qfn(qa, j0, j1); });
    return;
  }
  auto fn = K().matmul[int(o.wtype)];
  if (!fn)
    throw Error("matmul: weights of dtype " + std::string(dtype_name(o.wtype)) +
                " have no small-batch kernel for activations of dtype " + std::string(dtype_name(xt)));
  ctx.pool.parallel_for(o.n, kRowGrain, [&](int64_t j0, int64_t j1) { fn(o.a, j0, j1); });
}

#if defined(RUNNEL_WITH_DNNL)

dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

// y[:, j0:j0+nc] = x w_f32[nc, k]^T + b, w_f32 rows ldw floats apart, on
// the calling thread (one OpenMP thread: oneDNN's own threads would spin
// between calls on the cores the pool's workers need).
void dnnl_f32_1t(const cpu::MatmulArgs& a, const float* w, int64_t ldw, const float* bias, float* y, int64_t nc) {
  using dt = dnnl::memory::data_type;
  using md = dnnl::memory::desc;
  const md src({a.m, a.k}, dt::f32, {a.ldx, 1});
  const md wei({a.k, nc}, dt::f32, {1, ldw});
  const md dst({a.m, nc}, dt::f32, {a.ldy, 1});
  const md bia({1, nc}, dt::f32, {nc, 1});
  const auto desc = bias ? dnnl::matmul::desc(src, wei, bia, dst) : dnnl::matmul::desc(src, wei, dst);
  const dnnl::matmul::primitive_desc pd(desc, engine());
  dnnl::matmul prim(pd);
  dnnl::memory ms(src, engine(), const_cast<float*>(a.x));
  dnnl::memory mw(wei, engine(), const_cast<float*>(w));
  dnnl::memory md_(dst, engine(), y);
  dnnl::stream s(engine());
  omp_set_num_threads(1);
  if (bias) {
    dnnl::memory mb(bia, engine(), const_cast<float*>(bias));
    prim.execute(s, {{DNNL_ARG_SRC, ms}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_BIAS, mb}, {DNNL_ARG_DST, md_}});
  } else {
    prim.execute(s, {{DNNL_ARG_SRC, ms}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DST, md_}});
  }
  s.wait();
}

// The columns split over the pool's threads, each running oneDNN alone.
void dnnl_f32(Context& ctx, const cpu::MatmulArgs& a, const float* w, int64_t ldw, const float* bias,
              float* y, int64_t nc) {
  ctx.pool.parallel_for(nc, 64, [&](int64_t j0, int64_t j1) {
    dnnl_f32_1t(a, w + j0 * ldw, ldw, bias ? bias + j0 : nullptr, y + j0, j1 - j0);
  });
}

#endif

// Runs `panel(j0, nc, w_f32, ldw_floats)` over f32 views of the weights:
// directly for f32, through a converted scratch panel otherwise.
template <class F>
void f32_panels(Context& ctx, const Operands& o, F&& panel) {
  const cpu::MatmulArgs& a = o.a;
  if (o.wtype == DType::F32) {
    if (a.ldw % 4) throw Error("matmul: f32 weight rows must be 4-byte aligned");
    panel(0, o.n, static_cast<const float*>(a.w), a.ldw / 4);
    return;
  }
  // Panels of ~16 MB of f32 weights: large enough for oneDNN to run at full
  // speed, small enough to stay a fraction of the weights.
  const int64_t nc = std::max<int64_t>(16, std::min<int64_t>(o.n, (int64_t(1) << 22) / std::max<int64_t>(a.k, 1)));
  float* buf = ctx.scratch(size_t(nc) * size_t(a.k));
  auto conv = K().to_f32[int(o.wtype)];
  for (int64_t j0 = 0; j0 < o.n; j0 += nc) {
    const int64_t cn = std::min(nc, o.n - j0);
    ctx.pool.parallel_for(cn, 1, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        conv(static_cast<const char*>(a.w) + (j0 + r) * a.ldw, buf + r * a.k, a.k);
    });
    panel(j0, cn, buf, a.k);
  }
}

// Many rows against Q8_0/Q4_0/Q4_1/Q5_0/Q5_1 weights: x quantized to int8 per block
// once per call, then the int8 kernel over panels of repacked weights.
void quantized_gemm(Context& ctx, const Operands& o, cpu::QGemmFn fn) {
  const cpu::MatmulArgs& a = o.a;
  const int64_t nb = a.k / 32, ldxq = (a.k + 63) / 64 * 64;
  const size_t xq_floats = (size_t(a.m) * size_t(ldxq) + 3) / 4;
  float* buf = ctx.scratch(xq_floats + 2 * size_t(a.m) * size_t(nb));
  auto* xq = reinterpret_cast<int8_t*>(buf);
  float* xd = buf + xq_floats;
  float* xs = xd + size_t(a.m) * size_t(nb);
  auto quant = K().qgemm_quant;
  ctx.pool.parallel_for(a.m, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) quant(a.x + i * a.ldx, xq + i * ldxq, xd + i * nb, xs + i * nb, a.k);
  });
  const cpu::QGemmArgs qa{xq, ldxq, xd, xs, nb, a.w, a.ldw, a.bias, a.y, a.ldy, a.m, a.k};
  // Tasks of whole 32-column panels.
  ctx.pool.parallel_for(o.n, 32, [&](int64_t j0, int64_t j1) { fn(qa, j0, j1); });
}

}  // namespace

void matmul(Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) {
  const Operands o = check_matmul(x, w, bias, y);
  if (o.a.m == 0 || o.n == 0) return;
  if (ctx.cpu.llama_cpp_order && K().qmatmul[int(o.wtype)] && traits(o.wtype).vec_dot_type != DType::F32)
    return small_batch(ctx, o);
  const auto qg = K().qgemm[int(o.wtype)];
  const bool use_qg = ctx.cpu.use_qgemm && qg && K().qgemm_quant && o.a.k % 32 == 0 &&
                      o.a.m >= std::min(ctx.cpu.qgemm_min_rows, ctx.cpu.gemm_min_rows);
  if (use_qg) return quantized_gemm(ctx, o, qg);
  if (o.a.m < ctx.cpu.gemm_min_rows) return small_batch(ctx, o);
#if defined(RUNNEL_WITH_DNNL)
  if (ctx.cpu.use_dnnl && o.a.k > 0) {
    f32_panels(ctx, o, [&](int64_t j0, int64_t nc, const float* wp, int64_t ldw) {
      dnnl_f32(ctx, o.a, wp, ldw, o.a.bias ? o.a.bias + j0 : nullptr, o.a.y + j0, nc);
    });
    return;
  }
#endif
  auto gemm = K().gemm_f32;
  f32_panels(ctx, o, [&](int64_t j0, int64_t nc, const float* wp, int64_t ldw) {
    cpu::MatmulArgs a = o.a;
    a.w = wp;
    a.ldw = ldw * 4;
    a.bias = o.a.bias ? o.a.bias + j0 : nullptr;
    a.y = o.a.y + j0;
    ctx.pool.parallel_for(nc, kRowGrain, [&](int64_t j, int64_t je) { gemm(a, j, je); });
  });
}

}  // namespace runnel::ops::cpu_impl
