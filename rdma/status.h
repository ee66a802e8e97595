// Errors of the fabric layer as values: a Code saying what went wrong, the
// peer and the operation concerned, and a human-readable message. Nothing in
// rdma/ throws or aborts across its public interface; every fallible call
// returns a Status or a Result<T>.
//
// Thread-safety: Status and Result are plain values (copyable, not shared).
#ifndef FTM_RDMA_STATUS_H_
#define FTM_RDMA_STATUS_H_

#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace ftm::rdma {

enum class Code {
  kOk = 0,
  kInvalidArgument,    // a caller bug detected before anything was posted
  kNoProvider,         // fi_getinfo found no provider matching the request
  kConnectRefused,     // nobody listens at the address (ECONNREFUSED)
  kPeerLost,           // the connection broke: peer died, closed, or (tcp)
                       // rejected an access with a revoked key
  kTimeout,            // an operation passed its deadline; the connection
                       // was torn down
  kRevokedKey,         // the target rejected the key (verbs: remote access
                       // error); the region was revoked (fenced)
  kShortBuffer,        // a buffer is too small for the data (local check, or
                       // an incoming message truncated: FI_ETRUNC)
  kCorruptDescriptor,  // an imported region descriptor failed its checks
  kOutOfBounds,        // an access past the end of a local or remote region
  kClosed,             // the connection or region was closed locally
  kFabricError,        // any other libfabric failure (message has fi_strerror)
  kAuthFailed,         // the peer did not prove knowledge of the cluster
                       // secret (or this side has none and it asked for one)
};

// Short stable name of a code ("timeout", "peer_lost", ...), for logs/stats.
const char* code_name(Code c);

class [[nodiscard]] Status {
 public:
  Status() = default;  // ok
  // `peer`: who the operation was talking to ("" if none); `op`: what was
  // being done ("write", "connect", "import descriptor"...); `msg`: detail.
  Status(Code code, std::string peer, std::string op, std::string msg)
      : code_(code), peer_(std::move(peer)), op_(std::move(op)),
        msg_(std::move(msg)) {}

  static Status ok() { return Status(); }
  bool is_ok() const { return code_ == Code::kOk; }
  explicit operator bool() const { return is_ok(); }

  Code code() const { return code_; }
  const std::string& peer() const { return peer_; }
  const std::string& op() const { return op_; }
  const std::string& message() const { return msg_; }

  // "timeout: write to peer 'node-2' (127.0.0.1:4711): deadline 50 ms passed"
  std::string to_string() const;

 private:
  Code code_ = Code::kOk;
  std::string peer_;
  std::string op_;
  std::string msg_;
};

// A value or the status S explaining its absence (std::expected is C++23).
// Shared by the fabric layer (Result, with Status) and the cluster layer
// (repl::ClusterResult, with its ClusterStatus).
template <class T, class S>
class [[nodiscard]] BasicResult {
 public:
  BasicResult(T value) : value_(std::move(value)) {}  // NOLINT: implicit on purpose
  BasicResult(S status) : status_(std::move(status)) {}  // NOLINT
  bool is_ok() const { return value_.has_value(); }
  explicit operator bool() const { return is_ok(); }
  const S& status() const { return status_; }
  // REQUIRES: is_ok().
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }
  T&& operator*() && { return std::move(*value_); }

 private:
  std::optional<T> value_;
  S status_;
};

// A value or the Status explaining its absence.
template <class T>
using Result = BasicResult<T, Status>;

}  // namespace ftm::rdma

#endif  // FTM_RDMA_STATUS_H_
