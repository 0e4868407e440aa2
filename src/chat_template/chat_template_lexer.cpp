// Lexer of the chat-template language.  Mirrors jinja2.lexer with the
// environment Hugging Face uses for chat templates: trim_blocks=True (the first
// newline after a block or comment tag is dropped), lstrip_blocks=True
// (whitespace before a block or comment tag at the start of a line is dropped),
// keep_trailing_newline=False, "\r\n" and "\r" read as "\n".
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <string>

#include "chat_template/chat_template_ast.hpp"
#include "runnel/error.hpp"

namespace runnel::jinja {
namespace {

class Lexer {
 public:
  Lexer(std::string_view source, const std::string& name) : name_(name) {
    src_.reserve(source.size());
    for (size_t i = 0; i < source.size(); ++i) {
      if (source[i] == '\r') {
        src_.push_back('\n');
        if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
      } else {
        src_.push_back(source[i]);
      }
    }
    if (!src_.empty() && src_.back() == '\n') src_.pop_back();
  }

  std::vector<Token> run() {
    const size_t n = src_.size();
    while (pos_ < n) {
      const size_t tag = find_tag(pos_);
      if (tag == std::string::npos) {
        emit_data(src_.substr(pos_));
        break;
      }
      const char kind = src_[tag + 1];  // '{', '%' or '#'
      size_t p = tag + 2;
      char sign = 0;
      if (p < n && (src_[p] == '-' || src_[p] == '+')) sign = src_[p++];
      std::string text = src_.substr(pos_, tag - pos_);
      const int text_lines = count_newlines(text);
      strip_before_tag(text, sign, kind == '{');
      emit_data(std::move(text));
      line_ += text_lines;
      if (kind == '#') {
        lex_comment(p);
      } else if (kind == '%' && is_raw_begin(p)) {
        lex_raw(tag);
      } else {
        lex_tag(kind, p);
      }
    }
    tokens_.push_back(Token{TokType::Eof, line_, {}});
    return std::move(tokens_);
  }

 private:
  [[noreturn]] void fail(int line, const std::string& msg) const {
    throw Error("chat template '" + name_ + "': line " + std::to_string(line) + ": " + msg);
  }

  size_t find_tag(size_t from) const {
    for (size_t i = src_.find('{', from); i != std::string::npos; i = src_.find('{', i + 1)) {
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
    }
    return std::string::npos;
  }

  static int count_newlines(std::string_view s) {
    return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
  }

  size_t skip_space(size_t p) const {
    while (size_t len = space_len_at(src_, p)) p += len;
    return p;
  }

  // Whitespace control for the text before a tag.
  void strip_before_tag(std::string& text, char sign, bool is_variable) const {
    if (sign == '-') {
      // Python's str.rstrip(): all Unicode whitespace.
      std::u32string cps = decode_utf8(text);
      size_t end = cps.size();
      while (end > 0 && is_py_space(cps[end - 1])) --end;
      if (end != cps.size()) text = encode_utf8(std::u32string_view(cps).substr(0, end));
      return;
    }
    if (sign == '+' || is_variable) return;
    // lstrip_blocks: jinja2 3.1 drops the line's leading text when it is all
    // whitespace (`\s+`, so Unicode spaces too).
    const size_t nl = text.rfind('\n');
    const size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
    if (l_pos == 0 && !line_starting_) return;
    for (size_t i = l_pos; i < text.size();) {
      const size_t len = space_len_at(text, i);
      if (len == 0) return;
      i += len;
    }
    text.resize(l_pos);
  }

  void emit_data(std::string text) {
    if (text.empty()) return;
    tokens_.push_back(Token{TokType::Data, line_, std::move(text)});
  }

  // Closes a tag at `end` (one past its last character).
  void finish_tag(size_t start, size_t end) {
    line_ += count_newlines(std::string_view(src_).substr(start, end - start));
    line_starting_ = end > 0 && src_[end - 1] == '\n';
    pos_ = end;
  }

  void lex_comment(size_t p) {
    const size_t q = src_.find("#}", p);
    if (q == std::string::npos) fail(line_, "missing end of comment tag '#}'");
    const char before = q > p ? src_[q - 1] : 0;
    size_t end = q + 2;
    if (before == '-') {
      end = skip_space(end);
    } else if (before != '+' && end < src_.size() && src_[end] == '\n') {
      ++end;
    }
    finish_tag(p, end);
  }

  // `{% raw %}` / `{%- raw -%}` at p (after the sign)?
  bool is_raw_begin(size_t p) const {
    p = skip_space(p);
    if (src_.compare(p, 3, "raw") != 0) return false;
    p = skip_space(p + 3);
    return src_.compare(p, 2, "%}") == 0 || src_.compare(p, 3, "-%}") == 0;
  }

  void lex_raw(size_t tag) {
    const int start_line = line_;
    size_t p = skip_space(tag + 2 + ((src_[tag + 2] == '-' || src_[tag + 2] == '+') ? 1 : 0));
    p = skip_space(p + 3);
    size_t body = src_[p] == '-' ? skip_space(p + 3) : p + 2;
    finish_tag(tag, body);
    // Find {%[-+]? endraw [-+]?%}.
    for (size_t q = src_.find("{%", body); q != std::string::npos; q = src_.find("{%", q + 1)) {
      size_t r = q + 2;
      char sign = 0;
      if (r < src_.size() && (src_[r] == '-' || src_[r] == '+')) sign = src_[r++];
      r = skip_space(r);
      if (src_.compare(r, 6, "endraw") != 0) continue;
      r = skip_space(r + 6);
      size_t end;
      if (src_.compare(r, 3, "+%}") == 0) {
        end = r + 3;
      } else if (src_.compare(r, 3, "-%}") == 0) {
        end = skip_space(r + 3);
      } else if (src_.compare(r, 2, "%}") == 0) {
        end = r + 2;
        if (end < src_.size() && src_[end] == '\n') ++end;
      } else {
        continue;
      }
      std::string text = src_.substr(body, q - body);
      const int text_lines = count_newlines(text);
      strip_before_tag(text, sign, false);
      emit_data(std::move(text));
      line_ += text_lines;
      finish_tag(q, end);
      return;
    }
    fail(start_line, "missing '{% endraw %}' for '{% raw %}'");
  }

  void lex_tag(char kind, size_t p) {
    const bool is_block = kind == '%';
    tokens_.push_back(Token{is_block ? TokType::BlockBegin : TokType::VarBegin, line_, {}});
    const size_t tag_start = p;
    const int tag_line = line_;
    int line = line_;
    std::string balance;  // expected closing brackets
    const size_t n = src_.size();
    while (true) {
      const size_t q = skip_space(p);
      line += count_newlines(std::string_view(src_).substr(p, q - p));
      p = q;
      if (p >= n) fail(tag_line, std::string("missing end of tag '") + (is_block ? "%}" : "}}") + "'");
      if (balance.empty()) {
        const char close = is_block ? '%' : '}';
        size_t end = std::string::npos;
        if (src_[p] == '-' && p + 2 < n && src_[p + 1] == close && src_[p + 2] == '}') {
          end = skip_space(p + 3);
        } else if (is_block && src_[p] == '+' && p + 2 < n && src_[p + 1] == '%' && src_[p + 2] == '}') {
          end = p + 3;
        } else if (src_[p] == close && p + 1 < n && src_[p + 1] == '}') {
          end = p + 2;
          if (is_block && end < n && src_[end] == '\n') ++end;
        }
        if (end != std::string::npos) {
          tokens_.push_back(Token{is_block ? TokType::BlockEnd : TokType::VarEnd, line, {}});
          line_ = tag_line;
          finish_tag(tag_start, end);
          return;
        }
      }
      const size_t next = lex_token(p, line, balance);
      line += count_newlines(std::string_view(src_).substr(p, next - p));
      p = next;
    }
  }

  // Lexes one token at p, returns the position after it.
  size_t lex_token(size_t p, int line, std::string& balance) {
    const char c = src_[p];
    if (c == '\'' || c == '"') return lex_string(p, line);
    if (c >= '0' && c <= '9') return lex_number(p, line);
    if (c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
      size_t q = p + 1;
      while (q < src_.size() && (src_[q] == '_' || std::isalnum(static_cast<unsigned char>(src_[q])))) ++q;
      tokens_.push_back(Token{TokType::Name, line, src_.substr(p, q - p)});
      return q;
    }
    static const char* const kTwo[] = {"//", "**", "==", "!=", ">=", "<="};
    for (const char* op : kTwo) {
      if (src_.compare(p, 2, op) == 0) {
        tokens_.push_back(Token{TokType::Op, line, op});
        return p + 2;
      }
    }
    if (std::string_view("+-/*%~[](){}><=.:|,;").find(c) != std::string_view::npos) {
      if (c == '(' || c == '[' || c == '{') {
        balance.push_back(c == '(' ? ')' : c == '[' ? ']' : '}');
      } else if (c == ')' || c == ']' || c == '}') {
        if (balance.empty()) fail(line, std::string("unexpected '") + c + "'");
        if (balance.back() != c) fail(line, std::string("unexpected '") + c + "', expected '" + balance.back() + "'");
        balance.pop_back();
      }
      tokens_.push_back(Token{TokType::Op, line, std::string(1, c)});
      return p + 1;
    }
    if (static_cast<unsigned char>(c) >= 0x80)
      fail(line, "unexpected non-ASCII character in tag (Unicode identifiers are not supported)");
    fail(line, std::string("unexpected character '") + c + "' in tag");
  }

  static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  size_t lex_string(size_t p, int line) {
    const char quote = src_[p];
    std::string out;
    size_t q = p + 1;
    while (true) {
      if (q >= src_.size()) fail(line, "unterminated string literal");
      const char c = src_[q];
      if (c == quote) break;
      if (c != '\\') {
        out.push_back(c);
        ++q;
        continue;
      }
      if (q + 1 >= src_.size()) fail(line, "unterminated string literal");
      const char e = src_[q + 1];
      q += 2;
      switch (e) {
        case '\n': break;  // line continuation
        case '\\': out.push_back('\\'); break;
        case '\'': out.push_back('\''); break;
        case '"': out.push_back('"'); break;
        case 'a': out.push_back('\a'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case 'v': out.push_back('\v'); break;
        case 'x':
        case 'u':
        case 'U': {
          const int digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          char32_t cp = 0;
          for (int i = 0; i < digits; ++i) {
            const int h = q < src_.size() ? hex_value(src_[q]) : -1;
            if (h < 0) fail(line, std::string("truncated \\") + e + " escape in string literal");
            cp = cp * 16 + static_cast<char32_t>(h);
            ++q;
          }
          if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            fail(line, "escape in string literal is not a valid Unicode scalar value");
          append_utf8(out, cp);
          break;
        }
        case 'N': fail(line, "unsupported \\N{...} escape in string literal");
        default:
          if (e >= '0' && e <= '7') {
            char32_t cp = static_cast<char32_t>(e - '0');
            for (int i = 0; i < 2 && q < src_.size() && src_[q] >= '0' && src_[q] <= '7'; ++i, ++q)
              cp = cp * 8 + static_cast<char32_t>(src_[q] - '0');
            append_utf8(out, cp);
          } else if (static_cast<unsigned char>(e) >= 0x80) {
            fail(line, "unsupported backslash before a non-ASCII character in string literal");
          } else {
            out.push_back('\\');  // unknown escapes stay as written
            out.push_back(e);
          }
      }
    }
    tokens_.push_back(Token{TokType::String, line, std::move(out)});
    return q + 1;
  }

  size_t lex_number(size_t p, int line) {
    const size_t n = src_.size();
    auto is_digit = [&](size_t i) { return i < n && src_[i] >= '0' && src_[i] <= '9'; };
    // Digits with single underscores between them.
    auto digits = [&](size_t i, std::string& out) {
      while (true) {
        while (is_digit(i)) out.push_back(src_[i++]);
        if (i + 1 < n && src_[i] == '_' && is_digit(i + 1)) {
          ++i;
          continue;
        }
        return i;
      }
    };
    // 0x / 0o / 0b prefixes.
    if (src_[p] == '0' && p + 1 < n && std::string_view("xXoObB").find(src_[p + 1]) != std::string_view::npos) {
      const char k = static_cast<char>(std::tolower(static_cast<unsigned char>(src_[p + 1])));
      const int base = k == 'x' ? 16 : k == 'o' ? 8 : 2;
      size_t q = p + 2;
      uint64_t v = 0;
      bool any = false;
      while (q < n) {
        if (src_[q] == '_' && q + 1 < n && hex_value(src_[q + 1]) >= 0 && hex_value(src_[q + 1]) < base) {
          ++q;
          continue;
        }
        const int h = hex_value(src_[q]);
        if (h < 0 || h >= base) break;
        if (v > (static_cast<uint64_t>(INT64_MAX) - static_cast<uint64_t>(h)) / static_cast<uint64_t>(base))
          fail(line, "integer literal too large");
        v = v * static_cast<uint64_t>(base) + static_cast<uint64_t>(h);
        any = true;
        ++q;
      }
      if (!any) fail(line, "invalid integer literal");
      Token t{TokType::Int, line, src_.substr(p, q - p)};
      t.ival = static_cast<int64_t>(v);
      tokens_.push_back(std::move(t));
      return q;
    }
    std::string text;
    size_t q = digits(p, text);
    bool is_float = false;
    const bool after_dot = !tokens_.empty() && tokens_.back().type == TokType::Op && tokens_.back().text == ".";
    if (!after_dot && q + 1 < n && src_[q] == '.' && is_digit(q + 1)) {
      text.push_back('.');
      q = digits(q + 1, text);
      is_float = true;
    }
    if (!after_dot && q < n && (src_[q] == 'e' || src_[q] == 'E')) {
      size_t r = q + 1;
      std::string exp = "e";
      if (r < n && (src_[r] == '+' || src_[r] == '-')) exp.push_back(src_[r++]);
      if (is_digit(r)) {
        q = digits(r, exp);
        text += exp;
        is_float = true;
      }
    }
    Token t{is_float ? TokType::Float : TokType::Int, line, text};
    if (is_float) {
      t.fval = std::strtod(text.c_str(), nullptr);
    } else {
      if (text.size() > 1 && text[0] == '0' && text.find_first_not_of('0') != std::string::npos)
        fail(line, "invalid integer literal '" + text + "' (leading zeros)");
      int64_t v = 0;
      for (char d : text) {
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, d - '0', &v))
          fail(line, "integer literal '" + text + "' does not fit in 64 bits");
      }
      t.ival = v;
    }
    tokens_.push_back(std::move(t));
    return q;
  }

  std::string src_;
  const std::string& name_;
  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int line_ = 1;
  bool line_starting_ = true;
};

}  // namespace

std::vector<Token> lex(std::string_view source, const std::string& name) {
  return Lexer(source, name).run();
}

}  // namespace runnel::jinja
