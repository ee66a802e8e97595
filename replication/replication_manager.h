// ReplicationManager: turns this data server's Store changes into effects
// and ships them to the secondaries of the partitions it is primary of
// (DESIGN.md "Data path" steps 4-6), and receives the effects other
// primaries ship to it.
//
// Primary side: it is the Store's EffectSink. Every change a command makes
// (on_change, called while the key's partition is locked, so per key the
// appends come in link order, which is lsn order) becomes a repl::Effect
// appended to one LogWriter per secondary of the key's partition. The
// calling thread remembers, per writer, the highest lsn it appended since
// its last barrier(); barrier() waits (without blocking the thread) for
// those lsns to be delivered into every secondary's memory.
//
// Secondary side: it serves PeerRpc::kRingOpen. A primary asks for a ring;
// this node allocates a LogRing (registered, remote read + write), starts a
// LogApplier on it that applies to the local Store, and answers with the
// ring's RegionDescriptor. A second kRingOpen from the same primary replaces
// the old ring (revoked first, so the old writer can write no more; what had
// landed is applied).
//
// Map changes: on_map(map) attaches a LogWriter to every node that is a
// secondary of a partition this node is primary of, then (only then) makes
// the map the one on_change follows. Call on_map before routing requests by
// that map (so a write this node executes as primary always finds its
// writers).
//
// flush_all: the front end broadcasts it to every server; each primary
// ships its flush split per partition (on_flush) and secondaries apply that
// instead of their own. Not replicated: lazy expiry, sweeping and
// eviction (every replica expires and evicts on its own). The meta
// state bits (stale, win token sent, binary key: kItemReplicaBits) travel
// with each item effect and snapshot record.
//
// Failures (issue 6): a writer whose secondary fails stays failed. The
// barriers waiting on its undelivered and later effects are held until
// the map judges the node: declared failed (the effect is then in every
// live secondary: ok), or still listed once a fresh writer replaced the
// dead one or Options::dead_hold passed (the write failed: "SERVER_ERROR
// replication failed"). A repair thread (every Options::repair_interval)
// and the next on_map that still names the node attach a fresh writer to a
// fresh ring.
//
// Promotion: when a map makes this node primary of partitions another node
// was primary of, on_map first applies everything that node delivered into
// its ring here (revoking the ring if that node is no longer up, so a
// paused old primary can land nothing more), and only then returns, so the
// caller routes by the new map only once this node's copy holds every
// write the old primary could have acknowledged (DESIGN.md: promote "once
// it has applied its whole replication log").
//
// Recovery (issue 6): a map that makes this node a secondary of partitions
// it did not hold before starts recovering their older data from their
// primaries on a thread of its own (replication/recovery.h); on_map does
// not wait for it. This node serves the same snapshots as a primary.
//
// Thread-safety: all methods are safe for concurrent use (on_map calls are
// serialized internally; the membership thread makes them in epoch order).
// Destroy the manager only after the Store stopped calling it (it removes
// itself as the Store's sink in its destructor).
#ifndef FTM_REPLICATION_REPLICATION_MANAGER_H_
#define FTM_REPLICATION_REPLICATION_MANAGER_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "rdma/fabric_domain.h"
#include "replication/log_applier.h"
#include "replication/log_ring.h"
#include "replication/log_writer.h"
#include "replication/membership.h"
#include "replication/partition_map.h"
#include "replication/peer_mesh.h"
#include "replication/recovery.h"
#include "src/cluster.h"
#include "src/store.h"

namespace ftm::repl {

class ReplicationManager : public EffectSink {
 public:
  struct Options {
    // Entry-area bytes of each ring this node asks its secondaries for.
    // An entry is at most half the ring, so it must exceed twice the
    // largest item (-I) plus the entry header.
    size_t ring_size = 8u << 20;
    // Longest on_map waits for all needed writers to attach.
    std::chrono::milliseconds attach_timeout{5000};
    LogWriter::Options writer;    // full_wait = back-pressure bound
    LogApplier::Options applier;  // for the rings this node serves
    // How often a thread re-attaches writers that failed or never
    // attached, for the current map (0: never; only on_map does).
    std::chrono::milliseconds repair_interval{1000};
    // Longest a barrier waits on a dead writer for the map's verdict.
    std::chrono::milliseconds dead_hold{1000};
    Recovery::Options recovery;
    // Log lines (attach failures, ring replacement); default stderr.
    // Called from the manager's threads (on_map's caller, the repair and
    // recovery threads) concurrently: it must be safe for concurrent use.
    std::function<void(std::string_view)> log;
  };

  // Installs the manager as `store`'s EffectSink and registers the
  // PeerRpc::kRingOpen handler on `mesh`. All four must outlive it.
  static std::unique_ptr<ReplicationManager> create(rdma::Fabric& fabric, PeerMesh& mesh,
                                                    Membership& membership, Store& store,
                                                    const Options& options);
  static std::unique_ptr<ReplicationManager> create(rdma::Fabric& fabric, PeerMesh& mesh,
                                                    Membership& membership, Store& store) {
    return create(fabric, mesh, membership, store, Options());
  }

  // Removes the sink, closes the writers (pending barriers fire with ok
  // false) and stops the appliers.
  ~ReplicationManager() override;
  ReplicationManager(const ReplicationManager&) = delete;
  ReplicationManager& operator=(const ReplicationManager&) = delete;

  // Follows a new map: attaches a writer to every secondary of the
  // partitions this node is primary of (kRingOpen, then LogWriter::attach
  // over mesh.connection(node)), waiting at most attach_timeout for all of
  // them; failures are logged with the peer named (effects for that node
  // then fail their barriers). Then keeps `map` for on_change. Returns
  // whether every needed writer is attached.
  bool on_map(std::shared_ptr<const ClusterMap> map);

  // This node was declared failed (Membership::Options::on_fenced): closes
  // every writer (their barriers fail), revokes and drops every ring it
  // serves and forgets the map, so nothing is shipped or applied until the
  // next on_map after it joined again.
  void fence();

  // ftm::Cluster::barrier for this node (see src/cluster.h): returns false
  // if every effect the calling thread appended since its last barrier()
  // is delivered already (and every append succeeded); otherwise returns
  // true and `done` fires once, from a writer's flusher thread, when they
  // all are (ok) or one cannot be (ok false). If the failure is already
  // known (an append failed, a writer had failed), `done(ctx, false)` fires
  // on the calling thread before barrier() returns true; so does
  // `done(ctx, true)` when the last effect is delivered while barrier()
  // registers its waits (the registration guard completes it).
  bool barrier(Cluster::BarrierDone done, void* ctx);

  // EffectSink. on_change appends an effect when this node is the key's
  // primary in the current map; otherwise (an applier applying a
  // primary's effect, or no map yet) it does nothing. Blocks only on ring
  // back-pressure (up to writer.full_wait).
  void on_change(uint32_t partition, std::string_view key, const Item* after) override;
  // flush_all reaches every server from the front end; per partition this
  // node is primary of, ships the flush split to the secondaries (so their
  // copies hide exactly the same items) and returns true; returns false
  // for partitions this node is a secondary of (they follow the primary).
  bool on_flush(uint32_t partition, rel_time_t oldest_live, uint64_t oldest_cas) override;

  struct Stats {
    uint64_t effects = 0;         // effects appended (one per writer)
    uint64_t append_errors = 0;   // appends that failed
    uint64_t barriers_waited = 0; // barrier() calls that returned true
    uint64_t rings_served = 0;    // kRingOpen requests answered with a ring
    uint32_t writers = 0;         // writers attached and healthy
    uint64_t full_waits = 0;      // appends that waited for ring space (all writers)
    // Recovery of partitions newly given to this node as a secondary.
    uint32_t recovering_partitions = 0;  // still lacking their older data
    uint64_t recovered_partitions = 0;   // recovered from a snapshot (total)
    uint64_t recovered_bytes = 0;        // snapshot bytes read (total)
    double last_recovery_mbps = 0;       // rate of the last recovery, MB/s
    uint64_t snapshots_served = 0;       // snapshots encoded for secondaries
  };
  Stats stats() const;

  // One line for humans: "caught up", or "recovering 120 partitions from
  // 2 nodes, 40.1 MB so far, 12.0 MB/s" (Recovery::state).
  std::string recovery_state() const;
  // Recovery::report(): what this node REPORTs to the meta server.
  ReportMsg recovery_report() const;

  // Implementation types (defined in the .cc).
  struct Peer;
  struct Served;
  struct State;
  struct Guard;

 private:
  ReplicationManager(rdma::Fabric& fabric, PeerMesh& mesh, Membership& membership,
                     Store& store, const Options& options);
  void start_recovery();  // creates recovery_ with hooks into served_ and state_
  void serve_ring_open(uint32_t from, std::string_view payload, PeerMesh::Responder respond);
  // on_map's work; `quiet` logs only successes (the repair thread's retries).
  bool follow(std::shared_ptr<const ClusterMap> map, bool quiet);
  bool needs_repair();
  void repair_main();
  void settle_dead_peers();
  void take_over(const ClusterMap& prev, const ClusterMap& next);
  const State* current_state();
  void append_all(const State& st, std::span<const uint32_t> secondaries, const Effect& e);
  size_t ring_size() const;  // opts_.ring_size, raised to fit the largest item
  void log(std::string_view line) const;

  rdma::Fabric& fabric_;
  PeerMesh& mesh_;
  Membership& membership_;
  Store& store_;
  const Options opts_;
  const uint64_t id_;  // unique per manager in this process (thread_local keys)

  // Primary side. state_ (map + writers by node) is replaced by on_map;
  // threads cache it (see current_state) and refresh when version_ moves.
  mutable std::mutex state_mu_;
  std::shared_ptr<const State> state_;
  std::atomic<uint64_t> version_{0};
  // Every Peer ever created, kept until destruction: threads' barrier
  // records point at them without reference counts.
  std::vector<std::shared_ptr<Peer>> all_peers_;  // guarded by state_mu_
  std::mutex map_mu_;  // serializes follow() (on_map and the repair thread)
  std::unordered_map<uint32_t, Peer*> peers_;  // newest writer per node; map_mu_
  std::shared_ptr<const ClusterMap> followed_;  // last map given; map_mu_
  std::shared_ptr<Guard> guard_;  // lets the mesh handler outlive the manager

  // Secondary side: one ring + applier per primary.
  std::mutex served_mu_;
  // shared: a recovery in flight keeps a replaced ring's applier alive.
  std::unordered_map<uint32_t, std::shared_ptr<Served>> served_;
  std::unique_ptr<Recovery> recovery_;  // after served_: destroyed before it

  struct Counters {
    std::atomic<uint64_t> effects{0}, append_errors{0}, barriers_waited{0},
        rings_served{0};
  } counters_;

  std::mutex repair_mu_;
  std::condition_variable repair_cv_;
  bool stopping_ = false;  // guarded by repair_mu_
  std::thread repair_;
};

}  // namespace ftm::repl

#endif  // FTM_REPLICATION_REPLICATION_MANAGER_H_
