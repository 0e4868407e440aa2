// Streams a continuation of a prompt, token by token:
//
//   generate MODEL [--tokenizer PATH] [-n N] [--temp T] [--seed S] [--stop STRING]
//            [--timeout-ms MS] [--cancel-after N] (PROMPT | --ids 1,2,3)
//
// MODEL is a Hugging Face folder, a GGUF file or a llama2.c checkpoint (the
// format is detected).  The loop is the whole of generation: prefill the prompt
// into a Sequence, then sample, detokenize, check the stop conditions and
// decode the next token.  Ctrl-C, --timeout-ms or --cancel-after cancel it
// through the callback given to stream(); the text so far is kept.
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
#include <runnel/tokenizer.hpp>

#include "common.hpp"

namespace {

std::atomic<bool> g_interrupted{false};
extern "C" void on_sigint(int) { g_interrupted = true; }

enum class End { Stopped, Cancelled };

// Called with each new token and the text that is safe to print now; return
// false to cancel.
using OnToken = std::function<bool(int32_t token, std::string_view text)>;

// Generates after `prompt` until a stop condition or the callback says stop.
// Returns how generation ended; `reason` says which stop condition fired.
End stream(runnel::Model& model, const std::vector<int32_t>& prompt,
           const runnel::SamplerOptions& sampling, const runnel::StopOptions& stop,
           const OnToken& on_token, runnel::StopReason& reason) {
  const runnel::Tokenizer* tok = model.tokenizer();
  runnel::Sampler sampler = runnel::make_sampler(sampling);
  runnel::StopCondition stopper(stop);
  std::optional<runnel::StreamDecoder> decoder;
  if (tok) {
    decoder.emplace(*tok, /*skip_special=*/true);
    for (int32_t id : prompt) decoder->push(id);  // context for the first piece's spacing
  }
  for (int32_t id : prompt) sampler.accept(id);  // repetition penalties see the prompt

  runnel::Sequence seq(model);
  std::vector<float> logits = seq.prefill(prompt);  // [vocab]
  const int64_t context = model.config().max_positions;
  for (;;) {
    const int32_t id = sampler.sample(logits);
    const std::string piece = decoder ? decoder->push(id) : std::to_string(id) + " ";
    const runnel::StopCondition::Step step = stopper.push(id, piece);
    if (!on_token(id, step.text)) return End::Cancelled;
    if (step.stop != runnel::StopReason::None) {
      reason = step.stop;
      // A partial UTF-8 character held by the decoder is shown as U+FFFD.
      if (reason == runnel::StopReason::MaxTokens && decoder) on_token(-1, decoder->flush());
      return End::Stopped;
    }
    if (context > 0 && seq.n_past() >= context) break;  // the context is full
    logits = seq.decode(id);
  }
  // Stopped for a reason StopCondition does not see: release held-back text.
  std::string rest = stopper.flush();
  if (decoder) rest += decoder->flush();
  on_token(-1, rest);
  reason = runnel::StopReason::MaxTokens;
  return End::Stopped;
}

const char* reason_name(runnel::StopReason r) {
  switch (r) {
    case runnel::StopReason::Eos: return "eos";
    case runnel::StopReason::StopString: return "stop string";
    case runnel::StopReason::MaxTokens: return "max tokens";
    default: return "none";
  }
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

    // Stop at the model's end-of-sequence tokens (config and tokenizer).
    stop.eos_ids = model->config().eos_ids;
    if (const runnel::Tokenizer* tok = model->tokenizer(); tok && tok->eos_id() >= 0)
      stop.eos_ids.push_back(tok->eos_id());

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
    runnel::StopReason reason = runnel::StopReason::None;
    const End end = stream(*model, prompt, sampling, stop, on_token, reason);
    std::printf("\n");
    std::fflush(stdout);
    std::fprintf(stderr, "[%lld tokens after a %zu-token prompt; %s]\n",
                 static_cast<long long>(n), prompt.size(),
                 end == End::Cancelled ? "cancelled" : reason_name(reason));
  } catch (const runnel::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {  // std::stol and friends on bad numbers
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  return 0;
}
