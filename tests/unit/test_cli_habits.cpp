// End to end: what llama.cpp users type by habit (llama-cli, llama-bench,
// llama-perplexity spellings), one-line errors, and the defects found by
// trying the CLI as a new user: the model's trained context, output that
// cannot be written, --dump-layers paths, -t far above the cores, NaN
// weights in perplexity, chat refusing before it drops history, Ctrl-C.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "runnel/chat_template.hpp"
#include "test_cli_util.hpp"

extern char** environ;

namespace {

using namespace runnel::clitest;
using nlohmann::json;

std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    const size_t j = std::min(s.find('\n', i), s.size());
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

// Exactly one line on stderr, in the one error format, exit code 2.
#define EXPECT_ONE_LINE_ERROR(r, needle)                                          \
  do {                                                                            \
    EXPECT_EQ((r).code, 2) << (r).err;                                            \
    EXPECT_EQ((r).out, "");                                                       \
    EXPECT_EQ(split_lines((r).err).size(), 1u) << (r).err;                        \
    EXPECT_EQ((r).err.rfind("runnel: error: ", 0), 0u) << (r).err;                \
    EXPECT_NE((r).err.find(needle), std::string::npos) << (r).err;                \
  } while (0)

class CliHabits : public ::testing::Test {
 protected:
  void SetUp() override {
    write_tiny_tokenizer(dir.path / "tok", chat_template_text("tinyllama-chat"));
  }
  std::string model(const std::string& variant = "llama-mha") const {
    return "-m " + quote(fixture(variant).string()) + " --tokenizer " +
           quote((dir.path / "tok").string());
  }
  std::string gen(const std::string& variant = "llama-mha") const {
    return "generate " + model(variant) + " -t 1";
  }
  const std::string prompt = "<|user|>\nHi there</s>\n<|assistant|>\n";  // 13 tokens
  TempDir dir{"runnel-cli-habits"};
};

TEST_F(CliHabits, MultiLetterSingleDashFlagsAreLlamaCppFlags) {
  const std::string base = gen() + " -n 12 --ignore-eos --print-ids -p " + quote(prompt);
  const Result plain = run_cli(base);
  ASSERT_EQ(plain.code, 0) << plain.err;
  // Before: "-ngl 99" parsed as "-n gl" and failed; "-fa" as "-f a".
  const Result r = run_cli(base + " -ngl 99 -fa -ub 4 -b 8 --no-kv-offload -nkvo");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, plain.out);
  EXPECT_NE(r.err.find("warning: --n-gpu-layers"), std::string::npos) << r.err;
  for (const char* fa : {"-fa on", "-fa off", "-fa auto", "--flash-attn=on", "-fa=1"}) {
    const Result f = run_cli(base + " " + fa);
    EXPECT_EQ(f.code, 0) << fa << ": " << f.err;
    EXPECT_EQ(f.out, plain.out) << fa;
  }
  // --n-gpu-layers 0 says nothing; -ngl spelled long works too.
  const Result z = run_cli(base + " --gpu-layers 0");
  EXPECT_EQ(z.err.find("warning"), std::string::npos) << z.err;
  // An unknown multi-letter single-dash flag is refused, not split.
  EXPECT_ONE_LINE_ERROR(run_cli(base + " -xyz 3"), "-xyz: unknown flag");
  // A value that starts with a dash still reaches its flag.
  const Result v = run_cli(gen() + " -n 4 --print-ids --ignore-eos -p -abc");
  EXPECT_EQ(v.code, 0) << v.err;
}

TEST_F(CliHabits, FlagsWithoutAMeaningHereAreRefusedInOneLine) {
  const std::string base = gen() + " -n 4 -p hi";
  const std::pair<std::string, std::string> cases[] = {
      {" -cnv", "--conversation: a conversation is 'runnel chat"},
      {" -i", "-i: a conversation is 'runnel chat"},
      {" -sys 'Be brief'", "--system-prompt: a conversation is 'runnel chat"},
      {" --grammar 'root ::= \"a\"'", "--grammar: grammar"},
      {" -hf org/model", "--hf-repo: runnel does not download"},
      {" --mirostat 2", "--mirostat: mirostat"},
      {" -sm row", "--split-mode: runnel runs a model on one device"},
      {" -tb 4", "--threads-batch"},
      {" --rope-freq-base 5e5", "--rope-freq-base"},
  };
  for (const auto& [flags, needle] : cases) {
    SCOPED_TRACE(flags);
    EXPECT_ONE_LINE_ERROR(run_cli(base + flags), needle);
  }
  // -no-cnv means a plain continuation, which generate is.
  EXPECT_EQ(run_cli(base + " -no-cnv").code, 0);
}

TEST_F(CliHabits, UnknownCommandsAreErrors) {
  // Before: "servee --help" printed the main help and exited 0.
  const Result s = run_cli("servee --help");
  EXPECT_ONE_LINE_ERROR(s, "unknown command 'servee'");
  EXPECT_NE(s.err.find("generate"), std::string::npos);
  EXPECT_NE(s.err.find("serve"), std::string::npos);
  // Before: "The following arguments were not expected: x -m gen".
  EXPECT_ONE_LINE_ERROR(run_cli("gen -m x"), "unknown command 'gen'");
  // Top-level options may come first.
  EXPECT_ONE_LINE_ERROR(run_cli("--log-level debug nosuch"), "unknown command 'nosuch'");
  EXPECT_EQ(run_cli("--log-level error generate --help").code, 0);
}

TEST_F(CliHabits, ParseErrorsAreOneLineInTheOneFormat) {
  // Before: two lines, "runnel: ..." then a usage hint.
  EXPECT_ONE_LINE_ERROR(run_cli(gen() + " -p hi -n lots"), "--n-predict");
  EXPECT_ONE_LINE_ERROR(run_cli(gen() + " -p hi --no-such-flag"), "no-such-flag");
  EXPECT_ONE_LINE_ERROR(run_cli("bench --preset llama-1b -r 0"), "--repetitions");
}

TEST_F(CliHabits, HelpRangesMatchValidation) {
  const Result help = run_cli("generate --help");
  ASSERT_EQ(help.code, 0);
  auto line_of = [&](const std::string& flag) {
    const size_t at = help.out.find(flag);
    return at == std::string::npos ? std::string()
                                   : help.out.substr(at, help.out.find('\n', at) - at);
  };
  // --top-p 0 and --typical 0 are refused, so the help does not offer them.
  for (const char* flag : {"--top-p", "--typical"}) {
    EXPECT_EQ(line_of(flag).find("[0 - 1]"), std::string::npos) << line_of(flag);
    EXPECT_NE(line_of(flag).find("(0 - 1]"), std::string::npos) << line_of(flag);
  }
  EXPECT_NE(line_of("--min-p").find("[0 - 1]"), std::string::npos) << line_of("--min-p");
  EXPECT_ONE_LINE_ERROR(run_cli(gen() + " -p hi --top-p 0"), "--top-p");
  EXPECT_ONE_LINE_ERROR(run_cli(gen() + " -p hi --typical 0"), "--typical");
  EXPECT_EQ(run_cli(gen() + " -p hi -n 2 --top-p 1 --typical 1").code, 0);
  // --kv-dtype bf16 is refused at parse time, and the help lists what it takes.
  const size_t kv = help.out.find("--kv-dtype");
  ASSERT_NE(kv, std::string::npos);
  const std::string kv_line = help.out.substr(kv, help.out.find('\n', kv) - kv);
  EXPECT_EQ(kv_line.find("bf16"), std::string::npos) << kv_line;
  EXPECT_ONE_LINE_ERROR(run_cli(gen() + " -p hi --kv-dtype bf16"), "--kv-dtype");
}

TEST_F(CliHabits, SeedMinusOneDrawsAndPrintsASeed) {
  const std::string base = gen() + " -n 24 --ignore-eos --print-ids --temp 1.5 -p " + quote(prompt);
  const Result a = run_cli(base + " --seed -1");
  const Result b = run_cli(base + " --seed -1");
  ASSERT_EQ(a.code, 0) << a.err;
  ASSERT_EQ(b.code, 0) << b.err;
  // Before: -1 became 2^64 - 1, the same text every run.
  EXPECT_NE(a.out, b.out);
  const size_t at = a.err.find("seed: ");
  ASSERT_NE(at, std::string::npos) << a.err;
  const std::string seed = a.err.substr(at + 6, a.err.find(' ', at + 6) - at - 6);
  // The printed seed reproduces the run.
  const Result again = run_cli(base + " --seed " + seed);
  EXPECT_EQ(again.out, a.out);
  // Not printed below --log-level info.
  EXPECT_EQ(run_cli(base + " --seed -1 --log-level warn").err.find("seed:"), std::string::npos);
  EXPECT_ONE_LINE_ERROR(run_cli(base + " --seed -2"), "--seed");
}

TEST_F(CliHabits, PromptFromStandardInputAndEscapes) {
  const Result p = run_cli(gen() + " -n 8 --print-ids --ignore-eos -p " + quote(prompt));
  const Result f = run_cli(gen() + " -n 8 --print-ids --ignore-eos -f -", prompt);
  ASSERT_EQ(f.code, 0) << f.err;
  EXPECT_EQ(f.out, p.out);
  // -e turns \n into a newline, as llama.cpp does.
  const Result e = run_cli(gen() + " -n 8 --print-ids --ignore-eos -e -p " +
                           quote("<|user|>\\nHi there</s>\\n<|assistant|>\\n"));
  EXPECT_EQ(e.out, p.out);
  // A directory is not "no such file".
  EXPECT_ONE_LINE_ERROR(run_cli(gen() + " -f " + quote(dir.path.string())), "is a directory");
  EXPECT_ONE_LINE_ERROR(run_cli(gen() + " -f " + quote((dir.path / "nope").string())),
                        "no such file");
}

TEST_F(CliHabits, GenerateDefaultsToTheTrainedContext) {
  // llama-mha was trained with 64 positions.  Before: "context: unlimited".
  const Result r = run_cli(gen() + " -n 1000 --ignore-eos --print-ids --log-level debug -p " +
                           quote(prompt));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("context: 64"), std::string::npos) << r.err;
  EXPECT_EQ(split_lines(r.out).size(), 1u);
  size_t n = 0;
  for (char c : r.out) n += c == ' ';
  EXPECT_EQ(n + 1, 64u - 13u + 1u) << r.out;
  // -n -1: until the context is full.
  const Result all = run_cli(gen() + " -n -1 --ignore-eos --print-ids -p " + quote(prompt));
  EXPECT_EQ(all.out, r.out);
  // A prompt that does not fit is refused with the numbers, quickly.
  std::string big;
  for (int i = 0; i < 2000; ++i) big += "ab ";
  const fs::path f = dir.write("big.txt", big);
  const Result e = run_cli(gen() + " -f " + quote(f.string()));
  EXPECT_ONE_LINE_ERROR(e, "but the context holds 64");
  // -c beyond the trained context is the user's choice on a RoPE model.
  const Result c = run_cli(gen() + " -c 80 -n 1000 --ignore-eos --print-ids -p " + quote(prompt));
  ASSERT_EQ(c.code, 0) << c.err;
  n = 0;
  for (char ch : c.out) n += ch == ' ';
  EXPECT_EQ(n + 1, 80u - 13u + 1u);
}

// Help goes to stdout with exit 0 and nothing on stderr, for runnel itself
// (also with no arguments) and for every command, -h as --help.
TEST_F(CliHabits, HelpGoesToStdoutForEveryCommand) {
  const Result top = run_cli("--help");
  ASSERT_EQ(top.code, 0) << top.err;
  EXPECT_EQ(top.err, "");
  EXPECT_NE(top.out.find("Usage: runnel [OPTIONS] [SUBCOMMAND]"), std::string::npos) << top.out;
  const Result bare = run_cli("");
  EXPECT_EQ(bare.code, 0);
  EXPECT_EQ(bare.err, "");
  EXPECT_EQ(bare.out, top.out);
  for (const std::string cmd : {"bench", "chat", "detokenize", "generate", "inspect", "perplexity",
                                "quantize", "serve", "tokenize", "version"}) {
    SCOPED_TRACE(cmd);
    EXPECT_NE(top.out.find("\n  " + cmd + " "), std::string::npos) << top.out;
    const Result h = run_cli(cmd + " --help");
    EXPECT_EQ(h.code, 0) << h.err;
    EXPECT_EQ(h.err, "");
    EXPECT_NE(h.out.find("Usage: runnel " + cmd + " [OPTIONS]"), std::string::npos) << h.out;
    EXPECT_NE(h.out.find("-h,--help"), std::string::npos) << h.out;
    if (cmd != "bench" && cmd != "version")
      EXPECT_NE(h.out.find("-m,--model"), std::string::npos) << h.out;
    EXPECT_EQ(run_cli(cmd + " -h").out, h.out);
  }
}

// generate: stdout holds only the continuation and a newline; the log (load
// time, speeds) goes to stderr, and --log-level error silences it without
// changing stdout.  The text is the detokenized --print-ids output.
TEST_F(CliHabits, GenerateWritesOnlyTheTextToStdout) {
  const std::string base = gen() + " -n 12 --ignore-eos -p " + quote(prompt);
  const Result r = run_cli(base);
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_GE(r.out.size(), 2u);
  EXPECT_EQ(r.out.back(), '\n');
  EXPECT_NE(r.err.find("load: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("tokens/s"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find(r.out.substr(0, r.out.size() - 1)), std::string::npos) << r.err;
  const Result quiet = run_cli(base + " --log-level error");
  ASSERT_EQ(quiet.code, 0);
  EXPECT_EQ(quiet.err, "");
  EXPECT_EQ(quiet.out, r.out);
  const Result ids = run_cli(base + " --print-ids --log-level error");
  ASSERT_EQ(ids.code, 0) << ids.err;
  EXPECT_EQ(ids.err, "");
  const Result text = run_cli("detokenize -m " + quote((dir.path / "tok").string()) + " " +
                              quote(ids.out.substr(0, ids.out.size() - 1)));
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_EQ(text.out, r.out);
}

TEST_F(CliHabits, GenerateTimingLineEndsWithANewline) {
  const Result r = run_cli(gen() + " -n 4 -p " + quote(prompt));
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.back(), '\n');
  EXPECT_NE(r.err.find("load: "), std::string::npos);
}

TEST_F(CliHabits, ThreadsFarAboveTheCoresAreCapped) {
  const auto t0 = std::chrono::steady_clock::now();
  const Result r = run_cli("generate " + model() + " -t 1000 -n 8 --ignore-eos -p " + quote(prompt));
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("warning: -t/--threads 1000 is more than the"), std::string::npos) << r.err;
  // A bound far above the ~0.1 s this takes, far below the minute 1000
  // spinning threads took.
  EXPECT_LT(s, 20.0);
}

TEST_F(CliHabits, OutputThatCannotBeWrittenIsAnError) {
  const std::string cli = quote(RUNNEL_CLI_PATH);
  const std::string cmds[] = {
      gen() + " -n 8 --ignore-eos -p " + quote(prompt),
      "tokenize -m " + quote((dir.path / "tok" / "tokenizer.json").string()) + " 'Hello there'",
      "bench --preset llama-135m --dtype f32 -p 4 -n 0 -r 1 -t 1",
  };
  for (const std::string& c : cmds) {
    SCOPED_TRACE(c);
    // Before: exit 0 with nothing written.
    const Result r = run_cli_raw(cli + " " + c + " >/dev/full");
    EXPECT_EQ(r.code, 1) << r.err;  // as documented: 1 for a failed write, not 2 (bad input)
    // Progress may come first on stderr; the error is the last line, and the only one.
    const std::vector<std::string> lines = split_lines(r.err);
    ASSERT_FALSE(lines.empty());
    EXPECT_EQ(lines.back().rfind("runnel: error: cannot write the output (stdout)", 0), 0u) << r.err;
    EXPECT_EQ(std::count_if(lines.begin(), lines.end(),
                            [](const std::string& l) { return l.find("error") != std::string::npos; }),
              1)
        << r.err;
  }
}

// Memory that cannot be had is exit code 3 with one line, not a crash or a
// generic failure.  The limit is the shell's ulimit -v, which ASan (it
// reserves terabytes of address space at start) cannot run under.
TEST_F(CliHabits, OutOfMemoryIsExitThree) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "ASan cannot start under ulimit -v";
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  GTEST_SKIP() << "ASan cannot start under ulimit -v";
#endif
#endif
  // 1B parameters in f32 are 4.4 GB; the limit is 400 MB of address space.
  const Result r = run_cli_raw("ulimit -v 400000; " + quote(RUNNEL_CLI_PATH) +
                               " bench --preset llama-1b --dtype f32 -p 4 -n 0 -r 1 -t 1");
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("runnel: error: out of memory\n"), std::string::npos) << r.err;
  EXPECT_EQ(split_lines(r.err).back(), "runnel: error: out of memory");
}

TEST_F(CliHabits, DumpLayersCreatesAtMostTheLastComponent) {
  const std::string base = gen() + " -n 2 --ignore-eos -p " + quote(prompt) + " --dump-layers ";
  // Before: any chain of directories was created.
  const fs::path deep = dir.path / "a" / "b" / "c";
  EXPECT_ONE_LINE_ERROR(run_cli(base + quote(deep.string())), "only the last component");
  EXPECT_FALSE(fs::exists(dir.path / "a"));
  // A file in the way.  Before: "internal error", exit 1.
  const fs::path file = dir.write("file", "x");
  EXPECT_ONE_LINE_ERROR(run_cli(base + quote(file.string())), "not a directory");
  EXPECT_ONE_LINE_ERROR(run_cli(base + quote((file / "sub").string())), "not an existing directory");
  // One new component is made and filled.
  const fs::path ok = dir.path / "dump";
  const Result r = run_cli(base + quote(ok.string()));
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_TRUE(fs::is_directory(ok));
  EXPECT_FALSE(fs::is_empty(ok));
}

TEST_F(CliHabits, NoMmapAndMlockGiveTheSameResult) {
  const std::string base = gen() + " -n 12 --ignore-eos --print-ids -p " + quote(prompt);
  const Result plain = run_cli(base);
  ASSERT_EQ(plain.code, 0) << plain.err;
  const Result no_mmap = run_cli(base + " --no-mmap");
  ASSERT_EQ(no_mmap.code, 0) << no_mmap.err;
  EXPECT_EQ(no_mmap.out, plain.out);
  const Result mlock = run_cli(base + " --mlock");
  // mlock may exceed a small RLIMIT_MEMLOCK; then the error says so in one line.
  if (mlock.code == 0)
    EXPECT_EQ(mlock.out, plain.out);
  else
    EXPECT_ONE_LINE_ERROR(mlock, "--mlock: cannot lock");
}

// A copy of a fixture with every weight of one tensor set to NaN.
fs::path nan_model(const fs::path& dir, const std::string& variant, const std::string& tensor) {
  const fs::path out = dir / (variant + "-nan");
  fs::create_directories(out);
  for (const auto& e : fs::directory_iterator(fixture(variant)))
    fs::copy_file(e.path(), out / e.path().filename(), fs::copy_options::overwrite_existing);
  std::string st = slurp(out / "model.safetensors");
  uint64_t header_len = 0;
  std::memcpy(&header_len, st.data(), 8);
  const json h = json::parse(st.substr(8, header_len));
  const auto& off = h.at(tensor).at("data_offsets");
  const size_t begin = 8 + header_len + off[0].get<size_t>();
  const size_t end = 8 + header_len + off[1].get<size_t>();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (size_t p = begin; p + 4 <= end; p += 4) std::memcpy(&st[p], &nan, 4);
  std::ofstream(out / "model.safetensors", std::ios::binary) << st;
  return out;
}

TEST_F(CliHabits, PerplexityRefusesNaNLogits) {
  const fs::path m = nan_model(dir.path, "llama-mha", "model.norm.weight");
  const fs::path text = dir.write("text.txt", "Hi there, how are you? I am fine, thank you.");
  const std::string args = "perplexity -m " + quote(m.string()) + " --tokenizer " +
                           quote((dir.path / "tok").string()) + " -t 1 -f " + quote(text.string());
  // Before: "perplexity: nan", exit 0.
  const Result r = run_cli(args);
  EXPECT_ONE_LINE_ERROR(r, "not finite");
  // generate refuses the same model.
  const Result g = run_cli("generate -m " + quote(m.string()) + " --tokenizer " +
                           quote((dir.path / "tok").string()) + " -t 1 -n 2 -p hi");
  EXPECT_ONE_LINE_ERROR(g, "is NaN");
  // The healthy fixture still scores, with llama-perplexity's spellings.
  const Result ok = run_cli("perplexity " + model() + " -t 1 -f " + quote(text.string()) +
                            " -c 16 --ppl-stride 8 -b 4 --chunks 2");
  ASSERT_EQ(ok.code, 0) << ok.err;
  EXPECT_NE(ok.out.find("windows: 2"), std::string::npos) << ok.out;
  const Result same = run_cli("perplexity " + model() + " -t 1 -f " + quote(text.string()) +
                              " -c 16 --stride 8 --chunks 2");
  EXPECT_EQ(same.out, ok.out);
  EXPECT_ONE_LINE_ERROR(run_cli("perplexity " + model() + " -f " + quote(text.string()) +
                                " --kl-divergence-base x.bin"),
                        "--kl-ref");
}

TEST_F(CliHabits, BenchSpeaksLlamaBench) {
  const std::string base = "bench " + model() + " -p 8 -n 2 -r 1 -t 1";
  // -o json is one JSON document, an array (before: JSON Lines under --json).
  for (const char* f : {" -o json", " --json"}) {
    const Result r = run_cli(base + f);
    ASSERT_EQ(r.code, 0) << f << r.err;
    const json j = json::parse(r.out);
    ASSERT_TRUE(j.is_array()) << r.out;
    ASSERT_EQ(j.size(), 2u);
    EXPECT_EQ(j[0]["test"], "pp8");
    EXPECT_EQ(j[1]["test"], "tg2");
  }
  const Result jl = run_cli(base + " -o jsonl");
  ASSERT_EQ(jl.code, 0) << jl.err;
  const std::vector<std::string> rows = split_lines(jl.out);
  ASSERT_EQ(rows.size(), 2u);
  for (const std::string& l : rows) EXPECT_TRUE(json::parse(l).is_object());
  const Result csv = run_cli(base + " -o csv");
  ASSERT_EQ(csv.code, 0);
  EXPECT_EQ(split_lines(csv.out).size(), 3u);
  const Result md = run_cli(base + " -o md");
  ASSERT_EQ(md.code, 0);
  EXPECT_EQ(md.out.rfind("| model", 0), 0u) << md.out;
  EXPECT_ONE_LINE_ERROR(run_cli(base + " -o sql"), "-o/--output");
  // -b / -ub are tokens per forward pass, as llama-bench's; -np is sequences.
  const Result ub = run_cli(base + " -o jsonl -b 2048 -ub 4 -np 2 -ngl 99 -fa 1 -mmp 0");
  ASSERT_EQ(ub.code, 0) << ub.err;
  for (const std::string& l : split_lines(ub.out)) {
    const json row = json::parse(l);
    EXPECT_EQ(row["ubatch"], 4);
    EXPECT_EQ(row["batch"], 2);
  }
  EXPECT_NE(ub.err.find("-ub 4 < 8: a prompt takes several passes"), std::string::npos) << ub.err;
  // --tokenizer, as every other command takes it.
  EXPECT_NE(run_cli("bench -m " + quote(fixture("llama-mha").string()) + " --tokenizer " +
                    quote((dir.path / "nope").string()) + " -p 4 -n 0 -r 1")
                .code,
            0);
  EXPECT_ONE_LINE_ERROR(run_cli(base + " -pg 512,128"), "--n-prompt-gen");
}

TEST_F(CliHabits, ChatTemplateByName) {
  // -c 256: the tiny tokenizer spells the formats' special tokens in characters.
  const std::string chat = "chat " + model() + " --temp 0 -t 1 -n 4 -c 256";
  for (const std::string& name : runnel::builtin_chat_template_names()) {
    const Result r = run_cli(chat + " --chat-template " + name, "Hi\n");
    EXPECT_EQ(r.code, 0) << name << ": " << r.err;
  }
  EXPECT_EQ(run_cli(chat + " -cml -cnv -i", "Hi\n").code, 0);
  const Result bad = run_cli(chat + " --chat-template nosuch", "Hi\n");
  EXPECT_ONE_LINE_ERROR(bad, "chatml");
}

TEST(ChatTemplateBuiltins, RenderTheirFormats) {
  using runnel::ChatMessage;
  using runnel::ChatTemplate;
  const std::vector<ChatMessage> msgs = {
      {"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello."}, {"user", "Bye"}};
  const std::vector<std::pair<std::string, std::string>> want = {
      {"chatml",
       "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
       "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n"
       "<|im_start|>assistant\n"},
      {"llama2", "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello. </s><s>[INST] Bye [/INST]"},
      {"llama3",
       "<s><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
       "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
       "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
       "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
       "<|start_header_id|>assistant<|end_header_id|>\n\n"},
      {"zephyr",
       "<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello.</s>\n<|user|>\nBye</s>\n"
       "<|assistant|>\n"},
      {"gemma",
       "<s><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello."
       "<end_of_turn>\n<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"},
      {"phi3",
       "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello.<|end|>\n"
       "<|user|>\nBye<|end|>\n<|assistant|>\n"},
  };
  ASSERT_EQ(runnel::builtin_chat_template_names().size(), want.size());
  for (const auto& [name, text] : want) {
    SCOPED_TRACE(name);
    const std::string src = runnel::builtin_chat_template(name);
    ASSERT_FALSE(src.empty());
    EXPECT_EQ(ChatTemplate(src, name).apply(msgs, true, "<s>", "</s>"), text);
  }
  EXPECT_TRUE(runnel::builtin_chat_template("nosuch").empty());
}

TEST_F(CliHabits, ChatRefusesATooLongMessageBeforeDroppingHistory) {
  const std::string chat = "chat " + model() + " --temp 0 -t 1 -n 4 -c 40 --log-level debug";
  std::string long_msg;
  for (int i = 0; i < 60; ++i) long_msg += "x";
  const Result r = run_cli(chat, "Hi\n" + long_msg + "\nHo\n");
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("it was not sent and the conversation is unchanged"), std::string::npos)
      << r.err;
  // Before: the first exchange was dropped for the refused message, so the
  // third turn started from an empty history.
  EXPECT_EQ(r.err.find("dropped"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("history 4 messages"), std::string::npos) << r.err;
}

// Runs `runnel ARGS` with a pipe on stdin; returns the pid and the pipe's
// write end.
pid_t spawn_cli(const std::vector<std::string>& args, int* stdin_fd, const fs::path& out,
                const fs::path& err) {
  int fds[2];
  if (::pipe(fds) != 0) return -1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[0], 0);
  posix_spawn_file_actions_addclose(&fa, fds[1]);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<std::string> all = {RUNNEL_CLI_PATH};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawn(&pid, RUNNEL_CLI_PATH, &fa, nullptr, argv.data(), environ) != 0) pid = -1;
  posix_spawn_file_actions_destroy(&fa);
  ::close(fds[0]);
  *stdin_fd = fds[1];
  return pid;
}

int wait_exit(pid_t pid) {
  int status = 0;
  for (int i = 0; i < 600; ++i) {  // at most 60 s
    if (::waitpid(pid, &status, WNOHANG) == pid)
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return -1;
}

TEST_F(CliHabits, CtrlCStopsTheReplyThenExitsAtThePrompt) {
  // A reply long enough to interrupt: the default model (8192 positions)
  // writing a story, greedily, which takes many seconds on 2 cores.
  const fs::path m = fs::path(RUNNEL_TEST_DATA_DIR) / ".." / ".." / "models" /
                     "SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!fs::exists(m)) GTEST_SKIP() << "default model not found (scripts/fetch-default-model.sh): " << m;
  const fs::path out = dir.path / "out.txt", err = dir.path / "err.txt";
  int in = -1;
  // -n 300: the first reply is still streaming when Ctrl-C comes (~1 s in),
  // and the second ends in seconds even on a loaded machine.
  const pid_t pid = spawn_cli({"chat", "-m", m.string(), "--temp", "0", "-n", "300", "-t", "1",
                               "--log-level", "debug"},
                              &in, out, err);
  ASSERT_GT(pid, 0);
  const std::string first = "Write a very long story about a dragon, in many chapters.\n";
  ASSERT_EQ(::write(in, first.data(), first.size()), ssize_t(first.size()));
  // Wait until the reply has started streaming, then Ctrl-C.
  for (int i = 0; i < 300 && fs::file_size(out) < 20; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_GE(fs::file_size(out), 20u) << slurp(err);
  ::kill(pid, SIGINT);
  // Back at the prompt: the next message is answered.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const std::string second = "Say hi.\n";
  ASSERT_EQ(::write(in, second.data(), second.size()), ssize_t(second.size()));
  for (int i = 0; i < 1200 && slurp(err).find("chat: turn 2") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const std::string e = slurp(err);
  EXPECT_NE(e.find("reply stopped (Ctrl-C)"), std::string::npos) << e;
  EXPECT_NE(e.find("chat: turn 1"), std::string::npos) << e;
  EXPECT_NE(e.find("chat: turn 2"), std::string::npos) << e;
  // Ctrl-C at the prompt exits (130, as a shell reports SIGINT).
  ::kill(pid, SIGINT);
  const int code = wait_exit(pid);
  ::close(in);
  EXPECT_EQ(code, 130) << slurp(err);
}

TEST_F(CliHabits, ChatEndsOnEndOfInputWithZero) {
  const Result r = run_cli("chat " + model() + " --temp 0 -t 1 -n 4", "Hi\n");
  EXPECT_EQ(r.code, 0) << r.err;
}

}  // namespace
