// A second process for the rdma/ tests: the test binary re-executes itself
// (/proc/self/exe) with FTM_RDMA_HELPER set, and a static initializer in
// rdma_helper.cc turns that process into a passive target before GoogleTest
// starts. The target registers a region, accepts one connection, sends the
// region's descriptor, then its only application thread sleeps until it is
// killed: whatever lands in its memory got there through the fabric layer's
// progress thread.
#ifndef FTM_T_UNIT_RDMA_HELPER_H_
#define FTM_T_UNIT_RDMA_HELPER_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace ftm::rdma::testing {

struct Helper {
  pid_t pid = -1;
  uint16_t port = 0;
  std::string identity;
};

// Starts a target process with a region of `region_bytes`. Returns pid -1 on
// failure (with a message on stderr).
Helper spawn_target(size_t region_bytes);

// SIGKILLs (if still running) and reaps the helper.
void reap(Helper& h);

}  // namespace ftm::rdma::testing

#endif  // FTM_T_UNIT_RDMA_HELPER_H_
