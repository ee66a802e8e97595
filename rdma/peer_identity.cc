// What travels in the connect/accept private data (fi_cm(3) `param`): a
// magic, a length and the process's identity, so each side can name the
// other in its errors and refuse connection requests that are not ours;
// with a cluster secret, then a second magic and the handshake nonce
// (rdma/cluster_secret.h). A peer without a secret ignores the trailer.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>

#include "rdma/cluster_secret.h"
#include "rdma/domain_internal.h"

namespace ftm::rdma::detail {
namespace {
constexpr uint32_t kIdMagic = 0x49445446;     // "FTDI"
constexpr uint32_t kNonceMagic = 0x4e435446;  // "FTCN"
}  // namespace

std::vector<uint8_t> encode_identity(const std::string& full_id,
                                     const std::string& nonce, size_t limit,
                                     std::string* sent) {
  size_t fixed = 6 + (nonce.empty() ? 0 : 4 + nonce.size());
  std::string id = full_id;
  if (limit != SIZE_MAX && fixed + id.size() > limit)
    id.resize(limit > fixed ? limit - fixed : 0);
  if (sent) *sent = id;
  std::vector<uint8_t> v(6 + id.size());
  std::memcpy(v.data(), &kIdMagic, 4);
  uint16_t n = uint16_t(id.size());
  std::memcpy(v.data() + 4, &n, 2);
  std::memcpy(v.data() + 6, id.data(), id.size());
  if (!nonce.empty()) {
    size_t at = v.size();
    v.resize(at + 4 + nonce.size());
    std::memcpy(v.data() + at, &kNonceMagic, 4);
    std::memcpy(v.data() + at + 4, nonce.data(), nonce.size());
  }
  return v;
}

size_t cm_data_limit(fid_ep* ep) {
  size_t size = 0, len = sizeof size;
  if (fi_getopt(&ep->fid, FI_OPT_ENDPOINT, FI_OPT_CM_DATA_SIZE, &size, &len) ||
      size == 0)
    return SIZE_MAX;
  return size;
}

bool decode_identity(const uint8_t* data, size_t len, std::string* id,
                     std::string* nonce) {
  uint32_t magic;
  uint16_t n;
  if (nonce) nonce->clear();
  if (len < 6) return false;
  std::memcpy(&magic, data, 4);
  std::memcpy(&n, data + 4, 2);
  if (magic != kIdMagic || size_t(n) + 6 > len) return false;
  id->assign(reinterpret_cast<const char*>(data + 6), n);
  size_t at = 6 + size_t(n);
  if (nonce && len >= at + 4 + kNonceSize) {
    std::memcpy(&magic, data + at, 4);
    if (magic == kNonceMagic)
      nonce->assign(reinterpret_cast<const char*>(data + at + 4), kNonceSize);
  }
  return true;
}

std::string sockaddr_to_string(const void* sa) {
  if (!sa) return "?";
  char buf[INET6_ADDRSTRLEN] = "?";
  auto* s = static_cast<const sockaddr*>(sa);
  if (s->sa_family == AF_INET) {
    auto* in = static_cast<const sockaddr_in*>(sa);
    inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
    return std::string(buf) + ":" + std::to_string(ntohs(in->sin_port));
  }
  if (s->sa_family == AF_INET6) {
    auto* in = static_cast<const sockaddr_in6*>(sa);
    inet_ntop(AF_INET6, &in->sin6_addr, buf, sizeof buf);
    return "[" + std::string(buf) + "]:" + std::to_string(ntohs(in->sin6_port));
  }
  return "?";
}

}  // namespace ftm::rdma::detail
