// ftmemcached-meta: the metadata server's entry point. Flags, then a
// MetaServer (replication/meta_server.h) until SIGINT/SIGTERM.
#include <getopt.h>
#include <signal.h>
#include <sysexits.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "config.h"
#include "rdma/secret_option.h"
#include "rdma/fabric_domain.h"
#include "replication/control_msg.h"
#include "replication/heartbeat.h"
#include "replication/meta_server.h"

namespace {

void print_usage(FILE* out) {
  std::fprintf(
      out,
      "Usage: ftmemcached-meta [options]\n"
      "The ftmemcached metadata server: keeps the cluster map and publishes "
      "it.\n"
      "-l, --listen=HOST:PORT    fabric address to listen on "
      "(default: 127.0.0.1:11311)\n"
      "-s, --state-dir=DIR       where the map is kept across restarts\n"
      "                          (default: ./ftm-meta-state)\n"
      "-r, --replicas=N          copies of each partition, 1-3 (default: 2,\n"
      "                          or the value in the state dir)\n"
      "-P, --partitions=P        partitions, fixed for the cluster's life\n"
      "                          (default: 1024, or the state dir's)\n"
      "    --fabric=auto|verbs|tcp  fabric provider (default: auto)\n"
      "    --cluster-secret-file=FILE  secret shared by the cluster (mode 600);\n"
      "                          without it any process reaching --listen may join\n"
      "    --heartbeat-interval=MS  how often data servers write their heartbeat\n"
      "                          (default: 5; 0: no heartbeats, no failure detection)\n"
      "    --detector-floor=MS   smallest margin the failure detector adds to a\n"
      "                          server's expected heartbeat interval (default: 100)\n"
      "    --sole-copy-hold-ms=MS  how long a suspected server that holds a partition's\n"
      "                          only complete copy and keeps its connection open\n"
      "                          waits before it is failed over (default: 5000; 0: none)\n"
      "    --suspicion-timeout-ms=MS  how long any other suspected server whose\n"
      "                          connection stays open waits before it is failed over;\n"
      "                          its heartbeat coming back clears it (default: 1000; 0: none)\n"
      "    --bootstrap-servers=N  joins rebalance primaries until N servers have\n"
      "                          joined; later joins take secondaries only (default: 3)\n"
      "    --spawn-cmd=TEMPLATE  on a failure with no spare, run TEMPLATE with /bin/sh -c\n"
      "                          to start a replacement (%%n node id, %%m meta address,\n"
      "                          %%a %%h %%p %%f the failed server's addresses, %%%% a %%;\n"
      "                          see ftmemcached-meta(1)); default: none\n"
      "-v, --verbose             log every control message\n"
      "-h, --help                print this help and exit\n"
      "-V, --version             print version and exit\n");
}

int usage_error(const std::string& msg) {
  std::fprintf(stderr, "ftmemcached-meta: %s\n", msg.c_str());
  print_usage(stderr);
  return EX_USAGE;
}

// Integer in [lo, hi], or false.
bool parse_uint(const char* s, unsigned long lo, unsigned long hi,
                uint32_t* out) {
  if (!s || !*s || *s == '-') return false;
  char* end = nullptr;
  errno = 0;
  unsigned long v = std::strtoul(s, &end, 10);
  if (errno || *end || v < lo || v > hi) return false;
  *out = uint32_t(v);
  return true;
}

enum { kOptFabric = 256, kOptHeartbeatInterval, kOptDetectorFloor, kOptBootstrap,
       kOptClusterSecret, kOptSpawnCmd, kOptSoleCopyHold, kOptSuspicionTimeout };

const struct option kLongOpts[] = {
    {"listen", required_argument, nullptr, 'l'},
    {"state-dir", required_argument, nullptr, 's'},
    {"replicas", required_argument, nullptr, 'r'},
    {"partitions", required_argument, nullptr, 'P'},
    {"fabric", required_argument, nullptr, kOptFabric},
    {"heartbeat-interval", required_argument, nullptr, kOptHeartbeatInterval},
    {"detector-floor", required_argument, nullptr, kOptDetectorFloor},
    {"bootstrap-servers", required_argument, nullptr, kOptBootstrap},
    {"cluster-secret-file", required_argument, nullptr, kOptClusterSecret},
    {"spawn-cmd", required_argument, nullptr, kOptSpawnCmd},
    {"sole-copy-hold-ms", required_argument, nullptr, kOptSoleCopyHold},
    {"suspicion-timeout-ms", required_argument, nullptr, kOptSuspicionTimeout},
    {"verbose", no_argument, nullptr, 'v'},
    {"help", no_argument, nullptr, 'h'},
    {"version", no_argument, nullptr, 'V'},
    {nullptr, 0, nullptr, 0},
};

}  // namespace

int main(int argc, char** argv) {
  using namespace ftm;
  repl::MetaServerOptions mo;
  mo.state_dir = "./ftm-meta-state";
  std::string listen = "127.0.0.1:11311";
  rdma::ProviderChoice provider = rdma::ProviderChoice::kAuto;
  std::string secret_file;

  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, ":l:s:r:P:vhV", kLongOpts, nullptr)) !=
         -1) {
    switch (c) {
      case 'l':
        listen = optarg;
        break;
      case 's':
        if (!*optarg) return usage_error("--state-dir: empty directory name");
        mo.state_dir = optarg;
        break;
      case 'r':
        if (!parse_uint(optarg, 1, repl::ClusterMap::kMaxReplicas,
                        &mo.replicas))
          return usage_error("--replicas: '" + std::string(optarg) +
                             "' is not a number from 1 to 3");
        break;
      case 'P':
        if (!parse_uint(optarg, 1, repl::ClusterMap::kMaxPartitions,
                        &mo.partitions))
          return usage_error("--partitions: '" + std::string(optarg) +
                             "' is not a number from 1 to " +
                             std::to_string(repl::ClusterMap::kMaxPartitions));
        break;
      case kOptFabric: {
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
      case kOptHeartbeatInterval:
      case kOptDetectorFloor: {
        uint32_t ms = 0;
        bool hb = c == kOptHeartbeatInterval;
        if (!parse_uint(optarg, hb ? 0 : 1, 60000, &ms))
          return usage_error(std::string(hb ? "--heartbeat-interval" : "--detector-floor") +
                             ": '" + optarg + "' is not a number of milliseconds from " +
                             (hb ? "0" : "1") + " to 60000");
        (hb ? mo.heartbeat_interval : mo.detector_floor) = std::chrono::milliseconds(ms);
        break;
      }
      case kOptSoleCopyHold:
      case kOptSuspicionTimeout: {
        const bool sole = c == kOptSoleCopyHold;
        uint32_t ms = 0;
        if (!parse_uint(optarg, 0, 600000, &ms))
          return usage_error(std::string(sole ? "--sole-copy-hold-ms" : "--suspicion-timeout-ms") +
                             ": '" + optarg + "' is not a number of milliseconds from 0 to 600000");
        (sole ? mo.sole_copy_hold : mo.suspicion_timeout) = std::chrono::milliseconds(ms);
        break;
      }
      case kOptBootstrap:
        if (!parse_uint(optarg, 0, repl::ClusterMap::kMaxServers, &mo.bootstrap_servers))
          return usage_error("--bootstrap-servers: '" + std::string(optarg) +
                             "' is not a number from 0 to " +
                             std::to_string(repl::ClusterMap::kMaxServers));
        break;
      case kOptClusterSecret:
        if (!*optarg) return usage_error("--cluster-secret-file: empty file name");
        secret_file = optarg;
        break;
      case kOptSpawnCmd:
        if (auto t = repl::expand_spawn_template(optarg, repl::SpawnVars{}); !t)
          return usage_error(t.status().message());
        mo.spawn_cmd = optarg;
        break;
      case 'v':
        mo.verbose = true;
        break;
      case 'h':
        print_usage(stdout);
        return 0;
      case 'V':
        std::printf("ftmemcached-meta %s\n", PACKAGE_VERSION);
        return 0;
      case ':':
        return usage_error(std::string("option requires an argument: ") +
                           argv[optind - 1]);
      default:
        return usage_error(std::string("unknown option: ") +
                           argv[optind - 1]);
    }
  }
  if (optind < argc)
    return usage_error(std::string("unexpected argument: ") + argv[optind]);
  auto hp = repl::parse_host_port(listen);
  if (!hp) return usage_error("--listen: " + hp.status().message());
  mo.listen_host = hp->first;
  mo.listen_port = hp->second;

  // Signals go to sigwait below, not to whichever thread happens to run.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // Every thread of this process real-time (SCHED_FIFO 1, best effort;
  // threads inherit it), not only the scan and the fabric's progress
  // thread: heartbeats land through the progress thread, which shares locks
  // with accepting and closing a connection (an ftmemcached-ctl status, a
  // data server joining): the domain's event-queue lock
  // (rdma/domain_internal.h) and the provider's own. A normal-priority thread
  // preempted while holding one held the progress thread up for over
  // 100 ms on a loaded 2-core host, and servers were suspected
  // (t/test_detector.py, test_status_polling_under_load_causes_no_suspicion).
  // Every thread here sleeps almost all the time.
  repl::raise_to_realtime();
  rdma::FabricOptions fo;
  fo.provider = provider;
  // The domain must sit on the interface we listen on; a wildcard listen
  // leaves the choice to the provider.
  if (mo.listen_host != "0.0.0.0" && mo.listen_host != "::")
    fo.local_addr = mo.listen_host;
  fo.identity = "ftmemcached-meta@" + listen;
  // Already real-time through the line above when permitted; kept so the
  // progress thread is real-time however main() changes.
  fo.realtime_progress = true;
  if (!rdma::apply_secret_option("ftmemcached-meta", secret_file, &fo)) return EX_CONFIG;
  auto fabric = rdma::Fabric::open(fo);
  if (!fabric) {
    std::fprintf(stderr, "ftmemcached-meta: --fabric: %s\n",
                 fabric.status().to_string().c_str());
    return EX_UNAVAILABLE;
  }
  mo.log = [](std::string_view line) {
    std::fprintf(stderr, "%.*s\n", int(line.size()), line.data());
    std::fflush(stderr);
  };
  auto ms = repl::MetaServer::start(**fabric, mo);
  if (!ms) {
    std::fprintf(stderr, "ftmemcached-meta: %s\n",
                 ms.status().to_string().c_str());
    return ms.status().code() == repl::ClusterErrc::kInvalidArgument
               ? EX_USAGE
               : EX_UNAVAILABLE;
  }
  auto map = (*ms)->map();
  std::fprintf(stderr,
               "ftmemcached-meta: listening on %s:%u (provider %s), state dir "
               "%s, epoch %llu, %u partitions, %u copies\n",
               mo.listen_host.c_str(), unsigned((*ms)->port()),
               (*fabric)->provider().c_str(), mo.state_dir.c_str(),
               (unsigned long long)map->epoch(), map->partitions(),
               map->replicas());
  std::fflush(stderr);

  int sig = 0;
  sigwait(&sigs, &sig);
  std::fprintf(stderr, "ftmemcached-meta: %s, stopping\n", strsignal(sig));
  (*ms)->stop();
  return 0;
}
