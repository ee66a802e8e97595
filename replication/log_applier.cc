#include "replication/log_applier.h"

#include <algorithm>
#include <cassert>
#include <cstring>

#include "replication/replica_ops.h"
#include "src/clock.h"

namespace ftm::repl {

using SteadyClock = std::chrono::steady_clock;

LogApplier::LogApplier(LogRing& ring, Store& store, const Options& options)
    : ring_(ring), store_(store), opts_(options), min_epoch_(options.min_epoch) {
  pos_ = ring_.applied_pos();
  expected_lsn_ = ring_.applied_lsn() + 1;
}

LogApplier::~LogApplier() { stop(); }

void LogApplier::start() {
  if (thread_.joinable()) return;
  stop_.store(false);
  pos_ = ring_.applied_pos();
  expected_lsn_ = ring_.applied_lsn() + 1;
  thread_ = std::thread([this] { run(); });
}

void LogApplier::stop() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

LogApplier::Stats LogApplier::stats() const {
  Stats s;
  s.applied = counters_.applied.load(std::memory_order_relaxed);
  s.items = counters_.items.load(std::memory_order_relaxed);
  s.tombstones = counters_.tombstones.load(std::memory_order_relaxed);
  s.flushes = counters_.flushes.load(std::memory_order_relaxed);
  s.stale_epoch = counters_.stale_epoch.load(std::memory_order_relaxed);
  s.apply_errors = counters_.apply_errors.load(std::memory_order_relaxed);
  s.bad_checksums = counters_.bad_checksums.load(std::memory_order_relaxed);
  s.skips = counters_.skips.load(std::memory_order_relaxed);
  s.implicit_wraps = counters_.implicit_wraps.load(std::memory_order_relaxed);
  s.last_epoch = counters_.last_epoch.load(std::memory_order_relaxed);
  s.held = counters_.held.load(std::memory_order_relaxed);
  s.held_pending = counters_.held_pending.load(std::memory_order_relaxed);
  s.held_bytes = counters_.held_bytes.load(std::memory_order_relaxed);
  s.replayed = counters_.replayed.load(std::memory_order_relaxed);
  s.replay_skipped = counters_.replay_skipped.load(std::memory_order_relaxed);
  return s;
}

size_t LogApplier::apply_available() {
  pos_ = ring_.applied_pos();
  expected_lsn_ = ring_.applied_lsn() + 1;
  const uint64_t before = counters_.applied.load(std::memory_order_relaxed);
  while (step()) {
  }
  return counters_.applied.load(std::memory_order_relaxed) - before;
}

bool LogApplier::step() {
  const size_t size = ring_.size();
  if (const uint64_t next = next_entry_pos(pos_, size); next != pos_) {
    pos_ = next;
    counters_.implicit_wraps.fetch_add(1, std::memory_order_relaxed);
  }
  const uint64_t phys = pos_ % size;
  std::span<const std::byte> at = ring_.entries().subspan(phys, size - phys);
  Effect e;
  size_t len = 0;
  switch (decode(at, expected_lsn_, ring_.incarnation(), &e, &len)) {
    case DecodeResult::kSkip:
      // Padding up to the end: the entry with this lsn is at offset 0. The
      // position is published with that entry.
      pos_ += len;
      counters_.skips.fetch_add(1, std::memory_order_relaxed);
      return true;
    case DecodeResult::kOk:
      break;
    case DecodeResult::kBadChecksum:
      counters_.bad_checksums.fetch_add(1, std::memory_order_relaxed);
      return false;
    default:
      // Not landed yet (or a stale entry of an earlier lap): poll again.
      // kMalformed with a right checksum would be a writer bug; it stalls
      // the log visibly (the primary's appends time out) rather than
      // applying garbage.
      return false;
  }
  if (e.epoch < min_epoch_.load(std::memory_order_relaxed)) {
    counters_.stale_epoch.fetch_add(1, std::memory_order_relaxed);
  } else {
    apply_or_hold(e);
  }
  pos_ += len;
  ring_.publish_applied(pos_, expected_lsn_);
  expected_lsn_++;
  counters_.applied.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void LogApplier::apply_or_hold(const Effect& e) {
  if (!holding_.load(std::memory_order_acquire)) {
    apply(e);
    return;
  }
  std::lock_guard<std::mutex> g(hold_mu_);
  if (!is_held(e)) {
    apply(e);
    return;
  }
  // One allocation per held entry: it must outlive its ring slot, which the
  // primary reuses as soon as the position is published. Recovery only.
  HeldEntry h;
  h.effect = e;
  h.effect.key = {};
  h.effect.value = {};
  h.key_len = e.key.size();
  h.bytes.reserve(e.key.size() + e.value.size());
  h.bytes.append(e.key).append(e.value);
  counters_.held.fetch_add(1, std::memory_order_relaxed);
  counters_.held_pending.fetch_add(1, std::memory_order_relaxed);
  counters_.held_bytes.fetch_add(h.bytes.size(), std::memory_order_relaxed);
  held_entries_.push_back(std::move(h));
}

bool LogApplier::is_held(const Effect& e) const {
  if (held_.empty()) return false;  // released while this entry waited
  if (e.kind == EffectKind::kFlushAll && !(e.client_flags & kFlushSplit)) return false;
  return e.partition < held_.size() && held_[e.partition];
}

Effect LogApplier::HeldEntry::view() const {
  Effect e = effect;
  e.key = std::string_view(bytes).substr(0, key_len);
  e.value = std::string_view(bytes).substr(key_len);
  return e;
}

bool LogApplier::hold(std::vector<bool> map_partitions) {
  std::lock_guard<std::mutex> g(hold_mu_);
  if (holding_.load(std::memory_order_relaxed) || map_partitions.empty()) return false;
  held_ = std::move(map_partitions);
  holding_.store(true, std::memory_order_release);
  return true;
}

void LogApplier::release(const std::vector<uint64_t>& lsn_by_store_partition) {
  assert(lsn_by_store_partition.size() == kPartitions);
  const uint64_t min_lsn =
      *std::min_element(lsn_by_store_partition.begin(), lsn_by_store_partition.end());
  // Entries replayed per hold of hold_mu_: the applier thread waits while
  // a chunk runs, so the ring keeps draining between chunks.
  constexpr int kReplayChunk = 256;
  for (;;) {
    std::lock_guard<std::mutex> g(hold_mu_);
    if (!holding_.load(std::memory_order_relaxed)) return;
    const bool same_partitions = held_.size() == kPartitions;
    for (int n = 0; n < kReplayChunk && !held_entries_.empty(); ++n) {
      const Effect e = held_entries_.front().view();
      bool reflected;
      if (e.kind == EffectKind::kFlushAll) {
        reflected = same_partitions ? e.lsn <= lsn_by_store_partition[e.partition] : e.lsn <= min_lsn;
      } else {
        reflected = e.lsn <= lsn_by_store_partition[Store::partition_of(e.key)];
      }
      if (reflected) {
        counters_.replay_skipped.fetch_add(1, std::memory_order_relaxed);
      } else {
        apply(e);
        counters_.replayed.fetch_add(1, std::memory_order_relaxed);
      }
      counters_.held_pending.fetch_sub(1, std::memory_order_relaxed);
      counters_.held_bytes.fetch_sub(held_entries_.front().bytes.size(), std::memory_order_relaxed);
      held_entries_.pop_front();
    }
    if (held_entries_.empty()) {
      // Still under hold_mu_: the next held partition entry the applier
      // thread takes is applied directly, after every one replayed here.
      held_.clear();
      holding_.store(false, std::memory_order_release);
      return;
    }
  }
}

void LogApplier::apply(const Effect& e) {
  counters_.last_epoch.store(e.epoch, std::memory_order_relaxed);
  switch (e.kind) {
    case EffectKind::kItem: {
      if (flush_second_ != 0) wait_past_flush();
      if (!link_primary_item(store_, e.key, e.client_flags, e.exptime, e.cas, e.value,
                             e.item_bits)) {
        counters_.apply_errors.fetch_add(1, std::memory_order_relaxed);
        return;
      }
      counters_.items.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    case EffectKind::kTombstone: {
      Txn txn = store_.begin(e.key);
      if (Item* it = txn.find()) txn.unlink(it);
      counters_.tombstones.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    case EffectKind::kFlushAll:
      apply_flush(e);
      counters_.flushes.fetch_add(1, std::memory_order_relaxed);
      return;
    case EffectKind::kSkip:
      return;  // decode() never returns a skip as an effect
  }
}

void LogApplier::apply_flush(const Effect& e) {
  if (e.client_flags & kFlushSplit) {
    // The primary's exact split of one partition (effect.h); its cas values
    // are the ones this copy holds, so no time split and no stall.
    apply_flush_split(store_, e.partition, WireFlushSplit{e.exptime, e.cas, e.client_flags});
    return;
  }
  const rel_time_t t = clock::now();
  if (e.exptime != 0) {
    const rel_time_t when = clock::realtime(e.exptime);
    if (when > t) {
      store_.flush_all(when);
      return;
    }
    // The deadline passed before the entry got here: flush as of now.
  }
  // Hide everything stored up to second t (see the header): with CAS on,
  // flush_all(t + 1) sets oldest_live = t; without, flush_all(0) does.
  store_.flush_all(store_.options().use_cas ? t + 1 : 0);
  // Items linked from now on must get a later timestamp than t: the next
  // item waits for the next second (wait_past_flush).
  flush_second_ = t;
}

void LogApplier::wait_past_flush() {
  // Ticking only re-reads the wall clock, as the server's timer does once a
  // second; without it the wait could last until that timer's next tick.
  while (clock::now() <= flush_second_ && !stop_.load(std::memory_order_relaxed)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    clock::tick();
  }
  flush_second_ = 0;
}

void LogApplier::run() {
  auto last = SteadyClock::now();
  auto nap = opts_.min_sleep;
  while (!stop_.load(std::memory_order_relaxed)) {
    if (step()) {
      last = SteadyClock::now();
      nap = opts_.min_sleep;
      continue;
    }
    if (SteadyClock::now() - last < opts_.spin) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
      continue;
    }
    std::this_thread::sleep_for(nap);
    nap = std::min<std::chrono::microseconds>(nap * 2, opts_.max_sleep);
  }
}

}  // namespace ftm::repl
