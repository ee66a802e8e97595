// A registered memory region: memory the fabric may read or write without
// the CPU (fi_mr(3)). Every local buffer of a posted operation must lie in a
// MemoryRegion (so FI_MR_LOCAL providers such as verbs get their local
// descriptor); regions registered with remote access can be exported as a
// RegionDescriptor and written or read by peers one-sidedly.
//
// Keys: with FI_MR_PROV_KEY (verbs) the provider picks the key; otherwise
// (tcp answers mr_mode = 0) the layer requests a fresh key from a
// per-domain counter, so a key is never reused within a domain's life.
//
// Lifetime: a region must outlive the local operations posted with it (wait
// for them before destroying it); destroying it ends peers' access.
//
// Thread-safety: descriptor()/memory() are safe for concurrent use; revoke()
// REQUIRES external synchronization with local operations that use this
// region as their local buffer (peers' remote accesses are what it fences).
#ifndef FTM_RDMA_MEMORY_REGION_H_
#define FTM_RDMA_MEMORY_REGION_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>

#include "rdma/region_descriptor.h"
#include "rdma/status.h"

struct fid_mr;

namespace ftm::rdma {

namespace detail {
struct Domain;
struct Handshake;
}

class MemoryRegion {
 public:
  ~MemoryRegion();  // deregisters (fi_close): remote access ends
  MemoryRegion(const MemoryRegion&) = delete;
  MemoryRegion& operator=(const MemoryRegion&) = delete;

  std::span<std::byte> memory() const { return mem_; }
  size_t size() const { return mem_.size(); }
  // The remote key currently valid (changes on revoke()).
  uint64_t key() const;
  // What a peer needs to access this region (address, length, key, address
  // form of this domain's provider).
  RegionDescriptor descriptor() const;

  // Fencing: closes the registration and registers the same memory again
  // under a new key. Once it returns, remote writes and reads carrying the
  // old key fail at this side (tcp: the provider tears that connection
  // down; verbs: remote access error) and leave the memory unchanged.
  // Peers need the new descriptor() to access the region again.
  // Errors: kFabricError if re-registration fails (the region is then
  // unusable and every access fails: still fenced).
  Status revoke();

  // Local descriptor for posting (fi_mr_desc); internal to rdma/.
  void* local_desc() const;

 private:
  friend class Fabric;
  friend struct detail::Handshake;
  MemoryRegion(std::shared_ptr<detail::Domain> d, std::span<std::byte> mem,
               uint64_t access)
      : d_(std::move(d)), mem_(mem), access_(access) {}
  Status register_now();

  std::shared_ptr<detail::Domain> d_;
  std::span<std::byte> mem_;
  uint64_t access_;
  mutable std::mutex mu_;
  fid_mr* mr_ = nullptr;
  uint64_t key_ = 0;
  void* desc_ = nullptr;
};

}  // namespace ftm::rdma

#endif  // FTM_RDMA_MEMORY_REGION_H_
