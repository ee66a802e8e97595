// The peer-vouched lease's rules (replication/peer_lease.h): when a node
// vouches for another, and how long a node that installs a map without the
// one it vouched for must wait before following it.
#include <gtest/gtest.h>

#include <chrono>

#include "replication/lease.h"
#include "replication/partition_map.h"
#include "replication/peer_lease.h"

namespace ftm::repl {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;
using Clock = Lease::Clock;

constexpr microseconds kLength{45000};  // the default lease length

ClusterMap map_at(uint64_t epoch, ServerState node2) {
  ClusterMap m(16, 2);
  m.set_epoch(epoch);
  for (uint32_t id = 1; id <= 3; ++id) {
    ServerInfo s;
    s.id = id;
    s.memcached_addr = "127.0.0.1:" + std::to_string(11210 + id);
    s.fabric_addr = "127.0.0.1:" + std::to_string(12210 + id);
    s.state = id == 2 ? node2 : ServerState::kUp;
    m.upsert_server(s);
  }
  return m;
}

TEST(VouchRefusal, GrantsOnlyWhenItDoesNotHearTheMetaServerEither) {
  EXPECT_EQ(vouch_refusal(true, 7, 7, true, microseconds(30000), kLength), "");
  // Exactly half a length without an acknowledged heartbeat is enough.
  EXPECT_EQ(vouch_refusal(true, 7, 7, true, kLength / 2, kLength), "");
  std::string hears = vouch_refusal(true, 7, 7, true, microseconds(4000), kLength);
  EXPECT_NE(hears.find("hears the metadata server"), std::string::npos) << hears;
}

TEST(VouchRefusal, RefusesOtherEpochsAndNodesNotUpAndFencedNodes) {
  const microseconds silent(60000);
  std::string why = vouch_refusal(true, 8, 7, true, silent, kLength);
  EXPECT_NE(why.find("epoch 8, the asker's at 7"), std::string::npos) << why;
  why = vouch_refusal(true, 7, 8, true, silent, kLength);  // newer than ours
  EXPECT_NE(why.find("epoch"), std::string::npos) << why;
  why = vouch_refusal(true, 7, 7, false, silent, kLength);
  EXPECT_NE(why.find("not list the asker as up"), std::string::npos) << why;
  why = vouch_refusal(false, 7, 7, true, silent, kLength);
  EXPECT_NE(why.find("good standing"), std::string::npos) << why;
  why = vouch_refusal(true, 7, 7, true, silent, microseconds(0));
  EXPECT_NE(why.find("length"), std::string::npos) << why;
  // Before any map (epoch 0) nothing is granted, whatever the asker says.
  EXPECT_NE(vouch_refusal(true, 0, 0, true, silent, kLength), "");
}

TEST(VouchLedger, AMapWithoutTheVouchedNodeWaitsOutTheGrant) {
  VouchLedger ledger;
  EXPECT_EQ(ledger.advance(map_at(7, ServerState::kUp), kLength), Clock::time_point{});
  const auto granted = Clock::now();
  ASSERT_EQ(ledger.judge(2, 7, true, true, microseconds(60000), kLength, granted), "");
  EXPECT_EQ(ledger.grants(), 1u);
  // A map that keeps node 2 up: nothing to wait for.
  EXPECT_EQ(ledger.advance(map_at(8, ServerState::kUp), kLength), Clock::time_point{});
  // Node 2 at epoch 7 is now refused: it cannot renew any more.
  EXPECT_NE(ledger.judge(2, 7, true, true, microseconds(60000), kLength, granted), "");
  ASSERT_EQ(ledger.judge(2, 8, true, true, microseconds(60000), kLength,
                         granted + milliseconds(5)), "");
  // Node 2 failed: the caller waits until the newest grant's lease lapses.
  EXPECT_EQ(ledger.advance(map_at(9, ServerState::kFailed), kLength),
            granted + milliseconds(5) + kLength);
  // ... once: the grant is forgotten with the node.
  EXPECT_EQ(ledger.advance(map_at(10, ServerState::kFailed), kLength), Clock::time_point{});
  EXPECT_EQ(ledger.epoch(), 10u);
}

TEST(VouchLedger, AnOlderMapDoesNotLowerTheEpoch) {
  VouchLedger ledger;
  ledger.advance(map_at(9, ServerState::kUp), kLength);
  ledger.advance(map_at(8, ServerState::kUp), kLength);
  EXPECT_EQ(ledger.epoch(), 9u);
  EXPECT_NE(ledger.judge(2, 8, true, true, microseconds(60000), kLength, Clock::now()), "");
}

TEST(LeaseAcknowledged, KeepsTheNewestAcknowledgedPostTime) {
  Lease lease;
  const auto t = Clock::now();
  lease.acknowledged(t);
  lease.acknowledged(t - milliseconds(50));  // a late completion of an older one
  EXPECT_EQ(lease.since_acknowledged(t + milliseconds(10)), Clock::duration(milliseconds(10)));
  // Acknowledging does not renew: that is the fence word's decision.
  lease.set_required(true);
  EXPECT_FALSE(lease.valid(t));
}

}  // namespace
}  // namespace ftm::repl
