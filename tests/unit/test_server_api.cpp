// The request parser and validator of `runnel serve` (tools/server/api.cpp):
// every bad field gives a 400 that names it, good requests come out whole.
#include <gtest/gtest.h>

#include <string>

#include "server/api.hpp"

namespace runnel::server {
namespace {

using nlohmann::json;

Limits limits() {
  Limits l;
  l.vocab_size = 512;
  l.ctx = 256;
  l.max_n = 4;
  return l;
}

GenerationRequest chat(const std::string& body) {
  return parse_generation(parse_body(body, 32), Kind::Chat, limits());
}
GenerationRequest completion(const std::string& body) {
  return parse_generation(parse_body(body, 32), Kind::Completion, limits());
}

// The ApiError a body raises: status and param.
std::pair<int, std::string> error_of(Kind kind, const std::string& body) {
  try {
    parse_generation(parse_body(body, 32), kind, limits());
  } catch (const ApiError& e) {
    return {e.status, e.param};
  }
  return {0, "accepted"};
}

TEST(ServerApi, ReadsEveryChatField) {
  const GenerationRequest r = chat(R"({
    "model": "x", "messages": [{"role": "developer", "content": "Be brief."},
      {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]}],
    "max_completion_tokens": 16, "temperature": 0.5, "top_p": 0.9, "top_k": 40, "min_p": 0.1,
    "seed": 7, "stop": ["a", "bc"], "n": 2, "presence_penalty": 0.5, "frequency_penalty": -1,
    "logit_bias": {"5": -100, "7": 2.5}, "logprobs": true, "top_logprobs": 3, "stream": true,
    "stream_options": {"include_usage": true}, "ignore_eos": true})");
  EXPECT_EQ(r.model, "x");
  EXPECT_TRUE(r.ignore_eos);
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[0].role, "system");  // developer is the system role
  EXPECT_EQ(r.messages[1].content, "Hi there");
  EXPECT_EQ(r.max_tokens, 16);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(r.sampling.top_p, 0.9f);
  EXPECT_EQ(r.sampling.top_k, 40);
  EXPECT_FLOAT_EQ(r.sampling.min_p, 0.1f);
  EXPECT_EQ(r.sampling.seed, 7u);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"a", "bc"}));
  EXPECT_EQ(r.n, 2);
  EXPECT_FLOAT_EQ(r.sampling.presence_penalty, 0.5f);
  EXPECT_FLOAT_EQ(r.sampling.frequency_penalty, -1.0f);
  ASSERT_EQ(r.sampling.logit_bias.size(), 2u);
  EXPECT_FLOAT_EQ(r.sampling.logit_bias.at(5), -100.0f);
  EXPECT_FLOAT_EQ(r.sampling.logit_bias.at(7), 2.5f);
  EXPECT_EQ(r.logprobs, 3);
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
}

TEST(ServerApi, ReadsCompletionPrompts) {
  EXPECT_EQ(completion(R"({"prompt": "Once"})").prompt, "Once");
  EXPECT_EQ(completion(R"({"prompt": ["Once"]})").prompt, "Once");
  EXPECT_EQ(completion(R"({"prompt": [1, 2, 511]})").prompt_ids, (std::vector<int32_t>{1, 2, 511}));
  EXPECT_EQ(completion(R"({"prompt": [[3, 4]]})").prompt_ids, (std::vector<int32_t>{3, 4}));
  const GenerationRequest r = completion(R"({"prompt": "a", "logprobs": 2, "stop": "x"})");
  EXPECT_FALSE(r.echo);
  EXPECT_EQ(r.logprobs, 2);
  EXPECT_TRUE(completion(R"({"prompt": "a", "echo": true})").echo);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"x"}));
  // Chat logprobs without top_logprobs: the sampled token only.
  EXPECT_EQ(chat(R"({"messages": [{"role": "user", "content": "a"}], "logprobs": true})").logprobs, 0);
  EXPECT_EQ(chat(R"({"messages": [{"role": "user", "content": "a"}]})").logprobs, -1);
  EXPECT_FALSE(chat(R"({"messages": [{"role": "user", "content": "a"}]})").ignore_eos);
  // Unset seeds differ between requests (a fresh one each time).
  EXPECT_NE(completion(R"({"prompt": "a"})").sampling.seed, completion(R"({"prompt": "a"})").sampling.seed);
}

TEST(ServerApi, EachBadFieldIsA400NamingIt) {
  const std::string msgs = R"("messages": [{"role": "user", "content": "a"}])";
  struct Case {
    Kind kind;
    std::string body, param;
  };
  const std::vector<Case> cases = {
      {Kind::Chat, "{}", "messages"},
      {Kind::Chat, R"({"messages": []})", "messages"},
      {Kind::Chat, R"({"messages": "hi"})", "messages"},
      {Kind::Chat, R"({"messages": [{"role": "tool", "content": "a"}]})", "messages[0].role"},
      {Kind::Chat, R"({"messages": [{"role": 3, "content": "a"}]})", "messages[0].role"},
      {Kind::Chat, R"({"messages": [{"role": "user"}]})", "messages[0].content"},
      {Kind::Chat, R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})",
       "messages[0].content[0].type"},
      {Kind::Chat, "{" + msgs + R"(, "max_tokens": -1})", "max_tokens"},
      {Kind::Chat, "{" + msgs + R"(, "max_tokens": 0})", "max_tokens"},
      {Kind::Chat, "{" + msgs + R"(, "max_tokens": 1000000000000})", "max_tokens"},
      {Kind::Chat, "{" + msgs + R"(, "max_tokens": 18446744073709551615})", "max_tokens"},
      {Kind::Chat, "{" + msgs + R"(, "max_tokens": "8"})", "max_tokens"},
      {Kind::Chat, "{" + msgs + R"(, "max_tokens": 2.5})", "max_tokens"},
      {Kind::Chat, "{" + msgs + R"(, "temperature": 3})", "temperature"},
      {Kind::Chat, "{" + msgs + R"(, "temperature": "hot"})", "temperature"},
      {Kind::Chat, "{" + msgs + R"(, "top_p": 0})", "top_p"},
      {Kind::Chat, "{" + msgs + R"(, "top_k": 100000})", "top_k"},
      {Kind::Chat, "{" + msgs + R"(, "n": 5})", "n"},
      {Kind::Chat, "{" + msgs + R"(, "n": 0})", "n"},
      {Kind::Chat, "{" + msgs + R"(, "stop": ["a", "b", "c", "d", "e"]})", "stop"},
      {Kind::Chat, "{" + msgs + R"(, "stop": [""]})", "stop"},
      {Kind::Chat, "{" + msgs + R"(, "stop": 5})", "stop"},
      {Kind::Chat, "{" + msgs + R"(, "logit_bias": {"512": 1}})", "logit_bias.512"},
      {Kind::Chat, "{" + msgs + R"(, "logit_bias": {"-1": 1}})", "logit_bias.-1"},
      {Kind::Chat, "{" + msgs + R"(, "logit_bias": {"5": 101}})", "logit_bias.5"},
      {Kind::Chat, "{" + msgs + R"(, "top_logprobs": 3})", "top_logprobs"},
      {Kind::Chat, "{" + msgs + R"(, "logprobs": true, "top_logprobs": 21})", "top_logprobs"},
      {Kind::Chat, "{" + msgs + R"(, "stream_options": {"include_usage": true}})", "stream_options"},
      {Kind::Chat, "{" + msgs + R"(, "tools": []})", "tools"},
      {Kind::Chat, "{" + msgs + R"(, "response_format": {"type": "json_object"}})", "response_format"},
      {Kind::Chat, "{" + msgs + R"(, "presence_penalty": -3})", "presence_penalty"},
      {Kind::Chat, "{" + msgs + R"(, "seed": 1.5})", "seed"},
      {Kind::Completion, "{}", "prompt"},
      {Kind::Completion, R"({"prompt": []})", "prompt"},
      {Kind::Completion, R"({"prompt": 5})", "prompt"},
      {Kind::Completion, R"({"prompt": [1, 512]})", "prompt[1]"},
      {Kind::Completion, R"({"prompt": [1, -1]})", "prompt[1]"},
      {Kind::Completion, R"({"prompt": ["a", "b"]})", "prompt"},
      {Kind::Completion, R"({"prompt": "a", "logprobs": 6})", "logprobs"},
      {Kind::Completion, R"({"prompt": "a", "echo": "yes"})", "echo"},
      {Kind::Completion, R"({"prompt": "a", "ignore_eos": 1})", "ignore_eos"},
      {Kind::Completion, R"({"prompt": "a", "echo": true, "logprobs": 1})", "logprobs"},
  };
  for (const Case& c : cases) {
    const auto [status, param] = error_of(c.kind, c.body);
    EXPECT_EQ(status, 400) << c.body;
    EXPECT_EQ(param, c.param) << c.body;
  }
  // A prompt of token ids longer than the context.
  std::string long_prompt = R"({"prompt": [)";
  for (int i = 0; i < 257; ++i) long_prompt += (i ? ",1" : "1");
  long_prompt += "]}";
  EXPECT_EQ(error_of(Kind::Completion, long_prompt).first, 400);
}

TEST(ServerApi, MalformedBodiesAre400s) {
  const std::vector<std::string> bodies = {
      "{", "[1, 2", "nul", "",
      "{\"a\": \"\xff\"}",     // invalid UTF-8
      "{\"a\": \"\\ud800\"}",  // a lone surrogate
      std::string(40, '[') + std::string(40, ']')};  // too deep
  for (const std::string& body : bodies) {
    try {
      parse_body(body, 32);
      ADD_FAILURE() << "accepted: " << body;
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status, 400) << body;
    }
  }
  EXPECT_EQ(error_of(Kind::Chat, "[1]").first, 400);  // not an object
  EXPECT_NO_THROW(parse_body(std::string(32, '[') + std::string(32, ']'), 32));
  // A number past double's range: a 400 like any other bad body, not a 500.
  EXPECT_THROW(parse_body(R"({"temperature": 1e400})", 32), ApiError);
}

TEST(ServerApi, ErrorObjectHasOpenAIShape) {
  const json j = error_json(ApiError(400, "n: 5 is outside [1, 4]", "n"));
  ASSERT_TRUE(j.contains("error"));
  EXPECT_EQ(j["error"]["message"], "n: 5 is outside [1, 4]");
  EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  EXPECT_EQ(j["error"]["param"], "n");
  EXPECT_TRUE(j["error"]["code"].is_null());
  const json k = error_json(ApiError(401, "no key", {}, "invalid_request_error", "invalid_api_key"));
  EXPECT_TRUE(k["error"]["param"].is_null());
  EXPECT_EQ(k["error"]["code"], "invalid_api_key");
}

TEST(ServerApi, ErrorObjectsAreValidUtf8WhateverTheBodyHeld) {
  // A parse error quotes the bytes it read; the error object must still dump
  // (nlohmann's dump throws on invalid UTF-8) and stay short.
  const std::string body = "{\"prompt\": \"\xAF\xAF" + std::string(100000, 'a') + "\xC0\xAF\"}";
  try {
    parse_body(body, 32);
    FAIL() << "invalid UTF-8 was accepted";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400);
    std::string dumped;
    ASSERT_NO_THROW(dumped = error_json(e).dump());
    EXPECT_LT(dumped.size(), 1200u);
  }
  EXPECT_EQ(printable_utf8("ok \xC3\xA9 \xF0\x9F\x98\x80", 100), "ok \xC3\xA9 \xF0\x9F\x98\x80");
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(printable_utf8("\xC0\xAF", 100), fffd + fffd);          // overlong
  EXPECT_EQ(printable_utf8("\xED\xA0\x80", 100), fffd + fffd + fffd);  // a surrogate
  EXPECT_EQ(printable_utf8("\xF4\x90\x80\x80", 100), fffd + fffd + fffd + fffd);  // past U+10FFFF
  EXPECT_EQ(printable_utf8("a\xE2\x82", 100), "a" + fffd + fffd);    // cut short
  EXPECT_EQ(printable_utf8("ab\xC3\xA9", 3), "ab...");               // never half a character
}

TEST(ServerApi, ConstantTimeEqual) {
  EXPECT_TRUE(constant_time_equal("Bearer abc", "Bearer abc"));
  EXPECT_FALSE(constant_time_equal("Bearer abc", "Bearer abd"));
  EXPECT_FALSE(constant_time_equal("Bearer ab", "Bearer abc"));
  EXPECT_FALSE(constant_time_equal("", "x"));
  EXPECT_TRUE(constant_time_equal("", ""));
  // A prefix with a NUL after it is not the key.
  EXPECT_FALSE(constant_time_equal(std::string_view("abc\0", 4), "abc"));
}

}  // namespace
}  // namespace runnel::server
