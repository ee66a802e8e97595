// Loading the cluster secret and computing handshake proofs (OpenSSL 3
// libcrypto: EVP_MAC "HMAC" with SHA256, RAND_bytes, CRYPTO_memcmp).
#include "rdma/cluster_secret.h"

#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>

namespace ftm::rdma {

namespace {

constexpr size_t kMaxSecret = 4096;

Status bad_file(const std::string& path, const std::string& why) {
  return Status(Code::kInvalidArgument, "", "--cluster-secret-file",
                "'" + path + "': " + why);
}

}  // namespace

Result<std::string> load_cluster_secret(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return bad_file(path, std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    return bad_file(path, std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return bad_file(path, "not a regular file");
  }
  if (st.st_mode & 077) {
    ::close(fd);
    char mode[8];
    std::snprintf(mode, sizeof mode, "%03o", unsigned(st.st_mode & 0777));
    return bad_file(path, std::string("permissions ") + mode +
                              " are too open: group or others may access it "
                              "(chmod 600 the file)");
  }
  std::string secret;
  char buf[1024];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      return bad_file(path, std::strerror(e));
    }
    if (n == 0) break;
    secret.append(buf, size_t(n));
    if (secret.size() > kMaxSecret + 2) break;
  }
  ::close(fd);
  if (!secret.empty() && secret.back() == '\n') secret.pop_back();
  if (!secret.empty() && secret.back() == '\r') secret.pop_back();
  if (secret.empty()) return bad_file(path, "the file is empty");
  if (secret.size() > kMaxSecret)
    return bad_file(path, "longer than " + std::to_string(kMaxSecret) +
                              " bytes");
  return secret;
}

Result<std::string> random_bytes(size_t n) {
  std::string s(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(s.data()), int(n)) != 1)
    return Status(Code::kFabricError, "", "random bytes",
                  "RAND_bytes failed (no entropy source?)");
  return s;
}

uint64_t random_u64() {
  uint64_t v = 0;
  while (v == 0) {
    if (RAND_bytes(reinterpret_cast<unsigned char*>(&v), sizeof v) != 1) {
      std::random_device rd;
      v = (uint64_t(rd()) << 32) ^ rd();
    }
  }
  return v;
}

std::string handshake_proof(std::string_view secret, HandshakeRole role,
                            std::string_view connector_nonce,
                            std::string_view acceptor_nonce,
                            std::string_view connector_id,
                            std::string_view acceptor_id) {
  std::string msg = role == HandshakeRole::kConnector ? "ftm-connector-proof"
                                                      : "ftm-acceptor-proof";
  msg += connector_nonce;
  msg += acceptor_nonce;
  for (std::string_view id : {connector_id, acceptor_id}) {
    uint16_t n = uint16_t(id.size());
    msg.push_back(char(n >> 8));
    msg.push_back(char(n & 0xff));
    msg += id;
  }
  std::string out(kProofSize, '\0');
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  EVP_MAC_CTX* ctx = mac ? EVP_MAC_CTX_new(mac) : nullptr;
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end()};
  size_t len = 0;
  bool ok = ctx &&
            EVP_MAC_init(ctx, reinterpret_cast<const unsigned char*>(secret.data()),
                         secret.size(), params) == 1 &&
            EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(msg.data()),
                           msg.size()) == 1 &&
            EVP_MAC_final(ctx, reinterpret_cast<unsigned char*>(out.data()), &len,
                          out.size()) == 1 &&
            len == kProofSize;
  EVP_MAC_CTX_free(ctx);
  EVP_MAC_free(mac);
  // A failed MAC yields an empty proof, which proof_matches never accepts:
  // the handshake fails closed.
  if (!ok) out.clear();
  return out;
}

bool proof_matches(std::string_view got, std::string_view want) {
  if (got.size() != kProofSize || want.size() != kProofSize) return false;
  return CRYPTO_memcmp(got.data(), want.data(), kProofSize) == 0;
}

}  // namespace ftm::rdma
