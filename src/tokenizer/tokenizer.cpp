#include <algorithm>

#include "runnel/error.hpp"
#include "tokenizer/tokenizer_impl.hpp"

namespace runnel {

using namespace tok;

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

void Tokenizer::Impl::finalize() {
  vocab.lookup.clear();
  vocab.lookup.reserve(vocab.pieces.size());
  for (size_t i = 0; i < vocab.pieces.size(); ++i) vocab.lookup.emplace(vocab.pieces[i], static_cast<int32_t>(i));
  id_to_piece = vocab.pieces;
  for (const auto& a : added) {
    check(a.id >= 0 && a.id < (1 << 30), name + ": added token \"" + a.content + "\": id out of range");
    if (static_cast<size_t>(a.id) >= id_to_piece.size()) id_to_piece.resize(static_cast<size_t>(a.id) + 1);
    id_to_piece[static_cast<size_t>(a.id)] = a.content;
  }
  special.assign(id_to_piece.size(), 0);
  added_lookup.clear();
  trie.assign(1, TrieNode{});
  first_byte.fill(false);
  for (size_t k = 0; k < added.size(); ++k) {
    const auto& a = added[k];
    if (a.special) special[static_cast<size_t>(a.id)] = 1;
    added_lookup[a.content] = a.id;
    if (a.content.empty()) continue;
    int32_t node = 0;
    for (unsigned char c : a.content) {
      auto it = trie[static_cast<size_t>(node)].next.find(c);
      if (it == trie[static_cast<size_t>(node)].next.end()) {
        trie.push_back(TrieNode{});
        const auto child = static_cast<int32_t>(trie.size() - 1);
        trie[static_cast<size_t>(node)].next[c] = child;
        node = child;
      } else {
        node = it->second;
      }
    }
    trie[static_cast<size_t>(node)].token = static_cast<int32_t>(k);
    first_byte[static_cast<unsigned char>(a.content[0])] = true;
  }
  // HF skips special tokens by content: any id whose piece is a special added token counts.
  std::unordered_map<std::string_view, bool> special_content;
  for (const auto& a : added)
    if (a.special) special_content[a.content] = true;
  if (!special_content.empty())
    for (size_t i = 0; i < id_to_piece.size(); ++i)
      if (special_content.count(id_to_piece[i])) special[i] = 1;
}

int32_t Tokenizer::Impl::piece_id(std::string_view piece) const {
  const auto it = added_lookup.find(std::string(piece));
  if (it != added_lookup.end()) return it->second;
  return vocab.find(piece);
}

void Tokenizer::Impl::encode_text(std::string_view text, bool at_start, std::vector<int32_t>& out,
                                  size_t& budget) const {
  if (text.empty()) return;
  std::string s(text);
  if (normalizer) {
    normalizer->normalize(s, budget);
    budget -= s.size();
  }
  if (s.empty()) return;
  std::vector<Split> splits{{std::move(s), at_start}};
  if (pre_tokenizer) pre_tokenizer->apply(splits);
  for (const auto& sp : splits) model->tokenize(sp.text, out);
}

namespace {

bool is_word_char(char32_t c) { return is_alphanumeric(c) || c == '_'; }

// The code point that ends s[0, end).
char32_t last_codepoint(std::string_view s, size_t end, size_t& start) {
  start = end - 1;
  while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
  size_t i = start;
  return next_codepoint(s, i);
}

}  // namespace

namespace {

[[noreturn]] void rewritten_too_long(const Tokenizer::Impl& m, const char* stage, size_t n,
                                     const tok::TextTooLong& e) {
  throw Error(m.name + ": " + stage + ": " + e.what() + " from " + std::to_string(n) +
              " bytes (rewritten text is bounded by 32 times its input + 64 KiB)");
}

std::vector<int32_t> encode_checked(const Tokenizer::Impl& m, std::string_view input, bool add_special);

}  // namespace

std::vector<int32_t> Tokenizer::encode(std::string_view input, bool add_special) const {
  try {
    return encode_checked(*impl_, input, add_special);
  } catch (const tok::TextTooLong& e) {
    rewritten_too_long(*impl_, "normalizer", input.size(), e);
  }
}

namespace {

std::vector<int32_t> encode_checked(const Tokenizer::Impl& m, std::string_view input, bool add_special) {
  std::string sanitized;
  std::string_view text = input;
  if (m.sanitize_input && !is_valid_utf8(input)) {
    sanitized = sanitize_utf8(input);
    text = sanitized;
  }
  std::vector<int32_t> ids;
  if (add_special && m.post) ids = m.post->prefix;
  size_t seg = 0, i = 0;
  const size_t n = text.size();
  // The normalized segments together stay within max_rewritten_bytes(n).
  size_t budget = tok::max_rewritten_bytes(n);
  while (i < n && !m.added.empty()) {
    if (!m.first_byte[static_cast<unsigned char>(text[i])]) {
      ++i;
      continue;
    }
    int32_t node = 0, found = -1;
    size_t found_end = 0;
    for (size_t j = i; j < n; ++j) {
      const auto& next = m.trie[static_cast<size_t>(node)].next;
      const auto it = next.find(static_cast<unsigned char>(text[j]));
      if (it == next.end()) break;
      node = it->second;
      if (m.trie[static_cast<size_t>(node)].token >= 0) {
        found = m.trie[static_cast<size_t>(node)].token;
        found_end = j + 1;
      }
    }
    if (found < 0) {
      ++i;
      continue;
    }
    const AddedToken& tok = m.added[static_cast<size_t>(found)];
    size_t start = i, stop = found_end;
    if (tok.single_word) {
      size_t cs = 0;
      const bool left_ok = start == 0 || !is_word_char(last_codepoint(text, start, cs));
      size_t k = stop;
      const bool right_ok = stop == n || !is_word_char(next_codepoint(text, k));
      if (!left_ok || !right_ok) {
        i = found_end;
        continue;
      }
    }
    if (tok.lstrip) {
      while (start > seg) {
        size_t cs = 0;
        if (!is_whitespace(last_codepoint(text, start, cs))) break;
        start = cs;
      }
    }
    if (tok.rstrip) {
      while (stop < n) {
        size_t k = stop;
        if (!is_whitespace(next_codepoint(text, k))) break;
        stop = k;
      }
    }
    m.encode_text(text.substr(seg, start - seg), seg == 0, ids, budget);
    ids.push_back(tok.id);
    seg = i = stop;
  }
  m.encode_text(text.substr(seg), seg == 0, ids, budget);
  if (add_special && m.post) ids.insert(ids.end(), m.post->suffix.begin(), m.post->suffix.end());
  return ids;
}

}  // namespace

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  const Impl& m = *impl_;
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (const int32_t id : ids) {
    check(id >= 0 && static_cast<size_t>(id) < m.id_to_piece.size(),
          m.name + ": decode: token id " + std::to_string(id) + " is out of range [0, " +
              std::to_string(m.id_to_piece.size()) + ")");
    if (skip_special && m.special[static_cast<size_t>(id)]) continue;
    tokens.push_back(m.id_to_piece[static_cast<size_t>(id)]);
  }
  if (m.llama2c) {
    // run.c decode: a leading space after BOS is dropped, <0xNN> is a raw byte.
    std::string bytes;
    int32_t prev = -1;
    size_t k = 0;
    for (const int32_t id : ids) {
      if (skip_special && m.special[static_cast<size_t>(id)]) {
        prev = id;
        continue;
      }
      std::string_view piece = m.id_to_piece[static_cast<size_t>(id)];
      if ((prev == m.bos || k == 0) && !piece.empty() && piece[0] == ' ') piece.remove_prefix(1);
      unsigned int byte = 0;
      if (piece.size() == 6 && std::sscanf(std::string(piece).c_str(), "<0x%02X>", &byte) == 1)
        bytes += static_cast<char>(byte);
      else
        bytes += piece;
      prev = id;
      ++k;
    }
    return sanitize_utf8(bytes);
  }
  if (!m.decoder) {
    std::string out;
    for (size_t k = 0; k < tokens.size(); ++k) {
      if (k) out += ' ';
      out += tokens[k];
    }
    return out;
  }
  size_t total = 0;
  for (const auto& t : tokens) total += t.size();
  try {
    m.decoder->decode_chain(tokens, tok::max_rewritten_bytes(total));
  } catch (const tok::TextTooLong& e) {
    rewritten_too_long(m, "decoder", total, e);
  }
  std::string out;
  for (const auto& t : tokens) out += t;
  return out;
}

const std::string& Tokenizer::token_to_piece(int32_t id) const {
  check(id >= 0 && static_cast<size_t>(id) < impl_->id_to_piece.size(),
        impl_->name + ": token id " + std::to_string(id) + " is out of range");
  return impl_->id_to_piece[static_cast<size_t>(id)];
}

std::optional<int32_t> Tokenizer::piece_to_id(std::string_view piece) const {
  const int32_t id = impl_->piece_id(piece);
  if (id < 0) return std::nullopt;
  return id;
}

int32_t Tokenizer::bos_id() const { return impl_->bos; }
int32_t Tokenizer::eos_id() const { return impl_->eos; }
int32_t Tokenizer::pad_id() const { return impl_->pad; }
int32_t Tokenizer::unk_id() const { return impl_->unk; }
bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->special.size() && impl_->special[static_cast<size_t>(id)];
}
bool Tokenizer::is_eog(int32_t id) const {
  return id >= 0 && (id == impl_->eos || std::find(impl_->eog.begin(), impl_->eog.end(), id) != impl_->eog.end());
}
size_t Tokenizer::vocab_size() const { return impl_->id_to_piece.size(); }
const std::string& Tokenizer::chat_template() const { return impl_->chat_template; }
const std::string& Tokenizer::chat_template_origin() const {
  static const std::string kUnknown = "chat_template";
  return impl_->chat_template_origin.empty() ? kUnknown : impl_->chat_template_origin;
}

// ---- streaming ----

StreamDecoder::StreamDecoder(const Tokenizer& tok, bool skip_special) : tok_(&tok), skip_special_(skip_special) {}

std::string StreamDecoder::push(int32_t id) {
  ids_.push_back(id);
  const std::string text = tok_->decode(ids_, skip_special_);
  static const std::string kRepl = "\xEF\xBF\xBD";
  const bool incomplete = text.size() >= 3 && text.compare(text.size() - 3, 3, kRepl) == 0;
  if (text.size() <= prefix_.size() || incomplete) return {};
  std::string fresh;
  if (text.compare(0, prefix_.size(), prefix_) == 0) {
    fresh = text.substr(prefix_.size());
  } else {
    // The decoder rewrote earlier text (unusual decoders): emit from the first difference
    // on a character boundary.
    size_t k = 0;
    while (k < prefix_.size() && text[k] == prefix_[k]) ++k;
    while (k > 0 && (static_cast<unsigned char>(text[k]) & 0xC0) == 0x80) --k;
    fresh = text.substr(k);
  }
  const size_t new_prefix_index = ids_.size() - prefix_index_;
  ids_.erase(ids_.begin(), ids_.begin() + static_cast<std::ptrdiff_t>(prefix_index_));
  prefix_ = tok_->decode(ids_, skip_special_);
  prefix_index_ = new_prefix_index;
  return fresh;
}

std::string StreamDecoder::flush() {
  std::string out;
  if (!ids_.empty()) {
    const std::string text = tok_->decode(ids_, skip_special_);
    if (text.size() > prefix_.size() && text.compare(0, prefix_.size(), prefix_) == 0)
      out = text.substr(prefix_.size());
  }
  reset();
  return out;
}

void StreamDecoder::reset() {
  ids_.clear();
  prefix_.clear();
  prefix_index_ = 0;
}

}  // namespace runnel
