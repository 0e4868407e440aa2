// runnel tokenize / runnel detokenize: text to token ids and back.
//
//   runnel tokenize -m PATH [--no-bos] [--pieces] TEXT | -f FILE
//     prints the ids on one line, space-separated; with --pieces, one piece
//     per line, escaped (see escape_piece).
//   runnel detokenize -m PATH [--skip-special] IDS...
//     ids space- or comma-separated, in one or several arguments; prints the
//     decoded text followed by a newline.
//
// -m takes a tokenizer file (tokenizer.json, tokenizer.model, llama2.c
// tokenizer.bin, vocab.json), a folder holding one (a Hugging Face model
// folder), or a GGUF file with an embedded vocabulary.  A llama2.c model
// checkpoint carries no vocabulary: give its tokenizer with --tokenizer.
#include <fmt/core.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "command.hpp"
#include "runnel/error.hpp"
#include "runnel/loader.hpp"
#include "runnel/tokenizer.hpp"

namespace runnel::cli {
namespace {

namespace fs = std::filesystem;

// True when `path` is a regular file whose header reads as a llama2.c model
// checkpoint (and whose size matches the weights that header implies).
bool is_llama2c_checkpoint(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;
  const auto size = fs::file_size(path, ec);
  if (ec) return false;
  std::array<uint8_t, 256> head{};
  std::ifstream f(path, std::ios::binary);
  if (!f.good()) return false;
  f.read(reinterpret_cast<char*>(head.data()), head.size());
  try {
    (void)parse_llama2c_header(head.data(), static_cast<size_t>(size), path.string());
    return true;
  } catch (const Error&) {
    return false;
  }
}

Tokenizer load(const std::string& model, const std::string& tokenizer) {
  if (!tokenizer.empty()) return load_tokenizer(tokenizer);
  if (is_llama2c_checkpoint(model))
    throw Error(model +
                ": a llama2.c model checkpoint carries no vocabulary; pass its tokenizer with "
                "--tokenizer (e.g. tokenizer.bin)");
  return load_tokenizer(model);
}

std::string read_text_file(const std::string& path) {
  if (path == "-") {
    return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw Error(path + ": -f: no such file");
  std::ifstream f(path, std::ios::binary);
  if (!f.good()) throw Error(path + ": -f: cannot open");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Length of the valid UTF-8 sequence at s[i], or 0 when it is invalid.
size_t utf8_len(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
  const uint8_t c = b(i);
  if (c < 0x80) return 1;
  size_t n;
  uint32_t cp;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
    cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b(i + k) & 0x3F);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
      (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return n;
}

// A piece in readable form: valid printable UTF-8 as is; backslash, newline,
// tab and carriage return as \\ \n \t \r; other control bytes and bytes that
// are not valid UTF-8 as \xNN.
std::string escape_piece(std::string_view s) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<uint8_t>(s[i]);
    switch (c) {
      case '\\': out += "\\\\"; ++i; continue;
      case '\n': out += "\\n"; ++i; continue;
      case '\t': out += "\\t"; ++i; continue;
      case '\r': out += "\\r"; ++i; continue;
      default: break;
    }
    const size_t n = utf8_len(s, i);
    if (n == 0 || c < 0x20 || c == 0x7F) {
      out += fmt::format("\\x{:02X}", c);
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out;
}

// Token ids from arguments such as "1 2,3" "4": digits separated by spaces or commas.
std::vector<int32_t> parse_ids(const std::vector<std::string>& args) {
  std::vector<int32_t> ids;
  for (const std::string& s : args) {
    size_t i = 0;
    while (i < s.size()) {
      const char c = s[i];
      if (c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        ++i;
        continue;
      }
      size_t j = i;
      while (j < s.size() && s[j] >= '0' && s[j] <= '9') ++j;
      if (j == i) {
        while (j < s.size() && s[j] != ',' && s[j] != ' ') ++j;
        throw Error("detokenize: \"" + s.substr(i, j - i) +
                    "\" is not a token id (expected non-negative integers separated by spaces or commas)");
      }
      if (j - i > 9) throw Error("detokenize: token id " + s.substr(i, j - i) + " is out of range");
      ids.push_back(static_cast<int32_t>(std::stol(s.substr(i, j - i))));
      i = j;
    }
  }
  if (ids.empty()) throw Error("detokenize: no token ids given");
  return ids;
}

struct TokenizeArgs {
  std::string model;
  std::string tokenizer;
  std::string text;
  std::string file;
  bool no_bos = false;
  bool pieces = false;
};

int run_tokenize(const TokenizeArgs& a) {
  const std::string text = a.file.empty() ? a.text : read_text_file(a.file);
  const Tokenizer tok = load(a.model, a.tokenizer);
  const std::vector<int32_t> ids = tok.encode(text, /*add_special=*/!a.no_bos);
  std::string out;
  if (a.pieces) {
    for (int32_t id : ids) out += escape_piece(tok.token_to_piece(id)) + "\n";
  } else {
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i) out += ' ';
      out += std::to_string(ids[i]);
    }
    out += '\n';
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

struct DetokenizeArgs {
  std::string model;
  std::string tokenizer;
  std::vector<std::string> ids;
  bool skip_special = false;
};

int run_detokenize(const DetokenizeArgs& a) {
  const std::vector<int32_t> ids = parse_ids(a.ids);
  const Tokenizer tok = load(a.model, a.tokenizer);
  const size_t n_vocab = tok.vocab_size();
  for (int32_t id : ids)
    if (id < 0 || static_cast<size_t>(id) >= n_vocab)
      throw Error(fmt::format("detokenize: token id {} is out of range (vocabulary of {} tokens)", id,
                              n_vocab));
  std::string out = tok.decode(ids, a.skip_special);
  out += '\n';
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

constexpr const char* kModelHelp =
    "Tokenizer file (tokenizer.json, tokenizer.model, tokenizer.bin, vocab.json), a folder holding "
    "one (a Hugging Face model folder), or a GGUF file with an embedded vocabulary";
constexpr const char* kTokenizerHelp =
    "Tokenizer file or folder; overrides -m (needed for a llama2.c model checkpoint)";

const Command tokenize_cmd("tokenize", [](CLI::App& app) {
  app.description(
      "Print the token ids of TEXT on one line, space-separated (--pieces: one escaped piece per line)");
  auto a = std::make_shared<TokenizeArgs>();
  app.add_option("-m,--model", a->model, kModelHelp)->required();
  app.add_option("--tokenizer", a->tokenizer, kTokenizerHelp);
  app.add_option("-f,--file", a->file, "Read the text from FILE (exact bytes; '-' is stdin)");
  app.add_flag("--no-bos", a->no_bos,
               "Do not add special tokens (BOS/EOS), as HF add_special_tokens=False");
  app.add_flag("--pieces", a->pieces,
               "Print the pieces, one per line, with \\\\ \\n \\t \\r and \\xNN escapes");
  app.add_option("text", a->text, "Text to tokenize (or use -f)");
  return [a, &app] {
    if (app.count("text") == 0 && a->file.empty())
      throw Error("tokenize: no text given (pass TEXT or -f FILE)");
    if (app.count("text") > 0 && !a->file.empty())
      throw Error("tokenize: give either TEXT or -f FILE, not both");
    return run_tokenize(*a);
  };
});

const Command detokenize_cmd("detokenize", [](CLI::App& app) {
  app.description("Decode token ids (space- or comma-separated) and print the text and a newline");
  auto a = std::make_shared<DetokenizeArgs>();
  app.add_option("-m,--model", a->model, kModelHelp)->required();
  app.add_option("--tokenizer", a->tokenizer, kTokenizerHelp);
  app.add_flag("--skip-special", a->skip_special, "Leave out special tokens (BOS, EOS, ...)");
  app.add_option("ids", a->ids, "Token ids, e.g. \"2 31414 6\" or 2,31414,6")->required();
  return [a] { return run_detokenize(*a); };
});

}  // namespace
}  // namespace runnel::cli
