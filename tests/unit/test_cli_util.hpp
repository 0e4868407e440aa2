#pragma once
// Helpers for the end-to-end tests of the `runnel` binary (RUNNEL_CLI_PATH):
// run it with arguments and optional stdin, capture stdout, stderr and the
// exit code; scratch directories; a tiny tokenizer that fits the 128-token
// fixture models in tests/data/models.
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace runnel::clitest {

namespace fs = std::filesystem;

struct Result {
  int code = -1;
  std::string out, err;
};

inline std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::string quote(const std::string& s) {
  std::string q(1, '\'');
  for (char c : s) {
    if (c == '\'')
      q.append("'\\''");
    else
      q.push_back(c);
  }
  q.push_back('\'');
  return q;
}

inline fs::path unique_temp(const std::string& stem) {
  static std::atomic<int> counter{0};
  return fs::temp_directory_path() /
         (stem + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
}

// A scratch directory removed at the end of the test.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& stem = "runnel-cli") : path(unique_temp(stem)) {
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path write(const std::string& name, const std::string& content) const {
    std::ofstream(path / name, std::ios::binary) << content;
    return path / name;
  }
};

// Runs the shell command `command` with `input` on stdin.
inline Result run_cli_raw(const std::string& command, const std::string& input = {}) {
  const fs::path err = unique_temp("runnel-cli-err");
  const fs::path in = unique_temp("runnel-cli-in");
  std::ofstream(in, std::ios::binary) << input;
  const std::string cmd = command + " <" + quote(in.string()) + " 2>" + quote(err.string());
  Result r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p) {
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
    const int status = ::pclose(p);
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  r.err = slurp(err);
  std::error_code ec;
  fs::remove(err, ec);
  fs::remove(in, ec);
  return r;
}

// Runs `runnel ARGS` with `input` on stdin.
inline Result run_cli(const std::string& args, const std::string& input = {}) {
  return run_cli_raw(quote(RUNNEL_CLI_PATH) + " " + args, input);
}

inline fs::path fixture(const std::string& variant) {
  return fs::path(RUNNEL_TEST_DATA_DIR) / "models" / variant;
}

inline std::vector<std::string> fixture_variants() {
  return {"opt-prenorm",       "opt-350m-style",        "llama-mha",    "llama-gqa-tied-llama3",
          "llama-linear-bias", "llama-dynamic-headdim", "bloom-6heads", "bloom-4heads"};
}

inline std::string chat_template_text(const std::string& name) {
  const auto j = nlohmann::json::parse(
      slurp(fs::path(RUNNEL_TEST_DATA_DIR) / "chat_templates" / (name + ".json")));
  return j.at("template").get<std::string>();
}

// Writes a byte-level BPE tokenizer.json of exactly 128 tokens (the fixture
// models' vocabulary) into `dir`: specials <unk> <s> </s> <|user|>
// <|assistant|> <|system|> (ids 0-5), the printable ASCII characters, space
// and newline, and merges of space + a..z.  With `chat_template`, also a
// tokenizer_config.json carrying it.
inline void write_tiny_tokenizer(const fs::path& dir, const std::string& chat_template = {}) {
  using nlohmann::json;
  const std::vector<std::string> specials = {"<unk>",    "<s>",           "</s>",
                                             "<|user|>", "<|assistant|>", "<|system|>"};
  json vocab = json::object();
  int next = 0;
  for (const auto& s : specials) vocab[s] = next++;
  for (int c = 33; c < 127; ++c) vocab[std::string(1, char(c))] = next++;
  const std::string space = "\xC4\xA0", newline = "\xC4\x8A";  // U+0120, U+010A
  vocab[space] = next++;
  vocab[newline] = next++;
  json merges = json::array();
  for (char c = 'a'; next < 128; ++c) {
    vocab[space + c] = next++;
    merges.push_back(space + " " + c);
  }
  json added = json::array();
  for (size_t i = 0; i < specials.size(); ++i)
    added.push_back({{"id", i},
                     {"content", specials[i]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  json tok = {
      {"version", "1.0"},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "ByteLevel"},
        {"add_prefix_space", false},
        {"trim_offsets", true},
        {"use_regex", true}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"unk_token", "<unk>"}, {"vocab", vocab}, {"merges", merges}}},
  };
  fs::create_directories(dir);
  std::ofstream(dir / "tokenizer.json", std::ios::binary) << tok.dump();
  if (!chat_template.empty()) {
    json cfg = {{"bos_token", "<s>"},
                {"eos_token", "</s>"},
                {"unk_token", "<unk>"},
                {"chat_template", chat_template}};
    std::ofstream(dir / "tokenizer_config.json", std::ios::binary) << cfg.dump();
  }
}

inline fs::path shared_data(const std::string& rel) {
  return fs::path(RUNNEL_SHARED_DIR) / "testdata" / rel;
}

// One line on stderr naming `what`, nothing on stdout, exit code 2.
#define EXPECT_CLI_ERROR(r, what)                                \
  do {                                                           \
    EXPECT_EQ((r).code, 2) << (r).err;                           \
    EXPECT_EQ((r).out, "") << (r).out;                           \
    EXPECT_NE((r).err.find(what), std::string::npos) << (r).err; \
  } while (0)

}  // namespace runnel::clitest
