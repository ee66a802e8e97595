// The peer mesh with three in-process "data servers" (each its own fabric,
// mesh and membership client) and a real MetaServer, over the tcp provider
// on 127.0.0.1: round trips, per-node ordering, error replies, timeouts,
// peer loss, reconnects, and the ctl's one-shot request().
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "rdma/connection.h"
#include "rdma/fabric_domain.h"
#include "replication/membership.h"
#include "replication/meta_server.h"
#include "replication/peer_mesh.h"
#include "t/unit/test_fabric.h"

namespace ftm::repl {
namespace {

using std::chrono::milliseconds;

// Collects Done callbacks; wait() returns once `n` have fired.
struct Replies {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::pair<rdma::Status, std::string>> got;

  static void done(void* ctx, const rdma::Status& st, std::string_view reply) {
    auto* r = static_cast<Replies*>(ctx);
    std::lock_guard g(r->mu);
    r->got.emplace_back(st, std::string(reply));
    r->cv.notify_all();
  }
  bool wait(size_t n, milliseconds t = milliseconds(10000)) {
    std::unique_lock g(mu);
    return cv.wait_for(g, t, [&] { return got.size() >= n; });
  }
};

struct Node {
  std::unique_ptr<rdma::Fabric> fabric;
  std::unique_ptr<PeerMesh> mesh;
  std::unique_ptr<Membership> member;
  uint32_t id() const { return member->node_id(); }
};

class PeerMeshTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ftm-mesh-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    meta_fabric_ = open_fabric("meta");
    ASSERT_TRUE(meta_fabric_);
    MetaServerOptions o;
    o.listen_port = 0;
    o.state_dir = dir_ + "/state";
    o.log = [](std::string_view) {};
    auto ms = MetaServer::start(*meta_fabric_, o);
    ASSERT_TRUE(ms) << ms.status().to_string();
    meta_ = std::move(ms).value();
  }
  void TearDown() override {
    nodes_.clear();
    meta_.reset();
    std::filesystem::remove_all(dir_);
  }

  // A node that joined the cluster; its mesh has the echo handler unless
  // `handlers` is false.
  Node& add_node(PeerMesh::Options mo = {}, uint32_t node_id = 0, bool handlers = true) {
    auto n = std::make_unique<Node>();
    n->fabric = open_fabric("node" + std::to_string(nodes_.size() + 1));
    mo.fabric = n->fabric.get();
    auto mesh = PeerMesh::start(mo);
    EXPECT_TRUE(mesh) << mesh.status().to_string();
    n->mesh = std::move(mesh).value();
    if (handlers) {
      n->mesh->on(PeerRpc::kDigest, [](uint32_t from, std::string_view p,
                                       PeerMesh::Responder respond) {
        respond("from " + std::to_string(from) + ": " + std::string(p));
      });
    }
    MembershipOptions o;
    o.meta_port = meta_->port();
    o.node_id = node_id;
    o.memcached_addr = "127.0.0.1:" + std::to_string(20000 + nodes_.size());
    o.fabric_addr = "127.0.0.1:" + std::to_string(n->mesh->port());
    o.backoff_initial = milliseconds(20);
    o.backoff_max = milliseconds(100);
    o.log = [](std::string_view) {};
    n->member = Membership::start(*n->fabric, o);
    n->mesh->set_membership(n->member.get());
    EXPECT_TRUE(n->member->wait_for_map(milliseconds(5000)));
    nodes_.push_back(std::move(n));
    return *nodes_.back();
  }

  // Waits until every node's map lists every node with its current fabric
  // address.
  void wait_converged() {
    auto deadline = std::chrono::steady_clock::now() + milliseconds(5000);
    for (;;) {
      bool all = true;
      for (auto& a : nodes_) {
        auto m = a->member->map();
        for (auto& b : nodes_) {
          const ServerInfo* s = m ? m->server(b->id()) : nullptr;
          all &= s != nullptr &&
                 s->fabric_addr == "127.0.0.1:" + std::to_string(b->mesh->port());
        }
      }
      if (all) return;
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "maps did not converge";
      std::this_thread::sleep_for(milliseconds(10));
    }
  }

  std::string dir_;
  std::unique_ptr<rdma::Fabric> meta_fabric_;
  std::unique_ptr<MetaServer> meta_;
  std::vector<std::unique_ptr<Node>> nodes_;
};

TEST_F(PeerMeshTest, RoundTripsBetweenThreeNodes) {
  Node& a = add_node();
  Node& b = add_node();
  Node& c = add_node();
  wait_converged();
  Replies r;
  a.mesh->call(b.id(), PeerRpc::kDigest, "hello b", &Replies::done, &r);
  a.mesh->call(c.id(), PeerRpc::kDigest, "hello c", &Replies::done, &r);
  c.mesh->call(a.id(), PeerRpc::kDigest, "hello", " a", &Replies::done, &r);
  ASSERT_TRUE(r.wait(3));
  std::multiset<std::string> got;
  for (auto& [st, reply] : r.got) {
    EXPECT_TRUE(st.is_ok()) << st.to_string();
    got.insert(reply);
  }
  std::string ida = std::to_string(a.id()), idc = std::to_string(c.id());
  EXPECT_EQ(got, (std::multiset<std::string>{"from " + ida + ": hello b",
                                             "from " + ida + ": hello c",
                                             "from " + idc + ": hello a"}));
  auto conn = a.mesh->connection(b.id());
  ASSERT_TRUE(conn) << conn.status().to_string();
  EXPECT_TRUE((*conn)->status().is_ok());
}

TEST_F(PeerMeshTest, CallsToOneNodeAreHandledAndAnsweredInOrder) {
  Node& a = add_node();
  Node& b = add_node(PeerMesh::Options{}, 0, false);
  wait_converged();
  std::mutex mu;
  std::vector<int> seen;
  b.mesh->on(PeerRpc::kForward, [&](uint32_t, std::string_view p, PeerMesh::Responder respond) {
    {
      std::lock_guard g(mu);
      seen.push_back(std::stoi(std::string(p)));
    }
    respond(p);
  });
  constexpr int kCalls = 3000;
  Replies r;
  // Several threads, each in order; the handler must see each thread's
  // calls in its order (and all of them).
  std::vector<std::thread> ts;
  for (int t = 0; t < 3; t++) {
    ts.emplace_back([&, t] {
      for (int i = t; i < kCalls; i += 3)
        a.mesh->call(b.id(), PeerRpc::kForward, std::to_string(i), &Replies::done, &r);
    });
  }
  for (auto& t : ts) t.join();
  ASSERT_TRUE(r.wait(kCalls));
  for (auto& [st, reply] : r.got) ASSERT_TRUE(st.is_ok()) << st.to_string();
  std::lock_guard g(mu);
  ASSERT_EQ(seen.size(), size_t(kCalls));
  int last[3] = {-1, -1, -1};
  for (int v : seen) {
    EXPECT_GT(v, last[v % 3]);
    last[v % 3] = v;
  }
}

TEST_F(PeerMeshTest, UnknownTypeAndUnknownNodeFail) {
  PeerMesh::Options mo;
  mo.handler_wait = milliseconds(50);
  Node& a = add_node(mo);
  Node& b = add_node(mo);
  wait_converged();
  Replies r;
  a.mesh->call(b.id(), PeerRpc::kGetReplica, "k", &Replies::done, &r);
  ASSERT_TRUE(r.wait(1));
  EXPECT_FALSE(r.got[0].first.is_ok());
  EXPECT_NE(r.got[0].first.message().find("no handler"), std::string::npos)
      << r.got[0].first.to_string();
  a.mesh->call(999, PeerRpc::kDigest, "x", &Replies::done, &r);
  ASSERT_TRUE(r.wait(2));
  EXPECT_FALSE(r.got[1].first.is_ok());
  EXPECT_NE(r.got[1].first.to_string().find("not in the cluster map"), std::string::npos)
      << r.got[1].first.to_string();
  std::string big(mo.max_message + 1, 'x');
  a.mesh->call(b.id(), PeerRpc::kDigest, big, &Replies::done, &r);
  ASSERT_TRUE(r.wait(3));
  EXPECT_EQ(r.got[2].first.code(), rdma::Code::kInvalidArgument);
}

TEST_F(PeerMeshTest, UnansweredCallTimesOut) {
  PeerMesh::Options mo;
  mo.call_timeout = milliseconds(200);
  Node& a = add_node(mo);
  Node& b = add_node(mo, 0, false);
  wait_converged();
  std::mutex mu;
  std::vector<PeerMesh::Responder> held;
  b.mesh->on(PeerRpc::kDigest, [&](uint32_t, std::string_view, PeerMesh::Responder respond) {
    std::lock_guard g(mu);
    held.push_back(std::move(respond));
  });
  Replies r;
  auto t0 = std::chrono::steady_clock::now();
  a.mesh->call(b.id(), PeerRpc::kDigest, "x", &Replies::done, &r);
  ASSERT_TRUE(r.wait(1));
  EXPECT_EQ(r.got[0].first.code(), rdma::Code::kTimeout) << r.got[0].first.to_string();
  EXPECT_GE(std::chrono::steady_clock::now() - t0, milliseconds(150));
  // A late answer is dropped; the link still works.
  {
    std::lock_guard g(mu);
    for (auto& h : held) h("late");
    held.clear();
  }
  b.mesh->on(PeerRpc::kGetReplica, [](uint32_t, std::string_view p,
                                      PeerMesh::Responder respond) { respond(p); });
  a.mesh->call(b.id(), PeerRpc::kGetReplica, "again", &Replies::done, &r);
  ASSERT_TRUE(r.wait(2));
  EXPECT_TRUE(r.got[1].first.is_ok()) << r.got[1].first.to_string();
  EXPECT_EQ(r.got[1].second, "again");
}

TEST_F(PeerMeshTest, PeerLossFailsPendingCallsAndAReconnectFollows) {
  Node& a = add_node();
  Node& b = add_node(PeerMesh::Options{}, 0, false);
  wait_converged();
  uint32_t bid = b.id();
  std::mutex mu;
  std::vector<PeerMesh::Responder> held;
  b.mesh->on(PeerRpc::kDigest, [&](uint32_t, std::string_view, PeerMesh::Responder respond) {
    std::lock_guard g(mu);
    held.push_back(std::move(respond));
  });
  Replies r;
  a.mesh->call(bid, PeerRpc::kDigest, "never answered", &Replies::done, &r);
  // Wait until b holds it, then b "dies": its mesh closes every link.
  for (int i = 0; i < 500; i++) {
    std::lock_guard g(mu);
    if (!held.empty()) break;
    std::this_thread::sleep_for(milliseconds(5));
  }
  b.mesh->close();
  ASSERT_TRUE(r.wait(1, milliseconds(3000)));
  EXPECT_FALSE(r.got[0].first.is_ok());
  EXPECT_EQ(r.got[0].first.code(), rdma::Code::kPeerLost) << r.got[0].first.to_string();
  held.clear();

  // b comes back on a new mesh port under the same node id; once the map
  // has its new address, a's next call reconnects.
  b.member->stop();
  nodes_.back().reset();
  nodes_.pop_back();
  add_node(PeerMesh::Options{}, bid);
  wait_converged();
  a.mesh->call(bid, PeerRpc::kDigest, "back", &Replies::done, &r);
  ASSERT_TRUE(r.wait(2));
  EXPECT_TRUE(r.got[1].first.is_ok()) << r.got[1].first.to_string();
  EXPECT_EQ(r.got[1].second, "from " + std::to_string(a.id()) + ": back");
}

TEST_F(PeerMeshTest, ReplicationConnectionIsSeparateAndRemadeWhenBroken) {
  Node& a = add_node();
  Node& b = add_node();
  wait_converged();
  auto conn = a.mesh->connection(b.id());
  ASSERT_TRUE(conn) << conn.status().to_string();
  EXPECT_TRUE((*conn)->status().is_ok());
  auto same = a.mesh->connection(b.id());
  ASSERT_TRUE(same);
  EXPECT_EQ(*same, *conn);
  (*conn)->close();
  EXPECT_FALSE((*conn)->status().is_ok());
  // RPCs do not share it: they still work.
  Replies r;
  a.mesh->call(b.id(), PeerRpc::kDigest, "1", &Replies::done, &r);
  ASSERT_TRUE(r.wait(1));
  EXPECT_TRUE(r.got[0].first.is_ok()) << r.got[0].first.to_string();
  // The broken one stays allocated (a LogWriter may hold it); the next
  // connection() makes a fresh one.
  auto again = a.mesh->connection(b.id());
  ASSERT_TRUE(again) << again.status().to_string();
  EXPECT_NE(*again, *conn);
  EXPECT_TRUE((*again)->status().is_ok());
  EXPECT_FALSE(a.mesh->connection(999));
}

TEST_F(PeerMeshTest, OneShotRequestFromACtlClient) {
  PeerMesh::Options mo;
  mo.handler_wait = milliseconds(100);
  Node& a = add_node(mo);
  auto ctl = open_fabric("ctl");
  auto reply = PeerMesh::request(*ctl, "127.0.0.1", a.mesh->port(), PeerRpc::kDigest, "status",
                                 milliseconds(3000));
  ASSERT_TRUE(reply) << reply.status().to_string();
  EXPECT_EQ(*reply, "from 0: status");
  auto bad = PeerMesh::request(*ctl, "127.0.0.1", a.mesh->port(), PeerRpc::kRingOpen, "",
                               milliseconds(5000));
  EXPECT_FALSE(bad);
}

TEST_F(PeerMeshTest, CallsAfterCloseFailWithoutBlocking) {
  Node& a = add_node();
  a.mesh->close();
  Replies r;
  a.mesh->call(a.id(), PeerRpc::kDigest, "x", &Replies::done, &r);
  ASSERT_TRUE(r.wait(1));
  EXPECT_EQ(r.got[0].first.code(), rdma::Code::kClosed);
  EXPECT_FALSE(a.mesh->connection(a.id()));
}

}  // namespace
}  // namespace ftm::repl
