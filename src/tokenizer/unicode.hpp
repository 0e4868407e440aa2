#pragma once
// UTF-8 and Unicode helpers for the tokenizers.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace runnel::tok {

inline constexpr char32_t kReplacementChar = 0xFFFD;

// Replaces invalid UTF-8 by U+FFFD, one per maximal invalid subsequence, as
// Python's bytes.decode("utf-8", errors="replace") and Rust's
// String::from_utf8_lossy do.
std::string sanitize_utf8(std::string_view bytes);
bool is_valid_utf8(std::string_view bytes);

// Decodes the code point at s[i] of a valid UTF-8 string and advances i.
char32_t next_codepoint(std::string_view s, size_t& i);
// Byte length of the character starting with `lead` (1 for stray bytes).
inline size_t utf8_char_len(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 1;
}
void append_utf8(std::string& out, char32_t cp);
std::string to_utf8(char32_t cp);

// Rust char::is_whitespace (the White_Space property).
bool is_whitespace(char32_t c);
// Rust char::is_numeric (general categories Nd, Nl, No).
bool is_numeric(char32_t c);
// Rust char::is_alphanumeric, with letters approximated by category L.
bool is_alphanumeric(char32_t c);

enum class NormalForm { NFC, NFD, NFKC, NFKD };
std::string normalize(std::string_view s, NormalForm form);
std::string lowercase(std::string_view s);

// GPT-2's byte-to-character map: printable bytes map to themselves, the rest
// to U+0100 and up.  Entries are UTF-8 strings.
const std::array<std::string, 256>& byte_to_unicode();
// The inverse; -1 for characters outside the map.
int unicode_to_byte(char32_t c);

}  // namespace runnel::tok
