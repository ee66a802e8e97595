#include "replication/log_writer.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "replication/log_ring.h"

namespace ftm::repl {

using rdma::Code;
using rdma::Status;
using SteadyClock = std::chrono::steady_clock;

// One pending append. ready_lsn is the publication flag: the appender sets
// it (seq_cst, see wake protocol below) after the entry bytes and the fields
// are in place; the flusher reads the fields only after seeing it.
struct LogWriter::Slot {
  std::atomic<uint64_t> ready_lsn{0};
  uint64_t start = 0;  // logical position of the entry
  uint64_t end = 0;    // logical position after it
  Callback cb = nullptr;
  void* ctx = nullptr;
};

// One batch: the writes that carry lsns (first_lsn-1, last_lsn].
struct LogWriter::Inflight {
  std::vector<rdma::Op> ops;  // capacity reserved once: no allocation per batch
  uint64_t last_lsn = 0;
};

namespace {
constexpr size_t kOpsPerBatch = 16;
// How often the flusher refreshes the applied position while the ring is
// more than half full and no append waits yet (keeps appends from stalling).
constexpr auto kProactiveReadEvery = std::chrono::microseconds(100);
// Pause between two control reads that found the applier had not moved.
constexpr auto kWaitingReadEvery = std::chrono::microseconds(20);
}  // namespace

LogWriter::LogWriter(rdma::Connection& conn, const rdma::RegionDescriptor& ring,
                     const Options& options)
    : conn_(conn), ring_(ring), opts_(options) {}

rdma::Result<std::unique_ptr<LogWriter>> LogWriter::attach(
    rdma::Fabric& fabric, rdma::Connection& conn,
    const rdma::RegionDescriptor& ring, const Options& options) {
  if (ring.length < kControlBlockSize + kMinRingSize)
    return Status(Code::kCorruptDescriptor, conn.peer(), "attach log writer",
                  "region too small for a replication log ring");
  if (options.max_pending == 0 || options.max_inflight == 0 ||
      options.max_write_bytes < 4096)
    return Status(Code::kInvalidArgument, conn.peer(), "attach log writer",
                  "max_pending, max_inflight must be > 0, max_write_bytes >= 4096");
  std::unique_ptr<LogWriter> w(new LogWriter(conn, ring, options));
  w->size_ = ring.length - kControlBlockSize;
  const size_t total = (w->size_ + kControlBlockSize + 4095) & ~size_t{4095};
  w->local_ = std::unique_ptr<std::byte, void (*)(void*)>(
      static_cast<std::byte*>(std::aligned_alloc(4096, total)), std::free);
  if (!w->local_)
    return Status(Code::kInvalidArgument, conn.peer(), "attach log writer",
                  "out of memory for the staging ring");
  std::memset(w->local_.get(), 0, total);
  auto mr = fabric.register_memory(
      std::span<std::byte>(w->local_.get(), w->size_ + kControlBlockSize),
      false, false);
  if (!mr) return mr.status();
  w->local_mr_ = std::move(*mr);

  // The control block is read into the staging memory's last 64 bytes.
  rdma::Result<ControlSnapshot> snap =
      Status(Code::kFabricError, conn.peer(), "read log control", "torn");
  for (int attempt = 0; attempt < 100 && !snap; attempt++) {
    Status st = conn.read_sync(*w->local_mr_, w->size_, ring, 0,
                               kControlBlockSize, options.op_timeout);
    if (!st) return st;
    snap = parse_control(std::span<const std::byte>(
        w->local_.get() + w->size_, kControlBlockSize));
    if (!snap && snap.status().code() != Code::kFabricError) break;
  }
  if (!snap)
    return Status(snap.status().code(), conn.peer(), "attach log writer",
                  snap.status().message());
  if (snap->ring_size != w->size_)
    return Status(Code::kCorruptDescriptor, conn.peer(), "attach log writer",
                  "ring size in control block disagrees with the descriptor");
  w->seed_ = snap->incarnation;
  w->tail_ = snap->applied_pos;
  w->tail_pub_ = snap->applied_pos;
  w->head_ = snap->applied_pos;
  w->posted_pos_ = snap->applied_pos;
  w->next_lsn_ = snap->applied_lsn + 1;
  w->reserved_lsn_ = snap->applied_lsn;
  w->done_lsn_ = snap->applied_lsn;
  w->posted_lsn_ = snap->applied_lsn;
  w->counters_.applied_lsn = snap->applied_lsn;
  w->slots_ = std::make_unique<Slot[]>(options.max_pending);
  w->flusher_ = std::thread([p = w.get()] { p->flusher_main(); });
  return w;
}

LogWriter::~LogWriter() { close(); }

void LogWriter::close() {
  closing_.store(true, std::memory_order_seq_cst);
  wake_flusher();
  if (flusher_.joinable()) flusher_.join();
}

Status LogWriter::status() const {
  std::lock_guard<std::mutex> g(status_mu_);
  return status_;
}

LogWriter::Stats LogWriter::stats() const {
  Stats s;
  s.appended = counters_.appended.load(std::memory_order_relaxed);
  s.delivered = counters_.delivered.load(std::memory_order_relaxed);
  s.failed = counters_.failed.load(std::memory_order_relaxed);
  s.writes = counters_.writes.load(std::memory_order_relaxed);
  s.bytes_written = counters_.bytes_written.load(std::memory_order_relaxed);
  s.control_reads = counters_.control_reads.load(std::memory_order_relaxed);
  s.full_waits = counters_.full_waits.load(std::memory_order_relaxed);
  s.last_lsn = reserved_lsn_.load(std::memory_order_relaxed);
  s.applied_lsn = counters_.applied_lsn.load(std::memory_order_relaxed);
  return s;
}

// Wake protocol (no lost wake-up, no syscall while the flusher is busy): the
// appender stores ready_lsn then loads flusher_sleeping_; the flusher stores
// flusher_sleeping_ then checks ready_lsn under sleep_mu_. Both seq_cst, so
// at least one sees the other; the appender takes sleep_mu_ before notifying
// so the notify cannot fall between the flusher's check and its wait.
void LogWriter::wake_flusher() {
  { std::lock_guard<std::mutex> g(sleep_mu_); }
  sleep_cv_.notify_one();
}

void LogWriter::wake_space_waiters() {
  if (space_waiters_.load(std::memory_order_seq_cst) == 0) return;
  { std::lock_guard<std::mutex> g(mu_); }
  space_cv_.notify_all();
}

Status LogWriter::append(const Effect& e, Callback cb, void* ctx,
                         uint64_t* lsn_out) {
  const size_t n = encoded_size(e);
  if (e.key.size() > kMaxEffectKey || e.value.size() > UINT32_MAX ||
      n > max_entry(size_))
    return Status(Code::kInvalidArgument, conn_.peer(), "append",
                  "effect too large for the log ring (key " +
                      std::to_string(e.key.size()) + " B, entry " +
                      std::to_string(n) + " B, ring " + std::to_string(size_) +
                      " B)");
  uint64_t start, pos0, lsn;
  {
    // The one shared lock on the append path: it orders lsns with ring
    // positions and covers only arithmetic (the copy happens after it).
    std::unique_lock<std::mutex> lk(mu_);
    SteadyClock::time_point deadline{};
    for (;;) {
      if (failed_.load(std::memory_order_relaxed)) {
        lk.unlock();
        Status st = status();
        return st.is_ok() ? Status(Code::kClosed, conn_.peer(), "append",
                                   "log writer closed")
                          : st;
      }
      pos0 = tail_;
      const uint64_t rest = size_ - pos0 % size_;
      start = rest < n ? pos0 + rest : pos0;
      const uint64_t head = head_.load(std::memory_order_acquire);
      if (start + n - head <= size_ &&
          next_lsn_ - done_lsn_.load(std::memory_order_acquire) <=
              opts_.max_pending)
        break;
      // Back-pressure: ask the flusher to read the applied position and
      // wait for it (or for deliveries that free slots).
      const auto now = SteadyClock::now();
      if (deadline == SteadyClock::time_point{}) {
        deadline = now + opts_.full_wait;
        counters_.full_waits.fetch_add(1, std::memory_order_relaxed);
      }
      if (now >= deadline) {
        if (opts_.full_wait.count() == 0) {
          // Non-blocking mode: still have the flusher refresh the applied
          // position, so a retry soon after can succeed.
          want_control_.store(true, std::memory_order_relaxed);
          lk.unlock();
          wake_flusher();
          return Status(Code::kTimeout, conn_.peer(), "append",
                        "replication log full (non-blocking append)");
        }
        return Status(Code::kTimeout, conn_.peer(), "append",
                      "replication log full for " +
                          std::to_string(opts_.full_wait.count()) +
                          " ms: the secondary does not apply (applied lsn " +
                          std::to_string(counters_.applied_lsn.load()) + ")");
      }
      space_waiters_.fetch_add(1, std::memory_order_seq_cst);
      lk.unlock();
      wake_flusher();
      lk.lock();
      space_cv_.wait_until(lk, std::min(deadline, now + std::chrono::milliseconds(1)));
      space_waiters_.fetch_sub(1, std::memory_order_seq_cst);
    }
    lsn = next_lsn_++;
    tail_ = start + n;
    tail_pub_.store(tail_, std::memory_order_relaxed);
    Slot& s = slots_[lsn % opts_.max_pending];
    s.start = start;
    s.end = start + n;
    s.cb = cb;
    s.ctx = ctx;
    reserved_lsn_.store(lsn, std::memory_order_release);
  }
  std::byte* base = local_.get();
  const uint64_t rest = size_ - pos0 % size_;
  if (start != pos0 && rest >= kMinEntrySize)
    encode_skip(rest, lsn, seed_, std::span<std::byte>(base + pos0 % size_, rest));
  encode(e, lsn, seed_, std::span<std::byte>(base + start % size_, n));
  slots_[lsn % opts_.max_pending].ready_lsn.store(lsn, std::memory_order_seq_cst);
  counters_.appended.fetch_add(1, std::memory_order_relaxed);
  if (flusher_sleeping_.load(std::memory_order_seq_cst)) wake_flusher();
  if (lsn_out) *lsn_out = lsn;
  return Status::ok();
}

Status LogWriter::drain(std::chrono::milliseconds timeout) {
  const uint64_t target = reserved_lsn_.load(std::memory_order_acquire);
  const auto deadline = SteadyClock::now() + timeout;
  // Polling: drain is for tests and handover, not the request path.
  while (done_lsn_.load(std::memory_order_acquire) < target) {
    if (SteadyClock::now() >= deadline)
      return Status(Code::kTimeout, conn_.peer(), "drain log",
                    "appends still pending after " +
                        std::to_string(timeout.count()) + " ms");
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  return status();
}

bool LogWriter::slot_ready(uint64_t lsn) const {
  return slots_[lsn % opts_.max_pending].ready_lsn.load(
             std::memory_order_seq_cst) == lsn;
}

// Posts writes for local staging bytes [from, to) (logical positions) to
// the same offsets of the remote entry area, split at the ring's end and at
// max_write_bytes.
void LogWriter::emit(Inflight& in, uint64_t from, uint64_t to) {
  while (from < to) {
    const uint64_t phys = from % size_;
    const uint64_t len = std::min<uint64_t>(
        {to - from, size_ - phys, opts_.max_write_bytes});
    in.ops.push_back(conn_.write(*local_mr_, phys, ring_,
                                 kControlBlockSize + phys, len,
                                 opts_.op_timeout));
    counters_.writes.fetch_add(1, std::memory_order_relaxed);
    counters_.bytes_written.fetch_add(len, std::memory_order_relaxed);
    from += len;
  }
}

// Group commit: gathers every consecutive ready entry after posted_lsn_
// (up to about max_write_bytes) into one batch, if it holds at least
// `min_bytes`. Gaps before a wrap carry only their skip marker (the padding
// after it is never read), so they are not shipped. Returns false if nothing
// was posted.
bool LogWriter::post_ready(Inflight& in, uint64_t min_bytes) {
  // Pass 1: how far the batch goes. Readiness never reverts, so pass 2 can
  // walk the same slots without re-checking.
  uint64_t last = posted_lsn_, batch = 0;
  for (uint64_t lsn = posted_lsn_ + 1; slot_ready(lsn); lsn++) {
    const Slot& s = slots_[lsn % opts_.max_pending];
    if (batch > 0 && batch + (s.end - s.start) > opts_.max_write_bytes) break;
    batch += s.end - s.start;
    last = lsn;
  }
  if (last == posted_lsn_ || batch < min_bytes) return false;
  // Pass 2: contiguous runs, split at wraps.
  in.ops.clear();
  uint64_t run_begin = posted_pos_, run_end = posted_pos_;
  for (uint64_t lsn = posted_lsn_ + 1; lsn <= last; lsn++) {
    const Slot& s = slots_[lsn % opts_.max_pending];
    if (s.start != run_end) {
      const uint64_t marker = s.start - run_end >= kMinEntrySize ? kMinEntrySize : 0;
      emit(in, run_begin, run_end + marker);
      run_begin = s.start;
    }
    run_end = s.end;
  }
  emit(in, run_begin, run_end);
  in.last_lsn = last;
  posted_lsn_ = last;
  posted_pos_ = run_end;
  return true;
}

// Fires the callbacks of a delivered batch, in lsn order.
void LogWriter::complete(const Inflight& in) {
  static const Status kOk;
  for (uint64_t l = done_lsn_.load(std::memory_order_relaxed) + 1;
       l <= in.last_lsn; l++) {
    const Slot& s = slots_[l % opts_.max_pending];
    if (s.cb) s.cb(s.ctx, l, kOk);
  }
  counters_.delivered.fetch_add(
      in.last_lsn - done_lsn_.load(std::memory_order_relaxed),
      std::memory_order_relaxed);
  done_lsn_.store(in.last_lsn, std::memory_order_release);
  wake_space_waiters();
}

void LogWriter::fail(const Status& st) {
  {
    std::lock_guard<std::mutex> g(status_mu_);
    if (status_.is_ok()) status_ = st;
  }
  {
    // Under mu_: once failed_ is set no append reserves, so reserved_lsn_
    // is final for fail_pending.
    std::lock_guard<std::mutex> g(mu_);
    failed_.store(true, std::memory_order_relaxed);
  }
  space_cv_.notify_all();
}

// Fails every reserved, undelivered append. REQUIRES: failed_ set and no
// write in flight (their local bytes may then be reused or freed).
void LogWriter::fail_pending(const Status& st) {
  const uint64_t upto = reserved_lsn_.load(std::memory_order_acquire);
  for (uint64_t l = done_lsn_.load(std::memory_order_relaxed) + 1; l <= upto; l++) {
    const Slot& s = slots_[l % opts_.max_pending];
    if (s.cb) s.cb(s.ctx, l, st);
    counters_.failed.fetch_add(1, std::memory_order_relaxed);
  }
  done_lsn_.store(upto, std::memory_order_release);
}

// Handles a finished control read and posts a new one when appends wait for
// space (or the ring is more than half full). Returns true on progress.
bool LogWriter::poll_control() {
  bool progress = false;
  const auto now = SteadyClock::now();
  if (control_inflight_ && control_op_.done()) {
    control_inflight_ = false;
    Status st = control_op_.wait();
    if (!st) {
      fail(st);
      return true;
    }
    auto snap = parse_control(std::span<const std::byte>(
        local_.get() + size_, kControlBlockSize));
    if (snap) {
      if (snap->incarnation != seed_) {
        fail(Status(Code::kCorruptDescriptor, conn_.peer(), "read log control",
                    "the ring was re-created under the writer"));
        return true;
      }
      if (snap->applied_pos > head_.load(std::memory_order_relaxed)) {
        head_.store(snap->applied_pos, std::memory_order_release);
        counters_.applied_lsn.store(snap->applied_lsn, std::memory_order_relaxed);
        wake_space_waiters();
        progress = true;
      }
    }  // torn: read again below
  }
  if (!control_inflight_) {
    const bool waiting = space_waiters_.load(std::memory_order_seq_cst) > 0 ||
                         want_control_.load(std::memory_order_relaxed);
    const uint64_t used = tail_pub_.load(std::memory_order_relaxed) -
                          head_.load(std::memory_order_relaxed);
    const auto every = waiting ? kWaitingReadEvery : kProactiveReadEvery;
    if ((waiting || used > size_ / 2) && now - last_control_read_ >= every) {
      control_op_ = conn_.read(*local_mr_, size_, ring_, 0, kControlBlockSize,
                               opts_.op_timeout);
      control_inflight_ = true;
      want_control_.store(false, std::memory_order_relaxed);
      last_control_read_ = now;
      counters_.control_reads.fetch_add(1, std::memory_order_relaxed);
    }
  }
  return progress;
}

void LogWriter::flusher_main() {
  std::vector<Inflight> inflight(opts_.max_inflight);
  for (auto& in : inflight) in.ops.reserve(kOpsPerBatch);
  size_t first = 0, count = 0;  // FIFO of batches in flight
  auto last_busy = SteadyClock::now();
  auto batch_done = [](const Inflight& in) {
    for (const auto& op : in.ops)
      if (!op.done()) return false;
    return true;
  };

  for (;;) {
    bool progress = false;
    // 1. Retire finished batches, oldest first, so callbacks fire in order.
    while (count > 0 && batch_done(inflight[first])) {
      Inflight& in = inflight[first];
      Status st;
      for (auto& op : in.ops) {
        Status s = op.wait();  // done: returns at once
        if (!s && st) st = s;
      }
      if (!st) {
        fail(st);
        break;
      }
      complete(in);
      first = (first + 1) % inflight.size();
      count--;
      progress = true;
    }
    if (failed_.load(std::memory_order_relaxed) ||
        closing_.load(std::memory_order_seq_cst)) {
      // Let the writes in flight finish (each is bounded by its deadline);
      // those that succeed still deliver, unless the writer failed.
      while (count > 0) {
        Inflight& in = inflight[first];
        Status st;
        for (auto& op : in.ops) {
          Status s = op.wait();
          if (!s && st) st = s;
        }
        if (!st) fail(st);
        if (!failed_.load(std::memory_order_relaxed)) complete(in);
        first = (first + 1) % inflight.size();
        count--;
      }
      if (control_inflight_) (void)control_op_.wait();
      fail(Status(Code::kClosed, conn_.peer(), "append", "log writer closed"));
      fail_pending(status());
      return;
    }
    // 2. Post the next batch. With a write already in flight, a second one
    // is posted only for a large batch (streaming); small appends gather
    // behind the write in flight instead, so they share the next one.
    if (count < inflight.size() &&
        post_ready(inflight[(first + count) % inflight.size()],
                   count == 0 ? 1 : opts_.max_write_bytes / 4)) {
      count++;
      progress = true;
    }
    // 3. Applied position, for back-pressure.
    if (poll_control()) progress = true;
    if (progress || count > 0) last_busy = SteadyClock::now();
    if (progress) continue;

    // 4. Nothing to do right now.
    if (count > 0) {
      // Waiting on the oldest write drives the completion queue (lowest
      // latency); appends arriving meanwhile form the next batch.
      for (auto& op : inflight[first].ops) (void)op.wait();
    } else if (control_inflight_) {
      (void)control_op_.wait();
    } else if (space_waiters_.load(std::memory_order_seq_cst) > 0 ||
               want_control_.load(std::memory_order_relaxed)) {
      std::this_thread::sleep_for(kWaitingReadEvery);
    } else if (SteadyClock::now() - last_busy < opts_.idle_spin) {
      // A short spin before sleeping: a futex wake costs tens of us on a
      // loaded machine, and the next append usually comes sooner.
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
      continue;
    } else {
      std::unique_lock<std::mutex> lk(sleep_mu_);
      flusher_sleeping_.store(true, std::memory_order_seq_cst);
      if (!slot_ready(posted_lsn_ + 1) && !closing_.load() &&
          space_waiters_.load() == 0 && !want_control_.load())
        sleep_cv_.wait_for(lk, std::chrono::milliseconds(5));
      flusher_sleeping_.store(false, std::memory_order_seq_cst);
    }
  }
}

}  // namespace ftm::repl
