#pragma once
// Subcommands register themselves: each tools/cli/cmd_<name>.cpp defines a
// static Command object.  main() adds them to CLI11 in name order.
#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace runnel::cli {

struct Command {
  // Adds the subcommand and its options to `app`; returns a function that runs
  // it (after parsing) and returns the exit code.
  using Setup = std::function<std::function<int()>(CLI::App& app)>;
  Command(std::string name, Setup setup);
};

struct RegisteredCommand {
  std::string name;
  Command::Setup setup;
};
std::vector<RegisteredCommand>& registry();

}  // namespace runnel::cli
