// PeerMesh (see peer_mesh.h): RPCs between data servers over rdma/
// two-sided sends.
//
// A Link is one connection and its two threads:
//  - the writer packs queued messages into its registered send buffer and
//    sends them (one send per batch: group send); on an outgoing link it
//    first connects (so a caller never blocks on a connect) and fails
//    calls whose reply is overdue;
//  - the reader waits on the posted receives in order, splits each receive
//    into messages and dispatches them: replies to the waiting calls
//    (outgoing link), requests to the handlers (incoming link). Handlers
//    run on the reader, one at a time, so a peer's calls are handled in the
//    order it made them.
// Why threads and not callbacks: rdma::Op reports completion only to a
// waiter, so something must wait; one reader per connection keeps a
// connection's messages in order without a lock.
//
// Flow control: none beyond the transport's. A receiver reposts a buffer
// as soon as its messages are dispatched; a message that arrives with no
// receive posted waits in the provider (tcp: in the socket; verbs: RNR
// retry). Handlers must therefore be quick (see peer_mesh.h).
//
// Lifetime: links that broke are reaped by the acceptor thread (threads
// joined, buffers freed) but their rdma::Connection is kept until the mesh
// dies, because connection() handed out a raw pointer (LogWriter borrows
// it; it sees status() not ok and stops using it).
#include "replication/peer_mesh.h"

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "rdma/listener.h"
#include "rdma/memory_region.h"
#include "replication/control_msg.h"
#include "replication/peer_frame.h"

namespace ftm::repl {
namespace {

using Clock = std::chrono::steady_clock;
using namespace peer_frame;

constexpr size_t kMaxTypes = 16;  // PeerRpc values below this have handlers

struct Pending {
  PeerMesh::Done done = nullptr;
  void* ctx = nullptr;
  Clock::time_point deadline;
};

}  // namespace

struct Link;

struct PeerMesh::Impl {
  Options opts;
  size_t frame_size = 0;  // one receive buffer: the largest message + header
  std::atomic<Membership*> membership{nullptr};
  std::unique_ptr<rdma::Listener> listener;
  std::atomic<bool> stopping{false};
  std::mutex close_mu;
  std::thread acceptor;
  std::atomic<uint64_t> next_id{1};

  // Handlers: registered once per type, never freed before the mesh.
  std::mutex handlers_mu;
  std::condition_variable handlers_cv;
  std::array<std::atomic<Handler*>, kMaxTypes> handlers{};
  std::vector<std::unique_ptr<Handler>> handler_store;  // guarded by handlers_mu

  // Callbacks for calls that fail before reaching a link (fired on a mesh
  // thread, never the caller's).
  std::mutex defer_mu;
  std::condition_variable defer_cv;
  std::deque<std::function<void()>> deferred;
  bool defer_stop = false;
  std::thread deferrer;

  std::mutex mu;
  std::unordered_map<uint32_t, std::shared_ptr<Link>> out;  // current per node
  std::vector<std::shared_ptr<Link>> links;                 // every unreaped link
  std::vector<std::shared_ptr<rdma::Connection>> graveyard;  // see file comment
  // connection(): one connection per peer for one-sided replication
  // traffic only, apart from the RPC links, so a peer that is slow to read
  // its messages never holds up the replication writes queued behind them
  // on the same stream (and the reverse). Guarded by rma_mu; replaced ones
  // go to the graveyard.
  std::mutex rma_mu;
  std::unordered_map<uint32_t, std::shared_ptr<rdma::Connection>> rma;

  std::shared_ptr<Link> outgoing(uint32_t node);
  void accept_loop();
  void reap(bool all);
  void defer(std::function<void()> fn);
  Handler* handler(uint16_t type, bool wait);
};

struct Link : std::enable_shared_from_this<Link> {
  enum State { kConnecting, kUp, kBroken };

  PeerMesh::Impl* mesh = nullptr;
  bool is_outgoing = false;
  std::atomic<uint32_t> node{0};  // the peer (incoming: from its hello)
  std::shared_ptr<rdma::Connection> conn;
  std::unique_ptr<std::byte[]> send_mem, recv_mem;
  std::unique_ptr<rdma::MemoryRegion> send_mr, recv_mr;
  // Incoming links: the reader thread's. Outgoing links (replies only):
  // re-posted by on_reply_recv, which the fabric calls on completion, so a
  // reply reaches its Done callback without waking a reader thread.
  std::vector<rdma::Op> recvs;
  struct RecvSlot {
    Link* link;
    size_t index;
  };
  std::vector<RecvSlot> slots;
  std::thread reader, writer;
  std::atomic<int> threads_started{0}, threads_done{0};

  std::mutex mu;
  std::condition_variable cv;
  State state = kConnecting;       // guarded by mu
  rdma::Status error;              // guarded by mu, set once broken
  std::deque<std::string> outq;    // guarded by mu
  std::unordered_map<uint64_t, Pending> pending;  // guarded by mu
  // The send buffer holds one posted send at a time: `sending` from the
  // moment a thread packs it until the send is reaped; `inflight` once
  // posted (guarded by mu).
  bool sending = false;
  bool inflight_posted = false;
  rdma::Op inflight;
  uint64_t inflight_seq = 0;  // which post `inflight` is (reaped by one thread only)

  ~Link() {
    if (conn) conn->close();
    if (inflight_posted) (void)inflight.wait();  // kClosed at once
    // Every posted receive completes (kClosed) once the endpoint is
    // closed; only then may its buffer go.
    for (rdma::Op& op : recvs) (void)op.wait();
    recvs.clear();
    send_mr.reset();
    recv_mr.reset();
  }

  // Registers buffers and posts the receives. REQUIRES conn.
  rdma::Status setup(rdma::Fabric& fabric) {
    size_t fs = mesh->frame_size;
    int depth = std::max(1, mesh->opts.recv_depth);
    // Uninitialized on purpose: only the pages messages reach get touched.
    send_mem.reset(new std::byte[fs]);
    recv_mem.reset(new std::byte[fs * depth]);
    auto smr = fabric.register_memory({send_mem.get(), fs}, false, false);
    if (!smr) return smr.status();
    send_mr = std::move(smr).value();
    auto rmr = fabric.register_memory({recv_mem.get(), fs * depth}, false, false);
    if (!rmr) return rmr.status();
    recv_mr = std::move(rmr).value();
    if (is_outgoing) {
      slots.resize(depth);
      recvs.resize(depth);
      for (int i = 0; i < depth; i++) {
        slots[i] = RecvSlot{this, size_t(i)};
        recvs[i] = conn->recv(*recv_mr, i * fs, fs, &Link::on_reply_recv, &slots[i]);
        if (recvs[i].done()) return recvs[i].wait();  // refused before posting
      }
      return rdma::Status::ok();
    }
    for (int i = 0; i < depth; i++) recvs.push_back(conn->recv(*recv_mr, i * fs, fs));
    if (recvs[0].done() && !recvs[0].wait()) return recvs[0].wait();
    return rdma::Status::ok();
  }

  // rdma::Connection::Callback of an outgoing link's receive: replies go
  // to their Done callbacks right here (on the fabric's progress thread:
  // Done callbacks must not block, see PeerMesh::call), then the buffer is
  // posted again. Receives complete in posting order, one at a time.
  static void on_reply_recv(void* ctx, const rdma::Status& st, size_t bytes) {
    auto* slot = static_cast<RecvSlot*>(ctx);
    Link* l = slot->link;
    if (!st) {
      // The fabric tears a failed connection down itself; closing it from
      // here would wait for the completion queue this thread holds.
      l->fail(st, /*close_conn=*/false);
      return;
    }
    const size_t fs = l->mesh->frame_size;
    const std::byte* p = l->recv_mem.get() + slot->index * fs;
    bool ok = for_each_message(p, bytes, [&](const Header& h, std::string_view body) {
      return l->on_reply(h, body);
    });
    if (!ok) {
      l->fail(rdma::Status(rdma::Code::kFabricError, l->conn->peer(), "receive",
                           "malformed peer message"),
              /*close_conn=*/false);
      return;
    }
    rdma::Op op = l->conn->recv(*l->recv_mr, slot->index * fs, fs, &Link::on_reply_recv, slot);
    // Not stored in `recvs` (the setup thread may still be filling it):
    // closing the connection completes every posted receive before close()
    // returns, which is what ~Link relies on.
    if (op.done()) l->fail(op.wait(), /*close_conn=*/false);  // refused: link broken
  }

  void start_thread(std::thread& t, void (Link::*fn)()) {
    threads_started.fetch_add(1);
    t = std::thread([this, fn] {
      (this->*fn)();
      threads_done.fetch_add(1, std::memory_order_release);
    });
  }

  bool finished() const {
    return threads_done.load(std::memory_order_acquire) == threads_started.load();
  }

  bool broken() {
    std::lock_guard g(mu);
    return state == kBroken;
  }

  // Queues a call; false if the link broke already (the caller retries on
  // a fresh link). `msg` is moved from only on success.
  bool enqueue_call(uint64_t id, std::string& msg, Pending p) {
    std::unique_lock g(mu);
    if (state == kBroken) return false;
    pending.emplace(id, p);
    outq.push_back(std::move(msg));
    post(g);
    return true;
  }

  void send_reply(uint64_t id, uint16_t type, uint8_t kind, std::string_view body) {
    if (body.size() > mesh->opts.max_message) {
      send_reply(id, type, kErrorReply,
                 "reply of " + std::to_string(body.size()) +
                     " bytes exceeds the peer message limit of " +
                     std::to_string(mesh->opts.max_message));
      return;
    }
    std::string m = encode(kind, type, id, {}, body);
    std::unique_lock g(mu);
    if (state == kBroken) return;  // the caller got the link's error
    outq.push_back(std::move(m));
    post(g);
  }

  // After a message was queued (g holds mu): if the send buffer is free,
  // the calling thread packs the queue and posts it itself, so a lone
  // request or reply costs no thread hand-off; otherwise the writer sends
  // it once the send in flight completes (messages queued meanwhile ride
  // along: group send). Never waits for a completion.
  void post(std::unique_lock<std::mutex>& g) {
    if (state == kUp && sending && inflight_posted && inflight.done()) {
      // Reap the finished send here; a failure is the writer's to report.
      if (!inflight.wait()) {
        cv.notify_all();
        return;
      }
      sending = inflight_posted = false;
    }
    if (state != kUp || sending) {
      cv.notify_all();  // the writer connects, or sends after the op in flight
      return;
    }
    post_locked(g);
  }

  // Packs and posts the queue. REQUIRES g holds mu, state kUp, !sending.
  void post_locked(std::unique_lock<std::mutex>& g) {
    const size_t fs = mesh->frame_size;
    size_t n = 0;
    while (!outq.empty() && n + outq.front().size() <= fs) {
      std::memcpy(send_mem.get() + n, outq.front().data(), outq.front().size());
      n += outq.front().size();
      outq.pop_front();
    }
    if (n == 0) return;  // (an oversized message is refused before queueing)
    sending = true;
    g.unlock();
    // Deadline: the call timeout, not the fabric's op timeout: a peer whose
    // handlers wait on replication back-pressure (up to 5 s) reposts its
    // receives late, and a send that waits for a receive buffer must not
    // tear the connection down meanwhile.
    rdma::Op op = conn->send(*send_mr, 0, n, mesh->opts.call_timeout);
    g.lock();
    inflight = op;
    inflight_posted = true;
    inflight_seq++;
    if (!outq.empty()) cv.notify_all();  // the writer sends the rest after it
  }

  // Breaks the link once: closes the connection and fails every call still
  // waiting with `st`.
  void fail(const rdma::Status& st, bool close_conn = true) {
    std::unordered_map<uint64_t, Pending> failed;
    std::shared_ptr<rdma::Connection> c;
    {
      std::lock_guard g(mu);
      if (state == kBroken) return;
      state = kBroken;
      error = st;
      failed.swap(pending);
      outq.clear();
      c = conn;
    }
    cv.notify_all();
    if (c && close_conn) c->close();
    for (auto& [id, p] : failed) p.done(p.ctx, st, {});
  }

  rdma::Status connect() {
    uint32_t n = node.load();
    std::string who = "node " + std::to_string(n);
    Membership* m = mesh->membership.load();
    if (m == nullptr)
      return rdma::Status(rdma::Code::kInvalidArgument, who, "connect", "no membership");
    auto map = m->map();
    const ServerInfo* si = map ? map->server(n) : nullptr;
    if (si == nullptr)
      return rdma::Status(rdma::Code::kInvalidArgument, who, "connect",
                          map ? "not in the cluster map (epoch " +
                                    std::to_string(map->epoch()) + ")"
                              : "no cluster map yet");
    auto hp = parse_host_port(si->fabric_addr);
    if (!hp)
      return rdma::Status(rdma::Code::kInvalidArgument, who, "connect",
                          "bad fabric address: " + hp.status().to_string());
    auto c = mesh->opts.fabric->connect(hp->first, hp->second);
    if (!c) return c.status();
    {
      std::lock_guard g(mu);  // fail() may read it from another thread
      conn = std::shared_ptr<rdma::Connection>(std::move(c).value());
      if (state == kBroken) return error;
    }
    rdma::Status st = setup(*mesh->opts.fabric);
    if (!st) return st;
    {
      std::lock_guard g(mu);
      if (state == kBroken) return error;
      uint32_t self = m->node_id();
      outq.push_front(encode(kHello, 0, self, {}, {}));
      state = kUp;
    }
    cv.notify_all();
    return rdma::Status::ok();
  }

  void run_writer() {
    if (is_outgoing) {
      rdma::Status st = connect();
      if (!st) {
        fail(st);
        return;
      }
    }
    std::vector<Pending> expired;
    auto next_scan = Clock::now();
    std::unique_lock g(mu);
    for (;;) {
      if (state == kBroken) return;
      if (sending && inflight_posted && (!outq.empty() || inflight.done())) {
        // Messages wait behind the send in flight: reap it, then send them.
        rdma::Op op = inflight;
        uint64_t seq = inflight_seq;
        g.unlock();
        rdma::Status st = op.wait();
        if (!st) {
          fail(st);
          return;
        }
        g.lock();
        // A poster may have reaped it meanwhile and posted the next one.
        if (inflight_posted && inflight_seq == seq) sending = inflight_posted = false;
        continue;
      }
      if (!sending && state == kUp && !outq.empty()) {
        post_locked(g);
        continue;
      }
      auto now = Clock::now();
      if (!pending.empty() && now >= next_scan) {
        next_scan = now + std::chrono::milliseconds(20);
        for (auto it = pending.begin(); it != pending.end();) {
          if (it->second.deadline <= now) {
            expired.push_back(it->second);
            it = pending.erase(it);
          } else {
            ++it;
          }
        }
        if (!expired.empty()) {
          g.unlock();
          rdma::Status st(rdma::Code::kTimeout, conn ? conn->peer() : "", "call",
                          "no reply within " +
                              std::to_string(mesh->opts.call_timeout.count()) + " ms");
          for (Pending& p : expired) p.done(p.ctx, st, {});
          expired.clear();
          g.lock();
          continue;
        }
      }
      if (pending.empty())
        cv.wait(g);
      else
        cv.wait_for(g, std::chrono::milliseconds(20));
    }
  }

  void run_reader() {
    const size_t fs = mesh->frame_size;
    bool hello = is_outgoing;  // an incoming link first needs the peer's hello
    size_t next = 0;
    for (;;) {
      rdma::Op& op = recvs[next];
      rdma::Status st = op.wait();
      if (!st) {
        fail(st);
        return;
      }
      const std::byte* p = recv_mem.get() + next * fs;
      bool ok = for_each_message(p, op.bytes(), [&](const Header& h, std::string_view body) {
        return is_outgoing ? on_reply(h, body) : on_request(h, body, hello);
      });
      if (!ok) {
        fail(rdma::Status(rdma::Code::kFabricError, conn->peer(), "receive",
                          "malformed peer message"));
        return;
      }
      op = conn->recv(*recv_mr, next * fs, fs);
      next = (next + 1) % recvs.size();
    }
  }

  bool on_reply(const Header& h, std::string_view body) {
    if (h.kind != kReply && h.kind != kErrorReply) return false;
    Pending p;
    {
      std::lock_guard g(mu);
      auto it = pending.find(h.id);
      if (it == pending.end()) return true;  // timed out already
      p = it->second;
      pending.erase(it);
    }
    if (h.kind == kReply) {
      p.done(p.ctx, rdma::Status::ok(), body);
    } else {
      p.done(p.ctx,
             rdma::Status(rdma::Code::kInvalidArgument, conn->peer(),
                          "rpc " + std::to_string(h.type), std::string(body)),
             {});
    }
    return true;
  }

  bool on_request(const Header& h, std::string_view body, bool& hello) {
    if (h.kind == kHello) {
      node.store(uint32_t(h.id));
      hello = true;
      return true;
    }
    if (h.kind != kRequest || !hello) return false;
    PeerMesh::Handler* fn = mesh->handler(h.type, true);
    if (fn == nullptr) {
      send_reply(h.id, h.type, kErrorReply,
                 "no handler for peer rpc type " + std::to_string(h.type));
      return true;
    }
    // One std::function per request (it owns a reference to the link so a
    // late answer finds it even after the link broke or the mesh went).
    (*fn)(node.load(), body,
          [self = shared_from_this(), id = h.id, type = h.type](std::string_view reply) {
            self->send_reply(id, type, kReply, reply);
          });
    return true;
  }
};

PeerMesh::Handler* PeerMesh::Impl::handler(uint16_t type, bool wait) {
  if (type >= kMaxTypes) return nullptr;
  Handler* h = handlers[type].load(std::memory_order_acquire);
  if (h != nullptr || !wait) return h;
  std::unique_lock g(handlers_mu);
  handlers_cv.wait_for(g, opts.handler_wait, [&] {
    return stopping.load() || handlers[type].load() != nullptr;
  });
  return handlers[type].load();
}

void PeerMesh::Impl::defer(std::function<void()> fn) {
  {
    std::lock_guard g(defer_mu);
    deferred.push_back(std::move(fn));
  }
  defer_cv.notify_one();
}

std::shared_ptr<Link> PeerMesh::Impl::outgoing(uint32_t node) {
  std::lock_guard g(mu);
  if (stopping.load()) {
    auto l = std::make_shared<Link>();
    l->state = Link::kBroken;
    l->error = rdma::Status(rdma::Code::kClosed, "node " + std::to_string(node), "call",
                            "peer mesh closed");
    return l;
  }
  std::shared_ptr<Link>& l = out[node];
  if (l && !l->broken()) return l;
  l = std::make_shared<Link>();
  l->mesh = this;
  l->is_outgoing = true;
  l->node = node;
  links.push_back(l);
  l->start_thread(l->writer, &Link::run_writer);
  return l;
}

void PeerMesh::Impl::accept_loop() {
  while (!stopping.load()) {
    reap(false);
    auto c = listener->accept(std::chrono::milliseconds(100));
    if (!c) {
      // kTimeout mostly; a failed handshake is the peer's problem, but a
      // refused proof of the cluster secret is worth a line in the log.
      if (c.status().code() == rdma::Code::kAuthFailed && opts.log)
        opts.log("peer mesh: refused a connection: " + c.status().to_string());
      continue;
    }
    auto l = std::make_shared<Link>();
    l->mesh = this;
    l->conn = std::shared_ptr<rdma::Connection>(std::move(c).value());
    rdma::Status st = l->setup(*opts.fabric);
    if (!st) continue;  // ~Link closes it; the peer sees the loss
    l->state = Link::kUp;
    std::lock_guard g(mu);
    if (stopping.load()) break;
    links.push_back(l);
    l->start_thread(l->writer, &Link::run_writer);
    l->start_thread(l->reader, &Link::run_reader);
  }
}

void PeerMesh::Impl::reap(bool all) {
  std::vector<std::shared_ptr<Link>> dead;
  {
    std::lock_guard g(mu);
    for (auto it = links.begin(); it != links.end();) {
      if (all || (*it)->finished()) {
        dead.push_back(*it);
        it = links.erase(it);
      } else {
        ++it;
      }
    }
    for (auto it = out.begin(); it != out.end();) {
      bool gone = false;
      for (auto& d : dead) gone |= d == it->second;
      it = gone ? out.erase(it) : std::next(it);
    }
  }
  for (auto& l : dead) {
    if (all) l->fail(rdma::Status(rdma::Code::kClosed, l->conn ? l->conn->peer() : "",
                                  "call", "peer mesh shut down"));
    if (l->writer.joinable()) l->writer.join();
    if (l->reader.joinable()) l->reader.join();
    if (l->is_outgoing && l->conn) {
      std::lock_guard g(mu);
      graveyard.push_back(l->conn);
    }
  }
}

rdma::Result<std::unique_ptr<PeerMesh>> PeerMesh::start(const Options& options) {
  if (options.fabric == nullptr)
    return rdma::Status(rdma::Code::kInvalidArgument, "", "peer mesh", "no fabric");
  auto impl = std::make_shared<Impl>();
  impl->opts = options;
  impl->frame_size = options.max_message + kHeader;
  impl->membership.store(options.membership);
  auto l = options.fabric->listen(options.listen_host, options.listen_port);
  if (!l) return l.status();
  impl->listener = std::move(l).value();
  Impl* p = impl.get();
  impl->deferrer = std::thread([p] {
    std::unique_lock g(p->defer_mu);
    for (;;) {
      p->defer_cv.wait(g, [&] { return p->defer_stop || !p->deferred.empty(); });
      if (p->deferred.empty()) return;
      auto fn = std::move(p->deferred.front());
      p->deferred.pop_front();
      g.unlock();
      fn();
      g.lock();
    }
  });
  impl->acceptor = std::thread([p] { p->accept_loop(); });
  return std::unique_ptr<PeerMesh>(new PeerMesh(std::move(impl)));
}

PeerMesh::~PeerMesh() {
  close();
  {
    std::lock_guard g(impl_->defer_mu);
    impl_->defer_stop = true;
  }
  impl_->defer_cv.notify_all();
  if (impl_->deferrer.joinable()) impl_->deferrer.join();
}

void PeerMesh::close() {
  std::lock_guard once(impl_->close_mu);
  impl_->stopping.store(true);
  impl_->handlers_cv.notify_all();
  if (impl_->acceptor.joinable()) impl_->acceptor.join();
  impl_->reap(true);
  std::lock_guard g(impl_->rma_mu);
  for (auto& [node, c] : impl_->rma)
    if (c) c->close();  // the objects stay: see connection()
}

uint16_t PeerMesh::port() const { return impl_->listener->port(); }

void PeerMesh::set_membership(Membership* membership) { impl_->membership.store(membership); }

void PeerMesh::on(PeerRpc type, Handler handler) {
  auto t = size_t(type);
  if (t >= kMaxTypes) return;
  std::lock_guard g(impl_->handlers_mu);
  impl_->handler_store.push_back(std::make_unique<Handler>(std::move(handler)));
  impl_->handlers[t].store(impl_->handler_store.back().get(), std::memory_order_release);
  impl_->handlers_cv.notify_all();
}

void PeerMesh::call(uint32_t node, PeerRpc type, std::string_view payload, Done done,
                    void* ctx) {
  call(node, type, {}, payload, done, ctx);
}

void PeerMesh::call(uint32_t node, PeerRpc type, std::string_view head,
                    std::string_view payload, Done done, void* ctx) {
  Impl* m = impl_.get();
  if (node == 0) {  // e.g. routed before the first map: no link, no thread
    m->defer([=] {
      done(ctx,
           rdma::Status(rdma::Code::kInvalidArgument, "node 0", "call",
                        "no such node (no cluster map yet?)"),
           {});
    });
    return;
  }
  if (head.size() + payload.size() > m->opts.max_message) {
    rdma::Status st = rdma::Status(rdma::Code::kInvalidArgument, "node " + std::to_string(node),
                           "call",
                           "message of " + std::to_string(head.size() + payload.size()) +
                               " bytes exceeds the limit of " +
                               std::to_string(m->opts.max_message));
    m->defer([=] { done(ctx, st, {}); });
    return;
  }
  uint64_t id = m->next_id.fetch_add(1, std::memory_order_relaxed);
  std::string msg = encode(kRequest, uint16_t(type), id, head, payload);
  Pending p{done, ctx, Clock::now() + m->opts.call_timeout};
  // A link that broke between lookup and enqueue is replaced once; a
  // second failure is reported (the peer is really gone).
  for (int attempt = 0; attempt < 2; attempt++) {
    auto link = m->outgoing(node);
    if (link->enqueue_call(id, msg, p)) return;
    if (attempt == 1) {
      rdma::Status st;
      {
        std::lock_guard g(link->mu);
        st = link->error;
      }
      m->defer([=] { done(ctx, st, {}); });
    }
  }
}

rdma::Result<rdma::Connection*> PeerMesh::connection(uint32_t node) {
  Impl* m = impl_.get();
  std::string who = "node " + std::to_string(node);
  std::lock_guard g(m->rma_mu);  // one connect at a time; rare (per map change)
  if (m->stopping.load())
    return rdma::Status(rdma::Code::kClosed, who, "connect", "peer mesh closed");
  auto& c = m->rma[node];
  if (c && c->status().is_ok()) return c.get();
  Membership* mem = m->membership.load();
  if (mem == nullptr)
    return rdma::Status(rdma::Code::kInvalidArgument, who, "connect", "no membership");
  auto map = mem->map();
  const ServerInfo* si = map ? map->server(node) : nullptr;
  if (si == nullptr)
    return rdma::Status(rdma::Code::kInvalidArgument, who, "connect",
                        map ? "not in the cluster map" : "no cluster map yet");
  auto hp = parse_host_port(si->fabric_addr);
  if (!hp)
    return rdma::Status(rdma::Code::kInvalidArgument, who, "connect",
                        "bad fabric address: " + hp.status().to_string());
  auto conn = m->opts.fabric->connect(hp->first, hp->second);
  if (!conn) return conn.status();
  if (c) {
    std::lock_guard gg(m->mu);
    m->graveyard.push_back(c);
  }
  c = std::shared_ptr<rdma::Connection>(std::move(conn).value());
  return c.get();
}

rdma::Result<std::string> PeerMesh::request(rdma::Fabric& fabric, const std::string& host,
                                            uint16_t port, PeerRpc type,
                                            std::string_view payload,
                                            std::chrono::milliseconds timeout) {
  auto c = fabric.connect(host, port);
  if (!c) return c.status();
  std::unique_ptr<rdma::Connection> conn = std::move(c).value();
  const size_t fs = Options().max_message + kHeader;
  std::string out = encode(kHello, 0, 0, {}, {});
  out += encode(kRequest, uint16_t(type), 1, {}, payload);
  if (out.size() > fs)
    return rdma::Status(rdma::Code::kInvalidArgument, conn->peer(), "request",
                        "payload too large");
  auto send_mem = std::make_unique<std::byte[]>(out.size());
  auto recv_mem = std::unique_ptr<std::byte[]>(new std::byte[fs]);
  std::memcpy(send_mem.get(), out.data(), out.size());
  auto smr = fabric.register_memory({send_mem.get(), out.size()}, false, false);
  if (!smr) return smr.status();
  auto rmr = fabric.register_memory({recv_mem.get(), fs}, false, false);
  if (!rmr) return rmr.status();
  rdma::Op r = conn->recv(**rmr, 0, fs);
  rdma::Status st = conn->send(**smr, 0, out.size()).wait();
  auto deadline = Clock::now() + timeout;
  while (st && !r.done()) {
    if (Clock::now() >= deadline) {
      st = rdma::Status(rdma::Code::kTimeout, conn->peer(), "request",
                        "no reply within " + std::to_string(timeout.count()) + " ms");
      break;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  if (st) st = r.wait();
  std::string reply;
  if (st) {
    bool got = false;
    bool ok = for_each_message(recv_mem.get(), r.bytes(), [&](const Header& h,
                                                              std::string_view body) {
      if (h.id != 1 || (h.kind != kReply && h.kind != kErrorReply)) return false;
      if (h.kind == kErrorReply)
        st = rdma::Status(rdma::Code::kInvalidArgument, conn->peer(), "request",
                          std::string(body));
      reply.assign(body);
      got = true;
      return true;
    });
    if (!ok || !got)
      st = rdma::Status(rdma::Code::kFabricError, conn->peer(), "request",
                        "malformed reply");
  }
  conn->close();
  (void)r.wait();
  if (!st) return st;
  return reply;
}

}  // namespace ftm::repl
