// Lease: whether this data server may still act as primary (answer reads,
// acknowledge writes) without having heard from the metadata server
// (fencing, issue 6; DESIGN.md "Failure detection and recovery").
//
// The metadata server declares a server failed only once its last
// heartbeat that arrived is older than the failure detector's timeout (at
// least the floor) or, with a peer's report, half of it
// (FailureMonitor::report_age). A heartbeat posted at time t arrives after
// t, so if this server stops acting as primary at t + L with L shorter than
// both (FailureMonitor::lease_length: half the floor less one interval),
// it has stopped before anyone else is promoted in its place: a
// primary that was paused (SIGSTOP, a stall, a cut link) finds its lease
// expired when it runs again and waits for the new map instead of serving
// stale reads. The heartbeat writer renews the lease with the post time of
// every heartbeat whose write completed and whose fence word read back 0
// (replication/heartbeat.h); the membership client renews it while the
// metadata server is not running at all (connection refused: nobody can be
// promoted then, and a restarted metadata server waits longer than the
// renewal before it declares anyone failed).
//
// A metadata server cut off by a silent drop (not refused) acknowledges no
// heartbeat, yet declares nobody failed while it hears nobody
// (failure_monitor.h, "Isolation"). Then the peers vouch instead
// (replication/peer_lease.h): every other up server of this node's map
// says it does not hear the metadata server either, and the lease is
// renewed from the time it asked. acknowledged()/since_acknowledged() and
// length() are what that needs.
//
// The check is one atomic load and one steady-clock read: cheap enough for
// every request (no lock, no allocation).
//
// Thread-safety: all methods are safe for concurrent use.
#ifndef FTM_REPLICATION_LEASE_H_
#define FTM_REPLICATION_LEASE_H_

#include <atomic>
#include <chrono>
#include <cstdint>

namespace ftm::repl {

class Lease {
 public:
  using Clock = std::chrono::steady_clock;

  // A lease that is never required is always valid (clusters without
  // heartbeats: nobody is ever declared failed, nothing to fence).
  void set_required(bool required) {
    required_.store(required, std::memory_order_release);
  }
  bool required() const { return required_.load(std::memory_order_acquire); }

  // The length (microseconds) each acknowledged heartbeat renews for (the
  // JOIN_OK's lease_us); peers vouch for the same length. 0: unknown yet.
  void set_length(std::chrono::microseconds length) {
    length_us_.store(length.count(), std::memory_order_release);
  }
  std::chrono::microseconds length() const {
    return std::chrono::microseconds(length_us_.load(std::memory_order_acquire));
  }

  // Records that the metadata server acknowledged a heartbeat posted at
  // `posted` (whatever its fence word said).
  void acknowledged(Clock::time_point posted) {
    int64_t t = posted.time_since_epoch().count();
    int64_t cur = acked_.load(std::memory_order_relaxed);
    while (cur < t && !acked_.compare_exchange_weak(cur, t, std::memory_order_release,
                                                    std::memory_order_relaxed)) {
    }
  }
  // How long ago the newest acknowledged heartbeat was posted (the whole
  // clock's age if none ever was).
  Clock::duration since_acknowledged(Clock::time_point now = Clock::now()) const {
    return now.time_since_epoch() - Clock::duration(acked_.load(std::memory_order_acquire));
  }

  // Extends validity to `start + length` if that is later than now's.
  // `start` is when the evidence was gathered (a heartbeat's post time),
  // not when it was learned.
  // Does nothing while suspended.
  void renew(Clock::time_point start, std::chrono::microseconds length) {
    if (suspended_.load(std::memory_order_acquire)) return;
    int64_t until = (start + length).time_since_epoch().count();
    int64_t cur = until_.load(std::memory_order_relaxed);
    while (cur < until &&
           !until_.compare_exchange_weak(cur, until, std::memory_order_release,
                                         std::memory_order_relaxed)) {
    }
    // A suspend() that ran since the check above must win.
    if (suspended_.load(std::memory_order_seq_cst)) until_.store(0, std::memory_order_seq_cst);
  }

  // Invalid from now until the next renew().
  void revoke() { until_.store(0, std::memory_order_release); }

  // Invalid from now until resume() and a renew() after it: this node was
  // fenced, dropped its data, and must not act as primary by the map it
  // held before (its store is empty now) however fresh a heartbeat is.
  // Membership resumes once the map of its new JOIN_OK is installed. (A
  // heartbeat acknowledged between JOIN_OK and that install used to renew
  // it, and reads by the old map answered misses from the emptied store:
  // CI, test_sigstop_primary_never_serves_its_lost_keys.)
  void suspend() {
    suspended_.store(true, std::memory_order_seq_cst);
    until_.store(0, std::memory_order_seq_cst);
  }
  void resume() { suspended_.store(false, std::memory_order_release); }
  bool suspended() const { return suspended_.load(std::memory_order_acquire); }

  // Whether this node may act as primary at `now`.
  bool valid(Clock::time_point now = Clock::now()) const {
    return !required_.load(std::memory_order_acquire) ||
           now.time_since_epoch().count() < until_.load(std::memory_order_acquire);
  }

  // Microseconds left (negative: expired that long ago); for status lines.
  int64_t remaining_us(Clock::time_point now = Clock::now()) const {
    Clock::duration left(until_.load(std::memory_order_acquire) - now.time_since_epoch().count());
    return std::chrono::duration_cast<std::chrono::microseconds>(left).count();
  }

 private:
  std::atomic<bool> required_{false};
  std::atomic<bool> suspended_{false};
  std::atomic<int64_t> until_{0};  // Clock::duration ticks since its epoch
  std::atomic<int64_t> acked_{0};  // same unit
  std::atomic<int64_t> length_us_{0};
};

}  // namespace ftm::repl

#endif  // FTM_REPLICATION_LEASE_H_
