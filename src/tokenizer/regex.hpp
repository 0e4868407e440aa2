#pragma once
// Unicode regexes for pre-tokenizers: PCRE2 in UTF + UCP mode, JIT-compiled
// when available.  Patterns written for Oniguruma (what HF tokenizers uses)
// are translated: \s also matches U+0085, \w follows Oniguruma's letter/mark/
// digit/connector classes, \h is a hex digit and nested classes are flattened.
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace runnel::tok {

class Regex {
 public:
  // Throws runnel::Error naming `what` when the pattern does not compile.
  Regex(const std::string& pattern, const std::string& what);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Non-empty, non-overlapping matches of the pattern in `text` (valid UTF-8),
  // as [begin, end) byte ranges, left to right.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;
  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code_8
  bool jit_ = false;
};

// The Oniguruma-to-PCRE2 translation described above; exposed for tests.
std::string translate_onig_pattern(const std::string& pattern);
// Escapes every metacharacter so `literal` matches itself.
std::string regex_escape(std::string_view literal);

}  // namespace runnel::tok
