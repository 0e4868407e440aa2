// runnel: the command-line interface.
#include <fmt/core.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cstdio>
#include <exception>
#include <map>
#include <string>
#include <vector>

#include "command.hpp"
#include "llama_flags.hpp"
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

  std::vector<std::string> args(argv + 1, argv + argc);
  // The subcommand is the first word that is neither a flag nor the value of
  // --log-level.  An unknown one is an error, not the main help.
  CLI::App* sub = nullptr;
  size_t sub_at = args.size();
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--log-level") {
      ++i;
      continue;
    }
    if (!a.empty() && a[0] == '-') continue;
    for (CLI::App* c : app.get_subcommands({}))
      if (c->get_name() == a) sub = c;
    if (!sub) {
      std::string names;
      for (auto& c : cmds) names += (names.empty() ? "" : ", ") + c.name;
      std::fprintf(stderr, "runnel: error: unknown command '%s' (commands: %s; see 'runnel --help')\n",
                   a.c_str(), names.c_str());
      return 2;
    }
    sub_at = i;
    break;
  }
  const std::string help_hint =
      sub ? "see 'runnel " + sub->get_name() + " --help'" : std::string("see 'runnel --help'");
  try {
    if (sub) {
      std::vector<std::string> rest(args.begin() + std::ptrdiff_t(sub_at) + 1, args.end());
      cli::translate_args(rest, app, sub);
      args.resize(sub_at + 1);
      args.insert(args.end(), rest.begin(), rest.end());
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "runnel: error: %s\n", e.what());
    return 2;
  }
  std::reverse(args.begin(), args.end());  // CLI11 takes the arguments in reverse order

  try {
    app.parse(args);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // One line, in the format of every other error, and exit code 2.
    std::string msg = e.what();
    std::replace(msg.begin(), msg.end(), '\n', ' ');
    std::fprintf(stderr, "runnel: error: %s (%s)\n", msg.c_str(), help_hint.c_str());
    return 2;
  } catch (const Error& e) {
    std::fprintf(stderr, "runnel: error: %s\n", e.what());
    return 2;
  }

  try {
    cli::set_log_level(cli::parse_log_level(log_level));
    if (show_version) {
      std::fputs(version_string().c_str(), stdout);
      return 0;
    }
    int code = 0;
    bool ran = false;
    for (auto& [s, run] : runners)
      if (s->parsed()) {
        cli::check_refused(*s);
        code = run();
        ran = true;
        break;
      }
    if (!ran) std::fputs(app.help().c_str(), stdout);
    // Output that could not be written is an error, not a silent success.
    errno = 0;
    if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
      std::fprintf(stderr, "runnel: error: cannot write the output (stdout)%s%s\n",
                   errno ? ": " : "", errno ? std::strerror(errno) : "");
      return 1;
    }
    return code;
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
