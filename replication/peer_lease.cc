#include "replication/peer_lease.h"

#include <atomic>
#include <vector>

#include "replication/membership.h"
#include "replication/peer_mesh.h"
#include "replication/wire_bytes.h"

namespace ftm::repl {

namespace {

// Request: u64 epoch of the asker's map. Reply: "" grants, else the reason.
constexpr size_t kRequestSize = 8;

std::string us_text(std::chrono::microseconds us) {
  return std::to_string(us.count() / 1000) + "." + std::to_string(us.count() % 1000 / 100) +
         " ms";
}

}  // namespace

std::string vouch_refusal(bool standing, uint64_t my_epoch, uint64_t asker_epoch, bool asker_up,
                          std::chrono::microseconds since_ack, std::chrono::microseconds length) {
  if (!standing) return "not in good standing (no lease, or fenced)";
  if (length.count() <= 0) return "no lease length known yet";
  if (my_epoch == 0) return "no map followed yet";
  if (my_epoch != asker_epoch)
    return "its map is at epoch " + std::to_string(my_epoch) + ", the asker's at " +
           std::to_string(asker_epoch);
  if (!asker_up) return "its map does not list the asker as up";
  if (since_ack < length / 2)
    return "it hears the metadata server (heartbeat acknowledged " + us_text(since_ack) + " ago)";
  return "";
}

std::string VouchLedger::judge(uint32_t asker, uint64_t asker_epoch, bool standing,
                               bool asker_up, std::chrono::microseconds since_ack,
                               std::chrono::microseconds length, Clock::time_point now) {
  std::string why = vouch_refusal(standing, epoch_, asker_epoch, asker_up, since_ack, length);
  if (why.empty()) {
    granted_[asker] = now;
    grants_++;
  }
  return why;
}

VouchLedger::Clock::time_point VouchLedger::advance(const ClusterMap& map,
                                                    std::chrono::microseconds length) {
  if (map.epoch() > epoch_) epoch_ = map.epoch();
  Clock::time_point until{};
  for (auto it = granted_.begin(); it != granted_.end();) {
    const ServerInfo* s = map.server(it->first);
    if (s != nullptr && s->state == ServerState::kUp) {
      ++it;
      continue;
    }
    // No grant is given at this epoch to a node no longer up (judge
    // refuses the older epoch), so the last one is final.
    until = std::max(until, it->second + length);
    it = granted_.erase(it);
  }
  return until;
}

PeerLease::PeerLease(Options options) : opts_(std::move(options)) {
  opts_.mesh->on(PeerRpc::kVouch,
                 [this](uint32_t from, std::string_view payload, PeerMesh::Responder respond) {
                   answer(from, payload, std::move(respond));
                 });
  thread_ = std::thread([this] { run(); });
}

PeerLease::~PeerLease() { stop(); }

void PeerLease::stop() {
  {
    std::lock_guard g(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void PeerLease::log(const std::string& line) const {
  if (opts_.log) opts_.log(line);
}

PeerLease::Clock::time_point PeerLease::advance(const ClusterMap& map) {
  const auto length = opts_.lease->length();
  std::lock_guard g(mu_);
  return ledger_.advance(map, length);
}

void PeerLease::answer(uint32_t from, std::string_view payload,
                       std::function<void(std::string_view)> respond) {
  if (payload.size() != kRequestSize) return respond("malformed vouch request");
  const uint64_t asker_epoch = wire::get_le(payload, 0, 8);
  Membership* m = membership_.load(std::memory_order_acquire);
  if (m == nullptr) return respond("not joined yet");
  auto map = m->map();
  const ServerInfo* asker = map ? map->server(from) : nullptr;
  const Lease& lease = *opts_.lease;
  std::string why;
  {
    // The epoch check and the record of the grant under one lock with
    // advance(): a map that ends the asker's standing either comes first
    // (refused) or sees this grant (and waits it out).
    std::lock_guard g(mu_);
    const auto now = Clock::now();
    why = ledger_.judge(from, asker_epoch, lease.required() && !lease.suspended(),
                        asker != nullptr && asker->state == ServerState::kUp,
                        std::chrono::duration_cast<std::chrono::microseconds>(
                            lease.since_acknowledged(now)),
                        lease.length(), now);
  }
  respond(why);
}

bool PeerLease::ask_all(const ClusterMap& map, uint32_t self) {
  std::vector<uint32_t> peers;
  for (const ServerInfo& s : map.servers())
    if (s.id != self && s.state == ServerState::kUp) peers.push_back(s.id);
  if (peers.empty()) {
    last_refusal_ = "no other server is up to vouch";
    return false;
  }
  std::string payload;
  wire::put_le(payload, map.epoch(), 8);
  const auto asked = Clock::now();
  std::vector<SyncCall*> calls;
  for (uint32_t node : peers) {
    calls.push_back(new SyncCall);
    opts_.mesh->call(node, PeerRpc::kVouch, payload, &SyncCall::on_done, calls.back());
  }
  // Half a length: an answer later than that would renew too little to
  // matter, and the next look asks again.
  const auto length = opts_.lease->length();
  bool all = true;
  last_refusal_.clear();
  for (size_t i = 0; i < calls.size(); ++i) {
    SyncCall* c = calls[i];
    {
      std::unique_lock g(c->mu);
      c->cv.wait_until(g, asked + length / 2, [c] { return c->done; });
      if (!(c->done && c->status && c->reply.empty())) {
        all = false;
        if (last_refusal_.empty())
          last_refusal_ = "node " + std::to_string(peers[i]) + ": " +
                          (!c->done ? std::string("no answer in time")
                           : c->status ? c->reply
                                       : c->status.to_string());
      }
    }
    SyncCall::release(c);
  }
  if (all) opts_.lease->renew(asked, length);
  return all;
}

void PeerLease::run() {
  std::unique_lock g(mu_);
  while (!stop_) {
    cv_.wait_for(g, opts_.interval, [this] { return stop_; });
    if (stop_) break;
    g.unlock();
    Lease& lease = *opts_.lease;
    const auto length = lease.length();
    const auto now = Clock::now();
    Membership* m = membership_.load(std::memory_order_acquire);
    auto map = m ? m->map() : nullptr;
    const uint32_t self = m ? m->node_id() : 0;
    const bool due = lease.required() && !lease.suspended() && length.count() > 0 && map &&
                     self != 0 && lease.since_acknowledged(now) >= length / 2 &&
                     lease.remaining_us(now) < length.count() / 2;
    if (!due) {
      if (outcome_ != Outcome::kNone && lease.since_acknowledged(now) < length / 2) {
        log("peer lease: the metadata server acknowledges heartbeats again");
        outcome_ = Outcome::kNone;
      }
      g.lock();
      continue;
    }
    const bool renewed = ask_all(*map, self);
    // Logged when the outcome changes, not every round.
    const Outcome now_outcome = renewed ? Outcome::kRenewed : Outcome::kRefused;
    if (now_outcome != outcome_) {
      log(renewed ? "peer lease: no heartbeat acknowledged for " +
                        us_text(std::chrono::duration_cast<std::chrono::microseconds>(
                            lease.since_acknowledged())) +
                        "; every other up server vouched (none hears the metadata "
                        "server): lease renewed by the peers"
                  : "peer lease: no heartbeat acknowledged, and the peers do not vouch (" +
                        last_refusal_ + "): the lease lapses");
      outcome_ = now_outcome;
    }
    g.lock();
  }
}

}  // namespace ftm::repl
