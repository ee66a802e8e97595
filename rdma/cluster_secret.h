// The cluster secret (--cluster-secret-file) and the proofs of knowing it
// that both ends of a fabric connection exchange (rdma/README.md,
// "Cluster security").
//
// Handshake: the connector puts a fresh random nonce Nc in its connect
// private data (fi_connect param), the acceptor answers with its own nonce
// Na in the accept private data (fi_accept param). Then, before either side
// hands the connection to its caller, each sends as the first message
//   HMAC-SHA256(secret, label || Nc || Na || id_connector || id_acceptor)
// with label "ftm-connector-proof" or "ftm-acceptor-proof" (so a proof cannot
// be reflected back), and checks the peer's in constant time. A proof is
// bound to both nonces, so one recorded from an earlier connection is
// useless on a new one (replay). The crypto is OpenSSL's libcrypto (HMAC via
// EVP_MAC, RAND_bytes, CRYPTO_memcmp).
//
// Thread-safety: free functions without shared state; safe for concurrent
// use.
#ifndef FTM_RDMA_CLUSTER_SECRET_H_
#define FTM_RDMA_CLUSTER_SECRET_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "rdma/status.h"

namespace ftm::rdma {

// Bytes in a handshake nonce and in a proof (HMAC-SHA256 output).
// 16 bytes: fresh enough (2^-128 to repeat) and small enough for verbs'
// connection private data (56 bytes on InfiniBand), next to the identity.
constexpr size_t kNonceSize = 16;
constexpr size_t kProofSize = 32;

// Reads the secret from `path` (the --cluster-secret-file value), following
// ssh's rules for private keys. The secret is the file's bytes with one
// trailing newline ("\n" or "\r\n") removed. Errors (kInvalidArgument, the
// message names the file and the cause): the file cannot be opened or read,
// is not a regular file, is readable or writable by group or others (mode &
// 077 != 0: "chmod 600 FILE"), is empty, or is larger than 4096 bytes.
Result<std::string> load_cluster_secret(const std::string& path);

// `n` cryptographically random bytes (OpenSSL RAND_bytes). Errors:
// kFabricError if the generator fails (no entropy).
Result<std::string> random_bytes(size_t n);

// A random 64-bit value from RAND_bytes, for memory region keys. Never 0.
// Falls back to std::random_device only if RAND_bytes fails.
uint64_t random_u64();

// Which end of the connection a proof comes from.
enum class HandshakeRole { kConnector, kAcceptor };

// The kProofSize-byte proof `role` sends: HMAC-SHA256(secret, label ||
// connector_nonce || acceptor_nonce || len16 id_connector || id_connector ||
// len16 id_acceptor || id_acceptor). Identities are those carried in the
// private data; binding them authenticates the names used in errors.
std::string handshake_proof(std::string_view secret, HandshakeRole role,
                            std::string_view connector_nonce,
                            std::string_view acceptor_nonce,
                            std::string_view connector_id,
                            std::string_view acceptor_id);

// True iff `got` equals `want` (both kProofSize bytes); constant time in the
// contents (CRYPTO_memcmp). A wrong length is false.
bool proof_matches(std::string_view got, std::string_view want);

}  // namespace ftm::rdma

#endif  // FTM_RDMA_CLUSTER_SECRET_H_
