// libFuzzer target: the safetensors header parser, plus the llama2.c header
// parser on the same bytes.  runnel::Error is the expected result of bad input.
#include <cstddef>
#include <cstdint>

#include "runnel/error.hpp"
#include "runnel/loader.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto infos = runnel::parse_safetensors_header(data, size, "fuzz.safetensors");
    // Every accepted tensor must lie inside the input.
    for (const auto& t : infos)
      if (t.offset > size || t.nbytes > size - t.offset) __builtin_trap();
  } catch (const runnel::Error&) {
  }
  try {
    const auto h = runnel::parse_llama2c_header(data, size, "fuzz.bin");
    if (h.header_bytes + h.weight_bytes != size) __builtin_trap();
  } catch (const runnel::Error&) {
  }
  return 0;
}
