// Server settings: memcached's command-line flags with memcached's defaults
// (memcached.c settings_init), plus ftmemcached's own. Filled once by
// parse_settings() at start-up, then read-only: every thread may read it
// without locking.
#ifndef FTM_SRC_SETTINGS_H_
#define FTM_SRC_SETTINGS_H_

#include <cstddef>
#include <cstdint>
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
  int idle_timeout = 0;               // -o idle_timeout (seconds, 0 = never)
  bool lru_crawler = true;            // -o lru_crawler / no_lru_crawler (our sweeper)
  size_t read_buf_limit = 0;          // -o read_buf_mem_limit (MiB, 0 = no limit)
};

}  // namespace ftm

#endif  // FTM_SRC_SETTINGS_H_
