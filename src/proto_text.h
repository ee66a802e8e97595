// memcached's text protocol (doc/protocol.txt): parses command lines and data
// blocks out of a connection's read buffer and appends the replies to its
// output buffer. Meta commands (mg, ms, md, ma, mn, me) are recognised here
// and handed to proto_meta.
//
// Thread-safety: a Session and its buffers belong to one worker thread.
#ifndef FTM_SRC_PROTO_TEXT_H_
#define FTM_SRC_PROTO_TEXT_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "src/session.h"

namespace ftm {

// Longest command line the parser waits for before giving up, in bytes. A
// longer line that is not a get/gets closes the connection (memcached does the
// same past 2048 bytes); get/gets lines may grow to kMaxGetLine.
inline constexpr size_t kMaxCommandLine = 2048;
inline constexpr size_t kMaxGetLine = 1u << 20;

struct ProtoResult {
  size_t consumed = 0;  // bytes of `in` fully handled; the caller drops them
  size_t need = 0;      // if > 0: no progress until `in` holds at least this
                        // many bytes (e.g. a value's data block)
  bool close = false;   // close the connection once `out` has been written
  bool yielded = false; // stopped after max_requests; call again soon
};

// Handles as many complete requests in `in` as there are (at most
// max_requests, memcached's -R), appending every reply to `out` in request
// order. Never blocks, never reads past `in`. Bad input gets memcached's own
// error reply ("ERROR", "CLIENT_ERROR ...", "SERVER_ERROR ...").
ProtoResult text_process(Session& session, std::string_view in, std::string& out,
                         int max_requests);

}  // namespace ftm

#endif  // FTM_SRC_PROTO_TEXT_H_
