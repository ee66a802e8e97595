// LogApplier: the secondary's end of one replication log. A thread scans the
// ring (replication/log_ring.h) for the next entry, validates it (expected
// lsn at the expected position, length, XXH3 checksum seeded with the ring's
// incarnation: replication/effect.h), applies it to the Store, and publishes
// the position after it in the control block, where the primary's
// LogWriter reads it to reuse the space. DARE (Poke and Hoefler, HPDC 2015)
// (log replication): servers apply entries from their local copy of the log in
// order and advance their apply pointer; here nothing else is needed since
// delivery into this memory is the commit (primary-secondary pair).
//
// Applying:
//   kItem      -> Store::allocate + Txn::link(item, cas): the cas, client
//                 flags and value the primary linked; the absolute exptime
//                 becomes this process's relative time (clock::realtime).
//   kTombstone -> Txn::find + Txn::unlink.
//   kFlushAll  -> with kFlushSplit (what ReplicationManager ships): one
//                 partition's split, Store::flush_partition, exact.
//                 Otherwise Store::flush_all. The primary's store splits the flush
//                 second by its own cas counter; the secondary links foreign
//                 cas values, so it splits by time instead: it flushes every
//                 item stored up to the current second T and applies no
//                 item until the clock reads T+1 (a stall of at most one
//                 second, only if an item follows the flush within its
//                 second; the applier ticks the clock while it waits). A
//                 delayed flush (absolute deadline in exptime) is passed on
//                 as is. See README.md for the Store change that would
//                 remove the stall.
// The ring is polled: no remote write raises an event on this side (the
// primary's CPU-free delivery is the point). The thread spins for
// Options::spin after the last entry, then sleeps with backoff up to
// Options::max_sleep; applier speed only bounds ring reuse, never the
// primary's append latency, which ends at delivery.
//
// Thread-safety: start()/stop() and the destructor REQUIRE external
// synchronization; stats() and applied_lsn() are safe from any thread.
#ifndef FTM_REPLICATION_LOG_APPLIER_H_
#define FTM_REPLICATION_LOG_APPLIER_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>

#include "replication/effect.h"
#include "replication/log_ring.h"
#include "src/store.h"

namespace ftm::repl {

class LogApplier {
 public:
  struct Options {
    std::chrono::microseconds spin{50};       // busy-poll after an entry
    std::chrono::microseconds min_sleep{10};   // first idle nap (doubles)
    std::chrono::microseconds max_sleep{500};  // longest idle nap
    // Entries with an epoch below this are consumed without being applied
    // (a stale primary's leftovers after a promotion); see set_min_epoch.
    uint64_t min_epoch = 0;
  };

  // The ring and store must outlive the applier. Does not start the thread.
  LogApplier(LogRing& ring, Store& store, const Options& options);
  LogApplier(LogRing& ring, Store& store) : LogApplier(ring, store, Options()) {}
  ~LogApplier();  // stop()
  LogApplier(const LogApplier&) = delete;
  LogApplier& operator=(const LogApplier&) = delete;

  // Starts the applier thread at the ring's published applied position.
  void start();
  // Stops the thread after the entry it is applying; the published position
  // stays where it is (a later start() resumes there). Idempotent.
  void stop();

  // Applies every entry available right now, on the calling thread, and
  // returns how many. For tests and for a final catch-up before promotion
  // ("its whole log applied", DESIGN.md). REQUIRES: the thread is stopped.
  size_t apply_available();

  // Raises the epoch below which entries are consumed without being applied
  // (fencing by epoch, on top of LogRing::revoke). Never raise it over
  // entries a legitimate primary delivered (they may be acknowledged):
  // revoke, apply what landed, then raise. Safe from any thread.
  void set_min_epoch(uint64_t epoch) {
    min_epoch_.store(epoch, std::memory_order_relaxed);
  }

  uint64_t applied_lsn() const { return ring_.applied_lsn(); }

  struct Stats {
    uint64_t applied = 0;        // entries applied
    uint64_t items = 0, tombstones = 0, flushes = 0;
    uint64_t stale_epoch = 0;    // consumed without applying (min_epoch)
    uint64_t apply_errors = 0;   // item could not be allocated: key removed
    uint64_t bad_checksums = 0;  // polls that saw a header but a bad sum
    uint64_t skips = 0;          // skip markers followed to offset 0
    uint64_t implicit_wraps = 0; // wraps at a tail too short for a marker
    uint64_t last_epoch = 0;
  };
  Stats stats() const;

 private:
  // Tries the entry at pos_; returns true if one was consumed.
  bool step();
  void apply(const Effect& e);
  void apply_flush(const Effect& e);
  void wait_past_flush();
  void run();

  LogRing& ring_;
  Store& store_;
  const Options opts_;
  std::atomic<uint64_t> min_epoch_;
  uint64_t pos_ = 0;           // applier-thread state
  uint64_t expected_lsn_ = 1;
  rel_time_t flush_second_ = 0;  // second of the last immediate flush, until passed
  std::atomic<bool> stop_{false};
  std::thread thread_;
  struct Counters {
    std::atomic<uint64_t> applied{0}, items{0}, tombstones{0}, flushes{0},
        stale_epoch{0}, apply_errors{0}, bad_checksums{0}, skips{0},
        implicit_wraps{0}, last_epoch{0};
  } counters_;
};

}  // namespace ftm::repl

#endif  // FTM_REPLICATION_LOG_APPLIER_H_
