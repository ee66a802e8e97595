// The effect record: what a primary ships to its secondaries for every
// mutation (DESIGN.md, "Data path" step 4). Effects, not commands, are
// replicated, so the cas unique, incr result and expiry are identical on
// every replica: the secondary links exactly the item the primary linked.
//
// An effect is encoded as one self-validating entry of the replication log
// ring (replication/log_ring.h). DARE (Poke and Hoefler, HPDC 2015, the log
// replication part of "normal operation") writes log entries straight into
// the remote log with one-sided RDMA writes and lets the remote side find
// them by scanning; the reader must then tell a complete entry from one still
// landing, or from a stale one of an earlier lap. A trailing "valid" marker
// would rely on the bytes of one write landing in order, which RDMA does not
// promise, so here the whole entry is covered by an XXH3 checksum stored last,
// seeded with the ring's incarnation, and checked together with the expected
// log sequence number:
//   - a half-landed entry fails the checksum (retry later);
//   - a stale entry from an earlier lap carries a smaller lsn;
//   - an entry left in memory by an earlier incarnation of the ring fails
//     the checksum because the seed differs.
//
// Wire form (little-endian host order; every entry 8-byte aligned, its
// length a multiple of 8):
//   0  u32 length        whole entry: header + key + value + pad + checksum
//   4  u8  kind          low 4 bits: EffectKind (kSkip = padding marker
//                        before a wrap); high 4 bits, kItem only: the
//                        item's meta state (kWireStale 0x10, kWireTokenSent
//                        0x20, kWireKeyBinary 0x40; see Effect::item_bits)
//   5  u8  key_len       <= kKeyMaxLength (250)
//   6  u16 partition
//   8  u64 lsn           log sequence number, +1 per entry of one ring
//   16 u64 epoch         partition map epoch of the primary
//   24 u64 cas           cas unique of the linked item
//   32 i64 exptime       ABSOLUTE unix seconds, 0 = never (relative times
//                        differ per process: each server's clock starts at
//                        its own process start)
//   40 u32 client_flags
//   44 u32 value_len
//   48 key, value, zero padding to a multiple of 8
//   length-8  u64 XXH3_64bits_withSeed(entry[0, length-8), seed)
//
// Thread-safety: plain functions on caller-owned buffers; safe for
// concurrent use on distinct buffers.
#ifndef FTM_REPLICATION_EFFECT_H_
#define FTM_REPLICATION_EFFECT_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace ftm::repl {

enum class EffectKind : uint8_t {
  kItem = 1,       // link this item (set, add, cas, incr, touch... result)
  kTombstone = 2,  // the key is gone (delete, meta delete)
  kFlushAll = 3,   // flush_all; exptime = its absolute deadline (0 = now);
                   // with client_flags = kFlushSplit: see below
  kSkip = 4,       // ring padding: the next entry starts at ring offset 0
};

// A view of one effect. Borrowed bytes (key, value) must outlive the call
// they are passed to; decode() returns views into the ring.
struct Effect {
  EffectKind kind = EffectKind::kItem;
  uint16_t partition = 0;
  uint64_t epoch = 0;
  uint64_t lsn = 0;  // assigned by LogWriter::append; ignored by encode's caller
  std::string_view key;
  uint32_t client_flags = 0;
  int64_t exptime = 0;  // absolute unix seconds; 0 = never
  uint64_t cas = 0;
  std::string_view value;
  // kItem: the item's meta state, kItemStale | kItemTokenSent |
  // kItemKeyBinary (src/store.h, kItemReplicaBits), so a promoted secondary
  // answers mg with the same X/W/Z flags and key encoding as its primary.
  uint8_t item_bits = 0;
};

// kFlushAll with client_flags == kFlushSplit: the primary's flush of one
// partition (Effect::partition) as Store::flush_partition takes it:
// exptime = oldest_live as absolute unix seconds (0 = none), cas =
// oldest_cas. The secondary applies exactly that split, so its copy (which
// carries the primary's cas values) hides exactly the items the primary's
// does. Without the flag: a whole-store flush split by time (see
// log_applier.h). kFlushByCas is added when the cas alone decides (an
// immediate flush: oldest_live is before the current second, so every item
// it hides by time also has a lower cas): the secondary then ignores
// oldest_live, because its item times are its own (clocks of different
// servers tick at different moments) and would hide items stored just
// after the flush.
inline constexpr uint32_t kFlushSplit = 1;
inline constexpr uint32_t kFlushByCas = 2;

inline constexpr size_t kEntryHeaderSize = 48;
inline constexpr size_t kEntryTrailerSize = 8;
// Smallest entry (a skip marker or an empty-key tombstone): a ring tail
// shorter than this cannot hold a skip marker, so both sides wrap there
// without one (see log_ring.h).
inline constexpr size_t kMinEntrySize = kEntryHeaderSize + kEntryTrailerSize;
inline constexpr size_t kEntryAlign = 8;  // wire::align8 (wire_bytes.h)
inline constexpr size_t kMaxEffectKey = 250;

// Bytes the encoded entry of `e` takes (a multiple of 8).
size_t encoded_size(const Effect& e);

// Encodes `e` with log sequence number `lsn` into out[0, encoded_size(e)),
// checksummed with `seed` (the ring's incarnation). REQUIRES:
// out.size() >= encoded_size(e), out 8-byte aligned, e.key.size() <= 250,
// e.value.size() < 4 GiB. Returns the bytes written. No allocation.
size_t encode(const Effect& e, uint64_t lsn, uint64_t seed,
              std::span<std::byte> out);

// Encodes a skip (padding) marker of `length` bytes (>= kMinEntrySize, a
// multiple of 8) carrying `lsn`, the sequence number of the entry that
// follows it at ring offset 0. Only the header and checksum are written; the
// bytes between are never read. Returns length.
size_t encode_skip(uint64_t length, uint64_t lsn, uint64_t seed,
                   std::span<std::byte> out);

enum class DecodeResult {
  kOk,           // a valid effect with the expected lsn (*out filled in)
  kSkip,         // a valid skip marker with the expected lsn
  kBadLength,    // length field not yet landed, misaligned or past `in`
  kWrongLsn,     // a stale entry (earlier lap) or not yet landed
  kBadChecksum,  // partly landed, corrupted, or of another incarnation
  kMalformed,    // checksum right but fields impossible (unknown kind, key
                 // longer than 250, sizes inconsistent with length)
};
const char* decode_result_name(DecodeResult r);

// Validates the entry at the start of `in` (which runs to the end of the
// readable area, e.g. the ring's end) against `expected_lsn` and `seed`.
// On kOk/kSkip, *length is the entry's length; on kOk, *out views the key
// and value inside `in`. `in` must be 8-byte aligned. Reads the length and
// lsn first and checksums only entries whose header is plausible, so a
// reader can poll it cheaply. No allocation.
DecodeResult decode(std::span<const std::byte> in, uint64_t expected_lsn,
                    uint64_t seed, Effect* out, size_t* length);

}  // namespace ftm::repl

#endif  // FTM_REPLICATION_EFFECT_H_
