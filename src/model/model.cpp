// The model's public face: accessors, caches and Sequence.  The
// rest of Model lives beside it: bind.cpp, random_weights.cpp, forward.cpp.
#include "runnel/model.hpp"

#include <algorithm>
#include <cmath>

#include "model/model_impl.hpp"
#include "runnel/error.hpp"
#include "runnel/gguf.hpp"

namespace runnel {

using namespace model_detail;

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;

const ModelConfig& Model::config() const { return impl_->cfg; }
const std::string& Model::path() const { return impl_->path; }
const std::string& Model::format() const { return impl_->format; }
DType Model::weight_dtype() const { return impl_->wdtype; }
DType Model::file_dtype() const { return impl_->fdtype; }
bool Model::weights_mapped() const { return impl_->mapped; }

std::string Model::type_name() const {
  if (impl_->mapped && impl_->file_type >= 0) {
    const std::string_view name = gguf::file_type_name(impl_->file_type);
    if (!name.empty()) return std::string(name);
  }
  const DType most = most_common(impl_->matrix_types, impl_->wdtype);
  try {
    if (const gguf::GgmlTypeInfo* info = gguf::ggml_type_info(uint32_t(gguf::ggml_type_of(most))))
      return std::string(info->name);
  } catch (const Error&) {
  }
  return std::string(dtype_name(most));
}

int64_t Model::stored_weight_bytes() const { return impl_->bound_bytes; }
const Tokenizer* Model::tokenizer() const { return impl_->tokenizer.get(); }
Context& Model::context() { return *impl_->ctx; }

std::unique_ptr<KvCache> Model::new_cache(DType kv_dtype) const {
  const ModelConfig& c = impl_->cfg;
  return std::make_unique<ContiguousKvCache>(
      c.n_layers, c.n_kv_heads, c.head_dim, kv_dtype,
      c.position == PositionKind::Learned ? c.max_positions : 0, &impl_->ctx->backend());
}

void Model::forward(KvCache& cache, std::span<const int32_t> ids, int64_t pos0, Logits which,
                    std::vector<float>& logits) {
  BatchItem item;
  item.cache = &cache;
  item.ids = ids;
  item.pos0 = pos0;
  item.which = which;
  item.logits = &logits;
  impl_->forward(std::span<const BatchItem>(&item, 1));
}

void Model::forward(std::span<const BatchItem> items) { impl_->forward(items); }

void Model::set_dump_dir(const std::string& dir) {
  if (!dir.empty()) prepare_dump_dir(dir);
  impl_->dump_dir = dir;
}

// ---------------------------------------------------------------------------
// Sequence and generation

Sequence::Sequence(Model& model, DType kv_dtype)
    : model_(&model), cache_(model.new_cache(kv_dtype)) {}

std::vector<float> Sequence::prefill(std::span<const int32_t> ids, Logits which) {
  std::vector<float> logits;
  model_->forward(*cache_, ids, n_past(), which, logits);
  tokens_.insert(tokens_.end(), ids.begin(), ids.end());
  return logits;
}

std::vector<float> Sequence::decode(int32_t id) {
  std::vector<float> logits;
  model_->forward(*cache_, std::span<const int32_t>(&id, 1), n_past(), Logits::Last, logits);
  tokens_.push_back(id);
  return logits;
}

void Sequence::reset() { tokens_.clear(); }

int32_t argmax(std::span<const float> logits) {
  if (logits.empty()) throw Error("argmax of empty logits");
  size_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i)
    if (logits[i] > logits[best]) best = i;
  return int32_t(best);
}

}  // namespace runnel
