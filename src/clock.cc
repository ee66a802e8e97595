#include "src/clock.h"

#include <atomic>

namespace ftm::clock {
namespace {
std::atomic<time_t> g_started{0};
std::atomic<rel_time_t> g_now{0};
std::atomic<int64_t> g_offset{0};
// memcached starts its clock ITEM_UPDATE_INTERVAL + 2 seconds in the past so
// that no item ever gets time 0 and "fetched in the last minute" logic works.
constexpr time_t kStartSkew = 60 + 2;
}  // namespace

void init() {
  g_started.store(time(nullptr) - kStartSkew, std::memory_order_relaxed);
  tick();
}

void tick() {
  time_t wall = time(nullptr) + g_offset.load(std::memory_order_relaxed);
  g_now.store(static_cast<rel_time_t>(wall - g_started.load(std::memory_order_relaxed)),
              std::memory_order_relaxed);
}

rel_time_t now() { return g_now.load(std::memory_order_relaxed); }

time_t process_started() { return g_started.load(std::memory_order_relaxed); }

rel_time_t realtime(int64_t exptime) {
  if (exptime == 0) return 0;
  if (exptime < 0) return 1;  // memcached 1.6: negative means expired now
  if (exptime > kRealtimeMaxDelta) {
    time_t started = process_started();
    if (exptime <= started) return 1;
    return static_cast<rel_time_t>(exptime - started);
  }
  return static_cast<rel_time_t>(exptime + now());
}

time_t to_unix(rel_time_t t) { return process_started() + t; }

void set_offset_for_test(int64_t seconds) {
  g_offset.fetch_add(seconds, std::memory_order_relaxed);
  tick();
}

}  // namespace ftm::clock
