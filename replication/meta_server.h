// The metadata server (ftmemcached-meta): the one place that decides the
// cluster map (DESIGN.md, "Failure detection and recovery"; issue 5).
//
// It listens on a fabric address, accepts control connections
// (replication/control_msg.h) from data servers and from ftmemcached-ctl,
// assigns node ids, recomputes placement (compute_placement) when a server
// joins, raises the epoch on every change, writes the new map to its state
// directory before anyone sees it, and then publishes it: JOIN_OK to the
// joiner, MAP to every other connected data server.
//
// Durability: the map lives in <state-dir>/cluster.map, replaced atomically
// (write cluster.map.tmp, fsync, rename, fsync the directory), so a crash
// leaves either the old or the new map, never a torn one. On start the map is
// reloaded with its epoch; data servers that reconnect JOIN with their node
// id, and the epoch only rises if something actually changed (e.g. a server's
// fabric address). <state-dir>/LOCK (flock) keeps a second meta server off
// the same directory.
//
// Failover (issue 6): the failure monitor (heartbeats, corroborated peer
// reports) suspects a server; declare_failed marks it failed, recomputes
// placement with keep_primaries (each of its partitions is promoted to a
// surviving secondary, survivors take its secondary roles), persists and
// publishes the new epoch, sets the server's fence word and closes its
// control connection. Never while no other server heartbeats either (this
// meta server is then more likely cut off than they are all dead; the
// failure monitor holds such a suspicion until another server is heard
// from, replication/failure_monitor.h). A node
// id declared failed comes back only with JoinMsg::kEmpty (anything else is
// refused with ErrorMsg::kFenced), as a new server holding secondaries
// only. A process restarted under a node id the map still holds as up (its
// JOIN says kEmpty) is the failure of the previous process: declared
// failed first, then joined.
//
// Replacements (issue 6): a server that JOINs with kSpare is listed as
// `spare` and holds nothing. On a failure the lowest-id connected spare
// becomes `up` and takes every secondary copy the failure left to be made
// (give_to_spare: the failed server's secondary roles and those vacated by
// promotions); the survivors keep exactly what they held. Without a spare
// the survivors take those roles (so every partition has two copies again
// as long as two servers live) and, if spawn_cmd is set, a replacement is
// started (replication/spawn.h) without waiting for it; it joins as a new
// server and takes its share of secondaries, which it recovers. A spare
// that was promoted stays `up` when it reconnects.
//
// Recovery state: a secondary copy assigned at epoch E counts as complete
// only once its server REPORTs at an epoch >= E without listing the
// partition (ReportMsg). Until then it is shown in STATUS (ServerStatus::
// recovering) and is promoted on a failure only when no complete copy of
// the partition survives. After a meta server restart, copies assigned
// before it count as complete unless a REPORT lists them.
//
// Sole copies: a server suspected while it holds the only complete copy of
// some partition (its other copies are still recovering, or gone) and
// while its control connection is open is not failed over at once: that
// would promote incomplete copies and lose acknowledged writes, and a
// timeout alone does not tell a dead process from a slow one (on a loaded
// host a live server's heartbeat gap can pass the floor). A dead process's
// connection closes (the kernel resets it), but so does a live server's
// whose heartbeat write timed out (it joins again at once): a connection
// closed for 2 s without a new one ends the hold. Otherwise it ends when
// its heartbeat comes back (a false suspicion: not failed), when another
// copy of each such partition completes, or after sole_copy_hold,
// whichever comes first; all but the heartbeat fail it over. Partitions it is primary of wait meanwhile (their
// requests get --failover-wait-ms, then SERVER_ERROR).
//
// Suspicion (SWIM's suspicion subprotocol, Das, Gupta and Motivala 2002,
// section 4.2): any other suspected server whose control connection is
// still open is declared failed only if it is still suspected
// suspicion_timeout later. A lost segment on a lossy or capped link stalls
// a heartbeat for tcp's retransmission timer (200 ms at least, doubling),
// past the detector's floor, while the server lives; its heartbeat then
// comes back (a false suspicion: not failed, its timeout widens). A
// crashed process's connection is closed by its kernel at once: a server
// whose connection is closed when suspected, or closes while suspected, is
// failed at once, so a SIGKILL still costs the detector's time only. A
// hung or cut-off server costs suspicion_timeout more.
//
// Bootstrap: while fewer than bootstrap_servers servers have ever joined,
// joins rebalance primaries (an empty cluster has nothing to hand over);
// afterwards placement keeps every live primary (compute_placement's
// keep_primaries), since moving one between live servers would need a
// handoff of the writes in flight.
//
// After a restart, servers in the loaded map that do not join again within
// restart_grace are watched by the detector (and so declared failed once
// silent past its timeout); the grace exceeds a data server's reconnect
// backoff, during which its lease is renewed by refused connections
// (replication/lease.h).
//
// Threads: one accepting, one per connection (reading its messages). All
// state is under one mutex; map changes are serialized, persisted under it,
// and sent after releasing it.
//
// Thread-safety: all public methods are safe for concurrent use.
#ifndef FTM_REPLICATION_META_SERVER_H_
#define FTM_REPLICATION_META_SERVER_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "rdma/fabric_domain.h"
#include "rdma/listener.h"
#include "replication/control_msg.h"
#include "replication/failure_monitor.h"
#include "replication/partition_map.h"
#include "replication/spawn.h"

namespace ftm::repl {

struct MetaServerOptions {
  std::string listen_host = "127.0.0.1";
  uint16_t listen_port = 11311;  // 0 = any free port (see port())
  std::string state_dir;         // required; created if missing
  // 0 = the value in the state dir, else the default (1024 partitions,
  // 2 copies). A --partitions different from the state dir's is refused
  // (P is fixed for the cluster's life); a different replica count is
  // applied (placement recomputed, epoch raised).
  uint32_t partitions = 0;
  uint32_t replicas = 0;
  // One line per event (join, map change, disconnect); default stderr.
  std::function<void(std::string_view)> log;
  bool verbose = false;  // also log every message received
  // Heartbeats (replication/heartbeat.h): the period data servers write
  // theirs at (0: none asked for, nobody is watched) and the failure
  // detector's smallest safety margin (replication/failure_detector.h).
  std::chrono::microseconds heartbeat_interval{5000};
  std::chrono::microseconds detector_floor{100000};
  // See "Bootstrap" and the restart rule above.
  uint32_t bootstrap_servers = 3;
  std::chrono::milliseconds restart_grace{3000};
  // --spawn-cmd: the replacement template (replication/spawn.h), "" = none.
  // Checked by start() (kInvalidArgument for an unknown placeholder).
  std::string spawn_cmd;
  // See "Sole copies" above; 0 = no hold.
  std::chrono::milliseconds sole_copy_hold{5000};
  // See "Suspicion" above; 0 = a suspected server is failed at once.
  std::chrono::milliseconds suspicion_timeout{1000};
};

// Writes `map` to <dir>/cluster.map atomically and durably (see above).
// Errors: kIo naming the file and the failing call.
ClusterStatus save_map(const std::string& dir, const ClusterMap& map);
// Reads <dir>/cluster.map. nullopt if there is none. Errors: kIo, or
// decode's kCorrupt/kVersion naming the file.
ClusterResult<std::optional<ClusterMap>> load_map(const std::string& dir);

class MetaServer {
 public:
  // Takes the state dir's lock, loads or creates the map, starts listening
  // and accepting. `fabric` must outlive the server. Errors:
  // kInvalidArgument (bad option, partitions conflicting with the state
  // dir), kIo (state dir unusable or locked by another meta server),
  // kUnavailable (cannot listen; message has the address).
  static ClusterResult<std::unique_ptr<MetaServer>> start(
      rdma::Fabric& fabric, MetaServerOptions options);
  ~MetaServer();  // stop()
  MetaServer(const MetaServer&) = delete;
  MetaServer& operator=(const MetaServer&) = delete;

  // The fabric port listened on.
  uint16_t port() const { return port_; }
  // The current map (never null).
  std::shared_ptr<const ClusterMap> map() const;
  // What STATUS answers (map + per-server connection info).
  StatusMsg status() const;
  // Fails `node` over (after its lease from the last heartbeat, if any, ran
  // out: FailureMonitor::lease_left), as the failure monitor's verdict does (its scan
  // thread calls this; tests and operators may too): marks it failed in a
  // new epoch (its partitions go to their secondaries), persists and
  // publishes the map, fences the node and closes its control connection.
  // `reason` is logged. Does nothing for an unknown or already failed node,
  // or while the meta server stops. If the map cannot be persisted, logs
  // that and leaves the map as it was.
  void declare_failed(uint32_t node, const std::string& reason);
  // The failure monitor's verdict on `node` (its scan thread calls this;
  // tests may too): declare_failed, unless the "Sole copies" or the
  // "Suspicion" rule above holds it, which is logged with the reason.
  void on_suspect(uint32_t node, const std::string& reason);
  // Closes every connection and stops the threads. Idempotent. The map on
  // disk is already current (every change was persisted before publishing).
  void stop();

 private:
  struct Session;
  struct Member {
    bool connected = false;
    std::chrono::steady_clock::time_point since;
    std::string peer;
    std::weak_ptr<Session> session;
    std::string replication = "n/a";  // its last REPORT
    uint64_t report_epoch = 0;        // that REPORT's epoch
    std::vector<uint32_t> recovering;  // and its incomplete partitions (sorted)
  };

  MetaServer() = default;
  void accept_loop();
  void serve(const std::shared_ptr<Session>& s);
  void handle_join(const std::shared_ptr<Session>& s, const JoinMsg& m,
                   uint32_t seq);
  // REQUIRES mu_. Marks `node` failed in a new epoch, handing its roles to
  // a spare if one is connected (*used_spare = its id, else 0); false if
  // the map could not be persisted. Sets the fence word.
  bool fail_locked(uint32_t node, const std::string& why, uint32_t* used_spare = nullptr);
  // REQUIRES mu_. Whether node's copy of p is still incomplete (see
  // "Recovery state" above).
  bool incomplete_locked(uint32_t p, uint32_t node) const;
  // REQUIRES mu_. Partitions `node` (up) is primary of while none of
  // their secondaries is complete: failing it over would lose writes.
  uint32_t sole_copies_locked(uint32_t node) const;
  // Connected, or disconnected too recently to be presumed dead (see
  // kReconnectGrace in meta_server.cc).
  static bool reconnecting_or_connected(const Member& m);
  // Ends the holds whose time has come (see "Sole copies" and
  // "Suspicion"); the accept thread calls it every accept timeout (100 ms).
  void judge_holds();
  // REQUIRES: mu_ held. Why the hold `h` on `node` ends at `now` with a
  // failure; "" while it goes on.
  struct Hold;
  std::string hold_verdict_locked(uint32_t node, const Hold& h,
                                  std::chrono::steady_clock::time_point now) const;
  // REQUIRES mu_. The placement for `next`'s servers (compute_placement
  // with this server's rules and incomplete copies).
  ClusterMap place_locked(const ClusterMap& next) const;
  // REQUIRES mu_. The lowest-id connected spare, 0 if none.
  uint32_t spare_locked() const;
  // Runs spawn_cmd for the failed server `failed` (its entry in the map).
  void spawn_replacement(const ServerInfo& failed);
  // REQUIRES mu_. Whether placement must keep live primaries in place.
  bool keep_primaries_locked() const;
  // REQUIRES mu_. Joined sessions other than `except`, for publishing.
  std::vector<std::shared_ptr<Session>> others_locked(const Session* except) const;
  void publish(const std::vector<std::shared_ptr<Session>>& to,
               const std::shared_ptr<const ClusterMap>& map);
  // Once, restart_grace after start: watch loaded servers that never came
  // back.
  void watch_absent();
  // REQUIRES mu_. Persists and installs `next` with epoch + 1 if it differs
  // from the current map; returns false (and logs) if persisting failed.
  bool commit_locked(ClusterMap next, const std::string& why);
  void reap_sessions(bool all);
  void log(const std::string& line) const;

  rdma::Fabric* fabric_ = nullptr;
  MetaServerOptions opts_;
  std::unique_ptr<rdma::Listener> listener_;
  uint16_t port_ = 0;
  int lock_fd_ = -1;
  std::chrono::steady_clock::time_point started_;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;

  mutable std::mutex mu_;
  ClusterMap map_{1, 1};  // guarded by mu_
  std::shared_ptr<const ClusterMap> current_;  // guarded by mu_
  std::vector<std::shared_ptr<Session>> sessions_;  // guarded by mu_
  std::map<uint32_t, Member> members_;  // by node id, guarded by mu_
  // Per node: the epoch at which it became a holder of each partition (0:
  // before this meta server started); guarded by mu_.
  std::map<uint32_t, std::vector<uint64_t>> assigned_at_;
  struct Hold {
    std::string reason;
    std::chrono::steady_clock::time_point since;
  };
  std::map<uint32_t, Hold> holds_;  // suspects not failed yet; mu_
  std::unique_ptr<FailureMonitor> monitor_;  // null with heartbeat_interval 0
  std::unique_ptr<Spawner> spawner_;         // null without spawn_cmd
  bool absent_watched_ = false;  // accept thread only
};

}  // namespace ftm::repl

#endif  // FTM_REPLICATION_META_SERVER_H_
