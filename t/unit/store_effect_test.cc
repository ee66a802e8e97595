// The Store's EffectSink: every command family, through exec:: and through
// text_process (text and meta), reports exactly the changes it made, once
// per Txn and in order, with the final item or a tombstone; reads, misses,
// failed conditional stores, lazy expiry, sweeping and eviction report
// nothing.
#include <gtest/gtest.h>

#include <climits>
#include <string>
#include <string_view>
#include <vector>

#include "src/clock.h"
#include "src/execute.h"
#include "src/proto_text.h"
#include "src/session.h"
#include "src/settings.h"
#include "src/stats.h"
#include "src/store.h"

namespace ftm {
namespace {

using exec::ArithResult;
using exec::StoreMode;
using exec::StoreResult;

struct Change {
  uint32_t partition = 0;
  std::string key;
  bool present = false;  // false: tombstone
  std::string value;
  uint32_t flags = 0;
  uint64_t cas = 0;
  rel_time_t exptime = 0;
  uint8_t bits = 0;  // kItemStale | kItemTokenSent
};

class RecordingSink : public EffectSink {
 public:
  void on_change(uint32_t partition, std::string_view key, const Item* after) override {
    Change c;
    c.partition = partition;
    c.key = std::string(key);
    if (after != nullptr) {
      EXPECT_EQ(after->key(), key);
      c.present = true;
      c.value = std::string(after->value());
      c.flags = after->client_flags;
      c.cas = after->cas;
      c.exptime = after->exptime;
      c.bits = after->iflags & (kItemStale | kItemTokenSent);
    }
    changes.push_back(c);
  }
  bool on_flush(uint32_t partition, rel_time_t oldest_live, uint64_t oldest_cas) override {
    flushes.push_back({partition, oldest_live, oldest_cas});
    return partition != skip_partition;
  }

  // Returns and forgets what was recorded.
  std::vector<Change> take() {
    std::vector<Change> r;
    r.swap(changes);
    return r;
  }

  struct Flush {
    uint32_t partition;
    rel_time_t oldest_live;
    uint64_t oldest_cas;
  };
  std::vector<Change> changes;
  std::vector<Flush> flushes;
  uint32_t skip_partition = UINT32_MAX;  // on_flush answers false for it
};

struct Rig {
  explicit Rig(bool use_cas = true, size_t mem_limit = 64u << 20) : store(options(use_cas, mem_limit)) {
    clock::init();
    ctx.store = &store;
    ctx.stats = &stats;
    ctx.settings = &settings;
    session.ctx = &ctx;
    store.set_effect_sink(&sink);
  }
  static Store::Options options(bool use_cas, size_t mem_limit) {
    Store::Options o;
    o.sweeper = false;
    o.use_cas = use_cas;
    o.mem_limit = mem_limit;
    return o;
  }

  std::string send(std::string_view in) {
    std::string out;
    buf.append(in);
    for (;;) {
      ProtoResult r = text_process(session, buf, out, INT_MAX);
      EXPECT_FALSE(r.close);
      buf.erase(0, r.consumed);
      if (!r.yielded) break;
    }
    EXPECT_EQ(buf, "");
    return out;
  }

  // exec::store_item with a freshly allocated item.
  StoreResult put(std::string_view key, std::string_view value, StoreMode mode = StoreMode::kSet,
                  uint32_t flags = 0, uint64_t cas_in = 0) {
    AllocError err;
    ItemPtr it = store.allocate(key, flags, 0, value.size(), &err);
    EXPECT_TRUE(it != nullptr);
    std::copy(value.begin(), value.end(), it->value_buf());
    it->value_buf()[value.size()] = '\r';
    it->value_buf()[value.size() + 1] = '\n';
    return exec::store_item(store, stats, std::move(it), mode, cas_in);
  }

  // The key's current cas (reading reports nothing).
  uint64_t cas_of(std::string_view key) {
    Txn txn = store.begin(key);
    Item* it = txn.find();
    return it ? it->cas : 0;
  }

  Settings settings;
  Store store;
  ThreadStats stats;
  WorkerContext ctx;
  Session session;
  std::string buf;
  RecordingSink sink;
};

// One change: the key's item with this value (cas checked against the store).
void expect_item(Rig& r, const Change& c, std::string_view key, std::string_view value) {
  EXPECT_EQ(c.key, key);
  EXPECT_TRUE(c.present) << key;
  EXPECT_EQ(c.value, value) << key;
  EXPECT_EQ(c.partition, Store::partition_of(key));
  EXPECT_EQ(c.cas, r.cas_of(key)) << key;
}

TEST(StoreEffect, NoSinkNoCalls) {
  Rig r;
  r.store.set_effect_sink(nullptr);
  EXPECT_EQ(r.send("set a 0 0 1\r\nx\r\ndelete a\r\n"), "STORED\r\nDELETED\r\n");
  EXPECT_TRUE(r.sink.changes.empty());
}

TEST(StoreEffect, ExecStoreFamily) {
  Rig r;
  EXPECT_EQ(r.put("k", "v1", StoreMode::kSet, 7), StoreResult::kStored);
  auto c = r.sink.take();
  ASSERT_EQ(c.size(), 1u);
  expect_item(r, c[0], "k", "v1");
  EXPECT_EQ(c[0].flags, 7u);

  EXPECT_EQ(r.put("k", "zz", StoreMode::kAdd), StoreResult::kNotStored);
  EXPECT_EQ(r.put("nope", "zz", StoreMode::kReplace), StoreResult::kNotStored);
  EXPECT_EQ(r.put("nope", "zz", StoreMode::kAppend), StoreResult::kNotStored);
  EXPECT_EQ(r.put("k", "zz", StoreMode::kCas, 0, 999999), StoreResult::kExists);
  EXPECT_EQ(r.put("nope", "zz", StoreMode::kCas, 0, 1), StoreResult::kNotFound);
  EXPECT_TRUE(r.sink.take().empty()) << "failed stores are not changes";

  EXPECT_EQ(r.put("k", "v2", StoreMode::kReplace, 9), StoreResult::kStored);
  EXPECT_EQ(r.put("k", "+a", StoreMode::kAppend), StoreResult::kStored);
  EXPECT_EQ(r.put("k", "p-", StoreMode::kPrepend), StoreResult::kStored);
  EXPECT_EQ(r.put("k", "v3", StoreMode::kCas, 0, r.cas_of("k")), StoreResult::kStored);
  EXPECT_EQ(r.put("n", "1", StoreMode::kAdd), StoreResult::kStored);
  c = r.sink.take();
  ASSERT_EQ(c.size(), 5u);
  EXPECT_EQ(c[0].value, "v2");
  EXPECT_EQ(c[1].value, "v2+a");
  EXPECT_EQ(c[2].value, "p-v2+a");
  EXPECT_EQ(c[2].flags, 9u) << "prepend keeps the old flags";
  expect_item(r, c[3], "k", "v3");
  expect_item(r, c[4], "n", "1");
  EXPECT_LT(c[0].cas, c[1].cas);

  EXPECT_TRUE(exec::remove(r.store, r.stats, "k"));
  EXPECT_FALSE(exec::remove(r.store, r.stats, "k"));
  c = r.sink.take();
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].key, "k");
  EXPECT_FALSE(c[0].present);
}

TEST(StoreEffect, ExecTouchAndArith) {
  Rig r;
  ASSERT_EQ(r.put("n", "10"), StoreResult::kStored);
  r.sink.take();
  rel_time_t exp = clock::realtime(100);
  EXPECT_TRUE(exec::touch(r.store, r.stats, "n", exp));
  EXPECT_FALSE(exec::touch(r.store, r.stats, "missing", exp));
  auto c = r.sink.take();
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].exptime, exp);
  EXPECT_EQ(c[0].value, "10");

  uint64_t v = 0;
  EXPECT_EQ(exec::arith(r.store, r.stats, "n", false, 1, &v), ArithResult::kOk);  // in place: "9 "
  EXPECT_EQ(exec::arith(r.store, r.stats, "n", true, 100, &v), ArithResult::kOk);  // grows: "109"
  EXPECT_EQ(exec::arith(r.store, r.stats, "none", true, 1, &v), ArithResult::kNotFound);
  c = r.sink.take();
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].value, "9 ");
  EXPECT_EQ(c[1].value, "109");
  expect_item(r, c[1], "n", "109");
  EXPECT_EQ(c[1].exptime, exp) << "a grown counter keeps its exptime";

  // Plain get: nothing.
  bool hit = exec::get(r.store, r.stats, "n", [](const Item&) {});
  EXPECT_TRUE(hit);
  EXPECT_TRUE(r.sink.take().empty());
}

TEST(StoreEffect, InPlaceIncrWithoutCasIsReported) {
  Rig r(/*use_cas=*/false);
  ASSERT_EQ(r.send("set n 0 0 2\r\n10\r\nincr n 5\r\n"), "STORED\r\n15\r\n");
  auto c = r.sink.take();
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[1].value, "15");
  EXPECT_EQ(c[1].cas, 0u);
  ASSERT_EQ(r.send("ma n D2\r\n"), "HD\r\n");
  c = r.sink.take();
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].value, "17");
}

TEST(StoreEffect, TextCommands) {
  Rig r;
  std::string out = r.send(
      "set a 1 0 1\r\nA\r\n"        // 1
      "add a 0 0 1\r\nX\r\n"        // none
      "add b 2 0 1\r\nB\r\n"        // 2
      "get a b\r\ngets a\r\n"       // none
      "append a 0 0 1\r\n+\r\n"     // 3
      "prepend a 0 0 1\r\n-\r\n"    // 4
      "touch a 100\r\n"             // 5
      "touch zz 100\r\n"            // none
      "gat 200 a\r\n"               // 6
      "set c 0 0 2\r\n41\r\n"       // 7
      "incr c 1\r\n"                // 8
      "decr c 50\r\n"               // 9
      "delete b\r\n"                // 10 (tombstone)
      "delete b\r\n"                // none
      "get b\r\n");
  EXPECT_NE(out.find("DELETED"), std::string::npos) << out;
  auto c = r.sink.take();
  ASSERT_EQ(c.size(), 10u) << out;
  const char* keys[] = {"a", "b", "a", "a", "a", "a", "c", "c", "c", "b"};
  for (size_t i = 0; i < 10; ++i) EXPECT_EQ(c[i].key, keys[i]) << i;
  EXPECT_EQ(c[0].flags, 1u);
  EXPECT_EQ(c[3].value, "-A+");
  EXPECT_EQ(c[4].exptime, clock::realtime(100));
  EXPECT_EQ(c[5].exptime, clock::realtime(200));
  EXPECT_LT(c[4].cas, c[6].cas);
  EXPECT_EQ(c[7].value, "42");
  EXPECT_EQ(c[8].value, "0 ");
  EXPECT_FALSE(c[9].present);
  expect_item(r, c[8], "c", "0 ");

  // cas: mismatch is nothing, match is one change.
  uint64_t cas = r.cas_of("c");
  out = r.send("cas c 0 0 1 1\r\nX\r\ncas c 0 0 1 " + std::to_string(cas) + "\r\nY\r\n");
  EXPECT_EQ(out, "EXISTS\r\nSTORED\r\n");
  c = r.sink.take();
  ASSERT_EQ(c.size(), 1u);
  expect_item(r, c[0], "c", "Y");
}

TEST(StoreEffect, MetaCommands) {
  Rig r;
  EXPECT_EQ(r.send("ms m 2 F5 T0\r\nhi\r\n"), "HD\r\n");
  auto c = r.sink.take();
  ASSERT_EQ(c.size(), 1u);
  expect_item(r, c[0], "m", "hi");
  EXPECT_EQ(c[0].flags, 5u);

  // Reads (with or without return flags): nothing.
  r.send("mg m v f c t s k\r\nmg missing v\r\nmn\r\n");
  EXPECT_TRUE(r.sink.take().empty());

  // mg with T touches.
  r.send("mg m T300\r\n");
  c = r.sink.take();
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].exptime, clock::realtime(300));

  // mg with N on a miss creates a stub (and hands out the win token).
  r.send("mg viv N30 v\r\n");
  c = r.sink.take();
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].key, "viv");
  EXPECT_TRUE(c[0].present);
  EXPECT_TRUE(c[0].bits & kItemTokenSent);

  // md with I marks stale in place (new cas, stale bit).
  uint64_t before = r.cas_of("m");
  EXPECT_EQ(r.send("md m I\r\n"), "HD\r\n");
  c = r.sink.take();
  ASSERT_EQ(c.size(), 1u);
  EXPECT_TRUE(c[0].present);
  EXPECT_TRUE(c[0].bits & kItemStale);
  EXPECT_NE(c[0].cas, before);
  // The next mg wins the recache race: the token bit is a change.
  r.send("mg m v\r\n");
  c = r.sink.take();
  ASSERT_EQ(c.size(), 1u);
  EXPECT_TRUE(c[0].bits & kItemTokenSent);
  r.send("mg m v\r\n");
  EXPECT_TRUE(r.sink.take().empty()) << "second reader: nothing changes";

  // md: tombstone; md miss: nothing.
  EXPECT_EQ(r.send("md m\r\nmd m\r\n"), "HD\r\nNF\r\n");
  c = r.sink.take();
  ASSERT_EQ(c.size(), 1u);
  EXPECT_FALSE(c[0].present);

  // ma: vivify, then in place, with E (explicit cas).
  r.send("ma ctr N0 J7\r\nma ctr\r\nma ctr E12345\r\n");
  c = r.sink.take();
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[0].value, "7");
  EXPECT_EQ(c[1].value, "8");
  EXPECT_EQ(c[2].value, "9");
  EXPECT_EQ(c[2].cas, 12345u);
  // E equal to the current cas: the cas does not move, the value does.
  r.send("ma ctr E12345\r\n");
  c = r.sink.take();
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].value, "10");

  // ms with invalid mode on a missing key: nothing; ms mode append.
  r.send("ms ctr 1 MA\r\nx\r\nms gone 1 MR\r\nx\r\n");
  c = r.sink.take();
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].value, "10x");
}

TEST(StoreEffect, FlushAllAsksPerPartition) {
  Rig r;
  r.send("set a 0 0 1\r\nA\r\nset b 0 0 1\r\nB\r\n");
  r.sink.take();
  const uint64_t cas_b = r.cas_of("b");
  // The sink declines b's partition: b stays, a goes.
  r.sink.skip_partition = Store::partition_of("b");
  ASSERT_NE(Store::partition_of("a"), r.sink.skip_partition);
  EXPECT_EQ(r.send("flush_all\r\n"), "OK\r\n");
  ASSERT_EQ(r.sink.flushes.size(), size_t(kPartitions));
  for (uint32_t i = 0; i < kPartitions; ++i) {
    EXPECT_EQ(r.sink.flushes[i].partition, i);
    EXPECT_EQ(r.sink.flushes[i].oldest_live, clock::now() - 1);
    EXPECT_GT(r.sink.flushes[i].oldest_cas, cas_b);  // one split for all
    EXPECT_EQ(r.sink.flushes[i].oldest_cas, r.sink.flushes[0].oldest_cas);
  }
  // Lazy reclaim of the flushed item is not a change.
  EXPECT_EQ(r.send("get a\r\n"), "END\r\n");
  EXPECT_EQ(r.send("get b\r\n"), "VALUE b 0 1\r\nB\r\nEND\r\n");
  EXPECT_TRUE(r.sink.take().empty());
  // What the replica does with a declined partition: the primary's split.
  const auto split = r.sink.flushes[0];
  r.store.flush_partition(Store::partition_of("b"), split.oldest_live, split.oldest_cas);
  EXPECT_EQ(r.send("get b\r\n"), "END\r\n");
  // A delayed flush keeps each partition's oldest_cas.
  r.sink.flushes.clear();
  r.sink.skip_partition = UINT32_MAX;
  EXPECT_EQ(r.send("flush_all 10\r\n"), "OK\r\n");
  ASSERT_EQ(r.sink.flushes.size(), size_t(kPartitions));
  EXPECT_EQ(r.sink.flushes[0].oldest_live, clock::realtime(10) - 1);
  EXPECT_EQ(r.sink.flushes[0].oldest_cas, split.oldest_cas);
  EXPECT_TRUE(r.sink.take().empty());
}

TEST(StoreEffect, ExpiryAndSweepAreNotChanges) {
  Rig r;
  r.send("set e 0 1 1\r\nE\r\nset f 0 1 1\r\nF\r\nset g 0 1 1\r\nG\r\n");
  EXPECT_EQ(r.sink.take().size(), 3u);
  clock::set_offset_for_test(3);
  EXPECT_EQ(r.send("get e\r\n"), "END\r\n");
  EXPECT_EQ(r.send("touch f 100\r\n"), "NOT_FOUND\r\n");
  EXPECT_GE(r.store.sweep(1000), 1u);
  EXPECT_TRUE(r.sink.take().empty());
  // Set over an expired item: one change, the new item.
  r.send("set e 0 0 1\r\nN\r\n");
  auto c = r.sink.take();
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].value, "N");
  clock::set_offset_for_test(-3);  // cumulative: undo
}

TEST(StoreEffect, EvictionIsNotAChange) {
  Rig r(true, 2u << 20);
  std::string value(10000, 'v');
  const int n = 1000;  // ~10 MB through a 2 MB store
  for (int i = 0; i < n; ++i) ASSERT_EQ(r.put("key" + std::to_string(i), value), StoreResult::kStored);
  EXPECT_GT(r.store.stats().evictions, 0u);
  auto c = r.sink.take();
  ASSERT_EQ(c.size(), size_t(n));
  for (int i = 0; i < n; ++i) {
    EXPECT_EQ(c[i].key, "key" + std::to_string(i));
    EXPECT_TRUE(c[i].present);
  }
}

}  // namespace
}  // namespace ftm
