// Per-worker-thread counters, named exactly as memcached's `stats` prints
// them. Each worker owns one ThreadStats and is its only writer, so counting
// is a relaxed load+store on a cache line no other thread writes (no lock, no
// atomic read-modify-write on the hot path); the `stats` command sums all
// workers' copies with relaxed loads.
//
// Thread-safety: add() only from the owning thread; load() from any thread.
#ifndef FTM_SRC_STATS_H_
#define FTM_SRC_STATS_H_

#include <atomic>
#include <cstdint>
#include <string_view>

namespace ftm {

// One counter written by a single thread.
class Counter {
 public:
  void add(uint64_t n = 1) { v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  uint64_t load() const { return v_.load(std::memory_order_relaxed); }
  void reset() { v_.store(0, std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

// X-macro list: name as printed by `stats`. Order follows memcached 1.6's
// server_stats()/threadlocal_stats_aggregate output.
#define FTM_THREAD_STATS(X) \
  X(cmd_get)                \
  X(cmd_set)                \
  X(cmd_flush)              \
  X(cmd_touch)              \
  X(cmd_meta)               \
  X(get_hits)               \
  X(get_misses)             \
  X(get_expired)            \
  X(get_flushed)            \
  X(delete_misses)          \
  X(delete_hits)            \
  X(incr_misses)            \
  X(incr_hits)              \
  X(decr_misses)            \
  X(decr_hits)              \
  X(cas_misses)             \
  X(cas_hits)               \
  X(cas_badval)             \
  X(touch_hits)             \
  X(touch_misses)           \
  X(store_too_large)        \
  X(store_no_memory)        \
  X(auth_cmds)              \
  X(auth_errors)            \
  X(bytes_read)             \
  X(bytes_written)          \
  X(conn_yields)

struct alignas(64) ThreadStats {
#define FTM_DECLARE_COUNTER(name) Counter name;
  FTM_THREAD_STATS(FTM_DECLARE_COUNTER)
#undef FTM_DECLARE_COUNTER

  // Calls fn(name, value) for every counter, in `stats` order.
  template <class F>
  void for_each(F&& fn) const {
#define FTM_VISIT_COUNTER(name) fn(std::string_view(#name), name.load());
    FTM_THREAD_STATS(FTM_VISIT_COUNTER)
#undef FTM_VISIT_COUNTER
  }

  // "stats reset".
  void reset() {
#define FTM_RESET_COUNTER(name) name.reset();
    FTM_THREAD_STATS(FTM_RESET_COUNTER)
#undef FTM_RESET_COUNTER
  }
};

}  // namespace ftm

#endif  // FTM_SRC_STATS_H_
