// ClusterMap: lookup, placement and serialization (see partition_map.h).
#include "replication/partition_map.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <unordered_map>

namespace ftm::repl {

const char* errc_name(ClusterErrc c) {
  switch (c) {
    case ClusterErrc::kOk: return "ok";
    case ClusterErrc::kInvalidArgument: return "invalid_argument";
    case ClusterErrc::kCorrupt: return "corrupt";
    case ClusterErrc::kVersion: return "version";
    case ClusterErrc::kTooLarge: return "too_large";
    case ClusterErrc::kIo: return "io";
    case ClusterErrc::kRefused: return "refused";
    case ClusterErrc::kUnavailable: return "unavailable";
  }
  return "?";
}

std::string ClusterStatus::to_string() const {
  if (is_ok()) return "ok";
  return std::string(errc_name(code_)) + ": " + msg_;
}

const char* state_name(ServerState s) {
  switch (s) {
    case ServerState::kJoining: return "joining";
    case ServerState::kUp: return "up";
    case ServerState::kFailed: return "failed";
    case ServerState::kSpare: return "spare";
  }
  return "?";
}

// ---- wire helpers ----

namespace wire {
void put_u8(std::vector<std::byte>& out, uint8_t v) {
  out.push_back(std::byte(v));
}
void put_u16(std::vector<std::byte>& out, uint16_t v) {
  for (int i = 0; i < 2; i++) out.push_back(std::byte(v >> (8 * i)));
}
void put_u32(std::vector<std::byte>& out, uint32_t v) {
  for (int i = 0; i < 4; i++) out.push_back(std::byte(v >> (8 * i)));
}
void put_u64(std::vector<std::byte>& out, uint64_t v) {
  for (int i = 0; i < 8; i++) out.push_back(std::byte(v >> (8 * i)));
}
void put_str16(std::vector<std::byte>& out, std::string_view s) {
  put_u16(out, uint16_t(s.size()));
  auto* p = reinterpret_cast<const std::byte*>(s.data());
  out.insert(out.end(), p, p + s.size());
}
void put_bytes(std::vector<std::byte>& out, std::span<const std::byte> b) {
  out.insert(out.end(), b.begin(), b.end());
}
uint64_t checksum(std::span<const std::byte> b) {
  return XXH3_64bits(b.data(), b.size());
}

bool Reader::take(size_t n) {
  if (failed_ || n > b_.size() - pos_) {
    failed_ = true;
    return false;
  }
  return true;
}
uint8_t Reader::u8() {
  if (!take(1)) return 0;
  return uint8_t(b_[pos_++]);
}
uint16_t Reader::u16() {
  if (!take(2)) return 0;
  uint16_t v = 0;
  for (int i = 0; i < 2; i++) v |= uint16_t(uint8_t(b_[pos_++])) << (8 * i);
  return v;
}
uint32_t Reader::u32() {
  if (!take(4)) return 0;
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v |= uint32_t(uint8_t(b_[pos_++])) << (8 * i);
  return v;
}
uint64_t Reader::u64() {
  if (!take(8)) return 0;
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= uint64_t(uint8_t(b_[pos_++])) << (8 * i);
  return v;
}
std::string Reader::str(size_t n) {
  if (!take(n)) return {};
  std::string s(reinterpret_cast<const char*>(b_.data() + pos_), n);
  pos_ += n;
  return s;
}
std::string Reader::str16() { return str(u16()); }
std::span<const std::byte> Reader::bytes(size_t n) {
  if (!take(n)) return {};
  auto s = b_.subspan(pos_, n);
  pos_ += n;
  return s;
}
}  // namespace wire

// ---- ClusterMap ----

ClusterMap::ClusterMap(uint32_t partitions, uint32_t replicas)
    : partitions_(partitions), replicas_(replicas),
      slots_(size_t(partitions) * replicas, 0) {}

uint32_t ClusterMap::partition_for_key(std::string_view key,
                                       uint32_t partitions) {
  return uint32_t(XXH3_64bits(key.data(), key.size()) % partitions);
}

std::span<const uint32_t> ClusterMap::replicas_of(uint32_t p) const {
  const uint32_t* first = slots_.data() + size_t(p) * replicas_;
  size_t n = 0;
  while (n < replicas_ && first[n] != 0) n++;  // filled slots come first
  return {first, n};
}

std::span<const uint32_t> ClusterMap::secondaries(uint32_t p) const {
  auto r = replicas_of(p);
  return r.empty() ? r : r.subspan(1);
}

bool ClusterMap::holds(uint32_t p, uint32_t node) const {
  for (uint32_t id : replicas_of(p))
    if (id == node) return true;
  return false;
}

const ServerInfo* ClusterMap::server(uint32_t id) const {
  auto it = std::lower_bound(
      servers_.begin(), servers_.end(), id,
      [](const ServerInfo& s, uint32_t v) { return s.id < v; });
  return it != servers_.end() && it->id == id ? &*it : nullptr;
}

void ClusterMap::upsert_server(const ServerInfo& s) {
  auto it = std::lower_bound(
      servers_.begin(), servers_.end(), s.id,
      [](const ServerInfo& a, uint32_t v) { return a.id < v; });
  if (it != servers_.end() && it->id == s.id)
    *it = s;
  else
    servers_.insert(it, s);
}

uint32_t ClusterMap::next_node_id() const {
  return servers_.empty() ? 1 : servers_.back().id + 1;
}

uint32_t ClusterMap::primary_count(uint32_t node) const {
  uint32_t n = 0;
  for (uint32_t p = 0; p < partitions_; p++) n += primary(p) == node;
  return n;
}

uint32_t ClusterMap::secondary_count(uint32_t node) const {
  uint32_t n = 0;
  for (uint32_t p = 0; p < partitions_; p++)
    for (uint32_t id : secondaries(p)) n += id == node;
  return n;
}

void ClusterMap::assign(uint32_t p, std::span<const uint32_t> ids) {
  uint32_t* first = slots_.data() + size_t(p) * replicas_;
  for (uint32_t i = 0; i < replicas_; i++)
    first[i] = i < ids.size() ? ids[i] : 0;
}

std::vector<std::byte> ClusterMap::encode() const {
  using namespace wire;
  std::vector<std::byte> out;
  out.reserve(40 + servers_.size() * 48 + slots_.size() * 4);
  put_u32(out, kMagic);
  put_u16(out, kVersion);
  put_u16(out, 0);
  put_u32(out, 0);  // total length, patched below
  put_u32(out, partitions_);
  put_u8(out, uint8_t(replicas_));
  put_u8(out, 0);
  put_u16(out, 0);
  put_u32(out, uint32_t(servers_.size()));
  put_u64(out, epoch_);
  for (const ServerInfo& s : servers_) {
    put_u32(out, s.id);
    put_u8(out, uint8_t(s.state));
    put_u8(out, 0);
    put_u16(out, uint16_t(s.memcached_addr.size()));
    put_u16(out, uint16_t(s.fabric_addr.size()));
    put_bytes(out, std::as_bytes(std::span(s.memcached_addr)));
    put_bytes(out, std::as_bytes(std::span(s.fabric_addr)));
  }
  for (uint32_t id : slots_) put_u32(out, id);
  uint32_t total = uint32_t(out.size() + 8);
  for (int i = 0; i < 4; i++) out[8 + i] = std::byte(total >> (8 * i));
  put_u64(out, checksum(out));
  return out;
}

namespace {
ClusterStatus corrupt(const std::string& what) {
  return ClusterStatus(ClusterErrc::kCorrupt, "cluster map: " + what);
}
}  // namespace

ClusterResult<ClusterMap> ClusterMap::decode(std::span<const std::byte> b) {
  wire::Reader r(b);
  uint32_t magic = r.u32();
  uint16_t version = r.u16();
  uint16_t flags = r.u16();
  uint32_t total = r.u32();
  if (r.failed()) return corrupt("truncated header");
  if (magic != kMagic) return corrupt("bad magic");
  if (version != kVersion)
    return ClusterStatus(ClusterErrc::kVersion,
                         "cluster map: version " + std::to_string(version) +
                             ", this build reads version " +
                             std::to_string(kVersion));
  if (flags != 0) return corrupt("unknown flags");
  if (total != b.size())
    return corrupt("length field " + std::to_string(total) + " but " +
                   std::to_string(b.size()) + " bytes given");
  // Verify the checksum before trusting any count below.
  if (b.size() < 8) return corrupt("truncated");
  wire::Reader tail(b.subspan(b.size() - 8));
  if (tail.u64() != wire::checksum(b.first(b.size() - 8)))
    return corrupt("checksum mismatch");

  uint32_t partitions = r.u32();
  uint32_t replicas = r.u8();
  r.u8();
  r.u16();
  uint32_t nservers = r.u32();
  uint64_t epoch = r.u64();
  if (r.failed()) return corrupt("truncated header");
  if (partitions == 0 || partitions > kMaxPartitions)
    return corrupt("partition count " + std::to_string(partitions) +
                   " out of range");
  if (replicas == 0 || replicas > kMaxReplicas)
    return corrupt("replica count " + std::to_string(replicas) +
                   " out of range");
  if (nservers > kMaxServers)
    return corrupt("server count " + std::to_string(nservers) +
                   " out of range");
  ClusterMap m(partitions, replicas);
  m.epoch_ = epoch;
  for (uint32_t i = 0; i < nservers; i++) {
    ServerInfo s;
    s.id = r.u32();
    uint8_t state = r.u8();
    r.u8();
    uint16_t mlen = r.u16(), flen = r.u16();
    s.memcached_addr = r.str(mlen);
    s.fabric_addr = r.str(flen);
    if (r.failed()) return corrupt("truncated server list");
    if (s.id == 0) return corrupt("server with node id 0");
    if (state < 1 || state > 4)
      return corrupt("server " + std::to_string(s.id) + " has state " +
                     std::to_string(state));
    if (mlen > kMaxAddrLength || flen > kMaxAddrLength)
      return corrupt("address too long");
    s.state = ServerState(state);
    if (!m.servers_.empty() && m.servers_.back().id >= s.id)
      return corrupt("server ids not strictly increasing");
    m.servers_.push_back(std::move(s));
  }
  for (uint32_t& slot : m.slots_) slot = r.u32();
  if (r.failed()) return corrupt("truncated partition table");
  if (r.remaining() != 8) return corrupt("trailing bytes");
  for (uint32_t p = 0; p < partitions; p++) {
    const uint32_t* first = m.slots_.data() + size_t(p) * replicas;
    bool empty_seen = false;
    for (uint32_t i = 0; i < replicas; i++) {
      uint32_t id = first[i];
      if (id == 0) {
        empty_seen = true;
        continue;
      }
      if (empty_seen)
        return corrupt("partition " + std::to_string(p) +
                       " has a replica after an empty slot");
      if (!m.server(id))
        return corrupt("partition " + std::to_string(p) +
                       " names unknown node " + std::to_string(id));
      for (uint32_t j = 0; j < i; j++)
        if (first[j] == id)
          return corrupt("partition " + std::to_string(p) +
                         " lists node " + std::to_string(id) + " twice");
    }
  }
  return m;
}

// ---- placement ----

namespace {

// Per-server bookkeeping during placement, indexed like `up`.
struct Load {
  uint32_t id;
  uint32_t prim = 0, prim_target = 0;
  uint32_t sec = 0, sec_target = 0;
};

// Gives the first `extra` servers (most loaded first, so existing holdings
// are kept, ties by id) the ceiling share.
template <class Count, class Target>
void set_targets(std::vector<Load>& up, uint64_t total, Count count,
                 Target target) {
  uint32_t n = uint32_t(up.size());
  uint32_t base = uint32_t(total / n), extra = uint32_t(total % n);
  std::vector<uint32_t> order(n);
  for (uint32_t i = 0; i < n; i++) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    return count(up[a]) > count(up[b]);
  });
  for (uint32_t k = 0; k < n; k++)
    target(up[order[k]]) = base + (k < extra ? 1 : 0);
}

}  // namespace

ClusterMap compute_placement(const ClusterMap& prev, uint32_t replicas,
                             bool keep_primaries, const CopyPredicate& incomplete) {
  const uint32_t P = prev.partitions();
  ClusterMap out(P, replicas);
  out.set_epoch(prev.epoch());
  for (const ServerInfo& s : prev.servers()) out.upsert_server(s);

  std::vector<Load> up;
  std::unordered_map<uint32_t, int> index;
  for (const ServerInfo& s : prev.servers())
    if (s.state == ServerState::kUp) {
      index[s.id] = int(up.size());
      up.push_back(Load{s.id});
    }
  const uint32_t N = uint32_t(up.size());
  if (N == 0) return out;
  const uint32_t copies = std::min(replicas, N);
  auto idx = [&](uint32_t id) {
    auto it = index.find(id);
    return it == index.end() ? -1 : it->second;
  };

  // Primaries. 1: keep every primary that is still up.
  std::vector<int> prim(P, -1);
  for (uint32_t p = 0; p < P; p++) {
    int i = idx(prev.primary(p));
    if (i >= 0) {
      prim[p] = i;
      up[i].prim++;
    }
  }
  set_targets(up, P, [](Load& l) { return l.prim; },
              [](Load& l) -> uint32_t& { return l.prim_target; });
  auto deficit = [&](int i) {
    return int64_t(up[i].prim_target) - int64_t(up[i].prim);
  };
  // Picks the old secondary of p with room and the largest deficit: that
  // server already holds p's data, so the move is a promotion, not a copy.
  // A copy still being recovered lacks older data: it is promoted only
  // when no complete copy survives.
  auto complete = [&](uint32_t p, int i) { return !incomplete || !incomplete(p, up[i].id); };
  auto better = [&](uint32_t p, int i, int best) {
    if (best < 0) return true;
    if (complete(p, i) != complete(p, best)) return complete(p, i);
    return deficit(i) > deficit(best);
  };
  auto secondary_with_room = [&](uint32_t p, int exclude) {
    int best = -1;
    for (uint32_t id : prev.secondaries(p)) {
      int i = idx(id);
      if (i < 0 || i == exclude || deficit(i) <= 0) continue;
      if (better(p, i, best)) best = i;
    }
    return best;
  };
  // 2: a partition whose primary left goes to a surviving secondary, even
  // past its share: that server holds the data (DESIGN.md: the secondary is
  // promoted). Step 3 restores the balance with role swaps.
  for (uint32_t p = 0; p < P; p++)
    if (prim[p] < 0) {
      int best = -1;
      for (uint32_t id : prev.secondaries(p)) {
        int i = idx(id);
        if (i >= 0 && better(p, i, best)) best = i;
      }
      if (best >= 0) {
        prim[p] = best;
        up[best].prim++;
      }
    }
  // 3: servers above their share give the excess away: first by role swaps
  // with a secondary that has room (no data moves), and only then into the
  // pool. Scanning from the top keeps the choice deterministic.
  for (int pass = 0; pass < (keep_primaries ? 0 : 2); pass++)
    for (uint32_t p = P; p-- > 0;) {
      int s = prim[p];
      if (s < 0 || deficit(s) >= 0) continue;
      int t = secondary_with_room(p, s);
      if (t < 0 && pass == 0) continue;
      up[s].prim--;
      prim[p] = t;
      if (t >= 0) up[t].prim++;
    }
  // 4: the pool goes to servers below their share, the largest deficit
  // first (ties: lowest id); sum of targets is P, so one always has room.
  for (uint32_t p = 0; p < P; p++) {
    if (prim[p] >= 0) continue;
    int best = secondary_with_room(p, -1);
    if (best < 0)
      for (int i = 0; i < int(N); i++)
        if (deficit(i) > 0 && (best < 0 || deficit(i) > deficit(best)))
          best = i;
    // Kept primaries may leave every server at or above its share.
    if (best < 0)
      for (int i = 0; i < int(N); i++)
        if (best < 0 || up[i].prim < up[best].prim) best = i;
    prim[p] = best;
    up[best].prim++;
  }

  // Secondaries. 1: keep old secondaries still valid, then let an old
  // primary that lost the role stay on as a secondary (it has the data).
  const uint32_t S = copies - 1;
  std::vector<std::vector<int>> sec(P);
  for (uint32_t p = 0; p < P; p++) {
    auto keep = [&](uint32_t id) {
      int i = idx(id);
      if (i < 0 || i == prim[p] || sec[p].size() >= S) return;
      if (std::find(sec[p].begin(), sec[p].end(), i) != sec[p].end()) return;
      sec[p].push_back(i);
      up[i].sec++;
    };
    for (uint32_t id : prev.secondaries(p)) keep(id);
    keep(prev.primary(p));
  }
  if (S > 0) {
    set_targets(up, uint64_t(P) * S, [](Load& l) { return l.sec; },
                [](Load& l) -> uint32_t& { return l.sec_target; });
    auto in_p = [&](uint32_t p, int i) {
      return i == prim[p] ||
             std::find(sec[p].begin(), sec[p].end(), i) != sec[p].end();
    };
    auto room = [&](int i) {
      return int64_t(up[i].sec_target) - int64_t(up[i].sec);
    };
    // pair[a * N + b]: partitions with primary a and secondary b.
    std::vector<uint32_t> pair(size_t(N) * N);
    for (uint32_t p = 0; p < P; p++)
      for (int i : sec[p]) pair[prim[p] * N + i]++;
    auto pairs = [&](uint32_t p, int i) { return pair[prim[p] * N + i]; };
    // 2: fill empty slots with the eligible server furthest below its share
    // (ties: least loaded overall, then lowest id). Distinctness can force
    // a server over its share here; step 3 repairs that.
    for (uint32_t p = 0; p < P; p++)
      while (sec[p].size() < S) {
        int best = -1;
        for (int i = 0; i < int(N); i++) {
          if (in_p(p, i)) continue;
          if (best < 0 || room(i) > room(best) ||
              (room(i) == room(best) &&
               pairs(p, i) < pairs(p, best)) ||
              (room(i) == room(best) && pairs(p, i) == pairs(p, best) &&
               up[i].prim + up[i].sec < up[best].prim + up[best].sec))
            best = i;
        }
        sec[p].push_back(best);
        up[best].sec++;
        pair[prim[p] * N + best]++;
      }
    // 3: move single secondaries from servers above their share to servers
    // below it, only where the receiver is not already in that partition
    // (shedding blindly would leave holes only the shedder could fill, e.g.
    // in the partitions a joiner just became primary of). Each move is one
    // a balanced map needs, so a join moves about P(c-1)/N secondaries.
    // Partitions are taken from the most repeated (primary, o) pairs first
    // and given to the receiver that pairs least with that primary, so a
    // failed primary's partitions are spread over many secondaries (each
    // has room to be promoted; DESIGN.md, failover).
    for (int o = 0; o < int(N); o++) {
      if (room(o) >= 0) continue;
      std::vector<uint32_t> mine;
      for (uint32_t p = 0; p < P; p++)
        if (std::find(sec[p].begin(), sec[p].end(), o) != sec[p].end())
          mine.push_back(p);
      std::stable_sort(mine.begin(), mine.end(), [&](uint32_t a, uint32_t b) {
        return pairs(a, o) > pairs(b, o);
      });
      for (uint32_t p : mine) {
        if (room(o) >= 0) break;
        int best = -1;
        for (int u = 0; u < int(N); u++)
          if (room(u) > 0 && !in_p(p, u) &&
              (best < 0 || pairs(p, u) < pairs(p, best) ||
               (pairs(p, u) == pairs(p, best) && room(u) > room(best))))
            best = u;
        if (best < 0) continue;
        *std::find(sec[p].begin(), sec[p].end(), o) = best;
        up[o].sec--;
        up[best].sec++;
        pair[prim[p] * N + o]--;
        pair[prim[p] * N + best]++;
      }
    }
  }

  std::vector<uint32_t> ids;
  for (uint32_t p = 0; p < P; p++) {
    ids.clear();
    ids.push_back(up[prim[p]].id);
    for (int i : sec[p]) ids.push_back(up[i].id);
    out.assign(p, ids);
  }
  return out;
}

uint32_t give_to_spare(const ClusterMap& prev, ClusterMap* next, uint32_t spare) {
  const ServerInfo* s = next->server(spare);
  if (s == nullptr || s->state != ServerState::kSpare || prev.partitions() != next->partitions())
    return 0;
  ClusterMap out = *next;
  uint32_t taken = 0;
  std::vector<uint32_t> ids;
  for (uint32_t p = 0; p < out.partitions(); p++) {
    auto now = out.replicas_of(p);
    ids.assign(now.begin(), now.end());
    for (size_t i = 1; i < ids.size(); i++)
      if (!prev.holds(p, ids[i])) {  // a copy the failure made necessary
        ids[i] = spare;
        taken++;
        out.assign(p, ids);
        break;  // one copy per partition: replicas stay on distinct servers
      }
  }
  if (taken == 0) return 0;
  ServerInfo up = *s;
  up.state = ServerState::kUp;
  out.upsert_server(up);
  *next = std::move(out);
  return taken;
}

PlacementDelta placement_delta(const ClusterMap& a, const ClusterMap& b) {
  PlacementDelta d;
  uint32_t P = std::min(a.partitions(), b.partitions());
  for (uint32_t p = 0; p < P; p++) {
    if (a.primary(p) != b.primary(p)) d.moved_primaries++;
    for (uint32_t id : b.secondaries(p)) {
      auto old = a.secondaries(p);
      if (std::find(old.begin(), old.end(), id) == old.end())
        d.new_secondaries++;
    }
  }
  return d;
}

}  // namespace ftm::repl
