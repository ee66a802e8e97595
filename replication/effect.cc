#include "replication/effect.h"

#include <xxhash.h>

#include <cassert>
#include <cstring>

#include "replication/wire_bytes.h"
#include "src/store.h"

namespace ftm::repl {
namespace {

constexpr size_t kOffLength = 0;
constexpr size_t kOffKind = 4;
constexpr size_t kOffKeyLen = 5;
constexpr size_t kOffPartition = 6;
constexpr size_t kOffLsn = 8;
constexpr size_t kOffEpoch = 16;
constexpr size_t kOffCas = 24;
constexpr size_t kOffExptime = 32;
constexpr size_t kOffFlags = 40;
constexpr size_t kOffValueLen = 44;

// The kind byte: EffectKind in the low nibble, a kItem's meta state in the
// high one (the item bits themselves are spread over a byte: src/store.h).
constexpr uint8_t kWireKindMask = 0x0f;
constexpr uint8_t kWireStale = 0x10;
constexpr uint8_t kWireTokenSent = 0x20;
constexpr uint8_t kWireKeyBinary = 0x40;
constexpr uint8_t kWireItemBits = kWireStale | kWireTokenSent | kWireKeyBinary;

uint8_t item_bits_to_wire(uint8_t bits) {
  return ((bits & kItemStale) ? kWireStale : 0) | ((bits & kItemTokenSent) ? kWireTokenSent : 0) |
         ((bits & kItemKeyBinary) ? kWireKeyBinary : 0);
}
uint8_t item_bits_from_wire(uint8_t wire) {
  return ((wire & kWireStale) ? kItemStale : 0) | ((wire & kWireTokenSent) ? kItemTokenSent : 0) |
         ((wire & kWireKeyBinary) ? kItemKeyBinary : 0);
}

using wire::align8;
using wire::get;
using wire::put;

// The ring is written by the fabric (another thread, or a NIC) while the
// applier polls it: the fields a poll looks at first are read with atomic
// loads so the compiler re-reads them on every poll and orders the checksum
// pass after them.
uint32_t load_length(const std::byte* p) {
  return __atomic_load_n(reinterpret_cast<const uint32_t*>(p + kOffLength),
                         __ATOMIC_ACQUIRE);
}
uint64_t load_lsn(const std::byte* p) {
  return __atomic_load_n(reinterpret_cast<const uint64_t*>(p + kOffLsn),
                         __ATOMIC_ACQUIRE);
}

uint64_t checksum(const std::byte* p, size_t length, uint64_t seed) {
  return XXH3_64bits_withSeed(p, length - kEntryTrailerSize, seed);
}

}  // namespace

size_t encoded_size(const Effect& e) {
  return align8(kEntryHeaderSize + e.key.size() + e.value.size()) +
         kEntryTrailerSize;
}

size_t encode(const Effect& e, uint64_t lsn, uint64_t seed,
              std::span<std::byte> out) {
  const size_t n = encoded_size(e);
  assert(out.size() >= n);
  assert(e.key.size() <= kMaxEffectKey);
  assert(reinterpret_cast<uintptr_t>(out.data()) % kEntryAlign == 0);
  std::byte* p = out.data();
  put<uint32_t>(p, kOffLength, static_cast<uint32_t>(n));
  put<uint8_t>(p, kOffKind, static_cast<uint8_t>(static_cast<uint8_t>(e.kind) |
                                                 (e.kind == EffectKind::kItem
                                                      ? item_bits_to_wire(e.item_bits)
                                                      : 0)));
  put<uint8_t>(p, kOffKeyLen, static_cast<uint8_t>(e.key.size()));
  put<uint16_t>(p, kOffPartition, e.partition);
  put<uint64_t>(p, kOffLsn, lsn);
  put<uint64_t>(p, kOffEpoch, e.epoch);
  put<uint64_t>(p, kOffCas, e.cas);
  put<int64_t>(p, kOffExptime, e.exptime);
  put<uint32_t>(p, kOffFlags, e.client_flags);
  put<uint32_t>(p, kOffValueLen, static_cast<uint32_t>(e.value.size()));
  std::byte* body = p + kEntryHeaderSize;
  if (!e.key.empty()) std::memcpy(body, e.key.data(), e.key.size());
  if (!e.value.empty()) std::memcpy(body + e.key.size(), e.value.data(), e.value.size());
  // Zero the padding: the checksum covers it, and stale bytes there would
  // make two encodings of one effect differ.
  size_t used = kEntryHeaderSize + e.key.size() + e.value.size();
  std::memset(p + used, 0, n - kEntryTrailerSize - used);
  put<uint64_t>(p, n - kEntryTrailerSize, checksum(p, n, seed));
  return n;
}

size_t encode_skip(uint64_t length, uint64_t lsn, uint64_t seed,
                   std::span<std::byte> out) {
  assert(length >= kMinEntrySize && length % kEntryAlign == 0);
  assert(out.size() >= length);
  std::byte* p = out.data();
  std::memset(p, 0, kEntryHeaderSize);
  put<uint32_t>(p, kOffLength, static_cast<uint32_t>(length));
  put<uint8_t>(p, kOffKind, static_cast<uint8_t>(EffectKind::kSkip));
  put<uint64_t>(p, kOffLsn, lsn);
  // A skip marker's checksum covers only its header: the bytes up to the
  // ring's end are never written, so they cannot be part of it. The trailer
  // sits right after the header, whatever the marker's length.
  put<uint64_t>(p, kEntryHeaderSize,
                XXH3_64bits_withSeed(p, kEntryHeaderSize, seed));
  return length;
}

const char* decode_result_name(DecodeResult r) {
  switch (r) {
    case DecodeResult::kOk: return "ok";
    case DecodeResult::kSkip: return "skip";
    case DecodeResult::kBadLength: return "bad_length";
    case DecodeResult::kWrongLsn: return "wrong_lsn";
    case DecodeResult::kBadChecksum: return "bad_checksum";
    case DecodeResult::kMalformed: return "malformed";
  }
  return "?";
}

DecodeResult decode(std::span<const std::byte> in, uint64_t expected_lsn,
                    uint64_t seed, Effect* out, size_t* length) {
  if (in.size() < kMinEntrySize) return DecodeResult::kBadLength;
  const std::byte* p = in.data();
  const uint64_t lsn = load_lsn(p);
  if (lsn != expected_lsn) return DecodeResult::kWrongLsn;
  const uint32_t n = load_length(p);
  if (n < kMinEntrySize || n % kEntryAlign != 0 || n > in.size())
    return DecodeResult::kBadLength;
  const uint8_t kind_byte = get<uint8_t>(p, kOffKind);
  const auto kind = static_cast<EffectKind>(kind_byte & kWireKindMask);
  if (kind_byte == static_cast<uint8_t>(EffectKind::kSkip)) {
    if (get<uint64_t>(p, kEntryHeaderSize) !=
        XXH3_64bits_withSeed(p, kEntryHeaderSize, seed))
      return DecodeResult::kBadChecksum;
    // The lsn was read before the checksum pass; re-check it was not a
    // different, still-landing header we summed.
    if (load_lsn(p) != expected_lsn) return DecodeResult::kWrongLsn;
    *length = n;
    return DecodeResult::kSkip;
  }
  if (get<uint64_t>(p, n - kEntryTrailerSize) != checksum(p, n, seed))
    return DecodeResult::kBadChecksum;
  const size_t key_len = get<uint8_t>(p, kOffKeyLen);
  const size_t value_len = get<uint32_t>(p, kOffValueLen);
  if (kind != EffectKind::kItem && kind != EffectKind::kTombstone &&
      kind != EffectKind::kFlushAll)
    return DecodeResult::kMalformed;
  const uint8_t wire_bits = kind_byte & ~kWireKindMask;
  if ((wire_bits & ~kWireItemBits) != 0 || (wire_bits != 0 && kind != EffectKind::kItem))
    return DecodeResult::kMalformed;
  if (key_len > kMaxEffectKey ||
      align8(kEntryHeaderSize + key_len + value_len) + kEntryTrailerSize != n)
    return DecodeResult::kMalformed;
  out->kind = kind;
  out->partition = get<uint16_t>(p, kOffPartition);
  out->lsn = lsn;
  out->epoch = get<uint64_t>(p, kOffEpoch);
  out->cas = get<uint64_t>(p, kOffCas);
  out->exptime = get<int64_t>(p, kOffExptime);
  out->client_flags = get<uint32_t>(p, kOffFlags);
  out->item_bits = item_bits_from_wire(wire_bits);
  const char* body = reinterpret_cast<const char*>(p + kEntryHeaderSize);
  out->key = std::string_view(body, key_len);
  out->value = std::string_view(body + key_len, value_len);
  *length = n;
  return DecodeResult::kOk;
}

}  // namespace ftm::repl
