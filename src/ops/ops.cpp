// The op fronts: each checks that all its tensors are on one device, then
// calls that device's implementation (src/ops/cpu/ for host memory).  A
// device without an implementation of an op is an error naming both; no
// memory is touched before the check.  With Context::profile set, each front
// adds its wall time there.
#include <algorithm>
#include <chrono>
#include <initializer_list>
#include <string>
#include <utility>

#include "ops/cpu/ops_cpu.hpp"
#include "runnel/backend.hpp"
#include "runnel/error.hpp"

namespace runnel {

Context::Context(int n_threads) : Context(Device::CPU, n_threads) {}

Context::Context(Device device, int n_threads) : pool(n_threads), device_(device) {
  if (device == Device::CPU) {
    backend_ = &cpu_backend();
    return;
  }
  backend_ = cuda_backend();
  if (!backend_) {
    const std::vector<std::string> built = compiled_backends();
    const bool compiled = std::find(built.begin(), built.end(), "cuda") != built.end();
    throw Error(compiled ? "device cuda: no CUDA device found"
                         : "device cuda: this build of runnel has no CUDA backend");
  }
  resources_ = backend_->make_resources();
}

Context::~Context() = default;

float* Context::scratch(size_t n) {
  if (scratch_.size() < n) scratch_.resize(n);
  return scratch_.data();
}

void OpProfile::add(const char* op, DType dtype, int64_t ns) {
  for (Entry& e : entries)
    if (e.op == op && e.dtype == dtype) {
      ++e.calls;
      e.ns += ns;
      return;
    }
  entries.push_back({op, dtype, 1, ns});
}

int64_t OpProfile::total_ns() const {
  int64_t t = 0;
  for (const Entry& e : entries) t += e.ns;
  return t;
}

namespace ops {
namespace {

using Args = std::initializer_list<std::pair<const char*, const Tensor*>>;

// The one device of `args` (null and empty tensors are absent operands).
Device one_device(const char* op, Args args) {
  const char* first = nullptr;
  Device d = Device::CPU;
  for (const auto& [name, t] : args) {
    if (!t || t->empty()) continue;
    if (!first) {
      first = name;
      d = t->device();
    } else if (t->device() != d) {
      throw Error(std::string(op) + ": " + first + " is on " + std::string(device_name(d)) +
                  " but " + name + " is on " + std::string(device_name(t->device())) +
                  "; an op's tensors must be on one device");
    }
  }
  return d;
}

// Runs `cpu` when every tensor is in host memory.
template <class F>
void dispatch_on_device(const char* op, Args args, F&& cpu) {
  const Device d = one_device(op, args);
  switch (d) {
    case Device::CPU:
      cpu();
      return;
    case Device::CUDA:
      break;
  }
  throw Error(std::string(op) + ": no implementation on " + std::string(device_name(d)) +
              " in this build");
}

// The same, timed into ctx.profile when there is one.
template <class F>
void dispatch(Context& ctx, const char* op, Args args, F&& cpu, DType dtype = DType::F32) {
  if (!ctx.profile) return dispatch_on_device(op, args, std::forward<F>(cpu));
  const auto t0 = std::chrono::steady_clock::now();
  dispatch_on_device(op, args, std::forward<F>(cpu));
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0);
  ctx.profile->add(op, dtype, int64_t(ns.count()));
}

}  // namespace


void matmul(Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) {
  dispatch(ctx, "matmul", {{"x", &x}, {"w", &w}, {"bias", bias}, {"y", &y}},
           [&] { cpu_impl::matmul(ctx, x, w, bias, y); }, w.dtype());
}

void rmsnorm(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& y, float eps) {
  dispatch(ctx, "rmsnorm", {{"x", &x}, {"w", &w}, {"y", &y}},
           [&] { cpu_impl::rmsnorm(ctx, x, w, y, eps); });
}

void layernorm(Context& ctx, const Tensor& x, const Tensor* w, const Tensor* b, const Tensor& y,
               float eps) {
  dispatch(ctx, "layernorm", {{"x", &x}, {"w", w}, {"b", b}, {"y", &y}},
           [&] { cpu_impl::layernorm(ctx, x, w, b, y, eps); });
}

void rope(Context& ctx, const Tensor& x, const Tensor& positions, const Tensor& inv_freq,
          RopeStyle style, float theta_scale) {
  dispatch(ctx, "rope", {{"x", &x}, {"positions", &positions}, {"inv_freq", &inv_freq}},
           [&] { cpu_impl::rope(ctx, x, positions, inv_freq, style, theta_scale); });
}

void softmax(Context& ctx, const Tensor& x, const Tensor& y, float scale, bool causal,
             int64_t causal_offset) {
  dispatch(ctx, "softmax", {{"x", &x}, {"y", &y}},
           [&] { cpu_impl::softmax(ctx, x, y, scale, causal, causal_offset); });
}

void activation(Context& ctx, Activation kind, const Tensor& x, const Tensor& y) {
  dispatch(ctx, "activation", {{"x", &x}, {"y", &y}}, [&] { cpu_impl::activation(ctx, kind, x, y); });
}

void swiglu(Context& ctx, const Tensor& gate, const Tensor& up, const Tensor& y) {
  dispatch(ctx, "swiglu", {{"gate", &gate}, {"up", &up}, {"y", &y}},
           [&] { cpu_impl::swiglu(ctx, gate, up, y); });
}

void add(Context& ctx, const Tensor& a, const Tensor& b, const Tensor& y) {
  dispatch(ctx, "add", {{"a", &a}, {"b", &b}, {"y", &y}}, [&] { cpu_impl::add(ctx, a, b, y); });
}

void embedding(Context& ctx, const Tensor& table, const Tensor& ids, const Tensor& y) {
  dispatch(ctx, "embedding", {{"table", &table}, {"ids", &ids}, {"y", &y}},
           [&] { cpu_impl::embedding(ctx, table, ids, y); });
}

void convert(Context& ctx, const Tensor& x, const Tensor& y) {
  dispatch(ctx, "convert", {{"x", &x}, {"y", &y}}, [&] { cpu_impl::convert(ctx, x, y); });
}

void kv_store(Context& ctx, const Tensor& k, const Tensor& v, const KvPool& pool,
              const Tensor& slots) {
  dispatch(ctx, "kv_store",
           {{"k", &k}, {"v", &v}, {"k cache", &pool.k}, {"v cache", &pool.v}, {"slots", &slots}},
           [&] { cpu_impl::kv_store(ctx, k, v, pool, slots); });
}

void attention(Context& ctx, const Tensor& q, const KvPool& pool, const KvBatch& batch,
               float scale, const Tensor* alibi_slopes, const Tensor& out) {
  dispatch(ctx, "attention",
           {{"q", &q},
            {"k cache", &pool.k},
            {"v cache", &pool.v},
            {"block tables", &batch.block_tables},
            {"sequence lengths", &batch.seq_lens},
            {"query starts", &batch.query_starts},
            {"alibi slopes", alibi_slopes},
            {"out", &out}},
           [&] { cpu_impl::attention(ctx, q, pool, batch, scale, alibi_slopes, out); });
}

}  // namespace ops
}  // namespace runnel
