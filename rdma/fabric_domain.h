// Fabric: the entry point of the rdma/ layer. Opens one libfabric fabric and
// domain (provider chosen by --fabric=auto|verbs|tcp|shm), owns its
// completion queue, event queue and the progress thread, and creates the
// other objects: memory regions (register_memory), listeners (listen) and
// connections (connect).
//
// Provider selection (fi_getinfo(3)): we ask for FI_EP_MSG with FI_MSG|FI_RMA
// and the strict memory-registration bits (FI_MR_LOCAL | FI_MR_VIRT_ADDR |
// FI_MR_ALLOCATED | FI_MR_PROV_KEY) and then follow whatever mr_mode the
// provider answers. "auto" takes verbs when fi_getinfo finds a device, else
// tcp. Writes ask for FI_DELIVERY_COMPLETE (the data is in the target's
// memory when the completion is reported); if a provider refuses it we fall
// back to its default completion and say so in describe().
//
// Progress: the tcp provider moves data only while some thread is inside
// fi_cq_read/fi_cq_sread (DESIGN.md). The progress thread owned here polls
// the queue so that incoming writes land even while every application thread
// sleeps; it busy-polls while operations with deadlines are outstanding (or
// always, with ProgressMode::kBusyPoll), lingers briefly after incoming
// traffic, and otherwise sleeps in poll() on the queues' wait fds (1 ms naps
// while anything is open); with ProgressMode::kBlocking it never spins and
// Op::wait sleeps at once. It also enforces every operation's deadline and
// tears broken connections down. See rdma/README.md.
//
// Thread-safety: all methods are safe for concurrent use. Objects created by
// a Fabric keep its domain alive, so destruction order does not matter.
#ifndef FTM_RDMA_FABRIC_DOMAIN_H_
#define FTM_RDMA_FABRIC_DOMAIN_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "rdma/status.h"

namespace ftm::rdma {

namespace detail {
struct Domain;
}
class Connection;
class Listener;
class MemoryRegion;

enum class ProviderChoice { kAuto, kVerbs, kTcp, kShm };

// Parses "auto", "verbs", "tcp", "shm" (the --fabric= values). Errors:
// kInvalidArgument naming the bad value.
Result<ProviderChoice> parse_provider(std::string_view name);

enum class ProgressMode {
  kAdaptive,  // busy-poll while work is outstanding, else nap in poll()
  kBusyPoll,  // always busy-poll: lowest latency for a target, costs a core
  // Never spin: the progress thread sleeps in poll() on the queues' wait
  // fds (waking at least every millisecond for deadlines) and Op::wait
  // sleeps at once. For machines with fewer cores than busy threads (a
  // whole cluster on one small host), where a spinning thread holds the
  // core the thread it waits for needs.
  kBlocking,
  // kAdaptive on verbs (completions come from the NIC without a syscall:
  // spinning pays), kBlocking elsewhere (tcp: each completion is a socket
  // read anyway, and spinning starves the server's own workers).
  kAuto,
};

struct FabricOptions {
  ProviderChoice provider = ProviderChoice::kAuto;
  // Local address whose interface the domain (and listeners) use, e.g.
  // "127.0.0.1"; empty = the provider's first interface.
  std::string local_addr;
  // This process's name, sent to peers on connect and used in their error
  // messages; empty = "<hostname>:<pid>". At most 100 bytes.
  std::string identity;
  // The cluster secret (load_cluster_secret, --cluster-secret-file). Non-
  // empty: connect() and accept() return a connection only after both ends
  // proved knowledge of it (cluster_secret.h); a connection request without
  // a handshake nonce is rejected before an endpoint is created. Empty: no
  // handshake; anyone who reaches a listener may connect.
  std::string cluster_secret;
  // Default deadline of every posted write, read and send (recvs have none
  // unless given one). At the deadline the operation fails with kTimeout and
  // the connection is torn down.
  std::chrono::milliseconds op_timeout{1000};
  std::chrono::milliseconds connect_timeout{2000};
  ProgressMode progress = ProgressMode::kAdaptive;
  // How long Op::wait drives the completion queue itself (lowest latency)
  // before sleeping until the progress thread completes the op (no CPU).
  std::chrono::microseconds wait_spin{100};
  // Run the progress thread at SCHED_FIFO priority 1 (best effort: needs
  // CAP_SYS_NICE or an rtprio limit, else it keeps its normal priority).
  // For a process whose timing matters more than its throughput: the
  // metadata server receives heartbeats (one-sided writes) through this
  // thread, so on a starved host a normal-priority thread would delay them
  // into false suspicions. It naps when idle, so it does not hog a core.
  bool realtime_progress = false;
  // Where startup lines go (provider, progress model, limits); default
  // stderr. Called from the opening thread only.
  std::function<void(std::string_view)> log;
};

class Fabric {
 public:
  // Opens the fabric, domain, queues and progress thread. Logs one line
  // describing the choice (see describe()). Errors: kNoProvider (with the
  // providers tried and fi_getinfo's answer), kFabricError.
  static Result<std::unique_ptr<Fabric>> open(const FabricOptions& options);
  ~Fabric();
  Fabric(const Fabric&) = delete;
  Fabric& operator=(const Fabric&) = delete;

  // Provider name picked ("tcp", "verbs", ...).
  const std::string& provider() const;
  // How this fabric's threads wait (FabricOptions::progress, with kAuto
  // resolved for the provider picked). Threads built on the fabric that
  // poll for their own work (the replication log's) follow it.
  ProgressMode progress() const;
  // One line: provider, fabric, domain, progress models, mr_mode, completion
  // semantics, limits (max message, queue depths, key size).
  std::string describe() const;
  // This process's identity as sent to peers.
  const std::string& identity() const;

  // Registers `memory` (must stay allocated until the region is destroyed).
  // remote_read/remote_write: whether peers may read/write it one-sidedly.
  // Errors: kInvalidArgument (empty span), kFabricError (fi_mr_reg failed).
  Result<std::unique_ptr<MemoryRegion>> register_memory(
      std::span<std::byte> memory, bool remote_read, bool remote_write);

  // Listens for connections on `host`:`port` (port 0 = pick one; see
  // Listener::port). Errors: kFabricError (address in use, ...).
  Result<std::unique_ptr<Listener>> listen(std::string_view host,
                                           uint16_t port);

  // Connects to a listener and exchanges identities; with a cluster secret
  // also runs the handshake (both ends prove the secret) before returning.
  // timeout 0 = the configured connect_timeout. Errors: kConnectRefused
  // (nobody listens), kTimeout, kPeerLost (rejected: also what a listener
  // with a secret answers a connector without one), kAuthFailed (the
  // listener has no secret or a different one), kFabricError; all name
  // host:port.
  Result<std::unique_ptr<Connection>> connect(
      std::string_view host, uint16_t port,
      std::chrono::milliseconds timeout = std::chrono::milliseconds(0));

 private:
  explicit Fabric(std::shared_ptr<detail::Domain> d) : d_(std::move(d)) {}
  std::shared_ptr<detail::Domain> d_;
};

}  // namespace ftm::rdma

#endif  // FTM_RDMA_FABRIC_DOMAIN_H_
