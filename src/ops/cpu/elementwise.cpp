// Row-wise ops: norms, softmax, activations, add, embedding, convert.
#include <string>

#include "common.hpp"
#include "ops_cpu.hpp"

namespace runnel::ops::cpu_impl {
using namespace detail;

void rmsnorm(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& y, float eps) {
  const Rows X = rows_of(x, "rmsnorm", "x"), Y = rows_of(y, "rmsnorm", "y");
  same_shape(x, y, "rmsnorm", "x", "y");
  vector_of(w, X.n, "rmsnorm", "weight");
  const float* wp = w.data_as<const float>();
  auto fn = K().rmsnorm;
  ctx.pool.parallel_for(X.rows, row_grain(X.n), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) fn(X.row(r), wp, Y.row(r), X.n, eps);
  });
}

void layernorm(Context& ctx, const Tensor& x, const Tensor* w, const Tensor* b, const Tensor& y,
               float eps) {
  const Rows X = rows_of(x, "layernorm", "x"), Y = rows_of(y, "layernorm", "y");
  same_shape(x, y, "layernorm", "x", "y");
  if (w) vector_of(*w, X.n, "layernorm", "weight");
  if (b) vector_of(*b, X.n, "layernorm", "bias");
  const float* wp = w ? w->data_as<const float>() : nullptr;
  const float* bp = b ? b->data_as<const float>() : nullptr;
  auto fn = K().layernorm;
  ctx.pool.parallel_for(X.rows, row_grain(X.n), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) fn(X.row(r), wp, bp, Y.row(r), X.n, eps);
  });
}

void softmax(Context& ctx, const Tensor& x, const Tensor& y, float scale, bool causal,
             int64_t causal_offset) {
  const Rows X = rows_of(x, "softmax", "x"), Y = rows_of(y, "softmax", "y");
  same_shape(x, y, "softmax", "x", "y");
  auto fn = K().softmax;
  ctx.pool.parallel_for(X.rows, row_grain(X.n), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      int64_t valid = X.n;
      if (causal) {
        valid = r + 1 + causal_offset;
        if (valid < 0) valid = 0;
        if (valid > X.n) valid = X.n;
      }
      fn(X.row(r), Y.row(r), X.n, valid, scale, 0.0f);
    }
  });
}

void activation(Context& ctx, Activation kind, const Tensor& x, const Tensor& y) {
  const Rows X = rows_of(x, "activation", "x"), Y = rows_of(y, "activation", "y");
  same_shape(x, y, "activation", "x", "y");
  auto fn = K().activation;
  ctx.pool.parallel_for(X.rows, row_grain(X.n), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) fn(kind, X.row(r), Y.row(r), X.n);
  });
}

namespace {

// y = fn(a, b) row by row, all three of one shape.
using BinaryRowFn = void (*)(const float*, const float*, float*, int64_t);
void binary_rows(Context& ctx, const Tensor& a, const Tensor& b, const Tensor& y, BinaryRowFn fn,
                 const char* op, const char* an, const char* bn) {
  const Rows A = rows_of(a, op, an), B = rows_of(b, op, bn), Y = rows_of(y, op, "y");
  same_shape(a, b, op, an, bn);
  same_shape(a, y, op, an, "y");
  ctx.pool.parallel_for(A.rows, row_grain(A.n), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) fn(A.row(r), B.row(r), Y.row(r), A.n);
  });
}

}  // namespace

void swiglu(Context& ctx, const Tensor& gate, const Tensor& up, const Tensor& y) {
  binary_rows(ctx, gate, up, y, K().swiglu, "swiglu", "gate", "up");
}

void add(Context& ctx, const Tensor& a, const Tensor& b, const Tensor& y) {
  binary_rows(ctx, a, b, y, K().add, "add", "a", "b");
}

void embedding(Context& ctx, const Tensor& table, const Tensor& ids_t, const Tensor& y) {
  expect_cpu(table, "embedding", "table");
  expect_ndim(table, 2, "embedding", "table");
  const Rows Y = rows_of(y, "embedding", "y");
  const int64_t vocab = table.dim(0), d = table.dim(1);
  expect_ndim(ids_t, 1, "embedding", "ids");
  const int64_t n = ids_t.dim(0);
  const int32_t* ids = i32_vector(ids_t, n, "embedding", "ids");
  if (Y.rows != n || Y.n != d)
    throw Error("embedding: y " + y.shape_str() + " must be [" + std::to_string(n) + ", " +
                std::to_string(d) + "]");
  if (table.stride_bytes(-1) != traits(table.dtype()).type_size)
    throw Error("embedding: table " + table.shape_str() + " must be contiguous in its last dimension");
  auto conv = K().to_f32[int(table.dtype())];
  if (!conv) throw Error("embedding: tables of dtype " + std::string(dtype_name(table.dtype())) + " are not supported");
  for (int64_t i = 0; i < n; ++i)
    if (ids[i] < 0 || ids[i] >= vocab)
      throw Error("token id " + std::to_string(ids[i]) + " is outside the vocabulary (size " +
                  std::to_string(vocab) + ")");
  const char* base = static_cast<const char*>(table.data());
  const int64_t ts = table.stride_bytes(0);
  ctx.pool.parallel_for(Y.rows, row_grain(d), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) conv(base + ids[r] * ts, Y.row(r), d);
  });
}

void convert(Context& ctx, const Tensor& x, const Tensor& y) {
  expect_cpu(x, "convert", "x");
  expect_cpu(y, "convert", "y");
  same_shape(x, y, "convert", "x", "y");
  const int64_t n = x.dim(-1);
  if (x.stride_bytes(-1) != traits(x.dtype()).type_size || y.stride_bytes(-1) != traits(y.dtype()).type_size)
    throw Error("convert: x " + x.shape_str() + " and y " + y.shape_str() + " must be contiguous in their last dimension");
  auto to = K().to_f32[int(x.dtype())];
  auto from = K().from_f32[int(y.dtype())];
  if (!to || !from)
    throw Error("convert: " + std::string(dtype_name(x.dtype())) + " to " + std::string(dtype_name(y.dtype())) +
                " is not supported");
  const int64_t rows = x.rows();
  const int64_t xs = x.row_stride_bytes(), ys = y.row_stride_bytes();
  const char* xb = static_cast<const char*>(x.data());
  char* yb = static_cast<char*>(y.data());
  const bool direct_x = x.dtype() == DType::F32, direct_y = y.dtype() == DType::F32;
  ctx.pool.parallel_for(rows, row_grain(n), [&](int64_t r0, int64_t r1) {
    std::vector<float> tmp(direct_x || direct_y ? 0 : size_t(n));
    for (int64_t r = r0; r < r1; ++r) {
      if (direct_y) to(xb + r * xs, reinterpret_cast<float*>(yb + r * ys), n);
      else if (direct_x) from(reinterpret_cast<const float*>(xb + r * xs), yb + r * ys, n);
      else {
        to(xb + r * xs, tmp.data(), n);
        from(tmp.data(), yb + r * ys, n);
      }
    }
  });
}

}  // namespace runnel::ops::cpu_impl
