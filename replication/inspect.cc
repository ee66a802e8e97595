// Replica inspection handlers (see inspect.h).
//
// The handlers run inline on the mesh reader of the asking connection. The
// ctl opens a connection of its own per question (PeerMesh::request), so a
// digest walk, even of a large store, delays only that connection, never
// the links that carry forwarded requests. The walk holds one store
// partition's lock at a time, for as long as hashing its items takes, as a
// write to that partition would.
#include "replication/inspect.h"

#include <xxhash.h>

#include <memory>
#include <utility>

#include "replication/peer_mesh.h"
#include "src/clock.h"
#include "src/store.h"

namespace ftm::repl {
namespace {

int64_t unix_exptime(rel_time_t exptime) {
  return exptime == 0 ? 0 : int64_t(clock::to_unix(exptime));
}

// Streams little-endian integers into an XXH3 state.
void feed(XXH3_state_t* st, uint64_t v, int n) {
  unsigned char b[8];
  for (int i = 0; i < n; i++) b[i] = (unsigned char)((v >> (8 * i)) & 0xff);
  XXH3_64bits_update(st, b, size_t(n));
}

uint64_t hash_with(XXH3_state_t* st, std::string_view key, std::string_view value, uint32_t flags,
                   uint64_t cas, int64_t exptime) {
  XXH3_64bits_reset(st);
  feed(st, key.size(), 4);
  XXH3_64bits_update(st, key.data(), key.size());
  feed(st, value.size(), 4);
  XXH3_64bits_update(st, value.data(), value.size());
  feed(st, flags, 4);
  feed(st, cas, 8);
  feed(st, uint64_t(exptime), 8);
  return XXH3_64bits_digest(st);
}

struct StateDeleter {
  void operator()(XXH3_state_t* s) const { XXH3_freeState(s); }
};
using StatePtr = std::unique_ptr<XXH3_state_t, StateDeleter>;

std::string digest(Store& store, uint32_t partitions) {
  std::vector<PartitionDigest> d(partitions);
  StatePtr st(XXH3_createState());
  for (uint32_t sp = 0; sp < kPartitions; sp++) {
    store.for_each_in_partition(sp, [&](const Item& it) {
      PartitionDigest& x = d[it.hash % partitions];  // it.hash is XXH3_64bits(key)
      x.count++;
      x.hash += hash_with(st.get(), it.key(), it.value(), it.client_flags, it.cas,
                          unix_exptime(it.exptime));
    });
  }
  return inspect_wire::encode_digest(d);
}

std::string get_replica(Store& store, std::string_view key) {
  std::optional<ReplicaItem> out;
  {
    Txn txn = store.begin(key);
    // find() hides (and reclaims) an expired or flushed item, as a get
    // would; it neither bumps the LRU nor sets the fetched bit.
    if (const Item* it = txn.find()) {
      out.emplace();
      out->flags = it->client_flags;
      out->cas = it->cas;
      out->exptime = unix_exptime(it->exptime);
      out->value.assign(it->value());
    }
  }
  return inspect_wire::encode_replica(out);
}

}  // namespace

uint64_t item_hash(std::string_view key, std::string_view value, uint32_t flags, uint64_t cas,
                   int64_t exptime) {
  StatePtr st(XXH3_createState());
  return hash_with(st.get(), key, value, flags, cas, exptime);
}

void register_inspection_handlers(PeerMesh& mesh, Store& store) {
  Store* s = &store;
  mesh.on(PeerRpc::kDigest, [s](uint32_t, std::string_view payload, PeerMesh::Responder respond) {
    auto p = inspect_wire::decode_digest_request(payload);
    if (!p) {
      // An empty reply is malformed for the asker, who reports it.
      respond({});
      return;
    }
    respond(digest(*s, *p));
  });
  mesh.on(PeerRpc::kGetReplica,
          [s](uint32_t, std::string_view key, PeerMesh::Responder respond) {
            if (key.empty() || key.size() > kKeyMaxLength) {
              respond({});
              return;
            }
            respond(get_replica(*s, key));
          });
}

}  // namespace ftm::repl
