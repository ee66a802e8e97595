#include "replication/log_ring.h"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <random>

namespace ftm::repl {

uint64_t control_check(uint64_t pos, uint64_t lsn, uint64_t incarnation) {
  // Not a cryptographic tie, just enough that a read mixing two publications
  // (old pos, new lsn) does not pass: both fields change on every publish.
  return (pos * 0x9E3779B97F4A7C15ull) ^ (lsn * 0xC2B2AE3D27D4EB4Full) ^
         incarnation ^ kRingMagic;
}

rdma::Result<ControlSnapshot> parse_control(std::span<const std::byte> bytes) {
  if (bytes.size() < kControlBlockSize)
    return rdma::Status(rdma::Code::kCorruptDescriptor, "", "read log control",
                        "short control block");
  ControlBlock cb;
  std::memcpy(&cb, bytes.data(), sizeof cb);
  if (cb.magic != kRingMagic || cb.ring_size < kMinRingSize || cb.ring_size % 8)
    return rdma::Status(rdma::Code::kCorruptDescriptor, "", "read log control",
                        "not a replication log ring (bad magic or size)");
  if (cb.check != control_check(cb.applied_pos, cb.applied_lsn, cb.incarnation))
    return rdma::Status(rdma::Code::kFabricError, "", "read log control", "torn");
  return ControlSnapshot{cb.ring_size, cb.incarnation, cb.applied_pos,
                         cb.applied_lsn};
}

rdma::Result<std::unique_ptr<LogRing>> LogRing::create(rdma::Fabric& fabric,
                                                       size_t size) {
  if (size < kMinRingSize || size % 8 != 0 || size > (size_t{1} << 40))
    return rdma::Status(rdma::Code::kInvalidArgument, "", "create log ring",
                        "ring size must be a multiple of 8, at least 4096");
  std::unique_ptr<LogRing> ring(new LogRing());
  const size_t total = (kControlBlockSize + size + 4095) & ~size_t{4095};
  ring->base_ = static_cast<std::byte*>(std::aligned_alloc(4096, total));
  if (ring->base_ == nullptr)
    return rdma::Status(rdma::Code::kInvalidArgument, "", "create log ring",
                        "out of memory");
  std::memset(ring->base_, 0, total);
  ring->size_ = size;
  std::random_device rd;
  ring->incarnation_ = (uint64_t{rd()} << 32) ^ rd() ^
                       static_cast<uint64_t>(
                           std::chrono::steady_clock::now().time_since_epoch().count());
  ControlBlock& cb = ring->control();
  cb.magic = kRingMagic;
  cb.ring_size = size;
  cb.incarnation = ring->incarnation_;
  cb.applied_pos = 0;
  cb.applied_lsn = 0;
  cb.check = control_check(0, 0, ring->incarnation_);
  auto mr = fabric.register_memory(
      std::span<std::byte>(ring->base_, kControlBlockSize + size), true, true);
  if (!mr) return mr.status();
  ring->mr_ = std::move(*mr);
  return ring;
}

LogRing::~LogRing() {
  mr_.reset();  // deregister before the memory goes
  std::free(base_);
}

void LogRing::publish_applied(uint64_t pos, uint64_t lsn) {
  ControlBlock& cb = control();
  // Order: check last is not enough against a reader that reads the words
  // in any order, hence the check ties all three; release so that a local
  // reader (tests, stats) that sees the new pos also sees the applied state.
  __atomic_store_n(&cb.applied_pos, pos, __ATOMIC_RELEASE);
  __atomic_store_n(&cb.applied_lsn, lsn, __ATOMIC_RELEASE);
  __atomic_store_n(&cb.check, control_check(pos, lsn, incarnation_),
                   __ATOMIC_RELEASE);
}

uint64_t LogRing::applied_pos() const {
  return __atomic_load_n(&control().applied_pos, __ATOMIC_ACQUIRE);
}
uint64_t LogRing::applied_lsn() const {
  return __atomic_load_n(&control().applied_lsn, __ATOMIC_ACQUIRE);
}

}  // namespace ftm::repl
