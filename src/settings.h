// Server settings: memcached's command-line flags with memcached's defaults
// (memcached.c settings_init), plus ftmemcached's own. Filled once by
// parse_settings() at start-up, then read-only: every thread may read it
// without locking.
#ifndef FTM_SRC_SETTINGS_H_
#define FTM_SRC_SETTINGS_H_

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace ftm {

enum class BindingProtocol { kAuto, kAscii, kBinary };  // -B

struct Settings {
  int port = 11211;                   // -p: TCP port (0 = off)
  int udp_port = 0;                   // -U: UDP port (0 = off, memcached's default since 1.5.6)
  std::string listen = "127.0.0.1";   // -l: interface(s), comma separated. memcached
                                      // defaults to INADDR_ANY; we default to loopback.
  std::string socket_path;            // -s: UNIX socket path (disables TCP/UDP)
  int socket_access = 0700;           // -a: UNIX socket mode (octal)
  int max_conns = 1024;               // -c
  size_t max_bytes = 64u << 20;       // -m: item memory, bytes (flag is MiB)
  size_t item_size_max = 1u << 20;    // -I: bytes (accepts k/m suffix)
  int num_threads = 4;                // -t
  int verbose = 0;                    // -v / -vv / -vvv
  bool daemonize = false;             // -d
  std::string pid_file;               // -P
  std::string username;               // -u
  int reqs_per_event = 20;            // -R: requests per connection per event
  bool use_cas = true;                // -C clears
  bool evict_to_free = true;          // -M clears
  bool lock_memory = false;           // -k
  int backlog = 1024;                 // -b
  bool flush_enabled = true;          // -F clears
  bool shutdown_command = false;      // -A
  BindingProtocol protocol = BindingProtocol::kAuto;  // -B
  bool sasl = false;                  // -S
  std::string auth_file;              // -Y
  std::string cluster_secret_file;    // --cluster-secret-file (cluster mode)
  int idle_timeout = 0;               // -o idle_timeout (seconds, 0 = never)
  bool lru_crawler = true;            // -o lru_crawler / no_lru_crawler (our sweeper)
  size_t read_buf_limit = 0;          // -o read_buf_mem_limit (MiB, 0 = no limit)

  // Accepted for memcached compatibility and shown by `stats settings`; they
  // tune memcached's slab allocator, which ftmemcached does not have.
  double growth_factor = 1.25;        // -f
  int chunk_size = 48;                // -n
  char prefix_delimiter = ':';        // -D
  bool detail_enabled = false;        // -D turns on per-prefix stats (not kept)
  int hashpower_init = 0;             // -o hashpower
  bool maxconns_fast = true;          // -o maxconns_fast / no_maxconns_fast
  bool dump_enabled = true;           // -X clears
  bool watch_enabled = true;          // -W clears
  bool large_pages = false;           // -L
  bool core_dumps = false;            // -r
  int tail_repair_time = 0;           // -o tail_repair_time
  int lru_crawler_sleep = 100;        // -o lru_crawler_sleep
  int lru_crawler_tocrawl = 0;        // -o lru_crawler_tocrawl

  // ftmemcached's own.
  bool fabric_info = false;           // --fabric-info: print providers and exit

  // Cluster mode (issue 5); off unless --meta is given.
  std::string meta_host;              // --meta HOST:PORT: the metadata server
  int meta_port = 0;
  uint32_t node_id = 0;               // --node-id (0: the meta server assigns one)
  std::string fabric = "auto";        // --fabric auto|verbs|tcp
  std::string fabric_progress = "auto";  // --fabric-progress auto|poll|block
  std::string fabric_host;            // --fabric-listen HOST[:PORT] ("": first -l address)
  int fabric_port = 0;                //   (0: any free port)
  int failover_wait_ms = 1000;        // --failover-wait-ms
  size_t replication_ring_size = 0;   // --replication-ring-size (bytes; 0: the default,
                                      //   8 MiB or 4 x -I + 64 KiB if larger)
  bool spare = false;                 // --spare: join as a spare
  double recovery_rate_mb = 0;        // --recovery-rate-mb (MB/s; 0: unlimited)
  bool cluster() const { return !meta_host.empty(); }
};

// The version line `-V` prints and `version` answers with its number.
inline constexpr const char* kFtmVersion = "0.1.0";
inline constexpr const char* kMemcachedCompatVersion = "1.6.18";

// What parse_settings() asks the caller to do.
struct ParseOutcome {
  bool exit = false;  // true: exit now with exit_code (after -h, -V, an error)
  int exit_code = 0;  // 0, or 64 (EX_USAGE) for a bad flag
};

// Parses memcached-style flags (short and --long) into *s. Error messages
// (one line naming the flag, then the usage text) go to stderr; -h and -V
// print to stdout. Not thread-safe (getopt): call once from main.
ParseOutcome parse_settings(int argc, char** argv, Settings* s);

// The `-h` text.
void print_usage(FILE* out);

// One address of -l: host ("" = any) and port.
struct ListenAddr {
  std::string host;
  int port;
};

// Splits memcached's -l value: addresses separated by ',' ';' or ' ', each
// "host", "host:port" or "[v6addr]:port"; without a port, default_port.
// False when a port is not a number in 1..65535.
bool split_listen(const std::string& spec, int default_port, std::vector<ListenAddr>* out);

}  // namespace ftm

#endif  // FTM_SRC_SETTINGS_H_
