// The cluster map: which servers exist, and which of them hold each
// partition of the key space (DESIGN.md, "Data path" step 2). The metadata
// server (replication/meta_server.h) owns the authoritative copy, recomputes
// placement when membership changes, raises the epoch on every change and
// publishes the map; data servers receive it through
// replication/membership.h and read it on every request.
//
// A key's partition is XXH3_64bits(key) % P; P is fixed for the life of a
// cluster (default 1024). Each partition has a primary and up to
// replicas - 1 secondaries, all on distinct servers in state kUp.
//
// Placement (compute_placement) is deterministic and incremental, in the
// spirit of a classic primary/secondary assignment: it starts from the
// previous map, keeps every assignment that is still valid, promotes a
// surviving secondary when a primary is gone, and moves only the excess of
// servers above their fair share (floor or ceil of P/N) to servers below it.
// A joining server therefore takes about P/N primaries and as many
// secondaries, and nothing else moves.
//
// Wire form (ClusterMap::encode; little-endian):
//   0  u32 magic "FTMP"   4 u16 version (1)   6 u16 flags (0)
//   8  u32 total length of the encoding, checksum included
//   12 u32 partitions P   16 u8 replicas R   17 u8[3] zero
//   20 u32 server count   24 u64 epoch
//   32 servers, each: u32 id, u8 state, u8 zero, u16 memcached addr length,
//      u16 fabric addr length, then the two addresses (no terminators)
//   then P*R u32 node ids, partition-major, primary first, 0 = empty slot
//   last: u64 XXH3_64bits of every preceding byte
// decode() checks all of it (magic, version, lengths, checksum, node ids
// known, replicas of a partition distinct) so a corrupt map is refused rather
// than used to route writes.
//
// Thread-safety: ClusterMap is a plain value; a const map may be read from
// any number of threads (the membership client shares it as
// std::shared_ptr<const ClusterMap>).
#ifndef FTM_REPLICATION_PARTITION_MAP_H_
#define FTM_REPLICATION_PARTITION_MAP_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rdma/status.h"

namespace ftm::repl {

// Errors of the cluster code (map, control messages, meta server,
// membership) as values.
enum class ClusterErrc {
  kOk = 0,
  kInvalidArgument,  // a caller or operator error (bad flag value, ...)
  kCorrupt,          // bytes failed a check: magic, length, checksum, field
  kVersion,          // a well-formed encoding of a version we do not speak
  kTooLarge,         // does not fit the limits (kMaxMessageSize, ...)
  kIo,               // a file-system call failed (errno text in message)
  kRefused,          // the peer answered with an ERROR message
  kUnavailable,      // the peer is unreachable or went away
};

// Short stable name ("corrupt", "io", ...).
const char* errc_name(ClusterErrc c);

class [[nodiscard]] ClusterStatus {
 public:
  ClusterStatus() = default;  // ok
  ClusterStatus(ClusterErrc code, std::string msg)
      : code_(code), msg_(std::move(msg)) {}
  bool is_ok() const { return code_ == ClusterErrc::kOk; }
  explicit operator bool() const { return is_ok(); }
  ClusterErrc code() const { return code_; }
  const std::string& message() const { return msg_; }
  // "corrupt: map checksum mismatch"
  std::string to_string() const;

 private:
  ClusterErrc code_ = ClusterErrc::kOk;
  std::string msg_;
};

// A value or the ClusterStatus explaining its absence.
template <class T>
using ClusterResult = rdma::BasicResult<T, ClusterStatus>;

enum class ServerState : uint8_t {
  kJoining = 1,  // registered, not yet serving (reserved for recovery, issue 6)
  kUp = 2,       // holds partitions
  kFailed = 3,   // declared dead; holds nothing (failover, issue 6)
  kSpare = 4,    // registered replacement, holds nothing until needed
};
// "joining", "up", "failed", "spare".
const char* state_name(ServerState s);

struct ServerInfo {
  uint32_t id = 0;              // node id, >= 1, unique in the cluster
  std::string memcached_addr;   // host:port memcached clients use
  std::string fabric_addr;      // host:port of the server's fabric listener
  ServerState state = ServerState::kUp;
  bool operator==(const ServerInfo&) const = default;
};

class ClusterMap {
 public:
  static constexpr uint32_t kDefaultPartitions = 1024;
  static constexpr uint32_t kMaxPartitions = 16384;
  static constexpr uint32_t kMaxReplicas = 3;
  static constexpr uint32_t kMaxServers = 1024;
  static constexpr size_t kMaxAddrLength = 255;
  static constexpr uint32_t kMagic = 0x504d5446;  // "FTMP" little-endian
  static constexpr uint16_t kVersion = 1;

  // An empty map (epoch 0, no servers, every slot empty). REQUIRES:
  // 1 <= partitions <= kMaxPartitions, 1 <= replicas <= kMaxReplicas.
  ClusterMap(uint32_t partitions, uint32_t replicas);

  uint64_t epoch() const { return epoch_; }
  void set_epoch(uint64_t e) { epoch_ = e; }
  uint32_t partitions() const { return partitions_; }
  // Copies per partition the cluster aims for (primary included).
  uint32_t replicas() const { return replicas_; }

  // The partition of `key`: XXH3_64bits(key) % partitions (DESIGN.md).
  uint32_t partition_of(std::string_view key) const {
    return partition_for_key(key, partitions_);
  }
  static uint32_t partition_for_key(std::string_view key, uint32_t partitions);

  // Node id of partition p's primary, 0 if it has none (no server up).
  // REQUIRES: p < partitions().
  uint32_t primary(uint32_t p) const { return slots_[size_t(p) * replicas_]; }
  // Node ids of p's secondaries (fewer than replicas()-1 while the cluster
  // has too few servers). Valid while the map lives.
  std::span<const uint32_t> secondaries(uint32_t p) const;
  // Primary followed by secondaries.
  std::span<const uint32_t> replicas_of(uint32_t p) const;
  // Whether `node` holds p as primary or secondary.
  bool holds(uint32_t p, uint32_t node) const;

  // Servers, sorted by id.
  const std::vector<ServerInfo>& servers() const { return servers_; }
  // nullptr if no server has that id.
  const ServerInfo* server(uint32_t id) const;
  // Adds or replaces (by id) a server; keeps the list sorted.
  void upsert_server(const ServerInfo& s);
  // 1 + the largest id in use (ids are never reused while listed).
  uint32_t next_node_id() const;

  // Counts for status and tests.
  uint32_t primary_count(uint32_t node) const;
  uint32_t secondary_count(uint32_t node) const;

  // Sets p's replicas: ids[0] primary, the rest secondaries (at most
  // replicas()); the remaining slots become empty. Used by placement and
  // tests; no validation (decode validates what comes from outside).
  void assign(uint32_t p, std::span<const uint32_t> ids);

  // Same servers, epoch and assignment.
  bool operator==(const ClusterMap&) const = default;

  // Serializes as described in the file comment.
  std::vector<std::byte> encode() const;
  // Parses and validates an encoding. Errors: kCorrupt (what failed is in
  // the message), kVersion, kTooLarge. Never reads outside `bytes`.
  static ClusterResult<ClusterMap> decode(std::span<const std::byte> bytes);

 private:
  uint64_t epoch_ = 0;
  uint32_t partitions_;
  uint32_t replicas_;
  std::vector<ServerInfo> servers_;
  std::vector<uint32_t> slots_;  // partitions_ * replicas_, 0 = empty
};

// The new assignment for `prev`'s servers (epoch unchanged: the caller
// raises it if the result differs). Placement uses the servers in state kUp;
// partitions get min(replicas, N) copies on distinct servers. Guarantees
// (tested in t/unit/partition_map_test.cc): every up server holds
// floor(P/N) or ceil(P/N) primaries and within one of its fair share of
// secondaries; a valid old assignment is kept unless its server is above
// its share; a partition whose primary left is given to one of its
// surviving secondaries (it holds the data), and the balance is then
// restored by primary/secondary role swaps before any partition is handed
// to a server that lacks its data; a join moves about P/N primaries and
// P(c-1)/N secondaries, all to the joiner. Deterministic: the same input
// gives the same map, and an unchanged input gives back the same assignment.
// `replicas` may differ from prev.replicas() (the result uses the new one).
// Cost: O(P * N * replicas) plus a sort per over-full server.
//
// keep_primaries (what the metadata server uses once the cluster holds
// data, issue 6): a primary that is still up keeps every partition it has,
// and a partition whose primary left goes to a surviving secondary and
// nowhere else; only a partition with no surviving copy is handed to the
// server with the largest deficit. No primary role moves between two live
// servers (that would need a handoff of the writes in flight, which
// failover does not have), so a joining server takes secondaries only and
// recovers their data before it can ever be promoted.
//
// incomplete(p, node), if given, says that node's copy of partition p is
// still being recovered (it lacks data older than its assignment; the
// metadata server knows from REPORT messages): a partition whose primary
// left is then given to a surviving secondary with a complete copy, and to
// an incomplete one only when no complete copy survives (it still has
// every effect since it was assigned, which beats none).
using CopyPredicate = std::function<bool(uint32_t partition, uint32_t node)>;
ClusterMap compute_placement(const ClusterMap& prev, uint32_t replicas,
                             bool keep_primaries = false,
                             const CopyPredicate& incomplete = {});

// Hands a spare the copies a failure left to be made (issue 6, "Recovery
// onto a replacement"): `next` is compute_placement's answer to a failure
// in `prev` (same partitions). `spare` (state kSpare in *next) becomes kUp
// and, in each partition, takes the place of the first secondary that did
// not hold the partition in `prev` (the failed server's secondary roles,
// and those vacated by promotions), so the survivors keep exactly what they
// held and the spare recovers everything the failure lost. Primaries never
// move (the spare holds no data yet). Returns the number of copies taken;
// 0 (and *next unchanged) if `spare` is not a spare in *next.
uint32_t give_to_spare(const ClusterMap& prev, ClusterMap* next, uint32_t spare);

// Partitions whose primary differs between a and b (same P required), and
// the number of (partition, secondary) pairs present in b but not in a.
struct PlacementDelta {
  uint32_t moved_primaries = 0;
  uint32_t new_secondaries = 0;
};
PlacementDelta placement_delta(const ClusterMap& a, const ClusterMap& b);

// Little-endian field writer and bounds-checked reader shared by the map and
// the control messages (replication/control_msg.cc). Not for other uses.
namespace wire {
void put_u8(std::vector<std::byte>& out, uint8_t v);
void put_u16(std::vector<std::byte>& out, uint16_t v);
void put_u32(std::vector<std::byte>& out, uint32_t v);
void put_u64(std::vector<std::byte>& out, uint64_t v);
// u16 length + bytes. REQUIRES: s.size() <= 65535.
void put_str16(std::vector<std::byte>& out, std::string_view s);
void put_bytes(std::vector<std::byte>& out, std::span<const std::byte> b);
uint64_t checksum(std::span<const std::byte> b);  // XXH3_64bits

// Reads fields in order; the first read past the end sets failed() and
// every later read returns zeros, so a parser checks once at the end.
class Reader {
 public:
  explicit Reader(std::span<const std::byte> b) : b_(b) {}
  uint8_t u8();
  uint16_t u16();
  uint32_t u32();
  uint64_t u64();
  std::string str16();
  std::string str(size_t n);
  std::span<const std::byte> bytes(size_t n);
  size_t remaining() const { return failed_ ? 0 : b_.size() - pos_; }
  size_t pos() const { return pos_; }
  bool failed() const { return failed_; }

 private:
  bool take(size_t n);
  std::span<const std::byte> b_;
  size_t pos_ = 0;
  bool failed_ = false;
};
}  // namespace wire

}  // namespace ftm::repl

#endif  // FTM_REPLICATION_PARTITION_MAP_H_
