// Cluster mode: turns a request the parser would not run here
// (ProtoResult::remote) into per-node sub-requests and composes the client's
// one reply from their replies (DESIGN.md "Data path", step 3).
//
//  - kForward: one part, the request as the client sent it, to its primary.
//  - kSplitGet: a text get/gets/gat/gats naming keys of several owners: one
//    "get k1 k2 ..." per owner (this server's own keys included, as a local
//    part); the VALUE blocks are put back in the client's key order, then one
//    END.
//  - kBroadcast: flush_all (text or binary) to every node of the map and to
//    this server; one answer: the first error, else this server's own.
//
// A part that fails (Cluster::forward's ok=false) answers with the cluster
// layer's "SERVER_ERROR <reason>" line (text; silent under noreply, whose
// errors memcached never shows either) or an error frame with status 0x84,
// memcached's PROTOCOL_BINARY_RESPONSE_EINTERNAL, carrying the reason
// (binary; sent even for quiet opcodes, as memcached's write_bin_error is).
// A split get with any failed part answers that part's error alone.
//
// No sockets, no threads: the connection layer runs local parts itself
// (Session::forwarded) and forwards the others. Copies the request (one
// allocation per forwarded request, against a network round trip), because
// the read buffer moves on while the parts are out.
//
// Thread-safety: a Gather belongs to one connection.
#ifndef FTM_SRC_FORWARD_PLAN_H_
#define FTM_SRC_FORWARD_PLAN_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "src/cluster.h"
#include "src/proto_text.h"

namespace ftm {

// The Binary status a failed forward answers with (memcached's EINTERNAL).
inline constexpr uint16_t kBinaryInternalError = 0x84;

struct GatherPart {
  uint32_t node = 0;
  bool local = false;  // this server's share: run with Session::forwarded set
  std::string request;
  std::string reply;
  bool ok = true;
  bool done = false;
};

class Gather {
 public:
  // `request` is the whole request the parser reported: kind, node and
  // length from `r`; `proto` the connection's protocol.
  Gather(Cluster& cluster, WireProtocol proto, const ProtoResult& r, std::string_view request);
  // keys_ points into request_: not copyable, not movable.
  Gather(const Gather&) = delete;
  Gather& operator=(const Gather&) = delete;

  WireProtocol proto() const { return proto_; }
  std::vector<GatherPart>& parts() { return parts_; }

  // Appends the client's reply; call once every part is done.
  void compose(std::string& out) const;

 private:
  void plan_split_get(Cluster& cluster);
  void plan_broadcast(Cluster& cluster);
  void compose_split_get(std::string& out) const;
  void compose_broadcast(std::string& out) const;
  // The reply for a failed part.
  void failure(const GatherPart& p, std::string& out) const;

  WireProtocol proto_;
  Remote kind_;
  bool noreply_ = false;  // text: the client will not read a reply
  std::string request_;
  std::vector<GatherPart> parts_;
  // kSplitGet: every key in the client's order (views into request_) and the
  // index of the part that asks for it.
  std::vector<std::pair<std::string_view, uint32_t>> keys_;
};

}  // namespace ftm

#endif  // FTM_SRC_FORWARD_PLAN_H_
