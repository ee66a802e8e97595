// libFuzzer target for the control-message decoder (repl::decode in
// replication/control_msg.h, and through MAP, JOIN_OK and STATUS the
// cluster map decoder ClusterMap::decode): the frames a metadata server
// receives from any data server or ftmemcached-ctl, and the maps a data
// server installs from it. Garbage must get a typed error, never a crash or
// an accepted impossible message.
//
// Input: byte 0 = options, the rest = one frame (exactly what one receive
// delivered), copied to an exact-size buffer. Options, so the fuzzer gets
// past the integrity checks to the fields behind them (a peer with a bug
// would send exactly such frames):
//   bit 0  set the frame's body length to match the input;
//   bit 1  for MAP, JOIN_OK and STATUS: set the embedded map's total length
//          and recompute its checksum;
//   bit 2  recompute the frame's checksum.
// Checks on an accepted frame: encode() takes the decoded message back
// (decode accepts nothing encode refuses), and decoding that encoding gives
// the same message and sequence number.
//
// Build and run: t/fuzz/run.sh [seconds]
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

#include "replication/control_msg.h"
#include "replication/partition_map.h"

namespace {

using ftm::repl::MsgType;

[[noreturn]] void fail() { __builtin_trap(); }

uint32_t get_u32(const std::byte* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
void put_u32(std::byte* p, uint32_t v) { std::memcpy(p, &v, 4); }
void put_u64(std::byte* p, uint64_t v) { std::memcpy(p, &v, 8); }

// The embedded map of frame f[0, n) (see control_msg.cc's put_map: u32
// length, then the map) gets a matching length field and checksum.
void fix_map(std::byte* f, size_t n) {
  if (n < 16) return;
  uint16_t type;
  std::memcpy(&type, f + 6, 2);
  size_t at = 16;  // MAP and STATUS: the body starts with the map
  if (type == uint16_t(MsgType::kJoinOk)) {
    at += 4;  // after the node id
  } else if (type != uint16_t(MsgType::kMap) && type != uint16_t(MsgType::kStatus)) {
    return;
  }
  if (n < at + 4) return;
  const uint32_t len = get_u32(f + at);
  at += 4;
  if (len < 20 || len > n - at) return;
  put_u32(f + at + 8, len);  // the map's total length field
  put_u64(f + at + len - 8,
          ftm::repl::wire::checksum({f + at, size_t(len) - 8}));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t opts = data[0];
  ++data;
  --size;
  std::unique_ptr<std::byte[]> frame(new std::byte[size]);
  std::memcpy(frame.get(), data, size);
  std::byte* f = frame.get();
  if ((opts & 1) && size >= ftm::repl::kFrameOverhead)
    put_u32(f + 8, uint32_t(size - ftm::repl::kFrameOverhead));
  if (opts & 2) fix_map(f, size);
  if ((opts & 4) && size >= ftm::repl::kFrameOverhead)
    put_u64(f + size - 8, ftm::repl::wire::checksum({f, size - 8}));

  auto env = ftm::repl::decode({f, size});
  if (!env) {
    if (env.status().message().empty()) fail();  // every refusal names why
    return 0;
  }
  auto again = ftm::repl::encode(env.value().msg, env.value().seq);
  if (!again) fail();  // decode accepted what encode refuses
  auto env2 = ftm::repl::decode(again.value());
  if (!env2) fail();
  if (env2.value().seq != env.value().seq || !(env2.value().msg == env.value().msg))
    fail();
  return 0;
}
