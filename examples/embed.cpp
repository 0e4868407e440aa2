// Sentence embeddings from a decoder: the mean of the final hidden states
// (after the final norm, as transformers' last_hidden_state) over the tokens
// of each text, L2-normalised, then the cosine similarity of every pair.
//
//   embed MODEL [--tokenizer PATH] TEXT... | embed MODEL --ids 1,2,3 --ids 4,5 ...
//
// All texts go through the model in one batched forward pass: every item has
// its own KV cache, and the matrix products read the weights once for all.
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <runnel/error.hpp>
#include <runnel/model.hpp>

#include "common.hpp"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL [--tokenizer PATH] (TEXT | --ids 1,2,3)...\n", argv[0]);
    return 2;
  }
  try {
    runnel::LoadOptions load;
    std::vector<std::string> texts, id_lists;
    for (int i = 2; i < argc; ++i) {
      const std::string a = argv[i];
      if ((a == "--tokenizer" || a == "--ids") && i + 1 >= argc)
        throw runnel::Error(a + ": expected a value");
      if (a == "--tokenizer") load.tokenizer_path = argv[++i];
      else if (a == "--ids") id_lists.push_back(argv[++i]);
      else texts.push_back(a);
    }
    auto model = runnel::Model::load(argv[1], load);

    std::vector<std::vector<int32_t>> prompts;
    for (const std::string& t : texts) prompts.push_back(example::prompt_ids(*model, t, ""));
    for (const std::string& s : id_lists) prompts.push_back(example::parse_ids(s));
    if (prompts.empty()) throw runnel::Error("nothing to embed: give texts or --ids");

    // One item per text: its own cache, every row's hidden state, no logits.
    const size_t n = prompts.size();
    std::vector<std::unique_ptr<runnel::KvCache>> caches;
    std::vector<std::vector<float>> hidden(n);  // [tokens, embed_dim] each
    std::vector<runnel::Model::BatchItem> items(n);
    for (size_t i = 0; i < n; ++i) {
      caches.push_back(model->new_cache());
      items[i].cache = caches.back().get();
      items[i].ids = prompts[i];
      items[i].pos0 = 0;
      items[i].which = runnel::Logits::All;
      items[i].hidden = &hidden[i];
    }
    model->forward(items);

    const size_t dim = size_t(model->config().embed_dim);
    std::vector<std::vector<float>> emb(n, std::vector<float>(dim, 0.0f));  // [n][embed_dim]
    for (size_t i = 0; i < n; ++i) {
      const size_t rows = prompts[i].size();
      if (hidden[i].size() != rows * dim)
        throw runnel::Error("hidden states of item " + std::to_string(i) + ": expected " +
                            std::to_string(rows * dim) + " floats, got " +
                            std::to_string(hidden[i].size()));
      for (size_t r = 0; r < rows; ++r)
        for (size_t d = 0; d < dim; ++d) emb[i][d] += hidden[i][r * dim + d] / float(rows);
      double norm = 0;
      for (float x : emb[i]) norm += double(x) * x;
      norm = std::sqrt(norm);
      if (norm > 0)
        for (float& x : emb[i]) x = float(x / norm);
      std::printf("%zu: %zu tokens, embedding[0:4] =", i, rows);
      for (size_t d = 0; d < dim && d < 4; ++d) std::printf(" %+.5f", emb[i][d]);
      std::printf("\n");
    }
    std::printf("cosine similarity (%zu-dim):\n", dim);
    for (size_t i = 0; i < n; ++i) {
      for (size_t j = 0; j < n; ++j) {
        double dot = 0;
        for (size_t d = 0; d < dim; ++d) dot += double(emb[i][d]) * emb[j][d];
        std::printf(" %6.3f", dot);
      }
      std::printf("\n");
    }
  } catch (const runnel::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
