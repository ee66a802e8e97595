// How a replica applies its primary's state to its own store: the steps
// shared by the LogApplier (one effect at a time) and by snapshot install
// (replication/snapshot.h, a whole partition at once), so both link exactly
// the same item for the same effect.
//
// Absolute times: effects and snapshots carry exptime and a flush split's
// oldest_live as ABSOLUTE unix seconds (0 = never / none) because each
// process's relative clock starts at its own process start (src/clock.h).
//
// Nothing here is re-replicated: links and unlinks go through Txns, whose
// changes reach the store's EffectSink (the ReplicationManager), which only
// appends effects for partitions this node is the primary of; a replica
// applying its primary's state is not.
//
// Thread-safety: plain functions; the Store is safe for concurrent use.
// REQUIRES for each: the calling thread holds no Txn.
#ifndef FTM_REPLICATION_REPLICA_OPS_H_
#define FTM_REPLICATION_REPLICA_OPS_H_

#include <cstdint>
#include <string_view>

#include "src/clock.h"
#include "src/store.h"

namespace ftm::repl {

// Links `key` with the primary's value, client flags, exptime (absolute unix
// seconds, 0 = never; a deadline already passed links an expired item, as
// on the primary), cas unique and meta state bits (`item_bits`,
// kItemReplicaBits of the primary's item), and raises the store's cas counter to it
// (Txn::raise_cas: once promoted, this store's cas uniques continue above
// the primary's). Returns false when this store cannot hold the item
// (smaller -I, or -M and full): the key is then removed, so the replica
// never serves an older value.
bool link_primary_item(Store& store, std::string_view key, uint32_t client_flags,
                       int64_t exptime, uint64_t cas, std::string_view value,
                       uint8_t item_bits);

// A store partition's flush split in the form a kFlushSplit effect carries
// it (replication/effect.h): oldest_live in absolute unix seconds (0 =
// none), oldest_cas, and flags kFlushSplit, plus kFlushByCas when the cas
// alone decides.
struct WireFlushSplit {
  int64_t oldest_live = 0;
  uint64_t oldest_cas = 0;
  uint32_t flags = 0;
};

// The wire form of a primary's split (Store::flush_partition arguments,
// relative time). A split already in force (oldest_live before the current
// second) with a cas gets kFlushByCas, as ReplicationManager::on_flush
// sends it.
WireFlushSplit flush_split_to_wire(rel_time_t oldest_live, uint64_t oldest_cas);

// Applies a primary's split to store partition `partition` (< kPartitions)
// exactly (Store::flush_partition): with kFlushByCas the cas alone decides,
// because this replica's item times are its own. (0, 0) clears the split.
void apply_flush_split(Store& store, uint32_t partition, const WireFlushSplit& split);

}  // namespace ftm::repl

#endif  // FTM_REPLICATION_REPLICA_OPS_H_
