// PeerMesh: the fabric connections between data servers, one outgoing
// connection per peer node (so a pair of nodes that call each other holds
// two: each carries its owner's calls and their replies), and small
// request/reply messages (RPCs) multiplexed over them with two-sided
// send/recv. Everything a data server asks another one
// goes through here: forwarded client requests, replication ring set-up,
// digests for `ftmemcached-ctl digest`. A separate connection per peer
// carries the one-sided writes and reads of the replication log (LogWriter
// borrows it, see connection()).
//
// Peers are found through the cluster map (ServerInfo::fabric_addr); a
// connection is made on first use and re-made after it breaks.
//
// Wire format (little-endian), see peer_mesh.cc: each send carries one or
// more messages, each a 16-byte header {u32 body length, u16 PeerRpc type,
// u8 kind (hello, request, reply, error reply), u8 zero, u64 call id} and
// the body. The connector's first message is a hello whose id is its node
// id (0 for ftmemcached-ctl). A sender packs every queued message that fits
// into one send (group send), so a burst of calls costs one fabric send.
//
// Thread-safety: all methods are safe for concurrent use. Handlers and Done
// callbacks run on the mesh's own threads, never on the caller's; they must
// not block for long (hand long work to another thread and answer later
// through the Responder, which may be called from any thread, exactly once).
#ifndef FTM_REPLICATION_PEER_MESH_H_
#define FTM_REPLICATION_PEER_MESH_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include "rdma/connection.h"
#include "rdma/fabric_domain.h"
#include "rdma/status.h"
#include "replication/membership.h"

namespace ftm::repl {

// RPC types. Values are part of the wire format: never renumber.
enum class PeerRpc : uint16_t {
  kForward = 1,     // payload: WireProtocol byte + raw request; reply: raw reply
  kRingOpen = 2,    // primary asks secondary for a replication ring
  kDigest = 3,      // per-partition digest of this node's store
  kGetReplica = 4,  // this node's copy of one key
  kSnapshot = 5,      // new secondary asks its primary for a snapshot (recovery.h)
  kSnapshotDone = 6,  // ... and says it has read it
  kVouch = 7,         // does this node hear the metadata server? (peer_lease.h)
};

class PeerMesh {
 public:
  struct Options {
    rdma::Fabric* fabric = nullptr;  // required; outlives the mesh
    Membership* membership = nullptr;  // required: node id and peer addresses
    std::string listen_host = "127.0.0.1";
    uint16_t listen_port = 0;  // 0: pick a free port (see port())
    // Largest RPC payload in either direction, bytes (a forwarded request
    // holds at most one item: -I plus a command line).
    size_t max_message = (1u << 20) + 4096;
    // A call whose reply has not come within this fails with kTimeout (a
    // stopped peer never answers and tcp never reports it). Longer than
    // any wait a handler may add (replication back-pressure: 5 s).
    std::chrono::milliseconds call_timeout{10000};
    // A request of a type nobody registered yet waits this long for on()
    // (a peer may call while this node is still starting) before it is
    // answered with an error.
    std::chrono::milliseconds handler_wait{3000};
    // Receive buffers posted per connection.
    int recv_depth = 4;
    // Where refused connections (a wrong proof of the cluster secret) are
    // reported, from the accept thread; empty: not reported.
    std::function<void(std::string_view)> log;
  };

  // Starts listening and accepting peers. Errors: the listener's.
  static rdma::Result<std::unique_ptr<PeerMesh>> start(const Options& options);
  ~PeerMesh();  // close()

  // Stops accepting, breaks every link (pending calls get kClosed) and
  // waits until no handler or Done callback runs any more; later calls
  // fail with kClosed. Connections handed out by connection() stay
  // allocated (closed) until the destructor. Idempotent.
  void close();

  // The fabric port peers connect to (announce it as fabric_addr on JOIN).
  uint16_t port() const;

  // Sets Options::membership after start(), for callers that must announce
  // port() in the Membership they start. Calls made before it fail with
  // kInvalidArgument ("no membership").
  void set_membership(Membership* membership);

  // Answers one request; call exactly once, from any thread.
  using Responder = std::function<void(std::string_view reply)>;
  // Serves requests of `type` from any peer (or ctl client). Register every
  // handler before start() returns to callers (i.e. right after start()).
  using Handler = std::function<void(uint32_t from_node, std::string_view payload, Responder respond)>;
  void on(PeerRpc type, Handler handler);

  // Fired once per call(): st ok and the reply, or the error naming the
  // peer (kPeerLost, kTimeout, kConnectRefused, ...). `reply` is valid only
  // during the call.
  using Done = void (*)(void* ctx, const rdma::Status& st, std::string_view reply);
  // Sends a request to `node` (connecting first if needed). Calls to one
  // node are delivered and handled in the order made.
  void call(uint32_t node, PeerRpc type, std::string_view payload, Done done, void* ctx);
  // Same, with the payload given in two pieces sent back to back (saves
  // the caller a copy: a forwarded request is a protocol byte + the raw
  // request).
  void call(uint32_t node, PeerRpc type, std::string_view head, std::string_view payload,
            Done done, void* ctx);

  // One synchronous call from a process that is not a data server
  // (ftmemcached-ctl): connects to host:port, says hello as node 0, sends
  // the request, waits up to `timeout` for the reply and closes. Errors:
  // the connection's, kTimeout, or kInvalidArgument with the text of an
  // error reply (e.g. no handler for that type).
  static rdma::Result<std::string> request(rdma::Fabric& fabric, const std::string& host,
                                           uint16_t port, PeerRpc type,
                                           std::string_view payload,
                                           std::chrono::milliseconds timeout);

  // A connection to `node` for one-sided replication writes and reads,
  // connecting if needed (blocks until connected or failed: not for worker
  // threads). It is not the one call() uses: a peer slow to read its RPCs
  // (handlers waiting on back-pressure) must not hold up replication writes
  // queued behind them on one stream. Owned by the mesh and usable until it
  // breaks (then status() is not ok and a later connection() makes a new
  // one); the object stays allocated until the mesh is destroyed.
  rdma::Result<rdma::Connection*> connection(uint32_t node);

  struct Impl;  // defined in peer_mesh.cc

 private:
  explicit PeerMesh(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

// One PeerMesh::call waited for by a thread that may give up first (a
// timeout): shared by that waiter and the Done callback, whoever is last
// frees it. Use: `auto* c = new SyncCall; mesh.call(..., &SyncCall::on_done,
// c);` then wait on c->cv for c->done under c->mu, and SyncCall::release(c).
struct SyncCall {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  rdma::Status status;
  std::string reply;
  std::atomic<int> refs{2};
  static void release(SyncCall* c) {
    if (c->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete c;
  }
  static void on_done(void* ctx, const rdma::Status& st, std::string_view reply) {
    auto* c = static_cast<SyncCall*>(ctx);
    {
      std::lock_guard<std::mutex> lock(c->mu);
      c->status = st;
      c->reply = std::string(reply);
      c->done = true;
    }
    c->cv.notify_all();
    release(c);
  }
};

}  // namespace ftm::repl

#endif  // FTM_REPLICATION_PEER_MESH_H_
