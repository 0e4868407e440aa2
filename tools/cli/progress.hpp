#pragma once
// Console helpers shared by the subcommands: the global --log-level and a
// load progress bar on stderr.
#include <functional>
#include <string>
#include <string_view>

namespace runnel::cli {

enum class LogLevel : int { Error = 0, Warn = 1, Info = 2, Debug = 3 };

// Set once by main() from --log-level (default Info).
LogLevel log_level();
void set_log_level(LogLevel level);
// Parses "error", "warn", "info", "debug"; throws runnel::Error otherwise.
LogLevel parse_log_level(std::string_view s);
inline bool log_enabled(LogLevel level) { return int(log_level()) >= int(level); }

// A one-line bar redrawn with '\r' on stderr:  "loading  [=====>    ]  52%".
// Draws only when enabled (by default: stderr is a terminal and the log level
// is at least Info), so logs and pipes never see it.  Redraws only when the
// shown percentage changes; the line is ended at 100% or on destruction.
class ProgressBar {
 public:
  explicit ProgressBar(std::string label);
  ProgressBar(std::string label, bool enabled);
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  void update(double fraction);  // clamped to [0, 1]; NaN is ignored
  void finish();                 // ends the line if anything was drawn
  bool enabled() const { return enabled_; }
  // A callback for LoadOptions::progress / RandomOptions::progress that
  // forwards to update(); the bar must outlive the load.
  std::function<void(double)> callback();

 private:
  std::string label_;
  bool enabled_;
  bool drawn_ = false;
  bool done_ = false;
  int shown_ = -1;  // percentage last drawn
};

// True when stderr is a terminal.
bool stderr_is_tty();

}  // namespace runnel::cli
