// FailureMonitor: the metadata server's half of failure detection (issue 6).
// Owns the heartbeat array data servers write into (replication/heartbeat.h)
// and a thread that scans it every scan period and feeds a FailureDetector
// (replication/failure_detector.h). Suspicions and false suspicions are
// logged with their reason; status() reports each server's view.
//
// What happens on a suspicion (failover) is not decided here: on_suspect is
// called once per suspicion, on the scan thread, for the caller to act on.
//
// Isolation (issue 7, network partitions; and a stall of this process on a
// busy host, whose own fabric progress can stop for longer than a
// timeout): when this metadata server is cut off, every server's
// heartbeats stop at once, but each is suspected at its
// own timeout, a few milliseconds apart; the first one suspected must not be
// failed over because the others' timeouts have not run out yet. So a
// suspicion is passed on only once another server vouches for this
// server's links: one not suspected whose heartbeat arrived after the
// suspicion. Until then it waits (at most until the others' timeouts run
// out). If every other server is suspected too (or there is none), nobody
// vouches: nobody is declared failed, and for isolation_grace after the
// last scan that found everyone silent (for a silence shorter than the
// grace, twice the silence plus the detector's floor after the first
// server is heard again) no suspicion is acted on at all; a
// held node stays suspected (its heartbeat clears it, without widening its
// timeout: the silence was this server's, FailureDetector::excuse) and is
// declared failed once someone vouches after the grace. When the
// links come back the servers reconnect one by one (tcp backs off while a
// link is cut, and a data server whose heartbeat write timed out joins
// again), so the first one back must not see the others failed for being
// a little later. On a busy host the same rule keeps a stalled metadata
// server from failing servers one after another (one of them may hold a
// partition's only complete copy while its other copies recover).
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
  // its JOIN_OK. `was_fenced`: the process was declared failed while it ran
  // (JoinMsg::kWasFenced), a false suspicion: its timeout is widened and
  // the decision logged (FailureDetector::false_failover).
  void watch(uint32_t node, JoinOkMsg* join_ok, bool was_fenced = false);
  // A server left the map: no longer watched.
  void forget(uint32_t node);
  // A fabric error about `node` reported by a peer (a forward or a
  // replication write failed). Corroborated before it counts: the node is
  // suspected (on_suspect) at the first scan that finds its heartbeat old
  // enough (report_age()), which for a dead process comes well before its
  // timeout. A report whose node keeps heartbeating for one whole timeout
  // is dropped (logged): a link flap or the reporter's own trouble must not
  // fail over a live server.
  void report(uint32_t node, const std::string& reason);
  // Sets `node`'s fence word (replication/heartbeat.h): it was declared
  // failed at `epoch` and learns so at its next heartbeat.
  void fence(uint32_t node, uint64_t epoch);
  // Whether some watched node other than `node` is not suspected: false
  // means every server looks dead at once, which says more about this
  // metadata server's own connectivity than about them.
  bool others_alive(uint32_t node) const;
  // Whether `node` is watched and suspected now (false once a heartbeat
  // cleared the suspicion).
  bool suspected(uint32_t node) const;
  // Copies the detector's view of s->node_id into s's heartbeat fields.
  void fill(ServerStatus* s) const;
  // How long `node` may still hold a lease from its last heartbeat that
  // arrived (lease_length() minus the heartbeat's age; 0 when none can be
  // left, or for a node not watched). A caller failing a node over before
  // the detector would (an operator) waits this out first.
  std::chrono::microseconds lease_left(uint32_t node) const;

  // The lease a data server gets in JOIN_OK (replication/lease.h): half
  // the floor less one heartbeat interval. A server is declared failed at
  // the earliest when a corroborated report finds its heartbeat
  // report_age() old, and report_age() is at least half of a timeout that
  // is itself at least interval + floor: so the lease of a server that is
  // only paused or cut off has always run out before anyone is promoted in
  // its place. (It was three quarters of the floor, longer than the age at
  // which a report fails a server over: a paused primary could have served
  // a stale read for up to a quarter floor after its replacement.)
  static std::chrono::microseconds lease_length(std::chrono::microseconds floor,
                                                std::chrono::microseconds interval);
  // The heartbeat age at which a report about a node whose timeout is
  // `timeout` is corroborated: the larger of two intervals and half the
  // timeout (a loaded host delays live heartbeats by more than two
  // intervals often enough).
  static std::chrono::microseconds report_age(std::chrono::microseconds timeout,
                                              std::chrono::microseconds interval);

 private:
  FailureMonitor(Options o) : opts_(std::move(o)), detector_(opts_.detector) {}
  void run();
  void judge_reports(FailureDetector::Clock::time_point now,
                     std::vector<std::pair<uint32_t, std::string>>& suspects,
                     std::vector<std::string>& dropped);
  void log(const std::string& line) const;
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
  // REQUIRES mu_. Once someone is heard after a silence of everyone,
  // shortens the grace to fit that silence (see the .cc); appends the log
  // line to `lines`.
  void end_silence(FailureDetector::Clock::time_point now, std::vector<std::string>& lines);

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
  // The first scan of the current silence of everyone ({}: none); mu_.
  FailureDetector::Clock::time_point silent_since_{};
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace ftm::repl

#endif  // FTM_REPLICATION_FAILURE_MONITOR_H_
