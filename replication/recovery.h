// Recovery: gives a new secondary the data its primary held before the
// secondary's ring was attached (issue 6, "Recovery onto a replacement";
// replication/snapshot.h has the sequence and README.md the skip rule).
//
// Secondary side. on_map(prev, next) marks *incomplete* every partition
// this node is a secondary of in `next` and held neither as primary nor as
// secondary in `prev` (all of its secondary partitions when there is no
// `prev`: it joined empty or was fenced). A recovery thread, never the
// membership thread, then works through the incomplete set grouped by the
// current primary Q:
//   1. waits (Options::ring_wait) until this node serves a ring from Q;
//   2. holds those partitions on that ring's LogApplier;
//   3. asks Q for a snapshot (PeerRpc::kSnapshot), naming the ring's key so
//      Q snapshots against the writer feeding exactly that ring;
//   4. reads it with one-sided reads (Options::chunk bytes each) over
//      PeerMesh::connection(Q), tells Q it is done (kSnapshotDone),
//      installs it, waits until the applier reached the snapshot's largest
//      lsn and releases the hold with the snapshot's lsn table;
//   5. checks that the ring from Q is still the same one (a replaced ring
//      may have lost effects), then marks the partitions complete.
// Failure rule: an attempt that fails before the install drops the hold by
// releasing it with an all-zero table (every held entry is applied, as if
// there had been no hold); after the install it releases with the
// snapshot's table. Either way the partitions stay incomplete and are
// retried (Options::retry later) from whoever is their primary in the
// newest map, until they succeed or this node is no longer their secondary
// (a promoted node keeps what it has: logged). Meanwhile the incomplete
// partitions' copies lack older data; nothing else changes for them.
//
// Primary side. kSnapshot is served on a worker thread (encoding takes a
// while; the mesh's handler thread only queues it): this node must be the
// primary of every requested partition with the requester as a secondary
// in the map on_change follows, and its writer to the requester must be
// healthy and attached to the named ring (Hooks::writer). The snapshot is
// encoded with that writer's last reserved lsn (LogWriter::last_lsn),
// registered for remote read and kept until kSnapshotDone or
// Options::export_ttl.
//
// Wire forms (little-endian):
//   kSnapshot request: u32 P, u64 ring key, u32 n, n x u32 map partition,
//     then (optional) u32 the reader's --recovery-rate-mb in kB/s (0: none):
//     the export is then kept export_ttl plus twice the paced read's time.
//   kSnapshot reply: u8 0, u64 export id, u64 length, RegionDescriptor wire
//     form (40 bytes); or u8 1 and an error text.
//   kSnapshotDone request: u64 export id. Reply: empty.
//
// Thread-safety: all methods are safe for concurrent use.
#ifndef FTM_REPLICATION_RECOVERY_H_
#define FTM_REPLICATION_RECOVERY_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "rdma/fabric_domain.h"
#include "rdma/memory_region.h"
#include "replication/log_applier.h"
#include "replication/membership.h"
#include "replication/partition_map.h"
#include "replication/peer_mesh.h"
#include "src/store.h"

namespace ftm::repl {

class Recovery {
 public:
  using Clock = std::chrono::steady_clock;
  struct Options {
    std::chrono::milliseconds ring_wait{5000};    // step 1's bound
    std::chrono::milliseconds apply_wait{10000};  // applier reaching the snapshot's lsn
    std::chrono::milliseconds retry{500};         // between failed attempts
    std::chrono::milliseconds export_ttl{60000};  // primary keeps a snapshot this long
    size_t chunk = 4u << 20;                      // bytes per one-sided read
    // Recovery bandwidth limit (--recovery-rate-mb): snapshot bytes read
    // per second, in MB (1e6 bytes); 0 = unlimited. Reads are paced (and
    // made at most a tenth of a second's worth, at least 64 KiB) so that
    // recovery never takes more than this from the data path's network.
    double rate_mbps = 0;
  };

  // What the ReplicationManager lends (called from Recovery's threads).
  struct Hooks {
    // Secondary side: the applier of the ring this node serves for
    // `primary` and, in *ring_key, that ring's current remote key; nullptr
    // when it serves none. The pointer keeps the applier allocated even
    // after the ring is replaced (it is then stopped).
    std::function<std::shared_ptr<LogApplier>(uint32_t primary, uint64_t* ring_key)> served;
    // Primary side: the last reserved lsn of the writer to `secondary`, if
    // this node may snapshot the map partitions `held` for it (see the
    // file comment) and that writer is attached to the ring with
    // `ring_key`; otherwise an empty function and the reason in *why. The
    // function returned must stay callable for the manager's lifetime.
    std::function<std::function<uint64_t()>(uint32_t secondary, uint64_t ring_key,
                                            const std::vector<bool>& held, std::string* why)>
        writer;
    std::function<void(std::string_view)> log;  // one line, no newline
  };

  // Registers the kSnapshot and kSnapshotDone handlers on `mesh` and starts
  // the two threads. Every reference must outlive the Recovery.
  Recovery(rdma::Fabric& fabric, PeerMesh& mesh, Membership& membership, Store& store,
           Hooks hooks, const Options& options);
  // Stops the threads (an attempt in flight ends at its next bounded wait,
  // at most about Options::apply_wait), answers queued requests with an
  // error and frees the exported snapshots. Handlers called later refuse.
  ~Recovery();
  Recovery(const Recovery&) = delete;
  Recovery& operator=(const Recovery&) = delete;

  // Updates the incomplete set for the map this node now follows (see the
  // file comment); never blocks on the network. `prev` may be null.
  void on_map(const std::shared_ptr<const ClusterMap>& prev,
              const std::shared_ptr<const ClusterMap>& next);
  // This node was fenced: forgets the incomplete set (the next map after it
  // joined again, with no prev, marks everything anew).
  void reset();

  struct Stats {
    uint32_t recovering_partitions = 0;  // incomplete now
    uint32_t recovering_from = 0;        // distinct primaries they wait on
    uint64_t recovered_partitions = 0;   // completed (total)
    uint64_t recovered_items = 0;        // items installed by completed ones
    uint64_t recovered_bytes = 0;        // snapshot bytes read (all attempts)
    uint64_t bytes_this_round = 0;       // since the incomplete set was last empty
    double last_rate_mbps = 0;           // last completed attempt, MB/s (1e6 bytes)
    uint64_t failed_attempts = 0;
    uint64_t snapshots_served = 0;       // primary side
  };
  Stats stats() const;
  // "caught up", or "recovering 120 partitions from 2 nodes, 40.1 MB so
  // far, 12.0 MB/s" (the rate: bytes read since this round of recovery
  // began, over its duration).
  std::string state() const;
  // What this node REPORTs to the meta server (control_msg.h): state(),
  // the epoch of the newest map given to on_map (0 before any) and the
  // incomplete partitions, read together.
  ReportMsg report() const;

 private:
  struct Export;
  struct Request;
  struct Guard;
  void recover_main();
  // One attempt for the partitions `parts` of `map` whose primary is q;
  // returns whether they are complete now.
  bool attempt(const ClusterMap& map, uint32_t q, const std::vector<uint32_t>& parts);
  void serve_main();
  void serve(const Request& r);
  void log(const std::string& line) const;
  // Waits until reading `done` bytes since `t0` keeps within
  // Options::rate_mbps; false if stopping meanwhile.
  bool pace(Clock::time_point t0, uint64_t done);
  std::string state_of(const Stats& s) const;  // takes mu_

  rdma::Fabric& fabric_;
  PeerMesh& mesh_;
  Membership& membership_;
  Store& store_;
  const Hooks hooks_;
  const Options opts_;
  std::shared_ptr<Guard> guard_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;                       // mu_
  std::shared_ptr<const ClusterMap> map_;       // newest followed; mu_
  std::set<uint32_t> incomplete_;               // map partitions; mu_
  std::deque<std::unique_ptr<Request>> requests_;  // mu_
  std::map<uint64_t, std::unique_ptr<Export>> exports_;  // mu_
  uint64_t next_export_ = 1;                    // mu_

  std::atomic<uint64_t> recovered_partitions_{0}, recovered_items_{0}, recovered_bytes_{0},
      bytes_this_round_{0}, failed_attempts_{0}, snapshots_served_{0};
  std::atomic<uint64_t> last_rate_kbps_{0};  // MB/s x 1000
  Clock::time_point round_start_;            // when incomplete_ last became non-empty; mu_

  std::thread recover_;
  std::thread serve_;
};

}  // namespace ftm::repl

#endif  // FTM_REPLICATION_RECOVERY_H_
