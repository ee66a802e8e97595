#include "replication/failure_detector.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace ftm::repl {

namespace {

using std::chrono::microseconds;

double to_ms(microseconds d) { return double(d.count()) / 1000.0; }

}  // namespace

FailureDetector::FailureDetector(const Options& o) : o_(o) {
  // A standard deviation needs two samples; a negative floor or a widen cap
  // below 1 would let the margin shrink below what the samples justify.
  o_.window = std::max<size_t>(o_.window, 2);
  o_.floor = std::max(o_.floor, microseconds(0));
  o_.initial_interval = std::max(o_.initial_interval, microseconds(0));
  o_.max_widen = std::max(o_.max_widen, 1.0);
}

void FailureDetector::watch(uint32_t node, Clock::time_point now) {
  auto [it, inserted] = nodes_.try_emplace(node);
  if (!inserted) return;
  Node& n = it->second;
  n.last = now;
  n.ring.assign(o_.window, 0);
  if (auto l = learned_.find(node); l != learned_.end()) {
    n.widen = l->second.widen;
    n.false_suspicions = l->second.false_suspicions;
    learned_.erase(l);
  }
  update_timeout(n);
}

void FailureDetector::forget(uint32_t node) {
  auto it = nodes_.find(node);
  if (it == nodes_.end()) return;
  learned_[node] = Learned{it->second.widen, it->second.false_suspicions};
  nodes_.erase(it);
}

std::chrono::microseconds FailureDetector::false_failover(uint32_t node) {
  auto it = nodes_.find(node);
  if (it == nodes_.end()) return microseconds{0};
  Node& n = it->second;
  n.widen = std::min(n.widen * 2, o_.max_widen);
  n.false_suspicions++;
  update_timeout(n);
  return n.timeout;
}

bool FailureDetector::heartbeat(uint32_t node, uint64_t incarnation,
                                uint64_t counter, Clock::time_point now) {
  if (incarnation == 0 && counter == 0) return false;  // empty slot
  auto it = nodes_.find(node);
  if (it == nodes_.end()) {
    watch(node, now);
    it = nodes_.find(node);
  }
  Node& n = it->second;

  if (incarnation != n.incarnation) {
    // A restart (or the first value seen since watch()): the time since the
    // last arrival is not a heartbeat interval, and the new process may beat
    // at another pace, so no sample is taken and the old ones go. widen
    // stays: it records how this server's timing has fooled us before.
    n.incarnation = incarnation;
    n.counter = counter;
    n.last = now;
    reset_samples(n);
    n.cause = Cause::kNone;
    n.reason.clear();
    update_timeout(n);
    return false;
  }
  if (counter <= n.counter) return false;  // same value, or a stale read

  // Clamp the sample to the timeout in force: one long stall (a paused
  // process, a suspicion that proved false) would otherwise move the mean
  // and deviation by the stall's length for the next `window` heartbeats,
  // and a real crash in that time would go unseen for as long. Stalls are
  // what widen answers; the samples describe ordinary jitter.
  const int64_t sample = std::min(age_of(n, now), n.timeout).count();
  n.counter = counter;
  n.last = now;
  add_sample(n, sample);

  const bool false_suspicion = n.cause == Cause::kTimeout;
  if (false_suspicion) {
    n.widen = std::min(n.widen * 2, o_.max_widen);
    n.false_suspicions++;
  }
  // A report() or excused suspicion clears without widening: see the header.
  n.cause = Cause::kNone;
  n.reason.clear();
  update_timeout(n);
  return false_suspicion;
}

void FailureDetector::excuse(uint32_t node) {
  auto it = nodes_.find(node);
  if (it != nodes_.end() && it->second.cause == Cause::kTimeout) it->second.cause = Cause::kExcused;
}

void FailureDetector::report(uint32_t node, const std::string& reason,
                             Clock::time_point /*now*/) {
  // `now` is unused today; it is in the signature so that a report could be
  // timestamped (or aged out) without changing callers.
  auto it = nodes_.find(node);
  if (it == nodes_.end() || it->second.cause != Cause::kNone) return;
  it->second.cause = Cause::kReport;
  it->second.reason = reason;
}

std::vector<uint32_t> FailureDetector::scan(Clock::time_point now) {
  std::vector<uint32_t> newly;
  for (auto& [id, n] : nodes_) {
    if (n.cause != Cause::kNone) continue;
    const microseconds age = age_of(n, now);
    if (age < n.timeout) continue;
    n.cause = Cause::kTimeout;
    char buf[96];
    std::snprintf(buf, sizeof buf, "no heartbeat for %.1f ms (timeout %.1f ms)",
                  to_ms(age), to_ms(n.timeout));
    n.reason = buf;
    newly.push_back(id);
  }
  return newly;
}

FailureDetector::View FailureDetector::view(uint32_t node,
                                            Clock::time_point now) const {
  View v;
  auto it = nodes_.find(node);
  if (it == nodes_.end()) return v;
  const Node& n = it->second;
  v.known = true;
  v.suspected = n.cause != Cause::kNone;
  v.age = age_of(n, now);
  v.timeout = n.timeout;
  v.level = double(v.age.count()) / double(n.timeout.count());
  v.incarnation = n.incarnation;
  v.counter = n.counter;
  v.false_suspicions = n.false_suspicions;
  v.widen = n.widen;
  v.reason = n.reason;
  return v;
}

bool FailureDetector::suspected(uint32_t node) const {
  auto it = nodes_.find(node);
  return it != nodes_.end() && it->second.cause != Cause::kNone;
}

void FailureDetector::add_sample(Node& n, int64_t us) {
  if (n.count == n.ring.size()) {
    const double old = double(n.ring[n.next]);
    n.sum -= old;
    n.sumsq -= old * old;
  } else {
    n.count++;
  }
  n.ring[n.next] = us;
  n.sum += double(us);
  n.sumsq += double(us) * double(us);
  n.next = (n.next + 1) % n.ring.size();
  if (n.next == 0) {
    // Running sums are exact while every term is an integer below 2^53
    // (samples under ~9 s with the default window); recomputing once per lap
    // keeps rounding from accumulating beyond that, at O(1) amortized.
    n.sum = n.sumsq = 0;
    for (size_t i = 0; i < n.count; i++) {
      const double x = double(n.ring[i]);
      n.sum += x;
      n.sumsq += x * x;
    }
  }
}

void FailureDetector::reset_samples(Node& n) {
  n.count = n.next = 0;
  n.sum = n.sumsq = 0;
}

void FailureDetector::update_timeout(Node& n) const {
  // Cached per arrival so scan() costs one comparison per node.
  const double initial = double(o_.initial_interval.count());
  double mean = initial, sd = 0;
  if (n.count == 1) {
    // One sample is no basis for a deviation; do not suspect sooner than the
    // assumed interval either, in case the first one was short.
    mean = std::max(initial, n.sum);
  } else if (n.count >= 2) {
    mean = n.sum / double(n.count);
    // Population variance; rounding can take it a hair below zero.
    sd = std::sqrt(std::max(0.0, n.sumsq / double(n.count) - mean * mean));
  }
  const double alpha = std::max(double(o_.floor.count()), 4 * sd) * n.widen;
  // At least 1 us: level divides by it.
  n.timeout = microseconds(std::max<int64_t>(1, int64_t(std::ceil(mean + alpha))));
  if (n.incarnation == 0 && n.counter == 0) n.timeout = std::max(n.timeout, o_.first_heartbeat);
}

microseconds FailureDetector::age_of(const Node& n, Clock::time_point now) {
  // A `now` before the last arrival (callers' clocks are steady, but reads
  // and calls may interleave) is age 0, not a negative age.
  return std::max(std::chrono::duration_cast<microseconds>(now - n.last),
                  microseconds(0));
}

}  // namespace ftm::repl
