// libFuzzer target: config.json parsing for every family, and validation of
// whatever it accepts.  runnel::Error is the expected result of bad input.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "runnel/config.hpp"
#include "runnel/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const runnel::ModelConfig c = runnel::parse_config(text, "fuzz/config.json");
    c.validate();
    (void)c.describe();
  } catch (const runnel::Error&) {
  }
  return 0;
}
