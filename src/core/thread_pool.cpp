#include "runnel/thread_pool.hpp"

#include <sched.h>

#include <string>

#include "runnel/error.hpp"

#if defined(__x86_64__)
#include <immintrin.h>
#define RUNNEL_PAUSE() _mm_pause()
#else
#define RUNNEL_PAUSE() ((void)0)
#endif

namespace runnel {
namespace {
// Spin iterations before a worker sleeps (about 100 us on current x86 cores):
// long enough to bridge the gaps between ops of one decode step, short enough
// not to compete with oneDNN's OpenMP threads for long.
constexpr int kSpinIterations = 2000;
}  // namespace

int ThreadPool::hardware_threads() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  const unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? static_cast<int>(n) : 1;
}

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads) {
  if (n_threads < 1 || n_threads > 1024)
    throw Error("--threads: " + std::to_string(n_threads) + " is outside 1..1024");
  threads_.reserve(static_cast<size_t>(n_threads - 1));
  for (int i = 1; i < n_threads; ++i) threads_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  for (auto& t : threads_) t.join();
}

void ThreadPool::run_erased(Thunk thunk, void* ctx) {
  thunk_ = thunk;
  ctx_ = ctx;
  pending_.store(n_threads_ - 1, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  thunk(ctx, 0, n_threads_);
  int spins = 0;
  while (pending_.load(std::memory_order_acquire) != 0) {
    if (++spins < kSpinIterations * 16) {
      RUNNEL_PAUSE();
    } else {
      std::this_thread::yield();
    }
  }
}

void ThreadPool::worker_loop(int index) {
  uint32_t seen = generation_.load(std::memory_order_acquire);
  for (;;) {
    uint32_t now = seen;
    for (int i = 0; i < kSpinIterations; ++i) {
      now = generation_.load(std::memory_order_acquire);
      if (now != seen) break;
      RUNNEL_PAUSE();
    }
    while (now == seen) {
      generation_.wait(seen, std::memory_order_acquire);
      now = generation_.load(std::memory_order_acquire);
    }
    seen = now;
    if (stop_.load(std::memory_order_relaxed)) return;
    thunk_(ctx_, index, n_threads_);
    pending_.fetch_sub(1, std::memory_order_release);
  }
}

}  // namespace runnel
