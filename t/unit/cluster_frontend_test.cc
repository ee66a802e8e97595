// The cluster front end (routing, forwarding, split gets, flush_all
// broadcast, replication barrier) through a real Server, its libevent workers
// and connections, over a loopback socket. The cluster is a FakeCluster: two
// more "nodes" that are in-process Stores whose requests run on their own
// threads through the same parsers (Session::forwarded), and a third node
// that always fails. Keys route by their first letter.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "src/clock.h"
#include "src/cluster.h"
#include "src/forward_plan.h"
#include "src/proto_bin.h"
#include "src/proto_bin_codec.h"
#include "src/proto_text.h"
#include "src/server.h"
#include "src/session.h"
#include "src/settings.h"
#include "src/store.h"

namespace ftm {
namespace {

using namespace std::chrono_literals;

// One fake peer: a Store and one thread that runs forwarded requests in
// arrival order (the Cluster contract's per-caller ordering).
class FakeNode {
 public:
  FakeNode(uint32_t id, std::chrono::milliseconds delay) : id_(id), delay_(delay) {
    Store::Options o;
    store_ = std::make_unique<Store>(o);
    ctx_.store = store_.get();
    ctx_.stats = &stats_;
    ctx_.settings = &settings_;
    session_.ctx = &ctx_;
    session_.forwarded = true;
    session_.authenticated = true;
    thread_ = std::thread([this] { run(); });
  }
  ~FakeNode() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void submit(std::function<void()> fn) {
    {
      std::lock_guard<std::mutex> l(mu_);
      q_.push_back(std::move(fn));
    }
    cv_.notify_all();
  }
  // Runs a request here, as the primary would (on the node's thread).
  std::string execute(WireProtocol proto, std::string_view req) {
    std::string out;
    if (delay_.count() > 0) std::this_thread::sleep_for(delay_);
    if (proto == WireProtocol::kBinary) {
      bin_process(session_, req, out, INT_MAX);
    } else {
      text_process(session_, req, out, INT_MAX);
    }
    return out;
  }
  // For checks from the test thread once the node is idle.
  std::string run_text(std::string_view req) {
    std::string out;
    text_process(session_, req, out, INT_MAX);
    return out;
  }
  uint32_t id() const { return id_; }
  std::atomic<int> forwards{0};

 private:
  void run() {
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [this] { return stop_ || !q_.empty(); });
        if (q_.empty()) return;
        fn = std::move(q_.front());
        q_.pop_front();
      }
      fn();
    }
  }

  uint32_t id_;
  std::chrono::milliseconds delay_;
  std::unique_ptr<Store> store_;
  ThreadStats stats_;
  Settings settings_;
  WorkerContext ctx_;
  Session session_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> q_;
  bool stop_ = false;
  std::thread thread_;
};

// Node 1 is the server under test. Keys starting with 'b' live on node 2
// (which answers slowly, so a reordering would show), 'c' on node 3, 'x' on
// node 9, which never answers successfully; the rest on node 1.
class FakeCluster final : public Cluster {
 public:
  FakeCluster() : n2_(2, 30ms), n3_(3, 0ms) {}
  ~FakeCluster() override {
    // Let barrier threads finish before the members go.
    open_gate();
    for (auto& t : barrier_threads_) t.join();
  }

  Route route(std::string_view key) override {
    if (key.empty()) return {};
    switch (key[0]) {
      case 'b': return {false, 2};
      case 'c': return {false, 3};
      case 'x': return {false, 9};
      default: return {};
    }
  }
  size_t nodes(uint32_t* out, size_t max) override {
    static const uint32_t ids[] = {1, 2, 3, 9};
    size_t n = std::min<size_t>(max, with_dead_node_ ? 4 : 3);
    for (size_t i = 0; i < n; ++i) out[i] = ids[i];
    return n;
  }
  uint32_t self() const override { return 1; }

  void forward(uint32_t node, WireProtocol proto, std::string_view request, ForwardDone done,
               void* ctx) override {
    std::string req(request);
    FakeNode* n = node == 2 ? &n2_ : node == 3 ? &n3_ : nullptr;
    if (n == nullptr) {
      // An unreachable node: the failure comes back on another thread.
      std::thread([done, ctx, node] {
        std::string reply = "SERVER_ERROR node " + std::to_string(node) + " unreachable\r\n";
        done(ctx, false, reply);
      }).detach();
      return;
    }
    ++n->forwards;
    n->submit([n, proto, req, done, ctx] {
      std::string reply = n->execute(proto, req);
      done(ctx, true, reply);
    });
  }

  bool barrier(BarrierDone done, void* ctx) override {
    if (!barriers_on_) return false;
    ++barriers_;
    std::lock_guard<std::mutex> l(mu_);
    barrier_threads_.emplace_back([this, done, ctx] {
      {
        std::unique_lock<std::mutex> l2(mu_);
        cv_.wait(l2, [this] { return gate_open_; });
      }
      done(ctx, barrier_ok_.load());
    });
    return true;
  }

  void open_gate() {
    {
      std::lock_guard<std::mutex> l(mu_);
      gate_open_ = true;
    }
    cv_.notify_all();
  }
  void close_gate() {
    std::lock_guard<std::mutex> l(mu_);
    gate_open_ = false;
  }

  FakeNode n2_;
  FakeNode n3_;
  std::atomic<bool> with_dead_node_{false};  // nodes() lists node 9
  std::atomic<bool> barriers_on_{false};
  std::atomic<bool> barrier_ok_{true};
  std::atomic<int> barriers_{0};

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool gate_open_ = true;
  std::vector<std::thread> barrier_threads_;
};

class ClusterFrontend : public ::testing::Test {
 protected:
  void SetUp() override {
    clock::init();
    settings_.port = free_port();
    settings_.listen = "127.0.0.1";
    settings_.num_threads = 2;
    Store::Options o;
    store_ = std::make_unique<Store>(o);
    server_ = std::make_unique<Server>(settings_, store_.get());
    std::string err;
    ASSERT_TRUE(server_->bind(&err)) << err;
    server_->set_cluster(&cluster_);
    ASSERT_TRUE(server_->start(&err)) << err;
    loop_ = std::thread([this] { server_->run(); });
  }
  void TearDown() override {
    for (int fd : fds_) ::close(fd);
    cluster_.open_gate();
    if (loop_.joinable()) {
      server_->shutdown();
      loop_.join();
    }
    server_.reset();
  }

  // Port 0 means "no TCP" to the server: ask the kernel for a free one.
  static int free_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
  }

  int connect_client() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(server_->tcp_port()));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fds_.push_back(fd);
    return fd;
  }
  static void send_all(int fd, std::string_view s) {
    while (!s.empty()) {
      ssize_t n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
      ASSERT_GT(n, 0);
      s.remove_prefix(static_cast<size_t>(n));
    }
  }
  // Reads until `n` bytes arrived, the peer closed, or `wait` passed.
  static std::string read_n(int fd, size_t n, std::chrono::milliseconds wait = 5000ms) {
    std::string got;
    auto deadline = std::chrono::steady_clock::now() + wait;
    while (got.size() < n) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
      char buf[65536];
      ssize_t r = ::recv(fd, buf, std::min(sizeof buf, n - got.size()), 0);
      if (r <= 0) break;
      got.append(buf, static_cast<size_t>(r));
    }
    return got;
  }
  // Sends `req` and expects exactly `want` back.
  void expect(int fd, std::string_view req, std::string_view want) {
    send_all(fd, req);
    EXPECT_EQ(read_n(fd, want.size()), want) << "request: " << req;
  }
  static bool closed_by_peer(int fd) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 2000) <= 0) return false;
    char c;
    return ::recv(fd, &c, 1, 0) == 0;
  }

  Settings settings_;
  FakeCluster cluster_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Server> server_;
  std::thread loop_;
  std::vector<int> fds_;
};

std::string frame(uint8_t op, std::string_view key = {}, std::string_view extras = {},
                  std::string_view value = {}, uint32_t opaque = 0) {
  std::string f;
  f.push_back(static_cast<char>(0x80));
  f.push_back(static_cast<char>(op));
  bin::append_be16(f, static_cast<uint16_t>(key.size()));
  f.push_back(static_cast<char>(extras.size()));
  f.push_back(0);
  bin::append_be16(f, 0);
  bin::append_be32(f, static_cast<uint32_t>(key.size() + extras.size() + value.size()));
  bin::append_be32(f, opaque);
  bin::append_be64(f, 0);
  f.append(extras);
  f.append(key);
  f.append(value);
  return f;
}

TEST_F(ClusterFrontend, PipelinedLocalAndRemoteAnsweredInOrder) {
  int fd = connect_client();
  expect(fd,
         "set a1 1 0 2\r\naa\r\nset b1 2 0 2\r\nbb\r\nset c1 3 0 2\r\ncc\r\n"
         "get b1\r\nget a1\r\nincr b1 1\r\ndelete c1\r\nget c1\r\nversion\r\n",
         "STORED\r\nSTORED\r\nSTORED\r\n"
         "VALUE b1 2 2\r\nbb\r\nEND\r\nVALUE a1 1 2\r\naa\r\nEND\r\n"
         "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
         "DELETED\r\nEND\r\nVERSION 1.6.18\r\n");
  // Each key landed on its owner only.
  EXPECT_EQ(cluster_.n2_.run_text("get b1 a1\r\n"), "VALUE b1 2 2\r\nbb\r\nEND\r\n");
  EXPECT_EQ(cluster_.n3_.run_text("get a1\r\n"), "END\r\n");
  EXPECT_EQ(cluster_.n2_.forwards.load(), 3);
}

TEST_F(ClusterFrontend, DataBlockForwardedWholeAcrossReads) {
  int fd = connect_client();
  send_all(fd, "set b3 0 0 10\r\n12345");
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(read_n(fd, 1, 50ms), "");
  expect(fd, "67890\r\nget b3\r\n", "STORED\r\nVALUE b3 0 10\r\n1234567890\r\nEND\r\n");
  EXPECT_EQ(cluster_.n2_.forwards.load(), 2);
  // A bad data chunk is refused by the primary in the same words.
  expect(fd, "set c3 0 0 1\r\nxyz\r\n", "CLIENT_ERROR bad data chunk\r\n");
}

TEST_F(ClusterFrontend, MultiGetSplitAndMergedInKeyOrder) {
  int fd = connect_client();
  expect(fd, "set a1 0 0 1\r\n1\r\nset b1 0 0 1\r\n2\r\nset c1 0 0 1\r\n3\r\nset b2 5 0 1\r\n4\r\n",
         "STORED\r\nSTORED\r\nSTORED\r\nSTORED\r\n");
  expect(fd, "get b1 a1 c1 zz b2 a1 c9\r\n",
         "VALUE b1 0 1\r\n2\r\nVALUE a1 0 1\r\n1\r\nVALUE c1 0 1\r\n3\r\n"
         "VALUE b2 5 1\r\n4\r\nVALUE a1 0 1\r\n1\r\nEND\r\n");
  // All keys on one remote node: one plain forward.
  int before = cluster_.n2_.forwards.load();
  expect(fd, "get b1 b2\r\n", "VALUE b1 0 1\r\n2\r\nVALUE b2 5 1\r\n4\r\nEND\r\n");
  EXPECT_EQ(cluster_.n2_.forwards.load(), before + 1);
  // gat touches on every owner.
  expect(fd, "gat 100 c1 a1 b1\r\n",
         "VALUE c1 0 1\r\n3\r\nVALUE a1 0 1\r\n1\r\nVALUE b1 0 1\r\n2\r\nEND\r\n");
  // More keys than one tokenizer batch (23 tokens).
  std::string req = "get";
  std::string want;
  for (int i = 0; i < 40; ++i) {
    std::string k = (i % 3 == 0 ? "a1" : i % 3 == 1 ? "b1" : "c1");
    req += " " + k;
    want += "VALUE " + k + " 0 1\r\n" + (k == "a1" ? "1" : k == "b1" ? "2" : "3") + "\r\n";
  }
  expect(fd, req + "\r\n", want + "END\r\n");
  // gets: cas values come from each owner; check the shape.
  send_all(fd, "gets c1 a1\r\n");
  std::string got = read_n(fd, 100, 500ms);
  EXPECT_TRUE(got.starts_with("VALUE c1 0 1 ")) << got;
  EXPECT_NE(got.find("\r\n3\r\nVALUE a1 0 1 "), std::string::npos) << got;
  EXPECT_TRUE(got.ends_with("\r\n1\r\nEND\r\n")) << got;
}

TEST_F(ClusterFrontend, NoreplyKeptEndToEnd) {
  int fd = connect_client();
  expect(fd,
         "set b4 0 0 1 noreply\r\nx\r\nincr b4 1 noreply\r\nset a4 0 0 1 noreply\r\ny\r\n"
         "delete x4 noreply\r\nget b4 a4\r\n",
         "VALUE b4 0 1\r\nx\r\nVALUE a4 0 1\r\ny\r\nEND\r\n");
  // Meta quiet mode through a forward: HD suppressed, EN suppressed.
  expect(fd, "ms c4 2 q\r\nhi\r\nmg c5 v q\r\nmg c4 v\r\nmn\r\n", "VA 2\r\nhi\r\nMN\r\n");
}

TEST_F(ClusterFrontend, MetaRoutesOnDecodedBase64Key) {
  int fd = connect_client();
  // "YjU=" is base64 for "b5": node 2's key.
  expect(fd, "ms YjU= 2 b\r\nhi\r\nmg b5 v\r\nmg YjU= b v k\r\n",
         "HD\r\nVA 2\r\nhi\r\nVA 2 kYjU= b\r\nhi\r\n");
  EXPECT_EQ(cluster_.n2_.forwards.load(), 3);
  expect(fd, "ma b6 N0 J13\r\nma b6 v\r\n", "HD\r\nVA 2\r\n14\r\n");
}

TEST_F(ClusterFrontend, FlushAllBroadcast) {
  int fd = connect_client();
  expect(fd, "set a1 0 0 1\r\n1\r\nset b1 0 0 1\r\n2\r\nset c1 0 0 1\r\n3\r\n",
         "STORED\r\nSTORED\r\nSTORED\r\n");
  expect(fd, "flush_all\r\nget a1 b1 c1\r\n", "OK\r\nEND\r\n");
  expect(fd, "set c2 0 0 1\r\n3\r\nflush_all noreply\r\nget c2\r\n", "STORED\r\nEND\r\n");
  // A bad delay is answered here, as standalone.
  expect(fd, "flush_all soon\r\n", "CLIENT_ERROR invalid exptime argument\r\n");
  // Binary Flush and FlushQ.
  int bfd = connect_client();
  std::string ok = frame(bin::kFlush, {}, {}, {}, 7);
  ok[0] = static_cast<char>(0x81);
  expect(bfd, frame(bin::kFlush, {}, {}, {}, 7), ok);
  std::string noop = frame(bin::kNoop, {}, {}, {}, 8);
  noop[0] = static_cast<char>(0x81);
  expect(bfd, frame(bin::kFlushQ, {}, {}, {}, 7) + frame(bin::kNoop, {}, {}, {}, 8), noop);
}

TEST_F(ClusterFrontend, ForwardFailureText) {
  int fd = connect_client();
  expect(fd, "get x1\r\nset a1 0 0 1\r\n1\r\n",
         "SERVER_ERROR node 9 unreachable\r\nSTORED\r\n");
  expect(fd, "set x2 0 0 1\r\n1\r\nget a1 x1 b1\r\n",
         "SERVER_ERROR node 9 unreachable\r\nSERVER_ERROR node 9 unreachable\r\n");
  // noreply: nothing, errors included (memcached's noreply silences errors).
  expect(fd, "set x2 0 0 1 noreply\r\n1\r\ndelete x1 noreply\r\nversion\r\n",
         "VERSION 1.6.18\r\n");
  // Meta errors are always shown.
  expect(fd, "md x1 q\r\nmn\r\n", "SERVER_ERROR node 9 unreachable\r\nMN\r\n");
}

TEST_F(ClusterFrontend, FlushAllWithAFailingNode) {
  cluster_.with_dead_node_ = true;
  int fd = connect_client();
  expect(fd, "set b1 0 0 1\r\n1\r\nflush_all\r\nget b1\r\n",
         "STORED\r\nSERVER_ERROR node 9 unreachable\r\nEND\r\n");
  expect(fd, "flush_all noreply\r\nversion\r\n", "VERSION 1.6.18\r\n");
  int bfd = connect_client();
  send_all(bfd, frame(bin::kFlushQ, {}, {}, {}, 7));
  std::string got = read_n(bfd, 24 + 31);
  ASSERT_EQ(got.size(), 24u + 31u);
  EXPECT_EQ(static_cast<uint8_t>(got[1]), bin::kFlushQ);
  EXPECT_EQ(bin::load_be16(got.data() + 6), kBinaryInternalError);
  EXPECT_EQ(bin::load_be32(got.data() + 12), 7u);
  EXPECT_EQ(got.substr(24), "SERVER_ERROR node 9 unreachable");
}

TEST_F(ClusterFrontend, BinaryForwardedAndFailures) {
  int fd = connect_client();
  std::string extras;
  bin::append_be32(extras, 0xabcd);
  bin::append_be32(extras, 0);
  send_all(fd, frame(bin::kSet, "b7", extras, "val", 1) + frame(bin::kGetK, "b7", {}, {}, 2) +
                   frame(bin::kSetQ, "c7", extras, "v2", 3) + frame(bin::kGetQ, "c8", {}, {}, 4) +
                   frame(bin::kGet, "c7", {}, {}, 5) + frame(bin::kGet, "x7", {}, {}, 6) +
                   frame(bin::kNoop, {}, {}, {}, 9));
  // Set; GetK with flags, key and value; SetQ and the GetQ miss say nothing;
  // Get; the failed Get with the reason; Noop.
  std::string got = read_n(fd, 24 + (24 + 4 + 5) + (24 + 4 + 2) + (24 + 31) + 24);
  size_t pos = 0;
  auto next = [&](uint8_t op, uint16_t status, uint32_t opaque) -> std::string_view {
    EXPECT_GE(got.size(), pos + 24);
    if (got.size() < pos + 24) return {};
    std::string_view h(got.data() + pos, 24);
    EXPECT_EQ(static_cast<uint8_t>(h[0]), 0x81);
    EXPECT_EQ(static_cast<uint8_t>(h[1]), op);
    EXPECT_EQ(bin::load_be16(h.data() + 6), status);
    EXPECT_EQ(bin::load_be32(h.data() + 12), opaque);
    uint32_t body = bin::load_be32(h.data() + 8);
    std::string_view b(got.data() + pos + 24, body);
    pos += 24 + body;
    return b;
  };
  next(bin::kSet, 0, 1);
  std::string_view b = next(bin::kGetK, 0, 2);
  EXPECT_EQ(b.substr(4), "b7val");
  EXPECT_EQ(next(bin::kGet, 0, 5).substr(4), "v2");
  EXPECT_EQ(next(bin::kGet, 0x84, 6), "SERVER_ERROR node 9 unreachable");
  next(bin::kNoop, 0, 9);
  EXPECT_EQ(pos, got.size());
}

TEST_F(ClusterFrontend, BarrierHoldsRepliesUntilDone) {
  int fd = connect_client();
  cluster_.barriers_on_ = true;
  cluster_.close_gate();
  send_all(fd, "set a1 0 0 1\r\n1\r\n");
  EXPECT_EQ(read_n(fd, 1, 200ms), "");  // STORED held: not yet replicated
  cluster_.open_gate();
  EXPECT_EQ(read_n(fd, 8), "STORED\r\n");
  EXPECT_GE(cluster_.barriers_.load(), 1);
  // A forward in the same batch: answers still in order, all after the barrier.
  cluster_.close_gate();
  send_all(fd, "set a2 0 0 1\r\n2\r\nget b1\r\nget a2\r\n");
  EXPECT_EQ(read_n(fd, 1, 200ms), "");
  cluster_.open_gate();
  EXPECT_EQ(read_n(fd, 35), "STORED\r\nEND\r\nVALUE a2 0 1\r\n2\r\nEND\r\n");
}

TEST_F(ClusterFrontend, BarrierFailureNeverShowsStored) {
  int fd = connect_client();
  expect(fd, "version\r\n", "VERSION 1.6.18\r\n");
  cluster_.barriers_on_ = true;
  cluster_.barrier_ok_ = false;
  send_all(fd, "set a1 0 0 1\r\n1\r\n");
  EXPECT_EQ(read_n(fd, 33), "SERVER_ERROR replication failed\r\n");
  EXPECT_TRUE(closed_by_peer(fd));
}

TEST_F(ClusterFrontend, BinaryBarrierFailureClosesSilently) {
  int fd = connect_client();
  cluster_.barriers_on_ = true;
  cluster_.barrier_ok_ = false;
  std::string extras(8, '\0');
  send_all(fd, frame(bin::kSet, "a1", extras, "v", 1));
  EXPECT_TRUE(closed_by_peer(fd));  // no success frame, ever
}

TEST_F(ClusterFrontend, ClientGoneWhileForwardOut) {
  int fd = connect_client();
  send_all(fd, "get b1\r\nget b1\r\n");
  ::close(fd);
  fds_.clear();
  std::this_thread::sleep_for(100ms);  // the replies land on a closed connection
  int fd2 = connect_client();
  expect(fd2, "get b1\r\n", "END\r\n");
}

}  // namespace
}  // namespace ftm
