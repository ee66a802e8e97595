// Heartbeats (DESIGN.md, "Failure detection and recovery"; issue 6): every
// data server writes (incarnation, counter) into its slot of the metadata
// server's heartbeat array with a one-sided RDMA write every interval; the
// metadata server reads its own memory, so a heartbeat costs it no message,
// no receive and no CPU on arrival (DARE, Poke and Hoefler, HPDC 2015, sends
// its leader heartbeats the same way).
//
// Slot (kSlotSize bytes, slot i at offset i * kSlotSize, i = node id):
//   0  u64 incarnation   random per HeartbeatWriter (a restart changes it)
//   8  u64 counter       +1 per heartbeat
//   16 u64 check         mix(incarnation, counter): a slot read while a write
//                        lands (RDMA orders no bytes within a write) fails it
//   24 u64 fence         written by the metadata server only: 0 while the
//                        node is in good standing, else the epoch at which
//                        it was declared failed. The writer reads it back
//                        after every heartbeat (one-sided read): 0 renews
//                        the node's Lease (replication/lease.h), anything
//                        else fences it.
//
// Thread-safety: HeartbeatArray::read is safe for concurrent use with the
// writes landing; HeartbeatWriter runs its own thread.
#ifndef FTM_REPLICATION_HEARTBEAT_H_
#define FTM_REPLICATION_HEARTBEAT_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>

#include "rdma/connection.h"
#include "rdma/fabric_domain.h"
#include "rdma/memory_region.h"
#include "rdma/region_descriptor.h"
#include "replication/lease.h"

namespace ftm::repl {

inline constexpr size_t kHeartbeatSlotSize = 32;

struct HeartbeatValue {
  uint64_t incarnation = 0;
  uint64_t counter = 0;
};

// Puts the calling thread in the lowest real-time class (SCHED_FIFO 1) if
// the process may: a heartbeat that waited for a CPU behind a busy data
// path would be a false suspicion, and the heartbeat writer and the
// meta server's scan thread sleep almost all the time, so they take
// nothing from it. Silently keeps the normal class otherwise.
void raise_to_realtime();

// Encodes `v` into the first 24 bytes of `slot` (kHeartbeatSlotSize bytes).
void encode_heartbeat(const HeartbeatValue& v, std::byte* slot);
// Decodes a slot; nullopt for an empty slot (incarnation 0) or a torn one.
std::optional<HeartbeatValue> decode_heartbeat(const std::byte* slot);

// The metadata server's array: one slot per possible node id, registered for
// remote writes.
class HeartbeatArray {
 public:
  // Registers slots 0..max_node. Errors: the registration's.
  static rdma::Result<std::unique_ptr<HeartbeatArray>> create(rdma::Fabric& fabric,
                                                              uint32_t max_node);
  // What a data server needs to write: the region and its slot's offset
  // (bytes) within it.
  const rdma::RegionDescriptor& descriptor() const { return desc_; }
  static uint64_t slot_offset(uint32_t node) { return uint64_t(node) * kHeartbeatSlotSize; }
  // The slot of `node` as it is now (nullopt: never written, or torn: read
  // again later). REQUIRES node <= max_node.
  std::optional<HeartbeatValue> read(uint32_t node) const;
  // Empties a slot (a node id handed to a new server), fence word included.
  void clear(uint32_t node);
  // Sets the slot's fence word: `epoch` != 0 tells the node, at its next
  // heartbeat, that it was declared failed at that epoch.
  void fence(uint32_t node, uint64_t epoch);

 private:
  HeartbeatArray() = default;
  std::unique_ptr<std::byte[]> mem_;
  size_t size_ = 0;
  std::unique_ptr<rdma::MemoryRegion> mr_;
  rdma::RegionDescriptor desc_;
};

// The data server's side: a thread that writes its heartbeat into
// `remote` at `offset` over `conn` every `interval` and reads the slot's
// fence word back, until stopped or the connection breaks (then it logs
// once and stops: Membership reconnects and starts a new writer).
// What a HeartbeatWriter does with the fence word it reads back.
struct HeartbeatLease {
  Lease* lease = nullptr;               // renewed per acknowledged heartbeat
  std::chrono::microseconds length{0};  // from each heartbeat's post time
  // Called once, on the writer's thread, when the fence word is set (the
  // writer then stops). Must not stop() the writer.
  std::function<void(uint64_t epoch)> on_fenced;
};

class HeartbeatWriter {
 public:
  using Lease = HeartbeatLease;
  // `conn` must outlive the writer; `lease.lease` too if given. Errors:
  // registering the staging buffer, `offset` outside `remote`.
  static rdma::Result<std::unique_ptr<HeartbeatWriter>> start(
      rdma::Fabric& fabric, rdma::Connection& conn, const rdma::RegionDescriptor& remote,
      uint64_t offset, std::chrono::microseconds interval,
      std::function<void(std::string_view)> log, HeartbeatLease lease = HeartbeatLease());
  ~HeartbeatWriter();  // stop()
  // Stops the thread (waits for the write in flight). Idempotent.
  void stop();
  // Heartbeats written so far (their writes completed).
  uint64_t written() const { return written_.load(std::memory_order_relaxed); }

 private:
  HeartbeatWriter(rdma::Connection& conn) : conn_(conn) {}
  void run();

  rdma::Connection& conn_;
  rdma::RegionDescriptor remote_;
  uint64_t offset_ = 0;
  std::chrono::microseconds interval_{0};
  std::function<void(std::string_view)> log_;
  HeartbeatLease lease_;
  alignas(8) std::byte buf_[kHeartbeatSlotSize] = {};
  std::unique_ptr<rdma::MemoryRegion> mr_;
  HeartbeatValue value_;
  std::atomic<uint64_t> written_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace ftm::repl

#endif  // FTM_REPLICATION_HEARTBEAT_H_
