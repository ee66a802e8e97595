#include "replication/replica_ops.h"

#include <cstring>

#include "replication/effect.h"

namespace ftm::repl {

bool link_primary_item(Store& store, std::string_view key, uint32_t client_flags,
                       int64_t exptime, uint64_t cas, std::string_view value,
                       uint8_t item_bits) {
  // realtime() treats anything above 30 days as absolute, which every unix
  // time is.
  const rel_time_t rel = exptime == 0 ? 0 : clock::realtime(exptime);
  Txn txn = store.begin(key);
  AllocError err = AllocError::kNone;
  ItemPtr item = txn.allocate(client_flags, rel, value.size(), &err);
  if (!item) {
    if (Item* old = txn.find()) txn.unlink(old);
    return false;
  }
  char* v = item->value_buf();
  if (!value.empty()) std::memcpy(v, value.data(), value.size());
  v[value.size()] = '\r';
  v[value.size() + 1] = '\n';
  item->iflags |= item_bits & kItemReplicaBits;
  // cas 0 would make link() assign a local cas; the primary only sends 0
  // when it runs without CAS (-C), and then this store should too (link
  // stores 0 when use_cas is off).
  txn.link(std::move(item), cas);
  txn.raise_cas(cas);
  return true;
}

WireFlushSplit flush_split_to_wire(rel_time_t oldest_live, uint64_t oldest_cas) {
  WireFlushSplit w;
  w.flags = kFlushSplit;
  if (oldest_cas != 0 && oldest_live < clock::now()) w.flags |= kFlushByCas;
  w.oldest_live = oldest_live == 0 ? 0 : static_cast<int64_t>(clock::to_unix(oldest_live));
  w.oldest_cas = oldest_cas;
  return w;
}

void apply_flush_split(Store& store, uint32_t partition, const WireFlushSplit& split) {
  rel_time_t ol = split.oldest_live == 0 ? 0 : clock::realtime(split.oldest_live);
  if ((split.flags & kFlushByCas) && split.oldest_cas != 0) ol = 1;  // in force now; cas decides
  store.flush_partition(partition % kPartitions, ol, split.oldest_cas);
}

}  // namespace ftm::repl
