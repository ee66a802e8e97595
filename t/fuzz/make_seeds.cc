// Writes the seed corpora of the replication fuzz targets from the real
// encoders, so every seed is a valid input the target's decoder accepts:
//   corpus/repl_log_fuzz/     ring bytes (replication/effect.h encode)
//   corpus/control_msg_fuzz/  control frames (replication/control_msg.h)
// Each file starts with the target's option byte(s) (see the targets).
//   t/fuzz/run.sh seeds       (rebuilds this and rewrites those files)
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "replication/control_msg.h"
#include "replication/effect.h"
#include "replication/partition_map.h"

namespace {

using namespace ftm::repl;

void write(const std::string& path, const std::vector<std::byte>& bytes) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr || std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) {
    std::perror(path.c_str());
    std::exit(1);
  }
  std::fclose(f);
}

// Option byte, the incarnation (8 bytes), then the entries back to back
// with lsns 1, 2, ...
void ring_seed(const std::string& dir, const char* name, uint8_t opts,
               const std::vector<Effect>& effects, bool skip_after = false) {
  const uint64_t seed = 0x5eed0f7e11a5ull;
  std::vector<std::byte> out(9);
  out[0] = std::byte(opts);
  std::memcpy(out.data() + 1, &seed, 8);
  uint64_t lsn = 1;
  for (const Effect& e : effects) {
    std::vector<std::byte> entry(encoded_size(e));
    encode(e, lsn++, seed, entry);
    out.insert(out.end(), entry.begin(), entry.end());
  }
  if (skip_after) {
    std::vector<std::byte> skip(kMinEntrySize + 16);
    encode_skip(skip.size(), lsn, seed, skip);
    out.insert(out.end(), skip.begin(), skip.end());
  }
  write(dir + "/" + name, out);
}

void frame_seed(const std::string& dir, const char* name, const ControlMsg& m) {
  auto frame = encode(m, 7);
  if (!frame) {
    std::fprintf(stderr, "%s: %s\n", name, frame.status().to_string().c_str());
    std::exit(1);
  }
  std::vector<std::byte> out{std::byte{0}};
  out.insert(out.end(), frame.value().begin(), frame.value().end());
  write(dir + "/" + name, out);
}

ClusterMap small_map() {
  ClusterMap m(8, 2);
  m.upsert_server({1, "127.0.0.1:11211", "127.0.0.1:40001", ServerState::kUp});
  m.upsert_server({2, "127.0.0.1:11212", "127.0.0.1:40002", ServerState::kUp});
  m.upsert_server({3, "127.0.0.1:11213", "127.0.0.1:40003", ServerState::kSpare});
  ClusterMap placed = compute_placement(m, 2);
  placed.set_epoch(3);
  return placed;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string root = argc > 1 ? argv[1] : "t/fuzz/corpus";
  const std::string ring = root + "/repl_log_fuzz";
  Effect item;
  item.kind = EffectKind::kItem;
  item.partition = 17;
  item.epoch = 2;
  item.key = "user:1";
  item.value = "hello world";
  item.client_flags = 5;
  item.exptime = 1900000000;
  item.cas = 99;
  Effect tomb;
  tomb.kind = EffectKind::kTombstone;
  tomb.partition = 3;
  tomb.epoch = 2;
  tomb.key = "gone";
  Effect flush;
  flush.kind = EffectKind::kFlushAll;
  flush.client_flags = kFlushSplit | kFlushByCas;
  flush.cas = 1234;
  Effect empty_value = item;
  empty_value.value = "";
  ring_seed(ring, "item", 0, {item});
  ring_seed(ring, "tombstone", 0, {tomb});
  ring_seed(ring, "flush", 0, {flush});
  ring_seed(ring, "three-then-skip", 2, {item, tomb, empty_value}, true);
  ring_seed(ring, "fixed-checksums", 3, {item, flush});

  const std::string ctl = root + "/control_msg_fuzz";
  const ClusterMap map = small_map();
  frame_seed(ctl, "join", JoinMsg{0, JoinMsg::kSpare, "127.0.0.1:11211", "127.0.0.1:40001"});
  JoinOkMsg ok;
  ok.node_id = 2;
  ok.map = map;
  ok.heartbeat_region = "region";
  ok.heartbeat_offset = 64;
  ok.heartbeat_interval_us = 2000;
  ok.lease_us = 10000;
  frame_seed(ctl, "join-ok", ok);
  frame_seed(ctl, "map", MapMsg{map});
  frame_seed(ctl, "status-req", StatusReqMsg{});
  StatusMsg st{map, 12345, "/var/lib/ftm", {}};
  ServerStatus a;
  a.node_id = 1;
  a.connected = true;
  a.peer = "'a' at 127.0.0.1:5000";
  a.replication = "caught up";
  a.heartbeating = true;
  a.suspected = true;
  a.suspicion_reason = "no heartbeat for 40 ms";
  st.servers.push_back(a);
  frame_seed(ctl, "status", st);
  frame_seed(ctl, "error", ErrorMsg{ErrorMsg::kFenced, "declared failed"});
  frame_seed(ctl, "suspect", SuspectMsg{2, "forward timed out"});
  frame_seed(ctl, "report", ReportMsg{"recovering 3 partitions from 1 nodes"});
  return 0;
}
