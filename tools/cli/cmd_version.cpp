// runnel version: the same text as `runnel --version`.
#include <cstdio>

#include "command.hpp"
#include "runnel/runnel.hpp"

namespace runnel::cli {
namespace {

const Command version_cmd("version", [](CLI::App& app) {
  app.description("Print the version, the compiled backends and the CPU ISA");
  return [] {
    std::fputs(version_string().c_str(), stdout);
    return 0;
  };
});

}  // namespace
}  // namespace runnel::cli
