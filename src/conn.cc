#include "src/conn.h"

#include <event2/event.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "src/auth_file.h"
#include "src/proto_bin.h"
#include "src/proto_text.h"
#include "src/server.h"
#include "src/traffic_log.h"

namespace ftm {

Conn::Conn(Worker* worker, NewConn c)
    : worker_(worker),
      fd_(c.fd),
      unix_(c.unix_socket),
      peer_(std::move(c.peer)),
      listen_addr_(std::move(c.listen_addr)) {
  session_.ctx = worker->context();
  // The parser never needs more than one value block (item size) plus its
  // command line, or the longest get line it accepts.
  rmax_ = std::max<size_t>(worker->server()->settings().item_size_max, kMaxGetLine) +
          2 * kMaxCommandLine;
  last_cmd_.store(clock::now(), std::memory_order_relaxed);
}

Conn::~Conn() {
  if (ev_ != nullptr) event_free(ev_);
  if (resume_ev_ != nullptr) event_free(resume_ev_);
  if (fd_ >= 0) ::close(fd_);
}

bool Conn::start() {
  rcap_ = kReadChunk;
  rbuf_.reset(new char[rcap_]);
  ev_ = event_new(worker_->base(), fd_, EV_READ | EV_PERSIST, on_event, this);
  resume_ev_ = event_new(worker_->base(), -1, 0, on_resume, this);
  if (ev_ == nullptr || resume_ev_ == nullptr || event_add(ev_, nullptr) != 0) return false;
  ev_flags_ = EV_READ;
  if (verbosity() > 1) {
    fprintf(stderr, "<%d new auto-negotiating client connection\n", fd_);
  }
  return true;
}

ConnInfo Conn::info() const {
  rel_time_t now = clock::now();
  rel_time_t last = last_cmd_.load(std::memory_order_relaxed);
  return ConnInfo{fd_, peer_, listen_addr_, state_.load(std::memory_order_relaxed),
                  now > last ? now - last : 0};
}

bool Conn::close_if_idle(rel_time_t now, int secs) {
  rel_time_t last = last_cmd_.load(std::memory_order_relaxed);
  if (secs <= 0 || now < last || now - last <= static_cast<rel_time_t>(secs)) return false;
  if (pending() > 0 || need_ > 0 || session_.swallow > 0) return false;
  if (verbosity() > 0) fprintf(stderr, "Closing idle fd %d\n", fd_);
  close();
  return true;
}

void Conn::close() {
  if (verbosity() > 1) fprintf(stderr, "<%d connection closed.\n", fd_);
  if (ev_ != nullptr) event_del(ev_);
  if (resume_ev_ != nullptr) event_del(resume_ev_);
  worker_->server()->counters().curr_clients.fetch_sub(1, std::memory_order_relaxed);
  worker_->remove_conn(this);
  delete this;
}

void Conn::on_event(int, short what, void* arg) {
  static_cast<Conn*>(arg)->drive((what & EV_READ) != 0, (what & EV_WRITE) != 0);
}

void Conn::on_resume(int, short, void* arg) {
  Conn* c = static_cast<Conn*>(arg);
  c->resume_pending_ = false;
  c->drive(false, false);
}

void Conn::drive(bool readable, bool writable) {
  if (writable && !flush()) return close();
  if (readable && !closing_ && !eof_ && pending() < kOutHighWater) {
    if (!read_some()) return close();
  }
  if (!closing_) process();
  if (!flush()) return close();
  if (pending() == 0 && (closing_ || (eof_ && !resume_pending_))) return close();
  if (pending() == 0 && out_.capacity() > kOutHighWater) {
    std::string().swap(out_);  // give a huge reply's memory back
  }
  if (rstart_ == rend_ && rcap_ > 4 * kReadChunk && need_ == 0) {
    rbuf_.reset(new char[kReadChunk]);
    rcap_ = kReadChunk;
    rstart_ = rend_ = 0;
  }
  if (pending() > 0) {
    state_.store(closing_ ? "conn_closing" : "conn_mwrite", std::memory_order_relaxed);
  } else if (need_ > 0) {
    state_.store(session_.swallow > 0 ? "conn_swallow" : "conn_nread", std::memory_order_relaxed);
  } else if (rstart_ != rend_) {
    state_.store("conn_read", std::memory_order_relaxed);
  } else {
    state_.store("conn_waiting", std::memory_order_relaxed);
  }
  update_events();
}

// Makes room for at least `bytes` unconsumed bytes from rstart_, compacting
// and growing the buffer (never past rmax_).
bool Conn::ensure_room(size_t bytes) {
  if (rstart_ == rend_) rstart_ = rend_ = 0;
  if (rcap_ - rstart_ >= bytes && rcap_ - rend_ > 0) return true;
  size_t len = rend_ - rstart_;
  if (rstart_ > 0) {
    memmove(rbuf_.get(), rbuf_.get() + rstart_, len);
    rstart_ = 0;
    rend_ = len;
  }
  if (rcap_ >= bytes && rcap_ > rend_) return true;
  size_t cap = std::max(bytes, rcap_ * 2);
  if (cap > rmax_) cap = std::max(rmax_, bytes);
  if (cap <= rend_) return false;  // full at the limit: the parser must decide
  std::unique_ptr<char[]> nb(new char[cap]);
  memcpy(nb.get(), rbuf_.get(), len);
  rbuf_ = std::move(nb);
  rcap_ = cap;
  return true;
}

bool Conn::read_some() {
  size_t want = std::max(need_, rend_ - rstart_ + kReadChunk / 4);
  if (!ensure_room(want)) {
    if (resume_pending_) return true;  // the parser has not seen it all yet
    // The parser consumed nothing from a full buffer at the limit: a request
    // bigger than anything valid. memcached closes such a connection.
    closing_ = true;
    return true;
  }
  for (int i = 0; i < 4; ++i) {
    ssize_t n = ::read(fd_, rbuf_.get() + rend_, rcap_ - rend_);
    if (n > 0) {
      rend_ += static_cast<size_t>(n);
      worker_->stats().bytes_read.add(static_cast<uint64_t>(n));
      if (rend_ < rcap_) break;
      // Filled the buffer: grow if the parser needs more, else parse first.
      if (need_ <= rend_ - rstart_) break;
      if (!ensure_room(need_)) break;
      continue;
    }
    if (n == 0) {
      eof_ = true;
      break;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    if (verbosity() > 0 && errno != ECONNRESET) {
      fprintf(stderr, "Failed to read, and not due to blocking: %s\n", strerror(errno));
    }
    return false;
  }
  return true;
}

void Conn::process() {
  if (pending() >= kOutHighWater || rstart_ == rend_) return;
  if (need_ > rend_ - rstart_) return;  // still waiting for a data block
  std::string_view in(rbuf_.get() + rstart_, rend_ - rstart_);
  state_.store("conn_parse_cmd", std::memory_order_relaxed);
  const Settings& s = worker_->server()->settings();
  if (proto_ == Proto::kUnknown) {
    // memcached's negotiation: under -B auto the first byte decides.
    bool binary = s.protocol == BindingProtocol::kBinary ||
                  (s.protocol == BindingProtocol::kAuto &&
                   static_cast<unsigned char>(in[0]) == kBinaryRequestMagic);
    proto_ = binary ? Proto::kBinary : Proto::kText;
    if (verbosity() > 1) {
      fprintf(stderr, "%d: Client using the %s protocol\n", fd_, binary ? "binary" : "ascii");
    }
  }
  ProtoResult r;
  if (proto_ == Proto::kBinary) {
    r = bin_process(session_, in, out_, s.reqs_per_event);
  } else if (!s.auth_file.empty() && !session_.authenticated) {
    // -Y: nothing but the authenticating "set" until it succeeds.
    r = text_auth_process(session_, in, out_);
    if (session_.authenticated && !r.close && r.need == 0 && r.consumed < in.size()) {
      ProtoResult rest = text_process(session_, in.substr(r.consumed), out_, s.reqs_per_event);
      rest.consumed += r.consumed;
      r = rest;
    }
  } else if (verbosity() > 1) {
    r = process_logged(in, s.reqs_per_event);
  } else {
    r = text_process(session_, in, out_, s.reqs_per_event);
  }
  if (r.consumed > in.size()) r.consumed = in.size();  // defensive
  rstart_ += r.consumed;
  if (r.consumed > 0) last_cmd_.store(clock::now(), std::memory_order_relaxed);
  need_ = r.need;
  if (r.close) {
    closing_ = true;
    return;
  }
  if (need_ > rmax_ + kMaxCommandLine) {
    closing_ = true;  // the parser asked for more than any request can hold
    return;
  }
  if (r.yielded) {
    worker_->stats().conn_yields.add();
    if (!resume_pending_) {
      resume_pending_ = true;
      event_active(resume_ev_, 0, 0);
    }
  }
}

// -vv: one request at a time, so the log shows each command next to its
// reply, as memcached's does. Same results as one text_process call.
ProtoResult Conn::process_logged(std::string_view in, int max_requests) {
  ProtoResult total;
  for (int i = 0; i < max_requests; ++i) {
    size_t out_before = out_.size();
    ProtoResult r = text_process(session_, in.substr(total.consumed), out_, 1);
    log_requests(fd_, in.substr(total.consumed, r.consumed));
    log_replies(fd_, std::string_view(out_).substr(out_before));
    total.consumed += r.consumed;
    total.need = r.need;
    total.close = r.close;
    if (r.close || !r.yielded) return total;
  }
  total.yielded = true;
  return total;
}

bool Conn::flush() {
  while (wpos_ < out_.size()) {
    ssize_t n = ::send(fd_, out_.data() + wpos_, out_.size() - wpos_, MSG_NOSIGNAL);
    if (n > 0) {
      wpos_ += static_cast<size_t>(n);
      worker_->stats().bytes_written.add(static_cast<uint64_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    if (verbosity() > 0 && n < 0 && errno != EPIPE && errno != ECONNRESET) {
      fprintf(stderr, "Failed to write, and not due to blocking: %s\n", strerror(errno));
    }
    return false;
  }
  out_.clear();
  wpos_ = 0;
  return true;
}

void Conn::update_events() {
  short want = 0;
  if (!closing_ && !eof_ && pending() < kOutHighWater) want |= EV_READ;
  if (pending() > 0) want |= EV_WRITE;
  if (want == ev_flags_) return;
  event_del(ev_);
  event_assign(ev_, worker_->base(), fd_, want | EV_PERSIST, on_event, this);
  if (want != 0) event_add(ev_, nullptr);
  ev_flags_ = want;
}

}  // namespace ftm
