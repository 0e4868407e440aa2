// Binding: a checkpoint's tensors to the logical slots its ModelConfig needs,
// checked for shape and dtype (converted where asked), and Model::load.
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>

#include "gguf/names.hpp"
#include "model/model_impl.hpp"
#include "runnel/error.hpp"
#include "runnel/gguf.hpp"
#include "tokenizer/tokenizer_impl.hpp"

namespace runnel {
namespace model_detail {

using model::Slot;

// The model-level tensors `c` needs, with their shapes.
std::vector<Need> model_needs(const ModelConfig& c) {
  std::vector<Need> n;
  n.push_back({Slot::TokenEmbedding, {c.vocab_size, c.embed_dim}, Role::Matrix});
  if (c.position == PositionKind::Learned)
    n.push_back({Slot::PositionEmbedding,
                 {c.max_positions + c.position_offset, c.hidden_size},
                 Role::Vector});
  if (c.embedding_norm == EmbeddingNorm::LayerNorm) {
    n.push_back({Slot::EmbeddingNormWeight, {c.embed_dim}, Role::Vector});
    n.push_back({Slot::EmbeddingNormBias, {c.embed_dim}, Role::Vector});
  }
  if (c.projection == EmbeddingProjection::InOut) {
    n.push_back({Slot::ProjectIn, {c.hidden_size, c.embed_dim}, Role::Matrix});
    n.push_back({Slot::ProjectOut, {c.embed_dim, c.hidden_size}, Role::Matrix});
  }
  if (c.final_norm == FinalNorm::Present) {
    n.push_back({Slot::FinalNormWeight, {c.hidden_size}, Role::Vector});
    if (c.norm_bias == Bias::Present)
      n.push_back({Slot::FinalNormBias, {c.hidden_size}, Role::Vector});
  }
  if (c.lm_head == LmHead::Separate)
    n.push_back({Slot::LmHead, {c.vocab_size, c.embed_dim}, Role::Matrix});
  return n;
}

// The tensors each layer of `c` needs.
std::vector<Need> layer_needs(const ModelConfig& c) {
  const int64_t H = c.hidden_size, QD = c.n_heads * c.head_dim, KD = c.n_kv_heads * c.head_dim;
  const int64_t F = c.ffn_dim;
  std::vector<Need> n;
  auto norm = [&](Slot w, Slot b) {
    n.push_back({w, {H}, Role::Vector});
    if (c.norm_bias == Bias::Present) n.push_back({b, {H}, Role::Vector});
  };
  auto linear = [&](Slot w, Slot b, int64_t out, int64_t in, Bias bias) {
    n.push_back({w, {out, in}, Role::Matrix});
    if (bias == Bias::Present) n.push_back({b, {out}, Role::Vector});
  };
  norm(Slot::AttnNormWeight, Slot::AttnNormBias);
  if (c.qkv_layout == QkvLayout::Separate) {
    linear(Slot::QWeight, Slot::QBias, QD, H, c.qkv_bias);
    linear(Slot::KWeight, Slot::KBias, KD, H, c.qkv_bias);
    linear(Slot::VWeight, Slot::VBias, KD, H, c.qkv_bias);
  } else {
    linear(Slot::QkvWeight, Slot::QkvBias, 3 * QD, H, c.qkv_bias);
  }
  linear(Slot::OutWeight, Slot::OutBias, H, QD, c.out_bias);
  norm(Slot::FfnNormWeight, Slot::FfnNormBias);
  if (c.mlp == MlpKind::Gated) linear(Slot::GateWeight, Slot::GateBias, F, H, c.mlp_bias);
  linear(Slot::UpWeight, Slot::UpBias, F, H, c.mlp_bias);
  linear(Slot::DownWeight, Slot::DownBias, H, F, c.mlp_bias);
  return n;
}

// The dump directory (--dump-layers, $RUNNEL_DUMP): an existing writable
// directory, or one new last component under an existing directory; never a
// chain of new directories.
void prepare_dump_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  const std::string what = "dump directory (--dump-layers / RUNNEL_DUMP) " + dir;
  std::error_code ec;
  const fs::file_status st = fs::status(dir, ec);
  if (st.type() == fs::file_type::directory) {
    if (::access(dir.c_str(), W_OK | X_OK) != 0)
      throw Error(what + ": not writable: " + std::strerror(errno));
    return;
  }
  if (st.type() != fs::file_type::not_found) {
    if (ec) throw Error(what + ": cannot access: " + ec.message());
    throw Error(what + ": exists and is not a directory");
  }
  fs::path norm = fs::path(dir).lexically_normal();
  if (!norm.has_filename()) norm = norm.parent_path();  // "a/b/"
  fs::path parent = norm.parent_path();
  if (parent.empty()) parent = ".";
  if (!fs::is_directory(parent, ec))
    throw Error(what + ": its parent " + parent.string() +
                " is not an existing directory (only the last component is created)");
  if (::mkdir(dir.c_str(), 0777) != 0)
    throw Error(what + ": cannot create: " + std::strerror(errno));
}

}  // namespace model_detail

using namespace model_detail;
using model::Slot;

namespace {

std::string shape_list(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace

const WeightStore::Entry* Model::Impl::lookup(const std::string& name, std::string* found) const {
  if (const auto* e = store.find(name)) {
    *found = name;
    return e;
  }
  for (const char* p : arch->optional_prefixes) {
    const size_t len = std::strlen(p);
    if (name.compare(0, len, p) != 0) continue;
    if (const auto* e = store.find(name.substr(len))) {
      *found = name.substr(len);
      return e;
    }
  }
  return nullptr;
}

bool Model::Impl::ignorable(const std::string& name) const {
  std::vector<std::string> patterns;
  for (const char* p : arch->ignored) patterns.emplace_back(p);
  // A tied head may still be stored; transformers ignores it too.
  if (cfg.lm_head == LmHead::Tied) {
    const std::string head = model::tensor_name(*arch, Slot::LmHead, 0);
    if (!head.empty()) patterns.push_back(head);
  }
  for (const std::string& pat : patterns) {
    if (model::name_matches(pat, name)) return true;
    for (const char* p : arch->optional_prefixes) {
      const size_t len = std::strlen(p);
      if (pat.compare(0, len, p) == 0 &&
          model::name_matches(std::string_view(pat).substr(len), name))
        return true;
    }
  }
  return false;
}

void Model::Impl::bind(std::optional<DType> dtype, const std::function<void(double)>& progress) {
  const std::string tok_name = model::tensor_name(*arch, Slot::TokenEmbedding, 0);
  std::string found;
  const WeightStore::Entry* tok = lookup(tok_name, &found);
  if (!tok)
    throw Error(fmt::format("{}: missing tensor \"{}\" (the token embeddings)", path, tok_name));
  fdtype = tok->tensor.dtype();
  wdtype = dtype.value_or(fdtype);
  if (!traits(wdtype).is_float)
    throw Error("compute dtype must be f32, f16, bf16 or a quantized weight type");

  matrix_types.clear();
  bound_bytes = 0;
  std::map<DType, int64_t> stored_types;  // the same, as stored
  std::set<std::string> used;
  auto bind_one = [&](const Need& need, int64_t layer) -> Tensor {
    const std::string what = layer >= 0
                                 ? fmt::format("{} of layer {}", model::slot_name(need.slot), layer)
                                 : std::string(model::slot_name(need.slot));
    const std::string name = model::tensor_name(*arch, need.slot, layer);
    if (name.empty())
      throw Error(
          fmt::format("{}: the {} descriptor names no tensor for {}, which this "
                      "configuration needs",
                      cfg.source, cfg.family, what));
    const WeightStore::Entry* e = lookup(name, &found);
    if (!e) {
      // A GGUF's tensors are named as llama.cpp names them.
      const std::string gname = format == "gguf" ? gguf::tensor_name(need.slot, layer) : "";
      throw Error(fmt::format("{}: missing tensor \"{}\" ({}), needed by this {} configuration",
                              path, gname.empty() ? name : gname, what, cfg.family));
    }
    used.insert(found);
    const Tensor& t = e->tensor;
    // Messages name the tensor as its file does.
    const std::string& shown = e->file_name.empty() ? found : e->file_name;
    const std::string& where = e->file_name.empty() ? e->source : path;
    bool shape_ok = t.ndim() == int(need.shape.size());
    for (int i = 0; shape_ok && i < t.ndim(); ++i) shape_ok = t.dim(i) == need.shape[size_t(i)];
    if (!shape_ok)
      throw Error(fmt::format("{}: tensor \"{}\" has shape {} but {} implies {}", where, shown,
                              t.shape_str(),
                              format == "gguf" ? "its metadata" : cfg.source,
                              shape_list(need.shape)));
    if (!traits(t.dtype()).is_float)
      throw Error(fmt::format("{}: tensor \"{}\": dtype {} is not supported (f32, f16, bf16, "
                              "q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k)",
                              where, shown, dtype_name(t.dtype())));
    DType want = need.role == Role::Matrix ? wdtype : DType::F32;
    // Quantized files mix types (some matrices stay f16 or f32): unless a
    // compute dtype is asked for, each matrix keeps the type it is stored in.
    if (need.role == Role::Matrix && !dtype &&
        (traits(t.dtype()).block_size > 1 || traits(wdtype).block_size > 1))
      want = t.dtype();
    if (need.role == Role::Matrix) ++matrix_types[want], ++stored_types[t.dtype()];
    if (t.dtype() == want) {
      bound_bytes += int64_t(t.nbytes());
      return t;
    }
    if (need.role == Role::Matrix) mapped = false;
    size_t bytes = row_bytes(want, t.numel());
    auto buf = std::make_unique<HostBuffer>(bytes);
    Tensor dst = Tensor::view(buf->data(), want, need.shape.data(), int(need.shape.size()));
    ops::convert(*ctx, t, dst);
    owned.push_back(std::move(buf));
    bound_bytes += int64_t(bytes);
    return dst;
  };

  for (const Need& need : model_needs(cfg)) global[size_t(need.slot)] = bind_one(need, -1);
  if (cfg.lm_head == LmHead::Tied) global[size_t(Slot::LmHead)] = G(Slot::TokenEmbedding);
  const std::vector<Need> per_layer = layer_needs(cfg);
  layers.resize(size_t(cfg.n_layers));
  for (int64_t l = 0; l < cfg.n_layers; ++l) {
    for (const Need& need : per_layer) layers[size_t(l)][size_t(need.slot)] = bind_one(need, l);
    if (progress) progress(double(l + 1) / double(cfg.n_layers + 1));
  }

  std::vector<std::string> extra;  // as their files name them
  const WeightStore::Entry* first_extra = nullptr;
  for (const auto& [name, e] : store.entries())
    if (!used.count(name) && !ignorable(name)) {
      extra.push_back(e.file_name.empty() ? name : e.file_name);
      if (!first_extra) first_extra = &e;
    }
  if (!extra.empty()) {
    std::string more;
    if (extra.size() > 1) {
      more = fmt::format(" (and {} more:", extra.size() - 1);
      for (size_t i = 1; i < extra.size() && i < 6; ++i) more += " \"" + extra[i] + "\"";
      more += extra.size() > 6 ? " ...)" : ")";
    }
    throw Error(fmt::format(
        "{}: tensor \"{}\" is not used by this {} configuration{}; the "
        "checkpoint does not match {}",
        first_extra->file_name.empty() ? first_extra->source : path, extra[0], cfg.family, more,
        format == "gguf" ? "its metadata" : cfg.source));
  }
  // Quantized files mix types (llama.cpp's Q4_1 files keep a Q8_0 token
  // embedding; its Q4_K_M mixes Q4_K, Q6_K and Q5_0): the file's dtype is the
  // one most matrices are stored in, and so is the compute dtype unless one
  // was asked for.
  fdtype = most_common(stored_types, fdtype);
  if (!dtype) wdtype = most_common(matrix_types, wdtype);
  if (progress) progress(1.0);
}

std::unique_ptr<Model> Model::load(const std::string& path, const LoadOptions& options) {
  auto impl = std::make_unique<Impl>();
  // The files this load opens are mapped (or read) as the options say.
  struct ModeScope {
    MapMode saved = MappedFile::thread_default();
    explicit ModeScope(MapMode m) { MappedFile::thread_default() = m; }
    ~ModeScope() { MappedFile::thread_default() = saved; }
  } mode_scope(MapMode{options.mmap, options.mlock});
  Checkpoint ck = open_checkpoint(path);
  impl->path = ck.path;
  impl->format = ck.format;
  impl->cfg = ck.config;
  impl->store = std::move(ck.weights);
  impl->file_type = ck.file_type;
  impl->arch = model::find_arch(impl->cfg.family);
  if (!impl->arch) throw Error(path + ": no descriptor for family " + impl->cfg.family);
  const int threads = options.threads > 0 ? options.threads : ThreadPool::hardware_threads();
  impl->ctx = std::make_unique<Context>(options.device, threads);
  impl->ctx->cpu.gemm_min_rows = kGemmMinRows;
  impl->bind(options.dtype, options.progress);
  impl->prepare();
  const std::string tok_path =
      !options.tokenizer_path.empty() ? options.tokenizer_path : ck.tokenizer_path;
  if (!tok_path.empty())
    impl->tokenizer = std::make_unique<Tokenizer>(load_tokenizer(tok_path));
  else if (ck.vocab)  // embedded in the model file (GGUF)
    impl->tokenizer = std::make_unique<Tokenizer>(Tokenizer::from_vocab(*ck.vocab));
  // A llama2.c tokenizer.bin holds no token count: one with fewer tokens than
  // the model's embedding rows would fail only when an id past its end is
  // decoded.
  if (impl->tokenizer && impl->tokenizer->impl().llama2c &&
      int64_t(impl->tokenizer->vocab_size()) < impl->cfg.vocab_size)
    throw Error(fmt::format("{}: the llama2.c tokenizer has {} tokens but the model {} has a "
                            "vocabulary of {}: not its tokenizer",
                            impl->tokenizer->impl().name.empty() ? tok_path
                                                                 : impl->tokenizer->impl().name,
                            impl->tokenizer->vocab_size(), path,
                            impl->cfg.vocab_size));
  if (!options.dump_dir.empty()) {
    impl->dump_dir = options.dump_dir;
  } else if (const char* env = std::getenv("RUNNEL_DUMP"); env && *env) {
    impl->dump_dir = env;
  }
  if (!impl->dump_dir.empty()) prepare_dump_dir(impl->dump_dir);
  return std::unique_ptr<Model>(new Model(std::move(impl)));
}

}  // namespace runnel
