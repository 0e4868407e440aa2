// Streams a continuation of a prompt, token by token:
//
//   generate MODEL [--tokenizer PATH] [-n N] [--temp T] [--seed S] [--stop STRING]
//            [--timeout-ms MS] [--cancel-after N] (PROMPT | --ids 1,2,3)
//
// MODEL is a Hugging Face folder, a GGUF file or a llama2.c checkpoint (the
// format is detected).  Generation is one request through the Scheduler
// (runnel::generate), streamed through its event callback.  Ctrl-C,
// --timeout-ms or --cancel-after cancel it through the callback given to
// stream(); the text so far is kept.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <runnel/error.hpp>
#include <runnel/model.hpp>
#include <runnel/sampler.hpp>
#include <runnel/scheduler.hpp>
#include <runnel/tokenizer.hpp>

#include "common.hpp"

namespace {

std::atomic<bool> g_interrupted{false};
extern "C" void on_sigint(int) { g_interrupted = true; }

// Called with each new token and the text that is safe to print now; return
// false to cancel.
using OnToken = std::function<bool(int32_t token, std::string_view text)>;

// Generates after `prompt` until a stop condition or the callback says stop:
// one request through the Scheduler, which samples, detokenizes (never a
// partial character, never a stop string) and checks the stop conditions.
runnel::FinishReason stream(runnel::Model& model, const std::vector<int32_t>& prompt,
                            const runnel::SamplerOptions& sampling,
                            const runnel::StopOptions& stop, const OnToken& on_token) {
  runnel::RequestOptions ro;
  ro.sampling = sampling;
  ro.stop = stop;  // EOS ids are added (stop_at_eos)
  ro.text = model.tokenizer() != nullptr;
  runnel::SchedulerOptions so;  // the KV cache: the model's context, f32
  so.max_sequences = 1;
  const runnel::RequestResult r =
      runnel::generate(model, prompt, ro, so, [&](const runnel::Event& e) {
        // Without a tokenizer, the ids are the text (an EOS id is not shown).
        const bool shown = e.token >= 0 && e.finish != runnel::FinishReason::Eos;
        const std::string text = ro.text ? e.text : shown ? std::to_string(e.token) + " " : "";
        return on_token(e.token, text);
      });
  const runnel::Completion& c = r.samples.at(0);
  if (c.finish == runnel::FinishReason::Error) throw runnel::Error(c.error);
  return c.finish;
}

int usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s MODEL [--tokenizer PATH] [-n N] [--temp T] [--seed S] "
               "[--stop STRING] [--timeout-ms MS] [--cancel-after N] (PROMPT | --ids 1,2,3)\n",
               argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return usage(argv[0]);
  std::string model_path = argv[1], prompt_text, ids, tokenizer;
  runnel::SamplerOptions sampling;
  sampling.temperature = 0.0f;  // greedy unless --temp is given
  runnel::StopOptions stop;
  stop.max_tokens = 32;
  long timeout_ms = 0;     // > 0: cancel when generation takes longer
  long cancel_after = -1;  // >= 0: cancel after this many tokens (a UI's stop button)
  try {
    for (int i = 2; i < argc; ++i) {
      const std::string a = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) throw runnel::Error(a + ": expected a value");
        return argv[++i];
      };
      if (a == "-n") stop.max_tokens = std::stol(value());
      else if (a == "--temp") sampling.temperature = std::stof(value());
      else if (a == "--seed") sampling.seed = std::stoull(value());
      else if (a == "--ids") ids = value();
      else if (a == "--tokenizer") tokenizer = value();
      else if (a == "--stop") stop.stop_strings.push_back(value());
      else if (a == "--timeout-ms") timeout_ms = std::stol(value());
      else if (a == "--cancel-after") cancel_after = std::stol(value());
      else if (!a.empty() && a[0] == '-') return usage(argv[0]);
      else prompt_text = a;
    }

    runnel::LoadOptions load;
    load.tokenizer_path = tokenizer;
    auto model = runnel::Model::load(model_path, load);
    const std::vector<int32_t> prompt = example::prompt_ids(*model, prompt_text, ids);

    std::signal(SIGINT, on_sigint);
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    int64_t n = 0;
    auto on_token = [&](int32_t token, std::string_view text) {
      if (token >= 0) ++n;
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fflush(stdout);
      if (g_interrupted || (cancel_after >= 0 && n >= cancel_after)) return false;
      return timeout_ms <= 0 || std::chrono::steady_clock::now() < deadline;
    };
    const runnel::FinishReason end = stream(*model, prompt, sampling, stop, on_token);
    std::printf("\n");
    std::fflush(stdout);
    std::fprintf(stderr, "[%lld tokens after a %zu-token prompt; %s]\n",
                 static_cast<long long>(n), prompt.size(),
                 runnel::to_string(end));
  } catch (const runnel::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {  // std::stol and friends on bad numbers
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  return 0;
}
