#include "replication/failure_monitor.h"

#include <algorithm>
#include <cstdio>
#include <vector>

namespace ftm::repl {

namespace {
using Clock = FailureDetector::Clock;

std::string ms_text(std::chrono::microseconds us) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f ms", us.count() / 1000.0);
  return buf;
}
}  // namespace

rdma::Result<std::unique_ptr<FailureMonitor>> FailureMonitor::start(rdma::Fabric& fabric,
                                                                    Options options) {
  std::unique_ptr<FailureMonitor> m(new FailureMonitor(std::move(options)));
  auto a = HeartbeatArray::create(fabric, m->opts_.max_node);
  if (!a) return a.status();
  m->array_ = std::move(a).value();
  auto wire = m->array_->descriptor().serialize();
  m->region_wire_.assign(reinterpret_cast<const char*>(wire.data()), wire.size());
  m->thread_ = std::thread([p = m.get()] { p->run(); });
  return m;
}

FailureMonitor::~FailureMonitor() { stop(); }

void FailureMonitor::stop() {
  {
    std::lock_guard g(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void FailureMonitor::log(const std::string& line) const {
  if (opts_.log)
    opts_.log(line);
  else
    std::fprintf(stderr, "%s\n", line.c_str());
}

void FailureMonitor::watch(uint32_t node, JoinOkMsg* join_ok, bool was_fenced) {
  if (node > opts_.max_node) return;
  // Emptied before it is watched: a value left by the node's previous
  // process must not count as this one's first heartbeat.
  array_->clear(node);
  std::chrono::microseconds widened{0};
  uint32_t count = 0;
  {
    std::lock_guard g(mu_);
    watched_.insert(node);
    detector_.watch(node, Clock::now());
    if (was_fenced) {
      widened = detector_.false_failover(node);
      count = detector_.view(node, Clock::now()).false_suspicions;
    }
  }
  if (was_fenced)
    log("ftmemcached-meta: node " + std::to_string(node) +
        " was declared failed but is alive (it rejoined after its fence): false suspicion #" +
        std::to_string(count) + ", its timeout widened to " + ms_text(widened));
  if (join_ok != nullptr) {
    join_ok->heartbeat_region = region_wire_;
    join_ok->heartbeat_offset = HeartbeatArray::slot_offset(node);
    join_ok->heartbeat_interval_us = uint32_t(opts_.heartbeat_interval.count());
    join_ok->lease_us = uint32_t(lease_length(opts_.detector.floor, opts_.heartbeat_interval).count());
  }
}

void FailureMonitor::forget(uint32_t node) {
  std::lock_guard g(mu_);
  watched_.erase(node);
  pending_.erase(node);
  reports_.erase(node);
  detector_.forget(node);
}

void FailureMonitor::report(uint32_t node, const std::string& reason) {
  {
    std::lock_guard g(mu_);
    if (!watched_.count(node) || detector_.suspected(node) || reports_.count(node)) return;
    reports_[node] = Report{reason, Clock::now()};
  }
}

std::chrono::microseconds FailureMonitor::lease_length(std::chrono::microseconds floor,
                                                       std::chrono::microseconds interval) {
  // Never 0 (that means no lease at all) for a tiny floor: interval / 2 and
  // floor / 4 are each still under report_age and the smallest timeout.
  return std::max(floor / 2 - interval, std::min(interval / 2, floor / 4));
}

std::chrono::microseconds FailureMonitor::report_age(std::chrono::microseconds timeout,
                                                     std::chrono::microseconds interval) {
  return std::max(2 * interval, timeout / 2);
}

std::chrono::microseconds FailureMonitor::lease_left(uint32_t node) const {
  std::lock_guard g(mu_);
  if (!watched_.count(node)) return std::chrono::microseconds(0);
  const auto age = detector_.view(node, Clock::now()).age;
  const auto lease = lease_length(opts_.detector.floor, opts_.heartbeat_interval);
  return age < lease ? lease - age : std::chrono::microseconds(0);
}

void FailureMonitor::fence(uint32_t node, uint64_t epoch) {
  if (node <= opts_.max_node) array_->fence(node, epoch);
}

bool FailureMonitor::suspected(uint32_t node) const {
  std::lock_guard g(mu_);
  return watched_.count(node) != 0 && detector_.suspected(node);
}

bool FailureMonitor::others_alive(uint32_t node) const {
  std::lock_guard g(mu_);
  for (uint32_t n : watched_)
    if (n != node && !detector_.suspected(n)) return true;
  return false;
}

FailureMonitor::Verdict FailureMonitor::vouch(uint32_t node, Clock::time_point since,
                                              Clock::time_point now) const {
  bool all_silent = true;
  for (uint32_t n : watched_) {
    if (n == node) continue;
    auto v = detector_.view(n, now);
    if (v.suspected) continue;
    all_silent = false;
    // Arrived after the suspicion: this server hears someone now.
    if (v.counter != 0 && now - v.age > since) return Verdict::kVouched;
  }
  return all_silent ? Verdict::kIsolated : Verdict::kWait;
}

std::vector<std::string> FailureMonitor::hold_unvouched(
    Clock::time_point now, std::vector<std::pair<uint32_t, std::string>>& suspects) {
  std::vector<std::string> lines;
  for (auto& [node, reason] : suspects) pending_[node] = Pending{std::move(reason), now};
  suspects.clear();
  end_silence(now, lines);
  if (pending_.empty()) return lines;
  // Decided for all first: one hold must not change another's verdict.
  std::vector<std::pair<uint32_t, Verdict>> verdicts;
  for (auto& [node, p] : pending_) {
    auto v = detector_.view(node, now);
    if (!v.known || !v.suspected) {
      verdicts.emplace_back(node, Verdict::kDrop);  // its heartbeat came back
      continue;
    }
    Verdict d = vouch(node, p.at, now);
    if (d == Verdict::kIsolated && watched_.size() > 1) {
      quiet_until_ = now + opts_.isolation_grace;
      if (silent_since_ == Clock::time_point{}) silent_since_ = now;
      // This server's stall, not the node's: its timeout stays as learned
      // (a widened timeout would slow the next real failover).
      detector_.excuse(node);
    }
    verdicts.emplace_back(node, d);
  }
  for (auto& [node, d] : verdicts) {
    auto it = pending_.find(node);
    if (d == Verdict::kDrop) {
      pending_.erase(it);
    } else if (d == Verdict::kVouched && now >= quiet_until_) {
      suspects.emplace_back(node, std::move(it->second.reason));
      pending_.erase(it);
    } else if (d != Verdict::kWait && !it->second.held) {
      // Held: it stays suspected (a heartbeat clears it as a false
      // suspicion, widening its timeout) and pending, so that it is
      // declared failed once someone vouches after the grace if it is
      // still silent then.
      lines.push_back("ftmemcached-meta: NOT declaring node " + std::to_string(node) +
                      " failed (" + it->second.reason + "): " +
                      (d == Verdict::kIsolated
                           ? "every other server is silent too (is this meta server cut off?)"
                           : "within the grace after an isolation") +
                      "; declaring nobody failed until heartbeats are back, and for up to " +
                      std::to_string(opts_.isolation_grace.count()) + " ms after");
      it->second.held = true;
    }
  }
  return lines;
}

// REQUIRES mu_. Ends a silence of everyone once a server is heard again.
// A long one may have been a cut-off (servers come back one by one, some
// after joining again): the whole isolation_grace. A brief one (this
// server stalled, or a short cut) has torn down no connection (a data
// server does so only after its 1 s heartbeat write deadline), and every
// server comes back within tcp's retransmission backoff, which grows with
// the cut: twice the silence plus the detector's floor. (The whole grace
// after every stall of this 2-core host delayed the next real failover by
// up to 3 s: bench/failover.py, 1.9 s in one kill of 20.)
void FailureMonitor::end_silence(Clock::time_point now, std::vector<std::string>& lines) {
  if (silent_since_ == Clock::time_point{}) return;
  for (uint32_t n : watched_) {
    if (!detector_.view(n, now).suspected) {
      using std::chrono::microseconds;
      const auto silence = std::chrono::duration_cast<microseconds>(now - silent_since_);
      const auto grace = std::min<microseconds>(opts_.isolation_grace,
                                                2 * silence + opts_.detector.floor);
      quiet_until_ = std::min(quiet_until_, now + grace);
      silent_since_ = Clock::time_point{};
      lines.push_back("ftmemcached-meta: heartbeats are back after " + ms_text(silence) +
                      " of silence from everyone; acting on suspicions again in " +
                      ms_text(grace));
      return;
    }
  }
}

// REQUIRES mu_. Moves corroborated reports into `suspects` and drops the
// ones the node's heartbeats contradicted for a whole timeout.
void FailureMonitor::judge_reports(Clock::time_point now,
                                   std::vector<std::pair<uint32_t, std::string>>& suspects,
                                   std::vector<std::string>& dropped) {
  for (auto it = reports_.begin(); it != reports_.end();) {
    auto v = detector_.view(it->first, now);
    if (!v.known || v.suspected) {
      it = reports_.erase(it);
    } else if (v.age >= report_age(v.timeout, opts_.heartbeat_interval)) {
      std::string why = it->second.reason + "; no heartbeat for " + ms_text(v.age);
      detector_.report(it->first, why, now);
      suspects.emplace_back(it->first, why);
      it = reports_.erase(it);
    } else if (now - it->second.at > v.timeout) {
      dropped.push_back("ftmemcached-meta: node " + std::to_string(it->first) +
                        " not suspected despite a report (" + it->second.reason +
                        "): its heartbeats continue");
      it = reports_.erase(it);
    } else {
      ++it;
    }
  }
}

void FailureMonitor::fill(ServerStatus* s) const {
  std::lock_guard g(mu_);
  if (!watched_.count(s->node_id)) return;
  FailureDetector::View v = detector_.view(s->node_id, Clock::now());
  s->heartbeating = v.counter != 0;
  s->suspected = v.suspected;
  s->heartbeat_age_us = uint64_t(v.age.count());
  s->heartbeat_timeout_us = uint64_t(v.timeout.count());
  s->suspicion_permille = uint32_t(std::min(v.level * 1000.0, 4e9));
  s->false_suspicions = v.false_suspicions;
  s->suspicion_reason = v.suspected ? v.reason : "";
}

void FailureMonitor::run() {
  std::vector<std::pair<uint32_t, std::string>> suspects;
  std::vector<std::pair<uint32_t, FailureDetector::View>> cleared;
  std::vector<std::string> dropped;
  raise_to_realtime();
  std::unique_lock lk(mu_);
  auto next = Clock::now();
  while (!stop_) {
    auto now = Clock::now();
    for (uint32_t node : watched_) {
      auto v = array_->read(node);
      if (v && detector_.heartbeat(node, v->incarnation, v->counter, now))
        cleared.emplace_back(node, detector_.view(node, now));
    }
    for (uint32_t node : detector_.scan(now))
      suspects.emplace_back(node, detector_.view(node, now).reason);
    judge_reports(now, suspects, dropped);
    for (auto& line : hold_unvouched(now, suspects)) dropped.push_back(std::move(line));
    if (!suspects.empty() || !cleared.empty() || !dropped.empty()) {
      // Log and call out without the lock: on_suspect may ask for status.
      lk.unlock();
      for (auto& [node, v] : cleared)
        log("ftmemcached-meta: node " + std::to_string(node) +
            " heartbeats again: false suspicion #" + std::to_string(v.false_suspicions) +
            ", its timeout widened to " + ms_text(v.timeout));
      for (auto& line : dropped) log(line);
      for (auto& [node, reason] : suspects) {
        log("ftmemcached-meta: node " + std::to_string(node) + " suspected: " + reason);
        if (opts_.on_suspect) opts_.on_suspect(node, reason);
      }
      suspects.clear();
      cleared.clear();
      dropped.clear();
      lk.lock();
    }
    next += opts_.scan_every;
    if (next < Clock::now()) next = Clock::now();
    cv_.wait_until(lk, next, [this] { return stop_; });
  }
}

}  // namespace ftm::repl
