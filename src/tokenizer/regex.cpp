#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/regex.hpp"

#include <pcre2.h>

#include "runnel/error.hpp"
#include "tokenizer/unicode.hpp"

namespace runnel::tok {

namespace {

constexpr const char* kSpaceClass = "\\s\\x{85}";
constexpr const char* kWordClass = "\\p{L}\\p{M}\\p{Nd}\\p{Pc}";

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof(buf));
  return reinterpret_cast<const char*>(buf);
}

struct JitStack {
  pcre2_jit_stack* stack = nullptr;
  pcre2_match_context* ctx = nullptr;
  JitStack() {
    stack = pcre2_jit_stack_create(32 * 1024, 64 * 1024 * 1024, nullptr);
    ctx = pcre2_match_context_create(nullptr);
    if (stack && ctx) pcre2_jit_stack_assign(ctx, nullptr, stack);
  }
  ~JitStack() {
    if (ctx) pcre2_match_context_free(ctx);
    if (stack) pcre2_jit_stack_free(stack);
  }
};

struct MatchData {
  pcre2_match_data* md = nullptr;
  MatchData() { md = pcre2_match_data_create(16, nullptr); }
  ~MatchData() { pcre2_match_data_free(md); }
};

}  // namespace

std::string regex_escape(std::string_view literal) {
  std::string out;
  for (char c : literal) {
    if (std::string_view("\\^$.|?*+()[]{}-/#& ").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

std::string translate_onig_pattern(const std::string& p) {
  std::string out;
  int depth = 0;  // character-class nesting
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char e = p[i + 1];
      ++i;
      switch (e) {
        case 's': out += depth ? std::string(kSpaceClass) : "[" + std::string(kSpaceClass) + "]"; break;
        case 'S':
          if (depth) throw Error("regex: \\S inside a character class is not supported: " + p);
          out += "[^" + std::string(kSpaceClass) + "]";
          break;
        case 'w': out += depth ? std::string(kWordClass) : "[" + std::string(kWordClass) + "]"; break;
        case 'W':
          if (depth) throw Error("regex: \\W inside a character class is not supported: " + p);
          out += "[^" + std::string(kWordClass) + "]";
          break;
        case 'h': out += depth ? "0-9a-fA-F" : "[0-9a-fA-F]"; break;
        case 'H':
          if (depth) throw Error("regex: \\H inside a character class is not supported: " + p);
          out += "[^0-9a-fA-F]";
          break;
        case 'p':
        case 'P':
          // \p{^L} is Oniguruma's negation.
          if (i + 2 < p.size() && p[i + 1] == '{' && p[i + 2] == '^') {
            out += e == 'p' ? "\\P{" : "\\p{";
            i += 2;
          } else {
            out += '\\';
            out += e;
          }
          break;
        default:
          out += '\\';
          out += e;
      }
      continue;
    }
    if (c == '[') {
      if (depth > 0 && i + 1 < p.size() && p[i + 1] == ':') {  // POSIX [:alpha:]
        const size_t end = p.find(":]", i + 2);
        if (end == std::string::npos) throw Error("regex: unterminated POSIX class: " + p);
        out.append(p, i, end + 2 - i);
        i = end + 1;
        continue;
      }
      if (depth > 0) {
        // Nested class: Oniguruma takes the union; flatten it into the outer class.
        if (i + 1 < p.size() && p[i + 1] == '^')
          throw Error("regex: negated nested character class is not supported: " + p);
        ++depth;
        continue;
      }
      ++depth;
      out += '[';
      if (i + 1 < p.size() && p[i + 1] == '^') {
        out += '^';
        ++i;
      }
      // A ']' right after '[' or '[^' is a literal.
      if (i + 1 < p.size() && p[i + 1] == ']') {
        out += "\\]";
        ++i;
      }
      continue;
    }
    if (c == ']' && depth > 0) {
      --depth;
      if (depth == 0) out += ']';
      continue;
    }
    if (c == '&' && depth > 0 && i + 1 < p.size() && p[i + 1] == '&')
      throw Error("regex: class intersection && is not supported: " + p);
    out += c;
  }
  return out;
}

Regex::Regex(const std::string& pattern, const std::string& what) : pattern_(pattern) {
  const std::string translated = translate_onig_pattern(pattern);
  int err = 0;
  PCRE2_SIZE offset = 0;
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                        PCRE2_UTF | PCRE2_UCP, &err, &offset, nullptr);
  if (!code_)
    throw Error(what + ": invalid regex \"" + pattern + "\" at offset " + std::to_string(offset) + ": " +
                pcre2_message(err));
  jit_ = pcre2_jit_compile(static_cast<pcre2_code*>(code_), PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

std::vector<std::pair<size_t, size_t>> Regex::find_all(std::string_view text) const {
  thread_local JitStack jit_stack;
  thread_local MatchData match;
  std::vector<std::pair<size_t, size_t>> out;
  auto* code = static_cast<pcre2_code*>(code_);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t start = 0;
  while (start <= text.size()) {
    int rc = 0;
    if (jit_) {
      rc = pcre2_jit_match(code, subject, text.size(), start, 0, match.md, jit_stack.ctx);
      if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
        rc = pcre2_match(code, subject, text.size(), start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, match.md, nullptr);
    } else {
      rc = pcre2_match(code, subject, text.size(), start, PCRE2_NO_UTF_CHECK, match.md, nullptr);
    }
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) throw Error("regex \"" + pattern_ + "\": match failed: " + pcre2_message(rc));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(match.md);
    const size_t b = ov[0], e = ov[1];
    if (e > b) {
      out.emplace_back(b, e);
      start = e;
    } else {
      // Empty match: step over one character.
      if (b >= text.size()) break;
      start = b + utf8_char_len(static_cast<unsigned char>(text[b]));
    }
  }
  return out;
}

}  // namespace runnel::tok
