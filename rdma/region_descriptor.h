// What a peer needs to reach a registered memory region with one-sided
// writes and reads: its address, length and remote key, plus how the target's
// provider interprets addresses. Exported by the owner (MemoryRegion::
// descriptor), sent to the peer by any means (a send, a control message, the
// metadata server), imported there with RegionDescriptor::parse.
//
// Wire form (kWireSize bytes, little-endian): magic "FTMR" u32, version u16,
// flags u16, addr u64, length u64, key u64, checksum u32 (FNV-1a 32 over the
// preceding 36 bytes). The magic, version, flags and checksum let a
// corrupted or truncated descriptor be rejected at import instead of being
// used to write into the wrong memory (which in tcp tears the connection
// down, and in verbs could hit another region).
//
// Thread-safety: a plain value.
#ifndef FTM_RDMA_REGION_DESCRIPTOR_H_
#define FTM_RDMA_REGION_DESCRIPTOR_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "rdma/status.h"

namespace ftm::rdma {

struct RegionDescriptor {
  static constexpr size_t kWireSize = 40;
  static constexpr uint32_t kMagic = 0x524d5446;  // "FTMR" little-endian
  static constexpr uint16_t kVersion = 1;
  // flags: the target's provider uses virtual addresses (FI_MR_VIRT_ADDR):
  // the remote address of byte `off` is addr + off; otherwise it is `off`.
  static constexpr uint16_t kVirtAddr = 1;

  uint64_t addr = 0;    // start of the region in the owner's address space
  uint64_t length = 0;  // bytes
  uint64_t key = 0;     // remote key (fi_mr_key)
  uint16_t flags = 0;

  // The address to post for byte `offset` of the region (fi_rma(3): `addr`
  // is a virtual address under FI_MR_VIRT_ADDR, else an offset).
  uint64_t remote_addr(uint64_t offset) const {
    return (flags & kVirtAddr) ? addr + offset : offset;
  }

  // Checks that [offset, offset+len) lies inside the region. Returns
  // kOutOfBounds (naming `op`) otherwise. Checked locally before posting
  // because a wrong address tears a tcp connection down.
  Status check_bounds(uint64_t offset, uint64_t len, const char* op) const;

  // Serializes to the wire form.
  std::array<std::byte, kWireSize> serialize() const;

  // Parses the wire form. Errors: kCorruptDescriptor when the size, magic,
  // version, flags or checksum do not match, or length is 0 or addr+length
  // overflows.
  static Result<RegionDescriptor> parse(std::span<const std::byte> bytes);
};

}  // namespace ftm::rdma

#endif  // FTM_RDMA_REGION_DESCRIPTOR_H_
