// A reliable connection to one peer (libfabric FI_EP_MSG, fi_endpoint(3)),
// and the Op handle of an operation posted on it.
//
// Operations: one-sided write and read into/from a peer's registered region
// (fi_rma(3)), two-sided send and receive (fi_msg(3)). The local buffer is
// always a slice of a local MemoryRegion. Writes use FI_DELIVERY_COMPLETE:
// a successful completion means the data is in the target's memory (not that
// it is durable there: the target's RAM, not its disk). Operations on one
// connection are carried in order (FI_ORDER_* requested, and tcp is one
// stream): two writes to the same place land in posting order.
//
// Failure: every operation has a deadline (FabricOptions::op_timeout unless
// given). An operation that has not completed by then fails with kTimeout and
// the whole connection is torn down, failing every other outstanding
// operation with the same error; after that, posts fail at once. A peer that
// dies is reported by the provider (tcp: 10-20 ms after the kill) and
// surfaces as kPeerLost on every outstanding operation. All errors name the
// peer ("'identity' at host:port") and the operation.
//
// Thread-safety: safe for concurrent use; posting from several threads is
// allowed (their relative order is then the order of the post calls).
#ifndef FTM_RDMA_CONNECTION_H_
#define FTM_RDMA_CONNECTION_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "rdma/memory_region.h"
#include "rdma/region_descriptor.h"
#include "rdma/status.h"

namespace ftm::rdma {

namespace detail {
struct Domain;
struct ConnState;
struct OpState;
}

// Handle of one posted operation. Copyable (copies share the operation).
class Op {
 public:
  Op() = default;
  // True once the operation completed (successfully or not). Never blocks.
  bool done() const;
  // Waits for completion and returns its result. Bounded by the operation's
  // deadline (a recv without deadline waits for a message or for the
  // connection to fail). The waiting thread drives the completion queue
  // itself while operations keep completing (lowest latency), then sleeps
  // until the progress thread completes the op (no CPU).
  Status wait();
  // Like wait(), but this thread drives the completion queue itself until
  // the op completes, napping `nap` between looks, instead of sleeping
  // until the progress thread completes it. For a thread whose timing
  // matters more than a little CPU: the heartbeat writer runs at real-time
  // priority, and with wait() each heartbeat would wait for the
  // normal-priority progress thread, which a loaded host may leave
  // unscheduled for longer than the failure detector's timeout. Bounded
  // like wait() (the progress thread fails the op at its deadline).
  Status wait_driving(std::chrono::microseconds nap);
  // REQUIRES done() and ok: the length of the message a recv received
  // (0 for other operations).
  size_t bytes() const;

 private:
  friend class Connection;
  explicit Op(std::shared_ptr<detail::OpState> s) : s_(std::move(s)) {}
  std::shared_ptr<detail::OpState> s_;
};

class Connection {
 public:
  using ms = std::chrono::milliseconds;
  static constexpr ms kDefault{0};   // use FabricOptions::op_timeout
  static constexpr ms kNoDeadline{-1};

  ~Connection();  // close()
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // The peer as named in errors: "'<identity>' at <address>".
  const std::string& peer() const;
  // The identity the peer announced on connect.
  const std::string& peer_identity() const;
  // Ok while usable; else why it broke (or kClosed).
  Status status() const;

  // One-sided write of local[local_off, +len) to remote[remote_off, +len).
  // Checked before posting: both ranges in bounds (kOutOfBounds), len > 0
  // and <= max message size (kInvalidArgument). Completion: data is in the
  // target's memory. Errors at completion: kTimeout, kPeerLost, kRevokedKey.
  Op write(const MemoryRegion& local, size_t local_off,
           const RegionDescriptor& remote, uint64_t remote_off, size_t len,
           ms timeout = kDefault);
  // One-sided read of remote[remote_off, +len) into local[local_off, +len).
  Op read(MemoryRegion& local, size_t local_off, const RegionDescriptor& remote,
          uint64_t remote_off, size_t len, ms timeout = kDefault);
  // Sends local[off, +len) to the peer's next posted receive. The peer's
  // receive buffer must be large enough (else its recv fails kShortBuffer).
  Op send(const MemoryRegion& local, size_t off, size_t len,
          ms timeout = kDefault);
  // Posts a receive buffer local[off, +len); completes when a message
  // arrives (Op::bytes = its length). Post receives before the peer sends.
  // Default: no deadline (a dead peer still fails it).
  Op recv(MemoryRegion& local, size_t off, size_t len,
          ms timeout = kNoDeadline);

  // Called once when an op posted with a callback completes (ok or not),
  // after Op::done() turned true. `bytes` is the received length for a
  // recv. It runs on whichever thread reads the completion: the progress
  // thread, a thread inside Op::wait, or one closing the connection. It
  // must not block or wait on an Op (the completion queue is held while
  // it runs); it may post new operations. A connection that failed is torn
  // down by the fabric itself: the callback need not close it.
  using Callback = void (*)(void* ctx, const Status& st, size_t bytes);
  // recv() that calls `cb(ctx, ...)` on completion, so no thread has to
  // sleep in Op::wait to learn of a message. An op refused before it was
  // posted (bad bounds, connection already broken) is returned done and
  // its callback is never called: check Op::done() after posting.
  Op recv(MemoryRegion& local, size_t off, size_t len, Callback cb, void* ctx);

  // Synchronous conveniences: post and wait.
  Status write_sync(const MemoryRegion& local, size_t local_off,
                    const RegionDescriptor& remote, uint64_t remote_off,
                    size_t len, ms timeout = kDefault) {
    return write(local, local_off, remote, remote_off, len, timeout).wait();
  }
  Status read_sync(MemoryRegion& local, size_t local_off,
                   const RegionDescriptor& remote, uint64_t remote_off,
                   size_t len, ms timeout = kDefault) {
    return read(local, local_off, remote, remote_off, len, timeout).wait();
  }

  // Tears the connection down (fi_shutdown + fi_close). Outstanding
  // operations fail with kClosed. Idempotent.
  void close();

 private:
  friend class Fabric;
  friend class Listener;
  Connection(std::shared_ptr<detail::Domain> d,
             std::shared_ptr<detail::ConnState> c)
      : d_(std::move(d)), c_(std::move(c)) {}
  std::shared_ptr<detail::Domain> d_;  // keeps the domain alive
  std::shared_ptr<detail::ConnState> c_;
};

}  // namespace ftm::rdma

#endif  // FTM_RDMA_CONNECTION_H_
