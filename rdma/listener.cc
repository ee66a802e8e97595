// Accepting connections: the progress thread queues FI_CONNREQ events (with
// the connector's identity); accept() turns one into an endpoint and
// completes the handshake (fi_cm(3)).
#include "rdma/listener.h"

#include "rdma/domain_internal.h"

namespace ftm::rdma {

using detail::Phase;

Listener::~Listener() {
  auto& d = *l_->dom;
  {
    std::lock_guard g(d.map_mu);
    d.peps.erase(&l_->pep->fid);
  }
  // The progress thread may still hold l_ (it rejects under l_->mu), so the
  // pep is closed under the same lock.
  std::lock_guard g(l_->mu);
  l_->closed = true;
  for (auto& r : l_->pending) {
    fi_reject(l_->pep, r.info->handle, nullptr, 0);
    fi_freeinfo(r.info);
  }
  l_->pending.clear();
  fi_close(&l_->pep->fid);
  l_->pep = nullptr;
}

uint16_t Listener::port() const { return l_->port; }
std::string Listener::address() const {
  return l_->host + ":" + std::to_string(l_->port);
}

Result<std::unique_ptr<Connection>> Listener::accept(
    std::chrono::milliseconds timeout) {
  auto& d = *l_->dom;
  auto until = detail::Clock::now() + timeout;
  for (;;) {
    detail::PendingConnReq req;
    {
      std::unique_lock lk(l_->mu);
      if (!l_->cv.wait_until(lk, until, [&] { return !l_->pending.empty(); }))
        return Status(Code::kTimeout, "", "accept on " + address(),
                      "no connection request within " +
                          std::to_string(timeout.count()) + " ms");
      req = std::move(l_->pending.front());
      l_->pending.pop_front();
    }
    auto c = std::make_shared<detail::ConnState>();
    c->dom = l_->dom;
    c->addr = req.addr;
    c->peer_identity = req.identity;
    c->peer_nonce = req.nonce;
    c->peer = "'" + req.identity + "' at " + req.addr;
    d.active++;
    // Destroyed after `conn` (declared first): its receive points into it.
    detail::Handshake hs;
    std::unique_ptr<Connection> conn;
    Status st = d.make_endpoint(req.info, c, "accept");
    if (st) {
      conn.reset(new Connection(d_, c));
      if (!d.secret.empty()) st = hs.start(d_, *conn);
    }
    if (!st) {
      fi_reject(l_->pep, req.info->handle, nullptr, 0);
      if (conn) d.teardown(c, st, Phase::kBroken);
    } else {
      std::vector<uint8_t> cm = detail::encode_identity(
          d.identity, hs.nonce, detail::cm_data_limit(c->ep), &hs.identity);
      int ret = fi_accept(c->ep, cm.data(), cm.size());
      if (ret) {
        st = Status(Code::kFabricError, c->peer, "accept",
                    "fi_accept: " + detail::fi_error_string(ret));
        d.teardown(c, st, Phase::kBroken);
      }
    }
    fi_freeinfo(req.info);
    if (st) {
      std::unique_lock lk(c->mu);
      auto left = std::max(until - detail::Clock::now(),
                           detail::Clock::duration(std::chrono::milliseconds(
                               d.opts.connect_timeout)));
      if (!c->cv.wait_for(lk, left,
                          [&] { return c->phase != Phase::kConnecting; })) {
        lk.unlock();
        st = Status(Code::kTimeout, c->peer, "accept",
                    "handshake did not finish");
        d.teardown(c, st, Phase::kBroken);
      } else if (c->phase != Phase::kConnected) {
        st = c->why;
      }
    }
    if (st && !d.secret.empty()) {
      st = hs.finish(*conn, c, HandshakeRole::kAcceptor);
      if (!st) d.teardown(c, st, Phase::kBroken);
    }
    d.active--;
    if (st) return conn;
    // A connector that failed the proof is reported at once, so the caller
    // can log the refusal (its connection is already torn down).
    if (st.code() == Code::kAuthFailed) return st;
    // A connector that vanished mid-handshake should not fail accept() for
    // everyone: report it only if there is nothing else to accept in time.
    if (detail::Clock::now() >= until) return st;
  }
}

}  // namespace ftm::rdma
