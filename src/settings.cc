// Command-line parsing: memcached 1.6's flags (memcached.c main()), with its
// defaults, long names and range checks, but strict: a value that is not a
// number where a number is expected is an error (memcached silently uses
// atoi's 0). Every usage error exits with EX_USAGE (64).
#include "src/settings.h"

#include <getopt.h>
#include <sysexits.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <string>
#include <string_view>

namespace ftm {
namespace {

constexpr int kOptFabricInfo = 256;
constexpr int kOptMeta = 257;
constexpr int kOptNodeId = 258;
constexpr int kOptFabric = 259;
constexpr int kOptFabricListen = 260;
constexpr int kOptRingSize = 261;
constexpr int kOptFabricProgress = 262;
constexpr int kOptFailoverWait = 263;
constexpr int kOptClusterSecret = 264;
constexpr int kOptSpare = 270;
constexpr int kOptRecoveryRate = 271;

const char kShortOpts[] = ":p:U:s:a:Al:dru:m:Mc:kvhiVP:f:n:LD:t:R:Cb:B:I:SFXWY:e:Zo:N:";

const struct option kLongOpts[] = {
    {"port", required_argument, nullptr, 'p'},
    {"udp-port", required_argument, nullptr, 'U'},
    {"unix-socket", required_argument, nullptr, 's'},
    {"unix-mask", required_argument, nullptr, 'a'},
    {"enable-shutdown", no_argument, nullptr, 'A'},
    {"listen", required_argument, nullptr, 'l'},
    {"daemon", no_argument, nullptr, 'd'},
    {"enable-coredumps", no_argument, nullptr, 'r'},
    {"user", required_argument, nullptr, 'u'},
    {"memory-limit", required_argument, nullptr, 'm'},
    {"disable-evictions", no_argument, nullptr, 'M'},
    {"conn-limit", required_argument, nullptr, 'c'},
    {"lock-memory", no_argument, nullptr, 'k'},
    {"verbose", no_argument, nullptr, 'v'},
    {"help", no_argument, nullptr, 'h'},
    {"license", no_argument, nullptr, 'i'},
    {"version", no_argument, nullptr, 'V'},
    {"pidfile", required_argument, nullptr, 'P'},
    {"slab-growth-factor", required_argument, nullptr, 'f'},
    {"slab-min-size", required_argument, nullptr, 'n'},
    {"enable-largepages", no_argument, nullptr, 'L'},
    {"threads", required_argument, nullptr, 't'},
    {"max-reqs-per-event", required_argument, nullptr, 'R'},
    {"disable-cas", no_argument, nullptr, 'C'},
    {"listen-backlog", required_argument, nullptr, 'b'},
    {"protocol", required_argument, nullptr, 'B'},
    {"max-item-size", required_argument, nullptr, 'I'},
    {"enable-sasl", no_argument, nullptr, 'S'},
    {"disable-flush-all", no_argument, nullptr, 'F'},
    {"disable-dumping", no_argument, nullptr, 'X'},
    {"disable-watch", no_argument, nullptr, 'W'},
    {"auth-file", required_argument, nullptr, 'Y'},
    {"memory-file", required_argument, nullptr, 'e'},
    {"enable-ssl", no_argument, nullptr, 'Z'},
    {"extended", required_argument, nullptr, 'o'},
    {"napi-ids", required_argument, nullptr, 'N'},
    {"napi_ids", required_argument, nullptr, 'N'},
    {"fabric-info", no_argument, nullptr, kOptFabricInfo},
    {"meta", required_argument, nullptr, kOptMeta},
    {"node-id", required_argument, nullptr, kOptNodeId},
    {"fabric", required_argument, nullptr, kOptFabric},
    {"fabric-listen", required_argument, nullptr, kOptFabricListen},
    {"replication-ring-size", required_argument, nullptr, kOptRingSize},
    {"cluster-secret-file", required_argument, nullptr, kOptClusterSecret},
    {"fabric-progress", required_argument, nullptr, kOptFabricProgress},
    {"failover-wait-ms", required_argument, nullptr, kOptFailoverWait},
    {"spare", no_argument, nullptr, kOptSpare},
    {"recovery-rate-mb", required_argument, nullptr, kOptRecoveryRate},
    {nullptr, 0, nullptr, 0},
};

const char* long_name(int c) {
  for (const struct option* o = kLongOpts; o->name != nullptr; ++o) {
    if (o->val == c) return o->name;
  }
  return "?";
}

// "-p (--port)" for messages.
std::string flag_name(int c) {
  if (c >= 256) return std::string("--") + long_name(c);
  return std::string("-") + static_cast<char>(c) + " (--" + long_name(c) + ")";
}

ParseOutcome usage_error(const std::string& msg) {
  fprintf(stderr, "ftmemcached: %s\n", msg.c_str());
  print_usage(stderr);
  return {true, EX_USAGE};
}

ParseOutcome range_error(const char* msg) {
  fprintf(stderr, "%s\n", msg);
  return {true, EX_USAGE};
}

bool parse_long(const char* s, int base, long long* out) {
  if (s == nullptr || *s == '\0') return false;
  errno = 0;
  char* end = nullptr;
  long long v = strtoll(s, &end, base);
  if (errno != 0 || *end != '\0') return false;
  *out = v;
  return true;
}

// Integer in [lo, hi]; false on garbage or out of range.
bool parse_int(const char* s, long long lo, long long hi, int* out) {
  long long v;
  if (!parse_long(s, 10, &v) || v < lo || v > hi) return false;
  *out = static_cast<int>(v);
  return true;
}

// -I: bytes, with an optional k/K or m/M suffix (memcached's form).
bool parse_item_size(const char* s, long long* out) {
  std::string v(s);
  long long mult = 1;
  if (!v.empty()) {
    char unit = v.back();
    if (unit == 'k' || unit == 'K') mult = 1024;
    if (unit == 'm' || unit == 'M') mult = 1024 * 1024;
    if (mult != 1) v.pop_back();
  }
  long long n;
  if (!parse_long(v.c_str(), 10, &n) || n < 0 || n > (1LL << 40)) return false;
  *out = n * mult;
  return true;
}

ParseOutcome bad_value(int c, const char* arg) {
  return usage_error("invalid value for " + flag_name(c) + ": '" + std::string(arg) + "'");
}

// For flags that take one word of a fixed list (--fabric, --fabric-progress):
// stores `arg` in *out (and returns "go on"), or says which words were
// expected.
ParseOutcome one_of(int c, const char* arg, std::initializer_list<const char*> words,
                    std::string* out) {
  std::string expected;
  for (const char* w : words) {
    if (strcmp(arg, w) == 0) {
      *out = arg;
      return {};
    }
    expected += expected.empty() ? w : (std::string(", ") + w);
  }
  size_t last = expected.rfind(", ");
  if (last != std::string::npos) expected.replace(last, 2, " or ");
  return usage_error("invalid value for " + flag_name(c) + ": '" + arg + "' (expected " +
                     expected + ")");
}

// memcached's -o suboptions that only tune its slab allocator, LRU
// maintainer or logger: accepted and ignored (ftmemcached has none of them).
bool is_ignored_suboption(std::string_view key) {
  static const char* const kIgnored[] = {
      "hash_algorithm", "no_lru_maintainer", "lru_maintainer", "hot_lru_pct",
      "warm_lru_pct", "hot_max_factor", "warm_max_factor", "temporary_ttl",
      "slab_chunk_max", "watcher_logbuf_size", "worker_logbuf_size", "track_sizes",
      "no_hashexpand", "slab_reassign", "no_slab_reassign", "slab_automove",
      "slab_automove_ratio", "slab_automove_window", "slab_automove_freeratio",
      "lru_segmented", "no_lru_segmented", "inline_ascii_resp", "no_inline_ascii_resp",
      "sock_cookie_id", "drop_privileges", "no_drop_privileges",
      "resp_obj_mem_limit", "large_memory_pages",
  };
  for (const char* k : kIgnored) {
    if (key == k) return true;
  }
  return false;
}

ParseOutcome parse_suboptions(const char* arg, Settings* s) {
  std::string_view rest(arg);
  while (!rest.empty()) {
    size_t comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    if (item.empty()) continue;
    size_t eq = item.find('=');
    std::string key(item.substr(0, eq));
    std::string value = eq == std::string_view::npos ? std::string() : std::string(item.substr(eq + 1));
    bool has_value = eq != std::string_view::npos;
    auto need_int = [&](long long lo, long long hi, int* out) -> bool {
      return has_value && parse_int(value.c_str(), lo, hi, out);
    };
    auto bad = [&]() {
      return usage_error("-o " + key + ": invalid or missing value '" + value + "'");
    };
    if (key == "maxconns_fast") {
      s->maxconns_fast = true;
    } else if (key == "no_maxconns_fast") {
      s->maxconns_fast = false;
    } else if (key == "hashpower") {
      int hp;
      if (!need_int(0, 1000, &hp)) return bad();
      if (hp < 12) {
        return usage_error("-o hashpower: Initial hashtable multiplier of " + value + " is too low");
      }
      if (hp > 32) {
        return usage_error("-o hashpower: Initial hashtable multiplier of " + value + " is too high");
      }
      s->hashpower_init = hp;  // accepted; the store sizes its own table
    } else if (key == "tail_repair_time") {
      if (!need_int(0, 1 << 30, &s->tail_repair_time)) return bad();
    } else if (key == "lru_crawler") {
      s->lru_crawler = true;
    } else if (key == "no_lru_crawler") {
      s->lru_crawler = false;
    } else if (key == "lru_crawler_sleep") {
      if (!need_int(0, 1000000, &s->lru_crawler_sleep)) return bad();
    } else if (key == "lru_crawler_tocrawl") {
      if (!need_int(0, 1 << 30, &s->lru_crawler_tocrawl)) return bad();
    } else if (key == "idle_timeout") {
      if (!need_int(0, 1 << 30, &s->idle_timeout)) return bad();
    } else if (key == "read_buf_mem_limit") {
      int mb;
      if (!need_int(0, 1 << 20, &mb)) return bad();
      s->read_buf_limit = static_cast<size_t>(mb);
    } else if (key == "modern" || key == "no_modern") {
      // memcached 1.6: "modern" enables nothing; "no_modern" reverts to
      // 1.4.x slab/LRU defaults, which do not exist here.
    } else if (key.rfind("ext_", 0) == 0 || key.rfind("ssl_", 0) == 0) {
      return usage_error("-o " + key + ": extstore and TLS are not supported");
    } else if (is_ignored_suboption(key)) {
      // accepted for compatibility
    } else {
      fprintf(stderr, "Illegal suboption \"%s\"\n", key.c_str());
      print_usage(stderr);
      return {true, EX_USAGE};
    }
  }
  return {};
}

void print_license(FILE* out) {
  fputs(
      "ftmemcached: a fault-tolerant, drop-in replacement for memcached.\n"
      "It follows the protocol of memcached (Copyright (c) 2003, Danga\n"
      "Interactive, Inc.; BSD 3-clause licence) and links libevent\n"
      "(Copyright (c) 2000-2007 Niels Provos, 2007-2012 Niels Provos and Nick\n"
      "Mathewson; BSD 3-clause licence).\n",
      out);
}

}  // namespace

void print_usage(FILE* out) {
  fprintf(out, "ftmemcached %s (memcached %s compatible)\n", kFtmVersion, kMemcachedCompatVersion);
  fputs(
      "-p, --port=<num>          TCP port to listen on (default: 11211, 0: off)\n"
      "-U, --udp-port=<num>      UDP port to listen on (default: 0, off)\n"
      "-s, --unix-socket=<file>  UNIX socket to listen on (disables network support)\n"
      "-a, --unix-mask=<mask>    access mask for UNIX socket, in octal (default: 700)\n"
      "-A, --enable-shutdown     enable ascii \"shutdown\" command\n"
      "-l, --listen=<addr>       interface to listen on (default: 127.0.0.1;\n"
      "                          memcached's default is INADDR_ANY)\n"
      "                          a comma separated list, each <addr> or <addr>:<port>\n"
      "-d, --daemon              run as a daemon\n"
      "-r, --enable-coredumps    maximize core file limit\n"
      "-u, --user=<user>         assume identity of <username> (only when run as root)\n"
      "-m, --memory-limit=<num>  item memory in megabytes (default: 64)\n"
      "-M, --disable-evictions   return error on memory exhausted instead of evicting\n"
      "-c, --conn-limit=<num>    max simultaneous connections (default: 1024)\n"
      "-k, --lock-memory         lock down all paged memory\n"
      "-v, --verbose             verbose (print errors/warnings while in event loop)\n"
      "-vv                       very verbose (also print client commands/responses)\n"
      "-vvv                      same as -vv\n"
      "-h, --help                print this help and exit\n"
      "-i, --license             print licence information and exit\n"
      "-V, --version             print version and exit\n"
      "-P, --pidfile=<file>      save PID in <file>\n"
      "-f, --slab-growth-factor=<num> accepted for compatibility (default: 1.25)\n"
      "-n, --slab-min-size=<bytes> accepted for compatibility (default: 48)\n"
      "-L, --enable-largepages   accepted for compatibility\n"
      "-D <char>                 accepted for compatibility (per-prefix stats delimiter)\n"
      "-t, --threads=<num>       number of worker threads to use (default: 4)\n"
      "-R, --max-reqs-per-event  maximum number of requests per event, limits the\n"
      "                          requests processed per connection to prevent\n"
      "                          starvation (default: 20)\n"
      "-C, --disable-cas         disable use of CAS\n"
      "-b, --listen-backlog=<num> set the backlog queue limit (default: 1024)\n"
      "-B, --protocol=<name>     protocol - one of ascii, binary, or auto (default: auto)\n"
      "-I, --max-item-size=<num> adjusts max item size\n"
      "                          (default: 1m, min: 1k, max: 1024m)\n"
      "-S, --enable-sasl         turn on Sasl authentication (binary protocol only)\n"
      "-F, --disable-flush-all   disable flush_all command\n"
      "-X, --disable-dumping     accepted for compatibility\n"
      "-W, --disable-watch       accepted for compatibility\n"
      "-Y, --auth-file=<file>    enable ASCII protocol authentication. format:\n"
      "                          user:pass\\nuser2:pass2\\n\n"
      "    --fabric-info         list the usable libfabric providers and exit\n"
      "    --meta=<host:port>    join the cluster of this metadata server\n"
      "                          (ftmemcached-meta); without it: standalone\n"
      "    --node-id=<num>       this server's node id (default: assigned by the\n"
      "                          metadata server)\n"
      "    --fabric=<name>       fabric provider between servers: auto, verbs or tcp\n"
      "                          (default: auto = verbs if a device exists, else tcp)\n"
      "    --fabric-progress=<mode> how fabric threads wait: poll (spin while work\n"
      "                          is outstanding), block (sleep at once), or auto\n"
      "                          (default: poll on verbs, block on tcp)\n"
      "    --fabric-listen=<host[:port]> fabric address other servers reach this\n"
      "                          one at (default: the first -l address, any port)\n"
      "    --failover-wait-ms=<num> how long a request for a partition whose\n"
      "                          primary failed waits for the new one before it\n"
      "                          gets SERVER_ERROR (default: 1000)\n"
      "    --cluster-secret-file=<file> secret shared by the cluster (mode 600):\n"
      "                          every fabric connection proves it; without it\n"
      "                          any process reaching the fabric address may join\n"
      "    --replication-ring-size=<num> bytes of each replication log ring this\n"
      "                          server asks its secondaries for (k/m suffix; default:\n"
      "                          8m, or 4 x -I + 64k if larger; min: 2 x -I + 4k)\n"
      "    --spare               join as a spare: hold no partitions until the\n"
      "                          metadata server gives it a failed server's roles\n"
      "    --recovery-rate-mb=<num> recovery bandwidth limit: MB/s this server reads\n"
      "                          snapshots at when it recovers partitions (default:\n"
      "                          0, unlimited)\n"
      "-o, --extended            comma separated list of extended options\n"
      "   - maxconns_fast:       immediately close new connections after limit (default: enabled)\n"
      "   - hashpower:           accepted and ignored (the table is pre-partitioned)\n"
      "   - idle_timeout:        timeout for idle connections, seconds (default: 0, no timeout)\n"
      "   - lru_crawler:         run the background expiry sweeper (default)\n"
      "   - no_lru_crawler:      disable the background expiry sweeper\n"
      "   - read_buf_mem_limit:  accepted (megabytes, 0 means unlimited)\n"
      "   - modern, no_modern:   accepted; other slab/LRU tuning options are accepted\n"
      "                          and ignored\n",
      out);
}

namespace {

int parse_port(const std::string& s) {
  int p;
  return parse_int(s.c_str(), 1, 65535, &p) ? p : -1;
}

}  // namespace

bool split_listen(const std::string& spec, int default_port, std::vector<ListenAddr>* out) {
  size_t pos = 0;
  while (pos <= spec.size()) {
    size_t end = spec.find_first_of(",; ", pos);
    if (end == std::string::npos) end = spec.size();
    std::string item = spec.substr(pos, end - pos);
    pos = end + 1;
    if (item.empty()) continue;
    int port = default_port;
    std::string host = item;
    if (item[0] == '[') {
      size_t close = item.find(']');
      if (close == std::string::npos) return false;
      host = item.substr(1, close - 1);
      if (close + 1 < item.size()) {
        if (item[close + 1] != ':') return false;
        port = parse_port(item.substr(close + 2));
      }
    } else if (std::count(item.begin(), item.end(), ':') == 1) {
      size_t colon = item.find(':');
      host = item.substr(0, colon);
      port = parse_port(item.substr(colon + 1));
    }
    if (port < 0) return false;
    out->push_back({host, port});
  }
  return true;
}

ParseOutcome parse_settings(int argc, char** argv, Settings* s) {
  opterr = 0;  // we print our own one-line messages
  optind = 1;
  bool item_size_given = false;
  bool protocol_given = false;
  bool listen_given = false;
  long long item_size = 0;
  int c;
  int long_index = -1;
  while ((c = getopt_long(argc, argv, kShortOpts, kLongOpts, &long_index)) != -1) {
    const char* arg = optarg;
    switch (c) {
      case 'p':
        if (!parse_int(arg, 0, 65535, &s->port)) return bad_value(c, arg);
        break;
      case 'U':
        if (!parse_int(arg, 0, 65535, &s->udp_port)) return bad_value(c, arg);
        break;
      case 's':
        s->socket_path = arg;
        break;
      case 'a': {
        long long mode;
        if (!parse_long(arg, 8, &mode) || mode < 0 || mode > 07777) return bad_value(c, arg);
        s->socket_access = static_cast<int>(mode);
        break;
      }
      case 'A':
        s->shutdown_command = true;
        break;
      case 'l':
        // memcached: several -l flags add up, like one comma-separated list.
        s->listen = listen_given ? s->listen + "," + arg : std::string(arg);
        listen_given = true;
        break;
      case 'd':
        s->daemonize = true;
        break;
      case 'r':
        s->core_dumps = true;
        break;
      case 'u':
        s->username = arg;
        break;
      case 'm': {
        long long mb;
        if (!parse_long(arg, 10, &mb) || mb < 0 || mb > (1LL << 30)) return bad_value(c, arg);
        s->max_bytes = static_cast<size_t>(mb) << 20;
        break;
      }
      case 'M':
        s->evict_to_free = false;
        break;
      case 'c':
        if (!parse_int(arg, -(1LL << 30), 1 << 30, &s->max_conns)) return bad_value(c, arg);
        if (s->max_conns <= 0) {
          return usage_error(flag_name(c) + ": Maximum connections must be greater than 0");
        }
        break;
      case 'k':
        s->lock_memory = true;
        break;
      case 'v':
        s->verbose++;
        break;
      case 'h':
        print_usage(stdout);
        return {true, 0};
      case 'i':
        print_license(stdout);
        return {true, 0};
      case 'V':
        printf("ftmemcached %s (memcached %s compatible)\n", kFtmVersion, kMemcachedCompatVersion);
        return {true, 0};
      case 'P':
        s->pid_file = arg;
        break;
      case 'f': {
        char* end = nullptr;
        errno = 0;
        double f = strtod(arg, &end);
        if (errno != 0 || *end != '\0') return bad_value(c, arg);
        if (f <= 1.0) {
          return usage_error(flag_name(c) + ": Factor must be greater than 1");
        }
        s->growth_factor = f;
        break;
      }
      case 'n':
        if (!parse_int(arg, 1, 1 << 30, &s->chunk_size)) return bad_value(c, arg);
        break;
      case 'L':
        s->large_pages = true;
        break;
      case 'D':
        if (arg[0] == '\0') {  // memcached uses the first character
          return usage_error(flag_name(c) + ": No delimiter specified");
        }
        s->prefix_delimiter = arg[0];
        s->detail_enabled = true;
        break;
      case 't':
        if (!parse_int(arg, -(1LL << 30), 1 << 30, &s->num_threads)) return bad_value(c, arg);
        if (s->num_threads <= 0) {
          return usage_error(flag_name(c) + ": Number of threads must be greater than 0");
        }
        if (s->num_threads > 256) {
          return usage_error(flag_name(c) + ": at most 256 worker threads are supported");
        }
        if (s->num_threads > 64) {
          fprintf(stderr,
                  "WARNING: Setting a high number of worker threads is not recommended.\n"
                  " Set this value to the number of cores in your machine or less.\n");
        }
        break;
      case 'R':
        if (!parse_int(arg, -(1LL << 30), 1 << 30, &s->reqs_per_event)) return bad_value(c, arg);
        if (s->reqs_per_event <= 0) {
          return usage_error(flag_name(c) +
                             ": Number of requests per event must be greater than 0");
        }
        break;
      case 'C':
        s->use_cas = false;
        break;
      case 'b':
        if (!parse_int(arg, 1, 1 << 30, &s->backlog)) return bad_value(c, arg);
        break;
      case 'B':
        protocol_given = true;
        if (strcmp(arg, "auto") == 0) {
          s->protocol = BindingProtocol::kAuto;
        } else if (strcmp(arg, "ascii") == 0) {
          s->protocol = BindingProtocol::kAscii;
        } else if (strcmp(arg, "binary") == 0) {
          s->protocol = BindingProtocol::kBinary;
        } else {
          return usage_error(flag_name(c) + ": Invalid value for binding protocol: " +
                             std::string(arg) + " -- should be one of auto, binary, or ascii");
        }
        break;
      case 'I':
        if (!parse_item_size(arg, &item_size)) return bad_value(c, arg);
        item_size_given = true;
        break;
      case 'S':
        s->sasl = true;
        break;
      case 'F':
        s->flush_enabled = false;
        break;
      case 'X':
        s->dump_enabled = false;
        break;
      case 'W':
        s->watch_enabled = false;
        break;
      case 'Y':
        s->auth_file = arg;
        break;
      case 'e':
        return usage_error(flag_name(c) + ": memory files (restartable cache) are not supported");
      case 'Z':
        return usage_error(flag_name(c) + ": TLS is not supported");
      case 'N':
        return usage_error(flag_name(c) + ": NAPI ids are not supported");
      case 'o': {
        ParseOutcome r = parse_suboptions(arg, s);
        if (r.exit) return r;
        break;
      }
      case kOptFabricInfo:
        s->fabric_info = true;
        break;
      case kOptMeta: {
        std::vector<ListenAddr> a;
        if (!split_listen(arg, 0, &a) || a.size() != 1 || a[0].port == 0 || a[0].host.empty()) {
          return usage_error("invalid value for " + flag_name(c) + ": '" + arg +
                             "' (expected HOST:PORT)");
        }
        s->meta_host = a[0].host;
        s->meta_port = a[0].port;
        break;
      }
      case kOptNodeId: {
        int id;
        if (!parse_int(arg, 1, INT32_MAX, &id)) {
          return usage_error("invalid value for " + flag_name(c) + ": '" + arg +
                             "' (expected a number >= 1)");
        }
        s->node_id = static_cast<uint32_t>(id);
        break;
      }
      case kOptFabric:
        if (ParseOutcome r = one_of(c, arg, {"auto", "verbs", "tcp"}, &s->fabric); r.exit)
          return r;
        break;
      case kOptFabricProgress:
        if (ParseOutcome r = one_of(c, arg, {"auto", "poll", "block"}, &s->fabric_progress);
            r.exit)
          return r;
        break;
      case kOptFailoverWait:
        if (!parse_int(arg, 0, 3600000, &s->failover_wait_ms)) return bad_value(c, arg);
        break;
      case kOptSpare:
        s->spare = true;
        break;
      case kOptRecoveryRate: {
        char* end = nullptr;
        errno = 0;
        double v = std::strtod(arg, &end);
        if (errno != 0 || end == arg || *end != '\0' || !(v >= 0) || v > 1e6)
          return usage_error("invalid value for " + flag_name(c) + ": '" + arg +
                             "' (expected MB/s, a number from 0 = unlimited to 1000000)");
        s->recovery_rate_mb = v;
        break;
      }
      case kOptRingSize: {
        long long v = 0;
        if (!parse_item_size(arg, &v) || v <= 0) return bad_value(c, arg);
        s->replication_ring_size = static_cast<size_t>(v);
        break;
      }
      case kOptClusterSecret:
        if (!*arg) return usage_error("--cluster-secret-file: empty file name");
        s->cluster_secret_file = arg;
        break;
      case kOptFabricListen: {
        std::vector<ListenAddr> a;
        if (!split_listen(arg, 0, &a) || a.size() != 1 || a[0].host.empty()) {
          return usage_error("invalid value for " + flag_name(c) + ": '" + arg +
                             "' (expected HOST or HOST:PORT)");
        }
        s->fabric_host = a[0].host;
        s->fabric_port = a[0].port;
        break;
      }
      case ':': {  // missing argument (kShortOpts starts with ':')
        const char* bad = argv[optind - 1];
        if (bad[0] == '-' && bad[1] == '-') {
          return usage_error(std::string("option '") + bad + "' requires an argument");
        }
        return usage_error(std::string("option requires an argument -- '") +
                           static_cast<char>(optopt) + "'");
      }
      default: {
        const char* bad = argv[optind - 1];
        if (bad[0] == '-' && bad[1] == '-') {
          if (optopt != 0) {
            return usage_error(std::string("option '") + bad + "' doesn't allow an argument");
          }
          return usage_error(std::string("unrecognized option '") + bad + "'");
        }
        return usage_error(std::string("invalid option -- '") + static_cast<char>(optopt) + "'");
      }
    }
  }
  std::vector<ListenAddr> addrs;
  if (!split_listen(s->listen, s->port, &addrs)) {
    return usage_error("invalid value for " + flag_name('l') + ": '" + s->listen + "'");
  }
  if (optind < argc) {
    return usage_error(std::string("unexpected argument '") + argv[optind] + "'");
  }
  if (item_size_given) {
    // memcached 1.6.18's checks and messages, in its order.
    if (item_size < 1024) return range_error("Item max size cannot be less than 1024 bytes.");
    if (static_cast<unsigned long long>(item_size) > s->max_bytes / 2) {
      return range_error("Cannot set item size limit higher than 1/2 of memory max.");
    }
    if (item_size > 1024LL * 1024 * 1024) {
      return range_error("Cannot set item size limit higher than a gigabyte.");
    }
    s->item_size_max = static_cast<size_t>(item_size);
  } else if (s->item_size_max > s->max_bytes / 2) {
    return range_error("Cannot set item size limit higher than 1/2 of memory max.");
  }
  // memcached 1.6's protocol rules for authentication, with its messages.
  if (s->sasl) {
    if (!protocol_given) {
      s->protocol = BindingProtocol::kBinary;
    } else if (s->protocol != BindingProtocol::kBinary) {
      return range_error("ERROR: You cannot allow the ASCII protocol while using SASL.");
    }
    if (s->udp_port != 0 && s->socket_path.empty()) {
      return range_error("ERROR: Cannot enable UDP while using binary SASL authentication.");
    }
  }
  if (!s->auth_file.empty()) {
    if (!protocol_given) {
      s->protocol = BindingProtocol::kAscii;
    } else if (s->protocol != BindingProtocol::kAscii) {
      return range_error(
          "ERROR: You cannot allow the BINARY protocol while using ascii authentication tokens.");
    }
  }
  if (!s->cluster() && (s->node_id != 0 || !s->fabric_host.empty())) {
    return usage_error(std::string(s->node_id != 0 ? "--node-id" : "--fabric-listen") +
                       " needs --meta (cluster mode)");
  }
  if (!s->cluster() && s->fabric_progress != "auto") {
    return usage_error("--fabric-progress needs --meta (cluster mode)");
  }
  if (!s->cluster() && s->failover_wait_ms != 1000) {
    return usage_error("--failover-wait-ms needs --meta (cluster mode)");
  }
  if (!s->cluster() && !s->cluster_secret_file.empty()) {
    return usage_error("--cluster-secret-file needs --meta (cluster mode)");
  }
  if (!s->cluster() && (s->spare || s->recovery_rate_mb != 0)) {
    return usage_error(std::string(s->spare ? "--spare" : "--recovery-rate-mb") +
                       " needs --meta (cluster mode)");
  }
  if (!s->cluster() && s->replication_ring_size != 0) {
    return usage_error("--replication-ring-size needs --meta (cluster mode)");
  }
  if (s->replication_ring_size != 0 && s->replication_ring_size < 2 * s->item_size_max + 4096) {
    return usage_error("--replication-ring-size must be at least twice the item size limit "
                       "(-I) plus 4k: an entry may take at most half the ring");
  }
  if (s->cluster()) {
    if (!s->socket_path.empty() || s->port == 0) {
      return usage_error("--meta needs a TCP port (-p): other servers and clients reach "
                         "this one by host:port");
    }
    // UDP requests are not routed to their primary yet: refuse rather than
    // answer a key this server does not own.
    if (s->udp_port != 0) {
      return usage_error("-U (UDP) is not supported with --meta (cluster mode) yet");
    }
    if (s->fabric_host.empty()) {
      std::string h = addrs.empty() ? std::string() : addrs[0].host;
      // A wildcard is no address peers can reach: fall back to loopback.
      s->fabric_host = (h.empty() || h == "*" || h == "0.0.0.0" || h == "::") ? "127.0.0.1" : h;
    }
  }
  if (!s->socket_path.empty()) {
    // memcached: a UNIX socket disables network support.
    s->port = 0;
    s->udp_port = 0;
  }
  return {};
}

}  // namespace ftm
