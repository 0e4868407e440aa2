// libFuzzer target: `runnel serve`'s request bodies.  The first byte picks the
// endpoint (chat or completion) and the limits; the rest is the body, parsed
// with the depth limit and validated as the server does.  ApiError is the
// expected result of bad input; anything else escaping is a finding, and so
// is an accepted request that breaks what the server relies on.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "server/api.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  using namespace runnel::server;
  const Kind kind = (data[0] & 1) ? Kind::Completion : Kind::Chat;
  Limits lim;
  lim.vocab_size = (data[0] & 2) ? 512 : 32000;
  lim.ctx = (data[0] & 4) ? 256 : 4096;
  lim.max_n = (data[0] & 8) ? 1 : 4;
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    const GenerationRequest r = parse_generation(parse_body(body, lim.max_depth), kind, lim);
    // What the server relies on once a request is accepted.
    if (r.n < 1 || r.n > lim.max_n) std::abort();
    if (r.max_tokens != -1 && (r.max_tokens < 1 || r.max_tokens > lim.ctx)) std::abort();
    if (r.logprobs < -1 || r.logprobs > 20) std::abort();
    if (r.stop.size() > lim.max_stop) std::abort();
    for (int32_t id : r.prompt_ids)
      if (id < 0 || id >= lim.vocab_size) std::abort();
    for (const auto& [id, bias] : r.sampling.logit_bias)
      if (id < 0 || id >= lim.vocab_size || !(bias >= -100 && bias <= 100)) std::abort();
    if (kind == Kind::Chat && r.messages.empty()) std::abort();
    if (kind == Kind::Completion && r.prompt_ids.empty() && r.messages.size() != 0) std::abort();
    if (r.include_usage && !r.stream) std::abort();
  } catch (const ApiError& e) {
    if (e.status < 400 || e.status > 499) std::abort();
    (void)error_json(e).dump();
  }
  return 0;
}
