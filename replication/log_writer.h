// LogWriter: the primary's end of one replication log (one per secondary).
// Threads append effects; a flusher thread ships them into the secondary's
// ring (replication/log_ring.h) with one-sided RDMA writes and reports each
// append's delivery through its callback. DESIGN.md "Data path" steps 5-6;
// DARE (Poke and Hoefler, HPDC 2015), log replication in normal operation:
// the leader writes entries directly into the remote log and learns the
// remote apply pointer by reading it, so the remote CPU takes no part in the
// transfer.
//
// How an append travels:
//  1. append() reserves space and the next lsn under a short critical
//     section (a few arithmetic steps: no copy, no I/O, no allocation),
//     then encodes the entry into a local staging ring that mirrors the
//     remote one byte for byte (an entry at position p is at p % size on
//     both sides, so a batch is one contiguous write), and marks its slot
//     ready.
//  2. The flusher gathers every consecutive ready entry into one write (group
//     commit: appends that arrive while a write is in flight ride in the
//     next one). A second write goes out before the first completes only
//     for a large batch (a quarter of max_write_bytes), up to max_inflight.
//  3. When a write completes (FI_DELIVERY_COMPLETE: the bytes are in the
//     secondary's memory), the flusher fires the callbacks of its entries,
//     in lsn order, with an ok Status.
// Back-pressure: space is reusable only once the secondary's applier has
// consumed it. When an append does not fit, the flusher reads the ring's
// control block (one-sided read) until applied_pos moves, and the append
// waits, up to Options::full_wait; nothing is dropped or overwritten.
// Failure: the first failed write or read (kPeerLost, kTimeout,
// kRevokedKey after fencing, ...) fails the writer for good: every append
// not yet delivered gets that Status in its callback, later appends return
// it at once. A new writer (new connection, fresh ring) is the way back.
//
// Thread-safety: append(), drain(), status() and stats() are safe for
// concurrent use; close() may race with append() (which then returns
// kClosed), the destructor may not. Callbacks run on the flusher thread,
// one at a time, in lsn order, and must not block or call append() on the
// same writer (it may be full, and only the flusher frees space).
#ifndef FTM_REPLICATION_LOG_WRITER_H_
#define FTM_REPLICATION_LOG_WRITER_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>

#include "rdma/connection.h"
#include "rdma/fabric_domain.h"
#include "rdma/memory_region.h"
#include "rdma/region_descriptor.h"
#include "rdma/status.h"
#include "replication/effect.h"

namespace ftm::repl {

class LogWriter {
 public:
  // Fired once per successful append(), on the flusher thread, when the
  // entry has landed in the secondary's memory (st ok) or can no longer land
  // (st names the error and the peer). A function pointer and a context
  // rather than std::function: a slot per pending append is preallocated
  // and must not allocate (the server passes its parked connection as ctx).
  using Callback = void (*)(void* ctx, uint64_t lsn, const rdma::Status& st);

  struct Options {
    // Longest an append waits for ring space (back-pressure) before it
    // returns kTimeout. The applier only has to keep up on average. 0 makes
    // append() non-blocking: a full ring returns kTimeout at once (and has
    // the flusher refresh the applied position), for callers that would
    // rather park the request than block a worker thread.
    std::chrono::milliseconds full_wait{5000};
    // Deadline of each RDMA write and read (0 = the fabric's op_timeout).
    std::chrono::milliseconds op_timeout{0};
    // Most bytes in one RDMA write (a batch larger than this is split).
    size_t max_write_bytes = 256 * 1024;
    // Writes in flight at once (pipelining; completion stays in order).
    unsigned max_inflight = 4;
    // Appends pending delivery at once: the preallocated callback slots
    // (32 bytes each). A full slot table makes append() wait like a full ring.
    size_t max_pending = 65536;
    // How long an idle flusher keeps polling for the next append before it
    // sleeps (a futex wake costs tens of microseconds on a loaded host).
    // 0 on hosts with fewer cores than busy threads, where the spin takes
    // the core the appending worker needs.
    std::chrono::microseconds idle_spin{50};
  };

  // Attaches to the ring described by `ring` over `conn` (both must outlive
  // the writer): reads its control block, registers a local staging ring of
  // the same size and starts the flusher. Appending resumes after the last
  // entry the secondary applied (lsn applied_lsn + 1): attach to a fresh
  // ring, or to one whose every written entry has been applied.
  // Errors: kCorruptDescriptor (not a log ring, or size mismatch with the
  // descriptor), the read's errors (kPeerLost, kTimeout, kRevokedKey),
  // registration errors.
  static rdma::Result<std::unique_ptr<LogWriter>> attach(
      rdma::Fabric& fabric, rdma::Connection& conn,
      const rdma::RegionDescriptor& ring, const Options& options);
  static rdma::Result<std::unique_ptr<LogWriter>> attach(
      rdma::Fabric& fabric, rdma::Connection& conn,
      const rdma::RegionDescriptor& ring) {
    return attach(fabric, conn, ring, Options());
  }

  // close(), then frees the staging ring.
  ~LogWriter();
  LogWriter(const LogWriter&) = delete;
  LogWriter& operator=(const LogWriter&) = delete;

  // Appends `e` (e.lsn is ignored: the writer assigns the next lsn of this
  // ring and, if lsn_out is given, stores it there). On ok, `cb` fires
  // exactly once later. On error, `cb` never fires and nothing was appended:
  // kInvalidArgument (key > 250 bytes, entry larger than half the ring),
  // kTimeout (no space within full_wait: the secondary does not apply),
  // kClosed, or the error that failed the writer.
  // Effects of one key must be appended in the order they were linked (the
  // server calls this while it still holds the key's partition, or
  // otherwise orders them); lsn order is append() call order.
  // Cost when there is space: the short reservation lock, one encode (copy
  // plus XXH3 of the entry) into preallocated memory, no allocation, and a
  // futex wake only if the flusher had gone to sleep. Blocks only when the
  // ring or the slot table is full.
  rdma::Status append(const Effect& e, Callback cb, void* ctx,
                      uint64_t* lsn_out = nullptr);

  // Waits until every append made before the call has fired its callback, or
  // `timeout` passes. Returns the writer's status (ok, or why it failed);
  // kTimeout if still pending. For tests, draining and handover.
  rdma::Status drain(std::chrono::milliseconds timeout);

  // Stops the flusher after the writes in flight complete; appends not yet
  // delivered get kClosed. Idempotent; the writer cannot be reopened.
  void close();

  // Ok while healthy; otherwise the first error (with the peer named).
  rdma::Status status() const;

  struct Stats {
    uint64_t appended = 0;       // successful append() calls
    uint64_t delivered = 0;      // callbacks fired with ok
    uint64_t failed = 0;         // callbacks fired with an error
    uint64_t writes = 0;         // RDMA writes posted (batches x segments)
    uint64_t bytes_written = 0;  // bytes they carried
    uint64_t control_reads = 0;  // one-sided reads of the control block
    uint64_t full_waits = 0;     // appends that had to wait for space
    uint64_t last_lsn = 0;       // lsn of the last append
    uint64_t applied_lsn = 0;    // secondary's applied lsn, as last read
  };
  // Counters, read without locks (each individually consistent).
  Stats stats() const;

  // The lsn of the last append that reserved one (0 before any). Cheap (one
  // atomic load): snapshots call it under a store partition's lock, which
  // append()s of that partition's keys also hold, so it covers exactly them.
  uint64_t last_lsn() const { return reserved_lsn_.load(std::memory_order_acquire); }

 private:
  struct Slot;
  struct Inflight;
  LogWriter(rdma::Connection& conn, const rdma::RegionDescriptor& ring,
            const Options& options);
  void flusher_main();
  bool post_ready(Inflight& in, uint64_t min_bytes);
  void emit(Inflight& in, uint64_t from, uint64_t to);
  void complete(const Inflight& in);
  bool slot_ready(uint64_t lsn) const;
  void fail(const rdma::Status& st);
  void fail_pending(const rdma::Status& st);
  bool poll_control();
  void wake_flusher();
  void wake_space_waiters();

  rdma::Connection& conn_;
  const rdma::RegionDescriptor ring_;
  const Options opts_;
  size_t size_ = 0;        // entry area bytes
  uint64_t seed_ = 0;      // the ring's incarnation
  std::unique_ptr<std::byte, void (*)(void*)> local_{nullptr, nullptr};
  std::unique_ptr<rdma::MemoryRegion> local_mr_;  // staging ring + control buf
  std::unique_ptr<Slot[]> slots_;

  // Reservation state, guarded by mu_ (the short critical section).
  std::mutex mu_;
  std::condition_variable space_cv_;
  uint64_t tail_ = 0;      // logical end of the last reserved entry
  uint64_t next_lsn_ = 1;  // lsn of the next append
  std::atomic<uint64_t> reserved_lsn_{0};  // last lsn handed out
  std::atomic<int> space_waiters_{0};
  std::atomic<bool> want_control_{false};  // a non-blocking append found it full

  // Progress published by the flusher.
  std::atomic<uint64_t> head_{0};       // secondary's applied_pos
  std::atomic<uint64_t> done_lsn_{0};   // callbacks fired up to here
  std::atomic<bool> failed_{false};
  std::atomic<bool> closing_{false};
  mutable std::mutex status_mu_;        // guards status_ (cold path)
  rdma::Status status_;

  std::atomic<uint64_t> tail_pub_{0};  // tail_, for the flusher's heuristics

  // Flusher sleep (only when idle).
  std::mutex sleep_mu_;
  std::condition_variable sleep_cv_;
  std::atomic<bool> flusher_sleeping_{false};

  // Flusher-private state.
  uint64_t posted_lsn_ = 0;  // last lsn inside a posted write
  uint64_t posted_pos_ = 0;  // logical end of the posted bytes
  rdma::Op control_op_;
  bool control_inflight_ = false;
  std::chrono::steady_clock::time_point last_control_read_{};

  struct Counters {
    std::atomic<uint64_t> appended{0}, delivered{0}, failed{0}, writes{0},
        bytes_written{0}, control_reads{0}, full_waits{0}, applied_lsn{0};
  } counters_;

  std::thread flusher_;
};

}  // namespace ftm::repl

#endif  // FTM_REPLICATION_LOG_WRITER_H_
