// Fixed-offset fields of the replication wire formats (effect records,
// replication/effect.h; snapshots, replication/snapshot.h): host-order
// (little-endian) values at byte offsets, copied with memcpy so no offset
// has to be aligned for its type.
//
// Thread-safety: plain functions on caller-owned buffers.
#ifndef FTM_REPLICATION_WIRE_BYTES_H_
#define FTM_REPLICATION_WIRE_BYTES_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

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

// Appends the low `bytes` bytes of `v`, little-endian (peer RPC payloads:
// replication_manager.cc, recovery.cc).
inline void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// Reads `bytes` little-endian bytes at in[at]. REQUIRES at + bytes <= size.
inline uint64_t get_le(std::string_view in, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t{static_cast<uint8_t>(in[at + i])} << (8 * i);
  return v;
}

}  // namespace ftm::repl::wire

#endif  // FTM_REPLICATION_WIRE_BYTES_H_
