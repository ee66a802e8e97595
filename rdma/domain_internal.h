// Internal to rdma/: the state behind Fabric, Connection, Listener and Op,
// and the progress engine that drives the completion and event queues.
// Only rdma/*.cc include this (it pulls in libfabric).
//
// Locking order: cq_mu -> ConnState::mu -> (map_mu | fail_mu | ListenerState::mu);
//                cq_mu -> eq_mu -> map_mu.
// Invariant that makes op contexts safe: an OpState stays in its
// connection's `inflight` map (which owns it) until either its completion is
// read from the CQ, or its endpoint has been closed and the CQ drained under
// cq_mu. So every op_context read from the CQ points at a live OpState.
#ifndef FTM_RDMA_DOMAIN_INTERNAL_H_
#define FTM_RDMA_DOMAIN_INTERNAL_H_

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "rdma/cluster_secret.h"
#include "rdma/connection.h"
#include "rdma/fabric_domain.h"
#include "rdma/memory_region.h"
#include "rdma/status.h"

namespace ftm::rdma::detail {

using Clock = std::chrono::steady_clock;

struct ConnState;
struct ListenerState;

// A one-shot "operation done" flag a thread can sleep on. Not
// std::atomic<bool>::wait: libstdc++ 12 spins on sched_yield before it
// sleeps, and with a whole cluster on a 2-core host that spinning took a
// fifth of each server's CPU (perf). This sleeps on a futex at once.
class DoneFlag {
 public:
  bool load(std::memory_order o = std::memory_order_acquire) const {
    return word_.load(o) != 0;
  }
  // Marks done and wakes every thread in wait(). Before any waiter exists
  // (an op failed before posting) it is a plain store.
  void set();
  // Returns once set() was called.
  void wait();

 private:
  std::atomic<uint32_t> word_{0};
  std::atomic<uint32_t> waiters_{0};
};

struct OpState {
  // The provider's per-operation context (FI_CONTEXT2 scratch) and a way
  // back from the op_context pointer the CQ hands us.
  struct Ctx {
    fi_context2 fi;
    OpState* self;
  } ctx;
  std::shared_ptr<ConnState> conn;
  const char* kind = "";  // "write", "read", "send", "recv"
  bool has_deadline = false;
  Clock::time_point deadline;
  std::chrono::milliseconds timeout{0};
  // Counted in Domain::active (ops with a deadline keep the progress
  // thread busy-polling; a recv waiting indefinitely must not).
  bool counted = false;
  DoneFlag done;
  // Connection::Callback, if the op was posted with one (see complete()).
  void (*cb)(void*, const Status&, size_t) = nullptr;
  void* cb_ctx = nullptr;
  Status status;     // valid once done
  size_t bytes = 0;  // valid once done
};

enum class Phase { kConnecting, kConnected, kBroken, kClosed };

// ConnState and ListenerState point at their Domain without owning it: the
// progress thread holds these states at times, and must never drop the last
// reference to the Domain (whose destructor joins that very thread). The
// public objects (Fabric, Connection, Listener, MemoryRegion) own it.
struct ConnState {
  Domain* dom = nullptr;
  mutable std::mutex mu;
  std::condition_variable cv;  // phase changes (connect/accept waits)
  fid_ep* ep = nullptr;        // null once torn down
  Phase phase = Phase::kConnecting;
  Status why;                  // set when kBroken/kClosed or connect failed
  std::string peer;            // "'identity' at addr"
  std::string peer_identity;
  std::string addr;
  // Handshake nonces (cluster_secret.h): ours, and the one the peer sent in
  // its private data (empty if it sent none). Set before the phase leaves
  // kConnecting; read only by the thread running connect/accept.
  std::string my_nonce;
  std::string peer_nonce;
  std::unordered_map<OpState*, std::shared_ptr<OpState>> inflight;
};

struct PendingConnReq {
  fi_info* info = nullptr;  // owned: fi_freeinfo or hand to fi_endpoint
  std::string identity;
  std::string addr;
  std::string nonce;  // the connector's handshake nonce, empty if none
};

struct ListenerState {
  Domain* dom = nullptr;
  fid_pep* pep = nullptr;
  std::string host;
  uint16_t port = 0;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<PendingConnReq> pending;
  bool closed = false;
};

// Identity exchanged in the connect/accept private data (fi_cm(3) param),
// peer_identity.cc: 4-byte magic, 2-byte length, the identity bytes, and
// if `nonce` is not empty a 4-byte magic and the kNonceSize-byte nonce.
// The identity is cut so the whole fits `limit` bytes (the endpoint's
// cm_data_limit); *sent (if not null) gets the identity as sent.
std::vector<uint8_t> encode_identity(const std::string& id,
                                     const std::string& nonce = {},
                                     size_t limit = SIZE_MAX,
                                     std::string* sent = nullptr);
// The most private data the endpoint's provider carries on connect/accept
// (FI_OPT_CM_DATA_SIZE; verbs on InfiniBand: 56 bytes less its header), or
// SIZE_MAX if it does not say.
size_t cm_data_limit(fid_ep* ep);
// False if `data` is not an identity of ours (wrong magic or length).
// `nonce` (if not null) gets the handshake nonce, or empty if there is none.
bool decode_identity(const uint8_t* data, size_t len, std::string* id,
                     std::string* nonce = nullptr);

// The cluster-secret handshake of one connection (handshake.cc,
// cluster_secret.h). Used by Fabric::connect and Listener::accept only when
// the domain has a secret. Destroy the Connection (tearing it down) before
// the Handshake: the posted receive points into `mem`.
struct Handshake {
  // Draws our nonce, registers `mem` and posts the receive for the peer's
  // proof. Call after make_endpoint and before fi_connect/fi_accept, so the
  // proof cannot arrive before its receive. Errors: kFabricError.
  Status start(const std::shared_ptr<Domain>& d, Connection& conn);
  // Once connected: sends our proof as the first message and checks the
  // peer's. Errors: kAuthFailed (the peer sent no nonce or a wrong proof),
  // else the send/receive failure (kTimeout after connect_timeout, kPeerLost).
  // The caller tears the connection down on any error.
  Status finish(Connection& conn, const std::shared_ptr<ConnState>& c,
                HandshakeRole role);

  std::string nonce;     // ours
  std::string identity;  // ours, as sent in the private data (maybe cut)
  alignas(64) std::byte mem[2 * kProofSize];  // [peer's proof | ours]
  std::unique_ptr<MemoryRegion> mr;
  Op recv;
};
// "1.2.3.4:port" / "[::1]:port" for a sockaddr_in/in6, "?" otherwise.
std::string sockaddr_to_string(const void* sa);
// fi_strerror of a positive or negative code, with the number.
std::string fi_error_string(int err);

// Provider queries shared by Fabric::open and print_fabric_info.
constexpr uint32_t kApiVersion = FI_VERSION(1, 12);
// Hints for FI_EP_MSG, FI_MSG|FI_RMA, strict mr_mode, thread-safe domain,
// optionally delivery-complete writes and full ordering. Caller frees.
fi_info* make_hints(const char* prov, bool delivery_complete, bool ordered);
// fi_getinfo for `prov` (local `node` or null), relaxing delivery-complete
// and ordering if refused. Returns 0 or a negative fi error.
int get_info(const char* prov, const char* node, fi_info** out, bool* dc,
             bool* ordered);
// fi_tostr copied out of its static buffer.
std::string tostr(const void* v, enum fi_type t);
// One line: provider, fabric, domain, progress, mr_mode, limits.
std::string describe_info(const fi_info* fi, bool dc, bool ordered);

struct Domain : std::enable_shared_from_this<Domain> {
  ~Domain();

  FabricOptions opts;
  std::string identity;
  std::string provider;
  std::string description;
  fi_info* info = nullptr;
  fid_fabric* fabric = nullptr;
  fid_domain* domain = nullptr;
  fid_eq* eq = nullptr;
  fid_cq* cq = nullptr;
  int cq_fd = -1;    // FI_GETWAIT: readable when the CQ may have work
  int eq_fd = -1;
  int wake_fd = -1;  // eventfd: kick() writes it to end an idle poll
  bool virt_addr = false;
  bool prov_key = false;
  bool delivery_complete = false;
  size_t max_msg_size = 0;
  // Requested memory region keys (no FI_MR_PROV_KEY) are random and masked
  // to the provider's mr_key_size: a peer cannot guess a region's key from
  // another's.
  uint64_t key_mask = ~0ull;
  // Non-empty: every connection must pass the handshake (cluster_secret.h).
  std::string secret;

  std::mutex cq_mu;  // whoever reads the CQ and dispatches holds this
  std::mutex map_mu;
  // Held from fi_eq_read to the lookup of the event's fid in `eps`, and
  // around fi_shutdown + fi_close of an endpoint. fi_close purges the
  // endpoint's queued events, but one already read stays in our hands; an
  // endpoint opened after the close can get the freed fid's address, and
  // without this lock the stale event (our own FI_SHUTDOWN, say) would be
  // taken for the new endpoint's.
  std::mutex eq_mu;
  std::unordered_map<fid_t, std::shared_ptr<ConnState>> eps;
  std::unordered_map<fid_t, std::shared_ptr<ListenerState>> peps;

  std::mutex fail_mu;
  std::vector<std::pair<std::shared_ptr<ConnState>, Status>> to_fail;

  // Ops teardown() completed as abandoned, kept alive for kAbandonedKeep:
  // a completion's op_context is the op's own memory, and dispatch reads
  // the op to find its connection before it can tell the op is no longer
  // in flight; a provider reporting a flushed op after the close (seen as a
  // crash under packet loss, issue 7) would otherwise have it read freed
  // memory. Only the progress thread and teardown touch it.
  std::mutex abandoned_mu;
  std::deque<std::pair<std::chrono::steady_clock::time_point, std::shared_ptr<OpState>>>
      abandoned;

  std::atomic<int> active{0};    // ops with deadlines + handshakes running
  std::atomic<int> drivers{0};   // application threads inside Op::wait
  std::atomic<uint64_t> completions{0};  // ops completed: "progress is made"
  std::atomic<bool> sleeping{false};
  std::atomic<bool> stop{false};
  std::thread progress;

  // Fetches the CQ/EQ wait fds and creates wake_fd.
  Status init_wait();
  // Starts the progress thread.
  void start();
  // Reads completions until the CQ is empty and dispatches them. Returns
  // false if another thread holds cq_mu (then that thread is doing it).
  bool drive();
  // Called with cq_mu held.
  int drain_locked();
  // Frees the abandoned ops kept longer than kAbandonedKeep (progress
  // thread, once per deadline scan).
  void release_abandoned(std::chrono::steady_clock::time_point now);
  // Idle wait: fi_trywait, then poll the CQ, EQ and wake fds up to `ms`.
  // Returns true if woken by traffic on the CQ's fd (incoming data).
  bool idle_wait(int ms);
  // While application threads drive the CQ: sleep on the EQ and wake fds
  // only (not the CQ's, which their traffic keeps signalling) for `t`.
  // Returns true if the EQ has something to read.
  bool step_aside(std::chrono::microseconds t);
  void dispatch(const fi_cq_data_entry& e);
  void dispatch_error(const fi_cq_err_entry& e);
  void complete(OpState* op, Status st, size_t bytes);
  void poll_eq();
  void check_deadlines();
  // Asks the progress thread to tear `c` down with `why`.
  void request_fail(std::shared_ptr<ConnState> c, Status why);
  // Tears `c` down now: closes its endpoint, drains the CQ, fails what is
  // left with `why`. REQUIRES: caller holds neither cq_mu nor c->mu.
  void teardown(const std::shared_ptr<ConnState>& c, Status why, Phase final);
  // Wakes the progress thread out of its idle poll.
  void kick();
  void loop();

  // Builds an endpoint for `info`, binds it to the CQ and EQ, enables it and
  // registers it under `c`. Errors: kFabricError.
  Status make_endpoint(fi_info* info, const std::shared_ptr<ConnState>& c,
                       const char* op);
  void unregister_ep(fid_t fid);
  // The connection registered under `fid`, or null.
  std::shared_ptr<ConnState> find_ep(fid_t fid);
};

// Test hook: when set, poll_eq calls it after each fi_eq_read that returned
// an event, before it looks the event's fid up (so a test can widen that
// window). Null in production; set only while no Fabric exists.
extern std::atomic<void (*)()> after_eq_read_hook;

// Test hooks, for tests that play a rogue peer; null/false in production.
// proof_hook: Handshake::finish passes the proof it is about to send
// through it (a test records one, or replaces it: a replayed proof; an
// empty one is not sent at all: a peer that stays silent).
extern std::atomic<void (*)(HandshakeRole, std::string*)> proof_hook;
// skip_proof_check: Handshake::finish waits for the peer's proof but
// ignores what it says (a rogue that goes on after failing the handshake).
extern std::atomic<bool> skip_proof_check;

}  // namespace ftm::rdma::detail

#endif  // FTM_RDMA_DOMAIN_INTERNAL_H_
