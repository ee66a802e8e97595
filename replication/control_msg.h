// Control messages between the metadata server and data servers or
// ftmemcached-ctl, carried as two-sided sends over rdma::Connection (one
// message per send; the receiver keeps receive buffers of
// kMaxMessageSize posted).
//
// Frame (little-endian):
//   0  u32 magic "FTMC"   4 u16 version (1)   6 u16 type (MsgType)
//   8  u32 body length    12 u32 sequence number (echoed in replies)
//   16 body
//   16+len u64 XXH3_64bits of header and body
// decode() checks every field and returns a typed error for anything else,
// so garbage from a confused peer is refused, never trusted or crashed on.
//
// Conversation (see replication/README.md, "Membership and the partition
// map"):
//   data server -> meta   JOIN {node id or 0 = assign one, flags, addresses}
//   meta -> data server   JOIN_OK {node id, map} or ERROR {code, text}
//   meta -> data servers  MAP {map} whenever the epoch rises
//   data server -> meta   REPORT {replication state, epoch, partitions it
//                         is still recovering}, when any of it changes
//   data server -> meta   SUSPECT {node, reason}: a peer failed a forward
//                         or a replication write (issue 6: the meta server
//                         corroborates it with the heartbeats)
//   meta -> data server   ERROR kFenced: this node was declared failed; it
//                         empties itself and joins again with kEmpty
//   ctl -> meta           STATUS_REQ
//   meta -> ctl           STATUS {map, per-server connection info}
// Heartbeats are one-sided writes, not messages (replication/heartbeat.h):
// JOIN_OK says where. HEARTBEAT keeps a reserved type number; decode()
// answers kVersion ("unsupported type") for it.
//
// Thread-safety: plain values and pure functions.
#ifndef FTM_REPLICATION_CONTROL_MSG_H_
#define FTM_REPLICATION_CONTROL_MSG_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "rdma/connection.h"
#include "rdma/fabric_domain.h"
#include "rdma/memory_region.h"
#include "replication/partition_map.h"

namespace ftm::repl {

enum class MsgType : uint16_t {
  kJoin = 1,
  kJoinOk = 2,
  kMap = 3,
  kStatusReq = 4,
  kStatus = 5,
  kError = 6,
  kHeartbeat = 7,  // reserved
  kSuspect = 8,
  kReport = 9,
};

struct JoinMsg {
  static constexpr uint32_t kSpare = 1;  // flags: join as a spare
  // flags: this process holds no data (it just started, or emptied itself
  // after being fenced). The only way back for a node id declared failed.
  static constexpr uint32_t kEmpty = 2;
  // flags, with kEmpty: this process was declared failed and fenced while it
  // ran (it read its fence or was refused with kFenced), so the failure
  // declaration was a false suspicion: the meta server widens the node's
  // detector timeout as it does when a suspected server's heartbeat
  // returns. A process that just started never says it.
  static constexpr uint32_t kWasFenced = 4;
  uint32_t node_id = 0;                  // 0 = let the meta server assign
  uint32_t flags = 0;
  std::string memcached_addr;            // host:port
  std::string fabric_addr;               // host:port
  bool operator==(const JoinMsg&) const = default;
};

struct JoinOkMsg {
  uint32_t node_id = 0;
  ClusterMap map{1, 1};
  // Where this server writes its heartbeats (replication/heartbeat.h): the
  // meta server's heartbeat array (RegionDescriptor wire form; empty = no
  // heartbeats wanted), the slot's offset in it (bytes) and the period
  // (microseconds) the meta server expects.
  std::string heartbeat_region;
  uint64_t heartbeat_offset = 0;
  uint32_t heartbeat_interval_us = 0;
  // How long (microseconds) after posting a heartbeat that the meta
  // server acknowledged (its slot's fence word still 0) this server may
  // act as primary without hearing more: shorter than the heartbeat age at
  // which it can be declared failed (FailureMonitor::lease_length), so a
  // server is never declared failed while its own lease runs (fencing by
  // lease; 0 = no lease needed).
  uint32_t lease_us = 0;
  bool operator==(const JoinOkMsg&) const = default;
};

struct MapMsg {
  ClusterMap map{1, 1};
  bool operator==(const MapMsg&) const = default;
};

struct StatusReqMsg {
  bool operator==(const StatusReqMsg&) const = default;
};

// What the meta server knows about a server beyond the map.
struct ServerStatus {
  uint32_t node_id = 0;
  bool connected = false;         // a control connection is open now
  uint64_t since_ms = 0;          // ms since it connected / disconnected
  std::string peer;               // the connection's peer name, "" if none
  std::string replication = "n/a";  // its last REPORT's text
  // Map partitions this server holds as a secondary whose copy is not
  // complete yet (recovery under way, or assigned and not yet reported
  // complete): such a copy does not count towards full replication.
  std::vector<uint32_t> recovering;
  // The failure detector's view (replication/failure_detector.h).
  bool heartbeating = false;          // a heartbeat was ever seen
  bool suspected = false;
  uint64_t heartbeat_age_us = 0;      // since the last heartbeat arrived
  uint64_t heartbeat_timeout_us = 0;  // age at which it is suspected
  uint32_t suspicion_permille = 0;    // age / timeout x 1000
  uint32_t false_suspicions = 0;
  std::string suspicion_reason;       // "" unless suspected
  bool operator==(const ServerStatus&) const = default;
};

struct StatusMsg {
  ClusterMap map{1, 1};
  uint64_t meta_uptime_ms = 0;
  std::string meta_state_dir;
  std::vector<ServerStatus> servers;
  bool operator==(const StatusMsg&) const = default;
};

struct ErrorMsg {
  enum Code : uint16_t {
    kBadRequest = 1,  // malformed or unexpected message
    kNodeBusy = 2,    // that node id is connected from elsewhere; retry later
    kInternal = 3,    // the meta server could not do it (e.g. persist failed)
    kFull = 4,        // too many servers
    kFenced = 5,      // the node was declared failed: join again empty
  };
  uint16_t code = kBadRequest;
  std::string text;
  bool operator==(const ErrorMsg&) const = default;
};

// A data server's report that `node` failed a forward or a replication
// write (peer closed, timeout), so the meta server can declare it failed
// without waiting for the heartbeat timeout.
struct SuspectMsg {
  uint32_t node_id = 0;
  std::string reason;
  bool operator==(const SuspectMsg&) const = default;
};

// A data server's replication state (sent when it changes): the text for
// status ("caught up", or its recovery's progress: "recovering N partitions
// from K nodes, X MB so far, R MB/s"; shown in ServerStatus::replication),
// the epoch of the map its recovery follows, and the map partitions it is a
// secondary of whose copy is still incomplete at that epoch (sorted). The
// meta server counts a copy complete only once a REPORT at an epoch at
// least the one that assigned it leaves the partition out, and never
// promotes an incomplete copy while a complete one lives.
struct ReportMsg {
  std::string replication;
  uint64_t epoch = 0;
  std::vector<uint32_t> recovering;
  bool operator==(const ReportMsg&) const = default;
};

using ControlMsg = std::variant<JoinMsg, JoinOkMsg, MapMsg, StatusReqMsg, StatusMsg,
                                ErrorMsg, SuspectMsg, ReportMsg>;

struct Envelope {
  uint32_t seq = 0;
  ControlMsg msg;
};

// Largest encoded frame either side sends or accepts (sizes the posted
// receive buffers): a map of kMaxPartitions x kMaxReplicas with kMaxServers
// servers fits.
inline constexpr size_t kMaxMessageSize = 1 << 20;
inline constexpr uint32_t kControlMagic = 0x434d5446;  // "FTMC"
inline constexpr uint16_t kControlVersion = 1;
inline constexpr size_t kFrameOverhead = 16 + 8;

// Encodes one frame. Errors: kTooLarge if it would exceed kMaxMessageSize
// or a string field exceeds its limit.
ClusterResult<std::vector<std::byte>> encode(const ControlMsg& msg,
                                             uint32_t seq = 0);
// Decodes one frame (exactly `bytes`, as one receive delivered it).
// Errors: kCorrupt (magic, length, checksum, a field; named in the
// message), kVersion (other version, unknown or reserved type), kTooLarge.
ClusterResult<Envelope> decode(std::span<const std::byte> bytes);

// "JOIN", "MAP", ... for logs.
const char* msg_name(const ControlMsg& msg);

// Splits "host:port" (or "[v6addr]:port"). Errors: kInvalidArgument naming
// the text when the port is missing, not a number or not in 1..65535.
ClusterResult<std::pair<std::string, uint16_t>> parse_host_port(
    std::string_view text);

// A connection carrying control messages: owns the rdma::Connection, a
// registered send buffer and `depth` receive buffers that stay posted
// (a receive is reposted as soon as its message is decoded), so the peer may
// send up to `depth` messages before this side reads them without stalling.
// Receives complete in posting order (FI_EP_MSG), so messages arrive in the
// order sent.
//
// Thread-safety: send() is safe for concurrent use (serialized internally);
// receive() REQUIRES a single caller at a time; close() and peer() are safe
// from any thread and make a blocked receive() return kUnavailable.
class ControlChannel {
 public:
  // Takes over `conn`. recv_size: largest message accepted (larger ones
  // break the connection: the provider truncates). Errors: kUnavailable if
  // registering buffers or posting receives fails.
  static ClusterResult<std::unique_ptr<ControlChannel>> open(
      rdma::Fabric& fabric, std::unique_ptr<rdma::Connection> conn,
      size_t recv_size = kMaxMessageSize, int depth = 3);
  ~ControlChannel();  // close()

  // Encodes and sends; returns once the provider completed the send
  // (bounded by the fabric's op timeout). Errors: kTooLarge (from encode),
  // kUnavailable (connection broken; message names the peer and why).
  ClusterStatus send(const ControlMsg& msg, uint32_t seq = 0);

  // Waits for the next message. timeout < 0: until one arrives or the
  // connection breaks (use close() to interrupt). Errors: kUnavailable
  // (broken, closed, or no message within `timeout`; the channel is still
  // usable after a timeout), or decode's errors for a garbage message (its
  // buffer is reposted, the channel stays usable).
  ClusterResult<Envelope> receive(std::chrono::milliseconds timeout =
                                      std::chrono::milliseconds(-1));

  // Tears the connection down; idempotent.
  void close();
  // Ok while usable.
  bool ok() const;
  // "'identity' at host:port" of the peer.
  std::string peer() const;
  // The connection underneath, for one-sided writes alongside the messages
  // (heartbeats). Valid until the channel is destroyed.
  rdma::Connection& connection() { return *conn_; }

 private:
  ControlChannel() = default;
  std::unique_ptr<rdma::Connection> conn_;
  // Heap arrays left uninitialized on purpose: a 1 MiB buffer whose pages
  // are touched only as far as messages reach.
  std::unique_ptr<std::byte[]> send_mem_, recv_mem_;
  std::unique_ptr<rdma::MemoryRegion> send_mr_, recv_mr_;
  size_t recv_size_ = 0;
  std::vector<rdma::Op> recvs_;
  size_t next_ = 0;
  std::mutex send_mu_;
};

}  // namespace ftm::repl

#endif  // FTM_REPLICATION_CONTROL_MSG_H_
