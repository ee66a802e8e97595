// Tests of the replication log (replication/): effect encoding, the ring,
// the primary's LogWriter and the secondary's LogApplier, on the tcp
// provider over 127.0.0.1. Two Fabric instances in one process stand for
// the primary and the secondary; each has its own domain and progress
// thread, so every byte crosses the fabric layer.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "rdma/connection.h"
#include "rdma/fabric_domain.h"
#include "rdma/listener.h"
#include "rdma/region_descriptor.h"
#include "t/unit/proc_util.h"
#include "replication/effect.h"
#include "replication/log_applier.h"
#include "replication/log_ring.h"
#include "replication/log_writer.h"
#include "src/clock.h"
#include "src/store.h"

namespace ftm::repl {
namespace {

using std::chrono::milliseconds;
using rdma::Code;
using rdma::Status;
using SteadyClock = std::chrono::steady_clock;

// What the primary linked for a key, as a test expects the secondary to hold.
struct Expect {
  std::string value;
  uint32_t flags = 0;
  uint64_t cas = 0;
  int64_t exptime = 0;  // absolute
  bool present = true;
};

// Counts callbacks and checks that they fire in lsn order, once each.
struct Tally {
  std::atomic<uint64_t> ok{0}, err{0};
  std::atomic<uint64_t> last_lsn{0};
  std::atomic<bool> out_of_order{false};
  std::mutex mu;
  Status first_error;
  static void cb(void* ctx, uint64_t lsn, const Status& st) {
    auto* t = static_cast<Tally*>(ctx);
    uint64_t prev = t->last_lsn.exchange(lsn);
    if (lsn != prev + 1 && prev != 0) t->out_of_order = true;
    if (st) {
      t->ok++;
    } else {
      std::lock_guard<std::mutex> g(t->mu);
      if (t->err++ == 0) t->first_error = st;
    }
  }
};

rdma::FabricOptions options(const std::string& id) {
  rdma::FabricOptions o;
  o.provider = rdma::ProviderChoice::kTcp;
  o.local_addr = "127.0.0.1";
  o.identity = id;
  o.op_timeout = milliseconds(2000);
  o.log = [](std::string_view) {};
  return o;
}

Store::Options store_options() {
  Store::Options o;
  o.mem_limit = 256u << 20;
  o.sweeper = false;
  return o;
}

class ReplLogTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { clock::init(); }

  void SetUp() override {
    auto a = rdma::Fabric::open(options("primary"));
    ASSERT_TRUE(a) << a.status().to_string();
    primary_ = std::move(*a);
    auto b = rdma::Fabric::open(options("secondary"));
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
    store_ = std::make_unique<Store>(store_options());
  }

  void TearDown() override {
    writer_.reset();  // stops writing before the ring goes
    applier_.reset();
    ring_.reset();
    to_secondary_.reset();
    to_primary_.reset();
    listener_.reset();
    store_.reset();
  }

  void MakeRing(size_t size, bool start_applier = true) {
    auto r = LogRing::create(*secondary_, size);
    ASSERT_TRUE(r) << r.status().to_string();
    ring_ = std::move(*r);
    applier_ = std::make_unique<LogApplier>(*ring_, *store_);
    if (start_applier) applier_->start();
  }

  void MakeWriter(LogWriter::Options o = LogWriter::Options()) {
    auto w = LogWriter::attach(*primary_, *to_secondary_, ring_->descriptor(), o);
    ASSERT_TRUE(w) << w.status().to_string();
    writer_ = std::move(*w);
  }

  // Waits until the applier has applied `lsn`.
  bool WaitApplied(uint64_t lsn, milliseconds timeout = milliseconds(10000)) {
    auto deadline = SteadyClock::now() + timeout;
    while (applier_->applied_lsn() < lsn) {
      if (SteadyClock::now() > deadline) return false;
      std::this_thread::sleep_for(milliseconds(1));
    }
    return true;
  }

  void ExpectStore(const std::map<std::string, Expect>& expect) {
    size_t checked = 0;
    for (const auto& [key, x] : expect) {
      Txn txn = store_->begin(key);
      Item* it = txn.find();
      if (!x.present) {
        EXPECT_EQ(it, nullptr) << key;
        continue;
      }
      ASSERT_NE(it, nullptr) << key;
      EXPECT_EQ(it->value(), x.value) << key;
      EXPECT_EQ(it->value_crlf().substr(x.value.size()), "\r\n") << key;
      EXPECT_EQ(it->client_flags, x.flags) << key;
      EXPECT_EQ(it->cas, x.cas) << key;
      EXPECT_EQ(it->exptime, x.exptime == 0 ? 0 : clock::realtime(x.exptime)) << key;
      checked++;
    }
    std::printf("[ info ] %zu keys compared with the primary's record\n", checked);
  }

  std::unique_ptr<rdma::Fabric> primary_, secondary_;
  std::unique_ptr<rdma::Listener> listener_;
  std::unique_ptr<rdma::Connection> to_secondary_, to_primary_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<LogRing> ring_;
  std::unique_ptr<LogApplier> applier_;
  std::unique_ptr<LogWriter> writer_;
};

Effect Item(std::string_view key, std::string_view value, uint32_t flags,
            uint64_t cas, int64_t exptime = 0) {
  Effect e;
  e.kind = EffectKind::kItem;
  e.partition = static_cast<uint16_t>(Store::partition_of(key));
  e.epoch = 1;
  e.key = key;
  e.value = value;
  e.client_flags = flags;
  e.cas = cas;
  e.exptime = exptime;
  return e;
}

Effect Tombstone(std::string_view key) {
  Effect e;
  e.kind = EffectKind::kTombstone;
  e.partition = static_cast<uint16_t>(Store::partition_of(key));
  e.epoch = 1;
  e.key = key;
  return e;
}

// ----- effect encoding (no fabric) -----

TEST(EffectTest, EncodeDecodeRoundTrip) {
  alignas(8) std::byte buf[1024];
  std::string value(333, 'v');
  for (size_t i = 0; i < value.size(); i++) value[i] = static_cast<char>(i * 7);
  Effect e = Item("some:key", value, 0xdeadbeef, 0x123456789abcull, 1999999999);
  e.partition = 1023;
  e.epoch = 77;
  const size_t n = encode(e, 42, 0xfeed, buf);
  EXPECT_EQ(n, encoded_size(e));
  EXPECT_EQ(n % 8, 0u);
  Effect d;
  size_t len = 0;
  ASSERT_EQ(decode(std::span(buf, sizeof buf), 42, 0xfeed, &d, &len), DecodeResult::kOk);
  EXPECT_EQ(len, n);
  EXPECT_EQ(d.kind, EffectKind::kItem);
  EXPECT_EQ(d.partition, 1023);
  EXPECT_EQ(d.epoch, 77u);
  EXPECT_EQ(d.lsn, 42u);
  EXPECT_EQ(d.key, "some:key");
  EXPECT_EQ(d.value, value);
  EXPECT_EQ(d.client_flags, 0xdeadbeefu);
  EXPECT_EQ(d.cas, 0x123456789abcull);
  EXPECT_EQ(d.exptime, 1999999999);
  EXPECT_EQ(d.item_bits, 0);

  // Each failure is told apart.
  EXPECT_EQ(decode(std::span(buf, sizeof buf), 43, 0xfeed, &d, &len), DecodeResult::kWrongLsn);
  EXPECT_EQ(decode(std::span(buf, sizeof buf), 42, 0xbeef, &d, &len), DecodeResult::kBadChecksum);
  EXPECT_EQ(decode(std::span(buf, n - 8), 42, 0xfeed, &d, &len), DecodeResult::kBadLength);
  buf[100] ^= std::byte{1};
  EXPECT_EQ(decode(std::span(buf, sizeof buf), 42, 0xfeed, &d, &len), DecodeResult::kBadChecksum);

  // An item's meta state travels in the kind byte; on any other kind, or
  // with an unknown bit, the entry is malformed.
  e.item_bits = kItemStale | kItemTokenSent | kItemKeyBinary;
  ASSERT_EQ(encode(e, 42, 0xfeed, buf), n);
  ASSERT_EQ(decode(std::span(buf, sizeof buf), 42, 0xfeed, &d, &len), DecodeResult::kOk);
  EXPECT_EQ(d.kind, EffectKind::kItem);
  EXPECT_EQ(d.item_bits, kItemStale | kItemTokenSent | kItemKeyBinary);
  e.item_bits = kItemStale;
  ASSERT_EQ(encode(e, 42, 0xfeed, buf), n);
  ASSERT_EQ(decode(std::span(buf, sizeof buf), 42, 0xfeed, &d, &len), DecodeResult::kOk);
  EXPECT_EQ(d.item_bits, kItemStale);
  for (uint8_t kind_byte : {uint8_t{0x82}, uint8_t{0x12}, uint8_t{0x91}}) {
    Effect t = kind_byte == 0x91 ? Item("k", "v", 0, 1) : Tombstone("k");
    const size_t m = encode(t, 3, 1, buf);
    buf[4] = std::byte{kind_byte};  // 0x91: kItem with the unknown bit 0x80
    const uint64_t sum = XXH3_64bits_withSeed(buf, m - 8, 1);  // sealed again
    std::memcpy(buf + m - 8, &sum, 8);
    EXPECT_EQ(decode(std::span(buf, sizeof buf), 3, 1, &d, &len), DecodeResult::kMalformed)
        << int(kind_byte);
  }

  // Empty value, tombstone, flush, skip marker.
  Effect t = Tombstone("gone");
  ASSERT_EQ(encode(t, 5, 1, buf), encoded_size(t));
  ASSERT_EQ(decode(std::span(buf, sizeof buf), 5, 1, &d, &len), DecodeResult::kOk);
  EXPECT_EQ(d.kind, EffectKind::kTombstone);
  EXPECT_EQ(d.key, "gone");
  EXPECT_TRUE(d.value.empty());
  Effect f;
  f.kind = EffectKind::kFlushAll;
  f.exptime = 1900000000;
  ASSERT_EQ(encode(f, 6, 1, buf), kMinEntrySize);
  ASSERT_EQ(decode(std::span(buf, sizeof buf), 6, 1, &d, &len), DecodeResult::kOk);
  EXPECT_EQ(d.kind, EffectKind::kFlushAll);
  EXPECT_EQ(d.exptime, 1900000000);
  std::memset(buf, 0xAB, sizeof buf);
  encode_skip(200, 9, 1, std::span(buf, 200));
  ASSERT_EQ(decode(std::span(buf, 200), 9, 1, &d, &len), DecodeResult::kSkip);
  EXPECT_EQ(len, 200u);
  EXPECT_EQ(decode(std::span(buf, 200), 10, 1, &d, &len), DecodeResult::kWrongLsn);
}

TEST(EffectTest, ZeroedMemoryIsNeverAnEntry) {
  alignas(8) std::byte buf[256] = {};
  Effect d;
  size_t len;
  EXPECT_NE(decode(std::span(buf, sizeof buf), 0, 0, &d, &len), DecodeResult::kOk);
  EXPECT_NE(decode(std::span(buf, sizeof buf), 1, 0, &d, &len), DecodeResult::kOk);
}

// ----- ring and applier -----

TEST_F(ReplLogTest, CorruptedOrHalfWrittenEntryIsNotApplied) {
  MakeRing(4096, /*start_applier=*/false);
  clock::tick();
  alignas(8) std::byte buf[512];
  Effect e = Item("half", "written value", 7, 1000);
  const size_t n = encode(e, 1, ring_->incarnation(), buf);
  std::byte* ring = ring_->entries().data();

  // Everything but the checksum has landed.
  std::memcpy(ring, buf, n - 8);
  EXPECT_EQ(applier_->apply_available(), 0u);
  // All of it landed, but one value byte is wrong.
  std::memcpy(ring, buf, n);
  ring[60] ^= std::byte{0x20};
  EXPECT_EQ(applier_->apply_available(), 0u);
  // Right bytes, stale lsn (an entry of an earlier lap).
  encode(e, 0, ring_->incarnation(), std::span(ring, n));
  EXPECT_EQ(applier_->apply_available(), 0u);
  // Right bytes from an earlier incarnation of the ring.
  encode(e, 1, ring_->incarnation() + 1, std::span(ring, n));
  EXPECT_EQ(applier_->apply_available(), 0u);
  {
    Txn txn = store_->begin("half");
    EXPECT_EQ(txn.find(), nullptr);
  }
  EXPECT_EQ(ring_->applied_lsn(), 0u);
  EXPECT_GT(applier_->stats().bad_checksums, 0u);

  // The entry completes: applied, and the position published.
  std::memcpy(ring, buf, n);
  EXPECT_EQ(applier_->apply_available(), 1u);
  EXPECT_EQ(ring_->applied_lsn(), 1u);
  EXPECT_EQ(ring_->applied_pos(), n);
  ExpectStore({{"half", {"written value", 7, 1000, 0}}});
}

// A promoted secondary hands out cas uniques of its own: they must be above
// every cas it linked from its primary, or a client holding one of those
// could see its stale `cas` succeed against a newer value.
TEST_F(ReplLogTest, AppliedCasRaisesTheSecondarysCasCounter) {
  MakeRing(4096, /*start_applier=*/false);
  clock::tick();
  alignas(8) std::byte buf[512];
  const size_t n = encode(Item("from-primary", "v", 0, 5000), 1, ring_->incarnation(), buf);
  std::memcpy(ring_->entries().data(), buf, n);
  ASSERT_EQ(applier_->apply_available(), 1u);
  Txn txn = store_->begin("local");
  uint64_t next = txn.next_cas();
  EXPECT_GT(next, 5000u) << "the counter stayed below an applied cas";
}

TEST_F(ReplLogTest, TenThousandEffectsFromFourThreadsApplyInOrder) {
  MakeRing(1 << 20);
  MakeWriter();
  constexpr int kThreads = 4, kPerThread = 2500, kKeysPerThread = 300;
  std::atomic<uint64_t> cas_counter{1000000};
  const int64_t later = time(nullptr) + 3600;
  std::vector<std::map<std::string, Expect>> expect(kThreads);
  std::vector<std::string> errors(kThreads);
  Tally tally;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t + 1);
      for (int i = 0; i < kPerThread; i++) {
        std::string key = "k" + std::to_string(t) + ":" + std::to_string(rng() % kKeysPerThread);
        std::string value(10 + rng() % 190, static_cast<char>('a' + rng() % 26));
        value += std::to_string(i);
        Expect x{value, static_cast<uint32_t>(rng()), cas_counter.fetch_add(1),
                 rng() % 4 == 0 ? later : 0, true};
        Effect e = rng() % 10 == 0 ? Tombstone(key)
                                   : Item(key, x.value, x.flags, x.cas, x.exptime);
        if (e.kind == EffectKind::kTombstone) x = Expect{"", 0, 0, 0, false};
        Status st = writer_->append(e, &Tally::cb, &tally);
        if (!st) {
          errors[t] = st.to_string();
          return;
        }
        expect[t][key] = x;
      }
    });
  }
  for (auto& th : threads) th.join();
  for (auto& e : errors) ASSERT_EQ(e, "");
  ASSERT_TRUE(writer_->drain(milliseconds(20000))) << writer_->status().to_string();
  EXPECT_EQ(tally.ok.load(), uint64_t{kThreads * kPerThread});
  EXPECT_EQ(tally.err.load(), 0u);
  EXPECT_FALSE(tally.out_of_order.load());
  ASSERT_TRUE(WaitApplied(kThreads * kPerThread));
  auto ws = writer_->stats();
  std::printf("[ info ] %llu appends in %llu writes (%.1f per write)\n",
              (unsigned long long)ws.appended, (unsigned long long)ws.writes,
              double(ws.appended) / double(ws.writes));
  EXPECT_LT(ws.writes, ws.appended);  // group commit happened
  std::map<std::string, Expect> all;
  for (auto& m : expect) all.insert(m.begin(), m.end());
  ExpectStore(all);
  EXPECT_EQ(applier_->stats().applied, uint64_t{kThreads * kPerThread});
}

TEST_F(ReplLogTest, RingSmallerThanBurstMakesWritersWaitNothingLost) {
  MakeRing(64 * 1024);
  MakeWriter();
  constexpr int kThreads = 2, kPerThread = 2500;  // 5,000 x ~1 KB = 5 MB
  std::vector<std::map<std::string, Expect>> expect(kThreads);
  std::vector<std::string> errors(kThreads);
  std::atomic<uint64_t> cas_counter{1};
  Tally tally;
  std::vector<std::thread> threads;
  auto t0 = SteadyClock::now();
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; i++) {
        std::string key = "big" + std::to_string(t) + ":" + std::to_string(i % 500);
        std::string value(1000, static_cast<char>('A' + (i % 26)));
        std::memcpy(value.data(), &i, sizeof i);
        Expect x{value, static_cast<uint32_t>(i), 100000 + cas_counter.fetch_add(1), 0, true};
        Status st = writer_->append(Item(key, x.value, x.flags, x.cas), &Tally::cb, &tally);
        if (!st) {
          errors[t] = st.to_string();
          return;
        }
        expect[t][key] = x;
      }
    });
  }
  for (auto& th : threads) th.join();
  for (auto& e : errors) ASSERT_EQ(e, "");
  ASSERT_TRUE(writer_->drain(milliseconds(20000))) << writer_->status().to_string();
  ASSERT_TRUE(WaitApplied(kThreads * kPerThread));
  double secs = std::chrono::duration<double>(SteadyClock::now() - t0).count();
  auto ws = writer_->stats();
  std::printf("[ info ] 5 MB through a 64 KiB ring in %.2f s: %llu full waits, "
              "%llu control reads, %llu writes\n", secs,
              (unsigned long long)ws.full_waits, (unsigned long long)ws.control_reads,
              (unsigned long long)ws.writes);
  EXPECT_EQ(tally.ok.load(), uint64_t{kThreads * kPerThread});
  EXPECT_EQ(tally.err.load(), 0u);
  EXPECT_GT(ws.full_waits, 0u);
  EXPECT_GT(ws.control_reads, 0u);
  std::map<std::string, Expect> all;
  for (auto& m : expect) all.insert(m.begin(), m.end());
  ExpectStore(all);
}

TEST_F(ReplLogTest, TombstonesAndFlushAll) {
  MakeRing(64 * 1024);
  MakeWriter();
  clock::tick();
  Tally tally;
  ASSERT_TRUE(writer_->append(Item("a", "1", 1, 5001), &Tally::cb, &tally));
  ASSERT_TRUE(writer_->append(Item("b", "2", 2, 5002), &Tally::cb, &tally));
  ASSERT_TRUE(writer_->append(Item("c", "3", 3, 5003), &Tally::cb, &tally));
  ASSERT_TRUE(writer_->append(Tombstone("b"), &Tally::cb, &tally));
  ASSERT_TRUE(writer_->append(Tombstone("never-was"), &Tally::cb, &tally));
  ASSERT_TRUE(writer_->drain(milliseconds(5000)));
  ASSERT_TRUE(WaitApplied(5));
  ExpectStore({{"a", {"1", 1, 5001, 0}}, {"b", {"", 0, 0, 0, false}}, {"c", {"3", 3, 5003, 0}}});

  // An immediate flush hides everything applied before it, in the same
  // second too, and nothing applied after it.
  Effect flush;
  flush.kind = EffectKind::kFlushAll;
  flush.epoch = 1;
  ASSERT_TRUE(writer_->append(flush, &Tally::cb, &tally));
  ASSERT_TRUE(writer_->append(Item("d", "4", 4, 5004), &Tally::cb, &tally));
  ASSERT_TRUE(writer_->drain(milliseconds(5000)));
  ASSERT_TRUE(WaitApplied(7));
  ExpectStore({{"a", {"", 0, 0, 0, false}}, {"c", {"", 0, 0, 0, false}},
               {"d", {"4", 4, 5004, 0}}});
  EXPECT_EQ(applier_->stats().flushes, 1u);
  EXPECT_EQ(applier_->stats().tombstones, 2u);
  EXPECT_EQ(tally.ok.load(), 7u);
}

TEST_F(ReplLogTest, WrapAroundWithPaddingMarkers) {
  constexpr size_t kRing = 4096;
  MakeRing(kRing);
  MakeWriter();
  Tally tally;
  // Three appending threads, so wraps also happen between reservations made
  // concurrently (a skip marker written by one thread, the entry before it
  // by another).
  constexpr int kThreads = 3, kPerThread = 1000, kCount = kThreads * kPerThread;
  std::vector<std::map<std::string, Expect>> expects(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(99 + t);
      for (int i = 0; i < kPerThread; i++) {
        std::string key = "w" + std::to_string(t) + ":" + std::to_string(i % 50);
        // Sizes from 0 to ~1.9 KB, so entries often do not fit before the
        // end (skip marker) and sometimes leave < 56 bytes (implicit wrap).
        std::string value(rng() % 1900, static_cast<char>('a' + i % 26));
        Expect x{value, static_cast<uint32_t>(i), 7000000u + t * kPerThread + i, 0, true};
        if (!writer_->append(Item(key, x.value, x.flags, x.cas), &Tally::cb, &tally)) return;
        expects[t][key] = x;
      }
    });
  }
  for (auto& th : threads) th.join();
  std::map<std::string, Expect> expect;
  for (auto& m : expects) expect.insert(m.begin(), m.end());
  ASSERT_TRUE(writer_->drain(milliseconds(20000))) << writer_->status().to_string();
  ASSERT_TRUE(WaitApplied(kCount));
  EXPECT_EQ(tally.ok.load(), uint64_t{kCount});
  EXPECT_GT(ring_->applied_pos(), 100 * kRing);  // many laps
  EXPECT_GT(applier_->stats().skips, 0u);
  EXPECT_GT(applier_->stats().implicit_wraps, 0u);
  std::printf("[ info ] %llu skip markers, %llu implicit wraps\n",
              (unsigned long long)applier_->stats().skips,
              (unsigned long long)applier_->stats().implicit_wraps);
  ExpectStore(expect);
  // An entry larger than half the ring is refused up front.
  std::string huge(kRing / 2, 'x');
  Status st = writer_->append(Item("huge", huge, 0, 1), &Tally::cb, &tally);
  EXPECT_EQ(st.code(), Code::kInvalidArgument) << st.to_string();
}

TEST_F(ReplLogTest, NonBlockingAppendReportsFullRingThenRecovers) {
  MakeRing(16 * 1024, /*start_applier=*/false);
  LogWriter::Options o;
  o.full_wait = milliseconds(0);
  MakeWriter(o);
  Tally tally;
  std::string value(500, 'n');
  Status st;
  int accepted = 0;
  auto t0 = SteadyClock::now();
  while ((st = writer_->append(Item("n" + std::to_string(accepted), value, 0, accepted + 1),
                               &Tally::cb, &tally)))
    accepted++;
  EXPECT_EQ(st.code(), Code::kTimeout) << st.to_string();
  EXPECT_LT(SteadyClock::now() - t0, milliseconds(1000));  // never waited
  EXPECT_GT(accepted, 10);
  applier_->start();  // the secondary catches up; a retry gets through
  auto deadline = SteadyClock::now() + milliseconds(5000);
  while (!(st = writer_->append(Item("retry", value, 0, 999), &Tally::cb, &tally)) &&
         SteadyClock::now() < deadline)
    std::this_thread::sleep_for(milliseconds(1));
  ASSERT_TRUE(st) << st.to_string();
  ASSERT_TRUE(writer_->drain(milliseconds(5000)));
  EXPECT_EQ(tally.ok.load(), uint64_t(accepted + 1));
}

TEST_F(ReplLogTest, AttachToSomethingElseIsRefused) {
  std::vector<std::byte> mem(8192);  // a remote region that is not a ring
  auto mr = secondary_->register_memory(mem, true, true);
  ASSERT_TRUE(mr) << mr.status().to_string();
  auto w = LogWriter::attach(*primary_, *to_secondary_, (*mr)->descriptor());
  ASSERT_FALSE(w);
  EXPECT_EQ(w.status().code(), Code::kCorruptDescriptor) << w.status().to_string();
}

TEST_F(ReplLogTest, DeadSecondaryFailsPendingAppendsInsteadOfHanging) {
  MakeRing(16 * 1024, /*start_applier=*/false);  // nobody frees space
  LogWriter::Options o;
  o.full_wait = milliseconds(20000);  // longer than the test may take
  MakeWriter(o);
  Tally tally;
  std::atomic<uint64_t> appended{0};
  Status append_error;
  std::thread appender([&] {
    std::string value(500, 'z');
    for (int i = 0;; i++) {
      Status st = writer_->append(Item("dead" + std::to_string(i), value, 0, i + 1),
                                  &Tally::cb, &tally);
      if (!st) {
        append_error = st;
        return;
      }
      appended++;
    }
  });
  // Let the ring fill up: the appender now waits for space.
  auto deadline = SteadyClock::now() + milliseconds(5000);
  while (writer_->stats().full_waits == 0 && SteadyClock::now() < deadline)
    std::this_thread::sleep_for(milliseconds(1));
  ASSERT_GT(writer_->stats().full_waits, 0u);
  // The secondary goes away.
  auto t0 = SteadyClock::now();
  to_primary_->close();
  applier_.reset();
  ring_.reset();
  listener_.reset();
  secondary_.reset();
  appender.join();
  double ms = std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count();
  // Every pending append is settled (drain returns the writer's error).
  Status drained = writer_->drain(milliseconds(5000));
  EXPECT_NE(drained.code(), Code::kTimeout) << drained.to_string();
  EXPECT_FALSE(drained);
  std::printf("[ info ] appender saw after %.0f ms: %s\n", ms, append_error.to_string().c_str());
  EXPECT_FALSE(append_error);
  EXPECT_TRUE(append_error.code() == Code::kPeerLost || append_error.code() == Code::kClosed ||
              append_error.code() == Code::kTimeout)
      << append_error.to_string();
  EXPECT_LT(ms, 5000);
  // Every successful append got exactly one callback.
  EXPECT_EQ(tally.ok.load() + tally.err.load(), appended.load());
  EXPECT_FALSE(writer_->status());
  Status later = writer_->append(Item("after", "x", 0, 1), &Tally::cb, &tally);
  EXPECT_FALSE(later);
}

TEST_F(ReplLogTest, RevokedRingFencesTheWriter) {
  MakeRing(64 * 1024);
  MakeWriter();
  Tally tally;
  ASSERT_TRUE(writer_->append(Item("before", "ok", 0, 10), &Tally::cb, &tally));
  ASSERT_TRUE(writer_->drain(milliseconds(5000)));
  ASSERT_TRUE(WaitApplied(1));
  EXPECT_EQ(tally.ok.load(), 1u);

  // The secondary is promoted (or re-assigned) and fences the old primary.
  ASSERT_TRUE(ring_->revoke());
  Status st = writer_->append(Item("after", "fenced", 0, 11), &Tally::cb, &tally);
  if (st) {
    // Accepted locally; its delivery must fail.
    (void)writer_->drain(milliseconds(5000));
    EXPECT_EQ(tally.err.load(), 1u);
    std::lock_guard<std::mutex> g(tally.mu);
    st = tally.first_error;
  }
  std::printf("[ info ] fenced append: %s\n", st.to_string().c_str());
  EXPECT_TRUE(st.code() == Code::kRevokedKey || st.code() == Code::kPeerLost) << st.to_string();
  EXPECT_FALSE(writer_->status());
  EXPECT_FALSE(writer_->append(Item("again", "x", 0, 12), &Tally::cb, &tally));
  std::this_thread::sleep_for(milliseconds(20));
  Txn txn = store_->begin("after");
  EXPECT_EQ(txn.find(), nullptr);
}


// ----- a secondary in another process -----
//
// The test binary re-executes itself with FTM_REPL_SECONDARY set; a static
// initializer turns that process into a secondary (ring, store, applier)
// before GoogleTest starts. It prints "RING <port> <descriptor hex>\n" on
// stdout (a pipe), accepts one connection, then only its fabric progress
// and applier threads run until it is killed.
[[noreturn]] void run_secondary_process() {
  prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a crashed test binary
  clock::init();
  auto f = rdma::Fabric::open(options("secondary-" + std::to_string(getpid())));
  if (!f) _exit(2);
  Store store(store_options());
  auto ring = LogRing::create(**f, 64 * 1024);
  auto l = (*f)->listen("127.0.0.1", 0);
  if (!ring || !l) _exit(3);
  LogApplier applier(**ring, store);
  applier.start();
  auto wire = (*ring)->descriptor().serialize();
  std::string hex;
  for (std::byte b : wire) {
    char h[3];
    std::snprintf(h, sizeof h, "%02x", unsigned(b));
    hex += h;
  }
  std::printf("RING %u %s\n", unsigned((*l)->port()), hex.c_str());
  std::fflush(stdout);
  auto c = (*l)->accept(milliseconds(20000));
  if (!c) _exit(4);
  for (;;) pause();
}

[[maybe_unused]] const int kSecondaryHook = [] {
  const char* v = std::getenv("FTM_REPL_SECONDARY");
  if (v && *v) run_secondary_process();
  return 0;
}();

struct Child {
  pid_t pid = -1;
  uint16_t port = 0;
  rdma::RegionDescriptor ring;
};

Child spawn_secondary() {
  Child ch;
  int fds[2];
  if (pipe(fds) != 0) return ch;
  // Built before fork: until exec, the child of a threaded parent may only
  // call async-signal-safe functions.
  std::vector<char*> env;
  for (char** e = environ; *e; e++)
    if (std::strncmp(*e, "FTM_REPL_SECONDARY=", 19) != 0) env.push_back(*e);
  char var[] = "FTM_REPL_SECONDARY=1";
  env.push_back(var);
  env.push_back(nullptr);
  char arg0[] = "repl_secondary";
  char* argv[] = {arg0, nullptr};
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    close(fds[1]);
    execve("/proc/self/exe", argv, env.data());
    _exit(127);
  }
  close(fds[1]);
  ch.pid = pid;
  FILE* in = fdopen(fds[0], "r");
  char hex[2 * rdma::RegionDescriptor::kWireSize + 1] = {};
  unsigned port = 0;
  if (std::fscanf(in, "RING %u %80s", &port, hex) == 2) {
    std::byte wire[rdma::RegionDescriptor::kWireSize];
    for (size_t i = 0; i < sizeof wire; i++) {
      unsigned v = 0;
      std::sscanf(hex + 2 * i, "%2x", &v);
      wire[i] = std::byte(v);
    }
    auto d = rdma::RegionDescriptor::parse(wire);
    if (d) {
      ch.port = static_cast<uint16_t>(port);
      ch.ring = *d;
    }
  }
  std::fclose(in);
  return ch;
}

void reap(Child& ch) {
  if (ch.pid <= 0) return;
  kill(ch.pid, SIGKILL);
  waitpid(ch.pid, nullptr, 0);
  ch.pid = -1;
}

// A primary connected to a secondary process.
class ReplLogProcessTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { clock::init(); }
  void SetUp() override {
    child_ = spawn_secondary();
    ASSERT_GT(child_.pid, 0);
    ASSERT_NE(child_.port, 0) << "secondary process did not start";
    rdma::FabricOptions o = options("primary");
    o.op_timeout = milliseconds(300);
    auto f = rdma::Fabric::open(o);
    ASSERT_TRUE(f) << f.status().to_string();
    fabric_ = std::move(*f);
    auto c = fabric_->connect("127.0.0.1", child_.port);
    ASSERT_TRUE(c) << c.status().to_string();
    conn_ = std::move(*c);
    auto w = LogWriter::attach(*fabric_, *conn_, child_.ring);
    ASSERT_TRUE(w) << w.status().to_string();
    writer_ = std::move(*w);
  }
  void TearDown() override {
    if (child_.pid > 0) kill(child_.pid, SIGCONT);
    writer_.reset();
    conn_.reset();
    reap(child_);
  }

  // Appends 500-byte effects from a thread until one fails; returns that
  // failure (the writer waits for space when the ring is full).
  std::thread AppendUntilError(Tally& tally, std::atomic<uint64_t>& appended,
                               Status& error) {
    return std::thread([&] {
      std::string value(500, 'p');
      for (uint64_t i = 1;; i++) {
        Status st = writer_->append(Item("p" + std::to_string(i % 700), value, 0, i),
                                    &Tally::cb, &tally);
        if (!st) {
          error = st;
          return;
        }
        appended++;
      }
    });
  }

  Child child_;
  std::unique_ptr<rdma::Fabric> fabric_;
  std::unique_ptr<rdma::Connection> conn_;
  std::unique_ptr<LogWriter> writer_;
};

TEST_F(ReplLogProcessTest, StoppedSecondaryTimesOutPendingAppends) {
  Tally tally;
  std::string value(500, 's');
  // 50 entries (~28 KB) fit in the 64 KiB ring whatever was applied.
  for (uint64_t i = 1; i <= 50; i++)
    ASSERT_TRUE(writer_->append(Item("s" + std::to_string(i), value, 0, i), &Tally::cb, &tally));
  ASSERT_TRUE(writer_->drain(milliseconds(5000)));
  EXPECT_EQ(tally.ok.load(), 50u);

  // A stopped secondary never completes a write: the appends are accepted
  // (there is space) and fail at the deadline (300 ms here), not hang.
  ASSERT_EQ(kill(child_.pid, SIGSTOP), 0);
  // Else a child not yet stopped can still complete appends (seen once in
  // 15 runs at load 6).
  ASSERT_TRUE(ftm::testing::wait_stopped(child_.pid));
  auto t0 = SteadyClock::now();
  for (uint64_t i = 51; i <= 70; i++)
    ASSERT_TRUE(writer_->append(Item("s" + std::to_string(i), value, 0, i), &Tally::cb, &tally));
  while (tally.ok.load() + tally.err.load() < 70 &&
         SteadyClock::now() - t0 < milliseconds(5000))
    std::this_thread::sleep_for(milliseconds(1));
  double ms = std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count();
  Status first;
  {
    std::lock_guard<std::mutex> g(tally.mu);
    first = tally.first_error;
  }
  std::printf("[ info ] 20 pending appends failed after %.0f ms: %s\n", ms,
              first.to_string().c_str());
  EXPECT_EQ(tally.ok.load(), 50u);
  EXPECT_EQ(tally.err.load(), 20u);
  EXPECT_EQ(first.code(), Code::kTimeout) << first.to_string();
  EXPECT_EQ(writer_->status().code(), Code::kTimeout);
  EXPECT_FALSE(tally.out_of_order.load());
  EXPECT_LT(ms, 3000);
  Status later = writer_->append(Item("late", value, 0, 99), &Tally::cb, &tally);
  EXPECT_EQ(later.code(), Code::kTimeout) << later.to_string();
}

TEST_F(ReplLogProcessTest, KilledSecondaryFailsPendingAppendsWithPeerLost) {
  Tally tally;
  std::atomic<uint64_t> appended{0};
  Status error;
  std::thread t = AppendUntilError(tally, appended, error);
  while (appended.load() < 2000) std::this_thread::sleep_for(milliseconds(1));
  auto t0 = SteadyClock::now();
  reap(child_);
  t.join();
  double ms = std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count();
  Status drained = writer_->drain(milliseconds(5000));
  std::printf("[ info ] %llu delivered, %llu failed; appender stopped after %.0f ms: %s\n",
              (unsigned long long)tally.ok.load(), (unsigned long long)tally.err.load(), ms,
              error.to_string().c_str());
  EXPECT_EQ(error.code(), Code::kPeerLost) << error.to_string();
  EXPECT_NE(error.peer().find("secondary-"), std::string::npos) << error.to_string();
  EXPECT_EQ(drained.code(), Code::kPeerLost) << drained.to_string();
  EXPECT_EQ(tally.ok.load() + tally.err.load(), appended.load());
  EXPECT_LT(ms, 2000);
}

}  // namespace
}  // namespace ftm::repl
