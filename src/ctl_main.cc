// ftmemcached-ctl: asks the metadata server about the cluster: `status`
// (servers, their state, the epoch, partitions per server). With the map it
// gets there, it also asks data servers about their replicas over their
// peer-mesh fabric port (replication/inspect.h): `get-replica KEY` (each
// replica's copy of a key) and `digest` (per-partition digests of every
// replica, compared). Later issues add drain and add/remove server.
#include <getopt.h>
#include <signal.h>
#include <sysexits.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config.h"
#include "rdma/secret_option.h"
#include "rdma/fabric_domain.h"
#include "replication/control_msg.h"
#include "replication/inspect.h"
#include "replication/partition_map.h"
#include "replication/peer_mesh.h"

namespace {

using namespace ftm;

void print_usage(FILE* out) {
  std::fprintf(
      out,
      "Usage: ftmemcached-ctl [options] COMMAND\n"
      "Commands:\n"
      "  status                  servers, states, epoch, partitions per "
      "server\n"
      "  get-replica KEY         each replica's copy of KEY (value, flags, "
      "cas, exptime)\n"
      "  digest                  per-partition digest of every replica, "
      "compared\n"
      "Options:\n"
      "-m, --meta=HOST:PORT      the metadata server (default: "
      "127.0.0.1:11311)\n"
      "    --fabric=auto|verbs|tcp  fabric provider (default: auto)\n"
      "    --cluster-secret-file=FILE  the cluster's secret (as the servers')\n"
      "-t, --timeout=MS          give up after MS milliseconds (default: "
      "5000)\n"
      "-h, --help                print this help and exit\n"
      "-V, --version             print version and exit\n");
}

int usage_error(const std::string& msg) {
  std::fprintf(stderr, "ftmemcached-ctl: %s\n", msg.c_str());
  print_usage(stderr);
  return EX_USAGE;
}

std::string seconds(uint64_t ms) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1fs", double(ms) / 1000.0);
  return b;
}

// The failure detector's view of each server: heartbeat age, the adaptive
// timeout it is held to, the suspicion level (age / timeout; 1 = suspected)
// and how often it was falsely suspected (each widens its timeout).
void print_heartbeats(const repl::StatusMsg& st) {
  std::printf("heartbeats:\n%-5s %10s %10s %9s %6s  %s\n", "node", "age", "timeout",
              "suspicion", "false", "verdict");
  for (const auto& ss : st.servers) {
    std::string verdict = ss.suspected ? "suspected: " + ss.suspicion_reason
                          : ss.heartbeating ? "alive"
                          : ss.heartbeat_timeout_us ? "waiting for a first heartbeat"
                                                    : "not watched";
    std::printf("%-5u %8.1fms %8.1fms %9.2f %6u  %s\n", ss.node_id,
                ss.heartbeat_age_us / 1000.0, ss.heartbeat_timeout_us / 1000.0,
                ss.suspicion_permille / 1000.0, ss.false_suspicions, verdict.c_str());
  }
}

// A partition counts as fully replicated only with all its copies and none
// of them still being recovered (ServerStatus::recovering).
void print_status(const repl::StatusMsg& st) {
  const repl::ClusterMap& m = st.map;
  std::vector<bool> copying(m.partitions(), false);
  size_t copies_recovering = 0, servers_recovering = 0;
  for (const auto& ss : st.servers) {
    for (uint32_t p : ss.recovering)
      if (p < m.partitions()) copying[p] = true;
    copies_recovering += ss.recovering.size();
    servers_recovering += !ss.recovering.empty();
  }
  uint32_t degraded = 0, unassigned = 0, recovering = 0;
  for (uint32_t p = 0; p < m.partitions(); p++) {
    if (m.primary(p) == 0)
      unassigned++;
    else if (m.replicas_of(p).size() < m.replicas())
      degraded++;
    else if (copying[p])
      recovering++;
  }
  std::printf("epoch %llu  partitions %u  copies %u  servers %zu  "
              "meta uptime %s  state dir %s\n",
              (unsigned long long)m.epoch(), m.partitions(), m.replicas(),
              m.servers().size(), seconds(st.meta_uptime_ms).c_str(),
              st.meta_state_dir.c_str());
  std::printf("partitions: %u fully replicated, %u recovering (a copy still being "
              "made), %u degraded (fewer than %u copies), %u without a primary\n",
              m.partitions() - degraded - unassigned - recovering, recovering, degraded,
              m.replicas(), unassigned);
  if (copies_recovering == 0)
    std::printf("recovery: none under way\n");
  else
    std::printf("recovery: recovering %zu copies on %zu servers (progress in the "
                "replication column)\n",
                copies_recovering, servers_recovering);
  std::printf("%-5s %-8s %-16s %-22s %-22s %9s %11s  %s\n", "node", "state",
              "connection", "memcached", "fabric", "primaries", "secondaries",
              "replication");
  for (const repl::ServerInfo& s : m.servers()) {
    const repl::ServerStatus* ss = nullptr;
    for (const auto& x : st.servers)
      if (x.node_id == s.id) ss = &x;
    std::string conn = "unknown";
    std::string repl = "n/a";
    if (ss) {
      conn = (ss->connected ? "up " : "down ") + seconds(ss->since_ms);
      repl = ss->replication;
    }
    std::printf("%-5u %-8s %-16s %-22s %-22s %9u %11u  %s\n", s.id,
                repl::state_name(s.state), conn.c_str(),
                s.memcached_addr.c_str(), s.fabric_addr.c_str(),
                m.primary_count(s.id), m.secondary_count(s.id), repl.c_str());
  }
  print_heartbeats(st);
}

// Bytes as a C-style quoted string: printable ASCII as is, the rest
// escaped, so a binary value cannot garble the terminal or the parsing.
std::string quoted(std::string_view v) {
  std::string out = "\"";
  for (unsigned char c : v) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += char(c);
    } else if (c >= 0x20 && c < 0x7f) {
      out += char(c);
    } else {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", c);
      out += b;
    }
  }
  return out + "\"";
}

// One synchronous question to a data server's peer-mesh port.
rdma::Result<std::string> ask(rdma::Fabric& fabric, const repl::ServerInfo& s,
                              repl::PeerRpc type, std::string_view payload,
                              long timeout_ms) {
  auto hp = repl::parse_host_port(s.fabric_addr);
  if (!hp)
    return rdma::Status(rdma::Code::kInvalidArgument,
                        "node " + std::to_string(s.id), "fabric address",
                        hp.status().to_string());
  return repl::PeerMesh::request(fabric, hp->first, hp->second, type, payload,
                                 std::chrono::milliseconds(timeout_ms));
}

// get-replica: exit 0 when every replica answered (whether or not the
// copies agree; the last line says), 1 when one could not be asked.
int get_replica(rdma::Fabric& fabric, const repl::ClusterMap& m,
                const std::string& key, long timeout_ms) {
  uint32_t p = m.partition_of(key);
  auto reps = m.replicas_of(p);
  std::printf("key %s  partition %u  epoch %llu  copies %zu\n",
              quoted(key).c_str(), p, (unsigned long long)m.epoch(),
              reps.size());
  if (reps.empty()) {
    std::printf("partition %u has no replica (no server up)\n", p);
    return 1;
  }
  bool failed = false;
  std::vector<std::optional<repl::ReplicaItem>> copies;
  for (size_t i = 0; i < reps.size(); i++) {
    const repl::ServerInfo* s = m.server(reps[i]);
    const char* role = i == 0 ? "primary" : "secondary";
    std::printf("node %u %s %s ", reps[i], role,
                s ? s->fabric_addr.c_str() : "?");
    if (!s) {
      std::printf("error: not in the map\n");
      failed = true;
      continue;
    }
    auto r = ask(fabric, *s, repl::PeerRpc::kGetReplica, key, timeout_ms);
    if (!r) {
      std::printf("error: %s\n", r.status().to_string().c_str());
      failed = true;
      continue;
    }
    auto it = repl::inspect_wire::decode_replica(*r);
    if (!it) {
      std::printf("error: malformed reply (%zu bytes)\n", r->size());
      failed = true;
      continue;
    }
    copies.push_back(*it);
    if (!*it) {
      std::printf("miss\n");
      continue;
    }
    const repl::ReplicaItem& c = **it;
    std::printf("hit flags %" PRIu32 " cas %" PRIu64 " exptime %" PRId64
                " bytes %zu value %s\n",
                c.flags, c.cas, c.exptime, c.value.size(),
                quoted(c.value).c_str());
  }
  if (failed) {
    std::printf("replicas: unknown (not every replica answered)\n");
    return 1;
  }
  bool same = true;
  for (const auto& c : copies) same = same && c == copies[0];
  std::printf("replicas: %s\n", same ? "identical" : "differing");
  return 0;
}

// digest: exit 0 when every partition is identical on all its replicas,
// 1 otherwise (differing, or a replica could not be asked).
int digest(rdma::Fabric& fabric, const repl::ClusterMap& m, long timeout_ms) {
  const uint32_t np = m.partitions();
  std::map<uint32_t, std::vector<repl::PartitionDigest>> got;
  std::map<uint32_t, std::string> errors;
  std::string req = repl::inspect_wire::encode_digest_request(np);
  for (const repl::ServerInfo& s : m.servers()) {
    if (m.primary_count(s.id) + m.secondary_count(s.id) == 0) continue;
    auto r = ask(fabric, s, repl::PeerRpc::kDigest, req, timeout_ms);
    if (!r) {
      errors[s.id] = r.status().to_string();
      continue;
    }
    auto d = repl::inspect_wire::decode_digest(*r);
    if (!d || d->size() != np) {
      errors[s.id] = "malformed digest reply (" + std::to_string(r->size()) +
                     " bytes)";
      continue;
    }
    got[s.id] = std::move(*d);
  }
  for (const auto& [id, e] : errors)
    std::printf("node %u: error: %s\n", id, e.c_str());
  std::printf("epoch %llu  partitions %u  copies %u\n",
              (unsigned long long)m.epoch(), np, m.replicas());
  std::printf("%-9s %-10s  %s\n", "partition", "result",
              "node:items:hash per replica, primary first");
  uint32_t identical = 0, differing = 0, unknown = 0, unassigned = 0;
  for (uint32_t p = 0; p < np; p++) {
    auto reps = m.replicas_of(p);
    if (reps.empty()) {
      unassigned++;
      std::printf("%-9u %-10s\n", p, "unassigned");
      continue;
    }
    std::string cols;
    bool missing = false, same = true;
    const repl::PartitionDigest* first = nullptr;
    for (uint32_t n : reps) {
      char b[64];
      auto it = got.find(n);
      if (it == got.end()) {
        std::snprintf(b, sizeof b, " %u:?", n);
        missing = true;
      } else {
        const repl::PartitionDigest& d = it->second[p];
        std::snprintf(b, sizeof b, " %u:%" PRIu64 ":%016" PRIx64, n, d.count,
                      d.hash);
        if (first == nullptr)
          first = &d;
        else
          same = same && d == *first;
      }
      cols += b;
    }
    const char* result = missing ? "unknown" : same ? "identical" : "differing";
    (missing ? unknown : same ? identical : differing)++;
    std::printf("%-9u %-10s %s\n", p, result, cols.c_str());
  }
  std::printf("partitions: %u, identical: %u, differing: %u", np, identical,
              differing);
  if (unknown) std::printf(", unknown: %u", unknown);
  if (unassigned) std::printf(", unassigned: %u", unassigned);
  std::printf("\n");
  return identical == np ? 0 : 1;
}

const struct option kLongOpts[] = {
    {"meta", required_argument, nullptr, 'm'},
    {"fabric", required_argument, nullptr, 256},
    {"cluster-secret-file", required_argument, nullptr, 257},
    {"timeout", required_argument, nullptr, 't'},
    {"help", no_argument, nullptr, 'h'},
    {"version", no_argument, nullptr, 'V'},
    {nullptr, 0, nullptr, 0},
};

}  // namespace

int main(int argc, char** argv) {
  std::string meta = "127.0.0.1:11311";
  rdma::ProviderChoice provider = rdma::ProviderChoice::kAuto;
  long timeout_ms = 5000;
  std::string secret_file;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, ":m:t:hV", kLongOpts, nullptr)) != -1) {
    switch (c) {
      case 'm':
        meta = optarg;
        break;
      case 256: {
        std::string v = optarg;
        if (v == "auto")
          provider = rdma::ProviderChoice::kAuto;
        else if (v == "verbs")
          provider = rdma::ProviderChoice::kVerbs;
        else if (v == "tcp")
          provider = rdma::ProviderChoice::kTcp;
        else
          return usage_error("--fabric: '" + v +
                             "' is not one of auto, verbs, tcp");
        break;
      }
      case 257:
        if (!*optarg) return usage_error("--cluster-secret-file: empty file name");
        secret_file = optarg;
        break;
      case 't': {
        char* end = nullptr;
        timeout_ms = std::strtol(optarg, &end, 10);
        if (!*optarg || *end || timeout_ms <= 0 || timeout_ms > 3600000)
          return usage_error("--timeout: '" + std::string(optarg) +
                             "' is not a number of milliseconds (1-3600000)");
        break;
      }
      case 'h':
        print_usage(stdout);
        return 0;
      case 'V':
        std::printf("ftmemcached-ctl %s\n", PACKAGE_VERSION);
        return 0;
      case ':':
        return usage_error(std::string("option requires an argument: ") +
                           argv[optind - 1]);
      default:
        return usage_error(std::string("unknown option: ") +
                           argv[optind - 1]);
    }
  }
  if (optind >= argc) return usage_error("no command given");
  std::string cmd = argv[optind];
  std::string key;
  int nargs = 0;
  if (cmd == "get-replica")
    nargs = 1;
  else if (cmd != "status" && cmd != "digest")
    return usage_error("unknown command: " + cmd);
  if (argc - optind - 1 < nargs)
    return usage_error(cmd + ": missing argument KEY");
  if (argc - optind - 1 > nargs)
    return usage_error("unexpected argument: " +
                       std::string(argv[optind + 1 + nargs]));
  if (nargs) {
    key = argv[optind + 1];
    if (key.empty() || key.size() > 250)
      return usage_error(cmd + ": KEY must be 1 to 250 bytes");
  }
  auto hp = repl::parse_host_port(meta);
  if (!hp) return usage_error("--meta: " + hp.status().message());
  signal(SIGPIPE, SIG_IGN);

  rdma::FabricOptions fo;
  fo.provider = provider;
  // Loopback meta servers are reached from a loopback domain; otherwise the
  // provider picks the interface.
  if (hp->first == "localhost" || hp->first.rfind("127.", 0) == 0)
    fo.local_addr = "127.0.0.1";
  fo.identity = "ftmemcached-ctl";
  if (!rdma::apply_secret_option("ftmemcached-ctl", secret_file, &fo)) return EX_CONFIG;
  fo.connect_timeout = std::chrono::milliseconds(timeout_ms);
  fo.log = [](std::string_view) {};  // keep stdout/stderr for the answer
  auto fabric = rdma::Fabric::open(fo);
  if (!fabric) {
    std::fprintf(stderr, "ftmemcached-ctl: --fabric: %s\n",
                 fabric.status().to_string().c_str());
    return EX_UNAVAILABLE;
  }
  auto conn = (*fabric)->connect(hp->first, hp->second);
  if (!conn) {
    std::fprintf(stderr, "ftmemcached-ctl: cannot reach meta server %s: %s\n",
                 meta.c_str(), conn.status().to_string().c_str());
    return EX_UNAVAILABLE;
  }
  auto ch = repl::ControlChannel::open(**fabric, std::move(conn).value(),
                                       repl::kMaxMessageSize, 1);
  if (!ch) {
    std::fprintf(stderr, "ftmemcached-ctl: %s\n",
                 ch.status().to_string().c_str());
    return EX_UNAVAILABLE;
  }
  if (auto st = (*ch)->send(repl::StatusReqMsg{}, 1); !st) {
    std::fprintf(stderr, "ftmemcached-ctl: %s\n", st.to_string().c_str());
    return EX_UNAVAILABLE;
  }
  auto env = (*ch)->receive(std::chrono::milliseconds(timeout_ms));
  if (!env) {
    std::fprintf(stderr, "ftmemcached-ctl: status from %s: %s\n",
                 meta.c_str(), env.status().to_string().c_str());
    return EX_UNAVAILABLE;
  }
  if (auto* e = std::get_if<repl::ErrorMsg>(&env->msg)) {
    std::fprintf(stderr, "ftmemcached-ctl: meta server refused: %s\n",
                 e->text.c_str());
    return 1;
  }
  auto* st = std::get_if<repl::StatusMsg>(&env->msg);
  if (!st) {
    std::fprintf(stderr, "ftmemcached-ctl: unexpected %s from %s\n",
                 repl::msg_name(env->msg), meta.c_str());
    return 1;
  }
  if (cmd == "status") {
    print_status(*st);
    return 0;
  }
  ch->reset();  // the meta connection is no longer needed
  if (cmd == "get-replica")
    return get_replica(**fabric, st->map, key, timeout_ms);
  return digest(**fabric, st->map, timeout_ms);
}
