// --cluster-secret-file for the command-line tools that open a fabric
// (ftmemcached-meta, ftmemcached-ctl): one way to load it and say why not.
#ifndef FTM_RDMA_SECRET_OPTION_H_
#define FTM_RDMA_SECRET_OPTION_H_

#include <cstdio>
#include <string>
#include <utility>

#include "rdma/cluster_secret.h"
#include "rdma/fabric_domain.h"

namespace ftm::rdma {

// Loads the secret file at `path` into fo->cluster_secret (nothing to do
// for an empty path: an open cluster). On failure (load_cluster_secret's
// errors: missing, unreadable, empty, too long, group/world-readable)
// prints "<prog>: <why>" to stderr and returns false; the caller exits
// with EX_CONFIG.
inline bool apply_secret_option(const char* prog, const std::string& path, FabricOptions* fo) {
  if (path.empty()) return true;
  auto secret = load_cluster_secret(path);
  if (!secret) {
    std::fprintf(stderr, "%s: %s\n", prog, secret.status().to_string().c_str());
    return false;
  }
  fo->cluster_secret = std::move(*secret);
  return true;
}

}  // namespace ftm::rdma

#endif  // FTM_RDMA_SECRET_OPTION_H_
