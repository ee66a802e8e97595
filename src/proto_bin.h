// memcached's binary protocol (protocol_binary.h, the "Binary Protocol"
// spec): parses request frames out of a connection's read buffer and
// appends response frames to its output buffer. Shares the execute layer
// with the text and meta front ends: one implementation per operation.
//
// A connection speaks binary when its first byte is 0x80 (PROTOCOL_BINARY_REQ)
// under -B auto, or always under -B binary; the connection layer decides and
// then calls only this parser for that connection.
//
// Thread-safety: a Session and its buffers belong to one worker thread.
#ifndef FTM_SRC_PROTO_BIN_H_
#define FTM_SRC_PROTO_BIN_H_

#include <string>
#include <string_view>

#include "src/proto_text.h"
#include "src/session.h"

namespace ftm {

// Magic byte that starts every binary request.
inline constexpr unsigned char kBinaryRequestMagic = 0x80;

// Handles as many complete binary requests in `in` as there are (at most
// max_requests), appending responses to `out` in order (quiet variants
// append nothing on the outcomes they suppress). Returns consumed/need/close
// (and paused, once `out` reaches session.out_pause_at) as text_process
// does. A malformed header or lengths that do not add up get
// memcached's error status and, where memcached does, a closed connection;
// never a read past `in`. In cluster mode a frame whose key another node
// owns, and Flush, stop the parser as in text_process (ProtoResult::remote,
// one whole frame).
ProtoResult bin_process(Session& session, std::string_view in, std::string& out, int max_requests);

}  // namespace ftm

#endif  // FTM_SRC_PROTO_BIN_H_
