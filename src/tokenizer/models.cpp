// Segmentation models: HF BPE, SentencePiece BPE, unigram and llama2.c.
#include <algorithm>
#include <cstdio>
#include <limits>
#include <queue>

#include "runnel/error.hpp"
#include "tokenizer/pipeline.hpp"

namespace runnel::tok {

namespace {

std::string byte_piece(unsigned char b) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
  return buf;
}

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

// ---- HF BPE ----

class BpeModel final : public Model {
 public:
  BpeModel(const VocabIndex& vocab, const std::vector<BpeMerge>& merges, BpeOptions o)
      : vocab_(vocab), opt_(std::move(o)) {
    merges_.reserve(merges.size() * 2);
    for (size_t i = 0; i < merges.size(); ++i)
      merges_[pair_key(merges[i].left, merges[i].right)] = {static_cast<uint32_t>(i), merges[i].merged};
    for (int b = 0; b < 256; ++b) byte_ids_[static_cast<size_t>(b)] = vocab_.find(byte_piece(static_cast<unsigned char>(b)));
  }

  void tokenize(std::string_view word, std::vector<int32_t>& out) const override {
    if (word.empty()) return;
    if (opt_.ignore_merges) {
      const int32_t id = vocab_.find(word);
      if (id >= 0) {
        out.push_back(id);
        return;
      }
    }
    struct Symbol {
      int32_t id;
      int32_t prev, next;
      bool alive;
    };
    std::vector<Symbol> syms;
    syms.reserve(word.size());
    auto add = [&](int32_t id) {
      const auto n = static_cast<int32_t>(syms.size());
      syms.push_back({id, n - 1, n + 1, true});
    };
    int32_t unk_pending = -1;  // fused run of unknown characters
    std::string s;
    size_t i = 0;
    while (i < word.size()) {
      const size_t b = i;
      size_t n = utf8_char_len(static_cast<unsigned char>(word[i]));
      if (b + n > word.size()) n = word.size() - b;
      i = b + n;
      s.assign(word.substr(b, n));
      if (!opt_.continuing_subword_prefix.empty() && b != 0) s.insert(0, opt_.continuing_subword_prefix);
      if (!opt_.end_of_word_suffix.empty() && i == word.size()) s += opt_.end_of_word_suffix;
      const int32_t id = vocab_.find(s);
      if (id >= 0) {
        if (unk_pending >= 0) add(unk_pending), unk_pending = -1;
        add(id);
        continue;
      }
      if (opt_.byte_fallback) {
        bool all = true;
        for (unsigned char c : s) all = all && byte_ids_[c] >= 0;
        if (all) {
          if (unk_pending >= 0) add(unk_pending), unk_pending = -1;
          for (unsigned char c : s) add(byte_ids_[c]);
          continue;
        }
      }
      if (opt_.unk_id >= 0) {
        if (unk_pending >= 0 && !opt_.fuse_unk) add(unk_pending);
        unk_pending = opt_.unk_id;
      }
    }
    if (unk_pending >= 0) add(unk_pending);
    if (syms.empty()) return;
    syms.back().next = -1;

    struct Merge {
      int32_t pos;
      uint32_t rank;
      int32_t merged;
      bool operator<(const Merge& o) const {  // priority_queue pops the largest
        return rank != o.rank ? rank > o.rank : pos > o.pos;
      }
    };
    auto lookup = [&](int32_t a, int32_t b) -> const std::pair<uint32_t, int32_t>* {
      const auto it = merges_.find(pair_key(a, b));
      return it == merges_.end() ? nullptr : &it->second;
    };
    std::vector<Merge> heap_storage;
    heap_storage.reserve(syms.size());
    std::priority_queue<Merge> queue(std::less<Merge>(), std::move(heap_storage));
    for (size_t k = 0; k + 1 < syms.size(); ++k)
      if (const auto* m = lookup(syms[k].id, syms[k + 1].id))
        queue.push({static_cast<int32_t>(k), m->first, m->second});
    while (!queue.empty()) {
      const Merge top = queue.top();
      queue.pop();
      Symbol& cur = syms[static_cast<size_t>(top.pos)];
      if (!cur.alive || cur.next < 0) continue;
      Symbol& right = syms[static_cast<size_t>(cur.next)];
      const auto* m = lookup(cur.id, right.id);
      if (!m || m->second != top.merged) continue;
      cur.id = top.merged;
      right.alive = false;
      cur.next = right.next;
      if (right.next >= 0) syms[static_cast<size_t>(right.next)].prev = top.pos;
      if (cur.prev >= 0)
        if (const auto* pm = lookup(syms[static_cast<size_t>(cur.prev)].id, cur.id))
          queue.push({cur.prev, pm->first, pm->second});
      if (cur.next >= 0)
        if (const auto* nm = lookup(cur.id, syms[static_cast<size_t>(cur.next)].id))
          queue.push({top.pos, nm->first, nm->second});
    }
    for (const auto& sym : syms)
      if (sym.alive) out.push_back(sym.id);
  }

 private:
  const VocabIndex& vocab_;
  BpeOptions opt_;
  std::unordered_map<uint64_t, std::pair<uint32_t, int32_t>> merges_;  // (left, right) -> (rank, merged)
  std::array<int32_t, 256> byte_ids_{};
};

// ---- scored merges (SentencePiece BPE and llama2.c) ----

struct ScoredSymbol {
  int32_t prev, next;
  size_t begin, len;  // text range (SentencePiece) ...
  int32_t id;         // ... or current token (llama2.c)
};

struct Bigram {
  int32_t left, right;
  float score;
  size_t size;       // SentencePiece: merged text length
  int32_t left_id;   // llama2.c: ids when queued
  int32_t right_id;
  int32_t merged;
  bool operator<(const Bigram& o) const {  // highest score first, then leftmost
    return score != o.score ? score < o.score : left > o.left;
  }
};

class SpmBpeModel final : public Model {
 public:
  SpmBpeModel(const VocabIndex& vocab, std::vector<float> scores, std::vector<uint8_t> mergeable, int32_t unk,
              bool byte_fallback)
      : vocab_(vocab), scores_(std::move(scores)), mergeable_(std::move(mergeable)), unk_(unk),
        byte_fallback_(byte_fallback) {
    for (int b = 0; b < 256; ++b) byte_ids_[static_cast<size_t>(b)] = vocab_.find(byte_piece(static_cast<unsigned char>(b)));
  }

  void tokenize(std::string_view text, std::vector<int32_t>& out) const override {
    if (text.empty()) return;
    std::vector<ScoredSymbol> syms;
    size_t i = 0;
    while (i < text.size()) {
      size_t n = utf8_char_len(static_cast<unsigned char>(text[i]));
      n = std::min(n, text.size() - i);
      const auto k = static_cast<int32_t>(syms.size());
      syms.push_back({k - 1, k + 1, i, n, -1});
      i += n;
    }
    syms.back().next = -1;
    std::priority_queue<Bigram> queue;
    auto try_add = [&](int32_t l, int32_t r) {
      if (l < 0 || r < 0) return;
      const auto& a = syms[static_cast<size_t>(l)];
      const auto& b = syms[static_cast<size_t>(r)];
      const int32_t id = vocab_.find(text.substr(a.begin, a.len + b.len));
      if (id < 0 || !mergeable(id)) return;
      queue.push({l, r, score(id), a.len + b.len, -1, -1, id});
    };
    for (size_t k = 1; k < syms.size(); ++k) try_add(static_cast<int32_t>(k - 1), static_cast<int32_t>(k));
    while (!queue.empty()) {
      const Bigram bg = queue.top();
      queue.pop();
      auto& l = syms[static_cast<size_t>(bg.left)];
      auto& r = syms[static_cast<size_t>(bg.right)];
      if (l.len == 0 || r.len == 0 || l.len + r.len != bg.size) continue;
      l.len += r.len;
      r.len = 0;
      l.next = r.next;
      if (r.next >= 0) syms[static_cast<size_t>(r.next)].prev = bg.left;
      try_add(l.prev, bg.left);
      try_add(bg.left, l.next);
    }
    bool last_unk = false;
    for (int32_t k = 0; k != -1; k = syms[static_cast<size_t>(k)].next) {
      const auto& s = syms[static_cast<size_t>(k)];
      const std::string_view piece = text.substr(s.begin, s.len);
      const int32_t id = vocab_.find(piece);
      if (id >= 0) {
        out.push_back(id);
        last_unk = false;
        continue;
      }
      if (byte_fallback_) {
        bool all = true;
        for (unsigned char c : piece) all = all && byte_ids_[c] >= 0;
        if (all) {
          for (unsigned char c : piece) out.push_back(byte_ids_[c]);
          last_unk = false;
          continue;
        }
      }
      if (unk_ >= 0 && !last_unk) out.push_back(unk_);
      last_unk = unk_ >= 0;
    }
  }

 private:
  bool mergeable(int32_t id) const {
    return mergeable_.empty() || (static_cast<size_t>(id) < mergeable_.size() && mergeable_[static_cast<size_t>(id)]);
  }
  float score(int32_t id) const {
    return static_cast<size_t>(id) < scores_.size() ? scores_[static_cast<size_t>(id)] : 0.0f;
  }
  const VocabIndex& vocab_;
  std::vector<float> scores_;
  std::vector<uint8_t> mergeable_;
  int32_t unk_;
  bool byte_fallback_;
  std::array<int32_t, 256> byte_ids_{};
};

class Llama2cModel final : public Model {
 public:
  Llama2cModel(const VocabIndex& vocab, std::vector<float> scores) : vocab_(vocab), scores_(std::move(scores)) {}

  void tokenize(std::string_view text, std::vector<int32_t>& out) const override {
    if (text.empty()) return;
    std::vector<int32_t> ids;
    const int32_t dummy = vocab_.find(" ");
    if (dummy >= 0) ids.push_back(dummy);
    // run.c: gather a lead byte and up to three continuation bytes, look the
    // code point up, else emit each byte as byte + 3.
    std::string buf;
    for (size_t i = 0; i < text.size(); ++i) {
      const auto c = static_cast<unsigned char>(text[i]);
      if ((c & 0xC0) != 0x80) buf.clear();
      buf += static_cast<char>(c);
      const bool next_cont = i + 1 < text.size() && (static_cast<unsigned char>(text[i + 1]) & 0xC0) == 0x80;
      if (next_cont && buf.size() < 4) continue;
      const int32_t id = vocab_.find(buf);
      if (id >= 0) {
        ids.push_back(id);
      } else {
        for (unsigned char b : buf) {
          const int32_t bid = static_cast<int32_t>(b) + 3;
          if (static_cast<size_t>(bid) < vocab_.pieces.size()) ids.push_back(bid);
        }
      }
      buf.clear();
    }
    if (ids.empty()) return;
    std::vector<ScoredSymbol> syms(ids.size());
    for (size_t k = 0; k < ids.size(); ++k)
      syms[k] = {static_cast<int32_t>(k) - 1, static_cast<int32_t>(k) + 1, 0, 1, ids[k]};
    syms.back().next = -1;
    std::priority_queue<Bigram> queue;
    std::string cat;
    auto try_add = [&](int32_t l, int32_t r) {
      if (l < 0 || r < 0) return;
      const int32_t a = syms[static_cast<size_t>(l)].id, b = syms[static_cast<size_t>(r)].id;
      cat = vocab_.pieces[static_cast<size_t>(a)];
      cat += vocab_.pieces[static_cast<size_t>(b)];
      const int32_t id = vocab_.find(cat);
      if (id < 0) return;
      const float sc = scores_[static_cast<size_t>(id)];
      if (!(sc > -1e10f)) return;  // run.c starts its search at -1e10
      queue.push({l, r, sc, 0, a, b, id});
    };
    for (size_t k = 1; k < syms.size(); ++k) try_add(static_cast<int32_t>(k - 1), static_cast<int32_t>(k));
    while (!queue.empty()) {
      const Bigram bg = queue.top();
      queue.pop();
      auto& l = syms[static_cast<size_t>(bg.left)];
      auto& r = syms[static_cast<size_t>(bg.right)];
      if (l.len == 0 || r.len == 0 || l.next != bg.right || l.id != bg.left_id || r.id != bg.right_id) continue;
      l.id = bg.merged;
      r.len = 0;
      l.next = r.next;
      if (r.next >= 0) syms[static_cast<size_t>(r.next)].prev = bg.left;
      try_add(l.prev, bg.left);
      try_add(bg.left, l.next);
    }
    for (int32_t k = 0; k != -1; k = syms[static_cast<size_t>(k)].next) out.push_back(syms[static_cast<size_t>(k)].id);
  }

 private:
  const VocabIndex& vocab_;
  std::vector<float> scores_;
};

// ---- unigram ----

class UnigramModel final : public Model {
 public:
  UnigramModel(const VocabIndex& vocab, std::vector<double> scores, int32_t unk, bool byte_fallback)
      : vocab_(vocab), scores_(std::move(scores)), unk_(unk), byte_fallback_(byte_fallback) {
    double min_score = std::numeric_limits<double>::max();
    for (double s : scores_) min_score = std::min(min_score, s);
    unk_score_ = (scores_.empty() ? 0.0 : min_score) - 10.0;
    for (const auto& p : vocab_.pieces) max_len_ = std::max(max_len_, p.size());
    for (int b = 0; b < 256; ++b) byte_ids_[static_cast<size_t>(b)] = vocab_.find(byte_piece(static_cast<unsigned char>(b)));
  }

  void tokenize(std::string_view text, std::vector<int32_t>& out) const override {
    if (text.empty()) return;
    struct Node {
      int32_t id = -1;
      int64_t start = -1;
      double score = 0;
    };
    const size_t n = text.size();
    std::vector<Node> best(n + 1);
    best[0].start = 0;
    size_t pos = 0;
    while (pos < n) {
      const size_t clen = std::min(utf8_char_len(static_cast<unsigned char>(text[pos])), n - pos);
      if (best[pos].start < 0 && pos != 0) {  // unreachable position: skip (cannot happen with unk)
        pos += clen;
        continue;
      }
      const double base = best[pos].score;
      bool single = false;
      size_t end = pos;
      while (end < n && end - pos < max_len_) {
        end += std::min(utf8_char_len(static_cast<unsigned char>(text[end])), n - end);
        if (end - pos > max_len_) break;
        const int32_t id = vocab_.find(text.substr(pos, end - pos));
        if (id < 0) continue;
        const double cand = base + scores_[static_cast<size_t>(id)];
        if (best[end].start < 0 || cand > best[end].score) best[end] = {id, static_cast<int64_t>(pos), cand};
        if (end - pos == clen) single = true;
      }
      if (!single) {
        const double cand = base + unk_score_;
        const size_t e = pos + clen;
        if (best[e].start < 0 || cand > best[e].score) best[e] = {unk_, static_cast<int64_t>(pos), cand};
      }
      pos += clen;
    }
    // Backtrack, fusing runs of unknown pieces.
    std::vector<std::pair<size_t, size_t>> ranges;
    std::vector<int32_t> ids;
    size_t e = n;
    while (e > 0) {
      const Node& node = best[e];
      const auto s = static_cast<size_t>(node.start);
      ids.push_back(node.id);
      ranges.emplace_back(s, e);
      e = s;
    }
    std::reverse(ids.begin(), ids.end());
    std::reverse(ranges.begin(), ranges.end());
    for (size_t k = 0; k < ids.size(); ++k) {
      const bool unk = ids[k] == unk_;
      if (!unk) {
        out.push_back(ids[k]);
        continue;
      }
      size_t end_k = k;
      while (end_k + 1 < ids.size() && ids[end_k + 1] == unk_) ++end_k;
      const std::string_view piece = text.substr(ranges[k].first, ranges[end_k].second - ranges[k].first);
      bool done = false;
      if (byte_fallback_) {
        bool all = true;
        for (unsigned char c : piece) all = all && byte_ids_[c] >= 0;
        if (all) {
          for (unsigned char c : piece) out.push_back(byte_ids_[c]);
          done = true;
        }
      }
      if (!done && unk_ >= 0) out.push_back(unk_);
      k = end_k;
    }
  }

 private:
  const VocabIndex& vocab_;
  std::vector<double> scores_;
  int32_t unk_;
  bool byte_fallback_;
  double unk_score_ = 0;
  size_t max_len_ = 0;
  std::array<int32_t, 256> byte_ids_{};
};

}  // namespace

ModelPtr make_bpe_model(const VocabIndex& vocab, const std::vector<BpeMerge>& merges, BpeOptions options) {
  return std::make_unique<BpeModel>(vocab, merges, std::move(options));
}
ModelPtr make_spm_bpe_model(const VocabIndex& vocab, std::vector<float> scores, std::vector<uint8_t> mergeable,
                            int32_t unk_id, bool byte_fallback) {
  return std::make_unique<SpmBpeModel>(vocab, std::move(scores), std::move(mergeable), unk_id, byte_fallback);
}
ModelPtr make_unigram_model(const VocabIndex& vocab, std::vector<double> scores, int32_t unk_id, bool byte_fallback) {
  return std::make_unique<UnigramModel>(vocab, std::move(scores), unk_id, byte_fallback);
}
ModelPtr make_llama2c_model(const VocabIndex& vocab, std::vector<float> scores) {
  return std::make_unique<Llama2cModel>(vocab, std::move(scores));
}

}  // namespace runnel::tok
