#include "tokenizer/pipeline.hpp"

#include <utf8proc.h>

#include <functional>
#include <limits>

#include "runnel/error.hpp"

namespace runnel::tok {

const char* const kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char* const kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kBloomPattern = " ?[^(\\s|[.,!?\xE2\x80\xA6\xE3\x80\x82\xEF\xBC\x8C\xE3\x80\x81\xE0\xA5\xA4\xDB\x94\xD8\x8C])]+";

namespace {

// A piece of text and whether it was matched by the split pattern.
struct Piece {
  size_t begin, end;
  bool match;
};

// HF Pattern::find_matches for a regex: matches and the gaps between them.
std::vector<Piece> regex_pieces(const Regex& re, std::string_view s) {
  std::vector<Piece> out;
  size_t prev = 0;
  for (const auto& [b, e] : re.find_all(s)) {
    if (b > prev) out.push_back({prev, b, false});
    out.push_back({b, e, true});
    prev = e;
  }
  if (prev < s.size()) out.push_back({prev, s.size(), false});
  return out;
}

// HF Pattern::find_matches for a character predicate: each matching character is a match.
std::vector<Piece> char_pieces(std::string_view s, const std::function<bool(char32_t)>& pred) {
  std::vector<Piece> out;
  size_t last = 0, i = 0;
  while (i < s.size()) {
    const size_t b = i;
    const char32_t c = next_codepoint(s, i);
    if (pred(c)) {
      if (last < b) out.push_back({last, b, false});
      out.push_back({b, i, true});
      last = i;
    }
  }
  if (last < s.size()) out.push_back({last, s.size(), false});
  return out;
}

// HF NormalizedString::split with a delimiter behavior; appends non-empty splits.
void split_by(const Split& in, std::vector<Piece> pieces, SplitBehavior behavior, bool invert,
              std::vector<Split>& out) {
  if (invert)
    for (auto& p : pieces) p.match = !p.match;
  struct Range {
    size_t begin, end;
    bool remove;
  };
  std::vector<Range> ranges;
  switch (behavior) {
    case SplitBehavior::Isolated:
      for (const auto& p : pieces) ranges.push_back({p.begin, p.end, false});
      break;
    case SplitBehavior::Removed:
      for (const auto& p : pieces) ranges.push_back({p.begin, p.end, p.match});
      break;
    case SplitBehavior::Contiguous: {
      bool prev = false;
      for (const auto& p : pieces) {
        if (p.match == prev && !ranges.empty())
          ranges.back().end = p.end;
        else
          ranges.push_back({p.begin, p.end, false});
        prev = p.match;
      }
      break;
    }
    case SplitBehavior::MergedWithPrevious: {
      bool prev = false;
      for (const auto& p : pieces) {
        if (p.match && !prev && !ranges.empty())
          ranges.back().end = p.end;
        else
          ranges.push_back({p.begin, p.end, false});
        prev = p.match;
      }
      break;
    }
    case SplitBehavior::MergedWithNext: {
      bool prev = false;
      for (size_t k = pieces.size(); k-- > 0;) {
        const auto& p = pieces[k];
        if (p.match && !prev && !ranges.empty())
          ranges.back().begin = p.begin;
        else
          ranges.push_back({p.begin, p.end, false});
        prev = p.match;
      }
      std::reverse(ranges.begin(), ranges.end());
      break;
    }
  }
  for (const auto& r : ranges) {
    if (r.remove || r.end <= r.begin) continue;
    out.push_back({in.text.substr(r.begin, r.end - r.begin), in.at_start && r.begin == 0});
  }
}

template <class F>
void for_each_split(std::vector<Split>& splits, F&& f) {
  std::vector<Split> out;
  out.reserve(splits.size());
  for (const auto& s : splits) f(s, out);
  splits = std::move(out);
}

void check_length(size_t n, size_t max_bytes) {
  if (n > max_bytes) throw TextTooLong("the text grew past " + std::to_string(max_bytes) + " bytes");
}

void replace_all(std::string& s, std::string_view from, std::string_view to,
                 size_t max_bytes = std::numeric_limits<size_t>::max()) {
  if (from.empty() || s.find(from) == std::string::npos) return;
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  while (true) {
    const size_t hit = s.find(from, pos);
    if (hit == std::string::npos) break;
    out.append(s, pos, hit - pos);
    check_length(out.size() + to.size(), max_bytes);
    out.append(to);
    pos = hit + from.size();
  }
  out.append(s, pos, std::string::npos);
  s = std::move(out);
}

// ---- normalizers ----

struct UnicodeNorm final : Normalizer {
  NormalForm form;
  explicit UnicodeNorm(NormalForm f) : form(f) {}
  void normalize(std::string& s, size_t max_bytes) const override {
    s = tok::normalize(s, form);  // at most 18 code points per code point (NFKC)
    check_length(s.size(), max_bytes);
  }
};

struct LowercaseNorm final : Normalizer {
  void normalize(std::string& s, size_t max_bytes) const override {
    s = lowercase(s);
    check_length(s.size(), max_bytes);
  }
};

struct PrependNorm final : Normalizer {
  std::string prefix;
  void normalize(std::string& s, size_t max_bytes) const override {
    if (s.empty()) return;
    check_length(s.size() + prefix.size(), max_bytes);
    s.insert(0, prefix);
  }
};

struct ReplaceNorm final : Normalizer {
  std::string literal;
  std::unique_ptr<Regex> regex;
  std::string content;
  void normalize(std::string& s, size_t max_bytes) const override {
    if (!regex) {
      replace_all(s, literal, content, max_bytes);
      return;
    }
    std::string out;
    size_t prev = 0;
    for (const auto& [b, e] : regex->find_all(s)) {
      out.append(s, prev, b - prev);
      check_length(out.size() + content.size(), max_bytes);
      out += content;
      prev = e;
    }
    out.append(s, prev, std::string::npos);
    check_length(out.size(), max_bytes);
    s = std::move(out);
  }
};

struct StripNorm final : Normalizer {
  bool left, right;
  StripNorm(bool l, bool r) : left(l), right(r) {}
  void normalize(std::string& s, size_t) const override {
    size_t b = 0, e = s.size();
    if (left) {
      size_t i = 0;
      while (i < s.size()) {
        const size_t at = i;
        if (!is_whitespace(next_codepoint(s, i))) {
          b = at;
          break;
        }
        b = i;
      }
    }
    if (right) {
      while (e > b) {
        size_t start = e - 1;
        while (start > b && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
        size_t i = start;
        if (!is_whitespace(next_codepoint(s, i))) break;
        e = start;
      }
    }
    s = s.substr(b, e - b);
  }
};

struct CollapseSpacesNorm final : Normalizer {
  void normalize(std::string& s, size_t) const override {
    std::string out;
    out.reserve(s.size());
    bool prev_space = true;  // drops leading spaces
    for (char c : s) {
      if (c == ' ') {
        if (!prev_space) out += ' ';
        prev_space = true;
      } else {
        out += c;
        prev_space = false;
      }
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    s = std::move(out);
  }
};

struct SequenceNorm final : Normalizer {
  std::vector<NormalizerPtr> items;
  void normalize(std::string& s, size_t max_bytes) const override {
    for (const auto& n : items) n->normalize(s, max_bytes);
  }
};

// ---- pre-tokenizers ----

struct ByteLevelPre final : PreTokenizer {
  bool add_prefix_space, use_regex;
  std::unique_ptr<Regex> re;
  ByteLevelPre(bool a, bool u) : add_prefix_space(a), use_regex(u) {
    if (use_regex) re = std::make_unique<Regex>(kGpt2Pattern, "ByteLevel pre-tokenizer");
  }
  void apply(std::vector<Split>& splits) const override {
    const auto& map = byte_to_unicode();
    for_each_split(splits, [&](const Split& s, std::vector<Split>& out) {
      Split in = s;
      if (add_prefix_space && (in.text.empty() || in.text[0] != ' ')) in.text.insert(0, " ");
      const size_t first = out.size();
      if (use_regex)
        split_by(in, regex_pieces(*re, in.text), SplitBehavior::Isolated, false, out);
      else if (!in.text.empty())
        out.push_back(in);
      for (size_t k = first; k < out.size(); ++k) {
        std::string mapped;
        mapped.reserve(out[k].text.size() * 2);
        for (unsigned char c : out[k].text) mapped += map[c];
        out[k].text = std::move(mapped);
      }
    });
  }
};

struct SplitPre final : PreTokenizer {
  std::unique_ptr<Regex> re;
  SplitBehavior behavior;
  bool invert;
  void apply(std::vector<Split>& splits) const override {
    for_each_split(splits, [&](const Split& s, std::vector<Split>& out) {
      split_by(s, regex_pieces(*re, s.text), behavior, invert, out);
    });
  }
};

struct MetaspacePre final : PreTokenizer {
  std::string replacement;
  PrependScheme scheme;
  bool split;
  void apply(std::vector<Split>& splits) const override {
    for_each_split(splits, [&](const Split& s, std::vector<Split>& out) {
      Split in = s;
      replace_all(in.text, " ", replacement);
      const bool starts = in.text.compare(0, replacement.size(), replacement) == 0;
      if (!starts && (scheme == PrependScheme::Always || (scheme == PrependScheme::First && in.at_start)))
        in.text.insert(0, replacement);
      if (!split) {
        if (!in.text.empty()) out.push_back(std::move(in));
        return;
      }
      std::vector<Piece> pieces;
      size_t prev = 0, pos = 0;
      while ((pos = in.text.find(replacement, pos)) != std::string::npos) {
        if (pos > prev) pieces.push_back({prev, pos, false});
        pieces.push_back({pos, pos + replacement.size(), true});
        pos += replacement.size();
        prev = pos;
      }
      if (prev < in.text.size()) pieces.push_back({prev, in.text.size(), false});
      split_by(in, std::move(pieces), SplitBehavior::MergedWithNext, false, out);
    });
  }
};

struct CharPredicatePre final : PreTokenizer {
  std::function<bool(char32_t)> pred;
  SplitBehavior behavior;
  void apply(std::vector<Split>& splits) const override {
    for_each_split(splits, [&](const Split& s, std::vector<Split>& out) {
      split_by(s, char_pieces(s.text, pred), behavior, false, out);
    });
  }
};

struct SequencePre final : PreTokenizer {
  std::vector<PreTokenizerPtr> items;
  void apply(std::vector<Split>& splits) const override {
    for (const auto& p : items) p->apply(splits);
  }
};

bool is_punctuation(char32_t c) {
  if (c < 0x80) return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126);
  const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO;
}

// ---- decoders ----

struct ByteLevelDec final : Decoder {
  void decode_chain(std::vector<std::string>& tokens, size_t) const override {
    std::string bytes;
    for (const auto& t : tokens) {
      std::string tb;
      bool ok = true;
      size_t i = 0;
      while (i < t.size()) {
        const int b = unicode_to_byte(next_codepoint(t, i));
        if (b < 0) {
          ok = false;
          break;
        }
        tb += static_cast<char>(b);
      }
      bytes += ok ? tb : t;
    }
    tokens.assign(1, sanitize_utf8(bytes));
  }
};

struct MetaspaceDec final : Decoder {
  std::string replacement;
  PrependScheme scheme;
  void decode_chain(std::vector<std::string>& tokens, size_t) const override {
    for (size_t k = 0; k < tokens.size(); ++k) {
      replace_all(tokens[k], replacement, k == 0 && scheme != PrependScheme::Never ? "" : " ");
    }
  }
};

int parse_byte_token(std::string_view t) {
  if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return -1;
  int v = 0;
  for (size_t i = 3; i < 5; ++i) {
    const char c = t[i];
    int d = 0;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else return -1;
    v = v * 16 + d;
  }
  return v;
}

struct ByteFallbackDec final : Decoder {
  void decode_chain(std::vector<std::string>& tokens, size_t) const override {
    std::vector<std::string> out;
    std::string pending;
    size_t pending_count = 0;
    auto flush = [&] {
      if (pending_count == 0) return;
      if (is_valid_utf8(pending)) {
        out.push_back(pending);
      } else {
        for (size_t k = 0; k < pending_count; ++k) out.push_back(to_utf8(kReplacementChar));
      }
      pending.clear();
      pending_count = 0;
    };
    for (auto& t : tokens) {
      const int b = parse_byte_token(t);
      if (b >= 0) {
        pending += static_cast<char>(b);
        ++pending_count;
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens = std::move(out);
  }
};

struct FuseDec final : Decoder {
  void decode_chain(std::vector<std::string>& tokens, size_t) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
};

struct StripDec final : Decoder {
  std::string content;  // one character
  size_t start, stop;
  void decode_chain(std::vector<std::string>& tokens, size_t) const override {
    for (auto& t : tokens) {
      size_t b = 0, e = t.size();
      for (size_t k = 0; k < start && t.compare(b, content.size(), content) == 0 && b < e; ++k) b += content.size();
      for (size_t k = 0; k < stop && e >= b + content.size() &&
                         t.compare(e - content.size(), content.size(), content) == 0;
           ++k)
        e -= content.size();
      t = t.substr(b, e - b);
    }
  }
};

struct ReplaceDec final : Decoder {
  ReplaceNorm impl;
  void decode_chain(std::vector<std::string>& tokens, size_t max_bytes) const override {
    size_t total = 0;
    for (const auto& t : tokens) total += t.size();
    for (auto& t : tokens) {
      // What the other tokens take counts against this one's room.
      const size_t others = total - t.size();
      check_length(others, max_bytes);
      impl.normalize(t, max_bytes - others);
      total = others + t.size();
    }
  }
};

struct WordPieceDec final : Decoder {
  std::string prefix;
  bool cleanup;
  void decode_chain(std::vector<std::string>& tokens, size_t) const override {
    for (size_t k = 0; k < tokens.size(); ++k) {
      auto& t = tokens[k];
      if (k != 0) {
        if (t.compare(0, prefix.size(), prefix) == 0)
          t.erase(0, prefix.size());
        else
          t.insert(0, " ");
      }
      if (cleanup) {
        for (const auto& [from, to] : std::vector<std::pair<const char*, const char*>>{
                 {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"}, {" n't", "n't"},
                 {" 'm", "'m"}, {" do not", " don't"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}})
          replace_all(t, from, to);
      }
    }
  }
};

struct BpeSuffixDec final : Decoder {
  std::string suffix;
  void decode_chain(std::vector<std::string>& tokens, size_t) const override {
    for (size_t k = 0; k < tokens.size(); ++k) replace_all(tokens[k], suffix, k + 1 == tokens.size() ? "" : " ");
  }
};

struct SequenceDec final : Decoder {
  std::vector<DecoderPtr> items;
  void decode_chain(std::vector<std::string>& tokens, size_t max_bytes) const override {
    for (const auto& d : items) d->decode_chain(tokens, max_bytes);
  }
};

std::unique_ptr<Regex> make_pattern(const std::string& pattern, bool is_regex, const std::string& what) {
  return std::make_unique<Regex>(is_regex ? pattern : regex_escape(pattern), what);
}

}  // namespace

size_t max_rewritten_bytes(size_t n) {
  constexpr size_t kCap = std::numeric_limits<size_t>::max() / 64;
  return n > kCap ? std::numeric_limits<size_t>::max() : 32 * n + (64u << 10);
}

NormalizerPtr make_unicode_normalizer(NormalForm form) { return std::make_unique<UnicodeNorm>(form); }
NormalizerPtr make_lowercase_normalizer() { return std::make_unique<LowercaseNorm>(); }
NormalizerPtr make_prepend_normalizer(std::string prefix) {
  auto n = std::make_unique<PrependNorm>();
  n->prefix = std::move(prefix);
  return n;
}
NormalizerPtr make_replace_normalizer(const std::string& pattern, bool is_regex, std::string content) {
  auto n = std::make_unique<ReplaceNorm>();
  if (is_regex)
    n->regex = std::make_unique<Regex>(pattern, "Replace normalizer");
  else
    n->literal = pattern;
  n->content = std::move(content);
  return n;
}
NormalizerPtr make_strip_normalizer(bool left, bool right) { return std::make_unique<StripNorm>(left, right); }
NormalizerPtr make_collapse_spaces_normalizer() { return std::make_unique<CollapseSpacesNorm>(); }
NormalizerPtr make_sequence_normalizer(std::vector<NormalizerPtr> items) {
  auto n = std::make_unique<SequenceNorm>();
  n->items = std::move(items);
  return n;
}

PreTokenizerPtr make_byte_level_pre(bool add_prefix_space, bool use_regex) {
  return std::make_unique<ByteLevelPre>(add_prefix_space, use_regex);
}
PreTokenizerPtr make_split_pre(const std::string& pattern, bool is_regex, SplitBehavior behavior, bool invert) {
  auto p = std::make_unique<SplitPre>();
  p->re = make_pattern(pattern, is_regex, "Split pre-tokenizer");
  p->behavior = behavior;
  p->invert = invert;
  return p;
}
PreTokenizerPtr make_metaspace_pre(std::string replacement, PrependScheme scheme, bool split) {
  auto p = std::make_unique<MetaspacePre>();
  p->replacement = std::move(replacement);
  p->scheme = scheme;
  p->split = split;
  return p;
}
PreTokenizerPtr make_digits_pre(bool individual) {
  auto p = std::make_unique<CharPredicatePre>();
  p->pred = is_numeric;
  p->behavior = individual ? SplitBehavior::Isolated : SplitBehavior::Contiguous;
  return p;
}
PreTokenizerPtr make_whitespace_split_pre() {
  auto p = std::make_unique<CharPredicatePre>();
  p->pred = is_whitespace;
  p->behavior = SplitBehavior::Removed;
  return p;
}
PreTokenizerPtr make_whitespace_pre() {
  return make_split_pre(R"(\w+|[^\w\s]+)", true, SplitBehavior::Removed, true);
}
PreTokenizerPtr make_punctuation_pre(SplitBehavior behavior) {
  auto p = std::make_unique<CharPredicatePre>();
  p->pred = is_punctuation;
  p->behavior = behavior;
  return p;
}
PreTokenizerPtr make_sequence_pre(std::vector<PreTokenizerPtr> items) {
  auto p = std::make_unique<SequencePre>();
  p->items = std::move(items);
  return p;
}

DecoderPtr make_byte_level_decoder() { return std::make_unique<ByteLevelDec>(); }
DecoderPtr make_metaspace_decoder(std::string replacement, PrependScheme scheme) {
  auto d = std::make_unique<MetaspaceDec>();
  d->replacement = std::move(replacement);
  d->scheme = scheme;
  return d;
}
DecoderPtr make_byte_fallback_decoder() { return std::make_unique<ByteFallbackDec>(); }
DecoderPtr make_fuse_decoder() { return std::make_unique<FuseDec>(); }
DecoderPtr make_strip_decoder(std::string content, size_t start, size_t stop) {
  auto d = std::make_unique<StripDec>();
  d->content = std::move(content);
  d->start = start;
  d->stop = stop;
  return d;
}
DecoderPtr make_replace_decoder(const std::string& pattern, bool is_regex, std::string content) {
  auto d = std::make_unique<ReplaceDec>();
  if (is_regex)
    d->impl.regex = std::make_unique<Regex>(pattern, "Replace decoder");
  else
    d->impl.literal = pattern;
  d->impl.content = std::move(content);
  return d;
}
DecoderPtr make_wordpiece_decoder(std::string prefix, bool cleanup) {
  auto d = std::make_unique<WordPieceDec>();
  d->prefix = std::move(prefix);
  d->cleanup = cleanup;
  return d;
}
DecoderPtr make_bpe_suffix_decoder(std::string suffix) {
  auto d = std::make_unique<BpeSuffixDec>();
  d->suffix = std::move(suffix);
  return d;
}
DecoderPtr make_sequence_decoder(std::vector<DecoderPtr> items) {
  auto d = std::make_unique<SequenceDec>();
  d->items = std::move(items);
  return d;
}

}  // namespace runnel::tok
