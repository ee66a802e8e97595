// The metadata server with in-process membership clients over the tcp
// provider on 127.0.0.1: joins, map publication, epochs, persistence across
// a meta server restart, refusals.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>

#include "rdma/connection.h"
#include "rdma/fabric_domain.h"
#include "replication/control_msg.h"
#include "replication/heartbeat.h"
#include "replication/membership.h"
#include "replication/meta_server.h"
#include "t/unit/meta_server_fixture.h"

namespace ftm::repl {
namespace {

using std::chrono::milliseconds;

// A stand-in data server for t/test_meta_server.py: with
// FTM_MEMBER_HELPER=HOST:PORT (the meta server) set, this binary joins as a
// member before GoogleTest starts, prints "node N epoch E" on every new map,
// and runs until killed. FTM_MEMBER_MC names its memcached address.
int run_member_helper(const char* meta) {
  auto hp = parse_host_port(meta);
  if (!hp) {
    std::fprintf(stderr, "member helper: %s\n", hp.status().to_string().c_str());
    return 64;
  }
  rdma::FabricOptions fo;
  fo.provider = rdma::ProviderChoice::kTcp;
  fo.local_addr = "127.0.0.1";
  fo.identity = "member-helper";
  fo.log = [](std::string_view) {};
  auto fabric = rdma::Fabric::open(fo);
  if (!fabric) return 69;
  MembershipOptions o;
  o.meta_host = hp->first;
  o.meta_port = hp->second;
  const char* mc = std::getenv("FTM_MEMBER_MC");
  o.memcached_addr = mc ? mc : "127.0.0.1:11211";
  o.fabric_addr = "127.0.0.1:" + std::to_string(40000 + getpid() % 20000);
  o.backoff_initial = milliseconds(20);
  o.backoff_max = milliseconds(200);
  o.log = [](std::string_view l) {
    std::fprintf(stderr, "%.*s\n", int(l.size()), l.data());
  };
  static std::atomic<Membership*> self{nullptr};
  o.on_map = [](std::shared_ptr<const ClusterMap> m) {
    Membership* me = self.load();
    std::printf("node %u epoch %llu\n", me ? me->node_id() : 0,
                (unsigned long long)m->epoch());
    std::fflush(stdout);
  };
  auto member = Membership::start(**fabric, o);
  self.store(member.get());
  for (;;) pause();
}

[[maybe_unused]] const int kMemberHelper = [] {
  if (const char* meta = std::getenv("FTM_MEMBER_HELPER"))
    _exit(run_member_helper(meta));
  return 0;
}();


TEST_F(MetaServerTest, ThreeJoinThenAFourthAndEveryoneFollows) {
  for (int i = 0; i < 3; i++) add_member();
  // Joins are serialized: each raises the epoch once.
  for (auto& m : members_) ASSERT_TRUE(m->wait_for_map(milliseconds(5000)));
  for (int i = 0; i < 100 && meta_->map()->servers().size() < 3; i++)
    std::this_thread::sleep_for(milliseconds(20));
  ASSERT_EQ(meta_->map()->servers().size(), 3u);
  EXPECT_EQ(meta_->map()->epoch(), 3u);
  expect_converged();
  std::set<uint32_t> ids;
  for (auto& m : members_) ids.insert(m->node_id());
  EXPECT_EQ(ids, (std::set<uint32_t>{1, 2, 3}));
  for (auto& m : members_) EXPECT_TRUE(m->connected());

  // A fourth: everyone moves to the new epoch, the joiner takes ~P/4.
  uint64_t before = meta_->map()->epoch();
  Membership& fourth = add_member();
  ASSERT_TRUE(fourth.wait_for_map(milliseconds(5000), before + 1));
  EXPECT_EQ(meta_->map()->epoch(), before + 1);
  expect_converged();
  EXPECT_EQ(fourth.node_id(), 4u);
  auto m = meta_->map();
  EXPECT_EQ(m->primary_count(4), 256u);
  EXPECT_EQ(m->server(4)->memcached_addr, "127.0.0.1:11214");
  // MapCache sees the same map without locking per call.
  MapCache cache(*members_[0]);
  const ClusterMap* cm = cache.get();
  ASSERT_NE(cm, nullptr);
  EXPECT_EQ(cm->epoch(), m->epoch());
  EXPECT_EQ(cache.get(), cm);  // unchanged: same object
}

TEST_F(MetaServerTest, RestartReloadsMapAndEpochAndMembersRejoin) {
  for (int i = 0; i < 3; i++) add_member();
  for (int i = 0; i < 250 && meta_->map()->epoch() < 3; i++)
    std::this_thread::sleep_for(milliseconds(20));
  expect_converged();
  ClusterMap before = *meta_->map();
  uint16_t port = meta_->port();

  meta_.reset();  // meta server goes away; members keep their map
  for (int i = 0; i < 200; i++) {
    bool any = false;
    for (auto& m : members_) any |= m->connected();
    if (!any) break;
    std::this_thread::sleep_for(milliseconds(10));
  }
  for (auto& m : members_) {
    EXPECT_FALSE(m->connected());
    EXPECT_EQ(m->epoch(), before.epoch());
  }
  auto on_disk = load_map(dir_ + "/state");
  ASSERT_TRUE(on_disk) << on_disk.status().to_string();
  ASSERT_TRUE(on_disk->has_value());
  EXPECT_TRUE(**on_disk == before);

  start_meta(port);
  ASSERT_TRUE(meta_);
  EXPECT_TRUE(*meta_->map() == before) << "map or epoch changed on reload";
  // Members reconnect with their node ids; nothing changed, so the epoch
  // stays where it was.
  for (int i = 0; i < 300; i++) {
    bool all = true;
    for (auto& m : members_) all &= m->connected();
    if (all) break;
    std::this_thread::sleep_for(milliseconds(20));
  }
  for (auto& m : members_) EXPECT_TRUE(m->connected());
  EXPECT_EQ(meta_->map()->epoch(), before.epoch());
  StatusMsg st = meta_->status();
  ASSERT_EQ(st.servers.size(), 3u);
  for (auto& s : st.servers) EXPECT_TRUE(s.connected) << s.node_id;
  expect_converged();
}

TEST_F(MetaServerTest, StatusOverTheWireAndRefusals) {
  Membership& a = add_member();
  ASSERT_TRUE(a.wait_for_map(milliseconds(5000)));
  auto ch = ctl_channel();
  ASSERT_TRUE(ch);
  ASSERT_TRUE(ch->send(StatusReqMsg{}, 77));
  auto env = ch->receive(milliseconds(5000));
  ASSERT_TRUE(env) << env.status().to_string();
  EXPECT_EQ(env->seq, 77u);
  auto* st = std::get_if<StatusMsg>(&env->msg);
  ASSERT_NE(st, nullptr);
  EXPECT_EQ(st->map.epoch(), 1u);
  ASSERT_EQ(st->servers.size(), 1u);
  EXPECT_TRUE(st->servers[0].connected);
  EXPECT_EQ(st->servers[0].replication, "n/a");

  // A second server claiming node 1 while it is connected: refused, typed.
  ASSERT_TRUE(ch->send(JoinMsg{1, 0, "127.0.0.1:1", "127.0.0.1:2"}, 78));
  env = ch->receive(milliseconds(5000));
  ASSERT_TRUE(env) << env.status().to_string();
  auto* err = std::get_if<ErrorMsg>(&env->msg);
  ASSERT_NE(err, nullptr);
  EXPECT_EQ(err->code, ErrorMsg::kNodeBusy);
  EXPECT_EQ(meta_->map()->epoch(), 1u);

  // Garbage: the meta server says why, drops that peer, and keeps serving.
  auto raw = client_fabric_->connect("127.0.0.1", meta_->port());
  ASSERT_TRUE(raw);
  std::vector<std::byte> junk(100, std::byte(0x5a));
  auto mr = client_fabric_->register_memory(junk, false, false);
  ASSERT_TRUE(mr);
  std::vector<std::byte> in(kMaxMessageSize);
  auto in_mr = client_fabric_->register_memory(in, false, false);
  ASSERT_TRUE(in_mr);
  rdma::Op r = (*raw)->recv(**in_mr, 0, in.size(), milliseconds(5000));
  ASSERT_TRUE((*raw)->send(**mr, 0, junk.size()).wait());
  ASSERT_TRUE(r.wait());
  auto reply = decode({in.data(), r.bytes()});
  ASSERT_TRUE(reply) << reply.status().to_string();
  ASSERT_TRUE(std::holds_alternative<ErrorMsg>(reply->msg));
  EXPECT_NE(std::get<ErrorMsg>(reply->msg).text.find("corrupt"),
            std::string::npos);
  ASSERT_TRUE(ch->send(StatusReqMsg{}, 79));
  env = ch->receive(milliseconds(5000));
  ASSERT_TRUE(env) << env.status().to_string();
  EXPECT_TRUE(std::holds_alternative<StatusMsg>(env->msg));
}

TEST_F(MetaServerTest, StateDirIsLockedAndPartitionsAreFixed) {
  MetaServerOptions o;
  o.listen_port = 0;
  o.state_dir = dir_ + "/state";
  o.log = [](std::string_view) {};
  auto second = MetaServer::start(*meta_fabric_, o);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.status().code(), ClusterErrc::kIo);
  EXPECT_NE(second.status().message().find("in use"), std::string::npos);

  meta_.reset();
  o.partitions = 512;
  auto conflicting = MetaServer::start(*meta_fabric_, o);
  ASSERT_FALSE(conflicting);
  EXPECT_EQ(conflicting.status().code(), ClusterErrc::kInvalidArgument);
  o.partitions = 1024;
  o.replicas = 3;  // allowed: placement recomputed
  auto ok = MetaServer::start(*meta_fabric_, o);
  ASSERT_TRUE(ok) << ok.status().to_string();
  EXPECT_EQ((*ok)->map()->replicas(), 3u);
}

TEST_F(MetaServerTest, MembershipRetriesUntilTheMetaServerAppears) {
  uint16_t port = meta_->port();
  meta_.reset();
  Membership& a = add_member();
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_FALSE(a.connected());
  EXPECT_EQ(a.map(), nullptr);
  start_meta(port);
  ASSERT_TRUE(a.wait_for_map(milliseconds(5000)));
  EXPECT_EQ(a.node_id(), 1u);
  // stop() is prompt even while connected.
  auto t0 = std::chrono::steady_clock::now();
  a.stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, milliseconds(2000));
  EXPECT_NE(a.map(), nullptr);  // last map stays readable
}


// Issue 6: members write heartbeats into the meta server's array (one-sided
// writes over their control connection); the detector holds each to its own
// adaptive timeout; a member that stops is suspected, with the reason.
TEST_F(MetaServerTest, HeartbeatsKeepMembersAliveAndSilenceIsSuspected) {
  // A floor well above the scheduling stalls of a loaded 2-core test host
  // (the 20 ms default is for servers with cores of their own).
  meta_.reset();
  detector_floor_ = std::chrono::milliseconds(250);
  bootstrap_servers_ = 2;  // a's and b's primaries stay where they are
  start_meta(0);
  Membership& a = add_member();
  Membership& b = add_member();
  ASSERT_TRUE(eventually([&] { return meta_->map()->servers().size() == 2; }, 5000));
  expect_converged();
  uint32_t ida = a.node_id(), idb = b.node_id();
  ASSERT_TRUE(eventually([&] {
    return status_of(*meta_, ida).heartbeating && status_of(*meta_, idb).heartbeating;
  }, 5000)) << "no heartbeat reached the meta server\n" << logs();
  // Alive for a while: never suspected, ages well under the timeout.
  for (int i = 0; i < 40; i++) {
    for (uint32_t id : {ida, idb}) {
      ServerStatus s = status_of(*meta_, id);
      ASSERT_FALSE(s.suspected) << "node " << id << ": " << s.suspicion_reason;
      EXPECT_GT(s.heartbeat_timeout_us, 250000u);  // interval + the floor
    }
    std::this_thread::sleep_for(milliseconds(10));
  }
  // b stops (its heartbeats with it): suspected within about its timeout,
  // and since a is alive, declared failed and failed over (issue 6).
  auto t0 = std::chrono::steady_clock::now();
  const uint64_t epoch = meta_->map()->epoch();
  b.stop();
  auto failed = [&] {
    auto map = meta_->map();  // s points into it: keep it alive
    const ServerInfo* s = map->server(idb);
    return s != nullptr && s->state == ServerState::kFailed;
  };
  ASSERT_TRUE(eventually(failed, 5000)) << "a silent member was never declared failed";
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                  .count();
  std::printf("[ info ] silent member declared failed after %.0f ms\n", ms);
  auto m = meta_->map();
  EXPECT_EQ(m->epoch(), epoch + 1);
  EXPECT_EQ(m->primary_count(idb) + m->secondary_count(idb), 0u);
  EXPECT_EQ(m->primary_count(ida), m->partitions()) << "every partition promoted to a";
  {
    std::lock_guard g(log_mu_);
    EXPECT_NE(log_.find("node " + std::to_string(idb) + " declared failed: no heartbeat"),
              std::string::npos)
        << log_;
  }
  EXPECT_FALSE(status_of(*meta_, ida).suspected);
  // The status travels over the wire with the failed state.
  auto ch = ctl_channel();
  ASSERT_TRUE(ch);
  ASSERT_TRUE(ch->send(StatusReqMsg{}));
  auto env = ch->receive(milliseconds(5000));
  ASSERT_TRUE(env) << env.status().to_string();
  auto* st = std::get_if<StatusMsg>(&env->msg);
  ASSERT_NE(st, nullptr);
  ASSERT_NE(st->map.server(idb), nullptr);
  EXPECT_EQ(st->map.server(idb)->state, ServerState::kFailed);
  // b comes back: refused until it says it is empty, then a new server with
  // secondaries only.
  Membership& b2 = add_member(idb);
  ASSERT_TRUE(eventually([&] { return b2.connected(); }, 5000));
  m = meta_->map();
  EXPECT_EQ(m->server(idb)->state, ServerState::kUp);
  EXPECT_EQ(m->primary_count(idb), 0u);
  EXPECT_GT(m->secondary_count(idb), 0u);
}

// A member declared failed while it runs (a stall, a cut link) reads its
// fence, empties itself and rejoins saying so (JoinMsg::kWasFenced): the
// meta server counts the failover as a false suspicion and widens that
// node's timeout. Before, its detector state was forgotten with the
// failure, and a loaded host's stalling server was failed over again and
// again at the floor's timeout.
TEST_F(MetaServerTest, MemberFailedWhileAliveRejoinsWithAWiderTimeout) {
  meta_.reset();
  detector_floor_ = std::chrono::milliseconds(250);
  bootstrap_servers_ = 2;
  start_meta(0);
  Membership& a = add_member();
  Membership& b = add_member();
  ASSERT_TRUE(eventually([&] { return meta_->map()->servers().size() == 2; }, 5000));
  expect_converged();  // both have their JOIN_OK: node ids known
  const uint32_t ida = a.node_id(), idb = b.node_id();
  ASSERT_TRUE(eventually([&] {
    return status_of(*meta_, ida).heartbeating && status_of(*meta_, idb).heartbeating;
  }, 5000)) << logs();
  const uint64_t before = status_of(*meta_, idb).heartbeat_timeout_us;
  ASSERT_LT(before, 400000u);  // interval + the 250 ms floor
  const uint64_t epoch = meta_->map()->epoch();
  meta_->declare_failed(idb, "declared by the test");
  ASSERT_EQ(meta_->map()->server(idb)->state, ServerState::kFailed);
  // b learns its fence, drops its data and joins again under its id.
  ASSERT_TRUE(eventually([&] {
    const ServerInfo* s = meta_->map()->server(idb);
    return s != nullptr && s->state == ServerState::kUp && meta_->map()->epoch() > epoch + 1 &&
           status_of(*meta_, idb).heartbeating;
  }, 5000)) << "the fenced member did not rejoin\n" << logs();
  const ServerStatus s = status_of(*meta_, idb);
  EXPECT_EQ(s.false_suspicions, 1u);
  EXPECT_GT(s.heartbeat_timeout_us, 2 * 250000u) << "widen 2: interval + 2 x floor";
  EXPECT_EQ(status_of(*meta_, ida).false_suspicions, 0u);
  std::lock_guard g(log_mu_);
  EXPECT_NE(log_.find("node " + std::to_string(idb) + " was declared failed but is alive"),
            std::string::npos)
      << log_;
}

// A member fenced while alive drops its data and joins again; until the
// map of that JOIN_OK is installed it still holds the old one, in which it
// may be primary. Its lease must stay invalid until then, however fresh
// its heartbeats: a heartbeat acknowledged during the install (ring set-up
// takes a while; 50 ms here) renewed it, and reads by the old map answered
// misses from the emptied store (CI, test_sigstop_primary_never_serves_
// its_lost_keys). This failed before Lease::suspend.
TEST_F(MetaServerTest, FencedMemberIsNoPrimaryUntilItsNewMapIsInstalled) {
  meta_.reset();
  detector_floor_ = std::chrono::milliseconds(250);
  bootstrap_servers_ = 2;
  start_meta(0);
  Lease lease;
  std::atomic<uint64_t> fenced_at{0};
  std::atomic<int> valid_during_install{0}, installs_after_fence{0};
  add_member();
  Membership& b = add_member(0, false, {}, [&](MembershipOptions& o) {
    o.lease = &lease;
    o.on_fenced = [&] { fenced_at.store(1); };
    o.on_map = [&](std::shared_ptr<const ClusterMap>) {
      if (fenced_at.load() == 0) return;
      std::this_thread::sleep_for(milliseconds(50));
      installs_after_fence++;
      if (lease.valid()) valid_during_install++;
    };
  });
  ASSERT_TRUE(eventually([&] { return meta_->map()->servers().size() == 2; }, 5000));
  expect_converged();
  ASSERT_TRUE(eventually([&] { return lease.valid(); }, 5000)) << "no heartbeat renewed it";
  meta_->declare_failed(b.node_id(), "declared by the test");
  ASSERT_TRUE(eventually([&] { return installs_after_fence.load() > 0; }, 5000)) << logs();
  EXPECT_EQ(valid_during_install.load(), 0) << "a primary by its pre-fence map, data dropped";
  ASSERT_TRUE(eventually([&] { return lease.valid(); }, 5000))
      << "the lease never came back after the new map\n" << logs();
}

// Issue 7: a metadata server cut off from everyone sees every heartbeat
// stop at once, but each server is suspected at its own timeout. Members
// falling silent 40 ms apart stand for that: when the first one's timeout
// runs out the others are silent too, though not suspected yet. Nobody may
// be declared failed (before the fix, the first one was: the others did
// not count as suspected).
TEST_F(MetaServerTest, EveryoneSilentFailsNobody) {
  meta_.reset();
  detector_floor_ = std::chrono::milliseconds(250);  // see the test above
  bootstrap_servers_ = 3;
  start_meta(0);
  Membership* m[3];
  for (auto& x : m) x = &add_member();
  ASSERT_TRUE(eventually([&] { return meta_->map()->servers().size() == 3; }, 5000));
  expect_converged();
  ASSERT_TRUE(eventually([&] {
    for (auto* x : m)
      if (!status_of(*meta_, x->node_id()).heartbeating) return false;
    return true;
  }, 5000)) << "no heartbeat reached the meta server";
  const uint64_t epoch = meta_->map()->epoch();
  for (auto* x : m) {
    x->stop();
    std::this_thread::sleep_for(milliseconds(40));
  }
  // Several timeouts: each silent member is suspected, held, watched afresh
  // and suspected again.
  std::this_thread::sleep_for(milliseconds(1500));
  auto map = meta_->map();
  EXPECT_EQ(map->epoch(), epoch);
  for (auto* x : m)
    EXPECT_EQ(map->server(x->node_id())->state, ServerState::kUp) << "node " << x->node_id();
  std::lock_guard g(log_mu_);
  EXPECT_NE(log_.find("every other server is silent too"), std::string::npos) << log_;
  EXPECT_EQ(log_.find("declared failed"), std::string::npos) << log_;
}

// Issue 6: once bootstrap_servers have joined, live primaries never move
// (that would need a handoff of writes in flight): a later server takes
// secondaries only.
TEST_F(MetaServerTest, FourthJoinAfterBootstrapTakesSecondariesOnly) {
  meta_.reset();
  bootstrap_servers_ = 3;
  start_meta(0);
  for (int i = 0; i < 3; i++) add_member();
  ASSERT_TRUE(eventually([&] { return meta_->map()->servers().size() == 3; }, 5000));
  auto before = meta_->map();
  Membership& d = add_member();
  ASSERT_TRUE(eventually([&] { return meta_->map()->servers().size() == 4; }, 5000));
  ASSERT_TRUE(d.wait_for_map(milliseconds(5000)));
  auto after = meta_->map();
  for (uint32_t p = 0; p < after->partitions(); p++)
    ASSERT_EQ(after->primary(p), before->primary(p)) << "partition " << p;
  EXPECT_EQ(after->primary_count(d.node_id()), 0u);
  EXPECT_GE(after->secondary_count(d.node_id()), after->partitions() / 4 - 1);
}

// Issue 6: a spare holds nothing until a failure, then takes every copy the
// failure left to be made; its copies count as recovering until it REPORTs
// them complete at the epoch that assigned them.
TEST_F(MetaServerTest, SpareTakesTheLostCopiesAndReportsThemRecovered) {
  meta_.reset();
  detector_floor_ = std::chrono::milliseconds(250);  // see the heartbeat test
  bootstrap_servers_ = 2;
  start_meta(0);
  Membership& a = add_member();
  Membership& b = add_member();
  ASSERT_TRUE(eventually([&] { return meta_->map()->servers().size() == 2; }, 5000));
  std::atomic<bool> recovered{false};
  std::atomic<Membership*> spare_self{nullptr};
  Membership& sp = add_member(0, true, [&]() -> ReportMsg {
    Membership* me = spare_self.load();
    if (!recovered.load() || me == nullptr) return ReportMsg{"n/a", 0, {}};
    return ReportMsg{"caught up", me->epoch(), {}};
  });
  spare_self.store(&sp);
  ASSERT_TRUE(eventually([&] { return meta_->map()->servers().size() == 3; }, 5000));
  ASSERT_TRUE(eventually([&] { return sp.connected(); }, 5000));
  const uint32_t ids = sp.node_id(), ida = a.node_id(), idb = b.node_id();
  auto before = meta_->map();
  EXPECT_EQ(before->server(ids)->state, ServerState::kSpare);
  EXPECT_EQ(before->primary_count(ids) + before->secondary_count(ids), 0u);
  expect_converged();
  b.stop();
  ASSERT_TRUE(eventually([&] {
    const ServerInfo* s = meta_->map()->server(idb);
    return s != nullptr && s->state == ServerState::kFailed;
  }, 5000)) << "b was never declared failed";
  auto m = meta_->map();
  EXPECT_EQ(m->epoch(), before->epoch() + 1) << "one epoch for the failure and the spare";
  EXPECT_EQ(m->server(ids)->state, ServerState::kUp);
  EXPECT_EQ(m->primary_count(ids), 0u);
  // With two servers every partition lost a copy: all go to the spare, and
  // a (promoted everywhere) keeps no secondary.
  EXPECT_EQ(m->secondary_count(ids), m->partitions());
  EXPECT_EQ(m->primary_count(ida), m->partitions());
  {
    std::lock_guard g(log_mu_);
    EXPECT_NE(log_.find("spare node " + std::to_string(ids) + " takes"), std::string::npos)
        << log_;
  }
  // Not reported yet: every copy of the spare is still being recovered.
  EXPECT_EQ(status_of(*meta_, ids).recovering.size(), m->partitions());
  EXPECT_TRUE(status_of(*meta_, ida).recovering.empty());
  recovered.store(true);
  ASSERT_TRUE(eventually([&] { return status_of(*meta_, ids).recovering.empty(); }, 5000))
      << "a REPORT at the new epoch with nothing incomplete did not clear the copies";
  // The promoted spare stays up when it reconnects (its JOIN still says
  // kSpare): here after a meta server restart.
  const uint16_t port = port_;
  const uint64_t epoch = meta_->map()->epoch();
  meta_.reset();
  start_meta(port);
  ASSERT_TRUE(eventually([&] { return sp.connected() && a.connected(); }, 5000));
  ASSERT_TRUE(eventually([&] { return status_of(*meta_, ids).connected; }, 5000));
  EXPECT_EQ(meta_->map()->epoch(), epoch) << "the reconnect changed the map";
  EXPECT_EQ(meta_->map()->server(ids)->state, ServerState::kUp);
  EXPECT_EQ(meta_->map()->secondary_count(ids), m->partitions());
}

TEST(Heartbeat, SlotRoundTripsAndATornSlotIsRefused) {
  alignas(8) std::byte slot[kHeartbeatSlotSize] = {};
  EXPECT_FALSE(decode_heartbeat(slot));  // never written
  encode_heartbeat({0x1234, 7}, slot);
  auto v = decode_heartbeat(slot);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->incarnation, 0x1234u);
  EXPECT_EQ(v->counter, 7u);
  // The counter word of the next write landed, the check word not yet.
  alignas(8) std::byte next[kHeartbeatSlotSize] = {};
  encode_heartbeat({0x1234, 8}, next);
  std::memcpy(slot + 8, next + 8, 8);
  EXPECT_FALSE(decode_heartbeat(slot));
  std::memcpy(slot + 16, next + 16, 8);
  ASSERT_TRUE(decode_heartbeat(slot));
  EXPECT_EQ(decode_heartbeat(slot)->counter, 8u);
}

}  // namespace
}  // namespace ftm::repl
