// The replication log ring: one per (primary, secondary) pair, living in the
// secondary's registered memory. The primary writes entries into it with
// one-sided RDMA writes (replication/log_writer.h); the secondary's applier
// scans and applies them (replication/log_applier.h) and publishes how far it
// got in the control block, which the primary reads one-sidedly to reuse
// space. This is DARE's remote log (Poke and Hoefler, HPDC 2015: a log
// described by head/apply/commit/tail pointers), reduced to one writer and
// one reader: DARE's `apply` pointer is applied_pos here, its `tail` lives
// only at the writer, and its `commit` is not needed (a primary-secondary
// pair commits on delivery).
//
// Region layout (one MemoryRegion, remote read + write):
//   [0, 64)           ControlBlock, written only by the secondary
//   [64, 64 + size)   entry area, written only by the primary
//
// Positions are logical byte counts that only grow; an entry at position
// `pos` lives at entry-area offset pos % size. Entries never straddle the
// end: when the next entry does not fit before the end, the writer puts a
// skip marker there (EffectKind::kSkip, carrying the next entry's lsn) and
// the entry at offset 0; when fewer than kMinEntrySize bytes remain, there is
// no room for a marker and both sides wrap implicitly (next_entry_pos).
//
// Invariants (see replication/README.md for why they hold):
//   - applied_pos <= writer tail <= applied_pos + size: the writer never
//     overwrites bytes the applier has not consumed.
//   - entries have consecutive lsns; the applier only accepts the lsn it
//     expects, at the position it expects.
//   - an entry is at most max_entry(size) = size / 2 bytes, so an entry plus
//     the padding before it always fits in an empty ring.
//
// Thread-safety: LogRing's accessors are safe for concurrent use; the
// control block's applied fields are written by one thread (the applier)
// through publish_applied().
#ifndef FTM_REPLICATION_LOG_RING_H_
#define FTM_REPLICATION_LOG_RING_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "rdma/fabric_domain.h"
#include "rdma/memory_region.h"
#include "rdma/region_descriptor.h"
#include "rdma/status.h"
#include "replication/effect.h"

namespace ftm::repl {

inline constexpr size_t kControlBlockSize = 64;
inline constexpr uint64_t kRingMagic = 0x31474f4c524d5446ull;  // "FTMRLOG1"
inline constexpr size_t kMinRingSize = 4096;

// The control block as it sits at region offset 0. All fields 8-byte
// aligned: a one-sided read of an aligned 8-byte word is not torn on any
// provider we use, but a read of several words may mix two publications, so
// `check` ties applied_pos and applied_lsn together (see control_check).
struct ControlBlock {
  uint64_t magic;
  uint64_t ring_size;    // bytes in the entry area
  uint64_t incarnation;  // random per ring creation; seeds entry checksums
  uint64_t applied_pos;  // logical position after the last applied entry
  uint64_t applied_lsn;  // lsn of the last applied entry (0 = none)
  uint64_t check;        // control_check(applied_pos, applied_lsn, incarnation)
  uint64_t reserved[2];
};
static_assert(sizeof(ControlBlock) == kControlBlockSize);

uint64_t control_check(uint64_t pos, uint64_t lsn, uint64_t incarnation);

// A control block as read by the writer, validated.
struct ControlSnapshot {
  uint64_t ring_size = 0;
  uint64_t incarnation = 0;
  uint64_t applied_pos = 0;
  uint64_t applied_lsn = 0;
};

// Parses kControlBlockSize bytes read from a remote ring. Errors:
// kCorruptDescriptor when the magic or size is wrong; kFabricError with
// message "torn" when applied_pos/lsn/check disagree (a read that raced a
// publication: read again).
rdma::Result<ControlSnapshot> parse_control(std::span<const std::byte> bytes);

// Largest entry a ring of `size` bytes accepts (size / 2, 8-aligned).
inline size_t max_entry(size_t size) { return (size / 2) & ~size_t{7}; }

// Where an entry whose predecessor ended at `pos` starts when fewer than
// kMinEntrySize bytes remain before the end (no room for a skip marker):
// the start of the next lap. Otherwise `pos` itself.
inline uint64_t next_entry_pos(uint64_t pos, uint64_t size) {
  uint64_t rest = size - pos % size;
  return rest < kMinEntrySize ? pos + rest : pos;
}

class LogRing {
 public:
  // Allocates an entry area of `size` bytes (a multiple of 8, at least
  // kMinRingSize) plus the control block, zeroes it, picks a random
  // incarnation and registers it with remote read and write access.
  // Errors: kInvalidArgument (size), rdma registration errors.
  static rdma::Result<std::unique_ptr<LogRing>> create(rdma::Fabric& fabric,
                                                       size_t size);
  ~LogRing();
  LogRing(const LogRing&) = delete;
  LogRing& operator=(const LogRing&) = delete;

  // What the primary needs (send it over any channel).
  rdma::RegionDescriptor descriptor() const { return mr_->descriptor(); }
  // Fencing (DARE's log access management: a new leader revokes the old
  // one's access to the log): once it returns, writes with the old
  // descriptor fail and leave the ring unchanged. A new writer needs
  // descriptor() again. Errors: see MemoryRegion::revoke.
  rdma::Status revoke() { return mr_->revoke(); }

  size_t size() const { return size_; }
  uint64_t incarnation() const { return incarnation_; }
  // The entry area (written remotely; read it as the applier does).
  std::span<std::byte> entries() const {
    return {base_ + kControlBlockSize, size_};
  }
  ControlBlock& control() const {
    return *reinterpret_cast<ControlBlock*>(base_);
  }

  // Publishes the applier's progress so the writer can reuse space. Stores
  // pos, lsn and check with release order (a torn remote read fails check).
  // REQUIRES: called by one thread at a time (the applier).
  void publish_applied(uint64_t pos, uint64_t lsn);
  uint64_t applied_pos() const;
  uint64_t applied_lsn() const;

 private:
  LogRing() = default;
  std::byte* base_ = nullptr;  // kControlBlockSize + size_ bytes, 4 KiB aligned
  size_t size_ = 0;
  uint64_t incarnation_ = 0;
  std::unique_ptr<rdma::MemoryRegion> mr_;
};

}  // namespace ftm::repl

#endif  // FTM_REPLICATION_LOG_RING_H_
