// The framing of PeerMesh messages (replication/peer_mesh.h): one send on
// a link carries one or more messages, each a 16-byte header and its body.
// The header's fields are host-order (little-endian) values at fixed
// offsets (replication/wire_bytes.h): u32 body length, u16 PeerRpc type,
// u8 kind, u8 zero, u64 call id. A hello (the caller's node id) opens every
// outgoing link; a request's reply carries the request's id.
//
// Header-only and allocation-free apart from encode(), which builds one
// message (the link's queue owns it until the writer copies it into the
// registered send buffer).
#ifndef FTM_REPLICATION_PEER_FRAME_H_
#define FTM_REPLICATION_PEER_FRAME_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "replication/wire_bytes.h"

namespace ftm::repl::peer_frame {

enum Kind : uint8_t { kHello = 1, kRequest = 2, kReply = 3, kErrorReply = 4 };
constexpr size_t kHeader = 16;  // bytes before each body

struct Header {
  uint32_t len = 0;  // body bytes
  uint16_t type = 0;
  uint8_t kind = 0;
  uint64_t id = 0;
};

// One message: the header, then `head` and `body` as its body.
inline std::string encode(uint8_t kind, uint16_t type, uint64_t id, std::string_view head,
                          std::string_view body) {
  std::string m(kHeader + head.size() + body.size(), '\0');
  auto* p = reinterpret_cast<std::byte*>(m.data());
  wire::put<uint32_t>(p, 0, uint32_t(head.size() + body.size()));
  wire::put<uint16_t>(p, 4, type);
  wire::put<uint8_t>(p, 6, kind);
  wire::put<uint64_t>(p, 8, id);
  if (!head.empty()) std::memcpy(m.data() + kHeader, head.data(), head.size());
  if (!body.empty()) std::memcpy(m.data() + kHeader + head.size(), body.data(), body.size());
  return m;
}

// Calls fn(header, body) for each message of the received send [p, p+n),
// in order, until fn returns false. Returns false if the send is malformed
// (a truncated header or body) or fn refused a message.
template <class F>
bool for_each_message(const std::byte* p, size_t n, F&& fn) {
  size_t off = 0;
  while (off < n) {
    if (n - off < kHeader) return false;
    Header h;
    h.len = wire::get<uint32_t>(p, off);
    h.type = wire::get<uint16_t>(p, off + 4);
    h.kind = wire::get<uint8_t>(p, off + 6);
    h.id = wire::get<uint64_t>(p, off + 8);
    if (n - off - kHeader < h.len) return false;
    if (!fn(h, std::string_view(reinterpret_cast<const char*>(p + off + kHeader), h.len)))
      return false;
    off += kHeader + h.len;
  }
  return true;
}

}  // namespace ftm::repl::peer_frame

#endif  // FTM_REPLICATION_PEER_FRAME_H_
