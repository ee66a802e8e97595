// The framing of PeerMesh messages (replication/peer_mesh.h): one send on
// a link carries one or more messages, each a 16-byte little-endian header
// (u32 body length, u16 PeerRpc type, u8 kind, u8 zero, u64 call id) and
// its body. A hello (the caller's node id) opens every outgoing link; a
// request's reply carries the request's id.
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

namespace ftm::repl::peer_frame {

enum Kind : uint8_t { kHello = 1, kRequest = 2, kReply = 3, kErrorReply = 4 };
constexpr size_t kHeader = 16;  // bytes before each body

struct Header {
  uint32_t len = 0;  // body bytes
  uint16_t type = 0;
  uint8_t kind = 0;
  uint64_t id = 0;
};

inline void put_le(char* p, uint64_t v, int n) {
  for (int i = 0; i < n; i++) p[i] = char((v >> (8 * i)) & 0xff);
}
inline uint64_t get_le(const std::byte* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v |= uint64_t(std::to_integer<uint8_t>(p[i])) << (8 * i);
  return v;
}

// One message: the header, then `head` and `body` as its body.
inline std::string encode(uint8_t kind, uint16_t type, uint64_t id, std::string_view head,
                          std::string_view body) {
  std::string m(kHeader + head.size() + body.size(), '\0');
  put_le(m.data(), head.size() + body.size(), 4);
  put_le(m.data() + 4, type, 2);
  m[6] = char(kind);
  put_le(m.data() + 8, id, 8);
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
    h.len = uint32_t(get_le(p + off, 4));
    h.type = uint16_t(get_le(p + off + 4, 2));
    h.kind = std::to_integer<uint8_t>(p[off + 6]);
    h.id = get_le(p + off + 8, 8);
    if (n - off - kHeader < h.len) return false;
    if (!fn(h, std::string_view(reinterpret_cast<const char*>(p + off + kHeader), h.len)))
      return false;
    off += kHeader + h.len;
  }
  return true;
}

}  // namespace ftm::repl::peer_frame

#endif  // FTM_REPLICATION_PEER_FRAME_H_
