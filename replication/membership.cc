// The data server's membership client (see membership.h).
#include "replication/membership.h"

#include <algorithm>
#include <cstdio>

namespace ftm::repl {

std::unique_ptr<Membership> Membership::start(rdma::Fabric& fabric,
                                              MembershipOptions options) {
  std::unique_ptr<Membership> m(new Membership(fabric, std::move(options)));
  m->node_id_.store(m->opts_.node_id);
  m->thread_ = std::thread([p = m.get()] { p->run(); });
  return m;
}

Membership::~Membership() { stop(); }

void Membership::stop() {
  std::lock_guard once(stop_mu_);  // concurrent stop() calls join once
  {
    std::lock_guard g(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
    // A receive() blocked on the meta server returns once its connection
    // is closed.
    if (channel_) channel_->close();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::shared_ptr<const ClusterMap> Membership::map() const {
  std::lock_guard g(mu_);
  return map_;
}

bool Membership::wait_for_map(std::chrono::milliseconds timeout,
                              uint64_t min_epoch) {
  std::unique_lock g(mu_);
  return cv_.wait_for(g, timeout, [&] {
    return stopping_ || (map_ && map_->epoch() >= min_epoch);
  }) && !stopping_;
}

void Membership::log(const std::string& line) const {
  if (opts_.log)
    opts_.log(line);
  else
    std::fprintf(stderr, "%s\n", line.c_str());
}

void Membership::sleep_for(std::chrono::milliseconds d) {
  std::unique_lock g(mu_);
  cv_.wait_for(g, d, [&] { return stopping_; });
}

void Membership::install(ClusterMap map) {
  std::shared_ptr<const ClusterMap> m;
  {
    std::lock_guard g(mu_);
    if (map_ && map.epoch() <= map_->epoch()) {
      // Reordered publication, or the JOIN_OK of a reconnect at the epoch
      // we already have; an older map must never replace a newer one.
      if (map.epoch() < map_->epoch())
        log("membership: ignoring map epoch " + std::to_string(map.epoch()) +
            " older than the current " + std::to_string(map_->epoch()));
      return;
    }
    m = std::make_shared<const ClusterMap>(std::move(map));
    map_ = m;
    epoch_.store(m->epoch(), std::memory_order_release);
    version_.fetch_add(1, std::memory_order_acq_rel);
  }
  cv_.notify_all();
  if (opts_.on_map) opts_.on_map(m);
}

void Membership::report(uint32_t node, std::string reason) {
  std::lock_guard g(mu_);
  for (auto& r : reports_)
    if (r.first == node) return;
  reports_.emplace_back(node, std::move(reason));
}

void Membership::send_reports(ControlChannel& ch) {
  std::vector<std::pair<uint32_t, std::string>> out;
  {
    std::lock_guard g(mu_);
    out.swap(reports_);
  }
  for (auto& [node, reason] : out) (void)ch.send(SuspectMsg{node, std::move(reason)});
}

void Membership::fenced() {
  if (opts_.lease) opts_.lease->suspend();  // until the new JOIN_OK's map is in
  log("membership: the meta server declared this node failed; dropping its data and "
      "joining again as a new server");
  if (opts_.on_fenced) opts_.on_fenced();
  empty_ = true;
  was_fenced_ = true;
  fenced_.store(false);
}

ClusterStatus Membership::converse(ControlChannel& ch) {
  const std::string meta = opts_.meta_host + ":" + std::to_string(opts_.meta_port);
  JoinMsg join{node_id_.load(), (opts_.spare ? JoinMsg::kSpare : 0u) |
                                    (empty_ ? JoinMsg::kEmpty : 0u) |
                                    (was_fenced_ ? JoinMsg::kWasFenced : 0u),
               opts_.memcached_addr, opts_.fabric_addr};
  ClusterStatus st = ch.send(join);
  ReportMsg reported;  // what the meta server last heard from this channel
  bool any_reported = false;
  while (st) {
    // Short receives: queued reports go out between them.
    auto env = ch.receive(std::chrono::milliseconds(5));
    send_reports(ch);
    if (opts_.replication_state && connected_.load()) {
      ReportMsg now = opts_.replication_state();
      if ((!any_reported || !(now == reported)) && ch.send(now)) {
        reported = std::move(now);
        any_reported = true;
      }
    }
    if (!env) {
      if (env.status().code() == ClusterErrc::kUnavailable) {
        if (ch.ok() && !fenced_.load()) continue;  // just the timeout
        st = env.status();
        break;
      }
      log("membership: from meta server " + meta + ": " + env.status().to_string());
      continue;
    }
    if (auto* ok = std::get_if<JoinOkMsg>(&env->msg)) {
      node_id_.store(ok->node_id, std::memory_order_release);
      connected_.store(true, std::memory_order_release);
      empty_ = false;
      was_fenced_ = false;
      log("membership: joined meta server " + meta + " as node " +
          std::to_string(ok->node_id) + " at epoch " + std::to_string(ok->map.epoch()));
      if (opts_.lease) {
        opts_.lease->set_required(ok->lease_us > 0);
        opts_.lease->set_length(std::chrono::microseconds(ok->lease_us));
      }
      // Heartbeats first: the meta server times this node from JOIN_OK on,
      // and following the map (install) may take a while (ring set-up).
      start_heartbeats(ch, *ok);
      install(std::move(ok->map));
      // After a fence: only now does the map say what this node holds.
      if (opts_.lease) opts_.lease->resume();
    } else if (auto* mm = std::get_if<MapMsg>(&env->msg)) {
      install(std::move(mm->map));
    } else if (auto* e = std::get_if<ErrorMsg>(&env->msg)) {
      if (e->code == ErrorMsg::kFenced) fenced_.store(true);
      st = ClusterStatus(ClusterErrc::kRefused, e->text);
    } else {
      log(std::string("membership: unexpected ") + msg_name(env->msg) + " from meta server " +
          meta);
    }
  }
  return st;
}

void Membership::run() {
  const std::string meta =
      opts_.meta_host + ":" + std::to_string(opts_.meta_port);
  auto backoff = opts_.backoff_initial;
  bool quiet = false;  // this outage was already logged
  auto grow = [&] { backoff = std::min(backoff * 2, opts_.backoff_max); };
  for (;;) {
    {
      std::lock_guard g(mu_);
      if (stopping_) return;
    }
    const auto attempt = Lease::Clock::now();
    auto conn = fabric_.connect(opts_.meta_host, opts_.meta_port,
                                opts_.connect_timeout);
    if (!conn) {
      auto wait = backoff;
      if (conn.status().code() == rdma::Code::kConnectRefused && opts_.lease) {
        // Nobody listens: no meta server runs, so nobody can be promoted in
        // this node's place until one starts and its restart_grace passes.
        opts_.lease->renew(attempt, opts_.lease_while_meta_down);
        wait = std::min(wait, opts_.lease_while_meta_down / 4);
      }
      if (!quiet)
        log("membership: cannot reach meta server " + meta + ": " +
            conn.status().to_string() + "; retrying with backoff up to " +
            std::to_string(opts_.backoff_max.count()) + " ms");
      quiet = true;
      sleep_for(wait);
      grow();
      continue;
    }
    auto opened = ControlChannel::open(fabric_, std::move(conn).value());
    if (!opened) {
      log("membership: " + opened.status().to_string());
      sleep_for(backoff);
      grow();
      continue;
    }
    std::unique_ptr<ControlChannel> ch = std::move(opened).value();
    {
      std::lock_guard g(mu_);
      if (stopping_) return;
      channel_ = ch.get();
    }
    ClusterStatus st = converse(*ch);
    if (connected_.load()) {
      backoff = opts_.backoff_initial;
      quiet = false;
    }
    heartbeats_.reset();  // it writes over `ch`, which goes below
    {
      std::lock_guard g(mu_);
      channel_ = nullptr;
      if (stopping_) return;
    }
    bool was_connected = connected_.exchange(false);
    ch.reset();
    if (fenced_.load()) {
      fenced();
      continue;  // join again at once, empty
    }
    if (!quiet || was_connected)
      log("membership: lost meta server " + meta + " (" + st.to_string() +
          "); serving with map epoch " + std::to_string(epoch()) +
          " and reconnecting");
    quiet = true;
    sleep_for(backoff);
    grow();
  }
}

}  // namespace ftm::repl

namespace ftm::repl {

void Membership::start_heartbeats(ControlChannel& ch, const JoinOkMsg& ok) {
  heartbeats_.reset();
  if (ok.heartbeat_region.empty() || ok.heartbeat_interval_us == 0) return;
  auto desc = rdma::RegionDescriptor::parse(std::as_bytes(
      std::span(ok.heartbeat_region.data(), ok.heartbeat_region.size())));
  if (!desc) {
    log("membership: the meta server's heartbeat region is unusable: " +
        desc.status().to_string() + "; not sending heartbeats");
    return;
  }
  HeartbeatWriter::Lease lease;
  if (opts_.lease != nullptr && ok.lease_us > 0) {
    lease.lease = opts_.lease;
    lease.length = std::chrono::microseconds(ok.lease_us);
    lease.on_fenced = [this, &ch](uint64_t) {
      fenced_.store(true);
      ch.close();  // the membership thread's receive returns and acts
    };
  }
  auto w = HeartbeatWriter::start(fabric_, ch.connection(), *desc, ok.heartbeat_offset,
                                  std::chrono::microseconds(ok.heartbeat_interval_us),
                                  [this](std::string_view line) { log(std::string(line)); },
                                  std::move(lease));
  if (!w) {
    log("membership: cannot send heartbeats: " + w.status().to_string());
    return;
  }
  heartbeats_ = std::move(w).value();
}

}  // namespace ftm::repl
