// FailureDetector on a simulated clock: adaptive timeouts, suspicion on
// silence and on reports, widening after false suspicions, restarts.
#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <string>
#include <vector>

#include "replication/failure_detector.h"
#include "replication/failure_monitor.h"

namespace ftm::repl {
namespace {

using Clock = FailureDetector::Clock;
using std::chrono::microseconds;
using std::chrono::milliseconds;

// One detector, one simulated clock and one heartbeating server (node 1) whose
// slot the "scan thread" reads every millisecond.
class Sim {
 public:
  explicit Sim(FailureDetector::Options o = {}) : fd(o) { fd.watch(1, now); }

  // The server writes its next heartbeat; returns heartbeat()'s answer.
  bool beat() { return fd.heartbeat(1, inc, ++counter, now); }

  // Lets `d` pass, scanning every 1 ms (and at the end); records every node
  // scan() returns.
  void advance(microseconds d) {
    const Clock::time_point end = now + d;
    while (now < end) {
      now = std::min(end, now + milliseconds(1));
      for (uint32_t id : fd.scan(now)) suspicions.push_back(id);
    }
  }

  // Beats every `interval` for `duration` (interval first, then a beat).
  void beat_every(microseconds interval, microseconds duration) {
    for (microseconds t{0}; t + interval <= duration; t += interval) {
      advance(interval);
      beat();
    }
  }

  FailureDetector::View view() const { return fd.view(1, now); }

  FailureDetector fd;
  Clock::time_point now = Clock::time_point{} + std::chrono::hours(1);
  uint64_t inc = 0x5eed, counter = 0;
  std::vector<uint32_t> suspicions;
};

TEST(FailureDetectorTest, SteadyJitteryHeartbeatsAreNeverSuspected) {
  Sim s;
  std::mt19937 rng(42);
  std::uniform_int_distribution<int> jitter_us(4000, 6000);  // 5 ms +- 1 ms
  const Clock::time_point end = s.now + std::chrono::seconds(10);
  while (s.now < end) {
    s.advance(microseconds(jitter_us(rng)));
    s.beat();
    FailureDetector::View v = s.view();
    // About interval + floor; the learned mean may sit a little under 5 ms.
    ASSERT_GE(v.timeout, milliseconds(4 + 20));
    ASSERT_LE(v.timeout, milliseconds(5 + 3 * 20));
    ASSERT_FALSE(v.suspected);
  }
  EXPECT_TRUE(s.suspicions.empty());
  EXPECT_EQ(s.view().false_suspicions, 0u);
  EXPECT_EQ(s.view().widen, 1);
}

TEST(FailureDetectorTest, SilenceIsSuspectedAfterIntervalPlusFloor) {
  Sim s;
  s.fd.watch(2, s.now);
  uint64_t c2 = 0;
  for (int i = 0; i < 200; i++) {  // 1 s of exact 5 ms beats: deviation 0
    s.advance(milliseconds(5));
    s.beat();
    s.fd.heartbeat(2, 9, ++c2, s.now);
  }
  ASSERT_TRUE(s.suspicions.empty());
  EXPECT_EQ(s.view().timeout, milliseconds(5 + 20));

  // Node 1 falls silent; node 2 keeps beating (12 ms gaps, inside its 25).
  const Clock::time_point last = s.now;
  s.now = last + milliseconds(12);
  s.fd.heartbeat(2, 9, ++c2, s.now);
  s.now = last + milliseconds(24);
  s.fd.heartbeat(2, 9, ++c2, s.now);
  EXPECT_TRUE(s.fd.scan(s.now).empty());
  EXPECT_LT(s.view().level, 1);

  s.now = last + milliseconds(26);
  EXPECT_EQ(s.fd.scan(s.now), std::vector<uint32_t>{1});
  s.now = last + milliseconds(27);
  EXPECT_TRUE(s.fd.scan(s.now).empty()) << "a suspicion is returned once";

  FailureDetector::View v = s.view();
  EXPECT_TRUE(v.suspected);
  EXPECT_TRUE(s.fd.suspected(1));
  EXPECT_FALSE(s.fd.suspected(2));
  EXPECT_GT(v.level, 1);
  EXPECT_NE(v.reason.find("no heartbeat"), std::string::npos) << v.reason;
}

TEST(FailureDetectorTest, JitteryServerGetsATimeoutAboveItsLongestGap) {
  // Intervals alternate 2 ms and 30 ms: mean 16 ms. A fixed margin (mean +
  // floor = 26 ms) would suspect every long gap; 4 deviations (56 ms) do not.
  FailureDetector::Options o;
  o.floor = milliseconds(10);
  o.initial_interval = milliseconds(30);  // no start-up suspicion either
  Sim s(o);
  s.beat();
  for (int i = 0; i < 100; i++) {
    s.advance(milliseconds(2));
    s.beat();
    s.advance(milliseconds(30));
    s.beat();
  }
  EXPECT_TRUE(s.suspicions.empty());
  EXPECT_EQ(s.view().widen, 1) << "adapted from samples, not by widening";
  EXPECT_GT(s.view().timeout, milliseconds(30));
  EXPECT_GT(s.view().timeout, milliseconds(16 + 10));
}

TEST(FailureDetectorTest, FalseSuspicionWidensTheTimeout) {
  Sim s;
  s.beat_every(milliseconds(5), std::chrono::seconds(1));
  ASSERT_TRUE(s.suspicions.empty());

  s.advance(milliseconds(40));  // one 40 ms stall, timeout 25 ms
  EXPECT_EQ(s.suspicions, std::vector<uint32_t>{1});
  EXPECT_TRUE(s.beat()) << "the heartbeat came back: a false suspicion";
  FailureDetector::View v = s.view();
  EXPECT_FALSE(v.suspected);
  EXPECT_TRUE(v.reason.empty());
  EXPECT_EQ(v.widen, 2);
  EXPECT_EQ(v.false_suspicions, 1u);
  EXPECT_GE(v.timeout, milliseconds(5 + 2 * 20));

  // The same stall right away, and again once the stall's sample is gone
  // from the window, is tolerated now.
  s.suspicions.clear();
  s.advance(milliseconds(40));
  EXPECT_FALSE(s.beat());
  s.beat_every(milliseconds(5), std::chrono::seconds(1));
  s.advance(milliseconds(40));
  EXPECT_FALSE(s.beat());
  EXPECT_TRUE(s.suspicions.empty());

  // A real death is still seen, and reported again (a new suspicion).
  s.advance(milliseconds(60));
  EXPECT_EQ(s.suspicions, std::vector<uint32_t>{1});
}

// Every server fell silent at once: the metadata server stalled (seen in
// bench/failover.py: a 185 ms stall of this 2-core host widened two
// servers' timeouts to 206 ms, and their failovers took 128 ms instead of
// 72). The observer's stall must not widen the nodes' timeouts.
TEST(FailureDetectorTest, ExcusedSuspicionClearsWithoutWidening) {
  Sim s;
  s.beat_every(milliseconds(5), std::chrono::seconds(1));
  s.fd.excuse(1);  // not suspected: nothing to excuse
  s.advance(milliseconds(40));
  ASSERT_EQ(s.suspicions, std::vector<uint32_t>{1});
  s.fd.excuse(1);
  EXPECT_TRUE(s.fd.suspected(1)) << "excused, still suspected until it beats";
  EXPECT_TRUE(s.fd.scan(s.now).empty()) << "each suspicion is returned once";
  EXPECT_FALSE(s.beat()) << "not a false suspicion of the node";
  FailureDetector::View v = s.view();
  EXPECT_FALSE(v.suspected);
  EXPECT_EQ(v.widen, 1);
  EXPECT_EQ(v.false_suspicions, 0u);
  // The next stall of its own still widens.
  s.beat_every(milliseconds(5), std::chrono::seconds(1));
  s.advance(milliseconds(40));
  EXPECT_TRUE(s.beat());
  EXPECT_EQ(s.view().widen, 2);
}

TEST(FailureDetectorTest, WidenIsCapped) {
  FailureDetector::Options o;
  o.max_widen = 4;
  Sim s(o);
  for (int i = 0; i < 5; i++) {
    s.beat_every(milliseconds(5), milliseconds(100));
    s.advance(std::chrono::seconds(1));  // longer than any widened timeout
    EXPECT_TRUE(s.beat());
  }
  EXPECT_EQ(s.view().widen, 4);
  EXPECT_EQ(s.view().false_suspicions, 5u);
}

TEST(FailureDetectorTest, LongStallDoesNotBlindTheDetector) {
  Sim s;
  s.beat_every(milliseconds(5), std::chrono::seconds(1));
  s.advance(std::chrono::seconds(10));  // e.g. a stopped process, resumed
  EXPECT_TRUE(s.beat());
  // Unclamped, the 10 s sample would put the timeout at seconds for the
  // next 100 heartbeats.
  EXPECT_LT(s.view().timeout, milliseconds(100));
  s.beat_every(milliseconds(5), milliseconds(100));
  s.suspicions.clear();
  s.advance(milliseconds(100));  // now it dies
  EXPECT_EQ(s.suspicions, std::vector<uint32_t>{1});
}

TEST(FailureDetectorTest, ReportSuspectsAtOnceAndClearsWithoutWidening) {
  Sim s;
  s.beat_every(milliseconds(5), milliseconds(500));
  const std::string why = "replication to node 1: peer lost (connection reset)";
  s.fd.report(1, why, s.now);
  EXPECT_TRUE(s.fd.suspected(1));
  EXPECT_EQ(s.view().reason, why);
  EXPECT_TRUE(s.fd.scan(s.now).empty()) << "the reporter's caller acts on it";

  s.fd.report(1, "a second report", s.now);
  EXPECT_EQ(s.view().reason, why) << "the first reason stands";

  // Re-reading the same slot value is no evidence of life.
  s.now += milliseconds(1);
  EXPECT_FALSE(s.fd.heartbeat(1, s.inc, s.counter, s.now));
  EXPECT_TRUE(s.fd.suspected(1));

  s.now += milliseconds(4);
  EXPECT_FALSE(s.beat()) << "not a false suspicion: no widening";
  FailureDetector::View v = s.view();
  EXPECT_FALSE(v.suspected);
  EXPECT_TRUE(v.reason.empty());
  EXPECT_EQ(v.widen, 1);
  EXPECT_EQ(v.false_suspicions, 0u);

  s.fd.report(77, "unknown", s.now);
  EXPECT_FALSE(s.fd.suspected(77));
  EXPECT_FALSE(s.fd.view(77, s.now).known);
}

TEST(FailureDetectorTest, RestartResetsSamplesButKeepsWiden) {
  Sim s;
  s.beat_every(milliseconds(5), std::chrono::seconds(1));
  s.advance(milliseconds(40));
  ASSERT_TRUE(s.beat());  // widen 2
  s.beat_every(milliseconds(20), std::chrono::seconds(3));  // slower pace
  ASSERT_EQ(s.view().timeout, milliseconds(20 + 2 * 20));
  ASSERT_GT(s.counter, 100u);

  // It dies, is suspected, and comes back as a new process counting from 1.
  s.suspicions.clear();
  s.advance(milliseconds(200));
  ASSERT_EQ(s.suspicions, std::vector<uint32_t>{1});
  s.inc = 0xbeef;
  s.counter = 0;
  EXPECT_FALSE(s.beat()) << "the old incarnation really died";
  FailureDetector::View v = s.view();
  EXPECT_FALSE(v.suspected);
  EXPECT_EQ(v.age, microseconds(0));
  EXPECT_EQ(v.incarnation, 0xbeefu);
  EXPECT_EQ(v.counter, 1u);
  EXPECT_EQ(v.widen, 2);
  EXPECT_EQ(v.false_suspicions, 1u);
  // No samples: the assumed 5 ms interval, not the old 20 ms pace.
  EXPECT_EQ(v.timeout, milliseconds(5 + 2 * 20));
}

// A server declared failed (suspected, failed over, forgotten) whose process
// turns out to be alive and rejoins: the declaration was a false suspicion.
// What the detector learned must survive the forget(), or a host that stalls
// is failed over again and again at the floor (seen on a loaded 2-core host
// forming a cluster: every rejoin came back at the 105 ms timeout).
TEST(FailureDetectorTest, FalseFailoverWidensAndForgetKeepsWhatWasLearned) {
  Sim s;
  s.beat_every(milliseconds(5), std::chrono::seconds(1));
  s.advance(milliseconds(40));
  ASSERT_TRUE(s.beat());  // widen 2
  s.advance(milliseconds(200));  // suspected, then declared failed...
  ASSERT_FALSE(s.suspicions.empty());
  s.fd.forget(1);  // ...and forgotten by the meta server
  EXPECT_FALSE(s.view().known);
  EXPECT_EQ(s.fd.false_failover(1), microseconds(0)) << "not watched";

  s.fd.watch(1, s.now);  // it rejoins: what was learned is back
  FailureDetector::View v = s.view();
  EXPECT_EQ(v.widen, 2);
  EXPECT_EQ(v.false_suspicions, 1u);
  EXPECT_EQ(s.fd.false_failover(1), milliseconds(5 + 4 * 20)) << "widen 4";
  v = s.view();
  EXPECT_EQ(v.widen, 4);
  EXPECT_EQ(v.false_suspicions, 2u);

  // A stall the floor alone would call a death is now tolerated.
  s.inc = 0xbeef;
  s.counter = 0;
  s.suspicions.clear();
  s.beat_every(milliseconds(5), std::chrono::seconds(1));
  s.advance(milliseconds(70));
  EXPECT_FALSE(s.beat());
  EXPECT_TRUE(s.suspicions.empty());

  // Another node's history is its own.
  s.fd.watch(2, s.now);
  EXPECT_EQ(s.fd.view(2, s.now).widen, 1);
}

TEST(FailureDetectorTest, RepeatedOrOlderCounterIsNotAnArrival) {
  Sim s;
  s.beat_every(milliseconds(5), std::chrono::seconds(1));
  const Clock::time_point last = s.now;
  const uint64_t c = s.counter;
  s.now = last + milliseconds(10);
  EXPECT_FALSE(s.fd.heartbeat(1, s.inc, c, s.now));
  EXPECT_EQ(s.view().age, milliseconds(10));
  s.now = last + milliseconds(20);
  EXPECT_FALSE(s.fd.heartbeat(1, s.inc, c - 1, s.now));  // stale read
  EXPECT_FALSE(s.fd.heartbeat(1, 0, 0, s.now));          // empty slot
  EXPECT_EQ(s.view().age, milliseconds(20));
  EXPECT_EQ(s.view().counter, c);
  s.now = last + milliseconds(26);
  EXPECT_EQ(s.fd.scan(s.now), std::vector<uint32_t>{1});
}

TEST(FailureDetectorTest, WatchedServerThatNeverBeatsIsSuspected) {
  Sim s;  // watch(1) at s.now, no heartbeat
  const Clock::time_point start = s.now;
  EXPECT_TRUE(s.view().known);
  EXPECT_EQ(s.view().timeout, milliseconds(5 + 20));
  EXPECT_TRUE(s.fd.scan(start + milliseconds(24)).empty());
  EXPECT_EQ(s.fd.scan(start + milliseconds(26)), std::vector<uint32_t>{1});

  EXPECT_FALSE(s.fd.view(2, s.now).known);
  s.fd.forget(1);
  EXPECT_FALSE(s.fd.view(1, s.now).known);
  EXPECT_FALSE(s.fd.suspected(1));
  EXPECT_TRUE(s.fd.scan(start + std::chrono::seconds(1)).empty());
}

// A joiner sets up its heartbeat connection before its first heartbeat; on
// a busy host that took longer than the normal timeout (CI: every joiner
// suspected at once). Until the first heartbeat the timeout is at least
// first_heartbeat; after it, the usual one.
TEST(FailureDetectorTest, FirstHeartbeatGetsItsOwnGrace) {
  FailureDetector::Options o;
  o.first_heartbeat = milliseconds(1000);
  Sim s(o);
  EXPECT_EQ(s.view().timeout, milliseconds(1000));
  s.advance(milliseconds(900));
  EXPECT_TRUE(s.suspicions.empty()) << "suspected before its first heartbeat was due";
  s.beat();
  EXPECT_EQ(s.view().timeout, milliseconds(5 + 20));  // the usual one from now on
  s.advance(milliseconds(40));
  EXPECT_EQ(s.suspicions, std::vector<uint32_t>{1});
  // A node that never beats is still suspected, at the grace.
  s.fd.watch(2, s.now);
  s.suspicions.clear();
  s.advance(milliseconds(999));
  EXPECT_TRUE(s.suspicions.empty());
  s.advance(milliseconds(2));
  EXPECT_EQ(s.suspicions, std::vector<uint32_t>{2});
}

TEST(FailureDetectorTest, HeartbeatFromUnknownNodeStartsWatchingIt) {
  Sim s;
  EXPECT_FALSE(s.fd.heartbeat(5, 3, 1, s.now));
  EXPECT_TRUE(s.fd.view(5, s.now).known);
  EXPECT_EQ(s.fd.view(5, s.now).counter, 1u);
  EXPECT_EQ(s.fd.scan(s.now + milliseconds(26)), (std::vector<uint32_t>{1, 5}));
}

}  // namespace
}  // namespace ftm::repl

// Fencing by lease (replication/lease.h): a data server's lease must end
// before the earliest heartbeat age at which the meta server can fail it
// over, for every floor, interval and widening, or a paused primary could
// serve a stale read after its replacement took writes. The lease was 3/4
// of the floor, past half the timeout, where a corroborated report fails a
// server over.
TEST(FailureMonitorLease, LeaseEndsBeforeAnyFailoverCanBeDeclared) {
  using ftm::repl::FailureMonitor;
  using std::chrono::microseconds;
  for (int64_t floor_ms : {1, 20, 100, 250, 1000}) {
    for (int64_t interval_us : {100, 1000, 5000, 20000}) {
      const microseconds floor(floor_ms * 1000), interval(interval_us);
      const microseconds lease = FailureMonitor::lease_length(floor, interval);
      EXPECT_GT(lease.count(), 0) << floor_ms << " ms floor";
      for (double widen : {1.0, 2.0, 64.0}) {
        // The smallest timeout the detector can hold: floor x widen (plus
        // a mean interval, which jitter may make small; left out).
        const microseconds timeout(int64_t(floor.count() * widen));
        EXPECT_LT(lease, FailureMonitor::report_age(timeout, interval))
            << floor_ms << " ms floor, " << interval_us << " us interval, widen " << widen;
        EXPECT_LT(lease, timeout);
      }
    }
  }
  // The defaults: 100 ms floor, 5 ms interval.
  EXPECT_EQ(FailureMonitor::lease_length(std::chrono::milliseconds(100),
                                         std::chrono::milliseconds(5)),
            std::chrono::milliseconds(45));
}
