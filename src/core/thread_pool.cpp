#include "runnel/thread_pool.hpp"

#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>

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

// Sleeps while *addr == expected (the kernel checks atomically).
void futex_wait(std::atomic<uint32_t>* addr, uint32_t expected) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(addr), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
}
void futex_wake_all(std::atomic<uint32_t>* addr) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(addr), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
}
static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t));
}  // namespace

void ThreadPool::wake() {
  // Workers announce themselves in sleepers_ before sleeping; with sequentially
  // consistent order either we see them here or they see the new generation.
  if (sleepers_.load(std::memory_order_seq_cst) > 0) futex_wake_all(&generation_);
}

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
  generation_.fetch_add(1, std::memory_order_seq_cst);
  futex_wake_all(&generation_);
  for (auto& t : threads_) t.join();
}

void ThreadPool::run_erased(Thunk thunk, void* ctx) {
  thunk_ = thunk;
  ctx_ = ctx;
  pending_.store(n_threads_ - 1, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_seq_cst);
  wake();
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
  // Workers start before any job is posted, so the generation they have seen
  // is the initial one, even if a job is posted before this thread runs.
  uint32_t seen = 0;
  for (;;) {
    uint32_t now = seen;
    for (int i = 0; i < kSpinIterations; ++i) {
      now = generation_.load(std::memory_order_acquire);
      if (now != seen) break;
      RUNNEL_PAUSE();
    }
    while (now == seen) {
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      if (generation_.load(std::memory_order_seq_cst) == seen) futex_wait(&generation_, seen);
      sleepers_.fetch_sub(1, std::memory_order_relaxed);
      now = generation_.load(std::memory_order_acquire);
    }
    seen = now;
    if (stop_.load(std::memory_order_relaxed)) return;
    thunk_(ctx_, index, n_threads_);
    pending_.fetch_sub(1, std::memory_order_release);
  }
}

}  // namespace runnel
