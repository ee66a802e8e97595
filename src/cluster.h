// What the memcached front end sees of the cluster (DESIGN.md "Data path").
// In standalone mode there is no Cluster (WorkerContext::cluster is null)
// and nothing here runs. In cluster mode (`--meta`), replication/ provides
// the implementation (replication/cluster_node.h).
//
// Three things cross this boundary:
//  1. Routing: which server is the primary of a key's partition.
//  2. Forwarding: a request whose key this server does not own is sent, as
//     the raw protocol bytes the client sent, to the primary, which executes
//     it exactly as if its own client had sent it and returns the raw reply
//     bytes. Answers are therefore byte-identical to a standalone server's.
//  3. The replication barrier: a reply to a request that changed the store
//     is released only once every effect this thread produced so far has
//     landed in every live secondary's memory (the effects themselves are
//     captured by the Store's EffectSink, see src/store.h, and shipped by
//     replication/).
//
// Callbacks run on fabric threads: the connection layer must hand them back
// to its worker's event loop and never touch a connection from them.
// Thread-safety: all methods are safe for concurrent use.
#ifndef FTM_SRC_CLUSTER_H_
#define FTM_SRC_CLUSTER_H_

#include <cstdint>
#include <string_view>

namespace ftm {

// Protocol of a forwarded request (the primary parses it with the same
// front end the client used).
enum class WireProtocol : uint8_t { kText = 0, kBinary = 1 };

struct Route {
  bool local = true;   // this server is the key's primary: execute here
  uint32_t node = 0;   // otherwise: the primary's node id
};

class Cluster {
 public:
  virtual ~Cluster() = default;

  // The primary of `key`'s partition (XXH3_64bits(key) % P) under the
  // current map. Hot path: no lock, no allocation. Before the first map
  // arrives every key routes local=false, node=0 (forward() then fails with
  // "SERVER_ERROR cluster map not available").
  virtual Route route(std::string_view key) = 0;

  // All node ids of the current map that serve clients (for broadcasts such
  // as flush_all). Writes at most `max` ids into `out`; returns the count.
  virtual size_t nodes(uint32_t* out, size_t max) = 0;

  // This server's node id (0 before it joined).
  virtual uint32_t self() const = 0;

  // Fired once per forward(): `ok` false means the request did not complete
  // (peer lost, timeout, no map); `reply` is then a memcached error line
  // ("SERVER_ERROR ...\r\n" for text; for binary, an error response frame
  // built by the caller from `reply` as the message). The bytes are valid
  // only during the call.
  using ForwardDone = void (*)(void* ctx, bool ok, std::string_view reply);

  // Sends one complete request (for text: the command line with "\r\n" and,
  // for storage commands, the data block; for binary: one whole frame) to
  // `node` and fires `done` with its reply. Requests forwarded by one caller
  // to one node are executed in the order forwarded. `request` is copied
  // before forward() returns.
  virtual void forward(uint32_t node, WireProtocol proto, std::string_view request,
                       ForwardDone done, void* ctx) = 0;

  // Fired when every effect the calling thread produced before barrier()
  // has landed in every live secondary (ok true), or cannot (ok false: the
  // reply must then be replaced by "SERVER_ERROR replication failed").
  using BarrierDone = void (*)(void* ctx, bool ok);

  // Returns true if the calling thread has effects not yet delivered and
  // arranges for `done` to fire once they are; returns false (and never
  // fires `done`) if there is nothing to wait for, so a read-only batch
  // costs nothing.
  virtual bool barrier(BarrierDone done, void* ctx) = 0;
};

}  // namespace ftm

#endif  // FTM_SRC_CLUSTER_H_
