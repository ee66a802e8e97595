// memcached's text protocol (doc/protocol.txt): parses command lines and data
// blocks out of a connection's read buffer and appends the replies to its
// output buffer. Meta commands (mg, ms, md, ma, mn, me) are recognised here
// and handed to proto_meta.
//
// Thread-safety: a Session and its buffers belong to one worker thread.
#ifndef FTM_SRC_PROTO_TEXT_H_
#define FTM_SRC_PROTO_TEXT_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "src/session.h"

namespace ftm {

// Longest command line the parser waits for before giving up, in bytes. A
// longer line that is not a get/gets closes the connection (memcached does the
// same past 2048 bytes); get/gets lines may grow to kMaxGetLine.
inline constexpr size_t kMaxCommandLine = 2048;
inline constexpr size_t kMaxGetLine = 1u << 20;

// Cluster mode only (Session::ctx->cluster set, Session::forwarded false):
// a request this server must not run alone. The parser stops before it.
enum class Remote : uint8_t {
  kNone,       // nothing to do elsewhere
  kForward,    // one request owned by `remote_node`: forward it, relay the reply
  kSplitGet,   // a text get/gets/gat/gats whose keys have several owners
  kBroadcast,  // flush_all (text or binary): run on every node, answer once
};

struct ProtoResult {
  size_t consumed = 0;  // bytes of `in` fully handled; the caller drops them
  size_t need = 0;      // if > 0: no progress until `in` holds at least this
                        // many bytes (e.g. a value's data block)
  bool close = false;   // close the connection once `out` has been written
  bool yielded = false; // stopped after max_requests; call again soon
  bool paused = false;  // stopped because `out` reached session.out_pause_at
                        // (possibly inside a get): call again once some of
                        // `out` has been sent
  // If remote != kNone: in[consumed, consumed + remote_len) is one whole
  // request (command line plus data block; a binary frame) that the
  // connection layer hands to forward_plan.h, then drops from its input.
  Remote remote = Remote::kNone;
  uint32_t remote_node = 0;  // kForward: the key's primary
  size_t remote_len = 0;
};

// Handles as many complete requests in `in` as there are (at most
// max_requests, memcached's -R), appending every reply to `out` in request
// order. Never blocks, never reads past `in`. Bad input gets memcached's own
// error reply ("ERROR", "CLIENT_ERROR ...", "SERVER_ERROR ...").
// Once `out` holds session.out_pause_at bytes it stops (ProtoResult::paused),
// between requests or between two keys of a get (Session::paused_get), so
// the caller's output stays bounded whatever the client asks for.
// In cluster mode (session.ctx->cluster set, session.forwarded false) every
// key-bearing request is routed first (proto_text_route.cc): the parser stops
// before a request owned elsewhere and reports it in remote/remote_node/
// remote_len, having waited for its whole data block; the caller answers it
// (forward_plan.h) and calls again with the bytes after it.
ProtoResult text_process(Session& session, std::string_view in, std::string& out,
                         int max_requests);

}  // namespace ftm

#endif  // FTM_SRC_PROTO_TEXT_H_
