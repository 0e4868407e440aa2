// runnel: the command-line interface.
#include <fmt/core.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <map>

#include "command.hpp"
#include "runnel/runnel.hpp"

namespace runnel::cli {

std::vector<RegisteredCommand>& registry() {
  static std::vector<RegisteredCommand> r;
  return r;
}

Command::Command(std::string name, Setup setup) {
  registry().push_back({std::move(name), std::move(setup)});
}

}  // namespace runnel::cli

int main(int argc, char** argv) {
  using namespace runnel;
  CLI::App app{"runnel: LLM inference for OPT, LLaMA and BLOOM on CPU and GPU", "runnel"};
  app.require_subcommand(0, 1);
  bool show_version = false;
  app.add_flag("--version", show_version, "Print the version, the compiled backends and the CPU ISA");

  auto& cmds = cli::registry();
  std::sort(cmds.begin(), cmds.end(), [](auto& a, auto& b) { return a.name < b.name; });
  std::map<CLI::App*, std::function<int()>> runners;
  for (auto& c : cmds) {
    CLI::App* sub = app.add_subcommand(c.name);
    runners[sub] = c.setup(*sub);
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // One clear line and exit code 2 for bad flags.
    std::fprintf(stderr, "runnel: %s\n", e.what());
    std::fprintf(stderr, "Run 'runnel --help' (or 'runnel <command> --help') for usage.\n");
    return 2;
  }

  try {
    if (show_version) {
      std::fputs(version_string().c_str(), stdout);
      return 0;
    }
    for (auto& [sub, run] : runners)
      if (sub->parsed()) return run();
    std::fputs(app.help().c_str(), stdout);
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "runnel: error: %s\n", e.what());
    return 2;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "runnel: error: out of memory\n");
    return 3;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "runnel: internal error: %s\n", e.what());
    return 1;
  }
}
