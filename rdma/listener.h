// A passive endpoint accepting connections (fi_cm(3): fi_listen, FI_CONNREQ,
// fi_accept). Each accepted Connection knows the connector's identity.
//
// Thread-safety: safe for concurrent use.
#ifndef FTM_RDMA_LISTENER_H_
#define FTM_RDMA_LISTENER_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "rdma/connection.h"
#include "rdma/status.h"

namespace ftm::rdma {

namespace detail {
struct Domain;
struct ListenerState;
}

class Listener {
 public:
  ~Listener();  // stops listening; pending requests are rejected
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // The port actually bound (useful after listen(host, 0)).
  uint16_t port() const;
  // "host:port".
  std::string address() const;

  // Waits up to `timeout` for a connection request, accepts it and returns
  // the established connection. With a cluster secret, only a connector
  // that proved it (cluster_secret.h): one that sent no nonce was rejected
  // by the progress thread (accept() never sees it), one whose proof is
  // wrong or late (more than connect_timeout) is disconnected and reported.
  // Errors: kTimeout (nobody connected), kPeerLost (the connector went away
  // during the handshake), kAuthFailed (the connector failed the proof;
  // call accept() again for the next one), kFabricError.
  Result<std::unique_ptr<Connection>> accept(std::chrono::milliseconds timeout);

 private:
  friend class Fabric;
  Listener(std::shared_ptr<detail::Domain> d,
           std::shared_ptr<detail::ListenerState> l)
      : d_(std::move(d)), l_(std::move(l)) {}
  std::shared_ptr<detail::Domain> d_;  // keeps the domain alive
  std::shared_ptr<detail::ListenerState> l_;
};

}  // namespace ftm::rdma

#endif  // FTM_RDMA_LISTENER_H_
