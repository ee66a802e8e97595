// `ftmemcached --fabric-info`: which libfabric providers are usable on this
// host for ftmemcached's needs (FI_EP_MSG with FI_MSG|FI_RMA), and which one
// --fabric=auto would pick.
#ifndef FTM_RDMA_FABRIC_INFO_H_
#define FTM_RDMA_FABRIC_INFO_H_

#include <cstdio>

namespace ftm::rdma {

// Prints one line per usable provider (name, fabric, domain, progress model,
// mr_mode) and then "auto: <provider>" to `out`. Returns 0 when at least one
// provider is usable, 1 otherwise (with the reason printed).
int print_fabric_info(FILE* out);

}  // namespace ftm::rdma

#endif  // FTM_RDMA_FABRIC_INFO_H_
