#include "src/conn.h"

#include <event2/event.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "src/auth_file.h"
#include "src/cluster.h"
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
  if (pending() > 0 || need_ > 0 || session_.swallow > 0 || parked()) return false;
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
  if (inflight_ > 0) {
    // Cluster callbacks still point here: the last one deletes this.
    dead_ = true;
    ::close(fd_);
    fd_ = -1;
    return;
  }
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
  if (readable && !closing_ && !eof_ && !parked() && pending() < kOutHighWater) {
    if (!read_some()) return close();
  }
  if (!closing_ && !parked()) process();
  if (!flush()) return close();
  if (output_blocked_ && pending() < kOutHighWater && !closing_ && !parked()) {
    // Paused at the high-water mark and the socket has since taken enough:
    // nothing else would wake us (an emptied buffer asks for no write event,
    // and the client sends nothing more), so come back. With the output
    // still high, the write event resumes instead.
    schedule_resume();
  }
  if (pending() == 0 && !parked() && (closing_ || (eof_ && !resume_pending_))) return close();
  if (pending() == 0 && out_.capacity() > kOutHighWater) {
    std::string().swap(out_);  // give a huge reply's memory back
  }
  if (rstart_ == rend_ && rcap_ > 4 * kReadChunk && need_ == 0) {
    rbuf_.reset(new char[kReadChunk]);
    rcap_ = kReadChunk;
    rstart_ = rend_ = 0;
  }
  if (parked()) {
    state_.store("conn_io_queue", std::memory_order_relaxed);  // memcached's proxy wait
  } else if (pending() > 0) {
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
  if (rstart_ == rend_) return;
  if (pending() >= kOutHighWater) {
    output_blocked_ = true;  // drive() resumes once the output drains
    return;
  }
  output_blocked_ = false;
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
  if (wpos_ > 0 && wpos_ >= pending()) {
    // A reply streamed to a slow reader: drop what was sent, so out_ holds
    // at most the high-water mark plus one request's reply, not everything
    // ever sent while it never quite emptied. Moves at most as many bytes
    // as were sent since the last time.
    out_.erase(0, wpos_);
    if (barrier_pending_) hold_ -= wpos_;
    wpos_ = 0;
  }
  // Cluster mode composes gathered replies whole and holds replies behind
  // the replication barrier: no pausing there.
  session_.out_pause_at = session_.ctx->cluster != nullptr ? SIZE_MAX : wpos_ + kOutHighWater;
  const size_t out_before = out_.size();
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
  if (session_.ctx->cluster != nullptr) after_batch(r, in, out_before);
  if (r.close) {
    closing_ = true;
    return;
  }
  if (need_ > rmax_ + kMaxCommandLine) {
    closing_ = true;  // the parser asked for more than any request can hold
    return;
  }
  if (r.paused) output_blocked_ = true;
  if (r.yielded) {
    worker_->stats().conn_yields.add();
    schedule_resume();
  }
}

void Conn::schedule_resume() {
  if (resume_pending_) return;
  resume_pending_ = true;
  event_active(resume_ev_, 0, 0);
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
    total.paused = r.paused;
    total.remote = r.remote;
    total.remote_node = r.remote_node;
    total.remote_len = r.remote_len;
    if (r.close || r.paused || !r.yielded) return total;
  }
  total.yielded = true;
  return total;
}

bool Conn::flush() {
  const size_t limit = barrier_pending_ ? hold_ : out_.size();  // held replies stay
  while (wpos_ < limit) {
    ssize_t n = ::send(fd_, out_.data() + wpos_, limit - wpos_, MSG_NOSIGNAL);
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
  if (wpos_ < out_.size()) return true;
  out_.clear();
  wpos_ = 0;
  hold_ = 0;
  return true;
}

void Conn::update_events() {
  short want = 0;
  if (!closing_ && !eof_ && !parked() && pending() < kOutHighWater) want |= EV_READ;
  if (sendable() > 0) want |= EV_WRITE;
  if (want == ev_flags_) return;
  event_del(ev_);
  event_assign(ev_, worker_->base(), fd_, want | EV_PERSIST, on_event, this);
  if (want != 0) event_add(ev_, nullptr);
  ev_flags_ = want;
}

// Cluster mode, after the parser returned: forwards what it left for other
// nodes and puts this batch's replies behind the replication barrier.
void Conn::after_batch(const ProtoResult& r, std::string_view in, size_t out_before) {
  bool ran_here = r.consumed > 0;
  if (r.remote != Remote::kNone && !r.close && r.consumed + r.remote_len <= in.size()) {
    // A split get or flush_all may have run a part here.
    if (start_gather(r, in.substr(r.consumed, r.remote_len))) ran_here = true;
    rstart_ += r.remote_len;
    last_cmd_.store(clock::now(), std::memory_order_relaxed);
  }
  if (!ran_here || barrier_pending_) return;
  barrier_token_ = Token{worker_, this, kBarrierSlot};
  if (!session_.ctx->cluster->barrier(&on_barrier_done, &barrier_token_)) return;
  barrier_pending_ = true;
  hold_ = out_before;
  ++inflight_;
}

bool Conn::start_gather(const ProtoResult& r, std::string_view request) {
  Cluster& cluster = *session_.ctx->cluster;
  const WireProtocol proto = proto_ == Proto::kBinary ? WireProtocol::kBinary : WireProtocol::kText;
  if (verbosity() > 1 && proto == WireProtocol::kText) log_requests(fd_, request);
  gather_ = std::make_unique<Gather>(cluster, proto, r, request);
  std::vector<GatherPart>& parts = gather_->parts();
  tokens_.resize(parts.size());
  gather_left_ = 0;
  bool ran_here = false;
  for (GatherPart& p : parts) {
    if (!p.local) {
      ++gather_left_;
      continue;
    }
    // This server's share: the connection's own session, never routed.
    session_.forwarded = true;
    if (proto == WireProtocol::kBinary) {
      bin_process(session_, p.request, p.reply, 1);
    } else {
      text_process(session_, p.request, p.reply, 1);
    }
    session_.forwarded = false;
    p.done = true;
    ran_here = true;
  }
  if (gather_left_ == 0) {
    finish_gather();
    return ran_here;
  }
  inflight_ += static_cast<uint32_t>(gather_left_);
  for (uint32_t i = 0; i < parts.size(); ++i) {
    if (parts[i].local) continue;
    tokens_[i] = Token{worker_, this, i};
    cluster.forward(parts[i].node, proto, parts[i].request, &on_forward_done, &tokens_[i]);
  }
  return ran_here;
}

void Conn::finish_gather() {
  const size_t before = out_.size();
  if (!closing_) gather_->compose(out_);
  if (verbosity() > 1 && gather_->proto() == WireProtocol::kText) {
    log_replies(fd_, std::string_view(out_).substr(before));
  }
  gather_.reset();
}

void Conn::on_forward_done(void* ctx, bool ok, std::string_view reply) {
  auto* t = static_cast<Token*>(ctx);
  t->worker->post(Completion{t->conn, t->slot, ok, std::string(reply)});
}

void Conn::on_barrier_done(void* ctx, bool ok) {
  auto* t = static_cast<Token*>(ctx);
  t->worker->post(Completion{t->conn, t->slot, ok, std::string()});
}

void Conn::complete(uint32_t slot, bool ok, std::string&& reply) {
  --inflight_;
  if (dead_) {
    if (inflight_ == 0) delete this;
    return;
  }
  if (slot == kBarrierSlot) {
    barrier_pending_ = false;
    if (!ok) {
      // The batch's writes may not be in a secondary: none of its replies
      // may reach the client. Dropping them desynchronises the client's
      // reply stream, so the connection ends after the error line.
      out_.resize(hold_);
      if (proto_ != Proto::kBinary) out_.append("SERVER_ERROR replication failed\r\n");
      closing_ = true;
    }
  } else if (gather_ != nullptr && slot < gather_->parts().size()) {
    GatherPart& p = gather_->parts()[slot];
    p.ok = ok;
    p.reply = std::move(reply);
    p.done = true;
    if (--gather_left_ == 0) finish_gather();
  }
  drive(false, false);
}

}  // namespace ftm
