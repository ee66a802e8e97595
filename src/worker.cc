#include "src/worker.h"

#include <event2/event.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "src/clock.h"
#include "src/conn.h"
#include "src/server.h"
#include "src/udp_conn.h"

namespace ftm {

Worker::Worker(Server* server, int index) : server_(server), index_(index) {
  ctx_.store = server->store();
  ctx_.stats = &stats_;
  ctx_.settings = &server->settings();
  ctx_.server = server;
}

Worker::~Worker() {
  stop();
  for (Conn* c : conns_) delete c;
  for (UdpConn* u : udp_) delete u;
  if (notify_ev_ != nullptr) event_free(notify_ev_);
  if (tick_ev_ != nullptr) event_free(tick_ev_);
  if (done_ev_ != nullptr) event_free(done_ev_);
  if (done_fd_ >= 0) ::close(done_fd_);
  if (notify_fd_ >= 0) ::close(notify_fd_);
  if (base_ != nullptr) event_base_free(base_);
  std::lock_guard<std::mutex> lock(queue_mu_);
  for (NewConn& c : queue_) ::close(c.fd);
}

bool Worker::start(const std::vector<int>& udp_fds, std::string* err) {
  base_ = event_base_new();
  if (base_ == nullptr) {
    *err = "worker " + std::to_string(index_) + ": cannot create an event base";
    return false;
  }
  notify_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (notify_fd_ < 0) {
    *err = std::string("failed creating eventfd for worker thread: ") + strerror(errno);
    return false;
  }
  done_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (done_fd_ < 0) {
    *err = std::string("failed creating eventfd for worker thread: ") + strerror(errno);
    return false;
  }
  done_ev_ = event_new(base_, done_fd_, EV_READ | EV_PERSIST, on_completion, this);
  if (done_ev_ == nullptr || event_add(done_ev_, nullptr) != 0) {
    *err = "worker " + std::to_string(index_) + ": cannot register events";
    return false;
  }
  notify_ev_ = event_new(base_, notify_fd_, EV_READ | EV_PERSIST, on_notify, this);
  tick_ev_ = event_new(base_, -1, EV_PERSIST, on_tick, this);
  struct timeval one_second = {1, 0};
  if (notify_ev_ == nullptr || tick_ev_ == nullptr || event_add(notify_ev_, nullptr) != 0 ||
      event_add(tick_ev_, &one_second) != 0) {
    *err = "worker " + std::to_string(index_) + ": cannot register events";
    return false;
  }
  for (int fd : udp_fds) {
    auto* u = new UdpConn(this, fd);
    if (!u->start()) {
      delete u;
      *err = "worker " + std::to_string(index_) + ": cannot register a UDP socket";
      return false;
    }
    udp_.push_back(u);
  }
  thread_ = std::thread([this] { run(); });
  return true;
}

void Worker::run() { event_base_dispatch(base_); }

void Worker::dispatch(NewConn c) {
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    if (stopping_) {
      ::close(c.fd);
      server_->counters().curr_clients.fetch_sub(1, std::memory_order_relaxed);
      return;
    }
    queue_.push_back(std::move(c));
  }
  uint64_t one = 1;
  ssize_t n = ::write(notify_fd_, &one, sizeof one);
  (void)n;  // EAGAIN only when the counter is saturated: the worker is awake anyway
}

void Worker::stop() {
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (base_ != nullptr) event_base_loopbreak(base_);
  if (notify_fd_ >= 0) {
    uint64_t one = 1;
    ssize_t n = ::write(notify_fd_, &one, sizeof one);
    (void)n;
  }
  if (thread_.joinable()) thread_.join();
}

void Worker::on_notify(int fd, short, void* arg) {
  uint64_t v;
  ssize_t n = ::read(fd, &v, sizeof v);
  (void)n;
  static_cast<Worker*>(arg)->drain_queue();
}

void Worker::drain_queue() {
  std::vector<NewConn> batch;
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    if (stopping_) {
      event_base_loopbreak(base_);
      return;
    }
    batch.swap(queue_);
  }
  for (NewConn& nc : batch) {
    auto* c = new Conn(this, std::move(nc));
    {
      std::lock_guard<std::mutex> lock(conns_mu_);
      conns_.push_back(c);
    }
    if (!c->start()) {
      if (verbosity() > 0) fprintf(stderr, "Can't listen for events on a new connection\n");
      c->close();
    }
  }
}

void Worker::remove_conn(Conn* c) {
  std::lock_guard<std::mutex> lock(conns_mu_);
  auto it = std::find(conns_.begin(), conns_.end(), c);
  if (it != conns_.end()) {
    *it = conns_.back();
    conns_.pop_back();
  }
}

void Worker::for_each_conn(const std::function<void(const ConnInfo&)>& fn) {
  std::lock_guard<std::mutex> lock(conns_mu_);
  for (const Conn* c : conns_) fn(c->info());
}

void Worker::post(Completion c) {
  bool wake;
  {
    std::lock_guard<std::mutex> lock(done_mu_);
    wake = completions_.empty();  // else a wake-up is already on its way
    completions_.push_back(std::move(c));
  }
  if (!wake) return;
  uint64_t one = 1;
  ssize_t n = ::write(done_fd_, &one, sizeof one);
  (void)n;  // EAGAIN only when the counter is saturated: the worker is awake anyway
}

void Worker::on_completion(int fd, short, void* arg) {
  uint64_t v;
  ssize_t n = ::read(fd, &v, sizeof v);
  (void)n;
  auto* w = static_cast<Worker*>(arg);
  std::vector<Completion> batch;
  {
    std::lock_guard<std::mutex> lock(w->done_mu_);
    batch.swap(w->completions_);
  }
  for (Completion& c : batch) c.conn->complete(c.slot, c.ok, std::move(c.reply));
}

void Worker::on_tick(int, short, void* arg) { static_cast<Worker*>(arg)->close_idle(); }

void Worker::close_idle() {
  int secs = server_->settings().idle_timeout;
  if (secs <= 0) return;
  std::vector<Conn*> snapshot;
  {
    std::lock_guard<std::mutex> lock(conns_mu_);
    snapshot = conns_;
  }
  rel_time_t now = clock::now();
  for (Conn* c : snapshot) c->close_if_idle(now, secs);
}

}  // namespace ftm
