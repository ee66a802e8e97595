// A fabric for in-process cluster unit tests: libfabric's tcp provider on
// 127.0.0.1 (this machine has no RDMA device), logging nothing.
#ifndef FTM_T_UNIT_TEST_FABRIC_H_
#define FTM_T_UNIT_TEST_FABRIC_H_

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <string_view>

#include "rdma/fabric_domain.h"

namespace ftm::repl {

// Opens the fabric with `identity` as its handshake name. Returns null (and
// records a test failure) if it cannot be opened.
inline std::unique_ptr<rdma::Fabric> open_fabric(const std::string& identity) {
  rdma::FabricOptions o;
  o.provider = rdma::ProviderChoice::kTcp;
  o.local_addr = "127.0.0.1";
  o.identity = identity;
  o.log = [](std::string_view) {};
  auto f = rdma::Fabric::open(o);
  if (!f) ADD_FAILURE() << f.status().to_string();
  return f ? std::move(f).value() : nullptr;
}

}  // namespace ftm::repl

#endif  // FTM_T_UNIT_TEST_FABRIC_H_
