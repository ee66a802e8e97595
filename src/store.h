// The item store: a hash table keyed by XXH3_64bits(key), cut into
// kPartitions partitions (XXH3_64bits(key) % kPartitions), each with its own
// mutex, hash chains and LRU list. The same partition function later carries
// replication (DESIGN.md, "Data path" step 2).
//
// Items are single jemalloc allocations (header, key, value, "\r\n"); memory
// is accounted in the bytes jemalloc really hands out (sallocx), so -m bounds
// item memory. When an allocation would pass the limit, least recently used
// items are evicted (or, with evict=false, the allocation fails: memcached -M).
//
// Access to a linked item happens only while its partition is locked, through
// a Txn. There are no item reference counts: a reader copies what it needs
// (into its connection's output buffer) before the Txn ends.
//
// Thread-safety: Store is safe for concurrent use. A Txn belongs to one thread
// and must not outlive the statement block that created it.
#ifndef FTM_SRC_STORE_H_
#define FTM_SRC_STORE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <type_traits>

#include "src/clock.h"

namespace ftm {

inline constexpr size_t kKeyMaxLength = 250;  // protocol.txt, "Keys"
inline constexpr uint32_t kPartitions = 1024;

// Item flag bits (Item::iflags).
enum ItemFlag : uint8_t {
  kItemFetched = 1,    // read at least once since stored (meta "h" flag)
  kItemStale = 2,      // invalidated by meta "I" (serve with X/W flags)
  kItemTokenSent = 4,  // a client already won the recache race (meta "Z")
  kItemLinked = 8,     // in the hash table
  kItemActive = 16,    // fetched since it last moved to the LRU head: gets a
                       // second chance at the tail (memcached's ITEM_ACTIVE)
  kItemKeyBinary = 32, // the key arrived base64-encoded (meta "b"): meta
                       // replies show it encoded again (ITEM_KEY_BINARY)
};
// The bits a replica copies from its primary with the item (effects and
// snapshots carry them): what a client can observe through meta commands.
// The rest are this store's own bookkeeping (fetched, active, linked).
inline constexpr uint8_t kItemReplicaBits = kItemStale | kItemTokenSent | kItemKeyBinary;

class Store;
class Partition;
struct Item;

// Receives the store's changes, for replication (DESIGN.md "Data path" step
// 4: effects, not commands, are replicated). Called while the key's
// partition is locked, so per partition the calls come in the order the
// changes were made; keep it short and never block (append to a log buffer).
// Lazy expiry, sweeping and eviction are not changes (every replica expires
// and evicts on its own); everything a command does is: link, unlink, and
// in-place updates of exptime, flags, cas, value or the stale/win bits.
class EffectSink {
 public:
  virtual ~EffectSink() = default;
  // `after` is the key's item once the Txn ends, or nullptr if the key has
  // none (a tombstone). Valid only during the call.
  virtual void on_change(uint32_t partition, std::string_view key, const Item* after) = 0;
  // Store::flush_all reached `partition` (called for each, under its lock):
  // its new flush split is (oldest_live, oldest_cas), see flush_partition.
  // Return false to leave the partition as it is: a replica whose copy
  // follows another node's flushes (that node ships its split, applied
  // with flush_partition, so both hide exactly the same items).
  virtual bool on_flush(uint32_t partition, rel_time_t oldest_live, uint64_t oldest_cas) = 0;
};

// An item: key, value and metadata in one allocation. Fields other than the
// bytes are public so the execute layer can apply protocol semantics; change
// them only while holding the item's partition (inside a Txn) or before the
// item is linked.
struct Item {
  Item* hash_next;
  Item* lru_prev;
  Item* lru_next;
  uint64_t hash;          // XXH3_64bits(key)
  uint64_t cas;           // cas unique; 0 when CAS is disabled (-C)
  rel_time_t exptime;     // 0 = never
  rel_time_t time;        // last access (relative seconds)
  uint32_t client_flags;  // opaque 32-bit client flags
  uint32_t nbytes;        // value length in bytes, without the trailing \r\n
  uint32_t alloc_size;    // bytes jemalloc gave this allocation
  uint8_t nkey;           // key length in bytes (<= kKeyMaxLength)
  uint8_t iflags;         // ItemFlag bits
  char data[];            // key, then value, then "\r\n"

  std::string_view key() const { return {data, nkey}; }
  std::string_view value() const { return {data + nkey, nbytes}; }
  // Value followed by "\r\n", ready to append to a text reply.
  std::string_view value_crlf() const { return {data + nkey, size_t{nbytes} + 2}; }
  // Writable value bytes (nbytes + 2 long: the caller fills in the value and
  // the trailing "\r\n", e.g. straight from the socket).
  char* value_buf() { return data + nkey; }
};

// Returns an item's memory to the store's accounting. Used by ItemPtr.
struct ItemDeleter {
  Store* store = nullptr;
  void operator()(Item* it) const;
};
using ItemPtr = std::unique_ptr<Item, ItemDeleter>;

enum class AllocError {
  kNone,
  kTooLarge,   // item bigger than item_size_max: "SERVER_ERROR object too large for cache"
  kNoMemory,   // -M and full, or nothing evictable: "SERVER_ERROR out of memory storing object"
};

// Totals the store keeps itself (the rest of `stats` lives in ThreadStats).
struct StoreStats {
  uint64_t curr_items = 0;
  uint64_t total_items = 0;
  uint64_t bytes = 0;              // bytes used by linked items (alloc sizes)
  uint64_t evictions = 0;
  uint64_t evicted_unfetched = 0;
  uint64_t evicted_active = 0;
  uint64_t expired_unfetched = 0;  // reclaimed expired items never fetched
  uint64_t reclaimed = 0;          // expired items whose memory was reused/freed
  uint64_t crawler_reclaimed = 0;  // reclaimed by the background sweeper
  uint64_t limit_maxbytes = 0;     // -m in bytes
  uint64_t malloced = 0;           // bytes allocated to items, linked or not
};

// Locked view of one key's partition. Construct with Store::begin(key).
// Holding a Txn holds the partition's mutex: keep it short and never block
// (no I/O, no other partition's Txn) while it is alive.
class Txn {
 public:
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;
  Txn(Txn&& other) noexcept;
  ~Txn();  // unlocks

  // The live item for the Txn's key, or nullptr. An expired or flushed item
  // found here is unlinked and freed (lazy reclaim), and *why_missing, if
  // given, is set to 1 for expired, 2 for flushed, 0 otherwise (for the
  // get_expired / get_flushed stats). Does not change LRU position or flags.
  Item* find(int* why_missing = nullptr);

  // Marks an access: moves the item to the LRU head, sets time = now and
  // (if fetch) kItemFetched. An item already touched this second is not
  // moved again (the LRU is ordered by whole seconds, like `time`).
  void bump(Item* it, bool fetch);

  // Links `item` (same key as the Txn), replacing and freeing the current
  // item for the key if any. Assigns a fresh cas unique unless cas != 0 is
  // given (meta "E" flag) or CAS is disabled. Returns the linked item.
  Item* link(ItemPtr item, uint64_t cas = 0);

  // Unlinks and frees `it` (which must be this Txn's key's item).
  void unlink(Item* it);

  // Allocates an unlinked item for this Txn's key; see Store::allocate.
  // Safe to call while the Txn holds its partition.
  ItemPtr allocate(uint32_t client_flags, rel_time_t exptime, size_t nbytes, AllocError* err);

  // A new cas unique (unique and increasing across the store); 0 when CAS is
  // disabled (-C), so callers can store the result unconditionally.
  uint64_t next_cas();

  // Raises the store's cas counter to at least `cas`, so every later
  // next_cas() is larger. For a secondary linking its primary's cas values:
  // once promoted, the cas uniques it hands out must not repeat or undercut
  // one a client already holds (a stale `cas` would then succeed). Client
  // supplied cas values (meta E) do not raise it, as in memcached.
  void raise_cas(uint64_t cas);

  // Tells the EffectSink that the item changed in place in a way the
  // snapshot might not show (a value rewritten in place keeping its cas:
  // -C, or a cas given by the client equal to the old one). Link, unlink
  // and changes of cas, exptime, client flags or the stale/win bits are
  // seen without it.
  void mark_changed() { changed_ = true; }

  std::string_view key() const { return key_; }
  Store& store() const { return *store_; }

 private:
  friend class Store;
  Txn(Store* store, Partition* part, std::string_view key, uint64_t hash, EffectSink* sink);
  void snapshot(const Item* it);
  void keep_key(const Item* it);
  void report();
  Store* store_;
  Partition* part_;
  std::string_view key_;
  uint64_t hash_;
  // Change tracking for the EffectSink; idle (one branch) when sink_ is null.
  // The snapshot is the key's live item and fields at the Txn's first
  // find/link/unlink; ~Txn compares it with the final state.
  EffectSink* sink_;
  bool tracked_ = false;   // snapshot taken
  bool changed_ = false;   // link, unlink or mark_changed happened
  uint8_t snap_bits_ = 0;  // kItemStale | kItemTokenSent
  uint32_t snap_flags_ = 0;
  rel_time_t snap_exptime_ = 0;
  uint64_t snap_cas_ = 0;
  const Item* snap_it_ = nullptr;
};

class Store {
 public:
  struct Options {
    size_t mem_limit = 64u << 20;     // bytes (-m, given in MiB)
    size_t item_size_max = 1u << 20;  // bytes (-I): largest item allocation
    bool use_cas = true;              // false: -C
    bool evict = true;                // false: -M
    bool sweeper = true;              // run the background expiry sweeper
    unsigned sweeper_interval_ms = 1000;  // pause between two sweeper passes
  };

  explicit Store(const Options& opts);
  ~Store();  // stops the sweeper, frees every item
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // XXH3_64bits of a key, and the key's partition (hash % kPartitions).
  static uint64_t hash(std::string_view key);
  static uint32_t partition_of(std::string_view key) { return hash(key) % kPartitions; }

  // Locks the key's partition and returns the Txn that holds it. The Txn
  // keeps a view of `key`: the bytes must outlive it. A thread holds at most
  // one Txn at a time.
  Txn begin(std::string_view key);

  // Allocates an unlinked item for `key` with room for an nbytes-byte value
  // (plus "\r\n"). The key is copied in; the value is left for the caller.
  // Evicts LRU items (from any partition not locked by this thread) to make
  // room. Returns nullptr and sets *err to kTooLarge when the item (header +
  // key + value + 2) exceeds item_size_max, or kNoMemory when the limit is
  // reached and eviction is off or finds nothing. May be called with or
  // without a Txn held by the calling thread.
  ItemPtr allocate(std::string_view key, uint32_t client_flags, rel_time_t exptime, size_t nbytes,
                   AllocError* err);

  // Would an item with this key length and value length fit in
  // item_size_max? (Lets a parser reject a too-large value before reading it.)
  bool fits(size_t nkey, size_t nbytes) const;

  // flush_all: every item stored at or before `when` (relative seconds;
  // 0 = now) becomes invisible once `when` has come. Items stored later in
  // the same second stay visible (compared by cas order, as memcached does).
  // REQUIRES: the calling thread holds no Txn.
  void flush_all(rel_time_t when);

  // Sets one partition's flush split as flush_all would have: items with
  // time <= oldest_live, or (oldest_cas != 0) a nonzero cas below
  // oldest_cas, are gone once oldest_live has come; 0 = no flush. For a
  // replica applying its primary's flush (the cas values are the
  // primary's, so its split is exact here too). REQUIRES: no Txn held.
  void flush_partition(uint32_t partition, rel_time_t oldest_live, uint64_t oldest_cas);

  // One pass of the expiry sweeper: visits partitions (skipping busy ones)
  // until `max_items` items have been examined or every partition was seen
  // once, unlinking and freeing expired and flushed items. Returns how many it
  // reclaimed (counted as crawler_reclaimed). The background thread calls it
  // every sweeper_interval_ms; tests and tools may call it directly.
  size_t sweep(size_t max_items);

  // Calls visit(ctx, item) for every live item (not expired, not flushed) of
  // store partition `partition` (< kPartitions), holding that partition's
  // lock for the whole walk, in no particular order. For inspection tools
  // (replica digests): the visitor must be short, must not block and must
  // not touch the store. REQUIRES: the calling thread holds no Txn.
  using ItemVisitor = void (*)(void* ctx, const Item& item);
  void for_each_in_partition(uint32_t partition, ItemVisitor visit, void* ctx);
  // Same with any callable taking (const Item&), passed without allocation.
  template <class F>
  void for_each_in_partition(uint32_t partition, F&& visit) {
    for_each_in_partition(
        partition,
        [](void* c, const Item& it) { (*static_cast<std::remove_reference_t<F>*>(c))(it); },
        &visit);
  }

  // A store partition's flush split as flush_partition takes it (0, 0 = no
  // flush), reported by scan_partition.
  struct FlushSplit {
    rel_time_t oldest_live = 0;
    uint64_t oldest_cas = 0;
  };

  // Like for_each_in_partition, and calls on_lock(const FlushSplit&) once,
  // right after the lock is taken and before the first item, with the
  // partition's flush split. For a primary's snapshot (replication/
  // snapshot.h): every change to the partition's keys happens under that
  // lock, so whatever on_lock records (a log's last lsn) is exactly the
  // point the visited items reflect. The callables are passed without
  // allocation and must be short, must not block and must not touch the
  // store. REQUIRES: the calling thread holds no Txn.
  template <class OnLock, class F>
  void scan_partition(uint32_t partition, OnLock&& on_lock, F&& visit) {
    struct Ctx {
      std::remove_reference_t<OnLock>* on_lock;
      std::remove_reference_t<F>* visit;
    } ctx{&on_lock, &visit};
    Walk w;
    w.on_lock = [](void* c, const FlushSplit& s) { (*static_cast<Ctx*>(c)->on_lock)(s); };
    w.visit = [](void* c, Item& it) {
      (*static_cast<Ctx*>(c)->visit)(static_cast<const Item&>(it));
      return false;
    };
    w.live_only = true;
    w.ctx = &ctx;
    walk_partition(partition, w);
  }

  // Unlinks and frees every item of store partition `partition`, live or
  // dead, for which pred(const Item&) returns true, under the partition's
  // lock. Returns how many it removed. Not a change: the EffectSink is not
  // told (a secondary clears the copy of a partition before installing its
  // primary's snapshot; nothing of it may be replicated again). The counters
  // (curr_items, bytes) follow. REQUIRES: the calling thread holds no Txn.
  template <class Pred>
  size_t remove_if_in_partition(uint32_t partition, Pred&& pred) {
    struct Ctx {
      std::remove_reference_t<Pred>* pred;
      size_t removed;
    } ctx{&pred, 0};
    Walk w;
    w.visit = [](void* c, Item& it) {
      auto* x = static_cast<Ctx*>(c);
      const bool remove = (*x->pred)(static_cast<const Item&>(it));
      x->removed += remove;
      return remove;
    };
    w.ctx = &ctx;
    walk_partition(partition, w);
    return ctx.removed;
  }

  // Installs the sink every later change is reported to (nullptr: none, the
  // standalone default). Safe while Txns run: each Txn uses the sink that
  // was installed when it began, so after removing a sink keep it alive
  // until no Txn begun before can still be running (stop the workers first).
  void set_effect_sink(EffectSink* sink);

  // Snapshot of the store's counters.
  StoreStats stats() const;
  // Resets the counters that "stats reset" resets (evictions, reclaimed, ...;
  // not curr_items or bytes).
  void reset_stats();

  const Options& options() const { return opts_; }

  // Internal: used by Txn and ItemDeleter.
  void free_item(Item* it);
  struct Impl;

  // Internal: the walk behind for_each_in_partition, scan_partition and
  // remove_if_in_partition. Locks the partition, calls on_lock (if set),
  // then visit for every item (only the live ones if live_only), unlinking
  // and freeing those for which visit returns true. Never tells the sink.
  struct Walk {
    void (*on_lock)(void* ctx, const FlushSplit& split) = nullptr;
    bool (*visit)(void* ctx, Item& item) = nullptr;
    bool live_only = false;
    void* ctx = nullptr;
  };
  void walk_partition(uint32_t partition, const Walk& walk);

 private:
  Options opts_;
  std::unique_ptr<Impl> impl_;
  friend class Txn;
};

}  // namespace ftm

#endif  // FTM_SRC_STORE_H_
