// End to end: `runnel chat` driven through a pipe.  The fixture models have a
// 128-token vocabulary, so the tests write a tiny byte-level tokenizer of
// that size with TinyLlama's chat template.  Greedy (--temp 0) makes the
// replies deterministic; --log-level debug prints one line per turn on stderr
// with the prompt length, the tokens reused from the KV cache and the reply
// length.
#include <gtest/gtest.h>

#include <cstdint>
#include <regex>
#include <string>
#include <vector>

#include "test_cli_util.hpp"

namespace {

using namespace runnel::clitest;

struct Turn {
  int64_t prompt = 0, reused = 0, reply = 0, messages = 0;
};

std::vector<Turn> turns(const std::string& err) {
  static const std::regex re(
      R"(chat: turn \d+: prompt (\d+) tokens \((\d+) reused.*reply (\d+) tokens.*history (\d+) messages)");
  std::vector<Turn> out;
  for (auto it = std::sregex_iterator(err.begin(), err.end(), re); it != std::sregex_iterator();
       ++it)
    out.push_back(
        {std::stoll((*it)[1]), std::stoll((*it)[2]), std::stoll((*it)[3]), std::stoll((*it)[4])});
  return out;
}

class CliChat : public ::testing::Test {
 protected:
  void SetUp() override {
    write_tiny_tokenizer(dir.path / "tok", chat_template_text("tinyllama-chat"));
  }
  std::string chat(const std::string& model = "llama-mha") const {
    return "chat -m " + quote(fixture(model).string()) + " --tokenizer " +
           quote((dir.path / "tok").string()) + " --temp 0 -t 1 --log-level debug";
  }
  std::string generate(const std::string& prompt, const std::string& model = "llama-mha") const {
    return "generate -m " + quote(fixture(model).string()) + " --tokenizer " +
           quote((dir.path / "tok").string()) + " -t 1 -p " + quote(prompt);
  }
  TempDir dir{"runnel-cli-chat"};
};

// The first reply is what generate gives for the rendered prompt.
TEST_F(CliChat, FirstReplyEqualsGenerateOnTheRenderedPrompt) {
  for (const char* model : {"llama-mha", "opt-prenorm", "bloom-4heads"}) {
    SCOPED_TRACE(model);
    const Result c = run_cli(chat(model) + " -n 12", "Hi there\n");
    ASSERT_EQ(c.code, 0) << c.err;
    const Result g = run_cli(generate("<|user|>\nHi there</s>\n<|assistant|>\n", model) + " -n 12");
    ASSERT_EQ(g.code, 0) << g.err;
    EXPECT_EQ(c.out, g.out);
    ASSERT_EQ(turns(c.err).size(), 1u) << c.err;
    EXPECT_EQ(turns(c.err)[0].prompt, 13);
  }
}

TEST_F(CliChat, TwoTurnsKeepTheHistoryInTheCache) {
  const Result r = run_cli(chat() + " -n 12", "Hi there\nHow are you?\n/exit\nnot sent\n");
  ASSERT_EQ(r.code, 0) << r.err;
  const std::vector<Turn> t = turns(r.err);
  ASSERT_EQ(t.size(), 2u) << r.err;  // nothing after /exit
  EXPECT_EQ(t[0].reused, 0);
  EXPECT_EQ(t[0].messages, 2);
  EXPECT_EQ(t[1].messages, 4);
  // The second prompt extends the first conversation: the first prompt (at
  // least) is not run again.
  EXPECT_GE(t[1].reused, t[0].prompt);
  EXPECT_GT(t[1].prompt, t[0].prompt + t[0].reply);

  // The second reply sees the history: it differs from the same message alone,
  // and equals generate on the rendered two-turn conversation.
  const Result first = run_cli(chat() + " -n 12", "Hi there\n");
  ASSERT_EQ(first.code, 0) << first.err;
  ASSERT_EQ(r.out.rfind(first.out, 0), 0u) << "the first reply does not depend on what follows";
  const std::string reply1 = first.out.substr(0, first.out.size() - 1);
  const std::string reply2 = r.out.substr(first.out.size());
  const Result alone = run_cli(chat() + " -n 12", "How are you?\n");
  ASSERT_EQ(alone.code, 0) << alone.err;
  EXPECT_NE(reply2, alone.out);
  const Result g = run_cli(generate("<|user|>\nHi there</s>\n<|assistant|>\n" + reply1 +
                                    "</s>\n<|user|>\nHow are you?</s>\n<|assistant|>\n") +
                           " -n 12");
  ASSERT_EQ(g.code, 0) << g.err;
  EXPECT_EQ(reply2, g.out);
}

TEST_F(CliChat, ResetStartsOver) {
  const Result r = run_cli(chat() + " -n 10", "Hi\n/reset\nHi\n");  // ends at EOF
  ASSERT_EQ(r.code, 0) << r.err;
  const std::vector<Turn> t = turns(r.err);
  ASSERT_EQ(t.size(), 2u) << r.err;
  EXPECT_EQ(t[1].prompt, t[0].prompt);
  EXPECT_EQ(t[1].messages, 2);
  EXPECT_NE(r.err.find("conversation reset"), std::string::npos);
  ASSERT_EQ(r.out.size() % 2, 0u);
  EXPECT_EQ(r.out.substr(0, r.out.size() / 2), r.out.substr(r.out.size() / 2));
  // Without the reset the second answer differs.
  const Result k = run_cli(chat() + " -n 10", "Hi\nHi\n");
  ASSERT_EQ(k.code, 0) << k.err;
  EXPECT_NE(k.out, r.out);
}

TEST_F(CliChat, TrimsTheOldestTurnsToFitTheContext) {
  const std::string input =
      "Hello\nsecond message here\nthird one\nfourth\nand the fifth message\n";
  const Result r = run_cli(chat() + " -n 8 -c 64 -sys 'Be brief'", input);
  ASSERT_EQ(r.code, 0) << r.err;
  const std::vector<Turn> t = turns(r.err);
  ASSERT_EQ(t.size(), 5u) << r.err;
  EXPECT_NE(r.err.find("dropped the"), std::string::npos) << r.err;
  for (const Turn& x : t) {
    // Prompt + reply never exceed the context, and the prompt leaves room
    // for min(-n, ctx/2) tokens unless only the newest message is left.
    EXPECT_LE(x.prompt + x.reply, 64);
    if (x.messages > 2) {
      EXPECT_LE(x.prompt + 8, 64);
    }
    // The system prompt stays at the front, so its tokens are reused.
    if (&x != &t[0]) {
      EXPECT_GE(x.reused, 13);
    }
  }
  // History is kept while it fits, then the oldest turns go.
  EXPECT_EQ(t[1].messages, 4);
  EXPECT_EQ(t[2].messages, 2);
  // Without the limit the history grows.
  const Result big = run_cli(chat() + " -n 8 -c 512 -sys 'Be brief'", input);
  ASSERT_EQ(big.code, 0) << big.err;
  ASSERT_EQ(turns(big.err).size(), 5u);
  EXPECT_EQ(turns(big.err).back().messages, 10);
  EXPECT_EQ(big.err.find("dropped"), std::string::npos);
}

TEST_F(CliChat, AMessageThatCannotFitIsRefusedAndTheChatGoesOn) {
  const Result r =
      run_cli(chat() + " -n 4 -c 16", "this message is much too long for the context\nHi\n");
  // The next message is still answered; a piped chat with a refused turn
  // exits non-zero, so that a script notices.
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("it was not sent"), std::string::npos) << r.err;
  const std::vector<Turn> t = turns(r.err);
  ASSERT_EQ(t.size(), 1u) << r.err;
  EXPECT_LE(t[0].prompt + t[0].reply, 16);
}

TEST_F(CliChat, SystemPromptAndTemplateOverride) {
  const Result a = run_cli(chat() + " -n 8 -sys 'You are terse.'", "Hi\n");
  const Result b = run_cli(chat() + " -n 8 --system 'You are terse.'", "Hi\n");
  const Result none = run_cli(chat() + " -n 8", "Hi\n");
  ASSERT_EQ(a.code, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_NE(a.out, none.out);
  const Result g = run_cli(
      generate("<|system|>\nYou are terse.</s>\n<|user|>\nHi</s>\n<|assistant|>\n") + " -n 8");
  EXPECT_EQ(a.out, g.out);

  // A tokenizer without a template, and the template given as a file (Jinja
  // text or a tokenizer_config.json).
  write_tiny_tokenizer(dir.path / "plain");
  const std::string base = "chat -m " + quote(fixture("llama-mha").string()) + " --tokenizer " +
                           quote((dir.path / "plain").string()) + " --temp 0 -t 1 -n 8";
  const Result missing = run_cli(base, "Hi\n");
  EXPECT_CLI_ERROR(missing, "no chat template");
  const fs::path jinja = dir.write("t.jinja", chat_template_text("tinyllama-chat"));
  const Result file = run_cli(base + " --chat-template " + quote(jinja.string()), "Hi\n");
  EXPECT_EQ(file.code, 0) << file.err;
  EXPECT_EQ(file.out, none.out);
  const Result cfg = run_cli(
      base + " --chat-template " + quote((dir.path / "tok" / "tokenizer_config.json").string()),
      "Hi\n");
  EXPECT_EQ(cfg.code, 0) << cfg.err;
  EXPECT_EQ(cfg.out, none.out);
  // A line ending in a backslash continues the message.
  const Result ml = run_cli(chat() + " -n 8", "Hi\\\nthere\n");
  ASSERT_EQ(ml.code, 0) << ml.err;
  EXPECT_EQ(ml.out, run_cli(generate("<|user|>\nHi\nthere</s>\n<|assistant|>\n") + " -n 8").out);
}

TEST_F(CliChat, StopStringsAreNotPrinted) {
  const Result full = run_cli(chat() + " -n 12", "Hi there\n");
  ASSERT_EQ(full.code, 0) << full.err;
  ASSERT_GE(full.out.size(), 6u);
  const std::string needle = full.out.substr(3, 2);
  const Result r = run_cli(chat() + " -n 12 --stop " + quote(needle), "Hi there\n");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, full.out.substr(0, full.out.find(needle)) + "\n");
}

TEST_F(CliChat, BadInputExitsWithTwo) {
  const std::string m = "chat -m " + quote(fixture("llama-mha").string());
  const std::pair<std::string, std::string> cases[] = {
      {m, "no tokenizer"},
      {chat() + " --chat-template " + quote((dir.path / "none.jinja").string()), "no such file"},
      {chat() + " --chat-template " + quote(dir.write("bad.jinja", "{% if %}").string()),
       "chat template"},
      {chat() + " --top-p 2", "--top-p"},
      {chat() + " --samplers top_k,nope", "nope"},
      {chat() + " -n 0", "-n"},
      {"chat -m " + quote(fixture("opt-prenorm").string()) + " --tokenizer " +
           quote((dir.path / "tok").string()) + " -c 1000",
       "position table"},
  };
  for (const auto& [args, needle] : cases) {
    const Result r = run_cli(args, "Hi\n");
    SCOPED_TRACE(args);
    EXPECT_CLI_ERROR(r, needle);
  }
}

}  // namespace
