#include "runnel/version.hpp"

#include <string>

#include "cpu/kernels.hpp"
#include "runnel/backend.hpp"

namespace runnel {

const char* version() { return RUNNEL_VERSION; }

const char* cpu_isa() { return cpu::isa_name(cpu::selected_isa()); }

std::string version_string() {
  std::string s = std::string("runnel ") + RUNNEL_VERSION + "\nbackends:";
  for (const auto& b : compiled_backends()) s += " " + b;
  if (cuda_backend() == nullptr) {
#if defined(RUNNEL_WITH_CUDA)
    s += " (no CUDA device found)";
#endif
  }
  s += std::string("\ncpu isa: ") + cpu_isa() + " (supported:";
  for (int i = 0; i < cpu::kNumIsas; ++i)
    if (cpu::isa_supported(cpu::Isa(i))) s += std::string(" ") + cpu::isa_name(cpu::Isa(i));
  s += ")\n";
  return s;
}

}  // namespace runnel
