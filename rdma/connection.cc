// Posting operations on a connection (fi_rma(3), fi_msg(3)) and waiting for
// them.
#include "rdma/connection.h"

#include <rdma/fi_rma.h>

#include <thread>

#include "rdma/domain_internal.h"

namespace ftm::rdma {

using detail::Clock;
using detail::ConnState;
using detail::OpState;
using detail::Phase;

namespace {
constexpr auto kMaxSpin = std::chrono::milliseconds(2);
}  // namespace

bool Op::done() const {
  return !s_ || s_->done.load(std::memory_order_acquire);
}

Status Op::wait_driving(std::chrono::microseconds nap) {
  if (!s_) return Status(Code::kInvalidArgument, "", "wait", "empty Op");
  OpState* op = s_.get();
  auto& d = *op->conn->dom;
  while (!op->done.load(std::memory_order_acquire)) {
    d.drive();  // try-lock: never blocks behind another driver
    if (op->done.load(std::memory_order_acquire)) break;
    std::this_thread::sleep_for(nap);
  }
  return op->status;
}

Status Op::wait() {
  if (!s_) return Status(Code::kInvalidArgument, "", "wait", "empty Op");
  OpState* op = s_.get();
  if (op->done.load(std::memory_order_acquire)) return op->status;
  auto& d = *op->conn->dom;
  // Phase 1: spin driving the CQ ourselves while the domain is making
  // progress. A 64-byte delivery-complete write takes ~7 us on loopback tcp;
  // handing each completion over from the progress thread would add a
  // wake-up to every operation, and when streaming (16 writes in flight)
  // the sleep/wake hand-offs cut bandwidth several-fold (measured). We
  // sleep once nothing at all has completed for `wait_spin`, or after
  // kMaxSpin in any case (other connections' traffic must not keep a thread
  // waiting for a quiet one spinning forever).
  if (d.opts.progress == ProgressMode::kBlocking) {
    d.drive();  // one look: the completion may be queued already
    if (!op->done.load(std::memory_order_acquire))
      op->done.wait();
    return op->status;
  }
  d.drivers++;
  uint64_t seen = d.completions.load(std::memory_order_relaxed);
  auto start = Clock::now();
  auto spin_until = start + d.opts.wait_spin;
  for (int i = 0; !op->done.load(std::memory_order_acquire); i++) {
    d.drive();
    if ((i & 7) != 7) continue;
    auto now = Clock::now();
    uint64_t c = d.completions.load(std::memory_order_relaxed);
    if (c != seen) {
      seen = c;
      spin_until = now + d.opts.wait_spin;
    } else if (now >= spin_until) {
      break;
    }
    if (now - start >= kMaxSpin) break;
  }
  d.drivers--;
  // Phase 2: sleep until the progress thread (now busy-polling, since no
  // application thread drives) completes the op. Bounded: the progress
  // thread fails the op at its deadline; a recv without deadline waits for
  // a message or the connection's failure, as documented.
  if (!op->done.load(std::memory_order_acquire)) {
    d.kick();
    op->done.wait();
  }
  return op->status;
}

size_t Op::bytes() const { return s_ ? s_->bytes : 0; }

Connection::~Connection() { close(); }

const std::string& Connection::peer() const { return c_->peer; }
const std::string& Connection::peer_identity() const {
  return c_->peer_identity;
}

Status Connection::status() const {
  std::lock_guard g(c_->mu);
  if (c_->phase == Phase::kConnected) return Status::ok();
  return c_->why;
}

void Connection::close() {
  if (!c_) return;
  c_->dom->teardown(c_, Status(Code::kClosed, c_->peer, "close",
                               "connection closed locally"),
                    Phase::kClosed);
}

namespace {

enum class Kind { kWrite, kRead, kSend, kRecv };
const char* kind_name(Kind k) {
  switch (k) {
    case Kind::kWrite: return "write";
    case Kind::kRead: return "read";
    case Kind::kSend: return "send";
    case Kind::kRecv: return "recv";
  }
  return "?";
}

// Builds a failed op (for errors found before posting).
std::shared_ptr<OpState> failed(const std::shared_ptr<ConnState>& c,
                                Status st) {
  auto op = std::make_shared<OpState>();
  op->conn = c;
  op->status = std::move(st);
  op->done.set();
  return op;
}

std::shared_ptr<OpState> post(const std::shared_ptr<ConnState>& c, Kind kind,
                              const MemoryRegion& local, size_t local_off,
                              const RegionDescriptor* remote,
                              uint64_t remote_off, size_t len,
                              std::chrono::milliseconds timeout,
                              Connection::Callback cb = nullptr,
                              void* cb_ctx = nullptr) {
  auto& d = *c->dom;
  const char* name = kind_name(kind);
  if (len == 0)
    return failed(c, Status(Code::kInvalidArgument, c->peer, name,
                            "zero-length operation"));
  if (local_off > local.size() || len > local.size() - local_off)
    return failed(
        c, Status(kind == Kind::kRecv || kind == Kind::kRead
                      ? Code::kShortBuffer
                      : Code::kOutOfBounds,
                  c->peer, name,
                  "local bytes [" + std::to_string(local_off) + ", " +
                      std::to_string(local_off + len) +
                      ") do not fit the " + std::to_string(local.size()) +
                      "-byte local region"));
  if (remote) {
    Status st = remote->check_bounds(remote_off, len, name);
    if (!st) return failed(c, Status(st.code(), c->peer, name, st.message()));
  }
  if (d.max_msg_size && len > d.max_msg_size)
    return failed(c, Status(Code::kInvalidArgument, c->peer, name,
                            "length " + std::to_string(len) +
                                " exceeds the provider's max message size " +
                                std::to_string(d.max_msg_size)));

  auto op = std::make_shared<OpState>();
  op->ctx.self = op.get();
  op->conn = c;
  op->kind = name;
  if (timeout == Connection::kDefault) timeout = d.opts.op_timeout;
  if (timeout.count() >= 0) {
    op->has_deadline = true;
    op->timeout = timeout;
    op->deadline = Clock::now() + timeout;
  }

  iovec iov{local.memory().data() + local_off, len};
  void* desc = local.local_desc();
  fi_rma_iov riov{};
  if (remote) {
    riov.addr = remote->remote_addr(remote_off);
    riov.len = len;
    riov.key = remote->key;
  }
  for (;;) {
    ssize_t ret;
    {
      std::lock_guard g(c->mu);
      // A receive may be posted while connecting: the handshake posts the
      // one for the peer's proof before the peer can send it.
      bool usable = c->phase == Phase::kConnected ||
                    (kind == Kind::kRecv && c->phase == Phase::kConnecting);
      if (!c->ep || !usable) {
        Status why = c->why.is_ok()
                         ? Status(Code::kClosed, c->peer, name, "not connected")
                         : Status(c->why.code(), c->peer, name,
                                  "connection unusable: " + c->why.message());
        op->status = std::move(why);
        op->done.set();
        return op;
      }
      // Set under c->mu with the op in `inflight`: only a completion of a
      // posted op may call it (every failure path below clears it first).
      op->cb = cb;
      op->cb_ctx = cb_ctx;
      c->inflight.emplace(op.get(), op);
      op->counted = op->has_deadline;
      if (op->counted) d.active++;
      detail::tsan_posted(&op->ctx.fi);  // the op_context the CQ returns
      switch (kind) {
        case Kind::kWrite: {
          fi_msg_rma m{&iov, &desc, 1, 0, &riov, 1, &op->ctx.fi, 0};
          ret = fi_writemsg(c->ep, &m,
                            FI_COMPLETION |
                                (d.delivery_complete ? FI_DELIVERY_COMPLETE : 0));
          break;
        }
        case Kind::kRead: {
          fi_msg_rma m{&iov, &desc, 1, 0, &riov, 1, &op->ctx.fi, 0};
          ret = fi_readmsg(c->ep, &m, FI_COMPLETION);
          break;
        }
        case Kind::kSend: {
          fi_msg m{&iov, &desc, 1, 0, &op->ctx.fi, 0};
          ret = fi_sendmsg(c->ep, &m, FI_COMPLETION);
          break;
        }
        case Kind::kRecv: {
          fi_msg m{&iov, &desc, 1, 0, &op->ctx.fi, 0};
          ret = fi_recvmsg(c->ep, &m, FI_COMPLETION);
          break;
        }
      }
      if (ret == 0) break;
      op->cb = nullptr;
      c->inflight.erase(op.get());
      if (op->counted) d.active--;
      if (ret != -FI_EAGAIN) {
        op->status = Status(Code::kFabricError, c->peer, name,
                            "post failed: " + detail::fi_error_string(int(ret)));
        op->done.set();
        return op;
      }
    }
    // Queue full: make progress, retry until the deadline.
    if (op->has_deadline && Clock::now() >= op->deadline) {
      op->status = Status(Code::kTimeout, c->peer, name,
                          "transmit queue stayed full until the deadline");
      op->done.set();
      return op;
    }
    d.drive();
  }
  // No kick() here: the thread that waits on this op drives the CQ itself,
  // and an op nobody waits on was already handed to the socket by the
  // provider; the progress thread's naps (1 ms at most) do the rest.
  return op;
}

}  // namespace

Op Connection::write(const MemoryRegion& local, size_t local_off,
                     const RegionDescriptor& remote, uint64_t remote_off,
                     size_t len, ms timeout) {
  return Op(post(c_, Kind::kWrite, local, local_off, &remote, remote_off, len,
                 timeout));
}

Op Connection::read(MemoryRegion& local, size_t local_off,
                    const RegionDescriptor& remote, uint64_t remote_off,
                    size_t len, ms timeout) {
  return Op(post(c_, Kind::kRead, local, local_off, &remote, remote_off, len,
                 timeout));
}

Op Connection::send(const MemoryRegion& local, size_t off, size_t len,
                    ms timeout) {
  return Op(post(c_, Kind::kSend, local, off, nullptr, 0, len, timeout));
}

Op Connection::recv(MemoryRegion& local, size_t off, size_t len, ms timeout) {
  return Op(post(c_, Kind::kRecv, local, off, nullptr, 0, len, timeout));
}

Op Connection::recv(MemoryRegion& local, size_t off, size_t len, Callback cb,
                    void* ctx) {
  return Op(post(c_, Kind::kRecv, local, off, nullptr, 0, len, kNoDeadline, cb,
                 ctx));
}

}  // namespace ftm::rdma
