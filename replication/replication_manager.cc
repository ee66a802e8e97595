// See replication_manager.h. Hot path (on_change) cost per effect: one
// relaxed atomic load of the state version, a map lookup, and per secondary
// one LogWriter::append (short lock + encode into preallocated memory) and
// an update of this thread's pending list (a few entries, reused: no
// allocation once it has grown to the number of secondaries).
#include "replication/replication_manager.h"

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <string>
#include <utility>

#include "replication/wire_bytes.h"
#include "src/clock.h"

namespace ftm::repl {

namespace {

std::atomic<uint64_t> g_next_manager_id{1};

// kRingOpen request: u32 primary node id, u64 ring size (little-endian).
// Reply: u8 0 + RegionDescriptor wire form, or u8 1 + error text.
constexpr size_t kRingOpenSize = 12;

using wire::get_le;
using wire::put_le;

// One barrier() that has to wait: fires `done` when `remaining` drops to 0.
struct Waiter {
  Cluster::BarrierDone done;
  void* ctx;
  std::atomic<int> remaining;
  std::atomic<bool> ok{true};
};

void complete(Waiter* w, bool ok) {
  if (!ok) w->ok.store(false, std::memory_order_relaxed);
  if (w->remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    w->done(w->ctx, w->ok.load(std::memory_order_relaxed));
    delete w;
  }
}

}  // namespace

// One secondary's log, as seen from this primary.
struct ReplicationManager::Peer {
  uint32_t node = 0;
  Membership* membership = nullptr;     // for reports
  std::atomic<uint64_t> ok_through{0};  // every lsn <= this was delivered
  std::atomic<bool> failed{false};      // some lsn failed: the writer is dead
  // When `failed` was first set (steady clock ns); waiters on a dead writer
  // are held until the map says what became of its node (release()).
  std::atomic<int64_t> dead_since{0};
  std::atomic<int> nwaiters{0};
  uint64_t ring_key = 0;  // remote key of the ring the writer feeds
  std::mutex mu;
  struct Need {
    Waiter* w;
    uint64_t lsn;
  };
  std::vector<Need> waiters;  // guarded by mu
  // Last member: destroyed first, so its closing callbacks find the rest.
  std::unique_ptr<LogWriter> writer;

  // Cold path (on_map, repair, stats): status() takes the writer's lock.
  bool healthy() const {
    return writer && !failed.load(std::memory_order_acquire) && writer->status().is_ok();
  }

  // Writer callback (flusher thread, lsn order).
  static void on_delivered(void* ctx, uint64_t lsn, const rdma::Status& st) {
    auto* p = static_cast<Peer*>(ctx);
    if (st.is_ok()) {
      p->ok_through.store(lsn, std::memory_order_seq_cst);
    } else {
      p->mark_dead(st);
    }
    // Pairs with barrier(): it registers (seq_cst) and then calls wake().
    if (p->nwaiters.load(std::memory_order_seq_cst) > 0) p->wake();
  }

  // The first failure is reported to the meta server as a suspicion of
  // the secondary (Membership::report never blocks).
  void mark_dead(const rdma::Status& why) {
    int64_t zero = 0;
    if (dead_since.compare_exchange_strong(
            zero, std::chrono::steady_clock::now().time_since_epoch().count()) &&
        membership != nullptr)
      membership->report(node, "replication to node " + std::to_string(node) +
                                   " failed: " + why.to_string());
    failed.store(true, std::memory_order_seq_cst);
  }

  // Completes every waiter: `ok` once the map no longer counts the dead
  // writer's node as a live secondary (its effects are in every live one),
  // false otherwise.
  void release(bool ok) {
    std::vector<Waiter*> fire;
    {
      std::lock_guard<std::mutex> lock(mu);
      for (auto& n : waiters) fire.push_back(n.w);
      nwaiters.fetch_sub(int(waiters.size()), std::memory_order_seq_cst);
      waiters.clear();
    }
    for (Waiter* w : fire) complete(w, ok);
  }

  // Completes every waiter whose lsn is delivered. Waiters of a dead
  // writer stay for release().
  void wake() {
    // Fired outside the lock; the vector is this thread's and keeps its
    // capacity, so waking does not allocate after the first few times.
    static thread_local std::vector<std::pair<Waiter*, bool>> fire;
    fire.clear();
    {
      std::lock_guard<std::mutex> lock(mu);
      const uint64_t through = ok_through.load(std::memory_order_seq_cst);
      for (size_t i = 0; i < waiters.size();) {
        if (waiters[i].lsn <= through) {
          fire.emplace_back(waiters[i].w, true);
          waiters[i] = waiters.back();
          waiters.pop_back();
          nwaiters.fetch_sub(1, std::memory_order_seq_cst);
        } else {
          ++i;
        }
      }
    }
    for (auto& [w, ok] : fire) complete(w, ok);
  }
};

// A ring this node serves as a secondary, and its applier.
struct ReplicationManager::Served {
  std::unique_ptr<LogRing> ring;
  std::unique_ptr<LogApplier> applier;  // declared after ring: stops first
};

// What on_change follows: the map and the writer for each node id.
struct ReplicationManager::State {
  std::shared_ptr<const ClusterMap> map;
  std::vector<Peer*> by_node;  // index: node id; nullptr = no writer
  Peer* peer(uint32_t node) const { return node < by_node.size() ? by_node[node] : nullptr; }
};

namespace {

// What a thread appended since its last barrier(), per writer. `peer`
// nullptr records a failed append. Keyed by manager id so several managers
// in one process (tests) and managers destroyed since do not mix.
struct Pending {
  uint64_t mgr;
  ReplicationManager::Peer* peer;
  uint64_t lsn;
};
thread_local std::vector<Pending> t_pending;

struct StateCache {
  uint64_t mgr = 0;
  uint64_t version = 0;
  std::shared_ptr<const ReplicationManager::State> state;
};
thread_local StateCache t_state;

void note_pending(uint64_t mgr, ReplicationManager::Peer* peer, uint64_t lsn) {
  for (Pending& p : t_pending) {
    if (p.mgr == mgr && p.peer == peer) {
      p.lsn = std::max(p.lsn, lsn);
      return;
    }
  }
  t_pending.push_back({mgr, peer, lsn});
}

}  // namespace

// Liveness token the mesh handler checks (the mesh has no way to remove a
// handler; a kRingOpen arriving after the manager is gone is refused).
struct ReplicationManager::Guard {
  std::mutex mu;
  ReplicationManager* self = nullptr;
};

ReplicationManager::ReplicationManager(rdma::Fabric& fabric, PeerMesh& mesh,
                                       Membership& membership, Store& store,
                                       const Options& options)
    : fabric_(fabric),
      mesh_(mesh),
      membership_(membership),
      store_(store),
      opts_(options),
      id_(g_next_manager_id.fetch_add(1)) {}

std::unique_ptr<ReplicationManager> ReplicationManager::create(rdma::Fabric& fabric,
                                                               PeerMesh& mesh,
                                                               Membership& membership,
                                                               Store& store,
                                                               const Options& options) {
  std::unique_ptr<ReplicationManager> m(
      new ReplicationManager(fabric, mesh, membership, store, options));
  auto guard = std::make_shared<Guard>();
  guard->self = m.get();
  m->guard_ = guard;
  mesh.on(PeerRpc::kRingOpen,
          [guard](uint32_t from, std::string_view payload, PeerMesh::Responder respond) {
            std::lock_guard<std::mutex> lock(guard->mu);
            if (guard->self == nullptr) {
              std::string r(1, '\1');
              r += "replication manager stopped";
              respond(r);
              return;
            }
            guard->self->serve_ring_open(from, payload, std::move(respond));
          });
  m->start_recovery();
  store.set_effect_sink(m.get());
  if (options.repair_interval.count() > 0) {
    m->repair_ = std::thread([p = m.get()] { p->repair_main(); });
  }
  return m;
}

ReplicationManager::~ReplicationManager() {
  {
    std::lock_guard<std::mutex> lock(repair_mu_);
    stopping_ = true;
  }
  repair_cv_.notify_all();
  if (repair_.joinable()) repair_.join();
  recovery_.reset();  // its threads use the writers and appliers below
  store_.set_effect_sink(nullptr);
  if (guard_) {
    std::lock_guard<std::mutex> lock(guard_->mu);
    guard_->self = nullptr;
  }
  // Writers first: their closing callbacks fail pending barriers.
  for (auto& p : all_peers_) {
    if (p->writer) p->writer->close();
  }
  all_peers_.clear();
  std::lock_guard<std::mutex> lock(served_mu_);
  served_.clear();
}

void ReplicationManager::log(std::string_view line) const {
  if (opts_.log) {
    opts_.log(line);
  } else {
    std::fprintf(stderr, "replication: %.*s\n", static_cast<int>(line.size()), line.data());
  }
}

size_t ReplicationManager::ring_size() const {
  // An entry is at most half the ring: make room for the largest item.
  size_t need = 2 * (store_.options().item_size_max + kMinEntrySize + kMaxEffectKey + kEntryAlign);
  size_t size = std::max({opts_.ring_size, need, kMinRingSize});
  return (size + 4095) & ~size_t{4095};
}

void ReplicationManager::start_recovery() {
  Recovery::Hooks h;
  h.served = [this](uint32_t primary, uint64_t* ring_key) -> std::shared_ptr<LogApplier> {
    std::lock_guard<std::mutex> lock(served_mu_);
    auto it = served_.find(primary);
    if (it == served_.end()) return nullptr;
    *ring_key = it->second->ring->descriptor().key;
    return std::shared_ptr<LogApplier>(it->second, it->second->applier.get());
  };
  // The map on_change follows, not followed_: effects of a partition reach
  // the secondary only once state_ names it (snapshots taken earlier would
  // miss the writes in between).
  h.writer = [this](uint32_t node, uint64_t ring_key, const std::vector<bool>& held,
                    std::string* why) -> std::function<uint64_t()> {
    std::lock_guard<std::mutex> g(state_mu_);
    const uint32_t self = membership_.node_id();
    if (!state_ || !state_->map || state_->map->partitions() != held.size()) {
      *why = "no map with " + std::to_string(held.size()) + " partitions followed yet";
      return {};
    }
    const ClusterMap& map = *state_->map;
    for (uint32_t p = 0; p < held.size(); ++p) {
      if (!held[p]) continue;
      const auto sec = map.secondaries(p);
      if (map.primary(p) != self || std::find(sec.begin(), sec.end(), node) == sec.end()) {
        *why = "partition " + std::to_string(p) + " is not ours with node " +
               std::to_string(node) + " as a secondary at epoch " + std::to_string(map.epoch());
        return {};
      }
    }
    Peer* peer = state_->peer(node);
    if (peer == nullptr || !peer->healthy() || peer->ring_key != ring_key) {
      *why = "no healthy writer to that ring of node " + std::to_string(node);
      return {};
    }
    return [w = peer->writer.get()] { return w->last_lsn(); };  // kept in all_peers_
  };
  h.log = [this](std::string_view line) { log(line); };
  recovery_ = std::make_unique<Recovery>(fabric_, mesh_, membership_, store_, std::move(h),
                                         opts_.recovery);
}

// ----- secondary side -----

void ReplicationManager::serve_ring_open(uint32_t from, std::string_view payload,
                                         PeerMesh::Responder respond) {
  auto refuse = [&](const std::string& why) {
    log("refused ring for node " + std::to_string(from) + ": " + why);
    std::string r(1, '\1');
    r += why;
    respond(r);
  };
  if (payload.size() != kRingOpenSize) return refuse("bad ring request size");
  const auto primary = static_cast<uint32_t>(get_le(payload, 0, 4));
  const uint64_t size = get_le(payload, 4, 8);
  if (size < kMinRingSize || size % 8 != 0 || size > (uint64_t{1} << 32)) {
    return refuse("bad ring size " + std::to_string(size));
  }

  std::lock_guard<std::mutex> lock(served_mu_);
  auto it = served_.find(primary);
  if (it != served_.end()) {
    // A new writer from the same primary (its old one failed, or it
    // restarted): fence the old writer, apply what landed (it may have
    // been acknowledged), then replace the ring.
    Served& old = *it->second;
    rdma::Status st = old.ring->revoke();
    if (!st) log("revoking the old ring of node " + std::to_string(primary) + ": " + st.to_string());
    old.applier->stop();
    old.applier->apply_available();
    served_.erase(it);
  }
  auto ring = LogRing::create(fabric_, size);
  if (!ring) return refuse("ring allocation: " + ring.status().to_string());
  auto served = std::make_shared<Served>();
  served->ring = std::move(ring).value();
  served->applier = std::make_unique<LogApplier>(*served->ring, store_, opts_.applier);
  served->applier->start();
  const auto desc = served->ring->descriptor().serialize();
  served_[primary] = std::move(served);
  counters_.rings_served.fetch_add(1, std::memory_order_relaxed);

  std::string r(1, '\0');
  r.append(reinterpret_cast<const char*>(desc.data()), desc.size());
  respond(r);
}

// ----- primary side: map changes -----

bool ReplicationManager::on_map(std::shared_ptr<const ClusterMap> map) {
  if (!map) return false;
  std::lock_guard<std::mutex> lock(map_mu_);
  if (followed_ && map->epoch() < followed_->epoch()) return true;  // stale
  return follow(std::move(map), false);
}

void ReplicationManager::repair_main() {
  // Ticks often enough to bound how long a barrier waits on a dead writer
  // (settle_dead_peers); repairs at repair_interval.
  const auto tick = std::min<std::chrono::milliseconds>(opts_.repair_interval,
                                                        std::chrono::milliseconds(50));
  auto next_repair = std::chrono::steady_clock::now() + opts_.repair_interval;
  std::unique_lock<std::mutex> lock(repair_mu_);
  while (!repair_cv_.wait_for(lock, tick, [this] { return stopping_; })) {
    lock.unlock();
    {
      std::lock_guard<std::mutex> g(map_mu_);
      if (std::chrono::steady_clock::now() >= next_repair) {
        next_repair = std::chrono::steady_clock::now() + opts_.repair_interval;
        if (followed_ && needs_repair()) follow(followed_, true);
      }
      settle_dead_peers();
    }
    lock.lock();
  }
}

// Whether a secondary of a partition this node is primary of has no
// healthy writer. REQUIRES: map_mu_ held.
bool ReplicationManager::needs_repair() {
  const ClusterMap& map = *followed_;
  const uint32_t self = membership_.node_id();
  for (uint32_t p = 0; p < map.partitions(); ++p) {
    if (map.primary(p) != self) continue;
    for (uint32_t s : map.secondaries(p)) {
      auto it = peers_.find(s);
      if (s != 0 && (it == peers_.end() || !it->second->healthy())) return true;
    }
  }
  return false;
}

// REQUIRES: map_mu_ held. Completes the barriers waiting on dead writers
// once the map has judged their node (see Peer::release).
void ReplicationManager::settle_dead_peers() {
  const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
  const auto hold = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                        opts_.dead_hold).count();
  std::vector<std::shared_ptr<Peer>> dead;
  {
    std::lock_guard<std::mutex> g(state_mu_);
    for (auto& p : all_peers_)
      if (p->failed.load() && p->nwaiters.load() > 0) dead.push_back(p);
  }
  const uint32_t self = membership_.node_id();
  auto still_secondary = [&](uint32_t node) {
    if (!followed_) return true;  // no verdict without a map
    for (uint32_t p = 0; p < followed_->partitions(); ++p) {
      if (followed_->primary(p) != self) continue;
      for (uint32_t s : followed_->secondaries(p))
        if (s == node) return true;
    }
    return false;
  };
  for (auto& p : dead) {
    if (!still_secondary(p->node)) {
      p->release(true);  // no longer a secondary: its copies do not count
    } else {
      auto it = peers_.find(p->node);
      bool replaced = it == peers_.end() || it->second != p.get();
      if (replaced || now - p->dead_since.load() > hold) p->release(false);
    }
  }
}

// REQUIRES: map_mu_ held. This node became primary of partitions another
// node was primary of: everything that node delivered into our ring may
// have been acknowledged, so it is applied before the map is followed (and
// before the caller routes by it). A primary that is no longer up is
// fenced first: its ring is revoked, so nothing it writes later lands.
void ReplicationManager::take_over(const ClusterMap& prev, const ClusterMap& next) {
  const uint32_t self = membership_.node_id();
  std::vector<uint32_t> from;
  for (uint32_t p = 0; p < next.partitions() && p < prev.partitions(); ++p) {
    uint32_t q = prev.primary(p);
    if (next.primary(p) == self && q != self && q != 0 &&
        std::find(from.begin(), from.end(), q) == from.end())
      from.push_back(q);
  }
  std::lock_guard<std::mutex> lock(served_mu_);
  for (uint32_t q : from) {
    auto it = served_.find(q);
    if (it == served_.end()) continue;
    const ServerInfo* info = next.server(q);
    const bool gone = info == nullptr || info->state != ServerState::kUp;
    Served& sv = *it->second;
    if (gone) {
      rdma::Status st = sv.ring->revoke();
      if (!st) log("revoking the ring of node " + std::to_string(q) + ": " + st.to_string());
    }
    sv.applier->stop();
    size_t n = sv.applier->apply_available();
    log("took over partitions of node " + std::to_string(q) + " at epoch " +
        std::to_string(next.epoch()) + ": applied its log through lsn " +
        std::to_string(sv.applier->applied_lsn()) + " (" + std::to_string(n) +
        " entries at the end)" + (gone ? ", its ring revoked" : ""));
    if (gone)
      served_.erase(it);
    else
      sv.applier->start();
  }
}

void ReplicationManager::fence() {
  std::lock_guard<std::mutex> lock(map_mu_);
  for (auto& [node, peer] : peers_)
    if (peer->writer) peer->writer->close();
  peers_.clear();
  {
    std::lock_guard<std::mutex> g(state_mu_);
    for (auto& p : all_peers_) p->release(false);
    state_ = std::make_shared<State>();  // no map: on_change does nothing
    version_.fetch_add(1, std::memory_order_release);
  }
  followed_.reset();
  recovery_->reset();
  std::lock_guard<std::mutex> g(served_mu_);
  for (auto& [node, sv] : served_) (void)sv->ring->revoke();
  served_.clear();
}

// REQUIRES: map_mu_ held.
bool ReplicationManager::follow(std::shared_ptr<const ClusterMap> map, bool quiet) {
  if (followed_ && followed_ != map) take_over(*followed_, *map);
  const bool changed = followed_ != map;
  auto prev = std::move(followed_);
  followed_ = map;
  const uint32_t self = membership_.node_id();
  auto fail = [&](const std::string& line) {
    if (!quiet) log(line);
  };

  // A writer to a node the map no longer has up is closed: a server
  // declared failed drops its rings and, if it comes back, joins again as a
  // new server under the same id. A writer that saw no error (nothing was
  // written while it was away) would otherwise pass for healthy and never
  // be replaced, and the new server would wait for ever for a ring.
  for (auto it = peers_.begin(); it != peers_.end();) {
    const ServerInfo* info = map->server(it->first);
    const ServerInfo* was = prev ? prev->server(it->first) : nullptr;
    const bool gone = info == nullptr || info->state != ServerState::kUp ||
                      (was != nullptr && was->fabric_addr != info->fabric_addr);
    if (!gone) {
      ++it;
      continue;
    }
    if (it->second->writer) it->second->writer->close();
    it = peers_.erase(it);  // its waiters: settle_dead_peers
  }

  // Secondaries of the partitions this node is primary of.
  std::vector<uint32_t> needed;
  for (uint32_t p = 0; p < map->partitions(); ++p) {
    if (map->primary(p) != self) continue;
    for (uint32_t s : map->secondaries(p)) {
      if (s != 0 && std::find(needed.begin(), needed.end(), s) == needed.end()) needed.push_back(s);
    }
  }

  // Ask every node that lacks a healthy writer for a ring, all at once.
  std::vector<std::pair<uint32_t, SyncCall*>> calls;
  for (uint32_t node : needed) {
    auto it = peers_.find(node);
    if (it != peers_.end() && it->second->healthy()) continue;
    auto* c = new SyncCall;
    std::string req;
    put_le(req, self, 4);
    put_le(req, ring_size(), 8);
    calls.emplace_back(node, c);
    mesh_.call(node, PeerRpc::kRingOpen, req, &SyncCall::on_done, c);
  }

  bool all_ok = true;
  const auto deadline = std::chrono::steady_clock::now() + opts_.attach_timeout;
  for (auto& [node, c] : calls) {
    const std::string peer_name = "node " + std::to_string(node);
    std::unique_lock<std::mutex> lock(c->mu);
    if (!c->cv.wait_until(lock, deadline, [c] { return c->done; })) {
      lock.unlock();
      fail("no replication ring from " + peer_name + " within " +
          std::to_string(opts_.attach_timeout.count()) + " ms");
      SyncCall::release(c);
      all_ok = false;
      continue;
    }
    rdma::Status st = c->status;
    std::string reply = std::move(c->reply);
    lock.unlock();
    SyncCall::release(c);
    if (!st) {
      fail("ring request to " + peer_name + " failed: " + st.to_string());
      all_ok = false;
      continue;
    }
    if (reply.empty() || reply[0] != '\0') {
      fail("ring request to " + peer_name + " refused: " +
          (reply.empty() ? std::string("empty reply") : reply.substr(1)));
      all_ok = false;
      continue;
    }
    auto desc = rdma::RegionDescriptor::parse(std::span<const std::byte>(
        reinterpret_cast<const std::byte*>(reply.data() + 1), reply.size() - 1));
    if (!desc) {
      fail("ring descriptor from " + peer_name + ": " + desc.status().to_string());
      all_ok = false;
      continue;
    }
    auto conn = mesh_.connection(node);
    if (!conn) {
      fail("connection to " + peer_name + ": " + conn.status().to_string());
      all_ok = false;
      continue;
    }
    auto peer = std::make_shared<Peer>();
    peer->node = node;
    peer->membership = &membership_;
    auto writer = LogWriter::attach(fabric_, **conn, *desc, opts_.writer);
    if (!writer) {
      fail("attaching the log writer to " + peer_name + ": " + writer.status().to_string());
      all_ok = false;
      continue;
    }
    peer->writer = std::move(writer).value();
    peer->ring_key = desc->key;
    if (quiet) log("replication writer to " + peer_name + " re-attached");
    peers_[node] = peer.get();
    std::lock_guard<std::mutex> g(state_mu_);
    all_peers_.push_back(std::move(peer));
  }

  // Publish: from now on on_change follows this map with these writers.
  auto state = std::make_shared<State>();
  state->map = std::move(map);
  for (const auto& [node, peer] : peers_) {
    if (state->by_node.size() <= node) state->by_node.resize(size_t{node} + 1, nullptr);
    state->by_node[node] = peer;
  }
  {
    std::lock_guard<std::mutex> g(state_mu_);
    state_ = std::move(state);
    version_.fetch_add(1, std::memory_order_release);
  }
  // After publishing: a primary serves snapshots only for the map
  // on_change follows, and this node's own writers are in place.
  if (changed) recovery_->on_map(prev, followed_);
  settle_dead_peers();
  return all_ok;
}

const ReplicationManager::State* ReplicationManager::current_state() {
  StateCache& c = t_state;
  const uint64_t v = version_.load(std::memory_order_acquire);
  if (c.mgr != id_ || c.version != v) {
    std::lock_guard<std::mutex> g(state_mu_);
    c.mgr = id_;
    c.state = state_;
    c.version = version_.load(std::memory_order_relaxed);
  }
  return c.state.get();
}

// ----- primary side: effects -----

void ReplicationManager::on_change(uint32_t partition, std::string_view key, const Item* after) {
  const State* st = current_state();
  if (st == nullptr || !st->map) return;
  const ClusterMap& map = *st->map;
  // The store partitions by the same hash; only a cluster with P !=
  // kPartitions has to hash again.
  const uint32_t p = map.partitions() == kPartitions ? partition : map.partition_of(key);
  const uint32_t self = membership_.node_id();
  if (map.primary(p) != self) return;  // applying a primary's effect, or not ours
  const auto secondaries = map.secondaries(p);
  if (secondaries.empty()) return;

  Effect e;  // views into the item: no copy, no allocation
  e.partition = static_cast<uint16_t>(p);
  e.epoch = map.epoch();
  e.key = key;
  if (after != nullptr) {
    e.kind = EffectKind::kItem;
    e.client_flags = after->client_flags;
    e.exptime = after->exptime == 0 ? 0 : static_cast<int64_t>(clock::to_unix(after->exptime));
    e.cas = after->cas;
    e.value = after->value();
    e.item_bits = after->iflags & kItemReplicaBits;
  } else {
    e.kind = EffectKind::kTombstone;
  }

  append_all(*st, secondaries, e);
}

void ReplicationManager::append_all(const State& st, std::span<const uint32_t> secondaries,
                                    const Effect& e) {
  for (uint32_t node : secondaries) {
    if (node == 0) continue;
    Peer* peer = st.peer(node);
    if (peer == nullptr) {
      counters_.append_errors.fetch_add(1, std::memory_order_relaxed);
      note_pending(id_, nullptr, 0);
      continue;
    }
    uint64_t lsn = 0;
    // Blocks while the ring is full (back-pressure, up to writer.full_wait).
    rdma::Status s = peer->writer->append(e, &Peer::on_delivered, peer, &lsn);
    if (!s) {
      // The writer is dead: the barrier waits (bounded) for the map to
      // say whether its node is gone (then this effect is in every live
      // secondary) or still there (then the write failed).
      counters_.append_errors.fetch_add(1, std::memory_order_relaxed);
      peer->mark_dead(s);
      note_pending(id_, peer, UINT64_MAX);
      continue;
    }
    counters_.effects.fetch_add(1, std::memory_order_relaxed);
    note_pending(id_, peer, lsn);
  }
}

// flush_all reaches every server (the front end broadcasts it), and each
// runs Store::flush_all, which asks here per partition. A secondary cannot
// split the flush second by its own cas counter (its copies carry the
// primary's cas values), so the primary ships its split (kFlushAll with
// kFlushSplit, in the partition's order of effects) and the secondary
// leaves its copy to that entry (LogApplier -> Store::flush_partition).
bool ReplicationManager::on_flush(uint32_t partition, rel_time_t oldest_live,
                                  uint64_t oldest_cas) {
  const State* st = current_state();
  if (st == nullptr || !st->map) return true;
  const ClusterMap& map = *st->map;
  // Store and map partitions coincide only when P == kPartitions; otherwise
  // every server flushes its whole store by its own split (copies of items
  // stored in the flush's second may then differ).
  if (map.partitions() != kPartitions) return true;
  const uint32_t self = membership_.node_id();
  if (map.primary(partition) != self) return !map.holds(partition, self);

  Effect e;
  e.kind = EffectKind::kFlushAll;
  e.partition = static_cast<uint16_t>(partition);
  e.epoch = map.epoch();
  // Immediate flush (oldest_live before this second): the cas split alone
  // is exact on the secondary, whose item times are its own.
  e.client_flags = kFlushSplit;
  if (oldest_cas != 0 && oldest_live < clock::now()) e.client_flags |= kFlushByCas;
  e.exptime = oldest_live == 0 ? 0 : static_cast<int64_t>(clock::to_unix(oldest_live));
  e.cas = oldest_cas;
  append_all(*st, map.secondaries(partition), e);
  return true;
}

bool ReplicationManager::barrier(Cluster::BarrierDone done, void* ctx) {
  // Take this manager's entries out of the thread's pending list.
  bool failed = false;
  Pending need[8];  // more secondaries than this is impossible (R <= 3),
  size_t n = 0;     // but a map change can add writers: spill below.
  std::vector<Pending> spill;
  for (size_t i = 0; i < t_pending.size();) {
    Pending pd = t_pending[i];
    if (pd.mgr != id_) {
      ++i;
      continue;
    }
    t_pending[i] = t_pending.back();
    t_pending.pop_back();
    if (pd.peer == nullptr) {
      failed = true;
    } else if (pd.lsn > pd.peer->ok_through.load(std::memory_order_acquire)) {
      if (n < 8) {
        need[n++] = pd;
      } else {
        spill.push_back(pd);
      }
    }
  }
  if (failed) {
    counters_.barriers_waited.fetch_add(1, std::memory_order_relaxed);
    done(ctx, false);
    return true;
  }
  if (n == 0) return false;
  counters_.barriers_waited.fetch_add(1, std::memory_order_relaxed);

  // One allocation per barrier that waits (not per effect).
  auto* w = new Waiter{done, ctx, static_cast<int>(n + spill.size()) + 1};
  auto add = [w](const Pending& pd) {
    Peer* p = pd.peer;
    {
      std::lock_guard<std::mutex> lock(p->mu);
      p->waiters.push_back({w, pd.lsn});
      p->nwaiters.fetch_add(1, std::memory_order_seq_cst);
    }
    p->wake();  // it may have been delivered meanwhile
  };
  for (size_t i = 0; i < n; ++i) add(need[i]);
  for (const Pending& pd : spill) add(pd);
  complete(w, true);  // the registration guard
  return true;
}

ReplicationManager::Stats ReplicationManager::stats() const {
  Stats s;
  s.effects = counters_.effects.load(std::memory_order_relaxed);
  s.append_errors = counters_.append_errors.load(std::memory_order_relaxed);
  s.barriers_waited = counters_.barriers_waited.load(std::memory_order_relaxed);
  s.rings_served = counters_.rings_served.load(std::memory_order_relaxed);
  std::lock_guard<std::mutex> g(state_mu_);
  for (const auto& p : all_peers_) {
    if (p->writer) s.full_waits += p->writer->stats().full_waits;
  }
  if (state_) {
    for (Peer* p : state_->by_node) {
      if (p != nullptr && p->healthy()) s.writers++;
    }
  }
  const Recovery::Stats r = recovery_->stats();
  s.recovering_partitions = r.recovering_partitions;
  s.recovered_partitions = r.recovered_partitions;
  s.recovered_bytes = r.recovered_bytes;
  s.last_recovery_mbps = r.last_rate_mbps;
  s.snapshots_served = r.snapshots_served;
  return s;
}

std::string ReplicationManager::recovery_state() const { return recovery_->state(); }

ReportMsg ReplicationManager::recovery_report() const { return recovery_->report(); }

}  // namespace ftm::repl
