// What a protocol parser needs from the rest of the server: the per-worker
// context (store, this thread's counters, settings, server-wide controls) and
// the per-connection protocol state. The parsers see no sockets and no
// libevent; the connection layer sees no commands.
#ifndef FTM_SRC_SESSION_H_
#define FTM_SRC_SESSION_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "src/settings.h"
#include "src/stats.h"
#include "src/store.h"

namespace ftm {

// Receives one `stats` line: name and value already formatted as text.
class StatsSink {
 public:
  virtual ~StatsSink() = default;
  virtual void add(std::string_view name, std::string_view value) = 0;
};

// Server-wide operations a command can ask for. Implemented by the server
// core (src/server.cc); tests may substitute their own.
class ServerControl {
 public:
  virtual ~ServerControl() = default;
  // Emits the `stats <group>` lines ("" = general, "settings", "items",
  // "slabs", "sizes", "conns"). Returns false for an unknown group.
  virtual bool collect_stats(std::string_view group, StatsSink& sink) = 0;
  // "stats reset": zeroes every thread's counters and the store's.
  virtual void reset_stats() = 0;
  // "verbosity N".
  virtual void set_verbosity(int level) = 0;
  // "shutdown" (only with -A): stops the server after replies are flushed.
  virtual void shutdown() = 0;
};

class Cluster;  // src/cluster.h

// One worker thread's view of the server. Not shared between threads.
struct WorkerContext {
  Store* store = nullptr;
  ThreadStats* stats = nullptr;
  const Settings* settings = nullptr;
  ServerControl* server = nullptr;
  // Cluster mode only (--meta): routing, forwarding, replication barrier.
  Cluster* cluster = nullptr;
};

// Per-connection protocol state, owned by the connection.
struct Session {
  WorkerContext* ctx = nullptr;
  // Bytes of a rejected value (too large) still to discard before the next
  // command line: memcached's conn_swallow state.
  uint64_t swallow = 0;
  // True for a connection that arrived over UDP (no large replies, no meta
  // noreply tricks); set by the connection layer.
  bool udp = false;
  // Authentication has succeeded on this connection: text-protocol (-Y) or
  // binary SASL (-S), as memcached's c->authenticated.
  bool authenticated = false;
  // This session executes requests forwarded by another server: they are
  // always executed locally, never routed or forwarded again.
  bool forwarded = false;
  // Binary SASL (-S) state, created on first use by src/sasl.cc (an opaque
  // sasl_conn_t handle and its release function) and released with the
  // Session; this makes a Session move-only.
  std::unique_ptr<void, void (*)(void*)> sasl_conn{nullptr, [](void*) {}};
  // A SASL exchange was started (SASL auth accepted the mechanism), so SASL
  // step is allowed.
  bool sasl_started = false;
  // The text parser stops taking new requests, and pauses a multi-key
  // get/gets/gat/gats between two keys, once `out` holds this many bytes.
  // The connection layer sets it from its unsent-reply high-water mark so a
  // reply is streamed as the client reads it instead of being built whole
  // (memcached references items instead of copying them; we copy, so we
  // must stop). SIZE_MAX: never pause (UDP, replies gathered across nodes).
  size_t out_pause_at = SIZE_MAX;
  // A get paused part-way. Its command line stays unconsumed at the start
  // of the parser's next input; `offset` is where in that line the keys not
  // yet answered begin (0: no get is paused).
  struct PausedGet {
    size_t offset = 0;
    bool return_cas = false;
    bool touch = false;
    rel_time_t exptime = 0;  // gat/gats: the new expiry, computed once
  } paused_get;
};

}  // namespace ftm

#endif  // FTM_SRC_SESSION_H_
