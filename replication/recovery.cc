// See recovery.h. Both threads spend their time on bounded waits (network
// replies, one-sided reads, the applier catching up), so stopping is
// bounded too; the shared state is a few sets and counters under mu_.
#include "replication/recovery.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <span>
#include <utility>

#include "replication/snapshot.h"
#include "replication/wire_bytes.h"

namespace ftm::repl {

namespace {

using Clock = Recovery::Clock;

using wire::get_le;
using wire::put_le;

std::string error_reply(const std::string& why) {
  std::string r(1, '\1');
  r += why;
  return r;
}


// kSnapshotDone is fire-and-forget: the primary frees the export on its
// own after export_ttl if the message is lost.
void ignore_reply(void*, const rdma::Status&, std::string_view) {}

}  // namespace

// A snapshot this node encoded for a secondary, readable remotely.
struct Recovery::Export {
  std::vector<std::byte> bytes;
  std::unique_ptr<rdma::MemoryRegion> mr;  // over bytes; destroyed first
  Clock::time_point expires;
  ~Export() { mr.reset(); }
};

// A kSnapshot request queued for the serving thread.
struct Recovery::Request {
  uint32_t from = 0;
  std::string payload;
  PeerMesh::Responder respond;
};

// Lets the mesh handlers outlive the Recovery (a mesh cannot drop them).
struct Recovery::Guard {
  std::mutex mu;
  Recovery* self = nullptr;
};

Recovery::Recovery(rdma::Fabric& fabric, PeerMesh& mesh, Membership& membership,
                   Store& store, Hooks hooks, const Options& options)
    : fabric_(fabric),
      mesh_(mesh),
      membership_(membership),
      store_(store),
      hooks_(std::move(hooks)),
      opts_(options),
      guard_(std::make_shared<Guard>()) {
  guard_->self = this;
  mesh_.on(PeerRpc::kSnapshot, [g = guard_](uint32_t from, std::string_view payload,
                                            PeerMesh::Responder respond) {
    std::lock_guard<std::mutex> lock(g->mu);
    if (g->self == nullptr) return respond(error_reply("replication manager stopped"));
    Recovery& r = *g->self;
    auto req = std::make_unique<Request>();
    req->from = from;
    req->payload = std::string(payload);
    req->respond = std::move(respond);
    {
      std::lock_guard<std::mutex> l(r.mu_);
      r.requests_.push_back(std::move(req));
    }
    r.cv_.notify_all();
  });
  mesh_.on(PeerRpc::kSnapshotDone, [g = guard_](uint32_t, std::string_view payload,
                                                PeerMesh::Responder respond) {
    std::unique_ptr<Export> gone;  // deregistered outside mu_
    {
      std::lock_guard<std::mutex> lock(g->mu);
      if (g->self != nullptr && payload.size() == 8) {
        Recovery& r = *g->self;
        std::lock_guard<std::mutex> l(r.mu_);
        auto it = r.exports_.find(get_le(payload, 0, 8));
        if (it != r.exports_.end()) {
          gone = std::move(it->second);
          r.exports_.erase(it);
        }
      }
    }
    respond("");
  });
  recover_ = std::thread([this] { recover_main(); });
  serve_ = std::thread([this] { serve_main(); });
}

Recovery::~Recovery() {
  {
    std::lock_guard<std::mutex> lock(guard_->mu);
    guard_->self = nullptr;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  recover_.join();
  serve_.join();
  for (auto& r : requests_) r->respond(error_reply("replication manager stopped"));
  requests_.clear();
  exports_.clear();
}

void Recovery::log(const std::string& line) const {
  if (hooks_.log) {
    hooks_.log(line);
  } else {
    std::fprintf(stderr, "recovery: %s\n", line.c_str());
  }
}

void Recovery::on_map(const std::shared_ptr<const ClusterMap>& prev,
                      const std::shared_ptr<const ClusterMap>& next) {
  if (!next) return;
  const uint32_t self = membership_.node_id();
  const bool same_shape = prev && prev->partitions() == next->partitions();
  std::set<uint32_t> dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!same_shape) incomplete_.clear();
    const bool was_empty = incomplete_.empty();
    std::set<uint32_t> now;
    for (uint32_t p = 0; p < next->partitions(); ++p) {
      const auto sec = next->secondaries(p);
      if (std::find(sec.begin(), sec.end(), self) == sec.end()) continue;
      if (incomplete_.count(p) || !same_shape || !prev->holds(p, self)) now.insert(p);
    }
    for (uint32_t p : incomplete_)
      if (!now.count(p)) dropped.insert(p);
    incomplete_ = std::move(now);
    if (was_empty && !incomplete_.empty()) {
      bytes_this_round_.store(0);
      round_start_ = Clock::now();
    }
    map_ = next;
  }
  cv_.notify_all();
  if (!dropped.empty())
    log(std::to_string(dropped.size()) + " partitions left incomplete at epoch " +
        std::to_string(next->epoch()) + ": this node is no longer their secondary");
}

void Recovery::reset() {
  std::lock_guard<std::mutex> lock(mu_);
  incomplete_.clear();
  map_.reset();
}

void Recovery::recover_main() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stopping_ || (!incomplete_.empty() && map_); });
    if (stopping_) return;
    auto map = map_;
    std::map<uint32_t, std::vector<uint32_t>> by_primary;
    for (uint32_t p : incomplete_)
      if (map->primary(p) != 0) by_primary[map->primary(p)].push_back(p);
    lock.unlock();
    bool failed = by_primary.empty();  // no primary yet: wait for a map
    for (auto& [q, parts] : by_primary) {
      if (attempt(*map, q, parts)) {
        std::lock_guard<std::mutex> l(mu_);
        // Complete only if the newest map still has them from q.
        for (uint32_t p : parts)
          if (map_ && map_->partitions() == map->partitions() && map_->primary(p) == q)
            incomplete_.erase(p);
      } else {
        failed = true;
        failed_attempts_.fetch_add(1);
      }
      std::lock_guard<std::mutex> l(mu_);
      if (stopping_) return;
    }
    lock.lock();
    if (failed) cv_.wait_for(lock, opts_.retry, [this] { return stopping_; });
  }
}

bool Recovery::attempt(const ClusterMap& map, uint32_t q, const std::vector<uint32_t>& parts) {
  const auto t0 = Clock::now();
  const std::string from = "node " + std::to_string(q);
  auto stopping = [this] {
    std::lock_guard<std::mutex> l(mu_);
    return stopping_;
  };
  auto fail = [&](const std::string& why) {
    log("recovering " + std::to_string(parts.size()) + " partitions from " + from +
        " (epoch " + std::to_string(map.epoch()) + "): " + why + "; will retry");
    return false;
  };

  // 1. The ring q feeds (q attaches its writer when it follows the map).
  std::shared_ptr<LogApplier> app;
  uint64_t ring_key = 0;
  for (auto deadline = t0 + opts_.ring_wait;;) {
    app = hooks_.served(q, &ring_key);
    if (app || Clock::now() >= deadline || stopping()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!app) return fail("no replication ring from it");

  // 2. Hold; from here every exit releases.
  std::vector<bool> held(map.partitions(), false);
  for (uint32_t p : parts) held[p] = true;
  if (!app->hold(held)) return fail("a hold is already in place on its ring");
  const std::vector<uint64_t> no_table(kPartitions, 0);
  auto drop = [&](const std::string& why) {
    app->release(no_table);  // every held entry applied: as without a hold
    return fail(why);
  };

  // 3. Ask for the snapshot.
  std::string req;
  put_le(req, map.partitions(), 4);
  put_le(req, ring_key, 8);
  put_le(req, parts.size(), 4);
  for (uint32_t p : parts) put_le(req, p, 4);
  put_le(req, static_cast<uint64_t>(opts_.rate_mbps * 1000), 4);
  auto* c = new SyncCall;
  mesh_.call(q, PeerRpc::kSnapshot, req, &SyncCall::on_done, c);
  std::string reply;
  rdma::Status st;
  {
    std::unique_lock<std::mutex> l(c->mu);
    c->cv.wait(l, [c] { return c->done; });  // the mesh times calls out
    st = c->status;
    reply = std::move(c->reply);
  }
  SyncCall::release(c);
  if (!st) return drop("snapshot request failed: " + st.to_string());
  if (reply.empty() || reply[0] != '\0')
    return drop("snapshot refused: " + (reply.empty() ? std::string("empty reply") : reply.substr(1)));
  constexpr size_t kReplySize = 1 + 8 + 8 + rdma::RegionDescriptor::kWireSize;
  if (reply.size() != kReplySize) return drop("bad snapshot reply size");
  const uint64_t export_id = get_le(reply, 1, 8);
  const uint64_t length = get_le(reply, 9, 8);
  auto desc = rdma::RegionDescriptor::parse(std::span<const std::byte>(
      reinterpret_cast<const std::byte*>(reply.data() + 17), rdma::RegionDescriptor::kWireSize));
  if (!desc) return drop("snapshot descriptor: " + desc.status().to_string());

  // 4. Read it, one chunk at a time (each read is one message on the wire).
  std::string done_msg;
  put_le(done_msg, export_id, 8);
  auto done = [&] { mesh_.call(q, PeerRpc::kSnapshotDone, done_msg, &ignore_reply, nullptr); };
  std::vector<std::byte> bytes(length);
  auto conn = mesh_.connection(q);
  if (!conn) {
    done();
    return drop("connection: " + conn.status().to_string());
  }
  auto mr = fabric_.register_memory(std::span<std::byte>(bytes), false, false);
  if (!mr) {
    done();
    return drop("registering " + std::to_string(length) + " bytes: " + mr.status().to_string());
  }
  size_t chunk = opts_.chunk;
  if (opts_.rate_mbps > 0)
    chunk = std::min(chunk, std::max<size_t>(64 << 10, static_cast<size_t>(opts_.rate_mbps * 1e5)));
  const auto t_read = Clock::now();
  for (uint64_t off = 0; off < length;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(chunk, length - off));
    if (!pace(t_read, off)) {
      done();
      return drop("stopping");
    }
    rdma::Status rs = (*conn)->read(**mr, off, *desc, off, n).wait();
    if (!rs) {
      done();
      return drop("reading the snapshot at offset " + std::to_string(off) + ": " + rs.to_string());
    }
    off += n;
    recovered_bytes_.fetch_add(n);
    bytes_this_round_.fetch_add(n);
  }
  done();
  (*mr).reset();

  // 5. Install, let the applier catch up with the snapshot, release.
  InstallResult ir = install_snapshot(store_, bytes);
  if (ir.error != SnapshotError::kOk)
    return drop(std::string("snapshot invalid: ") + snapshot_error_name(ir.error) + ": " + ir.detail);
  const uint64_t top =
      *std::max_element(ir.lsn_by_store_partition.begin(), ir.lsn_by_store_partition.end());
  for (auto deadline = Clock::now() + opts_.apply_wait;;) {
    if (app->applied_lsn() >= top) break;
    if (Clock::now() >= deadline || stopping()) {
      app->release(ir.lsn_by_store_partition);
      return fail("its ring did not reach lsn " + std::to_string(top) + " (at " +
                  std::to_string(app->applied_lsn()) + ")");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  app->release(ir.lsn_by_store_partition);
  uint64_t key_now = 0;
  if (hooks_.served(q, &key_now) != app || key_now != ring_key)
    return fail("its ring was replaced meanwhile (effects may be lost)");

  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  const double mb = double(length) / 1e6;
  const double rate = ms > 0 ? mb / (ms / 1000) : 0;
  recovered_partitions_.fetch_add(parts.size());
  recovered_items_.fetch_add(ir.installed.items);
  last_rate_kbps_.store(static_cast<uint64_t>(rate * 1000));
  char line[200];
  std::snprintf(line, sizeof line,
                "recovered %zu partitions from node %u: %llu items, %.1f MB in %.0f ms (%.1f MB/s)",
                parts.size(), q, static_cast<unsigned long long>(ir.installed.items), mb, ms,
                rate);
  log(line);
  return true;
}

bool Recovery::pace(Clock::time_point t0, uint64_t done) {
  if (opts_.rate_mbps <= 0) return true;
  const auto due = t0 + std::chrono::duration_cast<Clock::duration>(
                            std::chrono::duration<double>(double(done) / (opts_.rate_mbps * 1e6)));
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_until(lock, due, [this] { return stopping_; });
  return !stopping_;
}

void Recovery::serve_main() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait_for(lock, std::chrono::seconds(1),
                 [this] { return stopping_ || !requests_.empty(); });
    if (stopping_) return;
    // Expired exports: a secondary that never said it was done.
    for (auto it = exports_.begin(); it != exports_.end();) {
      if (Clock::now() >= it->second->expires)
        it = exports_.erase(it);
      else
        ++it;
    }
    if (requests_.empty()) continue;
    auto r = std::move(requests_.front());
    requests_.pop_front();
    lock.unlock();
    serve(*r);
    lock.lock();
  }
}

void Recovery::serve(const Request& r) {
  const std::string_view in = r.payload;
  auto refuse = [&](const std::string& why) {
    log("refused a snapshot for node " + std::to_string(r.from) + ": " + why);
    r.respond(error_reply(why));
  };
  if (in.size() < 16) return refuse("bad snapshot request size");
  const auto partitions = static_cast<uint32_t>(get_le(in, 0, 4));
  const uint64_t ring_key = get_le(in, 4, 8);
  const uint64_t n = get_le(in, 12, 4);
  if (partitions == 0 || partitions > kSnapshotMaxPartitions ||
      (in.size() != 16 + 4 * n && in.size() != 20 + 4 * n))
    return refuse("bad snapshot request");
  // The reader's throttle (kB/s, 0 = none): a paced read may take longer
  // than export_ttl, and an export freed under it would break the read.
  const uint64_t rate_kbps = in.size() == 20 + 4 * n ? get_le(in, 16 + 4 * n, 4) : 0;
  std::vector<bool> held(partitions, false);
  for (uint64_t i = 0; i < n; ++i) {
    const auto p = static_cast<uint32_t>(get_le(in, 16 + 4 * i, 4));
    if (p >= partitions) return refuse("partition " + std::to_string(p) + " out of range");
    held[p] = true;
  }
  std::string why;
  auto last_lsn = hooks_.writer(r.from, ring_key, held, &why);
  if (!last_lsn) return refuse(why);

  auto ex = std::make_unique<Export>();
  SnapshotCounts counts;
  ex->bytes = encode_snapshot(store_, held, last_lsn, &counts);
  auto mr = fabric_.register_memory(std::span<std::byte>(ex->bytes), true, false);
  if (!mr) return refuse("registering the snapshot: " + mr.status().to_string());
  ex->mr = std::move(mr).value();
  ex->expires = Clock::now() + opts_.export_ttl;
  if (rate_kbps > 0)
    ex->expires += 2 * std::chrono::milliseconds(ex->bytes.size() / rate_kbps);
  const auto desc = ex->mr->descriptor().serialize();
  const uint64_t length = ex->bytes.size();
  uint64_t id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    id = next_export_++;
    exports_[id] = std::move(ex);
  }
  snapshots_served_.fetch_add(1);
  std::string reply(1, '\0');
  put_le(reply, id, 8);
  put_le(reply, length, 8);
  reply.append(reinterpret_cast<const char*>(desc.data()), desc.size());
  r.respond(reply);
}

Recovery::Stats Recovery::stats() const {
  Stats s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    s.recovering_partitions = static_cast<uint32_t>(incomplete_.size());
    if (map_) {
      std::set<uint32_t> from;
      for (uint32_t p : incomplete_) from.insert(map_->primary(p));
      s.recovering_from = static_cast<uint32_t>(from.size());
    }
  }
  s.recovered_partitions = recovered_partitions_.load();
  s.recovered_items = recovered_items_.load();
  s.recovered_bytes = recovered_bytes_.load();
  s.bytes_this_round = bytes_this_round_.load();
  s.last_rate_mbps = double(last_rate_kbps_.load()) / 1000;
  s.failed_attempts = failed_attempts_.load();
  s.snapshots_served = snapshots_served_.load();
  return s;
}

std::string Recovery::state() const { return state_of(stats()); }

std::string Recovery::state_of(const Stats& s) const {
  if (s.recovering_partitions == 0) return "caught up";
  double secs;
  {
    std::lock_guard<std::mutex> lock(mu_);
    secs = std::chrono::duration<double>(Clock::now() - round_start_).count();
  }
  const double mb = double(s.bytes_this_round) / 1e6;
  char line[200];
  std::snprintf(line, sizeof line,
                "recovering %u partitions from %u nodes, %.1f MB so far, %.1f MB/s",
                s.recovering_partitions, s.recovering_from, mb, secs > 0 ? mb / secs : 0.0);
  return line;
}

ReportMsg Recovery::report() const {
  ReportMsg r;
  r.replication = state();
  std::lock_guard<std::mutex> lock(mu_);
  r.epoch = map_ ? map_->epoch() : 0;
  r.recovering.assign(incomplete_.begin(), incomplete_.end());
  return r;
}

}  // namespace ftm::repl
