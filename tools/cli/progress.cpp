#include "progress.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "runnel/error.hpp"

namespace runnel::cli {
namespace {
LogLevel g_level = LogLevel::Info;
}  // namespace

LogLevel log_level() { return g_level; }
void set_log_level(LogLevel level) { g_level = level; }

LogLevel parse_log_level(std::string_view s) {
  if (s == "error") return LogLevel::Error;
  if (s == "warn" || s == "warning") return LogLevel::Warn;
  if (s == "info") return LogLevel::Info;
  if (s == "debug") return LogLevel::Debug;
  throw Error("--log-level: expected error, warn, info or debug, got \"" + std::string(s) + "\"");
}

bool stderr_is_tty() { return ::isatty(STDERR_FILENO) == 1; }

ProgressBar::ProgressBar(std::string label)
    : ProgressBar(std::move(label), stderr_is_tty() && log_enabled(LogLevel::Info)) {}

ProgressBar::ProgressBar(std::string label, bool enabled)
    : label_(std::move(label)), enabled_(enabled) {}

ProgressBar::~ProgressBar() { finish(); }

void ProgressBar::update(double fraction) {
  if (!enabled_ || done_ || std::isnan(fraction)) return;
  fraction = std::clamp(fraction, 0.0, 1.0);
  const int pct = int(std::floor(fraction * 100.0));
  if (pct == shown_) return;
  shown_ = pct;
  constexpr int kWidth = 30;
  const int fill = int(fraction * kWidth);
  char bar[kWidth + 1];
  for (int i = 0; i < kWidth; ++i) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
  bar[kWidth] = '\0';
  std::fprintf(stderr, "\r%s [%s] %3d%%", label_.c_str(), bar, pct);
  std::fflush(stderr);
  drawn_ = true;
  if (pct == 100) finish();
}

void ProgressBar::finish() {
  if (done_) return;
  done_ = true;
  if (drawn_) {
    std::fputc('\n', stderr);
    std::fflush(stderr);
  }
}

std::function<void(double)> ProgressBar::callback() {
  if (!enabled_) return {};
  return [this](double f) { update(f); };
}

}  // namespace runnel::cli
