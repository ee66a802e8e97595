// Partition snapshots: how a new secondary N gets a copy of some map
// partitions from their primary P while P keeps serving writes (DESIGN.md,
// "Failure detection and recovery"; replication/README.md). The sequence:
//   1. P's LogWriter is attached to a ring on N: every new effect of the
//      partitions reaches N's LogApplier, with increasing lsn.
//   2. N's applier holds the partitions (LogApplier::hold): their entries
//      are buffered, not applied.
//   3. P encodes a snapshot (encode_snapshot). It visits each store partition
//      under that partition's lock and records, on taking it, the log's last
//      reserved lsn: effects of a store partition's keys are appended while
//      it is locked, so the items visited reflect exactly the effects with
//      lsn <= the recorded one.
//   4. N fetches the bytes (one-sided RDMA reads), installs them
//      (install_snapshot) and releases the hold with the recorded lsns
//      (LogApplier::release), which replays the buffered entries newer than
//      the snapshot of their key's store partition.
//
// Map partitions (ClusterMap::partition_for_key(key, P) = XXH3_64bits(key)
// % P) and store partitions (the same hash % kPartitions) coincide only when
// P == kPartitions; the lsn table is per store partition, the item records
// name their map partition.
//
// Wire form (little-endian host order; every section 8-byte aligned):
//   header, 48 bytes:
//     0  u64 magic            kSnapshotMagic ("FTMSNAP1")
//     8  u32 version          kSnapshotVersion
//     12 u32 partitions       P, the map's partition count (1..65536)
//     16 u32 store_partitions kPartitions (refused if it differs here)
//     20 u32 held_count       map partitions in the snapshot
//     24 u64 item_count       item records that follow the table
//     32 u64 length           whole snapshot in bytes, checksum included
//     40 u64 reserved         0
//   held set: held_count x u32 map partition, strictly ascending, zero
//     padded to a multiple of 8
//   store partition table: kPartitions x 32 bytes:
//     0  u64 lsn              last reserved lsn when the partition was locked
//                             (0 when not visited: with P == kPartitions only
//                             the held store partitions are)
//     8  i64 oldest_live      flush split, absolute unix seconds (0 = none)
//     16 u64 oldest_cas
//     24 u32 flush_flags      kFlushSplit [| kFlushByCas] (effect.h) when the
//                             split applies here (P == kPartitions and the
//                             partition is held), else 0
//     28 u32 reserved         0
//   item_count records, each a multiple of 8 bytes:
//     0  u32 map_partition    one of the held set
//     4  u32 client_flags
//     8  u32 value_len
//     12 u8  key_len          1..250
//     13 u8  item_bits        the item's meta state: kItemStale,
//                             kItemTokenSent, kItemKeyBinary (src/store.h
//                             kItemReplicaBits); no other bit
//     14 u8[2] zero
//     16 i64 exptime          absolute unix seconds, 0 = never
//     24 u64 cas              cas unique
//     32 key, value, zero padding to a multiple of 8
//   u64 XXH3_64bits of every byte before it
//
// Thread-safety: plain functions; encode_snapshot and install_snapshot use
// the Store's own locking and REQUIRE that the calling thread hold no Txn.
#ifndef FTM_REPLICATION_SNAPSHOT_H_
#define FTM_REPLICATION_SNAPSHOT_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "src/store.h"

namespace ftm::repl {

inline constexpr uint64_t kSnapshotMagic = 0x3150414e534d5446ull;  // "FTMSNAP1"
inline constexpr uint32_t kSnapshotVersion = 2;  // 2: item_bits
inline constexpr uint32_t kSnapshotMaxPartitions = 65536;  // Effect::partition is u16

// Counts of an encoded or installed snapshot.
struct SnapshotCounts {
  uint64_t items = 0;  // item records
  uint64_t bytes = 0;  // key and value bytes they carry
};

// Builds the snapshot of the map partitions p with held[p] (held.size() is
// P, 1..kSnapshotMaxPartitions) of `store`. last_lsn() is called once per
// visited store partition, right after its lock is taken (and with it held:
// it must be short and must not touch the store); pass the LogWriter's last
// reserved lsn (LogWriter::stats().last_lsn). Only live items (not expired,
// not flushed) are written. With P == kPartitions only the held store
// partitions are visited; otherwise all of them. If counts is given, it
// receives the record counts. Each store partition is locked only while it
// is copied; no allocation per item (the buffer is reserved from the
// store's byte count and grows by doubling if writes outpace that).
// REQUIRES: no Txn held by the calling thread.
std::vector<std::byte> encode_snapshot(Store& store, const std::vector<bool>& held,
                                       const std::function<uint64_t()>& last_lsn,
                                       SnapshotCounts* counts = nullptr);

enum class SnapshotError {
  kOk,
  kTruncated,    // shorter than its header, its sections or its length field
  kBadMagic,     // not a snapshot
  kBadVersion,   // a version this build does not read
  kBadChecksum,  // bytes changed after encoding (or a torn read)
  kMalformed,    // checksum right but fields impossible (a partition out of
                 // range or not held, a key of another partition, a record
                 // past the end, bytes left over, ...)
};
const char* snapshot_error_name(SnapshotError e);

// One store partition's entry of the table.
struct SnapshotPartition {
  uint64_t lsn = 0;
  int64_t oldest_live = 0;  // absolute unix seconds, 0 = none
  uint64_t oldest_cas = 0;
  uint32_t flush_flags = 0;
};

// One item record (views into the snapshot bytes).
struct SnapshotItem {
  uint32_t map_partition = 0;
  std::string_view key;
  uint32_t client_flags = 0;
  int64_t exptime = 0;  // absolute unix seconds, 0 = never
  uint64_t cas = 0;
  std::string_view value;
  uint8_t item_bits = 0;  // kItemReplicaBits
};

// A validated snapshot: views into the bytes it was parsed from, which must
// outlive it.
class SnapshotView {
 public:
  // Validates `bytes` completely (length, magic, version, checksum, then
  // every field and record, never reading outside `bytes`) and fills *out.
  // On an error returns its cause and, if detail is given, a message naming
  // the field or record offset; *out is then unspecified.
  static SnapshotError parse(std::span<const std::byte> bytes, SnapshotView* out,
                             std::string* detail = nullptr);

  uint32_t partitions() const { return partitions_; }
  // held()[p]: map partition p is in the snapshot; size partitions().
  const std::vector<bool>& held() const { return held_; }
  uint64_t item_count() const { return item_count_; }
  // REQUIRES: s < kPartitions.
  SnapshotPartition store_partition(uint32_t s) const;
  // The table's lsns, kPartitions entries (LogApplier::release takes them).
  std::vector<uint64_t> lsn_by_store_partition() const;
  // Calls f(const SnapshotItem&) for every record, in order.
  template <class F>
  void for_each_item(F&& f) const {
    SnapshotItem it;
    for (size_t off = 0; off < items_.size();) {
      off += read_item(off, &it);
      f(static_cast<const SnapshotItem&>(it));
    }
  }

 private:
  size_t read_item(size_t off, SnapshotItem* out) const;  // REQUIRES: parsed
  uint32_t partitions_ = 0;
  uint64_t item_count_ = 0;
  std::vector<bool> held_;
  std::span<const std::byte> table_;
  std::span<const std::byte> items_;
};

// What install_snapshot did.
struct InstallResult {
  SnapshotError error = SnapshotError::kOk;
  std::string detail;                    // parse's message on an error
  std::vector<uint64_t> lsn_by_store_partition;  // kPartitions entries
  SnapshotCounts installed;              // items linked, their key+value bytes
  uint64_t removed = 0;                  // items of held partitions removed first
  uint64_t apply_errors = 0;             // records this store could not hold
};

// Validates `bytes` (SnapshotView::parse; nothing is changed on an error),
// then replaces the copy of the held map partitions in `store`: removes
// every item whose map partition is held (without effects:
// Store::remove_if_in_partition), sets each held store partition's flush
// split to the primary's when P == kPartitions, and links every record
// with its cas, client flags, exptime and value (link_primary_item, which
// also raises the cas counter). Other partitions are untouched, so the
// LogApplier may keep applying them meanwhile; the held ones must be held
// (LogApplier::hold) until release. A record this store cannot hold
// (smaller -I, -M) is counted in apply_errors and its key left absent.
// REQUIRES: no Txn held by the calling thread.
InstallResult install_snapshot(Store& store, std::span<const std::byte> bytes);

}  // namespace ftm::repl

#endif  // FTM_REPLICATION_SNAPSHOT_H_
