// Tests of recovery onto a new secondary (replication/snapshot.h and
// LogApplier::hold/release): snapshot encoding, validation and install on
// plain Stores, then the whole sequence (hold, snapshot under concurrent
// writes, install, release) with a LogWriter and a LogApplier over the tcp
// provider, as replication_log_test.cc sets them up.
#include <xxhash.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "rdma/connection.h"
#include "rdma/fabric_domain.h"
#include "rdma/listener.h"
#include "replication/log_applier.h"
#include "replication/log_ring.h"
#include "replication/log_writer.h"
#include "replication/partition_map.h"
#include "replication/snapshot.h"
#include "src/clock.h"
#include "src/store.h"

namespace ftm::repl {
namespace {

using std::chrono::milliseconds;

Store::Options StoreOptions() {
  Store::Options o;
  o.mem_limit = 256u << 20;
  o.item_size_max = 2u << 20;  // room for 1 MiB values
  o.sweeper = false;
  return o;
}

// Links key -> value the way a client's set does (fresh local cas).
void Set(Store& s, const std::string& key, const std::string& value, uint32_t flags = 0,
         rel_time_t exptime = 0) {
  Txn t = s.begin(key);
  AllocError err;
  ItemPtr it = t.allocate(flags, exptime, value.size(), &err);
  ASSERT_TRUE(it) << key;
  std::memcpy(it->value_buf(), value.data(), value.size());
  std::memcpy(it->value_buf() + value.size(), "\r\n", 2);
  t.link(std::move(it));
}

void Delete(Store& s, const std::string& key) {
  Txn t = s.begin(key);
  if (Item* it = t.find()) t.unlink(it);
}

// What a test compares: value, client flags, cas, exptime, meta state bits.
using Copy = std::tuple<std::string, uint32_t, uint64_t, rel_time_t, uint8_t>;

// Every live item of the map partitions in `held`, keyed by key.
std::map<std::string, Copy> Dump(Store& s, const std::vector<bool>& held) {
  std::map<std::string, Copy> out;
  for (uint32_t p = 0; p < kPartitions; ++p) {
    s.for_each_in_partition(p, [&](const Item& it) {
      if (!held[ClusterMap::partition_for_key(it.key(), held.size())]) return;
      out.emplace(std::string(it.key()),
                  Copy{std::string(it.value()), it.client_flags, it.cas, it.exptime,
                       static_cast<uint8_t>(it.iflags & kItemReplicaBits)});
    });
  }
  return out;
}

std::vector<bool> Every(uint32_t partitions, uint32_t mod, uint32_t rest) {
  std::vector<bool> held(partitions);
  for (uint32_t p = 0; p < partitions; ++p) held[p] = p % mod == rest;
  return held;
}

// Recomputes the trailing checksum after a test edited a field, so the
// field checks (not the checksum) must refuse it.
void Reseal(std::vector<std::byte>& b) {
  const uint64_t sum = XXH3_64bits(b.data(), b.size() - 8);
  std::memcpy(b.data() + b.size() - 8, &sum, 8);
}

class SnapshotTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { clock::init(); }
  Store src_{StoreOptions()};
  Store dst_{StoreOptions()};
};

// Counts what the store reports to its sink.
struct CountingSink : EffectSink {
  int changes = 0, flushes = 0;
  void on_change(uint32_t, std::string_view, const Item*) override { changes++; }
  bool on_flush(uint32_t, rel_time_t, uint64_t) override { 
    flushes++;
    return true;
  }
};

TEST_F(SnapshotTest, ScanHookRunsOnceBeforeItemsAndRemovalEmitsNoEffect) {
  for (int i = 0; i < 3000; ++i) Set(src_, "s" + std::to_string(i), "v");
  const uint32_t s = Store::partition_of("s0");
  src_.flush_partition(s, 5, 77);
  int hooks = 0, items_before_hook = 0, items = 0;
  src_.scan_partition(
      s,
      [&](const Store::FlushSplit& split) {
        hooks++;
        EXPECT_EQ(split.oldest_live, 5u);
        EXPECT_EQ(split.oldest_cas, 77u);
      },
      [&](const Item&) { hooks == 0 ? items_before_hook++ : items++; });
  EXPECT_EQ(hooks, 1);
  EXPECT_EQ(items_before_hook, 0);
  src_.flush_partition(s, 0, 0);
  size_t in_s = 0;
  src_.for_each_in_partition(s, [&](const Item&) { in_s++; });
  EXPECT_GT(in_s, 0u);

  CountingSink sink;
  src_.set_effect_sink(&sink);
  const uint64_t before = src_.stats().curr_items;
  const size_t removed = src_.remove_if_in_partition(s, [](const Item& it) { return it.key() != "s0"; });
  EXPECT_EQ(removed, in_s - 1);
  EXPECT_EQ(src_.stats().curr_items, before - removed);
  EXPECT_EQ(sink.changes, 0);  // not re-replicated
  size_t left = 0;
  src_.for_each_in_partition(s, [&](const Item& it) {
    left++;
    EXPECT_EQ(it.key(), "s0");
  });
  EXPECT_EQ(left, 1u);
  src_.set_effect_sink(nullptr);
}

TEST_F(SnapshotTest, RoundTripKeepsItemsOfHeldPartitionsExactly) {
  const uint32_t P = 64;
  const std::vector<bool> held = Every(P, 3, 0);
  const rel_time_t later = clock::realtime(3600);  // an hour from now
  for (int i = 0; i < 2000; ++i) {
    const std::string k = "key:" + std::to_string(i);
    Set(src_, k, std::string(i % 97, char('a' + i % 26)), uint32_t(i * 7919), i % 3 ? 0 : later);
  }
  Set(src_, "big", std::string(1u << 20, 'x'), 42);
  Set(src_, "expired", "gone", 0, clock::realtime(-1));  // not live: not written
  // Meta state a promoted copy must answer with (mg's X, W/Z flags, and the
  // base64 key of a "b" key): invalidated, token handed out, binary key.
  for (int i = 0; i < 2000; i += 5) {
    Txn t = src_.begin("key:" + std::to_string(i));
    Item* it = t.find();
    ASSERT_NE(it, nullptr);
    it->iflags |= i % 2 ? (kItemStale | kItemTokenSent) : i % 3 ? kItemStale : kItemKeyBinary;
  }
  const auto want = Dump(src_, held);
  ASSERT_GT(want.size(), 400u);

  int lsn_calls = 0;
  SnapshotCounts counts;
  auto snap = encode_snapshot(src_, held, [&] { return uint64_t(100 + lsn_calls++); }, &counts);
  EXPECT_EQ(lsn_calls, int(kPartitions));  // P != kPartitions: every store partition
  EXPECT_EQ(counts.items, want.size());

  SnapshotView v;
  std::string why;
  ASSERT_EQ(SnapshotView::parse(snap, &v, &why), SnapshotError::kOk) << why;
  EXPECT_EQ(v.partitions(), P);
  EXPECT_EQ(v.held(), held);
  EXPECT_EQ(v.item_count(), want.size());
  // Store partitions are visited in order, each lsn taken once under its lock.
  const auto lsns = v.lsn_by_store_partition();
  for (uint32_t s = 0; s < kPartitions; ++s) EXPECT_EQ(lsns[s], 100 + s);
  uint64_t seen = 0;
  v.for_each_item([&](const SnapshotItem& it) {
    seen++;
    EXPECT_EQ(it.map_partition, ClusterMap::partition_for_key(it.key, P));
    auto w = want.find(std::string(it.key));
    ASSERT_NE(w, want.end()) << it.key;
    EXPECT_EQ(it.value, std::get<0>(w->second));
    EXPECT_EQ(it.cas, std::get<2>(w->second));
  });
  EXPECT_EQ(seen, want.size());

  InstallResult r = install_snapshot(dst_, snap);
  ASSERT_EQ(r.error, SnapshotError::kOk) << r.detail;
  EXPECT_EQ(r.installed.items, want.size());
  EXPECT_EQ(r.installed.bytes, counts.bytes);
  EXPECT_EQ(r.lsn_by_store_partition, lsns);
  EXPECT_EQ(Dump(dst_, held), want);  // same cas, flags, exptime, value
  EXPECT_EQ(Dump(dst_, std::vector<bool>(P, true)), want);  // nothing else
  // The cas counter continues above the installed cas uniques.
  uint64_t max_cas = 0;
  for (const auto& [k, c] : want) max_cas = std::max(max_cas, std::get<2>(c));
  Set(dst_, "after", "v");
  EXPECT_GT(std::get<2>(Dump(dst_, std::vector<bool>(P, true)).at("after")), max_cas);
}

TEST_F(SnapshotTest, EmptySnapshotRoundTrips) {
  auto snap = encode_snapshot(src_, Every(kPartitions, 2, 1), [] { return uint64_t(7); });
  SnapshotView v;
  ASSERT_EQ(SnapshotView::parse(snap, &v), SnapshotError::kOk);
  EXPECT_EQ(v.item_count(), 0u);
  // P == kPartitions: only the held store partitions are visited.
  EXPECT_EQ(v.store_partition(1).lsn, 7u);
  EXPECT_EQ(v.store_partition(2).lsn, 0u);
  Set(dst_, "stale", "x");
  const bool stale_held = Store::partition_of("stale") % 2 == 1;
  InstallResult r = install_snapshot(dst_, snap);
  ASSERT_EQ(r.error, SnapshotError::kOk) << r.detail;
  EXPECT_EQ(r.installed.items, 0u);
  EXPECT_EQ(r.removed, stale_held ? 1u : 0u);
}

TEST_F(SnapshotTest, CorruptOrTruncatedSnapshotIsRefusedAndChangesNothing) {
  const uint32_t P = 16;
  const std::vector<bool> held = Every(P, 2, 0);
  for (int i = 0; i < 50; ++i) Set(src_, "k" + std::to_string(i), "value" + std::to_string(i), i);
  const auto snap = encode_snapshot(src_, held, [] { return uint64_t(1); });
  for (int i = 0; i < 50; ++i) Set(dst_, "k" + std::to_string(i), "old");
  const auto before = Dump(dst_, std::vector<bool>(P, true));
  SnapshotView v;

  // Every single flipped byte is caught (most by the checksum).
  for (size_t i = 0; i < snap.size(); ++i) {
    auto bad = snap;
    bad[i] ^= std::byte{0x20};
    ASSERT_NE(SnapshotView::parse(bad, &v), SnapshotError::kOk) << "byte " << i;
  }
  for (size_t n : {size_t(0), size_t(8), size_t(47), size_t(64), snap.size() / 2, snap.size() - 1}) {
    std::string why;
    const auto e = SnapshotView::parse(std::span(snap).first(n), &v, &why);
    EXPECT_EQ(e, SnapshotError::kTruncated) << n << ": " << snapshot_error_name(e) << " " << why;
  }
  auto longer = snap;
  longer.resize(snap.size() + 8);
  EXPECT_EQ(SnapshotView::parse(longer, &v), SnapshotError::kMalformed);
  auto magic = snap;
  magic[0] ^= std::byte{1};
  EXPECT_EQ(SnapshotView::parse(magic, &v), SnapshotError::kBadMagic);
  auto version = snap;
  version[8] = std::byte{9};
  EXPECT_EQ(SnapshotView::parse(version, &v), SnapshotError::kBadVersion);
  auto sum = snap;
  sum[sum.size() - 20] ^= std::byte{1};
  EXPECT_EQ(SnapshotView::parse(sum, &v), SnapshotError::kBadChecksum);

  // Sealed again after the edit: the field checks refuse it.
  const size_t first_item = 48 + 8 * 4 /* 8 held u32 */ + size_t{kPartitions} * 32;
  auto other_partition = snap;  // record claims a partition its key is not in
  other_partition[first_item] ^= std::byte{2};
  Reseal(other_partition);
  std::string why;
  EXPECT_EQ(SnapshotView::parse(other_partition, &v, &why), SnapshotError::kMalformed);
  EXPECT_NE(why.find("partition"), std::string::npos) << why;
  auto long_value = snap;  // value length past the end
  long_value[first_item + 8 + 3] = std::byte{0x7f};
  Reseal(long_value);
  EXPECT_EQ(SnapshotView::parse(long_value, &v), SnapshotError::kMalformed);
  auto bits = snap;  // an item bit no replica may copy (kItemLinked)
  bits[first_item + 13] = std::byte{kItemLinked};
  Reseal(bits);
  EXPECT_EQ(SnapshotView::parse(bits, &v, &why), SnapshotError::kMalformed);
  EXPECT_NE(why.find("item bits"), std::string::npos) << why;
  auto count = snap;  // item count disagrees with the records
  count[24] ^= std::byte{1};
  Reseal(count);
  EXPECT_EQ(SnapshotView::parse(count, &v), SnapshotError::kMalformed);

  auto flipped = snap;
  flipped[first_item + 40] ^= std::byte{1};
  InstallResult r = install_snapshot(dst_, flipped);
  EXPECT_EQ(r.error, SnapshotError::kBadChecksum);
  EXPECT_EQ(Dump(dst_, std::vector<bool>(P, true)), before);
}

TEST_F(SnapshotTest, InstallReplacesOnlyTheRequestedPartitions) {
  const uint32_t P = 32;
  const std::vector<bool> held = Every(P, 4, 1);
  std::vector<bool> rest(P);
  for (uint32_t p = 0; p < P; ++p) rest[p] = !held[p];
  for (int i = 0; i < 1000; ++i) Set(src_, "a" + std::to_string(i), "src" + std::to_string(i), 1);
  for (int i = 0; i < 1000; ++i) Set(dst_, "a" + std::to_string(i), "dst", 2);  // overwritten or kept
  for (int i = 0; i < 500; ++i) Set(dst_, "b" + std::to_string(i), "dst-only", 3);  // removed or kept
  const auto dst_rest = Dump(dst_, rest);
  const auto dst_held = Dump(dst_, held);
  const auto snap = encode_snapshot(src_, held, [] { return uint64_t(5); });
  InstallResult r = install_snapshot(dst_, snap);
  ASSERT_EQ(r.error, SnapshotError::kOk) << r.detail;
  EXPECT_EQ(r.removed, dst_held.size());
  EXPECT_EQ(Dump(dst_, held), Dump(src_, held));
  EXPECT_EQ(Dump(dst_, rest), dst_rest);
  EXPECT_EQ(dst_.stats().curr_items, dst_rest.size() + Dump(src_, held).size());
}

TEST_F(SnapshotTest, FlushSplitTravelsWithTheSnapshotWhenPartitionsCoincide) {
  const std::vector<bool> held = Every(kPartitions, 1, 0);  // all
  for (int i = 0; i < 200; ++i) Set(src_, "f" + std::to_string(i), "v");
  src_.flush_all(clock::now() + 100);  // delayed: everything goes in 100 s
  const auto snap = encode_snapshot(src_, held, [] { return uint64_t(1); });
  InstallResult r = install_snapshot(dst_, snap);
  ASSERT_EQ(r.error, SnapshotError::kOk) << r.detail;
  EXPECT_EQ(Dump(dst_, held).size(), 200u);
  clock::set_offset_for_test(200);
  EXPECT_EQ(Dump(src_, held).size(), 0u);
  EXPECT_EQ(Dump(dst_, held).size(), 0u);  // the copy follows the primary's flush
  clock::set_offset_for_test(0);
}

// ----- the whole sequence over a replication log -----

rdma::FabricOptions FabricOptions(const std::string& id) {
  rdma::FabricOptions o;
  o.provider = rdma::ProviderChoice::kTcp;
  o.local_addr = "127.0.0.1";
  o.identity = id;
  o.op_timeout = milliseconds(2000);
  o.log = [](std::string_view) {};
  return o;
}

// The primary's side of ReplicationManager::on_change, reduced to one
// secondary that holds every partition: each change is appended while its
// store partition is locked. Records (lsn, key) of every append.
class LogSink : public EffectSink {
 public:
  LogSink(LogWriter& w, uint32_t partitions) : w_(w), partitions_(partitions) {}
  void on_change(uint32_t, std::string_view key, const Item* after) override {
    Effect e;
    e.partition = static_cast<uint16_t>(ClusterMap::partition_for_key(key, partitions_));
    e.epoch = 1;
    e.key = key;
    if (after != nullptr) {
      e.kind = EffectKind::kItem;
      e.client_flags = after->client_flags;
      e.exptime = after->exptime == 0 ? 0 : static_cast<int64_t>(clock::to_unix(after->exptime));
      e.cas = after->cas;
      e.value = after->value();
    } else {
      e.kind = EffectKind::kTombstone;
    }
    uint64_t lsn = 0;
    ASSERT_TRUE(w_.append(e, [](void*, uint64_t, const rdma::Status&) {}, nullptr, &lsn));
    std::lock_guard<std::mutex> g(mu_);
    appended_.emplace_back(lsn, std::string(key));
  }
  bool on_flush(uint32_t, rel_time_t, uint64_t) override { return true; }
  std::vector<std::pair<uint64_t, std::string>> appended() {
    std::lock_guard<std::mutex> g(mu_);
    return appended_;
  }

 private:
  LogWriter& w_;
  const uint32_t partitions_;
  std::mutex mu_;
  std::vector<std::pair<uint64_t, std::string>> appended_;
};

class RecoveryTest : public SnapshotTest {
 protected:
  void SetUp() override {
    auto a = rdma::Fabric::open(FabricOptions("primary"));
    ASSERT_TRUE(a) << a.status().to_string();
    primary_ = std::move(*a);
    auto b = rdma::Fabric::open(FabricOptions("secondary"));
    ASSERT_TRUE(b) << b.status().to_string();
    secondary_ = std::move(*b);
    auto l = secondary_->listen("127.0.0.1", 0);
    ASSERT_TRUE(l) << l.status().to_string();
    listener_ = std::move(*l);
    std::unique_ptr<rdma::Connection> accepted;
    std::thread t([&] {
      auto c = listener_->accept(milliseconds(5000));
      if (c) accepted = std::move(*c);
    });
    auto c = primary_->connect("127.0.0.1", listener_->port());
    t.join();
    ASSERT_TRUE(c) << c.status().to_string();
    ASSERT_TRUE(accepted);
    to_secondary_ = std::move(*c);
    to_primary_ = std::move(accepted);
    auto r = LogRing::create(*secondary_, 1u << 20);  // small: forces wraps and back-pressure
    ASSERT_TRUE(r) << r.status().to_string();
    ring_ = std::move(*r);
    applier_ = std::make_unique<LogApplier>(*ring_, dst_);
    applier_->start();
    auto w = LogWriter::attach(*primary_, *to_secondary_, ring_->descriptor());
    ASSERT_TRUE(w) << w.status().to_string();
    writer_ = std::move(*w);
  }

  void TearDown() override {
    src_.set_effect_sink(nullptr);
    writer_.reset();
    applier_.reset();
    ring_.reset();
    to_secondary_.reset();
    to_primary_.reset();
  }

  void WaitApplied(uint64_t lsn) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (applier_->applied_lsn() < lsn) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "applied " << applier_->applied_lsn();
      std::this_thread::sleep_for(milliseconds(1));
    }
  }

  // Random sets (new, overwritten, with exptimes and flags) and deletes
  // over `keys` keys, each key in a store partition other than `avoid`.
  void Churn(Store& s, uint32_t seed, int ops, int keys, uint32_t avoid = kPartitions) {
    std::mt19937 rng(seed);
    for (int i = 0; i < ops; ++i) {
      const std::string k = "key:" + std::to_string(rng() % keys);
      if (Store::partition_of(k) == avoid) continue;
      if (rng() % 4 == 0) {
        Delete(s, k);
      } else {
        Set(s, k, "v" + std::to_string(seed) + ":" + std::to_string(i), rng() % 5,
            rng() % 3 ? 0 : clock::realtime(3600 + rng() % 100));
      }
    }
  }

  std::unique_ptr<rdma::Fabric> primary_, secondary_;
  std::unique_ptr<rdma::Listener> listener_;
  std::unique_ptr<rdma::Connection> to_secondary_, to_primary_;
  std::unique_ptr<LogRing> ring_;
  std::unique_ptr<LogApplier> applier_;
  std::unique_ptr<LogWriter> writer_;
};

// hold, snapshot while writes go on, install, more writes, release: the
// held partitions end exactly as on the primary, deletes and overwrites
// made between the snapshot and the release included. The writes made
// in the middle of the snapshot land in store partitions already copied
// (lsn above theirs: must be replayed) and in ones not copied yet (in the
// snapshot: skipped), so a skip rule that compared with the wrong
// partition's lsn, or with the largest one, loses some of them; the
// replay counters are checked against the rule computed from the appends.
TEST_F(RecoveryTest, HoldSnapshotInstallReleaseConvergesToThePrimary) {
  const uint32_t P = 64;
  const std::vector<bool> held = Every(P, 4, 2);
  const int kKeys = 3000;
  Churn(src_, 1, 4000, kKeys);  // before the writer: reaches N only by snapshot
  for (int i = 0; i < 300; ++i) Set(dst_, "key:" + std::to_string(i), "stale copy");
  LogSink sink(*writer_, P);
  src_.set_effect_sink(&sink);
  Churn(src_, 2, 2000, kKeys);  // applied directly (nothing held yet)
  WaitApplied(writer_->stats().last_lsn);
  const uint64_t hold_lsn = applier_->applied_lsn();

  ASSERT_TRUE(applier_->hold(held));
  EXPECT_FALSE(applier_->hold(held));  // one hold at a time
  std::atomic<bool> stop{false};
  std::thread background([&] {  // keeps writing throughout
    for (uint32_t seed = 100; !stop.load(); ++seed) Churn(src_, seed, 200, kKeys);
  });
  uint32_t calls = 0;
  auto snap = encode_snapshot(src_, held, [&] {
    if (calls++ == kPartitions / 2) {
      // The lock of store partition 512 is held here; write elsewhere.
      std::thread mid([&] { Churn(src_, 7, 3000, kKeys, kPartitions / 2); });
      mid.join();
    }
    return writer_->stats().last_lsn;
  });
  Churn(src_, 8, 2000, kKeys);  // between snapshot and install
  InstallResult r = install_snapshot(dst_, snap);
  ASSERT_EQ(r.error, SnapshotError::kOk) << r.detail;
  EXPECT_GT(r.removed, 0u);
  Churn(src_, 9, 2000, kKeys);  // between install and release
  stop = true;
  background.join();
  ASSERT_TRUE(writer_->drain(milliseconds(10000)));
  const uint64_t last = writer_->stats().last_lsn;
  WaitApplied(last);  // held entries still consume the ring
  const LogApplier::Stats before = applier_->stats();
  EXPECT_GT(before.held, 1000u);
  EXPECT_EQ(before.held_pending, before.held);
  EXPECT_GT(before.held_bytes, 0u);

  const auto& lsns = r.lsn_by_store_partition;
  uint64_t expect_held = 0, expect_skipped = 0, after_snapshot_early = 0;
  for (const auto& [lsn, key] : sink.appended()) {
    if (lsn <= hold_lsn || !held[ClusterMap::partition_for_key(key, P)]) continue;
    expect_held++;
    const uint32_t s = Store::partition_of(key);
    if (lsn <= lsns[s]) {
      expect_skipped++;
    } else if (s < kPartitions / 2 && lsn <= lsns[kPartitions / 2]) {
      after_snapshot_early++;  // the mid-snapshot writes that must be replayed
    }
  }
  EXPECT_GT(after_snapshot_early, 50u);
  EXPECT_EQ(before.held, expect_held);

  applier_->release(lsns);
  const LogApplier::Stats after = applier_->stats();
  EXPECT_FALSE(applier_->holding());
  EXPECT_EQ(after.replay_skipped, expect_skipped);
  EXPECT_EQ(after.replayed, expect_held - expect_skipped);
  EXPECT_EQ(after.held_pending, 0u);
  EXPECT_EQ(after.held_bytes, 0u);
  EXPECT_EQ(Dump(dst_, held), Dump(src_, held));

  // Held partitions are applied directly again.
  Churn(src_, 10, 1000, kKeys);
  ASSERT_TRUE(writer_->drain(milliseconds(10000)));
  WaitApplied(writer_->stats().last_lsn);
  EXPECT_EQ(applier_->stats().held, after.held);
  EXPECT_EQ(Dump(dst_, held), Dump(src_, held));
}

}  // namespace
}  // namespace ftm::repl
