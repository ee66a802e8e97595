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
// Holding (recovery onto a new secondary, replication/snapshot.h): while
// the primary's snapshot of some map partitions is taken and installed, their
// entries are consumed from the ring (the position is published as usual,
// so the primary never stalls) but copied aside instead of applied;
// release() replays the copies that the snapshot does not already reflect.
//
// Thread-safety: start()/stop() and the destructor REQUIRE external
// synchronization; stats() and applied_lsn() are safe from any thread;
// hold() and release() are safe while the applier thread runs (a mutex,
// taken per entry only while a hold is in place, orders them with it).
#ifndef FTM_REPLICATION_LOG_APPLIER_H_
#define FTM_REPLICATION_LOG_APPLIER_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

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

  // Starts holding the map partitions p with map_partitions[p]
  // (map_partitions.size() is the map's partition count P): from the next
  // entry on, an entry whose Effect::partition is held is copied into owned
  // memory instead of applied. kFlushAll entries without kFlushSplit
  // (whole-store flushes, which ReplicationManager never ships) are never
  // held. An entry being applied while hold() runs may still be applied:
  // it landed before the call, so a snapshot requested after hold()
  // returns reflects it. Returns false (and changes nothing) if a hold is
  // already in place.
  bool hold(std::vector<bool> map_partitions);

  // Ends the hold after the snapshot was installed (install_snapshot):
  // replays the held entries in lsn order, skipping those the snapshot
  // already reflects, then applies held partitions directly again.
  // lsn_by_store_partition (kPartitions entries) is the snapshot's table
  // (InstallResult::lsn_by_store_partition). The rule, for an entry with
  // lsn L:
  //   kItem, kTombstone: skipped iff L <= lsn_by_store_partition[s], s the
  //     key's store partition (Store::partition_of): the primary appends a
  //     key's effects while holding s, and the snapshot recorded the last
  //     reserved lsn on taking s, so exactly the effects up to it are in
  //     the snapshot.
  //   kFlushAll with kFlushSplit, P == kPartitions: the same rule with s =
  //     Effect::partition (the primary flushes store partition s under its
  //     lock; the snapshot carries s's split as of its lsn). With P !=
  //     kPartitions (never shipped by ReplicationManager: each server then
  //     flushes its own store) a split cannot be tied to one store
  //     partition: replayed iff L > the smallest recorded lsn, so no store
  //     partition whose snapshot predates it misses it.
  // Replaying an effect the snapshot reflects would only move the key back
  // in time until the later effects are replayed; skipping it keeps the
  // copy at the snapshot's state or newer throughout. Runs on the calling
  // thread in chunks, so the applier thread keeps consuming the ring (and
  // holding new entries, appended behind) between chunks; returns when no
  // held entry is left. No-op without a hold. Call it once applied_lsn()
  // has reached the largest recorded lsn: an entry the snapshot reflects
  // that lands after the release is applied directly (the copy then moves
  // back in time until the key's later entries, which follow in lsn order,
  // are applied). REQUIRES: one caller at a time; the thread holds no Txn.
  void release(const std::vector<uint64_t>& lsn_by_store_partition);

  // Whether a hold is in place (hold() returned true, release() not done).
  bool holding() const { return holding_.load(std::memory_order_acquire); }

  struct Stats {
    uint64_t applied = 0;        // entries applied
    uint64_t items = 0, tombstones = 0, flushes = 0;
    uint64_t stale_epoch = 0;    // consumed without applying (min_epoch)
    uint64_t apply_errors = 0;   // item could not be allocated: key removed
    uint64_t bad_checksums = 0;  // polls that saw a header but a bad sum
    uint64_t skips = 0;          // skip markers followed to offset 0
    uint64_t implicit_wraps = 0; // wraps at a tail too short for a marker
    uint64_t last_epoch = 0;
    uint64_t held = 0;           // entries copied aside by a hold (total)
    uint64_t held_pending = 0;   // of them, not yet replayed or skipped
    uint64_t held_bytes = 0;     // key and value bytes they keep now
    uint64_t replayed = 0;       // held entries applied by release()
    uint64_t replay_skipped = 0; // held entries the snapshot reflected
  };
  Stats stats() const;

 private:
  // Tries the entry at pos_; returns true if one was consumed.
  bool step();
  void apply(const Effect& e);
  void apply_flush(const Effect& e);
  void wait_past_flush();
  void run();
  void apply_or_hold(const Effect& e);
  bool is_held(const Effect& e) const;  // REQUIRES: hold_mu_ held

  // An entry copied aside by a hold: the Effect's fields, with the key and
  // value in `bytes` (the ring's copy is reused once the position moves on).
  struct HeldEntry {
    Effect effect;      // key and value empty: see view()
    size_t key_len = 0;
    std::string bytes;  // key then value
    Effect view() const;
  };

  LogRing& ring_;
  Store& store_;
  const Options opts_;
  std::atomic<uint64_t> min_epoch_;
  uint64_t pos_ = 0;           // applier-thread state
  uint64_t expected_lsn_ = 1;
  rel_time_t flush_second_ = 0;  // second of the last immediate flush, until passed
  std::atomic<bool> stop_{false};
  // Hold state. holding_ lets the applier thread skip hold_mu_ when there is
  // no hold; with one, hold_mu_ is taken per entry, so release()'s replay
  // and the applier thread never apply at the same time (apply() keeps
  // state: flush_second_) and a held partition's entries are applied in lsn
  // order across the switch back.
  std::atomic<bool> holding_{false};
  std::mutex hold_mu_;
  std::vector<bool> held_;          // guarded by hold_mu_; size P during a hold
  std::deque<HeldEntry> held_entries_;  // guarded by hold_mu_; lsn order
  std::thread thread_;
  struct Counters {
    std::atomic<uint64_t> applied{0}, items{0}, tombstones{0}, flushes{0},
        stale_epoch{0}, apply_errors{0}, bad_checksums{0}, skips{0},
        implicit_wraps{0}, last_epoch{0}, held{0}, held_pending{0}, held_bytes{0},
        replayed{0}, replay_skipped{0};
  } counters_;
};

}  // namespace ftm::repl

#endif  // FTM_REPLICATION_LOG_APPLIER_H_
