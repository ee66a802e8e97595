// ClusterNode (the data server's cluster runtime) with two in-process nodes,
// each with its own Store, and a real MetaServer over the tcp provider:
// routing, forwarding text and binary requests to the primary, replication
// to the secondary, the "not primary" refusal of a misrouted forward, and
// the errors before a map exists.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>

#include "rdma/fabric_domain.h"
#include "replication/cluster_node.h"
#include "replication/inspect.h"
#include "replication/meta_server.h"
#include "replication/peer_mesh.h"
#include "src/clock.h"
#include "src/settings.h"
#include "src/store.h"

namespace ftm::repl {
namespace {

using std::chrono::milliseconds;

struct Forwarded {
  std::mutex mu;
  std::condition_variable cv;
  bool fired = false;
  bool ok = false;
  std::string reply;

  static void done(void* ctx, bool ok, std::string_view reply) {
    auto* f = static_cast<Forwarded*>(ctx);
    std::lock_guard g(f->mu);
    f->fired = true;
    f->ok = ok;
    f->reply.assign(reply);
    f->cv.notify_all();
  }
  bool wait() {
    std::unique_lock g(mu);
    return cv.wait_for(g, milliseconds(10000), [&] { return fired; });
  }
};

class ClusterNodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    clock::init();
    char tmpl[] = "/tmp/ftm-node-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    rdma::FabricOptions fo;
    fo.provider = rdma::ProviderChoice::kTcp;
    fo.local_addr = "127.0.0.1";
    fo.log = [](std::string_view) {};
    auto f = rdma::Fabric::open(fo);
    ASSERT_TRUE(f) << f.status().to_string();
    meta_fabric_ = std::move(f).value();
    MetaServerOptions o;
    o.listen_port = 0;
    o.state_dir = dir_ + "/state";
    o.partitions = 64;
    o.log = [](std::string_view) {};
    auto ms = MetaServer::start(*meta_fabric_, o);
    ASSERT_TRUE(ms) << ms.status().to_string();
    meta_ = std::move(ms).value();
    for (int i = 0; i < 2; i++) {
      stores_[i] = std::make_unique<Store>(Store::Options());
      nodes_[i] = start_node(*stores_[i], meta_->port(), i);
      ASSERT_TRUE(nodes_[i]);
    }
    // Both nodes follow the map that has both of them.
    for (auto& n : nodes_) {
      auto deadline = std::chrono::steady_clock::now() + milliseconds(5000);
      while (!n->map() || n->map()->servers().size() < 2) {
        ASSERT_LT(std::chrono::steady_clock::now(), deadline);
        std::this_thread::sleep_for(milliseconds(10));
      }
    }
  }
  void TearDown() override {
    for (auto& n : nodes_) n.reset();
    for (auto& s : stores_) s.reset();
    meta_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::unique_ptr<ClusterNode> start_node(Store& store, uint16_t meta_port, int i) {
    ClusterNode::Options o;
    o.meta_host = "127.0.0.1";
    o.meta_port = meta_port;
    o.provider = rdma::ProviderChoice::kTcp;
    o.memcached_addr = "127.0.0.1:" + std::to_string(30001 + i);
    o.settings = &settings_;
    o.log = [](std::string_view) {};
    o.failover_wait = milliseconds(300);
    std::string err;
    auto n = ClusterNode::start(o, store, &err);
    EXPECT_TRUE(n) << err;
    return n;
  }

  // A key whose primary is nodes_[i].
  std::string key_of(int i) {
    for (int k = 0;; k++) {
      std::string key = "key" + std::to_string(k);
      Route r = nodes_[i]->route(key);
      if (r.local) return key;
    }
  }

  // route() said "this node, but not locally": its lease lapsed.
  bool lapsed(int i, const Route& r) { return !r.local && r.node == nodes_[i]->self(); }

  // PeerMesh::request of a kForward, sent again while the receiver answers
  // that its lease lapsed (a loaded host delays heartbeats past it).
  auto request_forward(const std::string& host, uint16_t port,
                       const std::string& req) {
    auto reply = PeerMesh::request(nodes_[0]->fabric(), host, port, PeerRpc::kForward, req,
                                   milliseconds(3000));
    for (int i = 0; i < 200 && reply && reply->find("lease as primary lapsed") != std::string::npos;
         i++) {
      std::this_thread::sleep_for(milliseconds(5));
      reply = PeerMesh::request(nodes_[0]->fabric(), host, port, PeerRpc::kForward, req,
                                milliseconds(3000));
    }
    return reply;
  }

  std::string forward(int from, uint32_t to, WireProtocol p, std::string_view req,
                      bool* ok = nullptr) {
    Forwarded f;
    nodes_[from]->forward(to, p, req, &Forwarded::done, &f);
    EXPECT_TRUE(f.wait());
    if (ok) *ok = f.ok;
    return f.reply;
  }

  Settings settings_;
  std::string dir_;
  std::unique_ptr<rdma::Fabric> meta_fabric_;
  std::unique_ptr<MetaServer> meta_;
  std::unique_ptr<Store> stores_[2];
  std::unique_ptr<ClusterNode> nodes_[2];
};

TEST_F(ClusterNodeTest, RoutesAgreeAndEveryNodeIsListed) {
  uint32_t ids[8];
  ASSERT_EQ(nodes_[0]->nodes(ids, 8), 2u);
  for (int k = 0; k < 200; k++) {
    std::string key = "k" + std::to_string(k);
    Route a = nodes_[0]->route(key), b = nodes_[1]->route(key);
    // A node whose lease lapsed (its heartbeats delayed on a loaded host)
    // routes its own keys to itself, not locally, until the next one.
    for (int i = 0; i < 200 && (lapsed(0, a) || lapsed(1, b)); i++) {
      std::this_thread::sleep_for(milliseconds(5));
      a = nodes_[0]->route(key);
      b = nodes_[1]->route(key);
    }
    EXPECT_NE(a.local, b.local) << key;
    uint32_t primary = a.local ? nodes_[0]->self() : a.node;
    EXPECT_EQ(primary, b.local ? nodes_[1]->self() : b.node) << key;
  }
}

TEST_F(ClusterNodeTest, ForwardedWritesRunOnThePrimaryAndReachTheSecondary) {
  std::string key = key_of(0);
  uint32_t primary = nodes_[0]->self();
  bool ok = false;
  EXPECT_EQ(forward(1, primary, WireProtocol::kText, "set " + key + " 5 0 3\r\nabc\r\n", &ok),
            "STORED\r\n");
  EXPECT_TRUE(ok);
  EXPECT_EQ(forward(1, primary, WireProtocol::kText, "get " + key + "\r\n"),
            "VALUE " + key + " 5 3\r\nabc\r\nEND\r\n");
  // noreply: an empty reply, still ok.
  EXPECT_EQ(forward(1, primary, WireProtocol::kText, "set " + key + " 5 0 2 noreply\r\nxy\r\n",
                    &ok),
            "");
  EXPECT_TRUE(ok);
  EXPECT_EQ(forward(1, primary, WireProtocol::kText, "incr " + key + " 1\r\n"),
            "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n");

  // The secondary (node 1) holds the same item: ask it as ftmemcached-ctl does.
  auto map = nodes_[1]->map();
  const ServerInfo* s = map->server(nodes_[1]->self());
  ASSERT_NE(s, nullptr);
  auto hp = parse_host_port(s->fabric_addr);
  ASSERT_TRUE(hp);
  std::optional<ReplicaItem> item;
  for (int i = 0; i < 100; i++) {  // the applier runs on its own thread
    auto reply = PeerMesh::request(nodes_[1]->fabric(), hp->first, hp->second,
                                   PeerRpc::kGetReplica, key, milliseconds(3000));
    ASSERT_TRUE(reply) << reply.status().to_string();
    auto dec = inspect_wire::decode_replica(*reply);
    ASSERT_TRUE(dec);
    item = *dec;
    if (item && item->value == "xy") break;
    std::this_thread::sleep_for(milliseconds(10));
  }
  ASSERT_TRUE(item);
  EXPECT_EQ(item->value, "xy");
  EXPECT_EQ(item->flags, 5u);
}

TEST_F(ClusterNodeTest, BinaryRequestsAreForwardedToo) {
  std::string key = key_of(1);
  uint32_t primary = nodes_[1]->self();
  // SET (0x01) with extras flags=7, exptime=0; then GET (0x00).
  auto frame = [&](uint8_t op, std::string extras, std::string value) {
    std::string f(24, '\0');
    f[0] = char(0x80);
    f[1] = char(op);
    f[2] = char(key.size() >> 8);
    f[3] = char(key.size());
    f[4] = char(extras.size());
    uint32_t body = uint32_t(extras.size() + key.size() + value.size());
    for (int i = 0; i < 4; i++) f[8 + i] = char(body >> (24 - 8 * i));
    return f + extras + key + value;
  };
  bool ok = false;
  std::string r = forward(0, primary, WireProtocol::kBinary,
                          frame(0x01, std::string("\0\0\0\7\0\0\0\0", 8), "val"), &ok);
  ASSERT_TRUE(ok);
  ASSERT_GE(r.size(), 24u);
  EXPECT_EQ(uint8_t(r[0]), 0x81);
  EXPECT_EQ(r[6] << 8 | r[7], 0);  // status: no error
  r = forward(0, primary, WireProtocol::kBinary, frame(0x00, "", ""), &ok);
  ASSERT_TRUE(ok);
  ASSERT_EQ(r.size(), 24u + 4 + 3);
  EXPECT_EQ(r.substr(24 + 4), "val");
}

TEST_F(ClusterNodeTest, AMisroutedForwardIsRefusedNotForwardedAgain) {
  std::string key = key_of(1);  // primary: node 1
  auto map = nodes_[0]->map();
  auto hp = parse_host_port(map->server(nodes_[0]->self())->fabric_addr);
  ASSERT_TRUE(hp);
  // Protocol byte, the forwarder's epoch (u64 little-endian), the request.
  std::string head(1, char(WireProtocol::kText));
  for (int i = 0; i < 8; i++) head.push_back(char((map->epoch() >> (8 * i)) & 0xff));
  std::string req = head + "get " + key + "\r\n";
  auto reply = request_forward(hp->first, hp->second, req);
  ASSERT_TRUE(reply) << reply.status().to_string();
  EXPECT_EQ(*reply, "\x02not primary for this key");
  // A newer epoch than the receiver's: it is the stale one, retry later.
  std::string newer(1, char(WireProtocol::kText));
  for (int i = 0; i < 8; i++) newer.push_back(char(((map->epoch() + 1) >> (8 * i)) & 0xff));
  reply = request_forward(hp->first, hp->second, newer + "get " + key + "\r\n");
  ASSERT_TRUE(reply) << reply.status().to_string();
  EXPECT_EQ(*reply, "\x02its map is older than the forwarder's");
  // Through forward(): the refusal is not the answer; the request is
  // redirected to the key's primary and answered there.
  bool ok = false;
  EXPECT_EQ(forward(1, nodes_[0]->self(), WireProtocol::kText, "get " + key + "\r\n", &ok),
            "END\r\n");
  EXPECT_TRUE(ok);
  // A keyless command (flush_all, broadcast by the front end) runs anywhere.
  EXPECT_EQ(forward(1, nodes_[0]->self(), WireProtocol::kText, "flush_all\r\n", &ok), "OK\r\n");
  EXPECT_TRUE(ok);
}

TEST_F(ClusterNodeTest, NothingToWaitForWithoutWrites) {
  EXPECT_FALSE(nodes_[0]->barrier([](void*, bool) { ADD_FAILURE(); }, nullptr));
}

TEST_F(ClusterNodeTest, BeforeAMapEverythingFailsCleanly) {
  Store store{Store::Options()};
  // A meta server port where nobody listens: no map ever arrives.
  auto lonely = start_node(store, 1, 9);
  ASSERT_TRUE(lonely);
  Route r = lonely->route("x");
  EXPECT_FALSE(r.local);
  EXPECT_EQ(r.node, 0u);
  EXPECT_EQ(lonely->nodes(nullptr, 0), 0u);
  Forwarded f;
  lonely->forward(r.node, WireProtocol::kText, "get x\r\n", &Forwarded::done, &f);
  ASSERT_TRUE(f.wait());
  EXPECT_FALSE(f.ok);
  // After --failover-wait-ms (300 ms here), with the reason.
  EXPECT_EQ(f.reply, "SERVER_ERROR no primary took over within 300 ms (cluster map not available)\r\n");
  lonely->stop();
}

}  // namespace
}  // namespace ftm::repl
