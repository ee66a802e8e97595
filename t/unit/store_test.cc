// Unit tests for the item store (src/store.h): hash table, LRU eviction under
// -m, -M, item size limit, expiry, flush_all, cas uniques, the sweeper.
#include "src/store.h"

#include <gtest/gtest.h>
#include <jemalloc/jemalloc.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace ftm {
namespace {

// gtest_main owns main(): start the server clock from a global environment.
class ClockEnv : public ::testing::Environment {
 public:
  void SetUp() override { clock::init(); }
};
[[maybe_unused]] ::testing::Environment* const g_clock_env =
    ::testing::AddGlobalTestEnvironment(new ClockEnv);

Store::Options Opts(size_t mem_limit = 64u << 20, bool evict = true) {
  Store::Options o;
  o.mem_limit = mem_limit;
  o.evict = evict;
  o.sweeper = false;  // tests drive sweeping themselves unless they test it
  return o;
}

// Sets key=value (like a "set" without the execute layer). Returns the cas,
// or 0 if allocation failed (err says why).
uint64_t Put(Store& s, std::string_view key, std::string_view value, rel_time_t exptime = 0,
             AllocError* err_out = nullptr) {
  AllocError err;
  ItemPtr it = s.allocate(key, 7, exptime, value.size(), &err);
  if (err_out) *err_out = err;
  if (!it) return 0;
  memcpy(it->value_buf(), value.data(), value.size());
  Txn txn = s.begin(key);
  return txn.link(std::move(it))->cas;
}

// The value stored under key, or "<miss>" (why_missing appended if not 0).
std::string Get(Store& s, std::string_view key, bool bump = true) {
  Txn txn = s.begin(key);
  int why = 0;
  Item* it = txn.find(&why);
  if (it == nullptr) return why ? "<miss" + std::to_string(why) + ">" : "<miss>";
  if (bump) txn.bump(it, true);
  return std::string(it->value());
}

std::string Key(int i) { return "key:" + std::to_string(i); }

TEST(Store, SetGetReplaceDelete) {
  Store s(Opts());
  EXPECT_EQ(Get(s, "a"), "<miss>");
  Put(s, "a", "hello");
  EXPECT_EQ(Get(s, "a"), "hello");
  {
    Txn txn = s.begin("a");
    Item* it = txn.find();
    ASSERT_NE(it, nullptr);
    EXPECT_EQ(it->key(), "a");
    EXPECT_EQ(it->client_flags, 7u);
    EXPECT_EQ(it->value_crlf(), "hello\r\n");
    EXPECT_TRUE(it->iflags & kItemLinked);
    EXPECT_TRUE(it->iflags & kItemFetched);  // bumped by Get
  }
  Put(s, "a", "world!");
  EXPECT_EQ(Get(s, "a"), "world!");
  EXPECT_EQ(s.stats().curr_items, 1u);
  EXPECT_EQ(s.stats().total_items, 2u);
  {
    Txn txn = s.begin("a");
    txn.unlink(txn.find());
  }
  EXPECT_EQ(Get(s, "a"), "<miss>");
  StoreStats st = s.stats();
  EXPECT_EQ(st.curr_items, 0u);
  EXPECT_EQ(st.bytes, 0u);
  EXPECT_EQ(st.malloced, 0u);
}

TEST(Store, ManyKeysStayFindable) {
  // Exercises bucket growth: 300k keys in 1024 partitions.
  Store s(Opts(256u << 20));
  const int n = 300000;
  for (int i = 0; i < n; ++i) Put(s, Key(i), std::to_string(i));
  for (int i = 0; i < n; ++i) ASSERT_EQ(Get(s, Key(i), false), std::to_string(i));
  EXPECT_EQ(s.stats().curr_items, static_cast<uint64_t>(n));
  EXPECT_EQ(s.stats().evictions, 0u);
}

TEST(Store, AccountsRealAllocationSizes) {
  Store s(Opts());
  AllocError err;
  ItemPtr it = s.allocate("k", 0, 0, 1000, &err);
  ASSERT_TRUE(it);
  EXPECT_EQ(err, AllocError::kNone);
  EXPECT_EQ(it->alloc_size, sallocx(it.get(), 0));
  EXPECT_GE(it->alloc_size, sizeof(Item) + 1 + 1000 + 2);
  EXPECT_EQ(s.stats().malloced, it->alloc_size);
  EXPECT_EQ(s.stats().bytes, 0u);  // not linked yet
  it.reset();
  EXPECT_EQ(s.stats().malloced, 0u);
}

TEST(Store, TooLarge) {
  Store::Options o = Opts();
  o.item_size_max = 1u << 20;
  Store s(o);
  const size_t max_value = o.item_size_max - sizeof(Item) - 3 - 2;  // key "big"
  EXPECT_TRUE(s.fits(3, max_value));
  EXPECT_FALSE(s.fits(3, max_value + 1));
  EXPECT_FALSE(s.fits(3, SIZE_MAX));
  AllocError err;
  EXPECT_FALSE(s.allocate("big", 0, 0, max_value + 1, &err));
  EXPECT_EQ(err, AllocError::kTooLarge);
  ItemPtr it = s.allocate("big", 0, 0, max_value, &err);
  EXPECT_TRUE(it);
  EXPECT_EQ(err, AllocError::kNone);
}

TEST(Store, MaxSizeItemsAlwaysFitWithDefaultLimits) {
  // memcached -m 64 -I 1m must be able to store max-size items forever:
  // eviction makes room for them however full the store is.
  Store s(Opts(64u << 20));
  const size_t big = (1u << 20) - sizeof(Item) - 16 - 2;
  std::string small(100, 's');
  for (int i = 0; i < 200000; ++i) Put(s, Key(i), small);
  std::string value(big, 'v');
  for (int round = 0; round < 100; ++round) {
    std::string key = "big:" + std::to_string(round);
    key.resize(16, '.');
    AllocError err;
    ASSERT_NE(Put(s, key, value, 0, &err), 0u) << "round " << round;
    ASSERT_LE(s.stats().malloced, 64u << 20);
  }
  EXPECT_GT(s.stats().evictions, 0u);
}

TEST(Store, EvictionKeepsMemoryUnderLimit) {
  const size_t limit = 8u << 20;
  Store s(Opts(limit));
  std::string value(200, 'x');
  for (int i = 0; i < 200000; ++i) {
    ASSERT_NE(Put(s, Key(i), value), 0u);
    ASSERT_LE(s.stats().malloced, limit);
  }
  StoreStats st = s.stats();
  EXPECT_GT(st.evictions, 0u);
  EXPECT_EQ(st.evictions, st.evicted_unfetched);  // none of them was read
  EXPECT_EQ(st.curr_items + st.evictions, 200000u);
  EXPECT_LE(st.bytes, limit);
  // The store stays nearly full: eviction frees only what it needs.
  EXPECT_GT(st.bytes, limit * 9 / 10);
  // The newest items are still there.
  for (int i = 199000; i < 200000; ++i) ASSERT_EQ(Get(s, Key(i), false), value);
}

TEST(Store, EvictionWithoutCasPrefersOlderItems) {
  // -C: no cas to order items stored in the same second; eviction falls back
  // to the fuller partition, which still keeps the newest items mostly alive.
  Store::Options o = Opts(8u << 20);
  o.use_cas = false;
  Store s(o);
  std::string value(200, 'x');
  for (int i = 0; i < 200000; ++i) Put(s, Key(i), value);
  int alive = 0;
  for (int i = 199000; i < 200000; ++i) alive += Get(s, Key(i), false) == value;
  EXPECT_GE(alive, 950);
  EXPECT_LE(s.stats().malloced, 8u << 20);
}

TEST(Store, EvictionRespectsLru) {
  // 8 MiB of 200-byte values (320-byte allocations): ~24 items per
  // partition, so per-partition LRU order and cross-partition choice both
  // matter.
  Store s(Opts(8u << 20));
  std::string value(200, 'x');
  const int n = 24000;
  for (int i = 0; i < n; ++i) Put(s, Key(i), value);
  ASSERT_EQ(s.stats().evictions, 0u);
  clock::set_offset_for_test(2);
  for (int i = 0; i < n; i += 10) ASSERT_EQ(Get(s, Key(i)), value);  // read every 10th
  clock::set_offset_for_test(2);
  // Push out about half of the store with new items.
  for (int i = n; i < n + n / 2; ++i) Put(s, "new:" + std::to_string(i), value);
  StoreStats st = s.stats();
  ASSERT_GT(st.evictions, static_cast<uint64_t>(n / 4));
  EXPECT_EQ(st.evicted_active, 0u);
  EXPECT_EQ(st.evicted_unfetched, st.evictions);  // victims are the unread ones
  for (int i = 0; i < n; i += 10) EXPECT_EQ(Get(s, Key(i), false), value) << Key(i);
  for (int i = n; i < n + n / 2; ++i) EXPECT_EQ(Get(s, "new:" + std::to_string(i), false), value);
}

// Regression: an item read in the same second it was stored (so bump did not
// relink it) was evicted first under a burst of writes in that second,
// because the throttled bump left it at the LRU tail. Like memcached's
// ITEM_ACTIVE, a fetch now earns the item a second chance at the tail.
TEST(Store, ItemReadInTheSameSecondSurvivesEviction) {
  Store s(Opts(8u << 20));
  std::string value(10000, 'v');
  Put(s, "hot", value);
  for (int i = 0; i < 4000; ++i) {  // ~5x the limit, all within this second
    Put(s, Key(i), value);
    if (i % 50 == 0) ASSERT_EQ(Get(s, "hot"), value) << "after " << i << " sets";
  }
  EXPECT_GT(s.stats().evictions, 2000u);
  EXPECT_EQ(Get(s, "hot"), value);
}

TEST(Store, NoEvictReturnsNoMemory) {
  const size_t limit = 4u << 20;
  Store s(Opts(limit, /*evict=*/false));
  std::string value(1000, 'x');
  int stored = 0;
  AllocError err = AllocError::kNone;
  for (int i = 0; i < 10000; ++i) {
    if (Put(s, Key(i), value, 0, &err) == 0) break;
    ++stored;
  }
  EXPECT_EQ(err, AllocError::kNoMemory);
  EXPECT_GT(stored, 3000);
  StoreStats st = s.stats();
  EXPECT_EQ(st.evictions, 0u);
  EXPECT_LE(st.malloced, limit);
  for (int i = 0; i < stored; ++i) ASSERT_EQ(Get(s, Key(i), false), value);
  // Removing one item makes room for one more.
  {
    std::string key0 = Key(0);  // a Txn keeps a view of its key
    Txn txn = s.begin(key0);
    txn.unlink(txn.find());
  }
  EXPECT_NE(Put(s, "again", value), 0u);
}

TEST(Store, NoEvictStillReclaimsExpired) {
  const size_t limit = 4u << 20;
  Store s(Opts(limit, /*evict=*/false));
  std::string value(1000, 'x');
  int stored = 0;
  for (int i = 0;; ++i) {
    if (Put(s, Key(i), value, clock::now() + 2) == 0) break;
    ++stored;
  }
  clock::set_offset_for_test(3);
  // All are expired now: new writes reuse their memory.
  for (int i = 0; i < stored / 2; ++i) ASSERT_NE(Put(s, "fresh:" + std::to_string(i), value), 0u) << i;
  EXPECT_GT(s.stats().reclaimed, 0u);
  EXPECT_EQ(s.stats().evictions, 0u);
}

TEST(Store, Expiry) {
  Store s(Opts());
  rel_time_t now = clock::now();
  Put(s, "short", "1", now + 2);
  Put(s, "long", "2", now + 100);
  Put(s, "never", "3", 0);
  Put(s, "past", "4", 1);
  EXPECT_EQ(Get(s, "short"), "1");
  EXPECT_EQ(Get(s, "past"), "<miss1>");
  clock::set_offset_for_test(2);
  EXPECT_EQ(Get(s, "short"), "<miss1>");  // exptime <= now is expired
  EXPECT_EQ(Get(s, "short"), "<miss>");   // and gone
  EXPECT_EQ(Get(s, "long"), "2");
  EXPECT_EQ(Get(s, "never"), "3");
  EXPECT_EQ(s.stats().curr_items, 2u);
}

TEST(Store, FlushAllNow) {
  Store s(Opts());
  Put(s, "a", "1");
  Put(s, "b", "2");
  s.flush_all(0);
  // Same second as the flush: cas order decides.
  Put(s, "c", "3");
  EXPECT_EQ(Get(s, "a"), "<miss2>");
  EXPECT_EQ(Get(s, "b"), "<miss2>");
  EXPECT_EQ(Get(s, "c"), "3");
  clock::set_offset_for_test(1);
  EXPECT_EQ(Get(s, "c"), "3");
  Put(s, "a", "4");
  EXPECT_EQ(Get(s, "a"), "4");
}

TEST(Store, FlushAllNowWithoutCas) {
  Store::Options o = Opts();
  o.use_cas = false;
  Store s(o);
  Put(s, "a", "1");
  s.flush_all(0);
  EXPECT_EQ(Get(s, "a"), "<miss2>");
  // memcached -C: without cas the whole current second is flushed.
  clock::set_offset_for_test(1);
  Put(s, "b", "2");
  EXPECT_EQ(Get(s, "b"), "2");
}

TEST(Store, FlushAllDelayed) {
  Store s(Opts());
  Put(s, "a", "1");
  s.flush_all(clock::now() + 10);
  EXPECT_EQ(Get(s, "a"), "1");
  clock::set_offset_for_test(5);
  Put(s, "b", "2");
  EXPECT_EQ(Get(s, "a"), "1");
  EXPECT_EQ(Get(s, "b"), "2");
  clock::set_offset_for_test(5);
  EXPECT_EQ(Get(s, "a"), "<miss2>");
  EXPECT_EQ(Get(s, "b"), "<miss2>");
  Put(s, "c", "3");
  EXPECT_EQ(Get(s, "c"), "3");
  clock::set_offset_for_test(5);
  EXPECT_EQ(Get(s, "c"), "3");
}

TEST(Store, CasUniquesIncrease) {
  Store s(Opts());
  uint64_t last = 0;
  for (int i = 0; i < 1000; ++i) {
    uint64_t cas = Put(s, Key(i % 10), "v");
    ASSERT_GT(cas, last);
    last = cas;
  }
  {
    Txn txn = s.begin("x");
    uint64_t a = txn.next_cas();
    EXPECT_GT(a, last);
    EXPECT_GT(txn.next_cas(), a);
  }
  // Explicit cas (meta E flag).
  AllocError err;
  ItemPtr it = s.allocate("e", 0, 0, 1, &err);
  it->value_buf()[0] = 'e';
  Txn txn = s.begin("e");
  EXPECT_EQ(txn.link(std::move(it), 12345)->cas, 12345u);
}

TEST(Store, CasUniquesAcrossThreads) {
  Store s(Opts());
  std::vector<std::vector<uint64_t>> seen(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 5000; ++i) seen[t].push_back(Put(s, Key(t * 100000 + i), "v"));
    });
  }
  for (auto& th : threads) th.join();
  std::vector<uint64_t> all;
  for (auto& v : seen) {
    for (size_t i = 1; i < v.size(); ++i) ASSERT_GT(v[i], v[i - 1]);
    all.insert(all.end(), v.begin(), v.end());
  }
  std::sort(all.begin(), all.end());
  EXPECT_EQ(std::adjacent_find(all.begin(), all.end()), all.end());
}

TEST(Store, CasDisabled) {
  Store::Options o = Opts();
  o.use_cas = false;
  Store s(o);
  EXPECT_EQ(Put(s, "a", "1"), 0u);
  Txn txn = s.begin("a");
  EXPECT_EQ(txn.next_cas(), 0u);
}

TEST(Store, SweepReclaimsExpiredAndFlushed) {
  Store s(Opts());
  for (int i = 0; i < 1000; ++i) Put(s, Key(i), "v", clock::now() + 1);
  for (int i = 1000; i < 1500; ++i) Put(s, Key(i), "v");
  EXPECT_EQ(s.sweep(SIZE_MAX), 0u);
  clock::set_offset_for_test(2);
  EXPECT_EQ(s.sweep(SIZE_MAX), 1000u);
  StoreStats st = s.stats();
  EXPECT_EQ(st.crawler_reclaimed, 1000u);
  EXPECT_EQ(st.expired_unfetched, 1000u);
  EXPECT_EQ(st.curr_items, 500u);
  s.flush_all(0);
  EXPECT_EQ(s.sweep(SIZE_MAX), 500u);
  EXPECT_EQ(s.stats().curr_items, 0u);
  EXPECT_EQ(s.stats().malloced, 0u);
}

TEST(Store, BackgroundSweeperReclaims) {
  Store::Options o = Opts();
  o.sweeper = true;
  o.sweeper_interval_ms = 10;
  Store s(o);
  for (int i = 0; i < 2000; ++i) Put(s, Key(i), "v", clock::now() + 1);
  clock::set_offset_for_test(2);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (s.stats().curr_items != 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(s.stats().curr_items, 0u);
  EXPECT_EQ(s.stats().crawler_reclaimed, 2000u);
  EXPECT_EQ(s.stats().malloced, 0u);
}

TEST(Store, ResetStats) {
  Store s(Opts(1u << 20));
  std::string value(1000, 'x');
  for (int i = 0; i < 5000; ++i) Put(s, Key(i), value);
  ASSERT_GT(s.stats().evictions, 0u);
  uint64_t items = s.stats().curr_items;
  s.reset_stats();
  StoreStats st = s.stats();
  EXPECT_EQ(st.evictions, 0u);
  EXPECT_EQ(st.total_items, 0u);
  EXPECT_EQ(st.curr_items, items);
  EXPECT_EQ(st.limit_maxbytes, 1u << 20);
}

TEST(Store, AllocateWhileHoldingTxnUnderPressure) {
  // Eviction from inside a Txn (append/incr growth) must skip the held
  // partition and never deadlock with other threads doing the same.
  const size_t limit = 2u << 20;
  Store s(Opts(limit));
  std::atomic<bool> failed{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      std::string value(300, 'a' + t);
      for (int i = 0; i < 20000; ++i) {
        std::string key = Key(rng() % 50000);
        Txn txn = s.begin(key);
        AllocError err;
        ItemPtr it = txn.allocate(0, 0, value.size(), &err);
        if (!it) {
          failed = true;
          continue;
        }
        memcpy(it->value_buf(), value.data(), value.size());
        txn.link(std::move(it));
        if (Item* found = txn.find()) {
          if (found->value() != value) failed = true;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_FALSE(failed);
  EXPECT_LE(s.stats().malloced, limit);
}

TEST(Store, ConcurrentMixedLoad) {
  const size_t limit = 4u << 20;
  Store s(Opts(limit));
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(100 + t);
      for (int i = 0; i < 50000; ++i) {
        int k = rng() % 20000;
        std::string key = Key(k);
        if (rng() % 10 == 0) {
          Put(s, key, std::string(rng() % 500, static_cast<char>('a' + k % 26)));
        } else {
          std::string v = Get(s, key);
          if (v[0] != '<' && v.find_first_not_of(static_cast<char>('a' + k % 26)) != std::string::npos) ++bad;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad, 0);
  EXPECT_LE(s.stats().malloced, limit);
}

}  // namespace
}  // namespace ftm
