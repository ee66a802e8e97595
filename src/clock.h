// Server clock in memcached's terms: "relative time" is whole seconds since
// the process started (rel_time_t in memcached's memcached.h), so item
// timestamps fit in 32 bits. One timer ticks it once a second; every other
// thread only reads it (a relaxed atomic load: no lock on the hot path).
//
// Thread-safety: safe for concurrent use.
#ifndef FTM_SRC_CLOCK_H_
#define FTM_SRC_CLOCK_H_

#include <cstdint>
#include <ctime>

namespace ftm {

// Seconds since process start; 0 is never a valid item time.
using rel_time_t = uint32_t;

// Largest relative exptime, in seconds (30 days): larger values are absolute
// unix times (protocol.txt, "Storage commands": exptime).
inline constexpr int64_t kRealtimeMaxDelta = 60 * 60 * 24 * 30;

namespace clock {

// Starts the clock: process_started is set a little in the past, as memcached
// does, so that rel_time 0 never occurs. Call once before any other function.
void init();

// Re-reads the wall clock and updates now(). Called once per second by the
// server's timer, and by tests to move time forward (see set_offset_for_test).
void tick();

// Current relative time in seconds.
rel_time_t now();

// Unix time (seconds) at which the process clock started.
time_t process_started();

// Converts a protocol exptime (seconds) to relative time, following
// protocol.txt: 0 = never expires (returns 0); 1..30 days = relative to now;
// larger = absolute unix time (at or before process start: returns 1, i.e.
// already expired); negative = already expired (returns 1), as memcached 1.6.
rel_time_t realtime(int64_t exptime);

// Converts a relative time back to unix seconds (for "t" meta flag, stats).
time_t to_unix(rel_time_t t);

// Test hook: adds `seconds` to every later reading of the wall clock, then
// ticks. Lets unit tests expire items without sleeping.
void set_offset_for_test(int64_t seconds);

}  // namespace clock
}  // namespace ftm

#endif  // FTM_SRC_CLOCK_H_
