// A rogue fabric peer for t/test_security.py: a process that does not know
// the cluster secret tries to get into a cluster through the fabric.
//
//   rogue_peer [--secret-file FILE] [--silent] [--ignore-check] HOST:PORT ACTION
//
// --secret-file: the secret it believes in (a wrong one); none: it sends no
// handshake nonce at all. --silent: it never sends its proof. --ignore-check:
// it goes on even if the listener's proof does not check out (so, with
// --silent, it holds an endpoint while the listener waits for a proof).
// ACTION: connect (just the connection), read or write (then one-sided
// 8-byte reads or writes at offset 0 with guessed memory region keys: small
// sequential ones and random ones).
//
// Prints one line per attempt and exits 0 when everything was refused, 1
// when anything got through, 2 on a usage error.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "rdma/cluster_secret.h"
#include "rdma/connection.h"
#include "rdma/domain_internal.h"
#include "rdma/fabric_domain.h"
#include "rdma/memory_region.h"
#include "rdma/region_descriptor.h"

namespace {

using namespace ftm::rdma;

void stay_silent(HandshakeRole, std::string* proof) { proof->clear(); }

int usage() {
  std::fprintf(stderr,
               "usage: rogue_peer [--secret-file FILE] [--silent] "
               "[--ignore-check] HOST:PORT connect|read|write\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string secret_file, target, action;
  bool silent = false, ignore = false;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--secret-file" && i + 1 < argc)
      secret_file = argv[++i];
    else if (a == "--silent")
      silent = true;
    else if (a == "--ignore-check")
      ignore = true;
    else if (target.empty())
      target = a;
    else if (action.empty())
      action = a;
    else
      return usage();
  }
  auto colon = target.rfind(':');
  if (colon == std::string::npos ||
      (action != "connect" && action != "read" && action != "write"))
    return usage();
  std::string host = target.substr(0, colon);
  uint16_t port = uint16_t(std::atoi(target.c_str() + colon + 1));

  FabricOptions fo;
  fo.provider = ProviderChoice::kTcp;
  fo.local_addr = "127.0.0.1";
  fo.identity = "rogue";
  fo.connect_timeout = std::chrono::milliseconds(5000);
  fo.log = [](std::string_view) {};
  if (!secret_file.empty()) {
    auto s = load_cluster_secret(secret_file);
    if (!s) {
      std::fprintf(stderr, "rogue_peer: %s\n", s.status().to_string().c_str());
      return 2;
    }
    fo.cluster_secret = *s;
  }
  if (silent) detail::proof_hook = stay_silent;
  if (ignore) detail::skip_proof_check = true;
  auto fabric = Fabric::open(fo);
  if (!fabric) {
    std::fprintf(stderr, "rogue_peer: %s\n",
                 fabric.status().to_string().c_str());
    return 2;
  }
  auto conn = (*fabric)->connect(host, port);
  if (!conn) {
    std::printf("connect refused: %s\n", conn.status().to_string().c_str());
    return 0;
  }
  std::printf("connect accepted by %s\n", (*conn)->peer().c_str());
  if (action == "connect") return 1;

  std::vector<std::byte> buf(8, std::byte{0x5a});
  auto mr = (*fabric)->register_memory(buf, false, false);
  if (!mr) return 2;
  std::vector<uint64_t> keys;
  for (uint64_t k = 0; k < 8; k++) keys.push_back(k);
  for (int i = 0; i < 8; i++) keys.push_back(random_u64());
  int through = 0;
  for (uint64_t key : keys) {
    RegionDescriptor d;
    d.addr = 0;
    d.length = 1 << 20;
    d.key = key;
    Status st = action == "read"
                    ? (*conn)->read_sync(**mr, 0, d, 0, 8,
                                         std::chrono::milliseconds(1000))
                    : (*conn)->write_sync(**mr, 0, d, 0, 8,
                                          std::chrono::milliseconds(1000));
    std::printf("%s key %llu: %s\n", action.c_str(),
                static_cast<unsigned long long>(key),
                st ? "GOT THROUGH" : st.to_string().c_str());
    if (st) through++;
  }
  return through ? 1 : 0;
}
