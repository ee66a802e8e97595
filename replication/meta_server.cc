// The metadata server (see meta_server.h).
#include "replication/meta_server.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>

namespace ftm::repl {

namespace {

constexpr const char* kMapFile = "cluster.map";
constexpr const char* kTmpFile = "cluster.map.tmp";
// Data servers and ctl send only small messages to the meta server; the
// largest is a REPORT listing every partition (kMaxPartitions x 4 bytes).
constexpr size_t kMetaRecvSize = 128 * 1024;
constexpr int kMetaRecvDepth = 4;

ClusterStatus io_error(const std::string& what, const std::string& path) {
  return ClusterStatus(ClusterErrc::kIo,
                       what + " " + path + ": " + std::strerror(errno));
}

bool write_all(int fd, const std::byte* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= size_t(w);
  }
  return true;
}

uint64_t ms_since(std::chrono::steady_clock::time_point t) {
  return uint64_t(std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - t)
                      .count());
}

}  // namespace

ClusterStatus save_map(const std::string& dir, const ClusterMap& map) {
  std::string tmp = dir + "/" + kTmpFile, dst = dir + "/" + kMapFile;
  std::vector<std::byte> bytes = map.encode();
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return io_error("open", tmp);
  if (!write_all(fd, bytes.data(), bytes.size())) {
    auto st = io_error("write", tmp);
    ::close(fd);
    return st;
  }
  if (::fsync(fd) != 0) {
    auto st = io_error("fsync", tmp);
    ::close(fd);
    return st;
  }
  if (::close(fd) != 0) return io_error("close", tmp);
  if (::rename(tmp.c_str(), dst.c_str()) != 0) return io_error("rename", tmp);
  // The rename is durable only once the directory entry is.
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return io_error("open", dir);
  int rc = ::fsync(dfd);
  ::close(dfd);
  if (rc != 0) return io_error("fsync", dir);
  return {};
}

ClusterResult<std::optional<ClusterMap>> load_map(const std::string& dir) {
  std::string path = dir + "/" + kMapFile;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::optional<ClusterMap>();
    return io_error("open", path);
  }
  std::vector<std::byte> bytes;
  std::byte buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      auto st = io_error("read", path);
      ::close(fd);
      return st;
    }
    if (n == 0) break;
    bytes.insert(bytes.end(), buf, buf + n);
    if (bytes.size() > kMaxMessageSize) break;  // decode refuses it
  }
  ::close(fd);
  auto m = ClusterMap::decode(bytes);
  if (!m)
    return ClusterStatus(m.status().code(),
                         path + ": " + m.status().message());
  return std::optional<ClusterMap>(std::move(m).value());
}

struct MetaServer::Session {
  std::unique_ptr<ControlChannel> ch;
  std::string peer;
  std::thread thread;
  std::atomic<bool> done{false};
  uint32_t node_id = 0;  // after JOIN; guarded by MetaServer::mu_
};

ClusterResult<std::unique_ptr<MetaServer>> MetaServer::start(
    rdma::Fabric& fabric, MetaServerOptions opts) {
  if (opts.state_dir.empty())
    return ClusterStatus(ClusterErrc::kInvalidArgument,
                         "--state-dir: a state directory is required");
  if (opts.partitions > ClusterMap::kMaxPartitions)
    return ClusterStatus(ClusterErrc::kInvalidArgument,
                         "--partitions: at most " +
                             std::to_string(ClusterMap::kMaxPartitions));
  if (opts.replicas > ClusterMap::kMaxReplicas)
    return ClusterStatus(ClusterErrc::kInvalidArgument,
                         "--replicas: between 1 and " +
                             std::to_string(ClusterMap::kMaxReplicas));
  if (!opts.spawn_cmd.empty())
    if (auto t = expand_spawn_template(opts.spawn_cmd, SpawnVars{}); !t) return t.status();
  std::unique_ptr<MetaServer> ms(new MetaServer());
  ms->fabric_ = &fabric;
  ms->opts_ = std::move(opts);
  const std::string& dir = ms->opts_.state_dir;

  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    return ClusterStatus(ClusterErrc::kIo,
                         "cannot create state dir " + dir + ": " +
                             ec.message());
  std::string lock = dir + "/LOCK";
  ms->lock_fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (ms->lock_fd_ < 0) return io_error("open", lock);
  if (::flock(ms->lock_fd_, LOCK_EX | LOCK_NB) != 0)
    return ClusterStatus(ClusterErrc::kIo,
                         "state dir " + dir +
                             " is in use by another ftmemcached-meta (" +
                             lock + " is locked)");

  auto loaded = load_map(dir);
  if (!loaded) return loaded.status();
  uint32_t want_r = ms->opts_.replicas;
  if (loaded->has_value()) {
    ClusterMap& m = **loaded;
    if (ms->opts_.partitions && ms->opts_.partitions != m.partitions())
      return ClusterStatus(
          ClusterErrc::kInvalidArgument,
          "--partitions " + std::to_string(ms->opts_.partitions) +
              " conflicts with the " + std::to_string(m.partitions()) +
              " partitions of the cluster in " + dir +
              " (fixed for the cluster's life)");
    ms->map_ = m;
    ms->log("ftmemcached-meta: loaded map epoch " + std::to_string(m.epoch()) +
            " (" + std::to_string(m.servers().size()) + " servers, " +
            std::to_string(m.partitions()) + " partitions, " +
            std::to_string(m.replicas()) + " copies) from " + dir);
    if (want_r && want_r != m.replicas()) {
      std::lock_guard g(ms->mu_);
      if (!ms->commit_locked(compute_placement(m, want_r),
                             "--replicas changed to " +
                                 std::to_string(want_r)))
        return ClusterStatus(ClusterErrc::kIo,
                             "cannot persist the map in " + dir);
    }
  } else {
    ms->map_ = ClusterMap(ms->opts_.partitions ? ms->opts_.partitions
                                               : ClusterMap::kDefaultPartitions,
                          want_r ? want_r : 2);
    // Persisted at once so the partition count is fixed from now on.
    if (auto st = save_map(dir, ms->map_); !st) return st;
    ms->log("ftmemcached-meta: new cluster in " + dir + ": " +
            std::to_string(ms->map_.partitions()) + " partitions, " +
            std::to_string(ms->map_.replicas()) + " copies");
  }
  ms->current_ = std::make_shared<const ClusterMap>(ms->map_);

  auto l = fabric.listen(ms->opts_.listen_host, ms->opts_.listen_port);
  if (!l)
    return ClusterStatus(ClusterErrc::kUnavailable,
                         "--listen " + ms->opts_.listen_host + ":" +
                             std::to_string(ms->opts_.listen_port) + ": " +
                             l.status().to_string());
  ms->listener_ = std::move(l).value();
  ms->port_ = ms->listener_->port();
  if (ms->opts_.heartbeat_interval.count() > 0) {
    FailureMonitor::Options fo;
    fo.heartbeat_interval = ms->opts_.heartbeat_interval;
    fo.detector.floor = ms->opts_.detector_floor;
    fo.detector.initial_interval = ms->opts_.heartbeat_interval;
    fo.detector.first_heartbeat = std::chrono::seconds(1);  // see its comment
    fo.isolation_grace = ms->opts_.restart_grace;
    fo.max_node = ClusterMap::kMaxServers;
    fo.log = [p = ms.get()](std::string_view line) { p->log(std::string(line)); };
    fo.on_suspect = [p = ms.get()](uint32_t node, const std::string& reason) {
      p->on_suspect(node, reason);
    };
    auto m = FailureMonitor::start(fabric, std::move(fo));
    if (!m)
      return ClusterStatus(ClusterErrc::kUnavailable,
                           "heartbeat array: " + m.status().to_string());
    ms->monitor_ = std::move(m).value();
  }
  if (!ms->opts_.spawn_cmd.empty())
    ms->spawner_ = std::make_unique<Spawner>(
        [p = ms.get()](const std::string& line) { p->log("ftmemcached-meta: " + line); });
  ms->started_ = std::chrono::steady_clock::now();
  ms->acceptor_ = std::thread([p = ms.get()] { p->accept_loop(); });
  return ms;
}

MetaServer::~MetaServer() {
  stop();
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

void MetaServer::stop() {
  if (stopping_.exchange(true)) return;
  if (acceptor_.joinable()) acceptor_.join();
  {
    std::lock_guard g(mu_);
    for (auto& s : sessions_) s->ch->close();
  }
  reap_sessions(true);
  if (monitor_) monitor_->stop();
  listener_.reset();
}

void MetaServer::log(const std::string& line) const {
  if (opts_.log)
    opts_.log(line);
  else
    std::fprintf(stderr, "%s\n", line.c_str());
}

std::shared_ptr<const ClusterMap> MetaServer::map() const {
  std::lock_guard g(mu_);
  return current_;
}

StatusMsg MetaServer::status() const {
  std::lock_guard g(mu_);
  StatusMsg st;
  st.map = map_;
  st.meta_uptime_ms = ms_since(started_);
  st.meta_state_dir = opts_.state_dir;
  for (const ServerInfo& s : map_.servers()) {
    ServerStatus ss;
    ss.node_id = s.id;
    auto it = members_.find(s.id);
    if (it != members_.end()) {
      ss.connected = it->second.connected;
      ss.since_ms = ms_since(it->second.since);
      ss.peer = it->second.peer;
      if (it->second.connected) ss.replication = it->second.replication;
    } else {
      ss.since_ms = st.meta_uptime_ms;  // not seen since this meta started
    }
    for (uint32_t p = 0; p < map_.partitions(); p++) {
      auto sec = map_.secondaries(p);
      if (std::find(sec.begin(), sec.end(), s.id) != sec.end() && incomplete_locked(p, s.id))
        ss.recovering.push_back(p);
    }
    if (monitor_) monitor_->fill(&ss);
    st.servers.push_back(std::move(ss));
  }
  return st;
}

void MetaServer::accept_loop() {
  while (!stopping_.load()) {
    // Short accept timeouts double as the reaping period and keep stop()
    // prompt.
    auto c = listener_->accept(std::chrono::milliseconds(100));
    reap_sessions(false);
    watch_absent();
    judge_holds();
    if (spawner_) spawner_->reap();
    if (!c) {
      // kTimeout, or a connector that went away; a refused proof of the
      // cluster secret is logged.
      if (c.status().code() == rdma::Code::kAuthFailed)
        log("ftmemcached-meta: refused a connection: " + c.status().to_string());
      continue;
    }
    std::string peer = (*c)->peer();
    auto ch = ControlChannel::open(*fabric_, std::move(c).value(),
                                   kMetaRecvSize, kMetaRecvDepth);
    if (!ch) {
      log("ftmemcached-meta: " + ch.status().to_string());
      continue;
    }
    auto s = std::make_shared<Session>();
    s->ch = std::move(ch).value();
    s->peer = peer;
    if (opts_.verbose) log("ftmemcached-meta: connection from " + peer);
    std::lock_guard g(mu_);
    sessions_.push_back(s);
    s->thread = std::thread([this, s] { serve(s); });
  }
}

void MetaServer::reap_sessions(bool all) {
  std::vector<std::shared_ptr<Session>> finished;
  {
    std::lock_guard g(mu_);
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      if (all || (*it)->done.load()) {
        finished.push_back(*it);
        it = sessions_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& s : finished)
    if (s->thread.joinable()) s->thread.join();
}

void MetaServer::serve(const std::shared_ptr<Session>& s) {
  for (;;) {
    auto env = s->ch->receive();
    if (!env) {
      if (env.status().code() == ClusterErrc::kUnavailable) break;
      // Garbage: say why, then drop the peer; it is not speaking our
      // protocol (or not this version of it).
      log("ftmemcached-meta: from " + s->peer + ": " +
          env.status().to_string());
      (void)s->ch->send(ErrorMsg{ErrorMsg::kBadRequest,
                                 env.status().to_string()});
      break;
    }
    if (opts_.verbose)
      log(std::string("ftmemcached-meta: ") + msg_name(env->msg) + " from " +
          s->peer);
    if (auto* j = std::get_if<JoinMsg>(&env->msg)) {
      handle_join(s, *j, env->seq);
    } else if (auto* rp = std::get_if<ReportMsg>(&env->msg)) {
      std::lock_guard g(mu_);
      auto it = s->node_id ? members_.find(s->node_id) : members_.end();
      if (it != members_.end() && it->second.session.lock() == s) {
        it->second.replication = rp->replication;
        it->second.report_epoch = rp->epoch;
        it->second.recovering = rp->recovering;
      }
    } else if (auto* su = std::get_if<SuspectMsg>(&env->msg)) {
      uint32_t from;
      {
        std::lock_guard g(mu_);
        from = s->node_id;
      }
      if (monitor_ && from != 0 && su->node_id != from)
        monitor_->report(su->node_id,
                         "node " + std::to_string(from) + " reports: " + su->reason);
    } else if (std::holds_alternative<StatusReqMsg>(env->msg)) {
      (void)s->ch->send(status(), env->seq);
    } else {
      (void)s->ch->send(
          ErrorMsg{ErrorMsg::kBadRequest,
                   std::string("unexpected ") + msg_name(env->msg) +
                       " (the meta server accepts JOIN and STATUS_REQ)"},
          env->seq);
    }
  }
  s->ch->close();
  {
    std::lock_guard g(mu_);
    if (s->node_id) {
      auto it = members_.find(s->node_id);
      if (it != members_.end() && it->second.session.lock() == s) {
        it->second.connected = false;
        it->second.since = std::chrono::steady_clock::now();
        it->second.session.reset();
        log("ftmemcached-meta: node " + std::to_string(s->node_id) +
            " disconnected (" + s->peer + "); it stays in the map");
      }
    }
  }
  s->done.store(true);
}

bool MetaServer::commit_locked(ClusterMap next, const std::string& why) {
  next.set_epoch(map_.epoch());
  if (next == map_) return true;
  next.set_epoch(map_.epoch() + 1);
  if (auto st = save_map(opts_.state_dir, next); !st) {
    log("ftmemcached-meta: NOT changing the map (" + why +
        "): " + st.to_string());
    return false;
  }
  PlacementDelta d = placement_delta(map_, next);
  for (uint32_t p = 0; p < next.partitions(); p++)
    for (uint32_t id : next.replicas_of(p))
      if (!map_.holds(p, id) || map_.partitions() != next.partitions()) {
        auto& at = assigned_at_[id];
        if (at.size() != next.partitions()) at.assign(next.partitions(), 0);
        at[p] = next.epoch();
      }
  map_ = std::move(next);
  current_ = std::make_shared<const ClusterMap>(map_);
  log("ftmemcached-meta: epoch " + std::to_string(map_.epoch()) + ": " + why +
      " (" + std::to_string(d.moved_primaries) + " primaries and " +
      std::to_string(d.new_secondaries) + " secondaries moved)");
  return true;
}

void MetaServer::handle_join(const std::shared_ptr<Session>& s,
                             const JoinMsg& m, uint32_t seq) {
  std::vector<std::shared_ptr<Session>> others;
  std::shared_ptr<const ClusterMap> published;
  uint32_t id = m.node_id;
  {
    std::unique_lock g(mu_);
    auto refuse = [&](uint16_t code, std::string text) {
      g.unlock();
      log("ftmemcached-meta: refused JOIN from " + s->peer + ": " + text);
      (void)s->ch->send(ErrorMsg{code, std::move(text)}, seq);
    };
    if (s->node_id) return refuse(ErrorMsg::kBadRequest, "already joined");
    if (m.memcached_addr.empty() || m.fabric_addr.empty())
      return refuse(ErrorMsg::kBadRequest,
                    "JOIN needs a memcached and a fabric address");
    if (id == 0) id = map_.next_node_id();
    auto it = members_.find(id);
    if (it != members_.end() && it->second.session.lock())
      return refuse(ErrorMsg::kNodeBusy,
                    "node id " + std::to_string(id) +
                        " is already connected from " + it->second.peer);
    const ServerInfo* old = map_.server(id);
    if (!old && map_.servers().size() >= ClusterMap::kMaxServers)
      return refuse(ErrorMsg::kFull, "the cluster has the maximum of " +
                                         std::to_string(ClusterMap::kMaxServers) +
                                         " servers");
    const bool empty = m.flags & JoinMsg::kEmpty;
    if (old && old->state == ServerState::kFailed && !empty)
      return refuse(ErrorMsg::kFenced,
                    "node " + std::to_string(id) +
                        " was declared failed; it must drop its data and join again empty");
    if (old && old->state == ServerState::kUp && empty &&
        map_.primary_count(id) + map_.secondary_count(id) > 0) {
      // A new process under an id that holds partitions: the old process's
      // data is gone, which is its failure.
      if (!fail_locked(id, "node " + std::to_string(id) +
                               " restarted empty (its previous process and data are gone)"))
        return refuse(ErrorMsg::kInternal,
                      "the meta server cannot persist the map in " + opts_.state_dir);
      old = map_.server(id);
    }
    // A spare that was given roles stays up when it reconnects.
    const bool spare = (m.flags & JoinMsg::kSpare) &&
                       !(old && old->state == ServerState::kUp);
    ServerInfo info{id, m.memcached_addr, m.fabric_addr,
                    spare ? ServerState::kSpare : ServerState::kUp};
    // A spare keeps its role until promoted; a failed node comes back as
    // a new server, with secondaries only (keep_primaries).
    std::string why;
    if (!old)
      why = "node " + std::to_string(id) + " joined as " + state_name(info.state) + " (" +
            m.memcached_addr + ", fabric " + m.fabric_addr + ")";
    else if (old->state == ServerState::kFailed)
      why = "node " + std::to_string(id) + " rejoined empty as a new server";
    else if (!(*old == info))
      why = "node " + std::to_string(id) + " re-registered with new addresses or state";
    if (!why.empty()) {
      ClusterMap next = map_;
      next.upsert_server(info);
      if (!commit_locked(place_locked(next), why))
        return refuse(ErrorMsg::kInternal,
                      "the meta server cannot persist the map in " +
                          opts_.state_dir);
      others = others_locked(s.get());
    } else {
      log("ftmemcached-meta: node " + std::to_string(id) + " reconnected (" +
          s->peer + "), map unchanged at epoch " +
          std::to_string(map_.epoch()));
    }
    s->node_id = id;
    Member joined;  // a new session: no REPORT heard yet
    auto prev = members_.find(id);
    if (!empty && prev != members_.end()) {
      // The same process reconnecting: its copies are as it last reported.
      joined.report_epoch = prev->second.report_epoch;
      joined.recovering = prev->second.recovering;
    }
    joined.connected = true;
    joined.since = std::chrono::steady_clock::now();
    joined.peer = s->peer;
    joined.session = s;
    members_[id] = std::move(joined);
    published = current_;
  }
  JoinOkMsg ok;
  ok.node_id = id;
  ok.map = *published;
  if (monitor_) monitor_->watch(id, &ok, (m.flags & JoinMsg::kWasFenced) != 0);
  (void)s->ch->send(ok, seq);
  publish(others, published);
}

void MetaServer::publish(const std::vector<std::shared_ptr<Session>>& to,
                         const std::shared_ptr<const ClusterMap>& map) {
  // Sent outside the lock: a slow peer must not stall other joins. A peer
  // may thus see two maps out of order; receivers keep the highest epoch.
  for (auto& o : to) {
    if (auto st = o->ch->send(MapMsg{*map}); !st)
      log("ftmemcached-meta: publishing epoch " + std::to_string(map->epoch()) +
          " to node " + std::to_string(o->node_id) + ": " + st.to_string());
  }
}

std::vector<std::shared_ptr<MetaServer::Session>> MetaServer::others_locked(
    const Session* except) const {
  std::vector<std::shared_ptr<Session>> out;
  for (auto& o : sessions_)
    if (o.get() != except && o->node_id && !o->done.load()) out.push_back(o);
  return out;
}

bool MetaServer::keep_primaries_locked() const {
  return map_.servers().size() >= opts_.bootstrap_servers;
}

bool MetaServer::incomplete_locked(uint32_t p, uint32_t node) const {
  auto at = assigned_at_.find(node);
  auto m = members_.find(node);
  const uint64_t reported = m == members_.end() ? 0 : m->second.report_epoch;
  if (at != assigned_at_.end() && p < at->second.size() && at->second[p] > reported) return true;
  if (m == members_.end()) return false;
  const auto& r = m->second.recovering;
  return std::binary_search(r.begin(), r.end(), p);
}

ClusterMap MetaServer::place_locked(const ClusterMap& next) const {
  return compute_placement(next, map_.replicas(), keep_primaries_locked(),
                           [this](uint32_t p, uint32_t n) { return incomplete_locked(p, n); });
}

uint32_t MetaServer::spare_locked() const {
  for (const ServerInfo& s : map_.servers()) {
    if (s.state != ServerState::kSpare) continue;
    auto it = members_.find(s.id);
    if (it != members_.end() && it->second.connected) return s.id;
  }
  return 0;
}

bool MetaServer::fail_locked(uint32_t node, const std::string& why, uint32_t* used_spare) {
  if (used_spare) *used_spare = 0;
  const ServerInfo* s = map_.server(node);
  if (s == nullptr || s->state == ServerState::kFailed) return true;
  ServerInfo info = *s;
  info.state = ServerState::kFailed;
  ClusterMap next = map_;
  next.upsert_server(info);
  ClusterMap placed = place_locked(next);
  std::string reason = why;
  if (uint32_t spare = spare_locked(); spare != 0) {
    uint32_t taken = give_to_spare(map_, &placed, spare);
    if (taken == 0) {
      // Nothing left to copy among the survivors (too few of them for the
      // copies wanted): the spare joins the placement as an up server.
      ServerInfo up = *next.server(spare);
      up.state = ServerState::kUp;
      next.upsert_server(up);
      placed = place_locked(next);
    }
    reason += "; spare node " + std::to_string(spare) + " takes " +
              (taken ? std::to_string(taken) + " copies" : std::string("its share"));
    if (used_spare) *used_spare = spare;
  }
  if (!commit_locked(std::move(placed), reason)) {
    if (used_spare) *used_spare = 0;
    return false;
  }
  assigned_at_.erase(node);
  if (monitor_) {
    monitor_->fence(node, map_.epoch());
    monitor_->forget(node);
  }
  return true;
}

// A data server whose heartbeat write times out tears its connection down
// and joins again after 50, 100, 200, 400, 800 ms (Membership's backoff),
// so a closed connection proves a dead process only after this long.
constexpr std::chrono::milliseconds kReconnectGrace{2000};

bool MetaServer::reconnecting_or_connected(const Member& m) {
  return m.connected || std::chrono::steady_clock::now() - m.since < kReconnectGrace;
}

uint32_t MetaServer::sole_copies_locked(uint32_t node) const {
  const ServerInfo* me = map_.server(node);
  if (me == nullptr || me->state != ServerState::kUp) return 0;
  // A primary's copy is the one writes go to: complete by definition (one
  // promoted from an incomplete copy was the best left). So a node holds
  // a partition's only complete copy when it is the primary and none of
  // the secondaries has finished recovering.
  uint32_t sole = 0;
  for (uint32_t p = 0; p < map_.partitions(); ++p) {
    if (map_.primary(p) != node) continue;
    bool other = false;
    for (uint32_t h : map_.secondaries(p)) {
      const ServerInfo* s = map_.server(h);
      if (s != nullptr && s->state == ServerState::kUp && !incomplete_locked(p, h)) {
        other = true;
        break;
      }
    }
    if (!other) ++sole;
  }
  return sole;
}

void MetaServer::on_suspect(uint32_t node, const std::string& reason) {
  {
    std::lock_guard g(mu_);
    if (holds_.count(node)) return;
    auto m = members_.find(node);
    const bool connected = m != members_.end() && m->second.connected;
    const bool reachable = m != members_.end() && reconnecting_or_connected(m->second);
    const uint32_t sole = reachable && opts_.sole_copy_hold.count() > 0 ? sole_copies_locked(node) : 0;
    const std::string head =
        "ftmemcached-meta: NOT declaring node " + std::to_string(node) + " failed yet (" + reason + "): ";
    if (sole > 0) {
      holds_[node] = Hold{reason, std::chrono::steady_clock::now()};
      log(head + "it holds the only complete copy of " + std::to_string(sole) +
          " partitions and its control connection is open (or closed less than " +
          std::to_string(kReconnectGrace.count()) + " ms ago); waiting up to " +
          std::to_string(opts_.sole_copy_hold.count()) +
          " ms for its heartbeat, its connection to close or another copy to complete");
      return;
    }
    if (connected && opts_.suspicion_timeout.count() > 0) {
      holds_[node] = Hold{reason, std::chrono::steady_clock::now()};
      log(head + "its control connection is open; waiting up to " +
          std::to_string(opts_.suspicion_timeout.count()) +
          " ms for its heartbeat or its connection to close");
      return;
    }
  }
  declare_failed(node, reason);
}

std::string MetaServer::hold_verdict_locked(uint32_t node, const Hold& h,
                                            std::chrono::steady_clock::time_point now) const {
  auto m = members_.find(node);
  if (opts_.sole_copy_hold.count() > 0 && sole_copies_locked(node) > 0) {
    if (m == members_.end() || !reconnecting_or_connected(m->second))
      return "; its control connection closed and it did not reconnect within " +
             std::to_string(kReconnectGrace.count()) + " ms";
    if (now - h.since >= opts_.sole_copy_hold)
      return "; still suspected after the " + std::to_string(opts_.sole_copy_hold.count()) +
             " ms sole-copy hold";
    return "";
  }
  // No sole copies (any more): the suspicion rule.
  if (m == members_.end() || !m->second.connected) return "; its control connection closed";
  if (opts_.suspicion_timeout.count() == 0) return "; its partitions have other complete copies now";
  if (now - h.since >= opts_.suspicion_timeout)
    return "; still suspected after the " + std::to_string(opts_.suspicion_timeout.count()) +
           " ms suspicion timeout";
  return "";
}

void MetaServer::judge_holds() {
  std::vector<std::pair<uint32_t, std::string>> fail;
  {
    std::lock_guard g(mu_);
    const auto now = std::chrono::steady_clock::now();
    for (auto it = holds_.begin(); it != holds_.end();) {
      const uint32_t node = it->first;
      const Hold& h = it->second;
      const ServerInfo* s = map_.server(node);
      std::string why;
      if (s == nullptr || s->state != ServerState::kUp) {
        // Failed (or gone) by another path: nothing to decide.
      } else if (monitor_ && !monitor_->suspected(node)) {
        log("ftmemcached-meta: node " + std::to_string(node) +
            " heartbeats again: not declared failed (" + h.reason + ")");
      } else if (why = hold_verdict_locked(node, h, now); why.empty()) {
        ++it;
        continue;
      }
      if (!why.empty()) fail.emplace_back(node, h.reason + why);
      it = holds_.erase(it);
    }
  }
  for (auto& [node, reason] : fail) declare_failed(node, reason);
}

void MetaServer::declare_failed(uint32_t node, const std::string& reason) {
  // The detector's verdicts come after the node's lease ran out; a call
  // made sooner (an operator, a test) waits it out, so a live node stops
  // serving before anyone is promoted in its place.
  if (monitor_) std::this_thread::sleep_for(monitor_->lease_left(node));
  std::vector<std::shared_ptr<Session>> others;
  std::shared_ptr<Session> victim;
  std::shared_ptr<const ClusterMap> published;
  std::optional<ServerInfo> replace;
  {
    std::lock_guard g(mu_);
    if (stopping_.load()) return;
    const ServerInfo* s = map_.server(node);
    if (s == nullptr || s->state == ServerState::kFailed) return;
    if (monitor_ && !monitor_->others_alive(node)) {
      log("ftmemcached-meta: NOT declaring node " + std::to_string(node) +
          " failed: no other server heartbeats either (is this meta server cut off?)");
      return;
    }
    uint32_t spare = 0;
    if (!fail_locked(node, "node " + std::to_string(node) + " declared failed: " + reason,
                     &spare))
      return;
    if (spare == 0 && spawner_) replace = *map_.server(node);
    auto it = members_.find(node);
    if (it != members_.end()) victim = it->second.session.lock();
    others = others_locked(victim.get());
    published = current_;
  }
  // The fence word tells a paused server at its next heartbeat; closing the
  // connection makes it rejoin (refused until it comes back empty).
  if (victim) victim->ch->close();
  publish(others, published);
  if (replace) spawn_replacement(*replace);
}

void MetaServer::spawn_replacement(const ServerInfo& failed) {
  SpawnVars v;
  v.node_id = failed.id;
  v.meta_addr = opts_.listen_host + ":" + std::to_string(port_);
  v.memcached_addr = failed.memcached_addr;
  v.fabric_addr = failed.fabric_addr;
  auto cmd = expand_spawn_template(opts_.spawn_cmd, v);  // checked by start()
  const std::string what = "replacement for node " + std::to_string(failed.id);
  if (!cmd) {
    log("ftmemcached-meta: " + what + ": " + cmd.status().to_string());
    return;
  }
  if (auto pid = spawner_->run(*cmd, what); !pid)
    log("ftmemcached-meta: " + what + ": " + pid.status().to_string());
}

void MetaServer::watch_absent() {
  if (absent_watched_ || !monitor_ ||
      std::chrono::steady_clock::now() - started_ < opts_.restart_grace)
    return;
  absent_watched_ = true;
  std::lock_guard g(mu_);
  for (const ServerInfo& s : map_.servers())
    if (s.state == ServerState::kUp && !members_.count(s.id)) {
      log("ftmemcached-meta: node " + std::to_string(s.id) + " has not rejoined within " +
          std::to_string(opts_.restart_grace.count()) + " ms of this restart; watching it");
      monitor_->watch(s.id, nullptr);
    }
}

}  // namespace ftm::repl
