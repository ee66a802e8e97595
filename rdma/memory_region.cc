// Registering memory (fi_mr(3)) under whichever key mode the provider
// answered: provider keys (FI_MR_PROV_KEY, verbs) or requested keys (tcp).
#include "rdma/memory_region.h"

#include "rdma/cluster_secret.h"
#include "rdma/domain_internal.h"

namespace ftm::rdma {

MemoryRegion::~MemoryRegion() {
  if (mr_) fi_close(&mr_->fid);
}

uint64_t MemoryRegion::key() const {
  std::lock_guard g(mu_);
  return key_;
}

void* MemoryRegion::local_desc() const {
  std::lock_guard g(mu_);
  return desc_;
}

RegionDescriptor MemoryRegion::descriptor() const {
  RegionDescriptor r;
  r.addr = reinterpret_cast<uint64_t>(mem_.data());
  r.length = mem_.size();
  r.key = key();
  r.flags = d_->virt_addr ? RegionDescriptor::kVirtAddr : 0;
  return r;
}

Status MemoryRegion::register_now() {
  int ret = -FI_ENOKEY;
  // Requested keys are random (never sequential: a peer must not guess one
  // region's key from another's); one may collide with a key still
  // registered, so try a few fresh ones.
  for (int attempt = 0; attempt < 8; attempt++) {
    uint64_t want = 0;
    while (!d_->prov_key && want == 0) want = random_u64() & d_->key_mask;
    fid_mr* mr = nullptr;
    ret = fi_mr_reg(d_->domain, mem_.data(), mem_.size(), access_, 0, want, 0,
                    &mr, nullptr);
    if (ret == 0) {
      std::lock_guard g(mu_);
      mr_ = mr;
      key_ = fi_mr_key(mr);
      desc_ = fi_mr_desc(mr);
      return Status::ok();
    }
    if (ret != -FI_ENOKEY || d_->prov_key) break;
  }
  return Status(Code::kFabricError, "", "register memory",
                "fi_mr_reg of " + std::to_string(mem_.size()) +
                    " bytes: " + detail::fi_error_string(ret));
}

Status MemoryRegion::revoke() {
  {
    std::lock_guard g(mu_);
    if (mr_) fi_close(&mr_->fid);
    mr_ = nullptr;
    desc_ = nullptr;
    key_ = 0;
  }
  return register_now();
}

}  // namespace ftm::rdma
