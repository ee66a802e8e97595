// ClusterNode (see cluster_node.h).
#include "replication/cluster_node.h"

#include <climits>
#include <cstdio>

#include "replication/replication_manager.h"
#include "src/clock.h"
#include "src/proto_bin.h"
#include "src/proto_text.h"
#include "src/proto_util.h"
#if __has_include("replication/inspect.h")
#include "replication/inspect.h"
#define FTM_HAVE_INSPECT 1
#endif

namespace ftm::repl {
namespace {

std::atomic<uint64_t> g_instances{0};

// Status byte leading a kForward reply.
constexpr char kReplyOk = 0;
constexpr char kReplyError = 1;
constexpr char kReplyRetry = 2;
constexpr std::string_view kNotPrimary = "\x02not primary for this key";
constexpr std::string_view kNoLease = "\x02its lease as primary lapsed (awaiting the meta server)";
constexpr std::string_view kOlderMap = "\x02its map is older than the forwarder's";
constexpr std::string_view kReplicationFailed = "\x01SERVER_ERROR replication failed\r\n";
constexpr size_t kForwardHead = 1 + 8;  // WireProtocol byte + u64 epoch

// route()'s per-thread copy of the published map (cf. MapCache, which
// follows Membership directly: route() must follow only maps the
// replication manager has taken on).
struct RouteCache {
  uint64_t instance = 0;
  uint64_t seen = 0;
  std::shared_ptr<const ClusterMap> map;
};
thread_local RouteCache t_route;

// Calls fn(token) for every space-separated token of `line` from index
// `first` on.
template <class F>
void tokens_from(std::string_view line, size_t first, F&& fn) {
  size_t i = 0, pos = 0;
  while (pos < line.size()) {
    while (pos < line.size() && line[pos] == ' ') pos++;
    size_t end = line.find(' ', pos);
    if (end == std::string_view::npos) end = line.size();
    if (end > pos) {
      if (i >= first) fn(line.substr(pos, end - pos));
      i++;
    }
    pos = end;
  }
}

// Calls fn(key) for every key a forwarded text request names (none for
// keyless commands such as flush_all or version).
template <class F>
void text_keys(std::string_view req, F&& fn) {
  size_t eol = req.find('\n');
  std::string_view line = req.substr(0, eol);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  std::string_view cmd = line.substr(0, line.find(' '));
  if (cmd == "get" || cmd == "gets" || cmd == "bget") {
    tokens_from(line, 1, fn);
  } else if (cmd == "gat" || cmd == "gats") {
    tokens_from(line, 2, fn);
  } else if (cmd == "set" || cmd == "add" || cmd == "replace" || cmd == "append" ||
             cmd == "prepend" || cmd == "cas" || cmd == "delete" || cmd == "incr" ||
             cmd == "decr" || cmd == "touch") {
    std::string_view key;
    size_t i = 0;
    tokens_from(line, 1, [&](std::string_view t) {
      if (i++ == 0) key = t;
    });
    if (!key.empty()) fn(key);
  } else if (cmd == "mg" || cmd == "ms" || cmd == "md" || cmd == "ma" || cmd == "me") {
    std::string_view key;
    bool b64 = false;
    size_t i = 0;
    tokens_from(line, 1, [&](std::string_view t) {
      if (i++ == 0)
        key = t;
      else if (t == "b")
        b64 = true;
    });
    if (key.empty()) return;
    if (b64) {
      std::string raw;
      if (base64_decode(key, &raw)) fn(std::string_view(raw));
      return;
    }
    fn(key);
  }
}

// Calls fn(key) for the key of every whole binary frame in `req`.
template <class F>
void binary_keys(std::string_view req, F&& fn) {
  auto u8 = [&](size_t i) { return uint32_t(static_cast<unsigned char>(req[i])); };
  size_t off = 0;
  while (req.size() - off >= 24) {
    uint32_t keylen = (u8(off + 2) << 8) | u8(off + 3);
    uint32_t extlen = u8(off + 4);
    uint32_t body = (u8(off + 8) << 24) | (u8(off + 9) << 16) | (u8(off + 10) << 8) | u8(off + 11);
    if (req.size() - off - 24 < body || extlen + keylen > body) return;
    uint32_t op = u8(off + 1);
    // stat (0x10) and the SASL opcodes (0x20-0x22) carry a group or
    // mechanism name where other opcodes carry the key.
    bool keyed = op != 0x10 && !(op >= 0x20 && op <= 0x22);
    if (keyed && keylen > 0) fn(req.substr(off + 24 + extlen, keylen));
    off += 24 + body;
  }
}

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\r' || c == '\n') c = ' ';
  return s;
}

}  // namespace

struct ClusterNode::Executor {
  std::mutex mu;  // one forwarded request at a time (ThreadStats has one writer)
  ThreadStats stats;
  WorkerContext ctx;
  Session text, bin;
};

ClusterNode::ClusterNode(const Options& options, Store& store)
    : opts_(options), store_(store), instance_(g_instances.fetch_add(1) + 1) {}

ClusterNode::~ClusterNode() { stop(); }

void ClusterNode::log(const std::string& line) const {
  if (opts_.log)
    opts_.log(line);
  else
    std::fprintf(stderr, "%s\n", line.c_str());
}

std::unique_ptr<ClusterNode> ClusterNode::start(const Options& options, Store& store,
                                                std::string* err) {
  std::unique_ptr<ClusterNode> n(new ClusterNode(options, store));
  ClusterNode* p = n.get();

  rdma::FabricOptions fo;
  fo.provider = options.provider;
  fo.local_addr = options.fabric_host;
  fo.progress = options.progress;
  fo.cluster_secret = options.cluster_secret;
  // Peers name this server in their errors by its client address.
  if (!options.memcached_addr.empty()) fo.identity = "ftmemcached@" + options.memcached_addr;
  fo.log = [p](std::string_view line) { p->log(std::string(line)); };
  auto fabric = rdma::Fabric::open(fo);
  if (!fabric) {
    *err = "cluster: cannot open the fabric: " + fabric.status().to_string();
    return nullptr;
  }
  n->fabric_ = std::move(fabric).value();

  PeerMesh::Options mo;
  mo.fabric = n->fabric_.get();
  mo.listen_host = options.fabric_host;
  mo.listen_port = options.fabric_port;
  mo.log = [p](std::string_view line) { p->log(std::string(line)); };
  if (options.settings != nullptr) {
    // A forwarded request carries at most one item, a reply (multi-get)
    // several: room for a few of the largest.
    mo.max_message = std::max(mo.max_message, 4 * options.settings->item_size_max + 65536);
  }
  auto mesh = PeerMesh::start(mo);
  if (!mesh) {
    *err = "cluster: cannot listen for peers on " + options.fabric_host + ":" +
           std::to_string(options.fabric_port) + ": " + mesh.status().to_string();
    return nullptr;
  }
  n->mesh_ = std::move(mesh).value();
  n->mesh_->on(PeerRpc::kForward,
               [p](uint32_t from, std::string_view payload, PeerMesh::Responder respond) {
                 p->serve_forward(from, payload, std::move(respond));
               });
#ifdef FTM_HAVE_INSPECT
  register_inspection_handlers(*n->mesh_, store);
#endif

  PeerLease::Options plo;
  plo.lease = &n->lease_;
  plo.mesh = n->mesh_.get();
  plo.log = [p](std::string_view line) { p->log(std::string(line)); };
  n->peer_lease_ = std::make_unique<PeerLease>(plo);

  MembershipOptions mem;
  mem.meta_host = options.meta_host;
  mem.meta_port = options.meta_port;
  mem.node_id = options.node_id;
  mem.memcached_addr = options.memcached_addr;
  mem.fabric_addr = options.fabric_host + ":" + std::to_string(n->mesh_->port());
  mem.on_map = [p](std::shared_ptr<const ClusterMap> map) { p->on_map(std::move(map)); };
  mem.log = [p](std::string_view line) { p->log(std::string(line)); };
  mem.lease = &n->lease_;
  mem.spare = options.spare;
  mem.replication_state = [p]() -> ReportMsg {
    std::lock_guard g(p->map_mu_);
    return p->manager_ ? p->manager_->recovery_report() : ReportMsg{"n/a", 0, {}};
  };
  mem.on_fenced = [p] { p->on_fenced(); };
  n->log("cluster: node " + (options.node_id ? std::to_string(options.node_id) : "(assigned)") +
         " joining meta server " + options.meta_host + ":" + std::to_string(options.meta_port) +
         ", memcached " + options.memcached_addr + ", fabric " + mem.fabric_addr + " (" +
         n->fabric_->provider() + ")");
  n->membership_ = Membership::start(*n->fabric_, mem);
  n->mesh_->set_membership(n->membership_.get());
  n->peer_lease_->attach(n->membership_.get());

  {
    std::lock_guard g(n->map_mu_);
    ReplicationManager::Options ro;
    ro.log = [p](std::string_view line) { p->log(std::string(line)); };
    ro.dead_hold = options.failover_wait;
    ro.recovery.rate_mbps = options.recovery_rate_mbps;
    if (n->fabric_->progress() == rdma::ProgressMode::kBlocking) {
      // No thread of ours spins either (see ProgressMode::kBlocking).
      ro.writer.idle_spin = std::chrono::microseconds(0);
      ro.applier.spin = std::chrono::microseconds(0);
      // Applying late only delays ring reuse (8 MiB by default), never a
      // reply: fewer, longer naps leave the cores to the data path.
      ro.applier.min_sleep = std::chrono::microseconds(250);
      ro.applier.max_sleep = std::chrono::microseconds(1000);
    }
    if (options.ring_size != 0)
      ro.ring_size = options.ring_size;
    else if (options.settings != nullptr)
      ro.ring_size = std::max(ro.ring_size, 4 * options.settings->item_size_max + 65536);
    n->manager_ = ReplicationManager::create(*n->fabric_, *n->mesh_, *n->membership_, store, ro);
    // A map that arrived while the manager did not exist yet.
    if (auto map = n->membership_->map()) {
      n->wait_out_grants(*map);
      n->manager_->on_map(map);
      n->publish(map);
    }
  }
  n->redirector_ = std::thread([p] { p->redirect_main(); });
  return n;
}

void ClusterNode::stop() {
  std::call_once(stopped_, [this] {
    {
      std::lock_guard g(park_mu_);
      park_stop_ = true;
    }
    park_cv_.notify_all();
    if (redirector_.joinable()) redirector_.join();  // fails what is parked
    if (peer_lease_) peer_lease_->stop();
    if (membership_) membership_->stop();
    // No handler runs and no call is in flight after this; the links'
    // connections stay allocated (writers may still hold them) until the
    // mesh is destroyed, after the manager.
    if (mesh_) mesh_->close();
    {
      std::lock_guard g(map_mu_);
      manager_.reset();
    }
    peer_lease_.reset();  // after mesh_->close(): its handler runs no more
    mesh_.reset();
    membership_.reset();
    fabric_.reset();
  });
}

void ClusterNode::wait_out_grants(const ClusterMap& map) {
  const auto until = peer_lease_->advance(map);
  const auto now = Lease::Clock::now();
  if (until <= now) return;
  log("cluster: map epoch " + std::to_string(map.epoch()) + ": waiting " +
      std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(until - now).count()) +
      " us for a lease this node vouched for to lapse before following it");
  std::this_thread::sleep_until(until);
}

void ClusterNode::on_map(std::shared_ptr<const ClusterMap> map) {
  // Before anything follows the map: a node it no longer lists as up may
  // still serve on a grant of ours (peer_lease.h).
  wait_out_grants(*map);
  std::lock_guard g(map_mu_);
  if (!manager_) return;  // start() takes the newest map once the manager exists
  {
    std::lock_guard pg(pub_mu_);
    if (published_ && map->epoch() <= published_->epoch()) return;
  }
  if (!manager_->on_map(map))
    log("cluster: map epoch " + std::to_string(map->epoch()) +
        ": not every secondary has a replication writer (their writes will fail)");
  publish(std::move(map));
}

void ClusterNode::publish(std::shared_ptr<const ClusterMap> map) {
  {
    std::lock_guard g(pub_mu_);
    if (published_ && map->epoch() <= published_->epoch()) return;
    published_ = std::move(map);
    version_.fetch_add(1, std::memory_order_release);
  }
  pub_cv_.notify_all();
  {
    std::lock_guard g(park_mu_);
    park_news_ = true;  // parked requests may have a primary now
  }
  park_cv_.notify_all();
}

void ClusterNode::on_fenced() {
  {
    std::lock_guard g(map_mu_);
    if (manager_) manager_->fence();
  }
  // A new server from here on: nothing it held may be served again.
  store_.flush_all(clock::now());
  log("cluster: fenced: replication stopped and every item dropped; joining again empty");
}

std::shared_ptr<const ClusterMap> ClusterNode::map() const {
  std::lock_guard g(pub_mu_);
  return published_;
}

bool ClusterNode::wait_for_map(std::chrono::milliseconds timeout) {
  std::unique_lock g(pub_mu_);
  return pub_cv_.wait_for(g, timeout, [&] { return published_ != nullptr; });
}

const ClusterMap* ClusterNode::current() {
  uint64_t v = version_.load(std::memory_order_acquire);
  RouteCache& c = t_route;
  if (c.instance != instance_ || c.seen != v) {
    std::lock_guard g(pub_mu_);
    c.map = published_;
    c.seen = v;
    c.instance = instance_;
  }
  return c.map.get();
}

Route ClusterNode::route(std::string_view key) {
  const ClusterMap* m = current();
  if (m == nullptr) return Route{false, 0};
  uint32_t primary = m->primary(m->partition_of(key));
  // A primary whose lease lapsed forwards to itself: forward() parks the
  // request until the lease or a new map settles who serves it.
  if (primary != 0 && primary == membership_->node_id())
    return Route{lease_.valid(), primary};
  return Route{false, primary};
}

size_t ClusterNode::nodes(uint32_t* out, size_t max) {
  const ClusterMap* m = current();
  if (m == nullptr) return 0;
  size_t n = 0;
  for (const ServerInfo& s : m->servers()) {
    if (n == max) break;
    if (s.state == ServerState::kUp) out[n++] = s.id;
  }
  return n;
}

uint32_t ClusterNode::self() const { return membership_ ? membership_->node_id() : 0; }

struct ClusterNode::ForwardCall {
  ClusterNode* node = nullptr;
  Cluster::ForwardDone done = nullptr;
  void* ctx = nullptr;
  WireProtocol proto = WireProtocol::kText;
  std::string request;
  uint32_t target = 0;   // node it goes to next
  uint64_t epoch = 0;    // of the map it was last routed by
  std::chrono::steady_clock::time_point deadline, last_try;
  std::string why;       // why it is parked
};

namespace {

void put_u64_le(char* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out[i] = char((v >> (8 * i)) & 0xff);
}
uint64_t get_u64_le(std::string_view in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t(uint8_t(in[i])) << (8 * i);
  return v;
}

void finish(ClusterNode::ForwardCall* raw, bool ok, std::string_view reply) {
  std::unique_ptr<ClusterNode::ForwardCall> c(raw);
  c->done(c->ctx, ok, reply);
}

}  // namespace

void ClusterNode::forward(uint32_t node, WireProtocol proto, std::string_view request,
                          ForwardDone done, void* ctx) {
  // One allocation and one copy per forward (the copy is what a retry
  // after a failover resends).
  auto* c = new ForwardCall;
  c->node = this;
  c->done = done;
  c->ctx = ctx;
  c->proto = proto;
  c->request.assign(request);
  c->target = node;
  c->deadline = std::chrono::steady_clock::now() + opts_.failover_wait;
  dispatch(c);
}

void ClusterNode::dispatch(ForwardCall* c) {
  const ClusterMap* m = current();
  c->last_try = std::chrono::steady_clock::now();
  if (m == nullptr || c->target == 0) return park(c, "cluster map not available");
  if (c->target == self()) return park(c, "this server's lease as primary lapsed");
  c->epoch = m->epoch();
  char head[kForwardHead];
  head[0] = char(c->proto);
  put_u64_le(head + 1, c->epoch);
  mesh_->call(c->target, PeerRpc::kForward, std::string_view(head, sizeof head), c->request,
              &ClusterNode::on_forward_reply, c);
}

void ClusterNode::on_forward_reply(void* ctx, const rdma::Status& st, std::string_view reply) {
  auto* c = static_cast<ForwardCall*>(ctx);
  ClusterNode* n = c->node;
  const std::string node = "node " + std::to_string(c->target);
  if (!st) {
    // Tell the meta server: it corroborates with the heartbeats and fails
    // the node over faster than its timeout would.
    std::string why = "forwarding to " + node + " failed: " + one_line(st.to_string());
    if (n->membership_) n->membership_->report(c->target, why);
    return n->park(c, std::move(why));
  }
  if (reply.empty() || reply[0] > kReplyRetry)
    return finish(c, false, "SERVER_ERROR malformed reply from " + node + "\r\n");
  if (reply[0] == kReplyRetry) return n->park(c, node + " answered: " + std::string(reply.substr(1)));
  finish(c, reply[0] == kReplyOk, reply.substr(1));
}

namespace {

// A parked text multi-get whose keys now have several primaries: one
// sub-request per primary; the VALUE blocks are concatenated under one END
// (the front end's Gather puts them back in the client's key order).
struct SplitGet {
  ClusterNode::ForwardCall* parent;
  std::mutex mu;
  size_t remaining = 0;
  bool ok = true;
  std::string values, error;
};

void split_part_done(void* ctx, bool ok, std::string_view reply) {
  auto* sg = static_cast<SplitGet*>(ctx);
  bool last;
  {
    std::lock_guard g(sg->mu);
    if (!ok) {
      if (sg->ok) sg->error = std::string(reply);
      sg->ok = false;
    } else {
      std::string_view v = reply;
      if (v.size() >= 5 && v.substr(v.size() - 5) == "END\r\n") v.remove_suffix(5);
      sg->values.append(v);
    }
    last = --sg->remaining == 0;
  }
  if (!last) return;
  std::unique_ptr<SplitGet> own(sg);
  if (own->ok) {
    own->values += "END\r\n";
    finish(own->parent, true, own->values);
  } else {
    finish(own->parent, false, own->error);
  }
}

}  // namespace

bool ClusterNode::split_get(ForwardCall* c, const ClusterMap& m) {
  if (c->proto != WireProtocol::kText) return false;
  std::string_view line = c->request.substr(0, c->request.find('\n'));
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  std::string_view cmd = line.substr(0, line.find(' '));
  const bool touch = cmd == "gat" || cmd == "gats";
  if (!touch && cmd != "get" && cmd != "gets") return false;
  std::string prefix(cmd);
  if (touch) {
    size_t i = 0;
    tokens_from(line, 1, [&](std::string_view t) {
      if (i++ == 0) prefix.append(" ").append(t);
    });
  }
  std::map<uint32_t, std::string> parts;  // primary -> request
  tokens_from(line, touch ? 2 : 1, [&](std::string_view key) {
    std::string& r = parts[m.primary(m.partition_of(key))];
    if (r.empty()) r = prefix;
    r.append(" ").append(key);
  });
  auto* sg = new SplitGet;
  sg->parent = c;
  sg->remaining = parts.size();
  for (auto& [node, req] : parts) {
    auto* sub = new ForwardCall;
    sub->node = this;
    sub->done = &split_part_done;
    sub->ctx = sg;
    sub->proto = WireProtocol::kText;
    sub->request = req + "\r\n";
    sub->target = node;
    sub->deadline = c->deadline;
    // Parked, not dispatched here: the redirector routes it (a part whose
    // primary is this node runs locally there).
    park(sub, c->why);
  }
  return true;
}

void ClusterNode::park(ForwardCall* c, std::string why) {
  c->why = std::move(why);
  {
    std::lock_guard g(park_mu_);
    if (!park_stop_) {
      parked_.push_back(c);
      park_news_ = true;
      park_cv_.notify_all();
      return;
    }
  }
  finish(c, false, "SERVER_ERROR " + c->why + "\r\n");
}

bool ClusterNode::retry(ForwardCall* c, std::chrono::steady_clock::time_point now) {
  const ClusterMap* m = current();
  if (now >= c->deadline) {
    finish(c, false,
           "SERVER_ERROR no primary took over within " +
               std::to_string(opts_.failover_wait.count()) + " ms (" + c->why + ")\r\n");
    return true;
  }
  if (m == nullptr) return false;
  // Who is primary of the request's keys now.
  uint32_t primary = 0;
  bool keyed = false, split = false;
  auto look = [&](std::string_view key) {
    uint32_t p = m->primary(m->partition_of(key));
    if (keyed && p != primary) split = true;
    primary = p;
    keyed = true;
  };
  if (c->proto == WireProtocol::kBinary)
    binary_keys(c->request, look);
  else
    text_keys(c->request, look);
  if (split) {
    if (!split_get(c, *m))
      finish(c, false,
             "SERVER_ERROR the keys of this request moved to several servers; retry\r\n");
    return true;
  }
  if (!keyed) {  // flush_all and such: done if its node left the map
    const ServerInfo* s = m->server(c->target);
    if (s == nullptr || s->state != ServerState::kUp) {
      finish(c, true, "");
      return true;
    }
    primary = c->target;
  }
  if (primary == 0) return false;
  if (primary == self()) {
    if (!lease_.valid(now)) return false;
    ForwardCall* raw = c;
    execute(self(), c->proto == WireProtocol::kBinary, c->request, [raw](std::string_view r) {
      if (!r.empty() && r[0] == kReplyRetry)
        raw->node->park(raw, std::string(r.substr(1)));
      else
        finish(raw, !r.empty() && r[0] == kReplyOk, r.empty() ? r : r.substr(1));
    });
    return true;
  }
  // Another node: at once under a newer map, else after a pause (the
  // primary may be between maps itself).
  if (primary == c->target && m->epoch() <= c->epoch &&
      now - c->last_try < std::chrono::milliseconds(5))
    return false;
  c->target = primary;
  dispatch(c);
  return true;
}

void ClusterNode::redirect_main() {
  std::vector<ForwardCall*> batch, keep;
  std::unique_lock g(park_mu_);
  for (;;) {
    // Woken by park() and by every new map; otherwise a 2 ms tick (lease
    // renewals and deadlines are not signalled).
    park_cv_.wait_for(g, std::chrono::milliseconds(2), [&] { return park_stop_ || park_news_; });
    park_news_ = false;
    if (park_stop_) break;
    if (parked_.empty()) continue;
    batch.swap(parked_);
    g.unlock();
    const auto now = std::chrono::steady_clock::now();
    for (ForwardCall* c : batch)
      if (!retry(c, now)) keep.push_back(c);
    batch.clear();
    g.lock();
    parked_.insert(parked_.end(), keep.begin(), keep.end());
    keep.clear();
  }
  std::vector<ForwardCall*> left;
  left.swap(parked_);
  g.unlock();
  for (ForwardCall* c : left) finish(c, false, "SERVER_ERROR server shutting down\r\n");
}

bool ClusterNode::barrier(BarrierDone done, void* ctx) {
  return manager_ ? manager_->barrier(done, ctx) : false;
}

ClusterNode::Executor& ClusterNode::executor(uint32_t from) {
  std::lock_guard g(exec_mu_);
  auto& e = executors_[from];
  if (!e) {
    e = std::make_unique<Executor>();
    e->ctx.store = &store_;
    e->ctx.stats = &e->stats;
    e->ctx.settings = opts_.settings;
    e->ctx.server = opts_.server;
    e->ctx.cluster = this;
    for (Session* s : {&e->text, &e->bin}) {
      s->ctx = &e->ctx;
      s->forwarded = true;
      s->authenticated = true;  // the forwarding server authenticated its client
    }
    if (opts_.register_stats) opts_.register_stats(&e->stats);
  }
  return *e;
}

namespace {

struct PendingReply {
  PeerMesh::Responder respond;
  std::string out;
};

void reply_after_barrier(void* ctx, bool ok) {
  std::unique_ptr<PendingReply> r(static_cast<PendingReply*>(ctx));
  if (ok)
    r->respond(r->out);
  else
    r->respond(kReplicationFailed);
}

}  // namespace

void ClusterNode::serve_forward(uint32_t from, std::string_view payload,
                                PeerMesh::Responder respond) {
  if (payload.size() < kForwardHead) {
    respond("\x01SERVER_ERROR malformed forwarded request\r\n");
    return;
  }
  const bool binary = payload[0] == char(WireProtocol::kBinary);
  const uint64_t their_epoch = get_u64_le(payload.substr(1, 8));
  std::string_view req = payload.substr(kForwardHead);

  // A request routed by an older or newer map than ours: never forward it
  // again (two nodes could bounce it forever); the forwarder retries.
  const ClusterMap* m = current();
  if (m != nullptr && their_epoch > m->epoch()) return respond(kOlderMap);
  if (!lease_.valid()) return respond(kNoLease);
  execute(from, binary, req, std::move(respond));
}

void ClusterNode::execute(uint32_t from, bool binary, std::string_view req,
                          PeerMesh::Responder respond) {
  const ClusterMap* m = current();
  uint32_t me = self();
  bool mine = m != nullptr;
  auto check = [&](std::string_view key) {
    if (mine) mine = m->primary(m->partition_of(key)) == me;
  };
  if (binary)
    binary_keys(req, check);
  else
    text_keys(req, check);
  if (!mine) {
    respond(kNotPrimary);
    return;
  }

  Executor& ex = executor(from);
  auto r = std::make_unique<PendingReply>();
  r->out.push_back(kReplyOk);
  {
    std::lock_guard g(ex.mu);
    Session& s = binary ? ex.bin : ex.text;
    s.swallow = 0;
    size_t off = 0;
    while (off < req.size()) {
      ProtoResult pr = binary ? bin_process(s, req.substr(off), r->out, INT_MAX)
                              : text_process(s, req.substr(off), r->out, INT_MAX);
      off += pr.consumed;
      if (pr.consumed == 0 || pr.close) break;
    }
  }
  r->respond = std::move(respond);
  PendingReply* raw = r.release();
  // barrier() covers the effects this thread produced, i.e. this
  // request's; if nothing needs waiting, answer now.
  if (!barrier(&reply_after_barrier, raw)) {
    std::unique_ptr<PendingReply> own(raw);
    own->respond(own->out);
  }
}

}  // namespace ftm::repl
