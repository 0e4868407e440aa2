// libFuzzer target: the GGUF reader and everything the loader derives from a
// file image (model config, embedded vocabulary and tokenizer, tensor views).
// runnel::Error is the expected result of bad input.
#include <cstddef>
#include <cstdint>

#include "runnel/error.hpp"
#include "runnel/gguf.hpp"
#include "runnel/tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const runnel::gguf::File f = runnel::gguf::File::parse(data, size, "fuzz.gguf");
    // Every accepted tensor lies inside the input.
    for (const auto& t : f.tensors())
      if (t.file_offset > size || t.nbytes > size - t.file_offset) __builtin_trap();
    try {
      for (const auto& t : f.tensors()) {
        const runnel::Tensor x = f.tensor(t);
        const auto* p = static_cast<const volatile uint8_t*>(x.data());
        (void)p[0];
        (void)p[x.nbytes() - 1];
      }
    } catch (const runnel::Error&) {
    }
    try {
      (void)runnel::gguf::model_config(f);
    } catch (const runnel::Error&) {
    }
    if (auto v = runnel::gguf::read_vocab(f)) {
      if (v->tokens.size() <= 4096) {
        const runnel::Tokenizer tok = runnel::Tokenizer::from_vocab(*v);
        (void)tok.encode("Hello world\n", true);
      }
    }
  } catch (const runnel::Error&) {
  }
  return 0;
}
