#include "replication/snapshot.h"

#include <xxhash.h>

#include <cassert>
#include <cstring>

#include "replication/effect.h"
#include "replication/replica_ops.h"
#include "replication/wire_bytes.h"

namespace ftm::repl {
namespace {

constexpr size_t kHeaderSize = 48;
constexpr size_t kOffMagic = 0;
constexpr size_t kOffVersion = 8;
constexpr size_t kOffPartitions = 12;
constexpr size_t kOffStorePartitions = 16;
constexpr size_t kOffHeldCount = 20;
constexpr size_t kOffItemCount = 24;
constexpr size_t kOffLength = 32;

constexpr size_t kRowSize = 32;  // store partition table row
constexpr size_t kRowLsn = 0;
constexpr size_t kRowOldestLive = 8;
constexpr size_t kRowOldestCas = 16;
constexpr size_t kRowFlushFlags = 24;

constexpr size_t kItemHeaderSize = 32;
constexpr size_t kItemMapPartition = 0;
constexpr size_t kItemFlags = 4;
constexpr size_t kItemValueLen = 8;
constexpr size_t kItemKeyLen = 12;
constexpr size_t kItemBits = 13;
constexpr size_t kItemExptime = 16;
constexpr size_t kItemCas = 24;

constexpr size_t kTrailerSize = 8;

using wire::align8;
using wire::get;
using wire::put;

// The map partition of an item: ClusterMap::partition_for_key(key, P) is
// XXH3_64bits(key) % P, and Item::hash already holds XXH3_64bits(key)
// (Store::hash), so no key is hashed again under a partition lock.
uint32_t map_partition_of(const Item& it, uint32_t partitions) {
  return static_cast<uint32_t>(it.hash % partitions);
}

SnapshotError fail(SnapshotError e, std::string* detail, std::string msg) {
  if (detail != nullptr) *detail = std::move(msg);
  return e;
}

}  // namespace

std::vector<std::byte> encode_snapshot(Store& store, const std::vector<bool>& held,
                                       const std::function<uint64_t()>& last_lsn,
                                       SnapshotCounts* counts) {
  const uint32_t partitions = static_cast<uint32_t>(held.size());
  assert(partitions >= 1 && partitions <= kSnapshotMaxPartitions);
  uint32_t held_count = 0;
  for (bool h : held) held_count += h;
  const size_t table_off = kHeaderSize + align8(size_t{held_count} * 4);
  const size_t items_off = table_off + size_t{kPartitions} * kRowSize;

  // Items take about their share of the store's bytes (alloc sizes, which
  // include the item headers the records replace), plus slack for writes
  // that land while the snapshot is taken. Growing later copies the buffer,
  // possibly under a partition lock, so reserve up front.
  const uint64_t share = store.stats().bytes / partitions * held_count;
  std::vector<std::byte> out;
  out.reserve(items_off + share + share / 8 + kTrailerSize);
  out.resize(items_off);  // zero-filled: padding and unvisited rows stay 0

  size_t at = kHeaderSize;
  for (uint32_t p = 0; p < partitions; ++p) {
    if (!held[p]) continue;
    put<uint32_t>(out.data(), at, p);
    at += 4;
  }

  SnapshotCounts n;
  const bool same_partitions = partitions == kPartitions;
  for (uint32_t s = 0; s < kPartitions; ++s) {
    // Store partition s holds only map partition s's keys when they coincide.
    if (same_partitions && !held[s]) continue;
    const size_t row = table_off + size_t{s} * kRowSize;
    store.scan_partition(
        s,
        [&](const Store::FlushSplit& split) {
          put<uint64_t>(out.data(), row + kRowLsn, last_lsn());
          // Flush splits are shipped per store partition only when the
          // partitions coincide (ReplicationManager::on_flush); otherwise
          // every server flushes its own store.
          if (!same_partitions) return;
          const WireFlushSplit w = flush_split_to_wire(split.oldest_live, split.oldest_cas);
          put<int64_t>(out.data(), row + kRowOldestLive, w.oldest_live);
          put<uint64_t>(out.data(), row + kRowOldestCas, w.oldest_cas);
          put<uint32_t>(out.data(), row + kRowFlushFlags, w.flags);
        },
        [&](const Item& it) {
          const uint32_t m = map_partition_of(it, partitions);
          if (!held[m]) return;
          const size_t rec = align8(kItemHeaderSize + it.nkey + size_t{it.nbytes});
          const size_t off = out.size();
          out.resize(off + rec);  // amortised: the reserve above usually covers it
          std::byte* r = out.data() + off;
          put<uint32_t>(r, kItemMapPartition, m);
          put<uint32_t>(r, kItemFlags, it.client_flags);
          put<uint32_t>(r, kItemValueLen, it.nbytes);
          put<uint8_t>(r, kItemKeyLen, it.nkey);
          put<uint8_t>(r, kItemBits, it.iflags & kItemReplicaBits);
          put<int64_t>(r, kItemExptime,
                       it.exptime == 0 ? 0 : static_cast<int64_t>(clock::to_unix(it.exptime)));
          put<uint64_t>(r, kItemCas, it.cas);
          std::memcpy(r + kItemHeaderSize, it.data, it.nkey + size_t{it.nbytes});
          n.items++;
          n.bytes += it.nkey + uint64_t{it.nbytes};
        });
  }

  const size_t length = out.size() + kTrailerSize;
  out.resize(length);
  std::byte* h = out.data();
  put<uint64_t>(h, kOffMagic, kSnapshotMagic);
  put<uint32_t>(h, kOffVersion, kSnapshotVersion);
  put<uint32_t>(h, kOffPartitions, partitions);
  put<uint32_t>(h, kOffStorePartitions, kPartitions);
  put<uint32_t>(h, kOffHeldCount, held_count);
  put<uint64_t>(h, kOffItemCount, n.items);
  put<uint64_t>(h, kOffLength, length);
  put<uint64_t>(h, length - kTrailerSize, XXH3_64bits(h, length - kTrailerSize));
  if (counts != nullptr) *counts = n;
  return out;
}

const char* snapshot_error_name(SnapshotError e) {
  switch (e) {
    case SnapshotError::kOk: return "ok";
    case SnapshotError::kTruncated: return "truncated";
    case SnapshotError::kBadMagic: return "bad_magic";
    case SnapshotError::kBadVersion: return "bad_version";
    case SnapshotError::kBadChecksum: return "bad_checksum";
    case SnapshotError::kMalformed: return "malformed";
  }
  return "?";
}

SnapshotError SnapshotView::parse(std::span<const std::byte> bytes, SnapshotView* out,
                                  std::string* detail) {
  using E = SnapshotError;
  const size_t size = bytes.size();
  const std::byte* b = bytes.data();
  if (size < kHeaderSize + kTrailerSize)
    return fail(E::kTruncated, detail, "snapshot of " + std::to_string(size) + " bytes has no header");
  if (get<uint64_t>(b, kOffMagic) != kSnapshotMagic)
    return fail(E::kBadMagic, detail, "not a snapshot (magic)");
  if (const uint32_t v = get<uint32_t>(b, kOffVersion); v != kSnapshotVersion)
    return fail(E::kBadVersion, detail, "snapshot version " + std::to_string(v));
  const uint64_t length = get<uint64_t>(b, kOffLength);
  if (length > size)
    return fail(E::kTruncated, detail, "snapshot has " + std::to_string(size) + " of " +
                                           std::to_string(length) + " bytes");
  if (length < size)
    return fail(E::kMalformed, detail, std::to_string(size - length) + " bytes after the snapshot");
  if (get<uint64_t>(b, size - kTrailerSize) != XXH3_64bits(b, size - kTrailerSize))
    return fail(E::kBadChecksum, detail, "snapshot checksum mismatch");

  // The checksum only shows the bytes are the encoder's; the fields are
  // still checked, so a buggy or hostile encoder cannot make us read out of
  // bounds or install keys into partitions that were not asked for.
  const uint32_t partitions = get<uint32_t>(b, kOffPartitions);
  const uint32_t held_count = get<uint32_t>(b, kOffHeldCount);
  if (partitions == 0 || partitions > kSnapshotMaxPartitions)
    return fail(E::kMalformed, detail, "partition count " + std::to_string(partitions));
  if (get<uint32_t>(b, kOffStorePartitions) != kPartitions)
    return fail(E::kMalformed, detail, "store partition count differs from this build's");
  if (held_count > partitions)
    return fail(E::kMalformed, detail, "more held partitions than partitions");
  const size_t table_off = kHeaderSize + align8(size_t{held_count} * 4);
  const size_t items_off = table_off + size_t{kPartitions} * kRowSize;
  const size_t items_end = size - kTrailerSize;
  if (items_off > items_end)
    return fail(E::kMalformed, detail, "snapshot shorter than its partition table");

  out->partitions_ = partitions;
  out->held_.assign(partitions, false);
  for (uint32_t i = 0; i < held_count; ++i) {
    const uint32_t p = get<uint32_t>(b, kHeaderSize + size_t{i} * 4);
    if (p >= partitions || (i > 0 && p <= get<uint32_t>(b, kHeaderSize + size_t{i - 1} * 4)))
      return fail(E::kMalformed, detail, "held partition " + std::to_string(p) + " out of order or range");
    out->held_[p] = true;
  }
  for (uint32_t s = 0; s < kPartitions; ++s) {
    const uint32_t f = get<uint32_t>(b, table_off + size_t{s} * kRowSize + kRowFlushFlags);
    if (f != 0 && f != kFlushSplit && f != (kFlushSplit | kFlushByCas))
      return fail(E::kMalformed, detail, "flush flags of store partition " + std::to_string(s));
  }
  out->table_ = bytes.subspan(table_off, size_t{kPartitions} * kRowSize);
  out->items_ = bytes.subspan(items_off, items_end - items_off);

  uint64_t count = 0;
  for (size_t off = items_off; off < items_end; ++count) {
    // The message is built only on failure: no allocation per record.
    auto bad = [&](const char* what) {
      return fail(E::kMalformed, detail,
                  std::string(what) + " (item record at offset " + std::to_string(off) + ")");
    };
    if (items_end - off < kItemHeaderSize) return bad("record header past the end");
    const std::byte* r = b + off;
    const uint32_t m = get<uint32_t>(r, kItemMapPartition);
    const size_t key_len = get<uint8_t>(r, kItemKeyLen);
    const size_t value_len = get<uint32_t>(r, kItemValueLen);
    const size_t rec = align8(kItemHeaderSize + key_len + value_len);
    if (rec > items_end - off) return bad("record past the end");
    if (key_len == 0 || key_len > kKeyMaxLength) return bad("key length out of range");
    if ((get<uint8_t>(r, kItemBits) & ~kItemReplicaBits) != 0) return bad("unknown item bits");
    if (m >= partitions || !out->held_[m]) return bad("map partition not held");
    const uint64_t hash = XXH3_64bits(r + kItemHeaderSize, key_len);
    if (hash % partitions != m) return bad("key of another map partition");
    off += rec;
  }
  const uint64_t item_count = get<uint64_t>(b, kOffItemCount);
  if (count != item_count)
    return fail(E::kMalformed, detail, std::to_string(count) + " item records, header says " +
                                           std::to_string(item_count));
  out->item_count_ = item_count;
  return E::kOk;
}

SnapshotPartition SnapshotView::store_partition(uint32_t s) const {
  assert(s < kPartitions);
  const std::byte* row = table_.data() + size_t{s} * kRowSize;
  SnapshotPartition p;
  p.lsn = get<uint64_t>(row, kRowLsn);
  p.oldest_live = get<int64_t>(row, kRowOldestLive);
  p.oldest_cas = get<uint64_t>(row, kRowOldestCas);
  p.flush_flags = get<uint32_t>(row, kRowFlushFlags);
  return p;
}

std::vector<uint64_t> SnapshotView::lsn_by_store_partition() const {
  std::vector<uint64_t> lsns(kPartitions);
  for (uint32_t s = 0; s < kPartitions; ++s) lsns[s] = store_partition(s).lsn;
  return lsns;
}

size_t SnapshotView::read_item(size_t off, SnapshotItem* out) const {
  const std::byte* r = items_.data() + off;
  const size_t key_len = get<uint8_t>(r, kItemKeyLen);
  const size_t value_len = get<uint32_t>(r, kItemValueLen);
  const char* body = reinterpret_cast<const char*>(r + kItemHeaderSize);
  out->map_partition = get<uint32_t>(r, kItemMapPartition);
  out->client_flags = get<uint32_t>(r, kItemFlags);
  out->exptime = get<int64_t>(r, kItemExptime);
  out->cas = get<uint64_t>(r, kItemCas);
  out->item_bits = get<uint8_t>(r, kItemBits);
  out->key = std::string_view(body, key_len);
  out->value = std::string_view(body + key_len, value_len);
  return align8(kItemHeaderSize + key_len + value_len);
}

InstallResult install_snapshot(Store& store, std::span<const std::byte> bytes) {
  InstallResult r;
  SnapshotView v;
  r.error = SnapshotView::parse(bytes, &v, &r.detail);
  if (r.error != SnapshotError::kOk) return r;
  const uint32_t partitions = v.partitions();
  const std::vector<bool>& held = v.held();
  const bool same_partitions = partitions == kPartitions;
  for (uint32_t s = 0; s < kPartitions; ++s) {
    if (same_partitions && !held[s]) continue;
    r.removed += store.remove_if_in_partition(
        s, [&](const Item& it) { return held[map_partition_of(it, partitions)]; });
    // Before the items are linked: a delayed flush then hides them when
    // its time comes, as on the primary; one in force hides none of them
    // (kFlushByCas: they are live there, so their cas is above the split).
    const SnapshotPartition sp = v.store_partition(s);
    if (sp.flush_flags & kFlushSplit)
      apply_flush_split(store, s, WireFlushSplit{sp.oldest_live, sp.oldest_cas, sp.flush_flags});
  }
  v.for_each_item([&](const SnapshotItem& it) {
    if (link_primary_item(store, it.key, it.client_flags, it.exptime, it.cas, it.value,
                          it.item_bits)) {
      r.installed.items++;
      r.installed.bytes += it.key.size() + it.value.size();
    } else {
      r.apply_errors++;
    }
  });
  r.lsn_by_store_partition = v.lsn_by_store_partition();
  return r;
}

}  // namespace ftm::repl
