// End to end: the built `runnel generate` binary.  stdout carries only the
// continuation; timing goes to stderr; bad input exits with 2.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace {

namespace fs = std::filesystem;

struct Result {
  int code = -1;
  std::string out, err;
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string quote(const std::string& s) {
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

Result run_cli(const std::string& args) {
  const fs::path err = fs::temp_directory_path() / ("runnel-cli-err-" + std::to_string(::getpid()));
  const std::string cmd = quote(RUNNEL_CLI_PATH) + " " + args + " 2>" + quote(err.string());
  Result r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int status = ::pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.err = slurp(err);
  fs::remove(err);
  return r;
}

fs::path shared(const std::string& rel) { return fs::path(RUNNEL_SHARED_DIR) / "testdata" / rel; }

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

}  // namespace
