// PeerLease: a primary's lease (replication/lease.h) renewed by its peers
// while the metadata server is cut off from everyone (issue 7: "cut off
// the metadata server: data keeps flowing").
//
// Without it, a metadata server that drops packets silently (not refused)
// acknowledges no heartbeat, and every primary stops one lease length
// later, although nobody can be failed over then: the metadata server
// declares nobody failed while it hears nobody (failure_monitor.h,
// "Isolation").
//
// Asking. A node whose newest acknowledged heartbeat is at least half a
// lease length old, and whose lease has less than half a length left, asks
// every other server its map lists as up (PeerRpc::kVouch, with its epoch).
// If all of them grant, it renews its lease for one length from the time
// it asked. One refusal or silence and it does not: its lease lapses as
// before, and requests wait for the new map or fail with "lease".
//
// Granting. A node grants iff it is in good standing (its own lease is
// required and not suspended by a fence), its map has the asker's epoch
// and lists the asker as up, and it too has had no heartbeat acknowledged
// for half a lease length: it does not hear the metadata server either. A
// primary cut off from the metadata server but not from its peers is thus
// refused (they hear it) and is failed over as before.
//
// Why a vouched node never serves beside its replacement. The metadata
// server can replace the asker only at a higher epoch. Every server of the
// asker's map that learned that epoch refuses from then on (epoch
// mismatch), so no renewal after that can succeed: the promoted secondary
// is among the up servers asked. A grant given before, at time g, covers
// the asker until at most g + length (it asked before g). So a node that
// installs a map in which a node it vouched for is no longer up waits
// until that time before following the map (hold_until, ClusterNode::
// on_map): the old primary has stopped before the new one serves. This
// assumes steady clocks run at the same rate on all servers (the leases'
// own assumption). It does not cover a replacement the asker's map does
// not list at all (joined after the asker's epoch and promoted with no
// complete copy left): that needs every complete copy lost as well.
//
// Thread-safety: all methods are safe for concurrent use. The asking
// thread sleeps one interval between looks; it sends nothing while the
// metadata server acknowledges heartbeats (the normal case).
#ifndef FTM_REPLICATION_PEER_LEASE_H_
#define FTM_REPLICATION_PEER_LEASE_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "replication/lease.h"
#include "replication/partition_map.h"

namespace ftm::repl {

class Membership;
class PeerMesh;

// The granting rule above as a pure function, for tests. Returns "" to
// grant, else the reason for refusing (logged by the asker).
//   standing:      this node's lease is required and not suspended
//   my_epoch:      epoch of this node's map (0: none yet)
//   asker_epoch:   the epoch the asker sent
//   asker_up:      this node's map lists the asker as up
//   since_ack:     since this node's newest acknowledged heartbeat was posted
//   length:        the lease length (a grant needs since_ack >= length / 2)
std::string vouch_refusal(bool standing, uint64_t my_epoch, uint64_t asker_epoch, bool asker_up,
                          std::chrono::microseconds since_ack, std::chrono::microseconds length);

// The grants a node gave and the newest epoch it follows: the part of
// PeerLease that keeps a vouched node from serving beside its replacement.
// Not synchronized (PeerLease holds its mutex around every call).
class VouchLedger {
 public:
  using Clock = Lease::Clock;
  // Judges a request from `asker` at `asker_epoch` by vouch_refusal (the
  // other arguments as there) at this ledger's epoch; records the grant at
  // `now`. Returns "" (granted) or the refusal.
  std::string judge(uint32_t asker, uint64_t asker_epoch, bool standing, bool asker_up,
                    std::chrono::microseconds since_ack, std::chrono::microseconds length,
                    Clock::time_point now);
  // Moves to `map`'s epoch (if newer) and forgets the grants to nodes it
  // does not list as up; returns when the last of those may lapse (grant
  // time + `length`), or the clock's epoch if none.
  Clock::time_point advance(const ClusterMap& map, std::chrono::microseconds length);
  uint64_t epoch() const { return epoch_; }
  uint64_t grants() const { return grants_; }

 private:
  uint64_t epoch_ = 0;
  std::map<uint32_t, Clock::time_point> granted_;  // newest grant per asker
  uint64_t grants_ = 0;
};

class PeerLease {
 public:
  using Clock = Lease::Clock;
  struct Options {
    Lease* lease = nullptr;            // required: the lease renewed and consulted
    PeerMesh* mesh = nullptr;          // required: kVouch calls and the handler
    // Between two looks at the lease (the asking thread's period).
    std::chrono::microseconds interval{5000};
    std::function<void(std::string_view)> log;
  };
  // Registers the kVouch handler on the mesh and starts the asking thread.
  explicit PeerLease(Options options);
  ~PeerLease();  // stop()
  PeerLease(const PeerLease&) = delete;
  PeerLease& operator=(const PeerLease&) = delete;
  // Stops the asking thread (waits for its calls). Idempotent. Grants keep
  // being answered (refused once the lease is suspended).
  void stop();
  // The membership whose map and node id are used (it is started after
  // this object, which its map callback reaches). Until then nothing is
  // asked and every request is refused.
  void attach(Membership* membership) { membership_.store(membership, std::memory_order_release); }

  // Called with every map this node follows, before it follows it: from
  // here on requests at an older epoch are refused. Returns the time until
  // which a node that `map` no longer lists as up may still serve on a
  // grant of ours (Clock epoch if none): the caller waits until then
  // before following the map.
  Clock::time_point advance(const ClusterMap& map);

 private:
  void run();
  bool ask_all(const ClusterMap& map, uint32_t self);
  void answer(uint32_t from, std::string_view payload, std::function<void(std::string_view)> respond);
  void log(const std::string& line) const;

  const Options opts_;
  std::atomic<Membership*> membership_{nullptr};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;                         // guarded by mu_
  VouchLedger ledger_;                        // guarded by mu_
  enum class Outcome { kNone, kRenewed, kRefused };
  Outcome outcome_ = Outcome::kNone;          // asking thread only: the last logged
  std::string last_refusal_;                  // asking thread only
  std::thread thread_;
};

}  // namespace ftm::repl

#endif  // FTM_REPLICATION_PEER_LEASE_H_
