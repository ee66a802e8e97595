// The progress engine: reading the completion queue and dispatching each
// completion to its operation, reading connection events, enforcing
// deadlines, and tearing broken connections down. One thread per Fabric
// runs loop(); application threads inside Op::wait also call drive() so a
// waiting initiator sees its completion without a thread hand-off.
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <linux/futex.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#include <cstring>

#include "rdma/domain_internal.h"

namespace ftm::rdma::detail {

std::atomic<void (*)()> after_eq_read_hook{nullptr};

namespace {
// True while this thread dispatches completions under cq_mu (see drive()).
thread_local bool t_in_drain = false;
}  // namespace

// Both sides seq_cst: if set() reads no waiter, that waiter's increment comes
// later in the total order and its read of word_ sees 1; a waiter between
// its check and FUTEX_WAIT is woken, or FUTEX_WAIT finds word_ != 0.
void DoneFlag::set() {
  word_.store(1, std::memory_order_seq_cst);
  if (waiters_.load(std::memory_order_seq_cst) != 0)
    syscall(SYS_futex, &word_, FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
}

void DoneFlag::wait() {
  waiters_.fetch_add(1, std::memory_order_seq_cst);
  while (word_.load(std::memory_order_seq_cst) == 0)
    syscall(SYS_futex, &word_, FUTEX_WAIT_PRIVATE, 0, nullptr, nullptr, 0);
  waiters_.fetch_sub(1, std::memory_order_relaxed);
}

namespace {
constexpr int kBatch = 32;
constexpr auto kDeadlineScan = std::chrono::milliseconds(1);
// Idle naps. The tcp provider does not signal the EQ's wait fd for incoming
// connection requests (measured: 10-30 ms connects with long naps), so with
// a listener or connection open we nap 1 ms; with nothing open, longer.
constexpr int kIdleWaitMs = 1;
constexpr int kEmptyWaitMs = 50;
// After incoming traffic, keep busy-polling this long past the last sign of
// it before napping again.
constexpr auto kLinger = std::chrono::microseconds(200);
// Nap length while an application thread drives the CQ.
constexpr auto kStepAside = std::chrono::microseconds(250);
// How long teardown's abandoned ops stay allocated (see Domain::abandoned):
// far longer than a provider takes to report a flushed operation.
constexpr auto kAbandonedKeep = std::chrono::seconds(10);
}  // namespace

std::string fi_error_string(int err) {
  if (err < 0) err = -err;
  return std::string(fi_strerror(err)) + " (" + std::to_string(err) + ")";
}

Domain::~Domain() {
  stop = true;
  if (progress.joinable()) {
    kick();
    progress.join();  // never this thread: see ConnState's comment
  }
  if (wake_fd >= 0) close(wake_fd);
  if (cq) fi_close(&cq->fid);
  if (eq) fi_close(&eq->fid);
  if (domain) fi_close(&domain->fid);
  if (fabric) fi_close(&fabric->fid);
  if (info) fi_freeinfo(info);
}

Status Domain::init_wait() {
  int ret = fi_control(&cq->fid, FI_GETWAIT, &cq_fd);
  if (ret) return Status(Code::kFabricError, "", "FI_GETWAIT on CQ",
                         fi_error_string(ret));
  ret = fi_control(&eq->fid, FI_GETWAIT, &eq_fd);
  if (ret) return Status(Code::kFabricError, "", "FI_GETWAIT on EQ",
                         fi_error_string(ret));
  wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd < 0) return Status(Code::kFabricError, "", "eventfd", "failed");
  return Status::ok();
}

void Domain::start() {
  // A raw pointer: the thread must not keep the domain alive, or the
  // domain's destructor (which stops the thread) would never run.
  Domain* self = this;
  progress = std::thread([self] { self->loop(); });
}

void Domain::kick() {
  // seq_cst pairs with idle_wait's store/load: either it sees our `active`
  // increment and does not sleep, or we see `sleeping` and wake it.
  if (sleeping.load(std::memory_order_seq_cst)) {
    uint64_t one = 1;
    ssize_t n = write(wake_fd, &one, sizeof one);
    (void)n;  // a full counter already means "wake up"
  }
}

bool Domain::step_aside(std::chrono::microseconds t) {
  sleeping.store(true, std::memory_order_seq_cst);
  pollfd p[2] = {{eq_fd, POLLIN, 0}, {wake_fd, POLLIN, 0}};
  timespec ts{0, long(t.count()) * 1000};
  int n = stop.load() ? 0 : ppoll(p, 2, &ts, nullptr);
  if (n > 0 && (p[1].revents & POLLIN)) {
    uint64_t v;
    ssize_t r = read(wake_fd, &v, sizeof v);
    (void)r;
  }
  sleeping.store(false, std::memory_order_release);
  return n > 0 && (p[0].revents & POLLIN);
}

bool Domain::idle_wait(int ms) {
  bool data = false;
  fid* fids[2] = {&cq->fid, &eq->fid};
  sleeping.store(true, std::memory_order_seq_cst);
  // fi_trywait(3): only sleep when the provider says nothing is pending;
  // otherwise go straight back to reading the queues.
  // Outstanding deadlines keep kAdaptive awake; kBlocking naps anyway
  // (`ms` is then at most the deadline scan period).
  if (!stop.load() &&
      (opts.progress == ProgressMode::kBlocking || active.load() == 0) &&
      fi_trywait(fabric, fids, 2) == FI_SUCCESS) {
    pollfd p[3] = {{cq_fd, POLLIN, 0}, {eq_fd, POLLIN, 0}, {wake_fd, POLLIN, 0}};
    int n = poll(p, 3, ms);
    data = n > 0 && (p[0].revents & POLLIN);
    if (n > 0 && (p[2].revents & POLLIN)) {
      uint64_t v;
      ssize_t r = read(wake_fd, &v, sizeof v);
      (void)r;
    }
  }
  sleeping.store(false, std::memory_order_release);
  return data;
}

Status Domain::make_endpoint(fi_info* fi, const std::shared_ptr<ConnState>& c,
                             const char* op) {
  int ret = fi_endpoint(domain, fi, &c->ep, nullptr);
  auto fail = [&](const char* what, int r) {
    if (c->ep) fi_close(&c->ep->fid);
    c->ep = nullptr;
    c->phase = Phase::kBroken;
    c->why = Status(Code::kFabricError, c->peer, op,
                    std::string(what) + ": " + fi_error_string(r));
    return c->why;
  };
  if (ret) {
    c->ep = nullptr;
    return fail("fi_endpoint", ret);
  }
  if ((ret = fi_ep_bind(c->ep, &eq->fid, 0))) return fail("fi_ep_bind(eq)", ret);
  if ((ret = fi_ep_bind(c->ep, &cq->fid, FI_TRANSMIT | FI_RECV)))
    return fail("fi_ep_bind(cq)", ret);
  if ((ret = fi_enable(c->ep))) return fail("fi_enable", ret);
  std::lock_guard g(map_mu);
  eps[&c->ep->fid] = c;
  return Status::ok();
}

std::shared_ptr<ConnState> Domain::find_ep(fid_t fid) {
  std::lock_guard g(map_mu);
  auto it = eps.find(fid);
  return it == eps.end() ? nullptr : it->second;
}

void Domain::unregister_ep(fid_t fid) {
  std::lock_guard g(map_mu);
  eps.erase(fid);
}

void Domain::complete(OpState* op, Status st, size_t n) {
  op->status = std::move(st);
  op->bytes = n;
  completions.fetch_add(1, std::memory_order_relaxed);
  op->done.set();  // wakes a thread sleeping in Op::wait
  if (op->cb != nullptr) op->cb(op->cb_ctx, op->status, op->bytes);
}

void Domain::dispatch(const fi_cq_data_entry& e) {
  auto* op = reinterpret_cast<OpState::Ctx*>(e.op_context)->self;
  std::shared_ptr<OpState> keep;
  {
    std::lock_guard g(op->conn->mu);
    auto it = op->conn->inflight.find(op);
    if (it == op->conn->inflight.end()) return;  // cannot happen: invariant
    keep = std::move(it->second);
    op->conn->inflight.erase(it);
  }
  if (op->counted) active--;
  complete(op, Status::ok(), (e.flags & FI_RECV) ? e.len : 0);
}

void Domain::dispatch_error(const fi_cq_err_entry& e) {
  if (e.op_context == nullptr) return;  // an error of no operation of ours
  auto* op = reinterpret_cast<OpState::Ctx*>(e.op_context)->self;
  std::shared_ptr<OpState> keep;
  std::shared_ptr<ConnState> c = op->conn;
  Status conn_why;
  {
    std::lock_guard g(c->mu);
    auto it = c->inflight.find(op);
    if (it == c->inflight.end()) return;
    keep = std::move(it->second);
    c->inflight.erase(it);
    conn_why = c->why;
  }
  if (op->counted) active--;
  Status st;
  std::string detail = fi_error_string(e.err);
  if (e.err == FI_ETRUNC) {
    st = Status(Code::kShortBuffer, c->peer, op->kind,
                "message larger than the posted buffer (" + detail + ")");
  } else if (e.err == FI_EKEYREJECTED || e.err == FI_EACCES) {
    st = Status(Code::kRevokedKey, c->peer, op->kind,
                "remote key rejected: the region was revoked (" + detail + ")");
  } else if (!conn_why.is_ok()) {
    st = conn_why;  // the connection already broke: report why
  } else {
    st = Status(Code::kPeerLost, c->peer, op->kind,
                "connection lost: peer died, closed, or rejected the access "
                "(" + detail + ")");
  }
  // Any failed operation leaves the endpoint in an unknown state (and tcp
  // has already torn the connection down): fail the connection as a whole,
  // before completing the op, so whoever learns of the error from it (a
  // waiter, a callback) finds the connection refusing new posts already.
  request_fail(c, st);
  complete(op, std::move(st), 0);
}

int Domain::drain_locked() {
  t_in_drain = true;
  struct Reset {
    ~Reset() { t_in_drain = false; }
  } reset;
  fi_cq_data_entry ents[kBatch];
  ssize_t n = fi_cq_read(cq, ents, kBatch);
  int total = 0;
  for (;;) {
    if (n > 0) {
      for (ssize_t i = 0; i < n; i++) dispatch(ents[i]);
      total += int(n);
    } else if (n == -FI_EAVAIL) {
      fi_cq_err_entry err{};
      if (fi_cq_readerr(cq, &err, 0) > 0) {
        dispatch_error(err);
        total++;
      }
    } else {
      break;  // -FI_EAGAIN, or a signal/timeout from sread
    }
    n = fi_cq_read(cq, ents, kBatch);
  }
  return total;
}

bool Domain::drive() {
  // A completion callback runs with cq_mu held; if it posts and meets a
  // full queue, post() drives: try_lock on a mutex this thread owns is
  // undefined, so say "someone else is driving" (this thread, later).
  if (t_in_drain) return false;
  std::unique_lock lk(cq_mu, std::try_to_lock);
  if (!lk) return false;
  drain_locked();
  return true;
}

void Domain::request_fail(std::shared_ptr<ConnState> c, Status why) {
  {
    // Unusable from now on (posts fail at once, status() reports it); the
    // endpoint itself is closed by the progress thread.
    std::lock_guard g(c->mu);
    if (c->phase == Phase::kConnected || c->phase == Phase::kConnecting) {
      if (c->phase == Phase::kConnected) c->phase = Phase::kBroken;
      c->why = why;
    }
  }
  {
    std::lock_guard g(fail_mu);
    to_fail.emplace_back(std::move(c), std::move(why));
  }
  kick();
}

void Domain::teardown(const std::shared_ptr<ConnState>& c, Status why,
                      Phase final) {
  fid_ep* ep;
  {
    std::lock_guard g(c->mu);
    ep = c->ep;
    if (!ep) return;  // already torn down
    c->ep = nullptr;
    if (c->why.is_ok()) {
      c->why = why;
    } else {
      why = c->why;  // the first failure is the one to report
    }
    c->phase = final;
  }
  unregister_ep(&ep->fid);
  std::vector<std::shared_ptr<OpState>> left;
  {
    std::lock_guard lk(cq_mu);
    {
      std::lock_guard eg(eq_mu);  // see eq_mu: no stale event outlives this
      if (final == Phase::kClosed) fi_shutdown(ep, 0);
      fi_close(&ep->fid);
    }
    // Completions the provider queued before the close still point at our
    // ops: dispatch them before declaring the rest abandoned.
    drain_locked();
    std::lock_guard g(c->mu);
    for (auto& [p, s] : c->inflight) left.push_back(std::move(s));
    c->inflight.clear();
  }
  for (auto& op : left) {
    if (op->counted) active--;
    Status st = why;
    if (st.op().empty() || st.code() == Code::kTimeout) {
      // Name this op in the message; keep the code that broke the link.
      st = Status(why.code(), c->peer, op->kind, why.message());
    }
    complete(op.get(), std::move(st), 0);
  }
  if (!left.empty()) {  // see `abandoned`
    const auto now = Clock::now();
    std::lock_guard g(abandoned_mu);
    for (auto& op : left) abandoned.emplace_back(now, std::move(op));
  }
  c->cv.notify_all();
}

void Domain::release_abandoned(Clock::time_point now) {
  std::deque<std::pair<Clock::time_point, std::shared_ptr<OpState>>> old;
  {
    std::lock_guard g(abandoned_mu);
    while (!abandoned.empty() && now - abandoned.front().first > kAbandonedKeep) {
      old.push_back(std::move(abandoned.front()));
      abandoned.pop_front();
    }
  }
  // Freed outside the lock: an op's destructor may release a connection.
}

void Domain::poll_eq() {
  alignas(fi_eq_cm_entry) uint8_t buf[sizeof(fi_eq_cm_entry) + 512];
  for (int i = 0; i < 16; i++) {
    uint32_t event = 0;
    std::unique_lock eql(eq_mu);  // until the fid is looked up: see eq_mu
    ssize_t n = fi_eq_read(eq, &event, buf, sizeof buf, 0);
    if (n == -FI_EAVAIL) {
      fi_eq_err_entry err{};
      if (fi_eq_readerr(eq, &err, 0) < 0) return;
      if (auto hook = after_eq_read_hook.load()) hook();
      std::shared_ptr<ConnState> c = find_ep(err.fid);
      eql.unlock();
      if (!c) continue;
      bool connecting;
      {
        std::lock_guard g(c->mu);
        connecting = c->phase == Phase::kConnecting;
      }
      Status st;
      if (connecting && (err.err == FI_ECONNREFUSED || err.err == ECONNREFUSED))
        // A listener that requires the cluster secret rejects a request
        // without a handshake nonce the same way (fi_reject).
        st = Status(Code::kConnectRefused, c->addr, "connect",
                    secret.empty()
                        ? "connection refused (nobody listens there, or the "
                          "listener requires --cluster-secret-file)"
                        : "connection refused (nobody listens there)");
      else if (connecting)
        st = Status(Code::kPeerLost, c->peer, "connect",
                    "handshake failed: " + fi_error_string(err.err));
      else
        st = Status(Code::kPeerLost, c->peer, "connection",
                    "connection error: " + fi_error_string(err.err));
      request_fail(c, st);
      continue;
    }
    if (n < 0) return;  // -FI_EAGAIN
    if (auto hook = after_eq_read_hook.load()) hook();
    auto* cm = reinterpret_cast<fi_eq_cm_entry*>(buf);
    size_t data_len =
        size_t(n) > sizeof(fi_eq_cm_entry) ? size_t(n) - sizeof(fi_eq_cm_entry) : 0;
    if (event == FI_CONNREQ) {
      std::shared_ptr<ListenerState> l;
      {
        std::lock_guard g(map_mu);
        auto it = peps.find(cm->fid);
        if (it != peps.end()) l = it->second;
      }
      eql.unlock();
      PendingConnReq req;
      req.info = cm->info;
      req.addr = sockaddr_to_string(cm->info ? cm->info->dest_addr : nullptr);
      bool valid =
          decode_identity(cm->data, data_len, &req.identity, &req.nonce);
      // With a cluster secret, a request without a handshake nonce comes
      // from a process that cannot prove it: refuse it before any endpoint
      // exists.
      if (!secret.empty() && req.nonce.empty()) valid = false;
      bool queued = false;
      if (l) {
        // Under l->mu: the Listener's destructor closes the pep under it.
        std::lock_guard g(l->mu);
        if (valid && !l->closed) {
          l->pending.push_back(std::move(req));
          queued = true;
          l->cv.notify_all();
        } else if (l->pep && cm->info) {
          // Not one of ours (no identity, or no nonce while we require the
          // handshake), or the listener is closing.
          fi_reject(l->pep, cm->info->handle, nullptr, 0);
        }
      }
      if (!queued && cm->info) fi_freeinfo(cm->info);
      continue;
    }
    // Only FI_CONNREQ carries an fi_info (fi_eq(3)); `info` is not ours to
    // free for the other events.
    std::shared_ptr<ConnState> c = find_ep(cm->fid);
    eql.unlock();
    if (!c) continue;
    if (event == FI_CONNECTED) {
      std::lock_guard g(c->mu);
      std::string id;
      if (data_len && decode_identity(cm->data, data_len, &id, &c->peer_nonce)) {
        c->peer_identity = id;
        c->peer = "'" + id + "' at " + c->addr;
      }
      if (c->phase == Phase::kConnecting) c->phase = Phase::kConnected;
      c->cv.notify_all();
    } else if (event == FI_SHUTDOWN) {
      request_fail(c, Status(Code::kPeerLost, c->peer, "connection",
                             "peer closed the connection or died (FI_SHUTDOWN)"));
    }
  }
}

void Domain::check_deadlines() {
  std::vector<std::shared_ptr<ConnState>> conns;
  {
    std::lock_guard g(map_mu);
    conns.reserve(eps.size());
    for (auto& [fid, c] : eps) conns.push_back(c);
  }
  auto now = Clock::now();
  for (auto& c : conns) {
    Status expired;
    {
      std::lock_guard g(c->mu);
      for (auto& [p, op] : c->inflight) {
        if (op->has_deadline && now >= op->deadline) {
          expired = Status(Code::kTimeout, c->peer, op->kind,
                           "no completion within " +
                               std::to_string(op->timeout.count()) +
                               " ms; connection torn down");
          break;
        }
      }
    }
    // request_fail takes c->mu itself.
    if (!expired.is_ok()) request_fail(c, std::move(expired));
  }
}

void Domain::loop() {
  if (opts.realtime_progress) {
    sched_param sp{};
    sp.sched_priority = 1;
    (void)pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);  // best effort
  }
  auto next_scan = Clock::now();
  Clock::time_point linger_until;
  while (!stop.load(std::memory_order_acquire)) {
    std::vector<std::pair<std::shared_ptr<ConnState>, Status>> fails;
    {
      std::lock_guard g(fail_mu);
      fails.swap(to_fail);
    }
    for (auto& [c, why] : fails) teardown(c, why, Phase::kBroken);
    fails.clear();
    auto now = Clock::now();
    bool stepping_aside = drivers.load(std::memory_order_relaxed) > 0 &&
                          opts.progress != ProgressMode::kBusyPoll;
    // fi_eq_read takes provider locks that an application thread driving
    // the CQ needs too: while one does, read the EQ once a millisecond.
    if (!stepping_aside || now >= next_scan) poll_eq();
    if (now >= next_scan) {
      check_deadlines();
      release_abandoned(now);
      next_scan = now + kDeadlineScan;
    }
    // An application thread inside Op::wait drives the CQ itself (for every
    // endpoint of the domain); polling it too would only fight it for the
    // provider's locks and the CPU. Short naps keep deadlines and events
    // going; Op::wait kicks us when it stops driving.
    if (stepping_aside) {
      if (step_aside(kStepAside)) poll_eq();  // an event is waiting
      continue;
    }
    const bool blocking = opts.progress == ProgressMode::kBlocking;
    bool busy = opts.progress == ProgressMode::kBusyPoll ||
                (!blocking && active.load(std::memory_order_relaxed) > 0);
    if (!busy && !blocking && now < linger_until) {
      // Incoming traffic woke us lately (a peer writing into our memory:
      // no completion of ours marks it). Keep polling while the sockets stay
      // busy, so a stream of writes is not paced by poll() wake-ups.
      drive();
      pollfd p{cq_fd, POLLIN, 0};
      if (poll(&p, 1, 0) > 0) linger_until = Clock::now() + kLinger;
      continue;
    }
    if (busy) {
      drive();
    } else {
      // Nothing with a deadline is outstanding, so a long nap misses no
      // deadline; incoming data, events and kick() end it early.
      bool empty;
      {
        std::lock_guard g(map_mu);
        empty = eps.empty() && peps.empty();
      }
      if (idle_wait(empty && active.load(std::memory_order_relaxed) == 0
                        ? kEmptyWaitMs
                        : kIdleWaitMs))
        linger_until = Clock::now() + kLinger;
      drive();
    }
  }
}

}  // namespace ftm::rdma::detail
