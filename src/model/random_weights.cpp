// Model::random: a configuration with weights drawn from a seed, for
// benchmarks at real sizes without a download.
#include <fmt/format.h>

#include <cmath>
#include <memory>

#include "model/model_impl.hpp"
#include "runnel/error.hpp"

namespace runnel {

using namespace model_detail;
using model::Slot;

namespace {

// splitmix64: a stateless hash, so each row's values depend only on the seed
// and the row, not on the thread that draws them.
uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

int64_t need_bytes(const Need& need, DType matrix) {
  int64_t n = 1;
  for (int64_t d : need.shape) n *= d;
  return int64_t(row_bytes(need.role == Role::Matrix ? matrix : DType::F32, n));
}

}  // namespace

int64_t Model::weight_bytes(const ModelConfig& config, DType dtype) {
  config.validate();
  int64_t total = 0;
  for (const Need& need : model_needs(config)) total += need_bytes(need, dtype);
  int64_t layer = 0;
  for (const Need& need : layer_needs(config)) layer += need_bytes(need, dtype);
  return total + layer * config.n_layers;
}

std::unique_ptr<Model> Model::random(const ModelConfig& config, const RandomOptions& options) {
  config.validate();
  const DTypeTraits& wt = traits(options.dtype);
  if (!wt.is_float || !wt.from_float)
    throw Error("random weights: dtype " + std::string(wt.name) + " cannot hold weights");
  auto impl = std::make_unique<Impl>();
  impl->path = "random:" + (config.source.empty() ? config.family : config.source);
  impl->format = "random";
  impl->cfg = config;
  impl->arch = model::find_arch(config.family);
  if (!impl->arch) throw Error("random weights: no descriptor for family " + config.family);
  const int threads = options.threads > 0 ? options.threads : ThreadPool::hardware_threads();
  impl->ctx = std::make_unique<Context>(options.device, threads);
  impl->ctx->cpu.gemm_min_rows = kGemmMinRows;

  // Every tensor the configuration needs, under the descriptor's names.
  struct Job {
    std::string name;
    Need need;
  };
  std::vector<Job> jobs;
  for (const Need& need : model_needs(config))
    if (!(need.slot == Slot::LmHead && config.lm_head == LmHead::Tied))
      jobs.push_back({model::tensor_name(*impl->arch, need.slot, -1), need});
  const std::vector<Need> per_layer = layer_needs(config);
  for (int64_t l = 0; l < config.n_layers; ++l)
    for (const Need& need : per_layer)
      jobs.push_back({model::tensor_name(*impl->arch, need.slot, l), need});
  int64_t total_bytes = 0, done_bytes = 0;
  for (const Job& j : jobs) total_bytes += need_bytes(j.need, options.dtype);

  for (size_t ji = 0; ji < jobs.size(); ++ji) {
    const Job& j = jobs[ji];
    if (j.name.empty())
      throw Error("random weights: the " + config.family + " descriptor names no tensor for " +
                  std::string(model::slot_name(j.need.slot)));
    const DType dt = j.need.role == Role::Matrix ? options.dtype : DType::F32;
    const int64_t cols = j.need.shape.back();
    int64_t rows = 1;
    for (size_t d = 0; d + 1 < j.need.shape.size(); ++d) rows *= j.need.shape[d];
    if (cols % traits(dt).block_size != 0)
      throw Error(fmt::format("random weights: tensor \"{}\" has rows of {} values, not a "
                              "multiple of {}'s block of {}",
                              j.name, cols, traits(dt).name, traits(dt).block_size));
    const size_t rb = row_bytes(dt, cols);
    auto buf = std::make_shared<HostBuffer>(rb * size_t(rows));
    auto* base = static_cast<uint8_t*>(buf->data());
    const Slot sl = j.need.slot;
    const bool is_norm_weight = sl == Slot::EmbeddingNormWeight || sl == Slot::FinalNormWeight ||
                                sl == Slot::AttnNormWeight || sl == Slot::FfnNormWeight;
    const bool is_bias = j.need.role == Role::Vector && !is_norm_weight &&
                         sl != Slot::PositionEmbedding;
    const uint64_t tensor_seed = mix64(options.seed ^ mix64(uint64_t(ji) + 1));
    // Uniform on [-a, a] with standard deviation 0.02.
    const float a = 0.02f * std::sqrt(3.0f);
    impl->ctx->pool.parallel_for(rows, 1, [&](int64_t r0, int64_t r1) {
      std::vector<float> tmp(static_cast<size_t>(cols));
      for (int64_t r = r0; r < r1; ++r) {
        if (is_norm_weight || is_bias) {
          std::fill(tmp.begin(), tmp.end(), is_norm_weight ? 1.0f : 0.0f);
        } else {
          uint64_t st = mix64(tensor_seed + uint64_t(r));
          for (int64_t i = 0; i < cols; ++i) {
            st ^= st << 13;
            st ^= st >> 7;
            st ^= st << 17;
            const float u = float(st >> 40) * (1.0f / 16777216.0f);  // [0, 1)
            tmp[size_t(i)] = (2.0f * u - 1.0f) * a;
          }
        }
        traits(dt).from_float(tmp.data(), base + rb * size_t(r), cols);
      }
    });
    impl->store.add(j.name,
                    Tensor::view(buf->data(), dt, j.need.shape.data(), int(j.need.shape.size())),
                    impl->path);
    impl->store.keep_alive(buf);
    done_bytes += need_bytes(j.need, options.dtype);
    if (options.progress) options.progress(0.99 * double(done_bytes) / double(total_bytes));
  }
  impl->bind(options.dtype);
  impl->mapped = false;
  impl->prepare();
  if (options.progress) options.progress(1.0);
  return std::unique_ptr<Model>(new Model(std::move(impl)));
}

}  // namespace runnel
