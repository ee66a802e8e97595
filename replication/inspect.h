// Replica inspection: what `ftmemcached-ctl digest` and `get-replica` ask a
// data server about its own store, so whole replicas can be compared
// (issue 5, "Checks a test can use"). Served over the peer mesh
// (PeerRpc::kDigest, PeerRpc::kGetReplica); the ctl reaches a server's mesh
// port with PeerMesh::request.
//
// Both answers describe an item the same way on every replica: key, value,
// client flags, cas, and the expiry as an absolute unix time (relative
// times differ between processes started at different seconds). Only live
// items count: an expired or flushed item is absent, as a get would see it.
//
// Wire forms (little-endian):
//   kDigest request:    u32 P (the cluster map's partition count)
//   kDigest reply:      u32 P, then P times {u64 count, u64 hash}
//                       for map partitions 0..P-1 (XXH3_64bits(key) % P)
//   kGetReplica request: the key's bytes
//   kGetReplica reply:  u8 0 (miss), or u8 1, u32 flags, u64 cas,
//                       i64 exptime (unix seconds, 0 = never), u32 value
//                       length, value bytes
// A partition's hash is the sum (mod 2^64) of item_hash() over its live
// items, so it does not depend on iteration order, and equal contents give
// equal digests on every replica.
//
// The codecs below are header-only so ftmemcached-ctl needs no store code.
// Thread-safety: the handlers are safe for concurrent use (each partition
// is read under its own lock); the codecs are pure functions.
#ifndef FTM_REPLICATION_INSPECT_H_
#define FTM_REPLICATION_INSPECT_H_

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ftm {
class Store;
}

namespace ftm::repl {

class PeerMesh;

// Registers the kDigest and kGetReplica handlers; `store` must outlive
// `mesh`'s handlers (i.e. the mesh is closed before the store goes).
void register_inspection_handlers(PeerMesh& mesh, Store& store);

struct PartitionDigest {
  uint64_t count = 0;  // live items
  uint64_t hash = 0;   // sum of item_hash over them
  bool operator==(const PartitionDigest&) const = default;
};

struct ReplicaItem {
  uint32_t flags = 0;
  uint64_t cas = 0;
  int64_t exptime = 0;  // unix seconds, 0 = never
  std::string value;
  bool operator==(const ReplicaItem&) const = default;
};

// XXH3_64bits over u32 key length, key, u32 value length, value, u32 flags,
// u64 cas, i64 exptime (all little-endian). Defined in inspect.cc.
uint64_t item_hash(std::string_view key, std::string_view value, uint32_t flags, uint64_t cas,
                   int64_t exptime);

namespace inspect_wire {

inline void put(std::string& out, uint64_t v, int n) {
  for (int i = 0; i < n; i++) out.push_back(char((v >> (8 * i)) & 0xff));
}

// Reads n little-endian bytes at *off; false if the input is too short.
inline bool get(std::string_view in, size_t* off, int n, uint64_t* v) {
  if (in.size() < *off || in.size() - *off < size_t(n)) return false;
  uint64_t x = 0;
  for (int i = 0; i < n; i++) x |= uint64_t(uint8_t(in[*off + i])) << (8 * i);
  *off += n;
  *v = x;
  return true;
}

inline std::string encode_digest_request(uint32_t partitions) {
  std::string s;
  put(s, partitions, 4);
  return s;
}

inline std::optional<uint32_t> decode_digest_request(std::string_view in) {
  size_t off = 0;
  uint64_t p = 0;
  if (!get(in, &off, 4, &p) || off != in.size() || p == 0 || p > (1u << 20)) return std::nullopt;
  return uint32_t(p);
}

inline std::string encode_digest(const std::vector<PartitionDigest>& d) {
  std::string s;
  s.reserve(4 + 16 * d.size());
  put(s, d.size(), 4);
  for (const PartitionDigest& x : d) {
    put(s, x.count, 8);
    put(s, x.hash, 8);
  }
  return s;
}

inline std::optional<std::vector<PartitionDigest>> decode_digest(std::string_view in) {
  size_t off = 0;
  uint64_t n = 0;
  if (!get(in, &off, 4, &n) || in.size() - off != 16 * n) return std::nullopt;
  std::vector<PartitionDigest> d(n);
  for (PartitionDigest& x : d) {
    get(in, &off, 8, &x.count);
    get(in, &off, 8, &x.hash);
  }
  return d;
}

inline std::string encode_replica(const std::optional<ReplicaItem>& it) {
  std::string s;
  if (!it) {
    s.push_back('\0');
    return s;
  }
  s.reserve(25 + it->value.size());
  s.push_back('\1');
  put(s, it->flags, 4);
  put(s, it->cas, 8);
  put(s, uint64_t(it->exptime), 8);
  put(s, it->value.size(), 4);
  s += it->value;
  return s;
}

// nullopt: malformed. A miss decodes as an engaged outer optional holding
// a disengaged inner one.
inline std::optional<std::optional<ReplicaItem>> decode_replica(std::string_view in) {
  if (in.size() == 1 && in[0] == '\0') return std::optional<ReplicaItem>();
  if (in.empty() || in[0] != '\1') return std::nullopt;
  size_t off = 1;
  uint64_t flags, cas, exptime, len;
  if (!get(in, &off, 4, &flags) || !get(in, &off, 8, &cas) || !get(in, &off, 8, &exptime) ||
      !get(in, &off, 4, &len) || in.size() - off != len)
    return std::nullopt;
  ReplicaItem it;
  it.flags = uint32_t(flags);
  it.cas = cas;
  it.exptime = int64_t(exptime);
  it.value.assign(in.substr(off));
  return std::optional<ReplicaItem>(std::move(it));
}

}  // namespace inspect_wire
}  // namespace ftm::repl

#endif  // FTM_REPLICATION_INSPECT_H_
