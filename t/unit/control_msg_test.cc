// Control messages: every type round-trips; garbage, truncation, bit flips,
// other versions and reserved types are refused with a typed error.
#include <gtest/gtest.h>

#include <random>

#include "replication/control_msg.h"

namespace ftm::repl {
namespace {

ClusterMap small_map() {
  ClusterMap m(16, 2);
  m.upsert_server({1, "127.0.0.1:11211", "127.0.0.1:40001", ServerState::kUp});
  m.upsert_server({2, "127.0.0.1:11212", "127.0.0.1:40002", ServerState::kUp});
  ClusterMap placed = compute_placement(m, 2);
  placed.set_epoch(42);
  return placed;
}

std::vector<ControlMsg> samples() {
  StatusMsg st{small_map(), 12345, "/var/lib/ftm", {}};
  ServerStatus a;
  a.node_id = 1;
  a.connected = true;
  a.since_ms = 100;
  a.peer = "'a' at 127.0.0.1:5000";
  a.heartbeating = true;
  a.heartbeat_age_us = 1234;
  a.heartbeat_timeout_us = 25000;
  a.suspicion_permille = 49;
  st.servers.push_back(a);
  ServerStatus b;
  b.node_id = 2;
  b.since_ms = 7;
  b.replication = "lag 3 entries";
  b.recovering = {3, 17, 1023};
  b.heartbeating = true;
  b.suspected = true;
  b.heartbeat_age_us = 90000;
  b.heartbeat_timeout_us = 45000;
  b.suspicion_permille = 2000;
  b.false_suspicions = 3;
  b.suspicion_reason = "no heartbeat for 90.0 ms (timeout 45.0 ms)";
  st.servers.push_back(b);
  JoinOkMsg plain;
  plain.node_id = 3;
  plain.map = small_map();
  JoinOkMsg with_heartbeat = plain;
  with_heartbeat.heartbeat_region = std::string(40, '\x7f');
  with_heartbeat.heartbeat_offset = 3 * 32;
  with_heartbeat.heartbeat_interval_us = 5000;
  with_heartbeat.lease_us = 10000;
  return {
      JoinMsg{0, 0, "10.0.0.5:11211", "10.0.0.5:40001"},
      JoinMsg{7, JoinMsg::kSpare, "[::1]:11211", "[::1]:40001"},
      JoinMsg{2, JoinMsg::kEmpty, "127.0.0.1:11212", "127.0.0.1:40002"},
      JoinMsg{2, JoinMsg::kEmpty | JoinMsg::kWasFenced, "127.0.0.1:11212", "127.0.0.1:40002"},
      plain,
      with_heartbeat,
      MapMsg{small_map()},
      StatusReqMsg{},
      st,
      ErrorMsg{ErrorMsg::kNodeBusy, "node id 3 is already connected"},
      ErrorMsg{ErrorMsg::kFenced, "node 2 was declared failed at epoch 9"},
      SuspectMsg{2, "forwarding to node 2: peer closed the connection"},
      ReportMsg{"recovering 341 partitions from 2 nodes, 12.5 MB so far, 3.1 MB/s", 12,
                {0, 5, 16383}},
      ReportMsg{"caught up", 13, {}},
  };
}

TEST(ControlMsg, EveryTypeRoundTrips) {
  uint32_t seq = 1;
  for (const ControlMsg& m : samples()) {
    auto frame = encode(m, seq);
    ASSERT_TRUE(frame) << frame.status().to_string();
    auto back = decode(*frame);
    ASSERT_TRUE(back) << msg_name(m) << ": " << back.status().to_string();
    EXPECT_EQ(back->seq, seq);
    EXPECT_TRUE(back->msg == m) << msg_name(m);
    seq++;
  }
}

TEST(ControlMsg, TruncationsAndBitFlipsAreRefused) {
  std::mt19937 rng(11);
  for (const ControlMsg& m : samples()) {
    auto frame = *encode(m, 9);
    for (size_t n = 0; n < frame.size(); n++) {
      auto r = decode(std::span(frame).first(n));
      ASSERT_FALSE(r) << msg_name(m) << " truncated to " << n;
      EXPECT_EQ(r.status().code(), ClusterErrc::kCorrupt);
    }
    for (int i = 0; i < 500; i++) {
      auto bad = frame;
      size_t pos = rng() % bad.size();
      bad[pos] ^= std::byte(1u << (rng() % 8));
      EXPECT_FALSE(decode(bad)) << msg_name(m) << " flip at " << pos;
    }
  }
}

TEST(ControlMsg, GarbageNeverCrashes) {
  std::mt19937 rng(5);
  for (int i = 0; i < 20000; i++) {
    std::vector<std::byte> g(rng() % 300);
    for (auto& b : g) b = std::byte(rng());
    // Half the time give it a valid magic and version so decode gets past
    // the first checks.
    if (g.size() >= 8 && (i & 1)) {
      uint32_t magic = kControlMagic;
      for (int k = 0; k < 4; k++) g[k] = std::byte(magic >> (8 * k));
      g[4] = std::byte(kControlVersion);
      g[5] = std::byte(0);
    }
    auto r = decode(g);
    EXPECT_FALSE(r);
    EXPECT_NE(r.status().code(), ClusterErrc::kOk);
  }
}

// Re-frames a body with a correct checksum, as a buggy or hostile peer
// could: the checks behind the checksum must still hold.
std::vector<std::byte> frame_of(uint16_t type, uint16_t version,
                                std::vector<std::byte> body) {
  std::vector<std::byte> out;
  wire::put_u32(out, kControlMagic);
  wire::put_u16(out, version);
  wire::put_u16(out, type);
  wire::put_u32(out, uint32_t(body.size()));
  wire::put_u32(out, 0);
  wire::put_bytes(out, body);
  wire::put_u64(out, wire::checksum(out));
  return out;
}

TEST(ControlMsg, WellFramedButWrongContentIsTyped) {
  EXPECT_EQ(decode(frame_of(1, 2, {})).status().code(), ClusterErrc::kVersion);
  EXPECT_EQ(decode(frame_of(uint16_t(MsgType::kHeartbeat), 1, {}))
                .status()
                .code(),
            ClusterErrc::kVersion);
  EXPECT_EQ(decode(frame_of(999, 1, {})).status().code(),
            ClusterErrc::kVersion);
  // JOIN with a body too short, and with trailing bytes.
  EXPECT_EQ(decode(frame_of(1, 1, std::vector<std::byte>(5))).status().code(),
            ClusterErrc::kCorrupt);
  std::vector<std::byte> join;
  wire::put_u32(join, 0);
  wire::put_u32(join, 0);
  wire::put_str16(join, "a:1");
  wire::put_str16(join, "b:2");
  EXPECT_TRUE(decode(frame_of(1, 1, join)));
  join.push_back(std::byte(0));
  EXPECT_EQ(decode(frame_of(1, 1, join)).status().code(),
            ClusterErrc::kCorrupt);
  // A map whose inner length points past the frame.
  std::vector<std::byte> map;
  wire::put_u32(map, 1000000);
  EXPECT_EQ(decode(frame_of(3, 1, map)).status().code(),
            ClusterErrc::kCorrupt);
  // Status with a huge server count.
  std::vector<std::byte> st;
  auto m = small_map().encode();
  wire::put_u32(st, uint32_t(m.size()));
  wire::put_bytes(st, m);
  wire::put_u64(st, 0);
  wire::put_str16(st, "");
  wire::put_u32(st, 0xffffffff);
  EXPECT_EQ(decode(frame_of(5, 1, st)).status().code(), ClusterErrc::kCorrupt);
  // REPORT partition lists: unsorted, repeated, out of range, too long.
  auto report = [](std::vector<uint32_t> parts, uint32_t count) {
    std::vector<std::byte> b;
    wire::put_str16(b, "recovering");
    wire::put_u64(b, 4);
    wire::put_u32(b, count);
    for (uint32_t p : parts) wire::put_u32(b, p);
    return decode(frame_of(uint16_t(MsgType::kReport), 1, b));
  };
  EXPECT_TRUE(report({1, 2, 9}, 3));
  for (auto bad : {std::vector<uint32_t>{2, 1}, {4, 4}, {ClusterMap::kMaxPartitions}})
    EXPECT_EQ(report(bad, uint32_t(bad.size())).status().code(), ClusterErrc::kCorrupt);
  EXPECT_EQ(report({1}, ClusterMap::kMaxPartitions + 1).status().code(), ClusterErrc::kCorrupt);
  EXPECT_EQ(report({1}, 2).status().code(), ClusterErrc::kCorrupt);
}

TEST(ControlMsg, OversizeIsRefused) {
  std::vector<std::byte> big(kMaxMessageSize + 1);
  EXPECT_EQ(decode(big).status().code(), ClusterErrc::kTooLarge);
  ErrorMsg e{ErrorMsg::kInternal, std::string(5000, 'x')};
  EXPECT_EQ(encode(e).status().code(), ClusterErrc::kTooLarge);
  JoinMsg j{0, 0, std::string(300, 'h') + ":1", "a:1"};
  EXPECT_EQ(encode(j).status().code(), ClusterErrc::kTooLarge);
}

// Found by t/fuzz/control_msg_fuzz.cc (its input is in
// t/fuzz/corpus/control_msg_fuzz/error-text-over-limit): decode() took
// string fields longer than encode() allows (ERROR text, JOIN_OK heartbeat
// region, STATUS strings), so a meta server could accept a message it
// could not send on. Every decoded message must encode again.
TEST(ControlMsg, DecodeRefusesStringsEncodeWouldRefuse) {
  std::vector<std::byte> err;
  wire::put_u16(err, ErrorMsg::kFenced);
  wire::put_str16(err, std::string(1100, 'x'));
  auto d = decode(frame_of(6, 1, err));
  EXPECT_EQ(d.status().code(), ClusterErrc::kCorrupt) << d.status().to_string();
  EXPECT_NE(d.status().message().find("ERROR text too long"), std::string::npos);

  StatusMsg st{small_map(), 1, std::string(1025, 'd'), {}};
  auto st_frame = encode(StatusMsg{small_map(), 1, std::string(1024, 'd'), {}});
  ASSERT_TRUE(st_frame);
  EXPECT_TRUE(decode(st_frame.value()));  // exactly at the limit: fine
  std::vector<std::byte> body;
  std::vector<std::byte> map = small_map().encode();
  wire::put_u32(body, uint32_t(map.size()));
  wire::put_bytes(body, map);
  wire::put_u64(body, 0);
  wire::put_str16(body, st.meta_state_dir);
  wire::put_u32(body, 0);
  EXPECT_EQ(decode(frame_of(5, 1, body)).status().code(), ClusterErrc::kCorrupt);

  std::vector<std::byte> ok;
  wire::put_u32(ok, 2);
  wire::put_u32(ok, uint32_t(map.size()));
  wire::put_bytes(ok, map);
  wire::put_str16(ok, std::string(1025, 'r'));
  wire::put_u64(ok, 0);
  wire::put_u32(ok, 0);
  wire::put_u32(ok, 0);
  EXPECT_EQ(decode(frame_of(2, 1, ok)).status().code(), ClusterErrc::kCorrupt);
}

TEST(ControlMsg, ParseHostPort) {
  auto a = parse_host_port("127.0.0.1:11311");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->first, "127.0.0.1");
  EXPECT_EQ(a->second, 11311);
  auto b = parse_host_port("[::1]:80");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->first, "::1");
  for (const char* bad : {"", "host", "host:", ":80", "h:0", "h:65536",
                          "h:12x", "h:-1"}) {
    auto r = parse_host_port(bad);
    EXPECT_FALSE(r) << bad;
    if (!r) {
      EXPECT_EQ(r.status().code(), ClusterErrc::kInvalidArgument);
    }
  }
}

}  // namespace
}  // namespace ftm::repl
