// ReplicationManager with two or three data servers in one process (tcp
// provider on 127.0.0.1): a real MetaServer, Membership, PeerMesh and Store
// per node. Writes made on a primary's Store show up in its secondaries'
// Stores with the same value, flags, cas and exptime; barrier() fires only
// for threads with undelivered effects; a ring much smaller than a burst
// slows the writer and loses nothing.
#include "replication/replication_manager.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "rdma/fabric_domain.h"
#include "replication/membership.h"
#include "replication/meta_server.h"
#include "replication/peer_mesh.h"
#include "src/clock.h"
#include "src/execute.h"
#include "src/stats.h"
#include "src/store.h"
#include "t/unit/test_fabric.h"

namespace ftm::repl {
namespace {

using std::chrono::milliseconds;

// One data server without the memcached front end.
struct Node {
  std::unique_ptr<rdma::Fabric> fabric;
  std::unique_ptr<Store> store;
  std::unique_ptr<PeerMesh> mesh;
  std::unique_ptr<Membership> member;
  std::mutex mu;
  std::unique_ptr<ReplicationManager> mgr;  // guarded by mu
  std::atomic<uint64_t> epoch{0};           // last map handed to mgr
  // Options::log runs on the manager's threads (repair, recovery), some
  // of them while follow() holds mu: a mutex of its own.
  std::mutex log_mu;
  std::vector<std::string> log_lines;  // guarded by log_mu

  bool start(int index, uint16_t meta_port, const ReplicationManager::Options& ro,
             size_t item_size_max) {
    fabric = open_fabric("node-" + std::to_string(index));
    if (!fabric) return false;
    Store::Options so;
    so.sweeper = false;
    so.item_size_max = item_size_max;
    store = std::make_unique<Store>(so);
    PeerMesh::Options mo;
    mo.fabric = fabric.get();
    auto m = PeerMesh::start(mo);
    if (!m) {
      ADD_FAILURE() << m.status().to_string();
      return false;
    }
    mesh = std::move(m).value();
    MembershipOptions o;
    o.meta_port = meta_port;
    o.memcached_addr = "127.0.0.1:" + std::to_string(11300 + index);
    o.fabric_addr = "127.0.0.1:" + std::to_string(mesh->port());
    o.backoff_initial = milliseconds(20);
    o.backoff_max = milliseconds(200);
    o.log = [](std::string_view) {};
    o.on_map = [this](std::shared_ptr<const ClusterMap> map) { follow(std::move(map)); };
    member = Membership::start(*fabric, o);
    mesh->set_membership(member.get());
    std::lock_guard<std::mutex> g(mu);
    ReplicationManager::Options opts = ro;
    opts.log = [this](std::string_view l) {
      std::lock_guard<std::mutex> lg(log_mu);
      log_lines.emplace_back(l);
    };
    mgr = ReplicationManager::create(*fabric, *mesh, *member, *store, opts);
    if (auto map = member->map()) {
      mgr->on_map(map);
      epoch = map->epoch();
    }
    return true;
  }

  void follow(std::shared_ptr<const ClusterMap> map) {
    std::lock_guard<std::mutex> g(mu);
    if (!mgr || map->epoch() <= epoch) return;
    uint64_t e = map->epoch();
    mgr->on_map(std::move(map));
    epoch = e;
  }

  void stop() {
    if (member) member->stop();
    if (mesh) mesh->close();
    {
      std::lock_guard<std::mutex> g(mu);
      mgr.reset();
    }
    mesh.reset();
    member.reset();
    store.reset();
    fabric.reset();
  }
  ~Node() { stop(); }

  uint32_t id() const { return member->node_id(); }
};

// Waits for one barrier's callback.
struct BarrierWait {
  std::mutex mu;
  std::condition_variable cv;
  bool fired = false;
  bool ok = false;
  std::thread::id thread;
  static void done(void* ctx, bool ok) {
    auto* w = static_cast<BarrierWait*>(ctx);
    std::lock_guard<std::mutex> g(w->mu);
    w->fired = true;
    w->ok = ok;
    w->thread = std::this_thread::get_id();
    w->cv.notify_all();
  }
  bool wait(milliseconds t) {
    std::unique_lock<std::mutex> g(mu);
    return cv.wait_for(g, t, [this] { return fired; });
  }
};

// barrier() on this thread: true when everything it wrote is delivered
// (at once if nothing was pending, else when the callback says ok).
bool sync(ReplicationManager& m) {
  BarrierWait w;
  if (!m.barrier(&BarrierWait::done, &w)) return true;
  return w.wait(milliseconds(10000)) && w.ok;
}

struct Copy {
  bool present = false;
  std::string value;
  uint32_t flags = 0;
  uint64_t cas = 0;
  rel_time_t exptime = 0;
  bool operator==(const Copy&) const = default;
};

Copy read(Store& store, std::string_view key) {
  Copy c;
  Txn txn = store.begin(key);
  if (Item* it = txn.find()) {
    c.present = true;
    c.value = std::string(it->value());
    c.flags = it->client_flags;
    c.cas = it->cas;
    c.exptime = it->exptime;
  }
  return c;
}

bool set(Store& store, std::string_view key, std::string_view value, uint32_t flags = 0,
         rel_time_t exptime = 0) {
  ThreadStats stats;
  AllocError err;
  ItemPtr it = store.allocate(key, flags, exptime, value.size(), &err);
  if (!it) return false;
  std::copy(value.begin(), value.end(), it->value_buf());
  it->value_buf()[value.size()] = '\r';
  it->value_buf()[value.size() + 1] = '\n';
  return exec::store_item(store, stats, std::move(it), exec::StoreMode::kSet) ==
         exec::StoreResult::kStored;
}

class ReplicationManagerTest : public ::testing::Test {
 protected:
  void SetUp() override { clock::init(); }
  void TearDown() override {
    nodes_.clear();
    meta_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // A meta server and `n` nodes, all following the map with every node.
  void start(int n, uint32_t replicas, const ReplicationManager::Options& ro = {},
             size_t item_size_max = 1u << 20) {
    char tmpl[] = "/tmp/ftm-rmgr-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    meta_fabric_ = open_fabric("meta");
    ASSERT_TRUE(meta_fabric_);
    MetaServerOptions mo;
    mo.listen_port = 0;
    mo.state_dir = dir_ + "/state";
    mo.replicas = replicas;
    mo.heartbeat_interval = heartbeat_interval_;
    mo.log = [](std::string_view) {};
    auto ms = MetaServer::start(*meta_fabric_, mo);
    ASSERT_TRUE(ms) << ms.status().to_string();
    meta_ = std::move(ms).value();
    for (int i = 0; i < n; ++i) {
      nodes_.push_back(std::make_unique<Node>());
      ASSERT_TRUE(nodes_.back()->start(i + 1, meta_->port(), ro, item_size_max));
    }
    // Every node joined and its manager follows the final map.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    for (;;) {
      auto m = meta_->map();
      bool ready = m && m->servers().size() == size_t(n);
      for (auto& node : nodes_) ready = ready && node->epoch.load() == m->epoch();
      if (ready) break;
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "cluster did not converge";
      std::this_thread::sleep_for(milliseconds(20));
    }
    map_ = meta_->map();
  }

  Node& node_by_id(uint32_t id) {
    for (auto& n : nodes_) {
      if (n->id() == id) return *n;
    }
    ADD_FAILURE() << "no node " << id;
    return *nodes_[0];
  }

  // Keys whose primary is `node`.
  // Bounded: a node with no primaries in map_ (e.g. declared failed and
  // joined again while the test started) fails the test, not hangs it.
  std::vector<std::string> keys_of(uint32_t node, int count, const std::string& prefix = "key") {
    std::vector<std::string> keys;
    for (int i = 0; keys.size() < size_t(count); ++i) {
      if (i == 1000 * count) {
        ADD_FAILURE() << "node " << node << " is the primary of no partition in map epoch "
                      << map_->epoch();
        break;
      }
      std::string k = prefix + std::to_string(i);
      if (map_->primary(map_->partition_of(k)) == node) keys.push_back(k);
    }
    return keys;
  }

  // Waits until `key` reads as `want` on `store`.
  bool eventually_equal(Store& store, const std::string& key, const Copy& want) {
    for (int i = 0; i < 500; ++i) {
      if (read(store, key) == want) return true;
      std::this_thread::sleep_for(milliseconds(10));
    }
    return false;
  }

  // 0: no heartbeats, so no failover (the meta server keeps a lost node).
  std::chrono::microseconds heartbeat_interval_{5000};
  std::string dir_;
  std::unique_ptr<rdma::Fabric> meta_fabric_;
  std::unique_ptr<MetaServer> meta_;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::shared_ptr<const ClusterMap> map_;
};

TEST_F(ReplicationManagerTest, WritesReachTheSecondaryWithSameCasFlagsExptime) {
  start(2, 2);
  Node& a = *nodes_[0];
  const uint32_t a_id = a.id();
  auto keys = keys_of(a_id, 50);
  const rel_time_t exp = clock::realtime(1000);
  for (size_t i = 0; i < keys.size(); ++i) {
    ASSERT_TRUE(set(*a.store, keys[i], "value-" + std::to_string(i), uint32_t(i), i % 2 ? exp : 0));
  }
  BarrierWait w;
  // (false only if all 50 were delivered already: possible, unlikely)
  if (a.mgr->barrier(&BarrierWait::done, &w)) {
    bool fired_inline;
    {
      std::lock_guard<std::mutex> g(w.mu);
      fired_inline = w.fired;  // delivered while barrier() registered
    }
    ASSERT_TRUE(w.wait(milliseconds(5000)));
    EXPECT_TRUE(w.ok);
    // On this thread only before barrier() returned (header); otherwise from
    // a flusher thread. (This failed in CI when the last effect landed
    // during registration: the header did not say so.)
    if (!fired_inline) EXPECT_NE(w.thread, std::this_thread::get_id()) << "fired later on this thread";
  }
  // Everything delivered: nothing left to wait for.
  BarrierWait w2;
  EXPECT_FALSE(a.mgr->barrier(&BarrierWait::done, &w2));

  for (const auto& k : keys) {
    uint32_t secondary = map_->secondaries(map_->partition_of(k))[0];
    Node& b = node_by_id(secondary);
    Copy want = read(*a.store, k);
    ASSERT_TRUE(want.present);
    EXPECT_TRUE(eventually_equal(*b.store, k, want)) << k;
  }

  // Deletes become tombstones; an incr in place (same length) travels too.
  ASSERT_TRUE(set(*a.store, keys[0], "41"));
  uint64_t v = 0;
  ThreadStats st;
  ASSERT_EQ(exec::arith(*a.store, st, keys[0], true, 1, &v), exec::ArithResult::kOk);
  ASSERT_TRUE(exec::remove(*a.store, st, keys[1]));
  EXPECT_TRUE(sync(*a.mgr));
  Node& b0 = node_by_id(map_->secondaries(map_->partition_of(keys[0]))[0]);
  Node& b1 = node_by_id(map_->secondaries(map_->partition_of(keys[1]))[0]);
  EXPECT_TRUE(eventually_equal(*b0.store, keys[0], read(*a.store, keys[0])));
  EXPECT_EQ(read(*b0.store, keys[0]).value, "42");
  EXPECT_TRUE(eventually_equal(*b1.store, keys[1], Copy{}));
  EXPECT_EQ(a.mgr->stats().writers, 1u);
}

TEST_F(ReplicationManagerTest, ReadsAndForeignKeysNeedNoBarrier) {
  start(2, 2);
  Node& a = *nodes_[0];
  Node& b = *nodes_[1];
  auto mine = keys_of(a.id(), 5);
  auto theirs = keys_of(b.id(), 5, "other");
  // A write to a key this node is not primary of is not replicated by it.
  for (const auto& k : theirs) ASSERT_TRUE(set(*a.store, k, "x"));
  BarrierWait w;
  EXPECT_FALSE(a.mgr->barrier(&BarrierWait::done, &w));
  // Reads: nothing.
  for (const auto& k : mine) read(*a.store, k);
  EXPECT_FALSE(a.mgr->barrier(&BarrierWait::done, &w));
  EXPECT_FALSE(w.fired);
  EXPECT_EQ(a.mgr->stats().effects, 0u);
}

TEST_F(ReplicationManagerTest, FlushAllHidesTheSameItemsOnEveryCopy) {
  start(2, 2);
  Node& a = *nodes_[0];
  Node& b = *nodes_[1];
  auto keys_a = keys_of(a.id(), 20, "fa");
  auto keys_b = keys_of(b.id(), 20, "fb");
  auto write = [&](Node& n, const std::vector<std::string>& keys, const std::string& v) {
    for (const auto& k : keys) ASSERT_TRUE(set(*n.store, k, v));
    ASSERT_TRUE(sync(*n.mgr));
  };
  write(a, keys_a, "before");
  write(b, keys_b, "before");
  // The front end broadcasts flush_all: every server flushes. Each primary
  // ships its split; the barrier covers it.
  a.store->flush_all(0);
  b.store->flush_all(0);
  for (Node* n : {&a, &b}) EXPECT_TRUE(sync(*n->mgr));
  // Half the keys written again right after the flush (same second, most
  // likely): they must be visible on both copies, the rest on neither.
  std::vector<std::string> again_a(keys_a.begin(), keys_a.begin() + 10);
  std::vector<std::string> again_b(keys_b.begin(), keys_b.begin() + 10);
  write(a, again_a, "after");
  write(b, again_b, "after");
  for (const auto* keys : {&keys_a, &keys_b}) {
    for (size_t i = 0; i < keys->size(); ++i) {
      const std::string& k = (*keys)[i];
      Copy pa = read(*a.store, k), pb = read(*b.store, k);
      Copy want = i < 10 ? (pa.present ? pa : pb) : Copy{};
      EXPECT_EQ(want.present, i < 10) << k;
      if (i < 10) {
        EXPECT_EQ(want.value, "after") << k;
      }
      EXPECT_TRUE(eventually_equal(*a.store, k, want)) << k << " on node " << a.id();
      EXPECT_TRUE(eventually_equal(*b.store, k, want)) << k << " on node " << b.id();
    }
  }
}

TEST_F(ReplicationManagerTest, ThreeCopiesAndManyThreads) {
  start(3, 3);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (auto& np : nodes_) {
    Node* n = np.get();
    threads.emplace_back([this, n, &failures] {
      auto keys = keys_of(n->id(), 200, "t" + std::to_string(n->id()) + "-");
      for (size_t i = 0; i < keys.size(); ++i) {
        if (!set(*n->store, keys[i], std::string(100 + i % 50, char('a' + i % 26)))) failures++;
        if (i % 10 == 9 && !sync(*n->mgr)) failures++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  // Every replica holds every key identically.
  for (auto& np : nodes_) {
    auto keys = keys_of(np->id(), 200, "t" + std::to_string(np->id()) + "-");
    for (const auto& k : keys) {
      Copy want = read(*np->store, k);
      ASSERT_TRUE(want.present);
      for (uint32_t s : map_->secondaries(map_->partition_of(k))) {
        EXPECT_TRUE(eventually_equal(*node_by_id(s).store, k, want)) << k << " on node " << s;
      }
    }
  }
}

TEST_F(ReplicationManagerTest, RingSmallerThanABurstLosesNothing) {
  ReplicationManager::Options ro;
  ro.ring_size = 16 * 1024;
  start(2, 2, ro, /*item_size_max=*/4096);
  Node& a = *nodes_[0];
  Node& b = *nodes_[1];
  auto keys = keys_of(a.id(), 2000, "burst");
  // ~1.2 MB of entries through a 16 KiB ring.
  for (size_t i = 0; i < keys.size(); ++i) {
    ASSERT_TRUE(set(*a.store, keys[i], std::string(500, char('a' + i % 26)) + std::to_string(i)));
  }
  EXPECT_TRUE(sync(*a.mgr));
  EXPECT_EQ(a.mgr->stats().append_errors, 0u);
  EXPECT_GT(a.mgr->stats().full_waits, 0u) << "the burst should have filled the ring";
  for (const auto& k : keys) EXPECT_TRUE(eventually_equal(*b.store, k, read(*a.store, k))) << k;
}

// Writes until a barrier has to wait on the stopped secondary; returns
// that barrier's outcome (nullopt: none had to wait).
std::optional<bool> barrier_after_loss(Node& a, const std::vector<std::string>& keys) {
  for (int round = 0; round < 20; ++round) {
    if (!set(*a.store, keys[round % 3], "v" + std::to_string(round))) return false;
    BarrierWait w;
    if (a.mgr->barrier(&BarrierWait::done, &w)) {
      if (!w.wait(milliseconds(10000))) {
        ADD_FAILURE() << "a barrier must never hang";
        return false;
      }
      if (!w.ok) return false;
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
  return true;
}

// Without failover (no heartbeats) the lost secondary stays in the map: a
// barrier waiting on it fails once dead_hold has passed.
TEST_F(ReplicationManagerTest, LostSecondaryFailsTheBarrierWithoutFailover) {
  heartbeat_interval_ = std::chrono::microseconds(0);
  ReplicationManager::Options ro;
  ro.writer.op_timeout = milliseconds(500);
  ro.writer.full_wait = milliseconds(500);
  ro.dead_hold = milliseconds(300);
  ro.repair_interval = milliseconds(100);
  start(2, 2, ro);
  Node& a = *nodes_[0];
  auto keys = keys_of(a.id(), 3);
  nodes_[1]->stop();
  EXPECT_EQ(barrier_after_loss(a, keys), std::optional<bool>(false));
}

// Issue 6: the lost secondary is declared failed; the barriers held on it
// complete ok (the effects are in every live secondary: none), and the
// writes are acknowledged by the primary alone, in a degraded partition.
TEST_F(ReplicationManagerTest, LostSecondaryIsFailedOverAndHeldBarriersComplete) {
  ReplicationManager::Options ro;
  ro.writer.op_timeout = milliseconds(500);
  ro.writer.full_wait = milliseconds(500);
  ro.dead_hold = milliseconds(5000);  // longer than detection: the map decides
  start(2, 2, ro);
  Node& a = *nodes_[0];
  auto keys = keys_of(a.id(), 3);
  const uint32_t b_id = nodes_[1]->id();
  nodes_[1]->stop();
  EXPECT_EQ(barrier_after_loss(a, keys), std::optional<bool>(true));
  auto m = meta_->map();
  ASSERT_NE(m->server(b_id), nullptr);
  EXPECT_EQ(m->server(b_id)->state, ServerState::kFailed);
}

TEST_F(ReplicationManagerTest, FailedWriterIsRepairedForTheSameMap) {
  ReplicationManager::Options ro;
  ro.writer.op_timeout = milliseconds(500);
  ro.writer.full_wait = milliseconds(500);
  ro.repair_interval = milliseconds(100);
  start(2, 2, ro);
  Node& a = *nodes_[0];
  Node& b = *nodes_[1];
  auto keys = keys_of(a.id(), 3);
  // B's manager goes away: its rings are freed, A's writer fails.
  {
    std::lock_guard<std::mutex> g(b.mu);
    b.mgr.reset();
  }
  bool failed = false;
  for (int round = 0; round < 20 && !failed; ++round) {
    ASSERT_TRUE(set(*a.store, keys[0], "lost" + std::to_string(round)));
    BarrierWait w;
    if (a.mgr->barrier(&BarrierWait::done, &w)) {
      ASSERT_TRUE(w.wait(milliseconds(10000)));
      failed = !w.ok;
    }
  }
  ASSERT_TRUE(failed);
  // B serves rings again; A's repair thread re-attaches without a new map.
  {
    std::lock_guard<std::mutex> g(b.mu);
    b.mgr = ReplicationManager::create(*b.fabric, *b.mesh, *b.member, *b.store, ro);
    ASSERT_TRUE(b.mgr->on_map(b.member->map()));
  }
  bool ok = false;
  for (int round = 0; round < 100 && !ok; ++round) {
    std::this_thread::sleep_for(milliseconds(50));
    ASSERT_TRUE(set(*a.store, keys[1], "back" + std::to_string(round)));
    ok = sync(*a.mgr);
  }
  ASSERT_TRUE(ok) << "writer never re-attached";
  EXPECT_TRUE(eventually_equal(*b.store, keys[1], read(*a.store, keys[1])));
}


// Issue 6, recovery onto a new secondary: a failure gives the survivors
// secondary roles for partitions they never held. Each one fetches the
// older data from the primary's snapshot while writes and deletes go on;
// once recovery is over, both copies of every partition are identical.
TEST_F(ReplicationManagerTest, NewSecondaryRecoversOlderDataFromASnapshot) {
  ReplicationManager::Options ro;
  ro.writer.op_timeout = milliseconds(500);
  ro.writer.full_wait = milliseconds(500);
  ro.dead_hold = milliseconds(5000);
  start(3, 2, ro);
  auto value = [](int i, int round) {
    return std::string(2000 + i % 1000, char('a' + (i + round) % 26));
  };
  std::vector<std::string> keys;
  for (int i = 0; i < 3000; ++i) keys.push_back("rk" + std::to_string(i));
  for (size_t i = 0; i < keys.size(); ++i) {
    Node& n = node_by_id(map_->primary(map_->partition_of(keys[i])));
    ASSERT_TRUE(set(*n.store, keys[i], value(int(i), 0), uint32_t(i)));
  }
  for (auto& n : nodes_) ASSERT_TRUE(sync(*n->mgr));

  const uint32_t victim = nodes_[2]->id();
  nodes_[2]->stop();

  // Writes go to a node only while it follows the newest map and is the
  // key's primary there (its lock keeps the map from changing meanwhile).
  auto write = [&](size_t i, int round, bool del) {
    auto m = meta_->map();
    const uint32_t q = m->primary(m->partition_of(keys[i]));
    if (q == victim || q == 0) return;
    Node& n = node_by_id(q);
    std::lock_guard<std::mutex> g(n.mu);
    if (n.epoch.load() != m->epoch()) return;
    if (del) {
      ThreadStats st;
      exec::remove(*n.store, st, keys[i]);
    } else {
      set(*n.store, keys[i], value(int(i), round), uint32_t(round));
    }
  };
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int round = 1; !stop.load(); ++round) {
      for (size_t i = 0; i < 500; ++i) write(i, round, false);
      for (size_t i = 2500; i < 2600; ++i) write(i, round, true);
      std::this_thread::sleep_for(milliseconds(5));
    }
  });

  // The victim is failed over, every survivor follows that map and has
  // recovered everything it became a secondary of.
  std::shared_ptr<const ClusterMap> m;
  auto wait_recovered = [&] {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  uint64_t recovered = 0;
  for (;;) {
    m = meta_->map();
    bool done = m->server(victim) && m->server(victim)->state == ServerState::kFailed;
    recovered = 0;
    for (int i = 0; i < 2 && done; ++i) {
      Node& n = *nodes_[i];
      std::lock_guard<std::mutex> g(n.mu);
      const auto st = n.mgr->stats();
      done = n.epoch.load() == m->epoch() && st.recovering_partitions == 0 &&
             n.mgr->recovery_state() == "caught up";
      recovered += st.recovered_partitions;
    }
    if (done && recovered > 0) break;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "recovery did not finish";
    std::this_thread::sleep_for(milliseconds(50));
  }
  };
  wait_recovered();
  std::this_thread::sleep_for(milliseconds(200));  // some writes after recovery too
  stop = true;
  writer.join();
  wait_recovered();  // the map may have moved on (and recovered again) meanwhile
  // Only the victim failed: a survivor declared failed as well (its
  // heartbeats late by more than the detector's floor, e.g. on a starved
  // host) would leave partitions with no copy, and the checks below would
  // report lost keys that this test is not about.
  for (int i = 0; i < 2; ++i) {
    const ServerInfo* s = m->server(nodes_[i]->id());
    ASSERT_TRUE(s != nullptr && s->state == ServerState::kUp)
        << "survivor " << nodes_[i]->id() << " was declared failed too (false suspicion)";
  }

  // Both copies of every key agree (absent on both for the deleted ones).
  int mismatches = 0;
  for (size_t i = 0; i < keys.size() && mismatches < 5; ++i) {
    const uint32_t p = m->partition_of(keys[i]);
    Node& primary = node_by_id(m->primary(p));
    const Copy want = read(*primary.store, keys[i]);
    EXPECT_EQ(want.present, i < 2500 || i >= 2600) << keys[i];
    for (uint32_t s : m->secondaries(p)) {
      if (s == 0) continue;
      if (!eventually_equal(*node_by_id(s).store, keys[i], want)) {
        ++mismatches;
        ADD_FAILURE() << keys[i] << " (partition " << p << ") differs on node " << s
                      << " from its primary " << m->primary(p);
      }
    }
  }
  EXPECT_EQ(mismatches, 0);
  bool logged = false;
  for (int i = 0; i < 2; ++i) {
    std::lock_guard<std::mutex> g(nodes_[i]->log_mu);
    for (const auto& l : nodes_[i]->log_lines) logged = logged || l.rfind("recovered ", 0) == 0;
  }
  EXPECT_TRUE(logged);
}

}  // namespace
}  // namespace ftm::repl
