// Fixed-offset fields of the replication wire formats (effect records,
// replication/effect.h; snapshots, replication/snapshot.h): host-order
// (little-endian) values at byte offsets, copied with memcpy so no offset
// has to be aligned for its type.
//
// Thread-safety: plain functions on caller-owned buffers.
#ifndef FTM_REPLICATION_WIRE_BYTES_H_
#define FTM_REPLICATION_WIRE_BYTES_H_

#include <cstddef>
#include <cstring>

namespace ftm::repl::wire {

// `n` bytes rounded up to a multiple of 8 (entries and records are 8-byte
// aligned so their u64 fields can be read in place by the ring's poller).
inline size_t align8(size_t n) { return (n + 7) & ~size_t{7}; }

// Writes `v` at p + off (sizeof v bytes).
template <class T>
void put(std::byte* p, size_t off, T v) {
  std::memcpy(p + off, &v, sizeof v);
}

// Reads a T from p + off (sizeof(T) bytes).
template <class T>
T get(const std::byte* p, size_t off) {
  T v;
  std::memcpy(&v, p + off, sizeof v);
  return v;
}

}  // namespace ftm::repl::wire

#endif  // FTM_REPLICATION_WIRE_BYTES_H_
