#pragma once
// A persistent pool of worker threads.  The calling thread is worker 0, so a
// pool of size n starts n - 1 threads.  Idle workers spin briefly, then sleep
// on a futex, so they do not compete with oneDNN's OpenMP threads.
// Functions run on the pool must not throw.
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

namespace runnel {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Runs fn(thread_index, n_threads) on every worker and waits for all.
  template <class F>
  void run(F&& fn) {
    if (n_threads_ == 1) {
      fn(0, 1);
      return;
    }
    run_erased(&invoke<std::remove_reference_t<F>>, &fn);
  }

  // Splits [0, n) into one contiguous chunk per worker, each a multiple of
  // `grain` (except the last), and calls fn(begin, end) for non-empty chunks.
  template <class F>
  void parallel_for(int64_t n, int64_t grain, F&& fn) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    const int64_t blocks = (n + grain - 1) / grain;
    const int nt = static_cast<int>(blocks < n_threads_ ? blocks : n_threads_);
    if (nt <= 1) {
      fn(int64_t{0}, n);
      return;
    }
    run([&](int t, int) {
      if (t >= nt) return;
      const int64_t b0 = blocks * t / nt, b1 = blocks * (t + 1) / nt;
      const int64_t b = b0 * grain, e = b1 * grain < n ? b1 * grain : n;
      if (b < e) fn(b, e);
    });
  }

  // Number of hardware threads this process may use (sched affinity).
  static int hardware_threads();

 private:
  using Thunk = void (*)(void* ctx, int t, int n);
  template <class F>
  static void invoke(void* ctx, int t, int n) {
    (*static_cast<F*>(ctx))(t, n);
  }
  void run_erased(Thunk thunk, void* ctx);
  void worker_loop(int index);
  void wake();

  int n_threads_;
  std::vector<std::thread> threads_;
  alignas(64) std::atomic<uint32_t> generation_{0};
  alignas(64) std::atomic<int> pending_{0};
  std::atomic<int> sleepers_{0};
  Thunk thunk_ = nullptr;
  void* ctx_ = nullptr;
  std::atomic<bool> stop_{false};
};

}  // namespace runnel
