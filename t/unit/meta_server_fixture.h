// The fixture of the meta server's unit tests (meta_server_test.cc,
// meta_holds_test.cc): a meta server and in-process membership clients
// over the tcp provider on 127.0.0.1, with the meta server's log kept for
// failure messages.
#ifndef FTM_T_UNIT_META_SERVER_FIXTURE_H_
#define FTM_T_UNIT_META_SERVER_FIXTURE_H_

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "rdma/connection.h"
#include "rdma/fabric_domain.h"
#include "replication/control_msg.h"
#include "replication/membership.h"
#include "replication/meta_server.h"
#include "t/unit/test_fabric.h"

namespace ftm::repl {

using std::chrono::milliseconds;

class MetaServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ftm-meta-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    meta_fabric_ = open_fabric("meta");
    client_fabric_ = open_fabric("servers");
    ASSERT_TRUE(meta_fabric_ && client_fabric_);
    start_meta(0);
  }
  void TearDown() override {
    members_.clear();
    meta_.reset();
    std::filesystem::remove_all(dir_);
  }

  void start_meta(uint16_t port) {
    MetaServerOptions o;
    o.listen_port = port;
    o.state_dir = dir_ + "/state";
    o.detector_floor = detector_floor_;
    o.bootstrap_servers = bootstrap_servers_;
    o.heartbeat_interval = heartbeat_interval_;
    o.sole_copy_hold = sole_copy_hold_;
    o.suspicion_timeout = suspicion_timeout_;
    o.log = [this](std::string_view line) {
      std::lock_guard g(log_mu_);
      log_ += std::string(line) + "\n";
    };
    // The port of a meta server just stopped can take a moment to free.
    for (int i = 0; i < 50; i++) {
      auto ms = MetaServer::start(*meta_fabric_, o);
      if (ms) {
        meta_ = std::move(ms).value();
        port_ = meta_->port();
        return;
      }
      if (i == 49) FAIL() << ms.status().to_string();
      std::this_thread::sleep_for(milliseconds(100));
    }
  }

  Membership& add_member(uint32_t node_id = 0, bool spare = false,
                         std::function<ReportMsg()> report = {},
                         std::function<void(MembershipOptions&)> more = {}) {
    MembershipOptions o;
    o.meta_port = port_;
    o.node_id = node_id;
    o.spare = spare;
    o.replication_state = std::move(report);
    int n = int(members_.size()) + 1;
    o.memcached_addr = "127.0.0.1:" + std::to_string(11210 + n);
    o.fabric_addr = "127.0.0.1:" + std::to_string(40000 + n);
    o.backoff_initial = milliseconds(20);
    o.backoff_max = milliseconds(200);
    o.log = [this, n](std::string_view line) {  // shown when a test fails
      std::lock_guard g(log_mu_);
      log_ += "member " + std::to_string(n) + ": " + std::string(line) + "\n";
    };
    if (more) more(o);
    members_.push_back(Membership::start(*client_fabric_, o));
    return *members_.back();
  }

  // All members at the meta server's epoch with identical maps.
  void expect_converged() {
    auto want = meta_->map();
    for (auto& m : members_) {
      ASSERT_TRUE(m->wait_for_map(milliseconds(5000), want->epoch()))
          << "node " << m->node_id() << " stuck at epoch " << m->epoch()
          << ", meta at " << want->epoch();
      auto got = m->map();
      EXPECT_EQ(got->epoch(), want->epoch());
      EXPECT_TRUE(*got == *want) << "node " << m->node_id();
    }
  }

  std::unique_ptr<ControlChannel> ctl_channel() {
    auto c = client_fabric_->connect("127.0.0.1", meta_->port());
    if (!c) {
      ADD_FAILURE() << c.status().to_string();
      return nullptr;
    }
    auto ch = ControlChannel::open(*client_fabric_, std::move(c).value());
    if (!ch) ADD_FAILURE() << ch.status().to_string();
    return ch ? std::move(ch).value() : nullptr;
  }

  std::string dir_;
  std::chrono::microseconds detector_floor_{20000};
  // Joins rebalance primaries for these tests' small clusters (issue 5);
  // FourthJoinAfterBootstrapTakesSecondariesOnly lowers it.
  uint32_t bootstrap_servers_ = 8;
  std::chrono::microseconds heartbeat_interval_{5000};
  std::chrono::milliseconds sole_copy_hold_{5000};
  std::chrono::milliseconds suspicion_timeout_{1000};
  std::string logs() {
    std::lock_guard g(log_mu_);
    return log_;
  }
  std::mutex log_mu_;
  std::string log_;  // the meta server's log lines
  std::unique_ptr<rdma::Fabric> meta_fabric_, client_fabric_;
  std::unique_ptr<MetaServer> meta_;
  uint16_t port_ = 0;  // of the last meta server started
  std::vector<std::unique_ptr<Membership>> members_;
};

// The meta server's view of one node, from its status().
inline ServerStatus status_of(const MetaServer& meta, uint32_t node) {
  for (const ServerStatus& s : meta.status().servers)
    if (s.node_id == node) return s;
  return ServerStatus{};
}

// Polls `pred` every 5 ms for up to `ms`; true once it held.
template <class Pred>
bool eventually(Pred pred, int ms) {
  for (int i = 0; i < ms / 5; i++) {
    if (pred()) return true;
    std::this_thread::sleep_for(milliseconds(5));
  }
  return pred();
}

}  // namespace ftm::repl

#endif  // FTM_T_UNIT_META_SERVER_FIXTURE_H_
