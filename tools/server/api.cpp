// Request parsing and validation for `runnel serve` (api.hpp).
#include "api.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "tokenizer/unicode.hpp"

namespace runnel::server {

using nlohmann::json;

ApiError::ApiError(int status_, std::string message, std::string param_, std::string type_,
                   std::string code_)
    : std::runtime_error(std::move(message)),
      status(status_),
      type(std::move(type_)),
      param(std::move(param_)),
      code(std::move(code_)) {}

std::string printable_utf8(std::string_view s, size_t max_bytes) {
  // The tokenizer's UTF-8 checks; each byte that does not start a valid
  // character becomes one U+FFFD.
  static const std::string kRepl = tok::to_utf8(tok::kReplacementChar);
  std::string out;
  out.reserve(std::min(s.size(), max_bytes));
  for (size_t i = 0; i < s.size();) {
    const size_t len = tok::utf8_char_len(static_cast<unsigned char>(s[i]));
    const bool ok = i + len <= s.size() && tok::is_valid_utf8(s.substr(i, len));
    const std::string_view piece = ok ? s.substr(i, len) : std::string_view(kRepl);
    if (out.size() + piece.size() > max_bytes) {
      out += "...";
      break;
    }
    out += piece;
    i += ok ? len : 1;
  }
  return out;
}

json error_json(const ApiError& e) {
  json err = {{"message", printable_utf8(e.what(), 1024)},
              {"type", e.type},
              {"param", nullptr},
              {"code", nullptr}};
  if (!e.param.empty()) err["param"] = printable_utf8(e.param, 1024);
  if (!e.code.empty()) err["code"] = e.code;
  return json{{"error", err}};
}

json parse_body(std::string_view body, int max_depth) {
  json::parser_callback_t cb = [max_depth](int depth, json::parse_event_t, json&) {
    if (depth > max_depth)
      throw ApiError(400, fmt::format("the request body nests deeper than {} levels", max_depth));
    return true;
  };
  try {
    return json::parse(body.begin(), body.end(), cb);
  } catch (const json::parse_error& e) {
    // nlohmann's message names the byte offset and what it found.
    throw ApiError(400, std::string("the request body is not valid JSON: ") + e.what());
  } catch (const json::exception& e) {
    // A number out of range (1e400) is reported as out_of_range, not as a parse error.
    throw ApiError(400, std::string("the request body is not usable JSON: ") + e.what());
  }
}

namespace {

const json* field(const json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

[[noreturn]] void bad(const std::string& param, const std::string& what) {
  throw ApiError(400, param + ": " + what, param);
}

double number(const json& v, const std::string& param, double lo, double hi) {
  if (!v.is_number()) bad(param, "expected a number");
  const double d = v.get<double>();
  if (!std::isfinite(d) || d < lo || d > hi)
    bad(param, fmt::format("{} is outside [{}, {}]", v.dump(), lo, hi));
  return d;
}

int64_t integer(const json& v, const std::string& param, int64_t lo, int64_t hi) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > uint64_t(std::numeric_limits<int64_t>::max()) || int64_t(u) > hi)
      bad(param, fmt::format("{} is outside [{}, {}]", v.dump(), lo, hi));
    if (int64_t(u) < lo) bad(param, fmt::format("{} is outside [{}, {}]", v.dump(), lo, hi));
    return int64_t(u);
  }
  if (!v.is_number_integer()) bad(param, "expected an integer");
  const int64_t i = v.get<int64_t>();
  if (i < lo || i > hi) bad(param, fmt::format("{} is outside [{}, {}]", i, lo, hi));
  return i;
}

bool boolean(const json& v, const std::string& param) {
  if (!v.is_boolean()) bad(param, "expected true or false");
  return v.get<bool>();
}

std::string string(const json& v, const std::string& param) {
  if (!v.is_string()) bad(param, "expected a string");
  return v.get<std::string>();
}

int32_t token_id(const json& v, const std::string& param, const Limits& lim) {
  return int32_t(integer(v, param, 0, lim.vocab_size - 1));
}

std::string message_content(const json& c, const std::string& param) {
  if (c.is_string()) return c.get<std::string>();
  if (!c.is_array()) bad(param, "expected a string or an array of text parts");
  std::string out;
  for (size_t i = 0; i < c.size(); ++i) {
    const std::string p = fmt::format("{}[{}]", param, i);
    const json& part = c[i];
    if (!part.is_object()) bad(p, "expected an object {\"type\": \"text\", \"text\": ...}");
    const json* type = field(part, "type");
    if (!type || string(*type, p + ".type") != "text")
      bad(p + ".type", "only \"text\" parts are supported");
    const json* text = field(part, "text");
    if (!text) bad(p + ".text", "missing");
    out += string(*text, p + ".text");
  }
  return out;
}

// A completion prompt: a string, a list of ids, or a list holding one of those.
void read_prompt(const json& v, GenerationRequest& r, const Limits& lim) {
  const json* p = &v;
  if (p->is_array() && p->size() == 1 && ((*p)[0].is_string() || (*p)[0].is_array())) p = &(*p)[0];
  if (p->is_string()) {
    r.prompt = p->get<std::string>();
    return;
  }
  if (!p->is_array()) bad("prompt", "expected a string or an array of token ids");
  if (p->empty()) bad("prompt", "the prompt is empty");
  if (size_t(lim.ctx) > 0 && p->size() > size_t(lim.ctx))
    bad("prompt", fmt::format("{} tokens exceed the context of {}", p->size(), lim.ctx));
  for (size_t i = 0; i < p->size(); ++i) {
    if ((*p)[i].is_string() || (*p)[i].is_array())
      bad("prompt", "only one prompt per request is supported");
    r.prompt_ids.push_back(token_id((*p)[i], fmt::format("prompt[{}]", i), lim));
  }
}

}  // namespace

GenerationRequest parse_generation(const json& body, Kind kind, const Limits& lim) {
  if (!body.is_object()) throw ApiError(400, "the request body must be a JSON object");
  GenerationRequest r;
  r.kind = kind;
  for (const char* unsupported : {"tools", "tool_choice", "functions", "function_call", "suffix",
                                  "audio", "prediction"})
    if (field(body, unsupported))
      bad(unsupported, "not supported by this server");
  if (const json* rf = field(body, "response_format")) {
    const json* t = rf->is_object() ? field(*rf, "type") : nullptr;
    if (!t || !t->is_string() || t->get<std::string>() != "text")
      bad("response_format", "only {\"type\": \"text\"} is supported");
  }
  if (const json* v = field(body, "best_of"); v && integer(*v, "best_of", 1, 1) != 1)
    bad("best_of", "only 1 is supported");
  if (const json* v = field(body, "model")) r.model = string(*v, "model");

  if (kind == Kind::Chat) {
    const json* m = field(body, "messages");
    if (!m) bad("messages", "missing");
    if (!m->is_array() || m->empty()) bad("messages", "expected a non-empty array");
    if (m->size() > lim.max_messages)
      bad("messages", fmt::format("more than {} messages", lim.max_messages));
    for (size_t i = 0; i < m->size(); ++i) {
      const std::string p = fmt::format("messages[{}]", i);
      const json& msg = (*m)[i];
      if (!msg.is_object()) bad(p, "expected an object with role and content");
      const json* role = field(msg, "role");
      if (!role) bad(p + ".role", "missing");
      std::string rs = string(*role, p + ".role");
      if (rs == "developer") rs = "system";
      if (rs != "system" && rs != "user" && rs != "assistant")
        bad(p + ".role", "\"" + rs + "\" is not one of system, developer, user, assistant");
      const json* content = field(msg, "content");
      if (!content) bad(p + ".content", "missing");
      r.messages.push_back({rs, message_content(*content, p + ".content")});
    }
  } else {
    const json* p = field(body, "prompt");
    if (!p) bad("prompt", "missing");
    read_prompt(*p, r, lim);
    if (const json* v = field(body, "echo")) r.echo = boolean(*v, "echo");
  }

  const int64_t cap = lim.ctx > 0 ? lim.ctx : std::numeric_limits<int32_t>::max();
  for (const char* name : {"max_tokens", "max_completion_tokens"})
    if (const json* v = field(body, name)) r.max_tokens = integer(*v, name, 1, cap);

  SamplerOptions& s = r.sampling;
  if (const json* v = field(body, "temperature")) s.temperature = float(number(*v, "temperature", 0, 2));
  if (const json* v = field(body, "top_p")) {
    s.top_p = float(number(*v, "top_p", 0, 1));
    if (s.top_p == 0.0f) bad("top_p", "must be greater than 0 (use temperature 0 for greedy)");
  }
  if (const json* v = field(body, "top_k")) s.top_k = int32_t(integer(*v, "top_k", -1, lim.vocab_size));
  if (const json* v = field(body, "min_p")) s.min_p = float(number(*v, "min_p", 0, 1));
  if (const json* v = field(body, "presence_penalty"))
    s.presence_penalty = float(number(*v, "presence_penalty", -2, 2));
  if (const json* v = field(body, "frequency_penalty"))
    s.frequency_penalty = float(number(*v, "frequency_penalty", -2, 2));
  if (const json* v = field(body, "seed")) {
    s.seed = uint64_t(integer(*v, "seed", std::numeric_limits<int64_t>::min(),
                              std::numeric_limits<int64_t>::max()));
  } else {
    s.seed = (uint64_t(std::random_device{}()) << 32) ^ uint64_t(std::random_device{}());
  }
  if (const json* v = field(body, "logit_bias")) {
    if (!v->is_object()) bad("logit_bias", "expected an object of token id: bias");
    for (auto it = v->begin(); it != v->end(); ++it) {
      const std::string p = "logit_bias." + it.key();
      int64_t id = -1;
      const std::string& k = it.key();
      if (k.empty() || k.size() > 10 || k.find_first_not_of("0123456789") != std::string::npos)
        bad(p, "the key must be a token id");
      id = std::stoll(k);
      if (id >= lim.vocab_size)
        bad(p, fmt::format("token id {} is outside the vocabulary of {}", id, lim.vocab_size));
      s.logit_bias[int32_t(id)] = float(number(it.value(), p, -100, 100));
    }
  }
  if (const json* v = field(body, "stop")) {
    if (v->is_string()) {
      r.stop.push_back(v->get<std::string>());
    } else if (v->is_array()) {
      if (v->size() > lim.max_stop) bad("stop", fmt::format("at most {} stop strings", lim.max_stop));
      for (size_t i = 0; i < v->size(); ++i) r.stop.push_back(string((*v)[i], fmt::format("stop[{}]", i)));
    } else {
      bad("stop", "expected a string or an array of strings");
    }
    for (const std::string& st : r.stop) {
      if (st.empty()) bad("stop", "a stop string is empty");
      if (st.size() > 256) bad("stop", "a stop string is longer than 256 bytes");
    }
  }
  if (const json* v = field(body, "n")) r.n = int(integer(*v, "n", 1, lim.max_n));
  if (const json* v = field(body, "ignore_eos")) r.ignore_eos = boolean(*v, "ignore_eos");
  if (kind == Kind::Chat) {
    const bool lp = field(body, "logprobs") && boolean(*field(body, "logprobs"), "logprobs");
    if (const json* v = field(body, "top_logprobs")) {
      const int64_t k = integer(*v, "top_logprobs", 0, 20);
      if (!lp) bad("top_logprobs", "needs logprobs: true");
      r.logprobs = int(k);
    } else if (lp) {
      r.logprobs = 0;
    }
  } else if (const json* v = field(body, "logprobs")) {
    r.logprobs = int(integer(*v, "logprobs", 0, 5));
    if (r.echo) bad("logprobs", "logprobs of an echoed prompt are not supported");
  }
  if (const json* v = field(body, "stream")) r.stream = boolean(*v, "stream");
  if (const json* v = field(body, "stream_options")) {
    if (!r.stream) bad("stream_options", "only allowed with stream: true");
    if (!v->is_object()) bad("stream_options", "expected an object");
    if (const json* u = field(*v, "include_usage"))
      r.include_usage = boolean(*u, "stream_options.include_usage");
  }
  return r;
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  // Every byte of the longer string is looked at, whatever matches.
  const size_t n = std::max(a.size(), b.size());
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

}  // namespace runnel::server
