#pragma once
// The OpenAI-style API of `runnel serve`, without the network: parsing and
// validating request bodies, and the error object every failure becomes.
// Nothing here touches a model; what a check needs to know of it (vocabulary
// size, context) comes in Limits, so the parser can be fuzzed alone
// (tests/fuzz/fuzz_server_request.cpp).
#include <cstdint>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "runnel/sampler.hpp"

namespace runnel::server {

// An error answered as {"error": {"message", "type", "param", "code"}} with
// HTTP status `status`.
struct ApiError : std::runtime_error {
  ApiError(int status, std::string message, std::string param = {},
           std::string type = "invalid_request_error", std::string code = {});
  int status;
  std::string type, param, code;
};
// Its strings are valid UTF-8 and short, whatever the message quotes of
// the request (a JSON parse error quotes the bytes it read).
nlohmann::json error_json(const ApiError& e);
// s with every invalid UTF-8 sequence as U+FFFD, cut at a character
// boundary (then "...") to at most max_bytes + 3 bytes.
std::string printable_utf8(std::string_view s, size_t max_bytes);

struct Limits {
  int64_t vocab_size = 0;
  int64_t ctx = 0;           // longest sequence: prompt + generated
  int max_n = 1;             // most choices per request (--parallel)
  size_t max_stop = 4;       // stop strings per request (as OpenAI)
  int max_depth = 32;        // JSON nesting
  size_t max_messages = 4096;
};

// Parses a body as JSON with a nesting limit.  Malformed JSON, invalid UTF-8
// and nesting deeper than max_depth are ApiErrors (400).
nlohmann::json parse_body(std::string_view body, int max_depth);

struct ChatMessage {
  std::string role;  // system, developer (as system), user, assistant
  std::string content;
};

enum class Kind { Chat, Completion };

struct GenerationRequest {
  Kind kind = Kind::Chat;
  std::string model;
  std::vector<ChatMessage> messages;  // Chat
  // Completion: the prompt as text, or as token ids (prompt_ids non-empty).
  std::string prompt;
  std::vector<int32_t> prompt_ids;
  bool echo = false;
  int64_t max_tokens = -1;  // -1: until the context is full
  SamplerOptions sampling;
  std::vector<std::string> stop;
  int n = 1;
  bool ignore_eos = false;  // as llama-server and vLLM: generate past EOS up to max_tokens
  // Chat: logprobs (bool) and top_logprobs (0..20).  Completion: logprobs
  // (0..5) alternatives; -1: none.
  int logprobs = -1;
  bool stream = false;
  bool include_usage = false;
};

// Reads a /v1/chat/completions or /v1/completions body.  Every field is
// type- and range-checked; an ApiError names the field (param).
GenerationRequest parse_generation(const nlohmann::json& body, Kind kind, const Limits& limits);

// Compares two strings in time that depends only on their lengths.
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace runnel::server
