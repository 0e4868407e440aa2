// runnel: the command-line interface.
#include <fmt/core.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <map>
#include <string>
#include <vector>

#include "command.hpp"
#include "progress.hpp"
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
  app.add_flag("--version", show_version,
               "Print the version, the compiled backends and the CPU ISA");
  std::string log_level = "info";
  app.add_option("--log-level", log_level,
                 "What goes to stderr: error, warn, info (timing lines, the load progress bar) "
                 "or debug (also the sampler chain and settings); may follow the subcommand")
      ->check(CLI::IsMember({"error", "warn", "warning", "info", "debug"}))
      ->capture_default_str();
  // Options of the top level (--log-level) may also follow the subcommand.
  app.fallthrough();

  auto& cmds = cli::registry();
  std::sort(cmds.begin(), cmds.end(), [](auto& a, auto& b) { return a.name < b.name; });
  std::map<CLI::App*, std::function<int()>> runners;
  for (auto& c : cmds) {
    CLI::App* sub = app.add_subcommand(c.name);
    runners[sub] = c.setup(*sub);
  }

  // llama.cpp's multi-letter single-dash spelling of chat's --system, which
  // CLI11 cannot declare.
  std::vector<std::string> args(argv + 1, argv + argc);
  const bool chat = std::find(args.begin(), args.end(), "chat") != args.end();
  for (std::string& a : args) {
    if (!chat) break;
    if (a == "-sys")
      a = "--system";
    else if (a.rfind("-sys=", 0) == 0)
      a = "--system=" + a.substr(5);
  }
  std::reverse(args.begin(), args.end());  // CLI11 takes the arguments in reverse order

  try {
    app.parse(args);
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
    cli::set_log_level(cli::parse_log_level(log_level));
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
