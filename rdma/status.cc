#include "rdma/status.h"

namespace ftm::rdma {

const char* code_name(Code c) {
  switch (c) {
    case Code::kOk: return "ok";
    case Code::kInvalidArgument: return "invalid_argument";
    case Code::kNoProvider: return "no_provider";
    case Code::kConnectRefused: return "connect_refused";
    case Code::kPeerLost: return "peer_lost";
    case Code::kTimeout: return "timeout";
    case Code::kRevokedKey: return "revoked_key";
    case Code::kShortBuffer: return "short_buffer";
    case Code::kCorruptDescriptor: return "corrupt_descriptor";
    case Code::kOutOfBounds: return "out_of_bounds";
    case Code::kClosed: return "closed";
    case Code::kFabricError: return "fabric_error";
    case Code::kAuthFailed: return "auth_failed";
  }
  return "unknown";
}

std::string Status::to_string() const {
  if (is_ok()) return "ok";
  std::string s = code_name(code_);
  s += ": ";
  s += op_.empty() ? "operation" : op_;
  if (!peer_.empty()) {
    s += " with peer ";
    s += peer_;
  }
  if (!msg_.empty()) {
    s += ": ";
    s += msg_;
  }
  return s;
}

}  // namespace ftm::rdma
