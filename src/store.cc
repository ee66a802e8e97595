// The item store: partitioned hash table, per-partition LRU, jemalloc-backed
// items with byte-exact accounting, eviction, lazy and background expiry.
// See store.h for the contract; this file explains the choices.
//
// Locking: each partition has one std::mutex guarding its bucket array, hash
// chains, LRU list and counters. A thread holds at most one partition at a
// time (the one of its Txn, remembered in t_held). Code that must look at
// other partitions while possibly holding one (eviction inside allocate, the
// sweeper) only ever try_locks them and skips t_held, so no thread waits for
// a partition while holding another: no lock-order cycles, no deadlock.
//
// Hot paths (begin/find/bump/link/allocate without eviction) take exactly one
// mutex and touch two shared atomics: the memory counter (allocate/free) and
// the cas counter (link). Nothing else is global.
#include "src/store.h"

#include <jemalloc/jemalloc.h>
#include <xxhash.h>

#include <algorithm>
#include <cassert>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <new>
#include <thread>

namespace ftm {
namespace {

// A counter owned by one partition: written only by the thread holding the
// partition's mutex, read by stats() from any thread without the lock. One
// writer at a time makes a relaxed load+store enough (no atomic RMW).
class PartCounter {
 public:
  void add(uint64_t n = 1) { v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  void sub(uint64_t n) { v_.store(v_.load(std::memory_order_relaxed) - n, std::memory_order_relaxed); }
  uint64_t load() const { return v_.load(std::memory_order_relaxed); }
  void reset() { v_.store(0, std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

// Buckets per partition at start: 1024 * 16 pointers = 128 KiB in all, and
// the arrays double as partitions fill, so an empty server stays small.
constexpr uint32_t kInitialBuckets = 16;
// Partition index uses the hash's low 10 bits (hash % 1024); buckets use the
// bits above them so chains do not all collide inside a partition.
constexpr unsigned kBucketShift = 10;
static_assert(kPartitions == 1u << kBucketShift);

// Eviction: how many partitions to sample per victim choice (the one whose
// LRU tail is oldest loses), how many tail items to check for expired ones
// first (memcached's lru_pull_tail looks at 5), and how many items one visit
// may evict (big allocations need many small victims).
constexpr int kEvictSample = 5;
constexpr int kTailScan = 5;
constexpr int kMaxEvictPerVisit = 16;
// With -M only expired items may be reclaimed: look at this many partitions
// before answering out of memory (the sweeper does the thorough work).
constexpr int kNoEvictScan = 64;
// Bounded retries of reserve-then-evict: other threads may take the room we
// just made, but each round either makes room or gives up.
constexpr int kMaxReserveRounds = 64;

// Sweeper: buckets examined per lock hold (keeps worker stalls to a few
// microseconds) and items examined per background pass.
constexpr uint32_t kSweepChunk = 64;
constexpr size_t kSweepBudget = 100000;

// memcached's ITEM_UPDATE_INTERVAL: an item fetched within this many seconds
// before being evicted counts as evicted_active.
constexpr rel_time_t kActiveWindow = 60;

// The partition this thread holds through a Txn, if any (see file comment).
thread_local Partition* t_held = nullptr;

}  // namespace

// Cache-line aligned so that neighbouring partitions' mutexes and counters,
// written by different workers, do not share lines.
class alignas(64) Partition {
 public:
  std::mutex mu;
  Item** buckets = nullptr;
  uint32_t mask = 0;  // bucket count - 1 (a power of two)
  uint32_t count = 0;
  Item* lru_head = nullptr;  // most recently used
  Item* lru_tail = nullptr;  // least recently used: eviction starts here
  // flush_all state (memcached's settings.oldest_live / oldest_cas), per
  // partition so a replica can follow each partition's primary exactly
  // (Store::flush_partition). Guarded by mu, like everything dead() reads.
  rel_time_t oldest_live = 0;
  uint64_t oldest_cas = 0;

  PartCounter curr_items, bytes, total_items;
  PartCounter evictions, evicted_unfetched, evicted_active;
  PartCounter expired_unfetched, reclaimed, crawler_reclaimed;

  Item** bucket(uint64_t hash) { return &buckets[(hash >> kBucketShift) & mask]; }
};

// mallocx flags for every item: one arena shared by all threads and stores,
// without thread caches. jemalloc otherwise gives each thread its own arena
// and cache, and the memory an eviction frees on one worker could only be
// reused by allocations on that worker: measured at -m 64 with -t 4, RSS
// reached 118 MiB instead of about 80. If the arena cannot be created the
// default arenas are used.
namespace {
int item_mallocx_flags() {
  static const int flags = [] {
#if defined(__SANITIZE_THREAD__)
    // Not under ThreadSanitizer: jemalloc's fork handler locks every
    // arena's mutexes, and with this arena beside the one MALLOC_CONF=
    // narenas:1 leaves (scripts/test.sh stage 3) that passed the 64 locks
    // per thread TSan's deadlock detector tracks: its CHECK failed in
    // t/unit_replication, which forks its secondaries. Which arena items
    // come from changes nothing TSan checks.
    return 0;
#endif
    unsigned arena = 0;
    size_t len = sizeof arena;
    if (mallctl("arenas.create", &arena, &len, nullptr, 0) != 0) return 0;
    return static_cast<int>(MALLOCX_ARENA(arena) | MALLOCX_TCACHE_NONE);
  }();
  return flags;
}
}  // namespace

struct Store::Impl {
  Impl(Store* s, const Options& o) : store(s), opts(o), parts(new Partition[kPartitions]) {
    for (uint32_t i = 0; i < kPartitions; ++i) {
      parts[i].buckets = static_cast<Item**>(calloc(kInitialBuckets, sizeof(Item*)));
      if (parts[i].buckets == nullptr) throw std::bad_alloc();
      parts[i].mask = kInitialBuckets - 1;
    }
  }

  Store* store;
  const Options opts;
  const int item_flags = item_mallocx_flags();
  std::unique_ptr<Partition[]> parts;

  // Bytes jemalloc gave to items, linked or not. The one shared counter on
  // the allocation path; kept on its own cache line.
  alignas(64) std::atomic<uint64_t> mem_used{0};
  alignas(64) std::atomic<uint64_t> cas_counter{0};
  alignas(64) std::atomic<uint32_t> sweep_cursor{0};
  // set_effect_sink; read by Store::begin. Atomic (acquire: a plain load on
  // x86) so installing it while workers run is not a data race; the sink
  // itself must stay alive until no Txn can still hold it.
  std::atomic<EffectSink*> sink{nullptr};

  std::mutex sweeper_mu;
  std::condition_variable sweeper_cv;
  bool sweeper_stop = false;
  std::thread sweeper;

  uint64_t next_cas() {
    return opts.use_cas ? cas_counter.fetch_add(1, std::memory_order_relaxed) + 1 : 0;
  }

  // 0 = live, 1 = expired, 2 = flushed (the Txn::find why_missing codes).
  // Flushed first, as memcached's do_item_get checks item_is_flushed first.
  // REQUIRES: p->mu held (p is the item's partition).
  static int dead(const Partition* p, const Item* it, rel_time_t now) {
    rel_time_t ol = p->oldest_live;
    if (ol != 0 && ol <= now) {
      uint64_t oc = p->oldest_cas;
      if (it->time <= ol || (oc != 0 && it->cas != 0 && it->cas < oc)) return 2;
    }
    if (it->exptime != 0 && it->exptime <= now) return 1;
    return 0;
  }

  // Pointer to the chain link that points at the item with this key, or nullptr.
  static Item** find_link(Partition* p, uint64_t hash, std::string_view key) {
    for (Item** link = p->bucket(hash); *link != nullptr; link = &(*link)->hash_next) {
      Item* it = *link;
      if (it->hash == hash && it->nkey == key.size() && memcmp(it->data, key.data(), key.size()) == 0) {
        return link;
      }
    }
    return nullptr;
  }

  static void lru_remove(Partition* p, Item* it) {
    if (it->lru_prev) it->lru_prev->lru_next = it->lru_next; else p->lru_head = it->lru_next;
    if (it->lru_next) it->lru_next->lru_prev = it->lru_prev; else p->lru_tail = it->lru_prev;
    it->lru_prev = it->lru_next = nullptr;
  }

  static void lru_push_front(Partition* p, Item* it) {
    it->lru_prev = nullptr;
    it->lru_next = p->lru_head;
    if (p->lru_head) p->lru_head->lru_prev = it; else p->lru_tail = it;
    p->lru_head = it;
  }

  // Doubles the bucket array once the load factor passes 1, so chains stay
  // about one item long at any size. The allocation is amortised over the
  // items that filled the table; if it fails the table just stays denser.
  static void maybe_grow(Partition* p) {
    uint32_t n = p->mask + 1;
    if (p->count <= n || n >= (1u << 30)) return;
    uint32_t new_n = n * 2;
    auto* nb = static_cast<Item**>(calloc(new_n, sizeof(Item*)));
    if (nb == nullptr) return;
    for (uint32_t b = 0; b < n; ++b) {
      Item* it = p->buckets[b];
      while (it != nullptr) {
        Item* next = it->hash_next;
        Item** slot = &nb[(it->hash >> kBucketShift) & (new_n - 1)];
        it->hash_next = *slot;
        *slot = it;
        it = next;
      }
    }
    free(p->buckets);
    p->buckets = nb;
    p->mask = new_n - 1;
  }

  // Unlinks the item `*link` points at (its chain link) and frees it.
  void unlink_at(Partition* p, Item** link) {
    Item* it = *link;
    *link = it->hash_next;
    lru_remove(p, it);
    p->count--;
    p->curr_items.sub(1);
    p->bytes.sub(it->alloc_size);
    it->iflags &= ~kItemLinked;
    free_item(it);
  }

  void unlink(Partition* p, Item* it) {
    Item** link = p->bucket(it->hash);
    while (*link != it) {
      assert(*link != nullptr);
      link = &(*link)->hash_next;
    }
    unlink_at(p, link);
  }

  void free_item(Item* it) {
    size_t sz = it->alloc_size;
    sdallocx(it, sz, item_flags);
    mem_used.fetch_sub(sz, std::memory_order_relaxed);
  }

  // Reclaims expired/flushed items among the last kTailScan of p's LRU.
  // REQUIRES: p->mu held. Returns bytes freed.
  size_t reclaim_tail(Partition* p, rel_time_t now) {
    size_t freed = 0;
    Item* it = p->lru_tail;
    for (int i = 0; i < kTailScan && it != nullptr; ++i) {
      Item* prev = it->lru_prev;
      int why = dead(p, it, now);
      if (why != 0) {
        p->reclaimed.add();
        if (why == 1 && !(it->iflags & kItemFetched)) p->expired_unfetched.add();
        freed += it->alloc_size;
        unlink(p, it);
      }
      it = prev;
    }
    return freed;
  }

  // The item eviction may take from p, after giving active tail items their
  // second chance: each goes back to the LRU head with its kItemActive bit
  // cleared, as memcached moves ITEM_ACTIVE tail items to WARM. Returns
  // nullptr when p is empty or spared this round (its tail was active and
  // alone, or kTailScan active items were moved up). Together with the clock
  // hand over partitions this is CLOCK: an item fetched again before the
  // hand comes back survives. REQUIRES: p->mu held.
  static Item* victim_candidate(Partition* p) {
    for (int i = 0; i < kTailScan; ++i) {
      Item* t = p->lru_tail;
      if (t == nullptr || !(t->iflags & kItemActive)) return t;
      t->iflags &= ~kItemActive;
      if (t == p->lru_head) return nullptr;
      lru_remove(p, t);
      lru_push_front(p, t);
    }
    return nullptr;
  }

  // Evicts `it` (from victim_candidate). REQUIRES: p->mu held. Returns bytes freed.
  size_t evict(Partition* p, Item* it, rel_time_t now) {
    size_t sz = it->alloc_size;
    p->evictions.add();
    if (!(it->iflags & kItemFetched)) {
      p->evicted_unfetched.add();
    } else if (now - it->time < kActiveWindow) {
      p->evicted_active.add();
    }
    unlink(p, it);
    return sz;
  }

  // Next partition for this thread's eviction clock hand. Per-thread hands,
  // seeded apart, so evicting threads neither share a cache line nor all
  // start at the same partition.
  Partition* next_victim_partition() {
    thread_local uint32_t hand =
        static_cast<uint32_t>(std::hash<std::thread::id>{}(std::this_thread::get_id()) * 2654435761u);
    return &parts[hand++ % kPartitions];
  }

  // Frees at least `need` bytes if it can: expired items near LRU tails
  // first, then (unless -M) the LRU tail that is oldest among a few sampled
  // partitions, which approximates one global LRU because keys spread
  // uniformly over partitions. Never blocks and never touches t_held.
  // Returns the bytes freed (0: nothing could be freed).
  size_t make_room(size_t need) {
    Partition* held = t_held;
    const rel_time_t now = clock::now();
    const int idle_limit = opts.evict ? 2 * static_cast<int>(kPartitions) : kNoEvictScan;
    size_t freed = 0;
    int idle = 0;  // partitions visited in a row without gain
    while (freed < need && idle < idle_limit) {
      Partition* best = nullptr;
      rel_time_t best_time = 0;
      uint64_t best_cas = 0;
      uint32_t best_count = 0;
      for (int k = 0; k < kEvictSample && freed < need && idle < idle_limit; ++k) {
        Partition* p = next_victim_partition();
        if (p == held || !p->mu.try_lock()) {
          ++idle;
          continue;
        }
        size_t got = reclaim_tail(p, now);
        freed += got;
        idle = got ? 0 : idle + 1;
        // Oldest tail loses. Times are whole seconds, so within a second
        // the lower cas (stored earlier) loses, and without cas (-C) the
        // fuller partition: otherwise small partitions would lose their
        // newest items as fast as big ones lose their oldest.
        if (Item* tail = opts.evict ? victim_candidate(p) : nullptr) {
          if (best == nullptr || tail->time < best_time ||
              (tail->time == best_time &&
               (tail->cas < best_cas || (tail->cas == best_cas && p->count > best_count)))) {
            best = p;
            best_time = tail->time;
            best_cas = tail->cas;
            best_count = p->count;
          }
        }
        p->mu.unlock();
      }
      if (freed >= need || !opts.evict || best == nullptr) continue;
      if (!best->mu.try_lock()) continue;
      int n = 0;
      while (freed < need && n < kMaxEvictPerVisit) {
        Item* victim = victim_candidate(best);
        if (victim == nullptr) break;
        freed += evict(best, victim, now);
        ++n;
      }
      best->mu.unlock();
      if (n > 0) idle = 0;
    }
    return freed;
  }

  // Accounts `size` bytes against mem_limit, evicting to make room.
  bool reserve(size_t size) {
    const size_t limit = opts.mem_limit;
    if (limit == 0) {  // memcached: -m 0 means no limit
      mem_used.fetch_add(size, std::memory_order_relaxed);
      return true;
    }
    if (size > limit) return false;
    for (int round = 0; round < kMaxReserveRounds; ++round) {
      uint64_t used = mem_used.load(std::memory_order_relaxed);
      while (used + size <= limit) {
        if (mem_used.compare_exchange_weak(used, used + size, std::memory_order_relaxed)) return true;
      }
      if (make_room(used + size - limit) == 0) return false;
    }
    return false;
  }

  ItemPtr allocate(std::string_view key, uint64_t hash, uint32_t client_flags, rel_time_t exptime,
                   size_t nbytes, AllocError* err) {
    AllocError dummy;
    if (err == nullptr) err = &dummy;
    assert(key.size() <= kKeyMaxLength);
    if (!store->fits(key.size(), nbytes)) {
      *err = AllocError::kTooLarge;
      return nullptr;
    }
    const size_t total = sizeof(Item) + key.size() + nbytes + 2;
    const size_t size = nallocx(total, item_flags);
    if (size == 0 || !reserve(size)) {
      *err = AllocError::kNoMemory;
      return nullptr;
    }
    void* mem = mallocx(size, item_flags);
    if (mem == nullptr) {
      mem_used.fetch_sub(size, std::memory_order_relaxed);
      *err = AllocError::kNoMemory;
      return nullptr;
    }
    // nallocx promises this is the real size; trust but keep the books exact.
    const size_t real = sallocx(mem, item_flags);
    if (real != size) mem_used.fetch_add(real - size, std::memory_order_relaxed);
    Item* it = static_cast<Item*>(mem);
    it->hash_next = it->lru_prev = it->lru_next = nullptr;
    it->hash = hash;
    it->cas = 0;
    it->exptime = exptime;
    it->time = clock::now();
    it->client_flags = client_flags;
    it->nbytes = static_cast<uint32_t>(nbytes);
    it->alloc_size = static_cast<uint32_t>(real);
    it->nkey = static_cast<uint8_t>(key.size());
    it->iflags = 0;
    memcpy(it->data, key.data(), key.size());
    memcpy(it->data + key.size() + nbytes, "\r\n", 2);
    *err = AllocError::kNone;
    return ItemPtr(it, ItemDeleter{store});
  }

  // Reclaims dead items in partitions from sweep_cursor on; see Store::sweep.
  size_t sweep(size_t max_items) {
    Partition* held = t_held;
    size_t examined = 0, reclaimed = 0;
    for (uint32_t visited = 0; visited < kPartitions && examined < max_items; ++visited) {
      Partition* p = &parts[sweep_cursor.fetch_add(1, std::memory_order_relaxed) % kPartitions];
      if (p == held) continue;
      // Walk the buckets a chunk per lock hold. If the table grows between
      // chunks a few chains are seen twice or skipped until the next pass:
      // harmless, find() still hides what is dead.
      for (uint32_t b = 0;;) {
        if (!p->mu.try_lock()) break;  // busy: a worker has it; come back next pass
        const rel_time_t now = clock::now();
        uint32_t n = p->mask + 1;
        uint32_t end = b + kSweepChunk < n ? b + kSweepChunk : n;
        for (; b < end; ++b) {
          Item** link = &p->buckets[b];
          while (*link != nullptr) {
            Item* it = *link;
            ++examined;
            int why = dead(p, it, now);
            if (why == 0) {
              link = &it->hash_next;
              continue;
            }
            p->crawler_reclaimed.add();
            if (why == 1 && !(it->iflags & kItemFetched)) p->expired_unfetched.add();
            ++reclaimed;
            unlink_at(p, link);
          }
        }
        p->mu.unlock();
        if (b >= n) break;
      }
    }
    return reclaimed;
  }

  void sweeper_main() {
    std::unique_lock<std::mutex> lock(sweeper_mu);
    while (!sweeper_stop) {
      sweeper_cv.wait_for(lock, std::chrono::milliseconds(std::max(1u, opts.sweeper_interval_ms)),
                          [this] { return sweeper_stop; });
      if (sweeper_stop) break;
      lock.unlock();
      sweep(kSweepBudget);
      lock.lock();
    }
  }
};

// ----- ItemDeleter -----

void ItemDeleter::operator()(Item* it) const {
  if (store != nullptr) {
    store->free_item(it);
  } else {  // not from a Store: still a jemalloc allocation
    sdallocx(it, it->alloc_size, 0);
  }
}

// ----- Txn -----

Txn::Txn(Store* store, Partition* part, std::string_view key, uint64_t hash, EffectSink* sink)
    : store_(store), part_(part), key_(key), hash_(hash), sink_(sink) {}

Txn::Txn(Txn&& other) noexcept
    : store_(other.store_), part_(other.part_), key_(other.key_), hash_(other.hash_),
      sink_(other.sink_), tracked_(other.tracked_), changed_(other.changed_),
      snap_bits_(other.snap_bits_), snap_flags_(other.snap_flags_),
      snap_exptime_(other.snap_exptime_), snap_cas_(other.snap_cas_),
      snap_it_(other.snap_it_) {
  other.part_ = nullptr;
}

Txn::~Txn() {
  if (part_ != nullptr) {
    if (sink_ != nullptr) report();  // still locked: per-key order holds
    t_held = nullptr;
    part_->mu.unlock();
  }
}

// The fields a command may change in place (the rest of iflags are access
// bookkeeping: fetched, active, linked).
static constexpr uint8_t kReplicatedBits = kItemStale | kItemTokenSent;

void Txn::snapshot(const Item* it) {
  tracked_ = true;
  snap_it_ = it;
  if (it == nullptr) return;
  snap_cas_ = it->cas;
  snap_exptime_ = it->exptime;
  snap_flags_ = it->client_flags;
  snap_bits_ = it->iflags & kReplicatedBits;
}

// key_ may point into an item about to be freed (store.h allows a key view
// of the replaced item); the sink still needs the key at ~Txn, so copy it
// to this thread's buffer (a thread holds one Txn at a time).
void Txn::keep_key(const Item* it) {
  static thread_local char t_key[kKeyMaxLength];
  const char* k = key_.data();
  if (k >= it->data && k < it->data + it->nkey + size_t{it->nbytes} + 2) {
    std::copy(key_.begin(), key_.end(), t_key);
    key_ = std::string_view(t_key, key_.size());
  }
}

void Txn::report() {
  const Item* after;
  if (changed_) {
    Item** link = Store::Impl::find_link(part_, hash_, key_);
    after = link != nullptr ? *link : nullptr;
  } else {
    const Item* it = snap_it_;
    if (it == nullptr) return;  // only read, or missed, or lazily reclaimed
    if (it->cas == snap_cas_ && it->exptime == snap_exptime_ && it->client_flags == snap_flags_ &&
        (it->iflags & kReplicatedBits) == snap_bits_) {
      return;
    }
    after = it;
  }
  sink_->on_change(static_cast<uint32_t>(hash_ % kPartitions), key_, after);
}

Item* Txn::find(int* why_missing) {
  if (why_missing) *why_missing = 0;
  Store::Impl* impl = store_->impl_.get();
  Item** link = Store::Impl::find_link(part_, hash_, key_);
  if (link == nullptr) {
    if (sink_ != nullptr && !tracked_) snapshot(nullptr);
    return nullptr;
  }
  int why = Store::Impl::dead(part_, *link, clock::now());
  if (why == 0) {
    if (sink_ != nullptr && !tracked_) snapshot(*link);
    return *link;
  }
  if (why_missing) *why_missing = why;
  // Lazy reclaim is not a change (every replica expires on its own).
  if (sink_ != nullptr) {
    if (snap_it_ == *link) snap_it_ = nullptr;
    tracked_ = true;
    keep_key(*link);
  }
  impl->unlink_at(part_, link);
  return nullptr;
}

void Txn::bump(Item* it, bool fetch) {
  if (fetch) it->iflags |= kItemFetched;
  // Move an item at most once per second (memcached waits 60: its
  // ITEM_UPDATE_INTERVAL). Relinking writes three neighbours' cache lines,
  // which costs more than the rest of a get; and eviction compares whole
  // seconds anyway, so the list stays ordered by `time`.
  // A fetch that skips the relink marks the item active instead, so
  // eviction moves it up rather than evicting it (see victim_candidate).
  const rel_time_t now = clock::now();
  if (it->time == now) {
    if (fetch) it->iflags |= kItemActive;
    return;
  }
  it->time = now;
  it->iflags &= ~kItemActive;
  if (part_->lru_head != it) {
    Store::Impl::lru_remove(part_, it);
    Store::Impl::lru_push_front(part_, it);
  }
}

Item* Txn::link(ItemPtr item, uint64_t cas) {
  Store::Impl* impl = store_->impl_.get();
  Item* it = item.release();
  assert(it->hash == hash_);
  assert(it->key() == key_);
  changed_ = true;
  // Replace whatever holds the key now, live or dead. Compare with the new
  // item's key: key_ may point into the item being replaced.
  if (Item** old = Store::Impl::find_link(part_, it->hash, it->key())) {
    if (sink_ != nullptr) keep_key(*old);
    impl->unlink_at(part_, old);
  }
  it->cas = impl->opts.use_cas ? (cas != 0 ? cas : impl->next_cas()) : 0;
  it->time = clock::now();
  it->iflags |= kItemLinked;
  Item** head = part_->bucket(it->hash);
  it->hash_next = *head;
  *head = it;
  Store::Impl::lru_push_front(part_, it);
  part_->count++;
  part_->curr_items.add();
  part_->total_items.add();
  part_->bytes.add(it->alloc_size);
  Store::Impl::maybe_grow(part_);
  return it;
}

void Txn::unlink(Item* it) {
  assert(it->iflags & kItemLinked);
  changed_ = true;
  if (sink_ != nullptr) keep_key(it);
  store_->impl_->unlink(part_, it);
}

ItemPtr Txn::allocate(uint32_t client_flags, rel_time_t exptime, size_t nbytes, AllocError* err) {
  return store_->impl_->allocate(key_, hash_, client_flags, exptime, nbytes, err);
}

uint64_t Txn::next_cas() { return store_->impl_->next_cas(); }

void Txn::raise_cas(uint64_t cas) {
  auto& counter = store_->impl_->cas_counter;
  uint64_t cur = counter.load(std::memory_order_relaxed);
  while (cur < cas && !counter.compare_exchange_weak(cur, cas, std::memory_order_relaxed)) {
  }
}

// ----- Store -----

Store::Store(const Options& opts) : opts_(opts), impl_(std::make_unique<Impl>(this, opts)) {
  if (opts_.sweeper) impl_->sweeper = std::thread([this] { impl_->sweeper_main(); });
}

Store::~Store() {
  if (impl_->sweeper.joinable()) {
    {
      std::lock_guard<std::mutex> lock(impl_->sweeper_mu);
      impl_->sweeper_stop = true;
    }
    impl_->sweeper_cv.notify_all();
    impl_->sweeper.join();
  }
  for (uint32_t i = 0; i < kPartitions; ++i) {
    Partition& p = impl_->parts[i];
    for (Item* it = p.lru_head; it != nullptr;) {
      Item* next = it->lru_next;
      impl_->free_item(it);
      it = next;
    }
    free(p.buckets);
    p.buckets = nullptr;
  }
}

uint64_t Store::hash(std::string_view key) { return XXH3_64bits(key.data(), key.size()); }

Txn Store::begin(std::string_view key) {
  // One Txn per thread at a time (store.h); a second would deadlock or break
  // the try_lock-only rule that keeps eviction deadlock-free.
  assert(t_held == nullptr);
  uint64_t h = hash(key);
  Partition* p = &impl_->parts[h % kPartitions];
  p->mu.lock();
  t_held = p;
  return Txn(this, p, key, h, impl_->sink.load(std::memory_order_acquire));
}

ItemPtr Store::allocate(std::string_view key, uint32_t client_flags, rel_time_t exptime, size_t nbytes,
                        AllocError* err) {
  return impl_->allocate(key, hash(key), client_flags, exptime, nbytes, err);
}

bool Store::fits(size_t nkey, size_t nbytes) const {
  // Overflow-safe form of sizeof(Item) + nkey + nbytes + 2 <= item_size_max.
  size_t fixed = sizeof(Item) + nkey + 2;
  return fixed <= opts_.item_size_max && nbytes <= opts_.item_size_max - fixed &&
         nbytes <= UINT32_MAX;
}

void Store::flush_all(rel_time_t when) {
  // memcached process_flush_all_command: with CAS on, oldest_live is one
  // second before the deadline and, for an immediate flush, oldest_cas splits
  // the current second: items with a lower cas were stored before the flush.
  assert(t_held == nullptr);
  rel_time_t now = clock::now();
  rel_time_t new_oldest = when > 0 ? when : now;
  rel_time_t ol = new_oldest;
  uint64_t oc = 0;
  bool new_cas = false;  // a delayed flush keeps each partition's oldest_cas
  if (opts_.use_cas) {
    ol = new_oldest - 1;
    if (ol <= now) {
      oc = impl_->next_cas();
      new_cas = true;
    }
  }
  // Partition by partition, each under its lock, so a sink sees the flush
  // in the partition's order of changes (items linked before it in this
  // partition have a lower cas than oc, and were reported before it).
  EffectSink* sink = impl_->sink.load(std::memory_order_acquire);
  for (uint32_t i = 0; i < kPartitions; ++i) {
    Partition& p = impl_->parts[i];
    std::lock_guard<std::mutex> lock(p.mu);
    const uint64_t p_oc = new_cas ? oc : p.oldest_cas;
    if (sink != nullptr && !sink->on_flush(i, ol, p_oc)) continue;
    p.oldest_live = ol;
    p.oldest_cas = p_oc;
  }
}

void Store::flush_partition(uint32_t partition, rel_time_t oldest_live, uint64_t oldest_cas) {
  assert(partition < kPartitions);
  assert(t_held == nullptr);
  Partition& p = impl_->parts[partition];
  std::lock_guard<std::mutex> lock(p.mu);
  p.oldest_live = oldest_live;
  p.oldest_cas = oldest_cas;
}

void Store::set_effect_sink(EffectSink* sink) { impl_->sink.store(sink, std::memory_order_release); }

size_t Store::sweep(size_t max_items) { return impl_->sweep(max_items); }

StoreStats Store::stats() const {
  StoreStats s;
  for (uint32_t i = 0; i < kPartitions; ++i) {
    const Partition& p = impl_->parts[i];
    s.curr_items += p.curr_items.load();
    s.total_items += p.total_items.load();
    s.bytes += p.bytes.load();
    s.evictions += p.evictions.load();
    s.evicted_unfetched += p.evicted_unfetched.load();
    s.evicted_active += p.evicted_active.load();
    s.expired_unfetched += p.expired_unfetched.load();
    s.reclaimed += p.reclaimed.load();
    s.crawler_reclaimed += p.crawler_reclaimed.load();
  }
  s.limit_maxbytes = opts_.mem_limit;
  s.malloced = impl_->mem_used.load(std::memory_order_relaxed);
  return s;
}

void Store::reset_stats() {
  // Under each partition's lock, so a reset cannot be undone by a concurrent
  // single-writer increment. Callers never hold a Txn here.
  for (uint32_t i = 0; i < kPartitions; ++i) {
    Partition& p = impl_->parts[i];
    std::lock_guard<std::mutex> lock(p.mu);
    p.total_items.reset();
    p.evictions.reset();
    p.evicted_unfetched.reset();
    p.evicted_active.reset();
    p.expired_unfetched.reset();
    p.reclaimed.reset();
    p.crawler_reclaimed.reset();
  }
}

void Store::free_item(Item* it) { impl_->free_item(it); }

// Inspection walk (replica digests, ftmemcached-ctl digest).
void Store::for_each_in_partition(uint32_t partition, ItemVisitor visit, void* ctx) {
  struct Ctx {
    ItemVisitor visit;
    void* ctx;
  } c{visit, ctx};
  Walk w;
  w.visit = [](void* x, Item& it) {
    auto* cc = static_cast<Ctx*>(x);
    cc->visit(cc->ctx, it);
    return false;
  };
  w.live_only = true;
  w.ctx = &c;
  walk_partition(partition, w);
}

// Takes the partition's lock like a Txn would, so a walk sees a consistent
// partition and never runs beside a change of it. Dead items are skipped,
// not reclaimed, by a live_only walk, so inspecting a replica never changes
// it; a removing walk unlinks without a Txn, so no effect is reported.
void Store::walk_partition(uint32_t partition, const Walk& walk) {
  assert(partition < kPartitions);
  assert(t_held == nullptr);
  Partition& p = impl_->parts[partition];
  std::lock_guard<std::mutex> lock(p.mu);
  if (walk.on_lock != nullptr) walk.on_lock(walk.ctx, FlushSplit{p.oldest_live, p.oldest_cas});
  const rel_time_t now = clock::now();
  for (uint32_t b = 0; b <= p.mask; ++b) {
    for (Item** link = &p.buckets[b]; *link != nullptr;) {
      Item* it = *link;
      if ((walk.live_only && Store::Impl::dead(&p, it, now) != 0) || !walk.visit(walk.ctx, *it)) {
        link = &it->hash_next;
      } else {
        impl_->unlink_at(&p, link);  // *link is now the next item
      }
    }
  }
}

}  // namespace ftm
