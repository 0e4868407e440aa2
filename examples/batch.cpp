// Continuous batching: several prompts share one model and one paged KV cache,
// and every step of the Scheduler runs one forward pass over all of them.
//
//   batch MODEL [--tokenizer PATH] [-n N] [--temp T] (PROMPT | --ids 1,2,3)...
//
// Part 1 submits each prompt with a callback that streams its events, and
// cancels the last request after its third token to show cancellation from a
// callback.  Part 2 runs the same prompts through generate_batch(), the
// one-call form, and checks that greedy results do not depend on batching.
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include <runnel/error.hpp>
#include <runnel/model.hpp>
#include <runnel/scheduler.hpp>

#include "common.hpp"

namespace {

std::string ids_text(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) {
    if (!s.empty()) s += ' ';
    s += std::to_string(id);
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL [--tokenizer PATH] [-n N] [--temp T] (PROMPT | --ids 1,2,3)...\n",
                 argv[0]);
    return 2;
  }
  try {
    runnel::LoadOptions load;
    runnel::RequestOptions req;
    req.sampling.temperature = 0.0f;  // greedy
    req.stop.max_tokens = 16;
    std::vector<std::string> texts, id_lists;
    for (int i = 2; i < argc; ++i) {
      const std::string a = argv[i];
      const bool takes_value = a == "--tokenizer" || a == "--ids" || a == "-n" || a == "--temp";
      if (takes_value && i + 1 >= argc) throw runnel::Error(a + ": expected a value");
      if (a == "--tokenizer") load.tokenizer_path = argv[++i];
      else if (a == "--ids") id_lists.push_back(argv[++i]);
      else if (a == "-n") req.stop.max_tokens = std::stol(argv[++i]);
      else if (a == "--temp") req.sampling.temperature = std::stof(argv[++i]);
      else texts.push_back(a);
    }
    auto model = runnel::Model::load(argv[1], load);
    req.text = model->tokenizer() != nullptr;  // without a tokenizer, print ids

    std::vector<std::vector<int32_t>> prompts;
    for (const std::string& t : texts) prompts.push_back(example::prompt_ids(*model, t, ""));
    for (const std::string& s : id_lists) prompts.push_back(example::parse_ids(s));
    if (prompts.empty()) throw runnel::Error("nothing to generate: give prompts or --ids");

    // Part 1: Scheduler with streaming callbacks.  Callbacks run inside
    // step(), on this thread.
    runnel::SchedulerOptions sched_opts;
    sched_opts.max_batch_tokens = 64;  // small chunks, so prompts and decodes interleave
    runnel::Scheduler sched(*model, sched_opts);
    std::vector<runnel::RequestId> ids;
    const size_t cancel_index = prompts.size() > 1 ? prompts.size() - 1 : prompts.size();
    for (size_t i = 0; i < prompts.size(); ++i) {
      const bool cancel_early = i == cancel_index;
      int seen = 0;
      auto on_event = [cancel_early, seen](const runnel::Event& e) mutable {
        if (e.token >= 0) {
          std::printf("  [request %lld] token %d%s%s\n", static_cast<long long>(e.request),
                      e.token, e.text.empty() ? "" : " text ", e.text.c_str());
          ++seen;
        }
        if (e.finish != runnel::FinishReason::None)
          std::printf("  [request %lld] finished: %s%s%s\n", static_cast<long long>(e.request),
                      runnel::to_string(e.finish), e.error.empty() ? "" : ": ", e.error.c_str());
        return !(cancel_early && seen >= 3);  // false cancels this sample
      };
      ids.push_back(sched.submit(prompts[i], req, on_event));
    }
    sched.run();
    const runnel::Scheduler::Stats st = sched.stats();
    std::printf("scheduler: %lld steps, %lld prompt tokens, %lld generated tokens\n",
                static_cast<long long>(st.steps), static_cast<long long>(st.prompt_tokens),
                static_cast<long long>(st.generated_tokens));

    std::map<runnel::RequestId, std::vector<int32_t>> streamed;
    for (runnel::RequestId id : ids) {
      runnel::RequestResult r = sched.take(id);
      const runnel::Completion& c = r.samples.at(0);
      std::printf("request %lld (%lld prompt tokens): %s, tokens [%s]%s%s%s\n",
                  static_cast<long long>(r.id), static_cast<long long>(r.prompt_tokens),
                  runnel::to_string(c.finish), ids_text(c.tokens).c_str(),
                  c.text.empty() ? "" : ", text \"", c.text.c_str(), c.text.empty() ? "" : "\"");
      streamed[id] = c.tokens;
    }

    // Part 2: the same prompts in one call.  Greedy decoding gives the same
    // tokens as part 1 for every request that was not cancelled, unless two
    // logits are so close that the rounding of a different batch shape
    // (another chunking of the prompts) swaps them.
    const std::vector<runnel::RequestResult> results = runnel::generate_batch(*model, prompts, req);
    int mismatches = 0;
    for (size_t i = 0; i < results.size(); ++i) {
      const runnel::Completion& c = results[i].samples.at(0);
      std::printf("generate_batch %zu: %s, tokens [%s]\n", i, runnel::to_string(c.finish),
                  ids_text(c.tokens).c_str());
      if (req.sampling.temperature == 0.0f && i != cancel_index && c.tokens != streamed[ids[i]])
        ++mismatches;
    }
    if (mismatches)
      std::printf("note: %d greedy results differ between the two runs (a near-tie)\n",
                  mismatches);
  } catch (const runnel::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  return 0;
}
