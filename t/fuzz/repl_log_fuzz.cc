// libFuzzer target for the replication log entry decoder (repl::decode in
// replication/effect.h): the bytes a secondary scans in its ring are written
// by a remote primary, can be half landed, stale from an earlier lap or of
// an earlier incarnation, and must never make the applier read outside the
// ring or accept an impossible entry.
//
// Input: byte 0 = options, bytes 1..8 = the ring's incarnation (the checksum
// seed), the rest = ring bytes, copied to an exact-size 8-byte aligned
// buffer (AddressSanitizer catches any read past it). Options:
//   bit 0  recompute each entry's checksum before decoding, so the fuzzer
//          reaches the field checks behind it (a primary's encoder with a
//          bug would produce exactly such entries);
//   bit 1  expect the lsn the first entry carries (else 1 + (byte 0 >> 2)).
// The buffer is scanned like the applier does: decode at a position, move
// past the entry, expect lsn + 1, until something other than kOk/kSkip.
// Checks: lengths are multiples of 8 inside the buffer; key and value lie
// inside the entry; encoded_size() of the decoded effect is its length; the
// decoded effect re-encodes to the same header, key, value and checksum; the
// same bytes under another seed are refused.
//
// Build and run: t/fuzz/run.sh [seconds]
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>

#include <xxhash.h>

#include "replication/effect.h"

namespace {

using ftm::repl::DecodeResult;
using ftm::repl::Effect;
using ftm::repl::kEntryHeaderSize;
using ftm::repl::kEntryTrailerSize;
using ftm::repl::kMinEntrySize;

[[noreturn]] void fail() { __builtin_trap(); }

// An exact-size, 8-byte aligned copy (the ring's alignment; ASan tracks the
// exact size, so a read past the end is caught).
struct Free {
  void operator()(std::byte* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<std::byte, Free>;
Buffer aligned_copy(const void* data, size_t n) {
  void* p = nullptr;  // not aligned_alloc: it wants n a multiple of 8
  if (posix_memalign(&p, 8, n == 0 ? 1 : n) != 0) std::abort();
  Buffer b(static_cast<std::byte*>(p));
  if (data != nullptr) std::memcpy(b.get(), data, n);
  return b;
}

template <class T>
T get(const std::byte* p, size_t off) {
  T v;
  std::memcpy(&v, p + off, sizeof v);
  return v;
}
template <class T>
void put(std::byte* p, size_t off, T v) {
  std::memcpy(p + off, &v, sizeof v);
}

// Writes the checksum the entry at p[0, rest) would need, where its length
// field makes that possible (effect.h's wire form).
void fix_checksum(std::byte* p, size_t rest, uint64_t seed) {
  if (rest < kMinEntrySize) return;
  const uint32_t n = get<uint32_t>(p, 0);
  if (get<uint8_t>(p, 4) == uint8_t(ftm::repl::EffectKind::kSkip)) {
    put(p, kEntryHeaderSize, XXH3_64bits_withSeed(p, kEntryHeaderSize, seed));
    return;
  }
  if (n < kMinEntrySize || n % 8 != 0 || n > rest) return;
  put(p, n - kEntryTrailerSize, XXH3_64bits_withSeed(p, n - kEntryTrailerSize, seed));
}

void check_effect(std::span<const std::byte> in, const Effect& e, size_t length,
                  uint64_t lsn, uint64_t seed) {
  const char* lo = reinterpret_cast<const char*>(in.data());
  const char* hi = lo + length - kEntryTrailerSize;
  if (e.key.size() > ftm::repl::kMaxEffectKey) fail();
  if (e.key.data() < lo + kEntryHeaderSize || e.key.data() + e.key.size() > hi) fail();
  if (e.value.data() < lo || e.value.data() + e.value.size() > hi) fail();
  if (e.lsn != lsn) fail();
  if (ftm::repl::encoded_size(e) != length) fail();
  // Re-encode: header, key and value identical (the padding before the
  // checksum is covered by it but never read, so it may differ).
  Buffer again = aligned_copy(nullptr, length);
  if (ftm::repl::encode(e, lsn, seed, {again.get(), length}) != length) fail();
  const size_t body = kEntryHeaderSize + e.key.size() + e.value.size();
  if (std::memcmp(again.get(), in.data(), body) != 0) fail();
  Effect e2;
  size_t len2 = 0;
  if (ftm::repl::decode({again.get(), length}, lsn, seed, &e2, &len2) !=
          DecodeResult::kOk ||
      len2 != length || e2.key != e.key || e2.value != e.value)
    fail();
  // Another incarnation's checksum: never accepted.
  if (ftm::repl::decode(in, lsn, seed + 1, &e2, &len2) == DecodeResult::kOk) fail();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 10) return 0;
  const uint8_t opts = data[0];
  uint64_t seed;
  std::memcpy(&seed, data + 1, 8);
  data += 9;
  size -= 9;
  Buffer ring = aligned_copy(data, size);

  uint64_t lsn = 1 + (opts >> 2);
  if ((opts & 2) && size >= 16) lsn = get<uint64_t>(ring.get(), 8);
  size_t pos = 0;
  for (int entries = 0; entries < 1000 && pos < size; ++entries) {
    if (opts & 1) fix_checksum(ring.get() + pos, size - pos, seed);
    std::span<const std::byte> in(ring.get() + pos, size - pos);
    Effect e;
    size_t length = 0;
    const DecodeResult r = ftm::repl::decode(in, lsn, seed, &e, &length);
    if (ftm::repl::decode_result_name(r)[0] == '?') fail();
    if (r != DecodeResult::kOk && r != DecodeResult::kSkip) break;
    if (length < kMinEntrySize || length % 8 != 0 || length > in.size()) fail();
    if (r == DecodeResult::kOk) check_effect(in, e, length, lsn, seed);
    pos += length;
    ++lsn;
  }
  return 0;
}
