// memcached's binary protocol on the wire (memcached's protocol_binary.h):
// opcodes, status codes, and the 24-byte request/response header, decoded
// from and encoded to network byte order without alignment assumptions.
// Pure functions, no state: safe for concurrent use.
#ifndef FTM_SRC_PROTO_BIN_CODEC_H_
#define FTM_SRC_PROTO_BIN_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ftm::bin {

inline constexpr size_t kHeaderLen = 24;
inline constexpr uint8_t kMagicRequest = 0x80;
inline constexpr uint8_t kMagicResponse = 0x81;
// Longest SASL mechanism name memcached accepts (MAX_SASL_MECH_LEN).
inline constexpr size_t kMaxSaslMechLen = 32;

enum Opcode : uint8_t {
  kGet = 0x00,
  kSet = 0x01,
  kAdd = 0x02,
  kReplace = 0x03,
  kDelete = 0x04,
  kIncrement = 0x05,
  kDecrement = 0x06,
  kQuit = 0x07,
  kFlush = 0x08,
  kGetQ = 0x09,
  kNoop = 0x0a,
  kVersion = 0x0b,
  kGetK = 0x0c,
  kGetKQ = 0x0d,
  kAppend = 0x0e,
  kPrepend = 0x0f,
  kStat = 0x10,
  kSetQ = 0x11,
  kAddQ = 0x12,
  kReplaceQ = 0x13,
  kDeleteQ = 0x14,
  kIncrementQ = 0x15,
  kDecrementQ = 0x16,
  kQuitQ = 0x17,
  kFlushQ = 0x18,
  kAppendQ = 0x19,
  kPrependQ = 0x1a,
  kVerbosity = 0x1b,
  kTouch = 0x1c,
  kGat = 0x1d,
  kGatQ = 0x1e,
  kSaslListMechs = 0x20,
  kSaslAuth = 0x21,
  kSaslStep = 0x22,
  kGatK = 0x23,
  kGatKQ = 0x24,
};

enum Status : uint16_t {
  kSuccess = 0x00,
  kKeyNotFound = 0x01,
  kKeyExists = 0x02,
  kTooBig = 0x03,
  kInvalidArgs = 0x04,
  kNotStored = 0x05,
  kDeltaBadValue = 0x06,
  kAuthError = 0x20,
  kAuthContinue = 0x21,
  kUnknownCommand = 0x81,
  kOutOfMemory = 0x82,
};

// memcached's write_bin_error() default text for each status.
inline std::string_view status_text(uint16_t status) {
  switch (status) {
    case kOutOfMemory: return "Out of memory";
    case kUnknownCommand: return "Unknown command";
    case kKeyNotFound: return "Not found";
    case kInvalidArgs: return "Invalid arguments";
    case kKeyExists: return "Data exists for key.";
    case kTooBig: return "Too large.";
    case kDeltaBadValue: return "Non-numeric server-side value for incr or decr";
    case kNotStored: return "Not stored.";
    case kAuthError: return "Auth failure.";
    default: return "UNHANDLED ERROR";
  }
}

inline uint16_t load_be16(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return static_cast<uint16_t>((u[0] << 8) | u[1]);
}
inline uint32_t load_be32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return (uint32_t{u[0]} << 24) | (uint32_t{u[1]} << 16) | (uint32_t{u[2]} << 8) | u[3];
}
inline uint64_t load_be64(const char* p) {
  return (uint64_t{load_be32(p)} << 32) | load_be32(p + 4);
}
inline void append_be16(std::string& out, uint16_t v) {
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v));
}
inline void append_be32(std::string& out, uint32_t v) {
  append_be16(out, static_cast<uint16_t>(v >> 16));
  append_be16(out, static_cast<uint16_t>(v));
}
inline void append_be64(std::string& out, uint64_t v) {
  append_be32(out, static_cast<uint32_t>(v >> 32));
  append_be32(out, static_cast<uint32_t>(v));
}

// A decoded request header. `opaque` keeps the client's bytes as sent (it is
// echoed, never interpreted).
struct RequestHeader {
  uint8_t magic = 0;
  uint8_t opcode = 0;
  uint16_t keylen = 0;
  uint8_t extlen = 0;
  uint8_t datatype = 0;
  uint16_t vbucket = 0;
  uint32_t bodylen = 0;
  char opaque[4] = {0, 0, 0, 0};
  uint64_t cas = 0;
};

// Decodes the first kHeaderLen bytes of `p` (the caller checked the length).
inline RequestHeader decode_request(const char* p) {
  RequestHeader h;
  h.magic = static_cast<uint8_t>(p[0]);
  h.opcode = static_cast<uint8_t>(p[1]);
  h.keylen = load_be16(p + 2);
  h.extlen = static_cast<uint8_t>(p[4]);
  h.datatype = static_cast<uint8_t>(p[5]);
  h.vbucket = load_be16(p + 6);
  h.bodylen = load_be32(p + 8);
  for (int i = 0; i < 4; ++i) h.opaque[i] = p[12 + i];
  h.cas = load_be64(p + 16);
  return h;
}

// Appends a response header (magic 0x81, datatype raw bytes).
inline void append_response_header(std::string& out, uint8_t opcode, uint16_t status,
                                   uint8_t extlen, uint16_t keylen, uint32_t bodylen,
                                   const char opaque[4], uint64_t cas) {
  out.push_back(static_cast<char>(kMagicResponse));
  out.push_back(static_cast<char>(opcode));
  append_be16(out, keylen);
  out.push_back(static_cast<char>(extlen));
  out.push_back(0);  // datatype: raw bytes
  append_be16(out, status);
  append_be32(out, bodylen);
  out.append(opaque, 4);
  append_be64(out, cas);
}

}  // namespace ftm::bin

#endif  // FTM_SRC_PROTO_BIN_CODEC_H_
