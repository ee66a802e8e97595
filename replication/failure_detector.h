// The metadata server's failure detector (DESIGN.md, "Failure detection and
// recovery"; issue 6). It judges each data server from the heartbeats found
// in its slot of the heartbeat array (replication/heartbeat.h) and from
// errors peers report, and says which servers to suspect and why.
//
// Estimation follows Chen, Toueg and Aguilera, "On the quality of service of
// failure detectors", IEEE Trans. Computers 51(5), 2002: the next heartbeat
// of a server is expected at its last arrival plus the mean of its last
// `window` inter-arrival times, and the server is suspected once that moment
// plus a safety margin alpha has passed. Here
//   alpha = max(floor, 4 x standard deviation of those times) x widen,
// so a jittery server gets a wider margin (the adaptive part), and widen,
// starting at 1, doubles after each false suspicion (a suspected server whose
// heartbeat came back), up to max_widen: an eventually perfect detector must
// stop suspecting a correct server eventually. Phi accrual (Hayashibara et
// al., "The phi accrual failure detector", SRDS 2004) is the alternative: it
// turns the same samples into a suspicion level on a continuous scale. One
// threshold is all the metadata server needs, and Chen's margin is easier to
// state, floor and log in milliseconds, so phi is not used; View::level gives
// ctl a continuous level anyway.
//
// Pure logic: no threads, no I/O, no clock reads. Every method takes `now`,
// so tests drive a simulated clock. All durations are microseconds unless a
// name says otherwise.
//
// Thread-safety: not safe for concurrent use. The metadata server's scan
// thread owns it (REQUIRES external synchronization).
#ifndef FTM_REPLICATION_FAILURE_DETECTOR_H_
#define FTM_REPLICATION_FAILURE_DETECTOR_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace ftm::repl {

class FailureDetector {
 public:
  using Clock = std::chrono::steady_clock;

  struct Options {
    // Chen-Toueg-Aguilera estimation: the next heartbeat is expected at the
    // last arrival plus the mean of the last `window` inter-arrival times; the
    // server is suspected once `now` passes that expected arrival plus a
    // safety margin alpha = max(floor, 4 x the inter-arrival standard
    // deviation) x widen, where widen starts at 1 and doubles after each
    // false suspicion (capped at max_widen).
    std::chrono::microseconds floor{20000};            // smallest alpha (20 ms)
    size_t window = 100;                               // samples per server (>= 2)
    std::chrono::microseconds initial_interval{5000};  // the mean until 2 samples are in
                                                       // (at least this with 1)
    double max_widen = 64;                             // cap on widen (>= 1)
    // The least timeout of a watched server that has not written its first
    // heartbeat yet (0: none beyond the usual). After JOIN_OK a server sets
    // up its heartbeat connection first; on a busy host that took longer
    // than the 105 ms default timeout, and every joiner was suspected at
    // once (seen in CI as formation-time failovers). A server dying before
    // its first heartbeat is noticed this late.
    std::chrono::microseconds first_heartbeat{0};
  };

  // One server as seen at some `now`, for `ftmemcached-ctl status` and logs.
  struct View {
    bool known = false;  // a heartbeat was ever seen (or watch() was called)
    bool suspected = false;  // as decided by the last scan() or report()
    std::chrono::microseconds age{0};      // now - last heartbeat arrival
    std::chrono::microseconds timeout{0};  // expected interval + alpha: the age
                                           // at which scan() suspects it
    double level = 0;  // age / timeout, the "suspicion level": >= 1 means the
                       // next scan() suspects it (if it has not already)
    uint64_t incarnation = 0, counter = 0;  // last heartbeat value seen
    uint32_t false_suspicions = 0;          // since watch(), across restarts
    double widen = 1;
    std::string reason;  // why suspected: "no heartbeat for N ms (timeout M
                         // ms)" or the reported error; empty if not suspected
  };

  // Out-of-range options are clamped (window to >= 2, max_widen to >= 1).
  explicit FailureDetector(const Options& o);

  // Starts watching `node` as if a heartbeat arrived at `now` (a server that
  // joined but never wrote one is suspected after initial_interval + floor).
  // A node already watched is left as it is. Allocates the node's samples:
  // nothing else allocates per heartbeat. A node forgotten before starts
  // with the widen factor and false-suspicion count it had then.
  void watch(uint32_t node, Clock::time_point now);
  // Stops watching `node` (it left the cluster, or was declared failed). Its
  // widen factor and false-suspicion count are kept for a later watch() of
  // the same id: a failure declared because this host stalls must not reset
  // what the detector learned about it.
  void forget(uint32_t node);
  // `node` (watched) was declared failed and forgotten, and its process has
  // come back, still running (JoinMsg::kWasFenced): the declaration was a
  // false suspicion. Doubles widen (capped at max_widen) and counts it, as a
  // heartbeat that clears a timeout suspicion does. Returns the new timeout;
  // 0 for a node not watched.
  std::chrono::microseconds false_failover(uint32_t node);

  // The heartbeat slot of `node`, read at `now`, holds (incarnation,
  // counter). Only a changed value counts as an arrival, since the scan reads
  // the slot many times per interval; a counter that goes backwards within an
  // incarnation is a stale read and is ignored, as is (0, 0), an empty slot.
  // A new incarnation (the server restarted, or the first value since
  // watch()) is an arrival that resets the samples but keeps the widen
  // factor, and clears a suspicion without widening: the old incarnation
  // really did die. A sample longer than the timeout in force is clamped to
  // it, so one long stall cannot blind the detector for a whole window
  // (widen is what answers stalls). An unknown node is watched first.
  // Returns true iff this heartbeat cleared a timeout suspicion: a false
  // suspicion, which the caller logs; widen has been doubled. Clearing a
  // report() suspicion returns false (see report()); callers that care
  // compare suspected() before and after.
  bool heartbeat(uint32_t node, uint64_t incarnation, uint64_t counter,
                 Clock::time_point now);

  // A peer reported `node` unreachable (a fabric error on replication or
  // forwarding): it is suspected at once with `reason`, until its heartbeat
  // advances. Clearing such a suspicion does not widen: the error was real
  // when it was seen (a link flap, a peer's own trouble), so it says nothing
  // about this server's heartbeat timing. The caller acts on the report
  // itself; scan() does not return the node. A node already suspected keeps
  // its first reason; an unknown node is ignored (nothing to judge).
  // Note: a heartbeat written just before the failure but first read after
  // the report clears the suspicion; scan() then suspects it again after
  // one timeout.
  void report(uint32_t node, const std::string& reason, Clock::time_point now);

  // `node`'s timeout suspicion was this observer's fault, not the node's:
  // every watched server fell silent at once (the metadata server stalled,
  // or was cut off; FailureMonitor "Isolation"). The node stays suspected,
  // but the heartbeat that clears it does not widen its timeout nor count
  // as a false suspicion (heartbeat() returns false): what the detector has
  // learned about the node must not pay for its observer's stall. Does
  // nothing for a node not suspected by timeout.
  void excuse(uint32_t node);

  // Re-evaluates every node at `now` and returns, in node order, those that
  // became suspected by this call: each suspicion is returned once, a node
  // already suspected never.
  std::vector<uint32_t> scan(Clock::time_point now);

  // `node` as seen at `now` (View::known is false for a node not watched).
  View view(uint32_t node, Clock::time_point now) const;
  // Whether `node` is suspected, as of the last scan() or report().
  bool suspected(uint32_t node) const;

 private:
  enum class Cause { kNone, kTimeout, kReport, kExcused };

  struct Node {
    Clock::time_point last;       // last arrival (or watch())
    uint64_t incarnation = 0, counter = 0;
    std::vector<int64_t> ring;    // inter-arrival times, us; size window
    size_t count = 0, next = 0;   // samples held; slot the next one goes to
    double sum = 0, sumsq = 0;    // over the held samples: us, us^2
    double widen = 1;
    uint32_t false_suspicions = 0;
    std::chrono::microseconds timeout{0};  // cached: see update_timeout()
    Cause cause = Cause::kNone;
    std::string reason;
  };

  // What forget() keeps of a node for its next watch().
  struct Learned {
    double widen = 1;
    uint32_t false_suspicions = 0;
  };

  void add_sample(Node& n, int64_t us);
  void reset_samples(Node& n);
  void update_timeout(Node& n) const;
  static std::chrono::microseconds age_of(const Node& n, Clock::time_point now);

  std::map<uint32_t, Learned> learned_;  // forgotten nodes
  Options o_;
  std::map<uint32_t, Node> nodes_;  // ordered: scan() and logs go by node id
};

}  // namespace ftm::repl

#endif  // FTM_REPLICATION_FAILURE_DETECTOR_H_
