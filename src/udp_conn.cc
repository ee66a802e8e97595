#include "src/udp_conn.h"

#include <event2/event.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include "src/proto_bin.h"
#include "src/proto_text.h"
#include "src/server.h"
#include "src/session.h"

namespace ftm {
namespace {

constexpr size_t kMaxDatagram = 65536;
constexpr int kDatagramsPerEvent = 32;  // fairness with the worker's TCP conns

void put16(char* p, unsigned v) {
  p[0] = static_cast<char>((v >> 8) & 0xff);
  p[1] = static_cast<char>(v & 0xff);
}

unsigned get16(const char* p) {
  return (static_cast<unsigned>(static_cast<unsigned char>(p[0])) << 8) |
         static_cast<unsigned char>(p[1]);
}

}  // namespace

UdpConn::UdpConn(Worker* worker, int fd) : worker_(worker), fd_(fd) {}

UdpConn::~UdpConn() {
  if (ev_ != nullptr) event_free(ev_);
}

bool UdpConn::start() {
  ev_ = event_new(worker_->base(), fd_, EV_READ | EV_PERSIST, on_read, this);
  return ev_ != nullptr && event_add(ev_, nullptr) == 0;
}

void UdpConn::on_read(int, short, void* arg) { static_cast<UdpConn*>(arg)->handle_datagrams(); }

void UdpConn::handle_datagrams() {
  static thread_local char buf[kMaxDatagram];
  for (int i = 0; i < kDatagramsPerEvent; ++i) {
    struct sockaddr_storage peer;
    socklen_t peer_len = sizeof peer;
    ssize_t n = recvfrom(fd_, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&peer), &peer_len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // EAGAIN: another worker took it, or nothing left
    }
    worker_->stats().bytes_read.add(static_cast<uint64_t>(n));
    if (static_cast<size_t>(n) < kUdpHeaderSize) continue;  // no frame header: drop
    unsigned request_id = get16(buf);
    out_.clear();
    if (get16(buf + 4) != 1 || get16(buf + 2) != 0) {
      continue;  // multi-datagram request: memcached 1.6 drops it unanswered
    }
    Session session;
    session.ctx = worker_->context();
    session.udp = true;
    std::string_view in(buf + kUdpHeaderSize, static_cast<size_t>(n) - kUdpHeaderSize);
    // A datagram is the whole request: an incomplete data block will never
    // be completed, so whatever the parser answered is the reply.
    const Settings& st = worker_->server()->settings();
    bool binary = st.protocol == BindingProtocol::kBinary ||
                  (st.protocol == BindingProtocol::kAuto && !in.empty() &&
                   static_cast<unsigned char>(in[0]) == kBinaryRequestMagic);
    if (binary) {
      bin_process(session, in, out_, INT_MAX);
    } else {
      text_process(session, in, out_, INT_MAX);
    }
    if (out_.empty()) continue;
    size_t chunk = kUdpMaxPayload - kUdpHeaderSize;
    size_t total = (out_.size() + chunk - 1) / chunk;
    if (total > 0xffff) {
      out_ = "SERVER_ERROR response too large for UDP\r\n";
      total = 1;
    }
    char pkt[kUdpMaxPayload];
    for (size_t seq = 0; seq < total; ++seq) {
      size_t off = seq * chunk;
      size_t len = std::min(chunk, out_.size() - off);
      put16(pkt, request_id);
      put16(pkt + 2, static_cast<unsigned>(seq));
      put16(pkt + 4, static_cast<unsigned>(total));
      put16(pkt + 6, 0);
      memcpy(pkt + kUdpHeaderSize, out_.data() + off, len);
      ssize_t w = sendto(fd_, pkt, kUdpHeaderSize + len, 0,
                         reinterpret_cast<sockaddr*>(&peer), peer_len);
      if (w > 0) worker_->stats().bytes_written.add(static_cast<uint64_t>(w));
    }
  }
}

}  // namespace ftm
