// Control message framing (see control_msg.h).
#include "replication/control_msg.h"

#include <cstring>
#include <thread>
#include <type_traits>

namespace ftm::repl {

namespace {

using namespace wire;

constexpr size_t kMaxText = 1024;  // ErrorMsg::text, ServerStatus strings

ClusterStatus corrupt(const std::string& what) {
  return ClusterStatus(ClusterErrc::kCorrupt, "control message: " + what);
}

MsgType type_of(const ControlMsg& m) {
  static constexpr MsgType kTypes[] = {MsgType::kJoin,      MsgType::kJoinOk,
                                       MsgType::kMap,       MsgType::kStatusReq,
                                       MsgType::kStatus,    MsgType::kError,
                                       MsgType::kSuspect,   MsgType::kReport};
  return kTypes[m.index()];
}

void put_map(std::vector<std::byte>& out, const ClusterMap& map) {
  std::vector<std::byte> m = map.encode();
  put_u32(out, uint32_t(m.size()));
  put_bytes(out, m);
}

ClusterResult<ClusterMap> get_map(Reader& r) {
  uint32_t n = r.u32();
  auto b = r.bytes(n);
  if (r.failed()) return corrupt("truncated map");
  return ClusterMap::decode(b);
}

// u32 count + that many u32 map partitions, strictly increasing, each below
// kMaxPartitions (a REPORT's or a server's incomplete copies).
void put_partition_list(std::vector<std::byte>& out, const std::vector<uint32_t>& ps) {
  put_u32(out, uint32_t(ps.size()));
  for (uint32_t p : ps) put_u32(out, p);
}

bool get_partition_list(Reader& r, std::vector<uint32_t>* out) {
  uint32_t n = r.u32();
  if (r.failed() || n > ClusterMap::kMaxPartitions) return false;
  out->clear();
  out->reserve(n);
  for (uint32_t i = 0; i < n; i++) {
    uint32_t p = r.u32();
    if (r.failed() || p >= ClusterMap::kMaxPartitions || (!out->empty() && p <= out->back()))
      return false;
    out->push_back(p);
  }
  return true;
}

bool addr_ok(const std::string& s) {
  return s.size() <= ClusterMap::kMaxAddrLength;
}

}  // namespace

const char* msg_name(const ControlMsg& msg) {
  static constexpr const char* kNames[] = {"JOIN",       "JOIN_OK", "MAP",
                                           "STATUS_REQ", "STATUS",  "ERROR",
                                           "SUSPECT",    "REPORT"};
  return kNames[msg.index()];
}

ClusterResult<std::vector<std::byte>> encode(const ControlMsg& msg,
                                             uint32_t seq) {
  std::vector<std::byte> out;
  put_u32(out, kControlMagic);
  put_u16(out, kControlVersion);
  put_u16(out, uint16_t(type_of(msg)));
  put_u32(out, 0);  // body length, patched below
  put_u32(out, seq);
  bool fits = true;
  std::visit(
      [&](const auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, JoinMsg>) {
          fits = addr_ok(m.memcached_addr) && addr_ok(m.fabric_addr);
          put_u32(out, m.node_id);
          put_u32(out, m.flags);
          put_str16(out, m.memcached_addr.substr(0, ClusterMap::kMaxAddrLength));
          put_str16(out, m.fabric_addr.substr(0, ClusterMap::kMaxAddrLength));
        } else if constexpr (std::is_same_v<T, JoinOkMsg>) {
          put_u32(out, m.node_id);
          put_map(out, m.map);
          fits = m.heartbeat_region.size() <= kMaxText;
          put_str16(out, m.heartbeat_region.substr(0, kMaxText));
          put_u64(out, m.heartbeat_offset);
          put_u32(out, m.heartbeat_interval_us);
          put_u32(out, m.lease_us);
        } else if constexpr (std::is_same_v<T, MapMsg>) {
          put_map(out, m.map);
        } else if constexpr (std::is_same_v<T, StatusReqMsg>) {
        } else if constexpr (std::is_same_v<T, StatusMsg>) {
          put_map(out, m.map);
          put_u64(out, m.meta_uptime_ms);
          fits = m.meta_state_dir.size() <= kMaxText;
          put_str16(out, m.meta_state_dir.substr(0, kMaxText));
          put_u32(out, uint32_t(m.servers.size()));
          for (const ServerStatus& s : m.servers) {
            if (s.peer.size() > kMaxText || s.replication.size() > kMaxText ||
                s.suspicion_reason.size() > kMaxText)
              fits = false;
            put_u32(out, s.node_id);
            put_u8(out, uint8_t((s.connected ? 1 : 0) | (s.heartbeating ? 2 : 0) |
                                (s.suspected ? 4 : 0)));
            put_u64(out, s.since_ms);
            put_str16(out, s.peer.substr(0, kMaxText));
            put_str16(out, s.replication.substr(0, kMaxText));
            put_partition_list(out, s.recovering);
            put_u64(out, s.heartbeat_age_us);
            put_u64(out, s.heartbeat_timeout_us);
            put_u32(out, s.suspicion_permille);
            put_u32(out, s.false_suspicions);
            put_str16(out, s.suspicion_reason.substr(0, kMaxText));
          }
        } else if constexpr (std::is_same_v<T, ErrorMsg>) {
          fits = m.text.size() <= kMaxText;
          put_u16(out, m.code);
          put_str16(out, m.text.substr(0, kMaxText));
        } else if constexpr (std::is_same_v<T, SuspectMsg>) {
          fits = m.reason.size() <= kMaxText;
          put_u32(out, m.node_id);
          put_str16(out, m.reason.substr(0, kMaxText));
        } else if constexpr (std::is_same_v<T, ReportMsg>) {
          fits = m.replication.size() <= kMaxText;
          put_str16(out, m.replication.substr(0, kMaxText));
          put_u64(out, m.epoch);
          put_partition_list(out, m.recovering);
        }
      },
      msg);
  if (!fits)
    return ClusterStatus(ClusterErrc::kTooLarge,
                         std::string(msg_name(msg)) +
                             ": a string field exceeds its limit");
  uint32_t body = uint32_t(out.size() - 16);
  for (int i = 0; i < 4; i++) out[8 + i] = std::byte(body >> (8 * i));
  put_u64(out, checksum(out));
  if (out.size() > kMaxMessageSize)
    return ClusterStatus(ClusterErrc::kTooLarge,
                         std::string(msg_name(msg)) + " of " +
                             std::to_string(out.size()) +
                             " bytes exceeds the control message limit " +
                             std::to_string(kMaxMessageSize));
  return out;
}

ClusterResult<Envelope> decode(std::span<const std::byte> b) {
  if (b.size() > kMaxMessageSize)
    return ClusterStatus(ClusterErrc::kTooLarge,
                         "control message of " + std::to_string(b.size()) +
                             " bytes exceeds the limit");
  Reader r(b);
  uint32_t magic = r.u32();
  uint16_t version = r.u16();
  uint16_t type = r.u16();
  uint32_t body = r.u32();
  uint32_t seq = r.u32();
  if (r.failed()) return corrupt("truncated header");
  if (magic != kControlMagic) return corrupt("bad magic");
  if (version != kControlVersion)
    return ClusterStatus(ClusterErrc::kVersion,
                         "control message version " + std::to_string(version) +
                             ", this build speaks " +
                             std::to_string(kControlVersion));
  if (size_t(body) + kFrameOverhead != b.size())
    return corrupt("body length " + std::to_string(body) + " but frame has " +
                   std::to_string(b.size()) + " bytes");
  Reader tail(b.subspan(b.size() - 8));
  if (tail.u64() != checksum(b.first(b.size() - 8)))
    return corrupt("checksum mismatch");

  Reader br(b.subspan(16, body));
  Envelope env;
  env.seq = seq;
  switch (MsgType(type)) {
    case MsgType::kJoin: {
      JoinMsg m;
      m.node_id = br.u32();
      m.flags = br.u32();
      m.memcached_addr = br.str16();
      m.fabric_addr = br.str16();
      if (br.failed()) return corrupt("truncated JOIN");
      if (!addr_ok(m.memcached_addr) || !addr_ok(m.fabric_addr))
        return corrupt("JOIN address too long");
      if (m.flags & ~(JoinMsg::kSpare | JoinMsg::kEmpty | JoinMsg::kWasFenced))
        return corrupt("JOIN has unknown flags");
      env.msg = std::move(m);
      break;
    }
    case MsgType::kJoinOk: {
      JoinOkMsg m;
      m.node_id = br.u32();
      auto map = get_map(br);
      if (!map) return map.status();
      m.map = std::move(map).value();
      m.heartbeat_region = br.str16();
      m.heartbeat_offset = br.u64();
      m.heartbeat_interval_us = br.u32();
      m.lease_us = br.u32();
      if (br.failed()) return corrupt("truncated JOIN_OK");
      if (m.heartbeat_region.size() > kMaxText)
        return corrupt("JOIN_OK heartbeat region too long");
      if (m.node_id == 0) return corrupt("JOIN_OK with node id 0");
      env.msg = std::move(m);
      break;
    }
    case MsgType::kMap: {
      auto map = get_map(br);
      if (!map) return map.status();
      env.msg = MapMsg{std::move(map).value()};
      break;
    }
    case MsgType::kStatusReq:
      env.msg = StatusReqMsg{};
      break;
    case MsgType::kStatus: {
      StatusMsg m;
      auto map = get_map(br);
      if (!map) return map.status();
      m.map = std::move(map).value();
      m.meta_uptime_ms = br.u64();
      m.meta_state_dir = br.str16();
      uint32_t n = br.u32();
      if (br.failed()) return corrupt("truncated STATUS");
      if (m.meta_state_dir.size() > kMaxText) return corrupt("STATUS state dir too long");
      if (n > ClusterMap::kMaxServers) return corrupt("STATUS server count");
      for (uint32_t i = 0; i < n; i++) {
        ServerStatus s;
        s.node_id = br.u32();
        uint8_t c = br.u8();
        s.since_ms = br.u64();
        s.peer = br.str16();
        s.replication = br.str16();
        if (!get_partition_list(br, &s.recovering))
          return corrupt("STATUS recovering list");
        s.heartbeat_age_us = br.u64();
        s.heartbeat_timeout_us = br.u64();
        s.suspicion_permille = br.u32();
        s.false_suspicions = br.u32();
        s.suspicion_reason = br.str16();
        if (br.failed()) return corrupt("truncated STATUS server list");
        if (c > 7) return corrupt("STATUS server flags");
        if (s.peer.size() > kMaxText || s.replication.size() > kMaxText ||
            s.suspicion_reason.size() > kMaxText)
          return corrupt("STATUS server text too long");
        s.connected = c & 1;
        s.heartbeating = c & 2;
        s.suspected = c & 4;
        m.servers.push_back(std::move(s));
      }
      env.msg = std::move(m);
      break;
    }
    case MsgType::kError: {
      ErrorMsg m;
      m.code = br.u16();
      m.text = br.str16();
      if (br.failed()) return corrupt("truncated ERROR");
      if (m.text.size() > kMaxText) return corrupt("ERROR text too long");
      env.msg = std::move(m);
      break;
    }
    case MsgType::kSuspect: {
      SuspectMsg m;
      m.node_id = br.u32();
      m.reason = br.str16();
      if (br.failed()) return corrupt("truncated SUSPECT");
      if (m.reason.size() > kMaxText) return corrupt("SUSPECT reason too long");
      env.msg = std::move(m);
      break;
    }
    case MsgType::kReport: {
      ReportMsg m;
      m.replication = br.str16();
      m.epoch = br.u64();
      if (!get_partition_list(br, &m.recovering)) return corrupt("REPORT recovering list");
      if (br.failed()) return corrupt("truncated REPORT");
      if (m.replication.size() > kMaxText) return corrupt("REPORT text too long");
      env.msg = std::move(m);
      break;
    }
    case MsgType::kHeartbeat:
    default:
      return ClusterStatus(ClusterErrc::kVersion,
                           "unsupported control message type " +
                               std::to_string(type));
  }
  if (br.failed() || br.remaining() != 0)
    return corrupt(std::string(msg_name(env.msg)) + " has trailing bytes");
  return env;
}

}  // namespace ftm::repl

// ---- ControlChannel ----

namespace ftm::repl {

ClusterResult<std::unique_ptr<ControlChannel>> ControlChannel::open(
    rdma::Fabric& fabric, std::unique_ptr<rdma::Connection> conn,
    size_t recv_size, int depth) {
  std::unique_ptr<ControlChannel> ch(new ControlChannel());
  ch->conn_ = std::move(conn);
  ch->recv_size_ = recv_size;
  ch->send_mem_.reset(new std::byte[kMaxMessageSize]);
  ch->recv_mem_.reset(new std::byte[recv_size * depth]);
  auto smr = fabric.register_memory({ch->send_mem_.get(), kMaxMessageSize},
                                    false, false);
  auto rmr = fabric.register_memory(
      {ch->recv_mem_.get(), recv_size * depth}, false, false);
  if (!smr || !rmr)
    return ClusterStatus(ClusterErrc::kUnavailable,
                         "registering control buffers for " +
                             ch->conn_->peer() + ": " +
                             (!smr ? smr.status() : rmr.status()).to_string());
  ch->send_mr_ = std::move(smr).value();
  ch->recv_mr_ = std::move(rmr).value();
  for (int i = 0; i < depth; i++)
    ch->recvs_.push_back(
        ch->conn_->recv(*ch->recv_mr_, i * recv_size, recv_size));
  // A post that failed at once (connection already gone) shows here.
  if (ch->recvs_[0].done() && !ch->recvs_[0].wait())
    return ClusterStatus(ClusterErrc::kUnavailable,
                         ch->recvs_[0].wait().to_string());
  return ch;
}

ControlChannel::~ControlChannel() {
  close();
  // Every outstanding op failed with kClosed in close(); only now may the
  // regions and their memory go.
  for (rdma::Op& op : recvs_) (void)op.wait();
  recvs_.clear();
  send_mr_.reset();
  recv_mr_.reset();
}

ClusterStatus ControlChannel::send(const ControlMsg& msg, uint32_t seq) {
  auto frame = encode(msg, seq);
  if (!frame) return frame.status();
  std::lock_guard g(send_mu_);
  std::memcpy(send_mem_.get(), frame->data(), frame->size());
  rdma::Status st = conn_->send(*send_mr_, 0, frame->size()).wait();
  if (!st)
    return ClusterStatus(ClusterErrc::kUnavailable,
                         std::string("sending ") + msg_name(msg) + ": " +
                             st.to_string());
  return {};
}

ClusterResult<Envelope> ControlChannel::receive(
    std::chrono::milliseconds timeout) {
  rdma::Op& op = recvs_[next_];
  if (timeout.count() >= 0) {
    // Op::wait has no timeout of its own and a recv deadline would tear
    // the connection down, so poll: receive() with a timeout is for
    // ftmemcached-ctl and tests, never a hot path.
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!op.done()) {
      if (std::chrono::steady_clock::now() >= deadline)
        return ClusterStatus(ClusterErrc::kUnavailable,
                             "no message from " + conn_->peer() + " within " +
                                 std::to_string(timeout.count()) + " ms");
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  rdma::Status st = op.wait();
  if (!st) return ClusterStatus(ClusterErrc::kUnavailable, st.to_string());
  size_t off = next_ * recv_size_;
  auto env = decode({recv_mem_.get() + off, op.bytes()});
  op = conn_->recv(*recv_mr_, off, recv_size_);
  next_ = (next_ + 1) % recvs_.size();
  return env;
}

void ControlChannel::close() {
  if (conn_) conn_->close();
}

bool ControlChannel::ok() const { return conn_ && conn_->status().is_ok(); }

std::string ControlChannel::peer() const { return conn_->peer(); }

}  // namespace ftm::repl

namespace ftm::repl {

ClusterResult<std::pair<std::string, uint16_t>> parse_host_port(
    std::string_view text) {
  auto bad = [&](const char* why) {
    return ClusterStatus(ClusterErrc::kInvalidArgument,
                         "'" + std::string(text) + "': " + why);
  };
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon + 1 == text.size())
    return bad("expected HOST:PORT");
  std::string_view host = text.substr(0, colon), port = text.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (host.empty()) return bad("empty host");
  uint32_t v = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return bad("port is not a number");
    v = v * 10 + uint32_t(c - '0');
    if (v > 65535) return bad("port out of range 1..65535");
  }
  if (v == 0) return bad("port out of range 1..65535");
  return std::pair<std::string, uint16_t>(std::string(host), uint16_t(v));
}

}  // namespace ftm::repl
