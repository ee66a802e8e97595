// FailureMonitor: the metadata server's half of failure detection (issue 6).
// Owns the heartbeat array data servers write into (replication/heartbeat.h)
// and a thread that scans it every scan period and feeds a FailureDetector
// (replication/failure_detector.h). Suspicions and false suspicions are
// logged with their reason; status() reports each server's view.
//
// What happens on a suspicion (failover) is not decided here: on_suspect is
// called once per suspicion, on the scan thread, for the caller to act on.
//
// Isolation (issue 7, network partitions): when this metadata server is cut
// off, every server's heartbeats stop at once, but each is suspected at its
// own timeout, a few milliseconds apart; the first one suspected must not be
// failed over because the others' timeouts have not run out yet. So a
// suspicion is passed on only once another server vouches for this
// server's links: one not suspected whose heartbeat arrived after the
// suspicion. Until then it waits (at most until the others' timeouts run
// out). If every other server is suspected too (or there is none), nobody
// vouches: nobody is declared failed, and for isolation_grace after the
// last scan that found everyone silent no suspicion is acted on at all; a
// held node stays suspected (its heartbeat clears it as a false suspicion)
// and is declared failed once someone vouches after the grace. When the links come back the servers reconnect one by one (tcp
// backs off while a link is cut, and a data server whose heartbeat write
// timed out joins again), so the first one back must not see the others
// failed for being a little later.
//
// Thread-safety: all methods are safe for concurrent use.
#ifndef FTM_REPLICATION_FAILURE_MONITOR_H_
#define FTM_REPLICATION_FAILURE_MONITOR_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "rdma/fabric_domain.h"
#include "replication/control_msg.h"
#include "replication/failure_detector.h"
#include "replication/heartbeat.h"

namespace ftm::repl {

class FailureMonitor {
 public:
  struct Options {
    // The period data servers are asked to write heartbeats at.
    std::chrono::microseconds heartbeat_interval{5000};
    // How often the array is read (finer than the interval, so an arrival
    // is timed to within this).
    std::chrono::microseconds scan_every{1000};
    FailureDetector::Options detector;
    uint32_t max_node = 1024;  // slots 0..max_node
    std::function<void(std::string_view)> log;
    // Called once per new suspicion with the node and the reason, if some
    // other server vouches for this metadata server's connectivity (see
    // "Isolation" above).
    std::function<void(uint32_t node, const std::string& reason)> on_suspect;
    // After a suspicion nobody vouched for, how long no suspicion is acted
    // on (see "Isolation" above); the metadata server passes its
    // restart_grace, for the same reason.
    std::chrono::milliseconds isolation_grace{3000};
  };

  // Registers the array and starts the scan thread. Errors: registration.
  static rdma::Result<std::unique_ptr<FailureMonitor>> start(rdma::Fabric& fabric,
                                                             Options options);
  ~FailureMonitor();  // stop()
  void stop();

  // A server joined (or re-joined) as `node`: its slot is emptied and it
  // is watched from now (suspected if no heartbeat comes within the
  // detector's initial interval + floor). Fills the heartbeat fields of
  // its JOIN_OK.
  void watch(uint32_t node, JoinOkMsg* join_ok);
  // A server left the map: no longer watched.
  void forget(uint32_t node);
  // A fabric error about `node` reported by a peer (a forward or a
  // replication write failed). Corroborated before it counts: the node is
  // suspected (on_suspect) at the first scan that finds its heartbeat old
  // enough (below), which for a dead process comes well before its timeout. A report whose node keeps
  // heartbeating for one whole timeout is dropped (logged): a link flap or
  // the reporter's own trouble must not fail over a live server. The
  // corroborating age is the larger of two intervals and half the node's
  // timeout: a loaded host delays live heartbeats by more than two
  // intervals often enough.
  void report(uint32_t node, const std::string& reason);
  // Sets `node`'s fence word (replication/heartbeat.h): it was declared
  // failed at `epoch` and learns so at its next heartbeat.
  void fence(uint32_t node, uint64_t epoch);
  // Whether some watched node other than `node` is not suspected: false
  // means every server looks dead at once, which says more about this
  // metadata server's own connectivity than about them.
  bool others_alive(uint32_t node) const;
  // Copies the detector's view of s->node_id into s's heartbeat fields.
  void fill(ServerStatus* s) const;

 private:
  FailureMonitor(Options o) : opts_(std::move(o)), detector_(opts_.detector) {}
  void run();
  void judge_reports(FailureDetector::Clock::time_point now,
                     std::vector<std::pair<uint32_t, std::string>>& suspects,
                     std::vector<std::string>& dropped);
  void log(const std::string& line) const;
  // The heartbeat age below which a node counts as heartbeating now (and
  // above which a report about it is corroborated).
  std::chrono::microseconds fresh_age(std::chrono::microseconds timeout) const;
  enum class Verdict { kVouched, kWait, kIsolated, kDrop };
  // REQUIRES mu_. kVouched: a watched node other than `node`, not
  // suspected, heartbeated after `since`; kIsolated: every other watched
  // node is suspected (or there is none); kWait: neither yet.
  Verdict vouch(uint32_t node, FailureDetector::Clock::time_point since,
                FailureDetector::Clock::time_point now) const;
  // REQUIRES mu_. Adds `suspects` to the pending suspicions and leaves in
  // it those to act on now (see "Isolation" above). Returns the log lines
  // to write.
  std::vector<std::string> hold_unvouched(
      FailureDetector::Clock::time_point now,
      std::vector<std::pair<uint32_t, std::string>>& suspects);

  Options opts_;
  std::unique_ptr<HeartbeatArray> array_;
  std::string region_wire_;  // the array's RegionDescriptor, serialized
  mutable std::mutex mu_;
  FailureDetector detector_;  // guarded by mu_
  std::set<uint32_t> watched_;  // guarded by mu_
  struct Report {
    std::string reason;
    FailureDetector::Clock::time_point at;
  };
  std::map<uint32_t, Report> reports_;  // awaiting corroboration; mu_
  struct Pending {
    std::string reason;
    FailureDetector::Clock::time_point at;  // when suspected
    bool held = false;  // logged as not declared failed
  };
  std::map<uint32_t, Pending> pending_;  // awaiting a voucher; mu_
  // No suspicion is acted on before this (isolation); guarded by mu_.
  FailureDetector::Clock::time_point quiet_until_{};
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace ftm::repl

#endif  // FTM_REPLICATION_FAILURE_MONITOR_H_
