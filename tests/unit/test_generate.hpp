#pragma once
// Generation in tests runs as the CLI's does: one request through the Scheduler.
#include <cstdint>
#include <vector>

#include "runnel/error.hpp"
#include "runnel/scheduler.hpp"

namespace runnel::test {

// Up to `max_new` tokens after `prompt`, stopping after any of `stop_ids`
// (included); greedy at temperature 0, else the default sampler chain.
inline std::vector<int32_t> generate_ids(Model& model, std::vector<int32_t> prompt, int max_new,
                                         DType kv = DType::F32,
                                         std::vector<int32_t> stop_ids = {},
                                         float temperature = 0.0f, uint64_t seed = 0) {
  RequestOptions ro;
  ro.sampling.temperature = temperature;
  ro.sampling.seed = seed;
  ro.stop.max_tokens = max_new;
  ro.stop.eos_ids = std::move(stop_ids);
  ro.stop_at_eos = false;
  ro.text = false;
  SchedulerOptions so;
  so.kv_dtype = kv;
  so.max_sequences = 1;
  so.max_batch_tokens = std::max<int64_t>(1, int64_t(prompt.size()));
  so.ctx_size = int64_t(prompt.size()) + max_new;
  const RequestResult r = generate(model, std::move(prompt), ro, so);
  if (r.samples.at(0).finish == FinishReason::Error) throw Error(r.samples[0].error);
  return r.samples[0].tokens;
}

}  // namespace runnel::test
