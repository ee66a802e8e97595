// ClusterNode: the data server's cluster runtime (ftmemcached --meta). It
// owns the fabric, the peer mesh, the membership client and the
// replication manager, and implements ftm::Cluster (src/cluster.h) for the
// front end:
//  - route(): the key's primary under the current map, read through a
//    per-thread cache (one atomic load while the map is unchanged);
//  - forward(): PeerRpc::kForward to the primary;
//  - barrier(): the replication manager's per-thread barrier.
// It also serves kForward: the raw request runs through the same front end
// a client of this server would reach (text_process / bin_process) on a
// Session with forwarded=true, and the reply is sent once the replication
// barrier fired, so the forwarding server relays a write only once it is in
// every live secondary.
//
// Map order: each new map goes to ReplicationManager::on_map (which attaches
// writers to the secondaries) before route() may return it, so this node
// never acknowledges a write as primary of a partition whose secondaries
// have no writer yet.
//
// kForward wire form: request = 1 byte WireProtocol + u64 epoch of the
// forwarder's map (little-endian) + raw request bytes; reply = 1 status
// byte + bytes: 0 the raw reply follows; 1 a "SERVER_ERROR ...\r\n" line
// follows and the forwarder reports ok=false; 2 "retry": this node is not
// (or not yet, or no longer) the primary of those keys by its map, its
// lease lapsed, or the forwarder's map is newer than its own, and a line
// says which.
//
// Failover (issue 6): route() sends nothing to this node's own partitions
// while its Lease (replication/lease.h) has lapsed; such requests, and
// forwards whose primary failed (transport error, reported to the meta
// server as a suspicion) or answered "retry", are parked and re-routed by
// a redirector thread as maps arrive: to the new primary, or executed here
// once this node is primary with a valid lease. A request still without a
// primary after Options::failover_wait fails with "SERVER_ERROR" naming
// why. A keyless request (flush_all) whose node left the map counts as
// done. A text multi-get whose keys now belong to several primaries is
// split per primary and its values joined; any other multi-key request
// (binary quiet-get batches) fails with a SERVER_ERROR saying so.
//
// Thread-safety: the ftm::Cluster methods are safe for concurrent use;
// start() and stop() are called once each, from the main thread.
#ifndef FTM_REPLICATION_CLUSTER_NODE_H_
#define FTM_REPLICATION_CLUSTER_NODE_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "rdma/fabric_domain.h"
#include "replication/lease.h"
#include "replication/membership.h"
#include "replication/partition_map.h"
#include "replication/peer_lease.h"
#include "replication/peer_mesh.h"
#include "src/cluster.h"
#include "src/session.h"

namespace ftm::repl {

class ReplicationManager;

class ClusterNode final : public Cluster {
 public:
  struct Options {
    std::string meta_host;             // --meta HOST:PORT
    uint16_t meta_port = 0;
    uint32_t node_id = 0;              // --node-id (0: assigned by the meta server)
    rdma::ProviderChoice provider = rdma::ProviderChoice::kAuto;  // --fabric
    rdma::ProgressMode progress = rdma::ProgressMode::kAdaptive;  // --fabric-progress
    std::string fabric_host = "127.0.0.1";  // --fabric-listen
    // --cluster-secret-file's contents (rdma::load_cluster_secret); empty:
    // fabric connections are not authenticated.
    std::string cluster_secret;
    uint16_t fabric_port = 0;
    std::string memcached_addr;        // host:port announced to clients/ctl
    // Bytes of each replication ring asked of a secondary (0: the
    // manager's default, raised to 4 x -I + 64 KiB for large items).
    size_t ring_size = 0;
    // For the Sessions that run forwarded requests (may be null in tests).
    const Settings* settings = nullptr;
    ServerControl* server = nullptr;
    // Called once per ThreadStats this node creates for forwarded requests,
    // so `stats` sums them with the workers' (may be empty).
    std::function<void(ThreadStats*)> register_stats;
    // Start-up and map lines; default stderr.
    std::function<void(std::string_view)> log;
    // --failover-wait-ms: how long a request for a partition in transition
    // waits for its new primary.
    std::chrono::milliseconds failover_wait{1000};
    // --spare: join as a spare, holding nothing until the meta server
    // hands it a failed server's roles.
    bool spare = false;
    // --recovery-rate-mb: recovery bandwidth limit in MB/s (0: none;
    // Recovery::Options::rate_mbps).
    double recovery_rate_mbps = 0;
  };

  // Opens the fabric, starts the mesh, joins the cluster (returns without
  // waiting for the first map) and creates the replication manager, which
  // becomes `store`'s EffectSink. `store` must outlive the node. Errors
  // (fabric, listener) in *err.
  static std::unique_ptr<ClusterNode> start(const Options& options, Store& store,
                                            std::string* err);
  ~ClusterNode() override;  // stop()
  ClusterNode(const ClusterNode&) = delete;
  ClusterNode& operator=(const ClusterNode&) = delete;

  // Leaves the cluster: stops following maps, closes every peer link (calls
  // in flight fail), stops replication. Idempotent. Call after the workers
  // stopped using this Cluster.
  void stop();

  // ftm::Cluster.
  Route route(std::string_view key) override;
  size_t nodes(uint32_t* out, size_t max) override;
  uint32_t self() const override;
  void forward(uint32_t node, WireProtocol proto, std::string_view request, ForwardDone done,
               void* ctx) override;
  bool barrier(BarrierDone done, void* ctx) override;

  // For tests and tools.
  Membership& membership() { return *membership_; }
  PeerMesh& mesh() { return *mesh_; }
  rdma::Fabric& fabric() { return *fabric_; }
  // Waits until a map has been published to route() (false at the timeout).
  bool wait_for_map(std::chrono::milliseconds timeout);
  // The map route() follows (nullptr before the first).
  std::shared_ptr<const ClusterMap> map() const;

  // Executes requests forwarded by one peer (defined in the .cc).
  struct Executor;
  // One forwarded request, from forward() until its done fires.
  struct ForwardCall;
  // Whether this node may act as primary now (tests).
  bool lease_valid() const { return lease_.valid(); }

 private:
  explicit ClusterNode(const Options& options, Store& store);
  // Sleeps until no lease this node vouched for a node `map` no longer
  // lists as up can still be in force (PeerLease::advance).
  void wait_out_grants(const ClusterMap& map);
  void on_map(std::shared_ptr<const ClusterMap> map);
  void publish(std::shared_ptr<const ClusterMap> map);
  const ClusterMap* current();
  void serve_forward(uint32_t from, std::string_view payload, PeerMesh::Responder respond);
  // Runs raw requests as a forwarded Session (from = the peer, or this
  // node for redirected ones) and responds with status byte + reply once
  // the replication barrier fired.
  void execute(uint32_t from, bool binary, std::string_view req, PeerMesh::Responder respond);
  Executor& executor(uint32_t from);
  void on_fenced();
  // Forwarding with redirection (see the file comment).
  void dispatch(ForwardCall* c);
  static void on_forward_reply(void* ctx, const rdma::Status& st, std::string_view reply);
  void park(ForwardCall* c, std::string why);
  void redirect_main();
  // Splits a parked text get/gets/gat/gats whose keys now have several
  // primaries into one parked call per primary; false if `c` is not one.
  bool split_get(ForwardCall* c, const ClusterMap& m);
  // Tries a parked call again; false if it stays parked.
  bool retry(ForwardCall* c, std::chrono::steady_clock::time_point now);
  void log(const std::string& line) const;

  const Options opts_;
  Store& store_;
  const uint64_t instance_;  // distinguishes nodes in the per-thread cache

  std::unique_ptr<rdma::Fabric> fabric_;
  std::unique_ptr<PeerMesh> mesh_;
  std::unique_ptr<Membership> membership_;
  std::unique_ptr<PeerLease> peer_lease_;  // vouching (issue 7): created before membership_
  std::unique_ptr<ReplicationManager> manager_;

  // Serializes on_map (the manager requires it) with the manager's
  // creation; a map arriving before the manager exists waits for it.
  std::mutex map_mu_;
  mutable std::mutex pub_mu_;
  std::condition_variable pub_cv_;
  std::shared_ptr<const ClusterMap> published_;  // guarded by pub_mu_
  std::atomic<uint64_t> version_{0};              // bumped per publish

  std::mutex exec_mu_;
  std::map<uint32_t, std::unique_ptr<Executor>> executors_;  // guarded by exec_mu_
  std::once_flag stopped_;

  Lease lease_;
  std::mutex park_mu_;
  std::condition_variable park_cv_;
  std::vector<ForwardCall*> parked_;  // guarded by park_mu_
  bool park_stop_ = false;            // guarded by park_mu_
  bool park_news_ = false;            // parked or published since; park_mu_
  std::thread redirector_;
};

}  // namespace ftm::repl

#endif  // FTM_REPLICATION_CLUSTER_NODE_H_
