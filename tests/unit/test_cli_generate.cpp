// End to end: the built `runnel generate` binary.  stdout carries only the
// continuation; timing goes to stderr; bad input exits with 2.
#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "test_cli_util.hpp"

namespace {

using namespace runnel::clitest;

fs::path shared(const std::string& rel) { return shared_data(rel); }

#define REQUIRE_SHARED(p) \
  if (!fs::exists(p)) GTEST_SKIP() << "shared test data not found: " << (p)

TEST(CliGenerate, Stories260KNoPromptMatchesRunC) {
  REQUIRE_SHARED(shared("stories260K/stories260K.bin"));
  const Result r = run_cli("generate -m " + quote(shared("stories260K/stories260K.bin").string()) +
                           " --tokenizer " + quote(shared("stories260K/tok512.bin").string()) +
                           " -n 256 --temp 0 -t 1");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, slurp(shared("stories260K/greedy-no-prompt-256.txt")));
  EXPECT_NE(r.err.find("load:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("prompt: 1 tokens"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("generated: 256 tokens"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("tokens/s"), std::string::npos) << r.err;
}

TEST(CliGenerate, Stories260KPromptIsNotEchoed) {
  REQUIRE_SHARED(shared("stories260K/stories260K.bin"));
  const std::string prompt = "There was a big";
  const std::string full = slurp(shared("stories260K/greedy-there-was-a-big-256.txt"));
  ASSERT_EQ(full.rfind(prompt, 0), 0u);
  // run.c ran 256 positions; the prompt is BOS + 5 tokens, and BOS ends it early.
  const Result r = run_cli("generate -m " + quote(shared("stories260K/stories260K.bin").string()) +
                           " --tokenizer " + quote(shared("stories260K/tok512.bin").string()) +
                           " -p " + quote(prompt) + " -n 251 --temp 0");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, full.substr(prompt.size()));
}

TEST(CliGenerate, BabyLlamaMatchesRunC) {
  REQUIRE_SHARED(shared("babyllama-tok105/model5000_tok105.bin"));
  const Result r =
      run_cli("generate -m " + quote(shared("babyllama-tok105/model5000_tok105.bin").string()) +
              " --tokenizer " + quote(shared("babyllama-tok105/tok105.bin").string()) +
              " -n 256 --temp 0 --dtype f32 -t 2");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, slurp(shared("babyllama-tok105/greedy-no-prompt-256.txt")));
}

TEST(CliGenerate, FixtureByTokenIds) {
  const fs::path dir = fs::path(RUNNEL_TEST_DATA_DIR) / "models" / "bloom-6heads";
  const nlohmann::json ref = nlohmann::json::parse(slurp(dir / "reference.json"));
  const auto& p = ref["prompts"][0];
  std::string ids, want;
  for (const auto& id : p["ids"]) {
    if (!ids.empty()) ids.push_back(',');
    ids.append(std::to_string(id.get<int>()));
  }
  for (const auto& id : p["greedy"]) {
    if (!want.empty()) want.push_back(' ');
    want.append(std::to_string(id.get<int>()));
  }
  const Result r = run_cli("generate -m " + quote(dir.string()) + " --prompt-ids " + ids + " -n " +
                           std::to_string(p["greedy"].size()) + " --ignore-eos --print-ids -t 1");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, want + "\n");
}

TEST(CliGenerate, BadInputExitsWithTwo) {
  const fs::path fixture = fs::path(RUNNEL_TEST_DATA_DIR) / "models" / "opt-prenorm";
  const fs::path tmp = fs::temp_directory_path() / ("runnel-cli-bad-" + std::to_string(::getpid()));
  fs::create_directories(tmp);
  std::ofstream(tmp / "pytorch_model.bin") << "PK\x03\x04";
  std::ofstream(tmp / "trunc.bin") << std::string(40, 'x');
  const std::pair<std::string, std::string> cases[] = {
      {"generate -m " + quote((tmp / "missing").string()) + " -p hi", "no such file"},
      {"generate -m " + quote((tmp / "pytorch_model.bin").string()) + " -p hi", "pickle"},
      {"generate -m " + quote((tmp / "trunc.bin").string()) + " -p hi", "llama2.c header"},
      {"generate -m " + quote(fixture.string()) + " -p hi", "no tokenizer"},
      {"generate -m " + quote(fixture.string()) + " --prompt-ids 1,2 --print-ids --dtype f8",
       "--dtype"},
      {"generate -m " + quote(fixture.string()) + " --prompt-ids 1,500 --print-ids",
       "token id 500"},
      {"generate -m " + quote(fixture.string()) + " --prompt-ids 1,2 --temp -1", "--temp"},
      {"generate -p hi", "--model"},
      {"generate -m " + quote(fixture.string()) + " --no-such-flag", "no-such-flag"},
  };
  for (const auto& [args, needle] : cases) {
    const Result r = run_cli(args);
    EXPECT_EQ(r.code, 2) << args << "\nstderr: " << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << args << "\nstderr: " << r.err;
    EXPECT_EQ(r.out, "") << args;
  }
  fs::remove_all(tmp);
}

// Text tests on a fixture model with the tiny 128-token tokenizer.
class CliGenerateText : public ::testing::Test {
 protected:
  void SetUp() override { write_tiny_tokenizer(dir.path / "tok"); }
  std::string gen(const std::string& model = "llama-mha") const {
    return "generate -m " + quote(fixture(model).string()) + " --tokenizer " +
           quote((dir.path / "tok").string()) + " -t 1";
  }
  const std::string prompt = "<|user|>\nHi there</s>\n<|assistant|>\n";  // 13 tokens
  TempDir dir{"runnel-cli-gen"};
};

std::vector<std::string> words(const std::string& s) {
  std::vector<std::string> w;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\n')) ++i;
    size_t j = i;
    while (j < s.size() && s[j] != ' ' && s[j] != '\n') ++j;
    if (j > i) w.push_back(s.substr(i, j - i));
    i = j;
  }
  return w;
}

TEST_F(CliGenerateText, PromptFromFileEqualsPromptFlag) {
  const fs::path f = dir.write("prompt.txt", prompt);
  const Result a = run_cli(gen() + " -n 16 -f " + quote(f.string()));
  const Result b = run_cli(gen() + " -n 16 --file " + quote(f.string()));
  const Result c = run_cli(gen() + " -n 16 -p " + quote(prompt));
  EXPECT_EQ(a.code, 0) << a.err;
  EXPECT_EQ(a.out, c.out);
  EXPECT_EQ(b.out, c.out);
  EXPECT_NE(a.err.find("prompt: 13 tokens"), std::string::npos) << a.err;
}

TEST_F(CliGenerateText, StopStringsEndTheOutputAndAreNotPrinted) {
  const Result full = run_cli(gen() + " -n 24 --ignore-eos -p " + quote(prompt));
  ASSERT_EQ(full.code, 0) << full.err;
  ASSERT_GE(full.out.size(), 10u);
  // A stop string spanning several tokens in the middle of the output.
  const std::string stop = full.out.substr(4, 3);
  const Result r = run_cli(gen() + " -n 24 --ignore-eos -p " + quote(prompt) + " --stop " +
                           quote(stop) + " --stop 'never appears'");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, full.out.substr(0, full.out.find(stop)) + "\n");
  // A stop string that never occurs changes nothing.
  const Result n = run_cli(gen() + " -n 24 --ignore-eos -p " + quote(prompt) + " --stop '@@@@'");
  EXPECT_EQ(n.out, full.out);
}

TEST_F(CliGenerateText, ContextLimitsPromptAndGeneration) {
  // The cache holds -c positions: the prompt and every generated token but
  // the last, which is never run (run.c and llama.cpp count the same way).
  const Result r = run_cli(gen() + " -n 100 --ignore-eos --print-ids -c 20 -p " + quote(prompt));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(words(r.out).size(), 8u) << r.out;
  // The same limit from --kv-cache-mb: llama-mha stores 2 layers x (K + V) x
  // 32 floats = 512 bytes per token, blocks of 16 tokens: 16 KiB hold 32 tokens.
  const Result kv = run_cli(gen() + " -n 100 --ignore-eos --print-ids --kv-cache-mb 0.015625 -p " +
                            quote(prompt));
  ASSERT_EQ(kv.code, 0) << kv.err;
  EXPECT_EQ(words(kv.out).size(), 32u - 13u + 1u) << kv.out;
  // Greedy output is a prefix of the unlimited run.
  const Result all = run_cli(gen() + " -n 20 --ignore-eos --print-ids -p " + quote(prompt));
  EXPECT_EQ(all.out, kv.out);
  // Too long a prompt is an error naming both lengths.
  const Result e = run_cli(gen() + " -c 10 -p " + quote(prompt));
  EXPECT_CLI_ERROR(e, "the prompt is 13 tokens but the context holds 10");
  const Result f = run_cli(gen() + " --kv-cache-mb 0.001 -p " + quote(prompt));
  EXPECT_CLI_ERROR(f, "--kv-cache-mb");
  // A learned position table bounds -c.
  const Result g = run_cli(gen("opt-prenorm") + " -c 65 -p " + quote(prompt));
  EXPECT_CLI_ERROR(g, "position table of 64");
  const Result h =
      run_cli(gen("opt-prenorm") + " -n 1000 --ignore-eos --print-ids -p " + quote(prompt));
  ASSERT_EQ(h.code, 0) << h.err;
  EXPECT_EQ(words(h.out).size(), 64u - 13u + 1u);
}

TEST_F(CliGenerateText, SamplingFlags) {
  const std::string base = gen() + " -n 24 --ignore-eos --print-ids -p " + quote(prompt);
  const Result greedy = run_cli(base);
  ASSERT_EQ(greedy.code, 0) << greedy.err;
  // Only the most likely token survives top-k 1, whatever the temperature.
  const Result k1 = run_cli(base + " --temp 5 --top-k 1 --seed 7");
  EXPECT_EQ(k1.out, greedy.out);
  // A seed reproduces; another seed (very likely) differs.
  const std::string hot = base + " --temp 1.5 --top-k 0 --top-p 1 --min-p 0";
  const Result s1 = run_cli(hot + " --seed 1"), s1b = run_cli(hot + " -s 1"),
               s2 = run_cli(hot + " --seed 2");
  EXPECT_EQ(s1.code, 0) << s1.err;
  EXPECT_EQ(s1.out, s1b.out);
  EXPECT_NE(s1.out, s2.out);
  EXPECT_NE(s1.out, greedy.out);
  // Banning the greedy first token changes the first token.
  const std::string first = words(greedy.out).at(0);
  const Result ban = run_cli(base + " --logit-bias " + first + "-inf");
  ASSERT_EQ(ban.code, 0) << ban.err;
  EXPECT_NE(words(ban.out).at(0), first);
  // Penalties change greedy output (the fixture repeats tokens) and every
  // llama.cpp flag is accepted.
  const Result pen = run_cli(base + " --repeat-penalty 1.5 --repeat-last-n 64");
  ASSERT_EQ(pen.code, 0) << pen.err;
  EXPECT_NE(pen.out, greedy.out);
  const Result all = run_cli(base +
                             " --temp 0.7 --top-k 20 --top-p 0.9 --min-p 0.01 --typical-p 0.95 "
                             "--frequency-penalty 0.1 --presence-penalty 0.2 --seed 3 "
                             "--samplers 'penalties;top_k;typ_p;top_p;min_p;temperature'");
  EXPECT_EQ(all.code, 0) << all.err;
  EXPECT_EQ(words(all.out).size(), 24u);
  const Result dbg =
      run_cli(base + " --temp 0.7 --top-k 20 --sampler-order top_k,temp --log-level debug");
  EXPECT_NE(dbg.err.find("sampler: top_k -> temperature -> dist"), std::string::npos) << dbg.err;
}

TEST_F(CliGenerateText, LogLevelAndProgress) {
  const std::string base = gen() + " -n 4 -p " + quote(prompt);
  const Result info = run_cli(base);
  EXPECT_NE(info.err.find("load:"), std::string::npos);
  // stderr is not a terminal here: no progress bar.
  EXPECT_EQ(info.err.find('\r'), std::string::npos);
  for (const std::string& args : {"--log-level error " + base, base + " --log-level warn"}) {
    const Result q = run_cli(args);
    EXPECT_EQ(q.code, 0) << q.err;
    EXPECT_EQ(q.err, "") << args;
    EXPECT_EQ(q.out, info.out);
  }
  const Result bad = run_cli(base + " --log-level loud");
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.err.find("--log-level"), std::string::npos) << bad.err;
}

// On a terminal (through script(1)) the load shows a progress bar ending at 100%.
TEST_F(CliGenerateText, ProgressBarOnATerminal) {
  if (std::system("command -v script >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "script(1) is not installed";
  const std::string cmd = quote(RUNNEL_CLI_PATH) + " " + gen() + " -n 4 -p " + quote(prompt);
  auto under_tty = [&](const std::string& extra) {
    const Result r = run_cli_raw("script -qec " + quote(cmd + extra) + " /dev/null");
    EXPECT_EQ(r.code, 0) << r.out;
    return r.out;
  };
  const std::string tty = under_tty("");
  EXPECT_NE(tty.find("\rloading ["), std::string::npos) << tty;
  EXPECT_NE(tty.find("] 100%"), std::string::npos) << tty;
  EXPECT_EQ(under_tty(" --log-level error").find("loading"), std::string::npos);
}

TEST_F(CliGenerateText, BadSamplingFlagsExitWithTwo) {
  const std::string base = gen() + " -p hi";
  const std::pair<std::string, std::string> cases[] = {
      {base + " --top-p 1.5", "--top-p"},
      {base + " --min-p -0.5", "--min-p"},
      {base + " --repeat-last-n -2", "--repeat-last-n"},
      {base + " --samplers top_k,bogus", "bogus"},
      {base + " --samplers top_k,top_k", "twice"},
      {base + " --logit-bias 12", "--logit-bias"},
      {base + " --logit-bias 500+1", "500"},
      {base + " --stop ''", "--stop"},
      {base + " --stop x --print-ids", "--stop"},
      {gen() + " -f " + quote((dir.path / "missing.txt").string()), "no such file"},
      {base + " -f " + quote(dir.write("p.txt", "x").string()), "only one of"},
      {base + " --kv-dtype q8", "--kv-dtype"},
  };
  for (const auto& [args, needle] : cases) {
    const Result r = run_cli(args);
    SCOPED_TRACE(args);
    EXPECT_CLI_ERROR(r, needle);
  }
}

}  // namespace
