// The server core: listening sockets (TCP, UNIX, UDP), the accept loop on the
// main thread's libevent base, the 1-second clock timer, signal handling, and
// -t worker threads to which accepted connections are handed round-robin
// (memcached's thread.c model). Implements ServerControl for `stats`,
// `stats reset`, `verbosity` and `shutdown`.
//
// Thread-safety: construct, bind(), start() and run() from the main thread.
// ServerControl methods and the counters are safe for concurrent use.
#ifndef FTM_SRC_SERVER_H_
#define FTM_SRC_SERVER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "src/session.h"
#include "src/settings.h"
#include "src/store.h"

struct event_base;
struct event;

namespace ftm {

class Worker;

// Current verbosity (-v count, changed by the `verbosity` command).
int verbosity();
void set_global_verbosity(int level);

// Connection counters shared by the listener and the workers.
struct ConnCounters {
  std::atomic<int64_t> curr_clients{0};      // open client connections (TCP + UNIX)
  std::atomic<uint64_t> total_conns{0};      // accepted since start (or stats reset)
  std::atomic<uint64_t> rejected_conns{0};   // refused because of -c
  std::atomic<uint64_t> conn_structures{0};  // high-water mark of client connections
  std::atomic<uint64_t> listen_disabled_num{0};
};

struct Listener {
  int fd = -1;
  enum Kind { kTcp, kUdp, kUnix } kind = kTcp;
  std::string addr;  // "tcp:127.0.0.1:11211", "unix:/path", "udp:..."
  struct event* ev = nullptr;
};

class Server final : public ServerControl {
 public:
  Server(const Settings& settings, Store* store);
  ~Server() override;
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Opens every listening socket named by -p/-U/-l/-s. On failure returns
  // false with a message naming the address in *err.
  bool bind(std::string* err);
  // Cluster mode: every worker's WorkerContext::cluster. Call before
  // start(); `cluster` must outlive the workers (run() stops them).
  void set_cluster(Cluster* cluster) { cluster_ = cluster; }
  // Counters of a thread that is not a worker but runs commands (requests
  // forwarded by other servers): `stats` sums them with the workers' and
  // `stats reset` zeroes them. Any thread; `stats` must outlive the server.
  void add_thread_stats(ThreadStats* stats);
  // Starts the worker threads. Returns false with *err on failure.
  bool start(std::string* err);
  // Runs the accept loop until SIGINT/SIGTERM or `shutdown`; then stops the
  // workers and closes every socket. Returns the process exit status.
  int run();

  // ServerControl.
  bool collect_stats(std::string_view group, StatsSink& sink) override;
  void reset_stats() override;
  void set_verbosity(int level) override;
  void shutdown() override;

  const Settings& settings() const { return settings_; }
  Store* store() const { return store_; }
  ConnCounters& counters() { return counters_; }
  const std::vector<Listener>& listeners() const { return listeners_; }
  const std::vector<std::unique_ptr<Worker>>& workers() const { return workers_; }
  // Port of the first TCP listener (useful when -p 0 picked one).
  int tcp_port() const;

 private:
  static void on_accept(int fd, short what, void* arg);
  static void on_clock(int fd, short what, void* arg);
  static void on_signal(int fd, short what, void* arg);
  static void on_reenable(int fd, short what, void* arg);
  void accept_one(Listener& l);
  void reject(int fd);
  bool bind_inet(const std::string& host, int port, bool udp, std::string* err);
  bool bind_unix(std::string* err);
  void set_accepting(bool on);

  Settings settings_;
  Store* store_;
  struct event_base* base_ = nullptr;
  std::vector<Listener> listeners_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<struct event*> events_;  // clock, signals, re-enable timer
  struct event* reenable_ev_ = nullptr;
  std::atomic<bool> accepting_{true};  // read by `stats` on worker threads
  size_t next_worker_ = 0;
  ConnCounters counters_;
  Cluster* cluster_ = nullptr;
  std::mutex extra_stats_mu_;
  std::vector<ThreadStats*> extra_stats_;  // guarded by extra_stats_mu_
};

}  // namespace ftm

#endif  // FTM_SRC_SERVER_H_
