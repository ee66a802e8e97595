#include "replication/heartbeat.h"

#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <cstring>
#include <random>
#include <string>

namespace ftm::repl {

namespace {

// Between looks at the completion queue while a heartbeat's write or read
// is outstanding (tens of microseconds on loopback).
constexpr std::chrono::microseconds kDriveNap{20};

// Any change of either word changes the check (an odd multiplier is a
// bijection mod 2^64), and an all-zero slot never checks.
uint64_t mix(const HeartbeatValue& v) {
  return (v.incarnation * 0x9E3779B97F4A7C15ull) ^ (v.counter + 0x6A09E667F3BCC909ull);
}

uint64_t load_word(const std::byte* p) {
  // The provider stores into this memory while we read it: read each word
  // once, atomically, and let the check catch a slot mixed of two writes.
  auto* w = reinterpret_cast<uint64_t*>(const_cast<std::byte*>(p));
  return std::atomic_ref<uint64_t>(*w).load(std::memory_order_acquire);
}

}  // namespace

void raise_to_realtime() {
  // Best effort (needs CAP_SYS_NICE or an rtprio limit; without it the
  // thread keeps its normal priority and the floor must absorb the delay).
  sched_param sp{};
  sp.sched_priority = 1;
  (void)pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
}

void encode_heartbeat(const HeartbeatValue& v, std::byte* slot) {
  uint64_t words[3] = {v.incarnation, v.counter, mix(v)};
  std::memcpy(slot, words, sizeof words);
}

std::optional<HeartbeatValue> decode_heartbeat(const std::byte* slot) {
  HeartbeatValue v{load_word(slot), load_word(slot + 8)};
  if (v.incarnation == 0 || load_word(slot + 16) != mix(v)) return std::nullopt;
  return v;
}

rdma::Result<std::unique_ptr<HeartbeatArray>> HeartbeatArray::create(rdma::Fabric& fabric,
                                                                     uint32_t max_node) {
  std::unique_ptr<HeartbeatArray> a(new HeartbeatArray());
  a->size_ = (size_t(max_node) + 1) * kHeartbeatSlotSize;
  a->mem_.reset(new std::byte[a->size_]());  // 16-aligned: enough for the u64 words
  // Remote reads: writers read their fence word back.
  auto mr = fabric.register_memory({a->mem_.get(), a->size_}, /*remote_read=*/true,
                                   /*remote_write=*/true);
  if (!mr) return mr.status();
  a->mr_ = std::move(mr).value();
  a->desc_ = a->mr_->descriptor();
  return a;
}

std::optional<HeartbeatValue> HeartbeatArray::read(uint32_t node) const {
  return decode_heartbeat(mem_.get() + slot_offset(node));
}

void HeartbeatArray::clear(uint32_t node) {
  std::byte* p = mem_.get() + slot_offset(node);
  for (int i = 0; i < 4; i++)
    std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(p + 8 * i))
        .store(0, std::memory_order_release);
}

void HeartbeatArray::fence(uint32_t node, uint64_t epoch) {
  std::byte* p = mem_.get() + slot_offset(node) + 24;
  std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(p)).store(epoch, std::memory_order_release);
}

rdma::Result<std::unique_ptr<HeartbeatWriter>> HeartbeatWriter::start(
    rdma::Fabric& fabric, rdma::Connection& conn, const rdma::RegionDescriptor& remote,
    uint64_t offset, std::chrono::microseconds interval,
    std::function<void(std::string_view)> log, HeartbeatLease lease) {
  std::unique_ptr<HeartbeatWriter> w(new HeartbeatWriter(conn));
  w->remote_ = remote;
  w->offset_ = offset;
  w->interval_ = interval;
  w->log_ = std::move(log);
  w->lease_ = std::move(lease);
  rdma::Status in_bounds = remote.check_bounds(offset, kHeartbeatSlotSize, "heartbeat");
  if (!in_bounds) return in_bounds;
  auto mr = fabric.register_memory({w->buf_, sizeof w->buf_}, false, false);
  if (!mr) return mr.status();
  w->mr_ = std::move(mr).value();
  std::random_device rd;
  do {
    w->value_.incarnation = (uint64_t(rd()) << 32) | rd();
  } while (w->value_.incarnation == 0);
  w->thread_ = std::thread([p = w.get()] { p->run(); });
  return w;
}

HeartbeatWriter::~HeartbeatWriter() { stop(); }

void HeartbeatWriter::stop() {
  {
    std::lock_guard g(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void HeartbeatWriter::run() {
  raise_to_realtime();
  auto next = std::chrono::steady_clock::now();
  std::unique_lock lk(mu_);
  while (!stop_) {
    lk.unlock();
    value_.counter++;
    encode_heartbeat(value_, buf_);
    const auto posted = std::chrono::steady_clock::now();
    // Driven by this (real-time) thread, not left to the progress thread:
    // see Op::wait_driving.
    rdma::Status st = conn_.write(*mr_, 0, remote_, offset_, 24).wait_driving(kDriveNap);
    // Read back after the write completed: what it sees is the meta
    // server's word at a time after this heartbeat arrived.
    if (st && lease_.lease != nullptr)
      st = conn_.read(*mr_, 24, remote_, offset_ + 24, 8).wait_driving(kDriveNap);
    uint64_t fence = 0;
    if (st && lease_.lease != nullptr) {
      fence = load_word(buf_ + 24);
      lease_.lease->acknowledged(posted);
      if (fence == 0) {
        lease_.lease->renew(posted, lease_.length);
      } else {
        lease_.lease->revoke();
        if (log_)
          log_("heartbeat: the metadata server declared this node failed at epoch " +
               std::to_string(fence) + "; no longer serving as primary");
        if (lease_.on_fenced) lease_.on_fenced(fence);
        return;
      }
    }
    lk.lock();
    if (!st) {
      if (!stop_ && log_)
        log_("heartbeat: writing to the metadata server failed, stopping until it is "
             "reached again: " + st.to_string());
      return;
    }
    written_.fetch_add(1, std::memory_order_relaxed);
    // A fixed schedule, not "interval after the last write": a slow write
    // must not stretch the period the metadata server learns.
    next += interval_;
    auto now = std::chrono::steady_clock::now();
    if (next < now) next = now;
    cv_.wait_until(lk, next, [this] { return stop_; });
  }
}

}  // namespace ftm::repl
