// The data server's side of the cluster: joins the metadata server and keeps
// the newest cluster map where request paths can read it cheaply.
//
// Use (what the data server does):
//
//   MembershipOptions o;
//   o.meta_host = "10.0.0.1"; o.meta_port = 11311;  // --meta
//   o.node_id = 0;                                  // --node-id, 0 = assign
//   o.memcached_addr = "10.0.0.5:11211";            // what clients dial
//   o.fabric_addr = "10.0.0.5:" + port of this server's fabric Listener;
//   o.on_map = [](std::shared_ptr<const ClusterMap> m) { ... };  // optional
//   auto member = Membership::start(fabric, o);
//   member->wait_for_map(std::chrono::seconds(10));  // optional: block
//                                                    // until joined
//   // Per worker thread:
//   MapCache cache(*member);
//   // Per request:
//   const ClusterMap* map = cache.get();   // one atomic load when unchanged
//   if (map) { uint32_t p = map->partition_of(key);
//              bool mine = map->primary(p) == member->node_id(); ... }
//
// Behaviour: a background thread connects to the meta server, sends JOIN
// (with the node id it was given or was assigned earlier, so a reconnect
// re-registers the same node), and installs every JOIN_OK/MAP whose epoch is
// higher than the current one (maps may arrive out of order; the epoch only
// rises). If the meta server goes away the thread reconnects with
// exponential backoff (backoff_initial doubling to backoff_max) and the data
// server keeps using the last map meanwhile (DESIGN.md: "data servers keep
// serving while it is away"). An ERROR answer (e.g. node id busy) is logged
// and retried with the same backoff.
//
// Fencing (issue 6): the first JOIN of a process says JoinMsg::kEmpty (it
// holds no data). The heartbeat writer renews `lease` with every heartbeat
// the meta server acknowledged, and this thread renews it while the meta
// server refuses connections (not running: nobody can be promoted). When
// the meta server fences this node (the heartbeat's fence word, or an
// ERROR kFenced answering JOIN), the lease is suspended (Lease::suspend),
// on_fenced runs (the data server drops its data and its replication
// state) and the node joins again with kEmpty, as a new server; the lease
// resumes once the map of that JOIN_OK is installed.
//
// report() passes a peer's failure on to the meta server (SUSPECT); the
// thread sends queued reports between receives (at most every 5 ms).
//
// Thread-safety: all methods are safe for concurrent use. on_map and
// on_fenced run on the membership thread, one call at a time, in epoch
// order; they must not call stop(). MapCache is per thread (REQUIRES
// external synchronization).
#ifndef FTM_REPLICATION_MEMBERSHIP_H_
#define FTM_REPLICATION_MEMBERSHIP_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "rdma/fabric_domain.h"
#include "replication/control_msg.h"
#include "replication/heartbeat.h"
#include "replication/lease.h"
#include "replication/partition_map.h"

namespace ftm::repl {

struct MembershipOptions {
  std::string meta_host = "127.0.0.1";
  uint16_t meta_port = 11311;
  uint32_t node_id = 0;  // 0 = let the meta server assign one
  bool spare = false;    // join as a spare (holds nothing until needed)
  std::string memcached_addr;  // host:port clients use to reach this server
  std::string fabric_addr;     // host:port of this server's fabric listener
  std::chrono::milliseconds backoff_initial{50};
  std::chrono::milliseconds backoff_max{2000};
  std::chrono::milliseconds connect_timeout{1000};
  // Called with each newly installed map (see thread-safety above).
  std::function<void(std::shared_ptr<const ClusterMap>)> on_map;
  // Renewed as described above (may be null: no fencing by lease).
  Lease* lease = nullptr;
  // How long a refused connection to the meta server renews the lease.
  // Must stay below the meta server's restart_grace minus backoff_max.
  std::chrono::milliseconds lease_while_meta_down{1000};
  // This node's replication state (REPORT: text for status, epoch,
  // incomplete partitions; sent when any of it changes, polled between
  // receives). May be empty.
  std::function<ReportMsg()> replication_state;
  // This node was declared failed: drop every item and every replication
  // ring before returning (the next JOIN says kEmpty).
  std::function<void()> on_fenced;
  // Join, loss and reconnect lines; default stderr. Repeated connection
  // failures are logged once per outage, not once per attempt.
  std::function<void(std::string_view)> log;
};

class Membership {
 public:
  // Starts the background thread and returns at once; nothing is known
  // until the first map arrives. `fabric` must outlive this object.
  static std::unique_ptr<Membership> start(rdma::Fabric& fabric,
                                           MembershipOptions options);
  ~Membership();  // stop()
  Membership(const Membership&) = delete;
  Membership& operator=(const Membership&) = delete;

  // The newest map, nullptr before the first. Takes a mutex: for hot paths
  // use MapCache.
  std::shared_ptr<const ClusterMap> map() const;
  // Epoch of map(), 0 before the first. Lock-free.
  uint64_t epoch() const { return epoch_.load(std::memory_order_acquire); }
  // This server's node id: the configured one, or the assigned one once
  // JOIN_OK arrived (0 until then). Lock-free.
  uint32_t node_id() const { return node_id_.load(std::memory_order_acquire); }
  // Whether a control connection to the meta server is up and joined.
  bool connected() const { return connected_.load(std::memory_order_acquire); }
  // Waits until a map with epoch >= min_epoch is installed (min_epoch 1 =
  // any map). Returns false at the timeout or after stop().
  bool wait_for_map(std::chrono::milliseconds timeout, uint64_t min_epoch = 1);
  // Closes the connection and joins the thread. Idempotent; the last map
  // stays readable.
  void stop();
  // Tells the meta server that `node` failed a request of ours (`reason`
  // names the error). Queued, sent by the membership thread; a node already
  // queued is not queued twice. Never blocks: safe from fabric callbacks.
  void report(uint32_t node, std::string reason);

 private:
  friend class MapCache;
  Membership(rdma::Fabric& f, MembershipOptions o)
      : fabric_(f), opts_(std::move(o)) {}
  void run();
  // One connection's conversation; returns why it ended.
  ClusterStatus converse(ControlChannel& ch);
  void send_reports(ControlChannel& ch);
  void fenced();
  void install(ClusterMap map);
  void sleep_for(std::chrono::milliseconds d);  // returns early on stop()
  void log(const std::string& line) const;

  rdma::Fabric& fabric_;
  const MembershipOptions opts_;
  std::thread thread_;
  std::atomic<uint64_t> epoch_{0};
  std::atomic<uint64_t> version_{0};  // bumped per installed map (MapCache)
  std::atomic<uint32_t> node_id_{0};
  std::atomic<bool> connected_{false};

  std::mutex stop_mu_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;                      // guarded by mu_
  std::shared_ptr<const ClusterMap> map_;      // guarded by mu_
  ControlChannel* channel_ = nullptr;          // guarded by mu_ (for stop)
  std::vector<std::pair<uint32_t, std::string>> reports_;  // guarded by mu_
  bool empty_ = true;       // membership thread: no data held (next JOIN)
  bool was_fenced_ = false; // membership thread: fenced while running (next JOIN)
  std::atomic<bool> fenced_{false};  // set by the heartbeat writer
  // Writes this server's heartbeats over the current channel (membership
  // thread only; reset before the channel goes).
  std::unique_ptr<HeartbeatWriter> heartbeats_;
  void start_heartbeats(ControlChannel& ch, const JoinOkMsg& ok);
};

// A per-thread cache of Membership::map() for request paths: get() costs one
// atomic load while the map is unchanged, and takes Membership's mutex only
// once per new epoch.
class MapCache {
 public:
  explicit MapCache(const Membership& m) : m_(&m) {}
  // The newest map (nullptr before the first). The pointer stays valid
  // until the next get() on this cache or its destruction.
  const ClusterMap* get() {
    uint64_t v = m_->version_.load(std::memory_order_acquire);
    if (v != seen_) {
      map_ = m_->map();
      seen_ = v;
    }
    return map_.get();
  }

 private:
  const Membership* m_;
  uint64_t seen_ = 0;
  std::shared_ptr<const ClusterMap> map_;
};

}  // namespace ftm::repl

#endif  // FTM_REPLICATION_MEMBERSHIP_H_
