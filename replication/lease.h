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
// Open (issue 7, t/test_partition.py xfail): when the metadata server is cut
// off by a silent drop (not refused), no heartbeat is acknowledged and every
// primary stops serving one lease length later, although nobody can be
// failed over then (the metadata server declares nobody failed while no
// server vouches for its links, failure_monitor.h "Isolation"). Renewing on
// a connect timeout alone would be wrong: a primary cut off from the
// metadata server but not from its peers looks the same from inside, and is
// failed over. The way out is evidence from the peers: a primary whose
// heartbeats go unacknowledged asks every other up server of its map
// whether they reach the metadata server; only if all of them answer "no
// heartbeat acknowledged for at least X" may it renew (from the time it
// asked), since then the metadata server hears from nobody. Pitfalls to
// close before doing so: (1) a heartbeat write still in flight can land
// late (tcp retransmission, up to the 1 s operation deadline) and make its
// sender look fresh, i.e. vouch, so a peer that says "no" must also post no
// heartbeat for the lease it granted, and the metadata server must require
// a steady voucher (several arrivals within a window W <= X - lease) rather
// than one fresh arrival; (2) after healing, the metadata server's
// isolation grace must outlast every such peer-granted lease; (3) a primary
// cut off from the metadata server and all its peers gets no answers and
// stops, as it must.
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
};

}  // namespace ftm::repl

#endif  // FTM_REPLICATION_LEASE_H_
