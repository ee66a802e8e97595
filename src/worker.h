// A worker thread: its own libevent event_base, its ThreadStats, the
// connections handed to it by the listener, and (with -U) its share of the
// UDP sockets. New connections arrive through a mutex-protected queue and an
// eventfd that wakes the worker's loop (memcached's thread.c does the same
// with a pipe). In cluster mode, Cluster callbacks (which fire on fabric
// threads) come back the same way through a second queue and eventfd.
//
// Thread-safety: dispatch(), post(), stop() and for_each_conn() are safe from
// any thread; everything else runs on the worker's own thread.
#ifndef FTM_SRC_WORKER_H_
#define FTM_SRC_WORKER_H_

#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "src/session.h"
#include "src/stats.h"

struct event_base;
struct event;

namespace ftm {

class Server;
class Conn;
class UdpConn;

// An accepted socket on its way from the listener to a worker.
struct NewConn {
  int fd = -1;
  bool unix_socket = false;
  std::string peer;         // "tcp:127.0.0.1:40000" / "unix:/path"
  std::string listen_addr;  // the listener's address
};

// What `stats conns` shows for one connection.
struct ConnInfo {
  int fd;
  std::string addr;
  std::string listen_addr;
  const char* state;
  uint32_t secs_since_last_cmd;
};

// A Cluster callback's outcome on its way from a fabric thread to the
// worker that owns the connection (src/cluster.h: a callback must never
// touch a connection itself).
struct Completion {
  Conn* conn = nullptr;
  uint32_t slot = 0;  // which of the connection's outstanding calls
  bool ok = false;
  std::string reply;  // copied: the callback's bytes die with the call
};

class Worker {
 public:
  Worker(Server* server, int index);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Creates the event base and wake-up fd and starts the thread. `udp_fds`
  // are UDP sockets this worker also reads (shared with the other workers).
  bool start(const std::vector<int>& udp_fds, std::string* err);
  // Hands a connection to this worker (any thread).
  void dispatch(NewConn c);
  // Asks the loop to exit and joins the thread (any thread but this one).
  void stop();
  // Hands a Cluster callback's outcome to this worker's loop (any thread).
  // The Cluster must be stopped (no callback pending) before the Worker is
  // destroyed.
  void post(Completion c);
  // Calls fn for every open connection (any thread; takes the conn lock).
  void for_each_conn(const std::function<void(const ConnInfo&)>& fn);

  ThreadStats& stats() { return stats_; }
  Server* server() const { return server_; }
  WorkerContext* context() { return &ctx_; }
  struct event_base* base() const { return base_; }
  int index() const { return index_; }

  // Called by a Conn on its own thread.
  void remove_conn(Conn* c);

 private:
  static void on_notify(int fd, short what, void* arg);
  static void on_tick(int fd, short what, void* arg);
  static void on_completion(int fd, short what, void* arg);
  void run();
  void drain_queue();
  void close_idle();

  Server* server_;
  int index_;
  ThreadStats stats_;
  WorkerContext ctx_;
  struct event_base* base_ = nullptr;
  int notify_fd_ = -1;
  struct event* notify_ev_ = nullptr;
  struct event* tick_ev_ = nullptr;
  std::thread thread_;
  std::mutex queue_mu_;
  std::vector<NewConn> queue_;
  bool stopping_ = false;  // guarded by queue_mu_
  std::mutex conns_mu_;    // guards conns_ membership (readers: stats conns)
  std::vector<Conn*> conns_;
  std::vector<UdpConn*> udp_;
  int done_fd_ = -1;  // wakes the loop for completions_
  struct event* done_ev_ = nullptr;
  std::mutex done_mu_;
  std::vector<Completion> completions_;  // guarded by done_mu_
};

}  // namespace ftm

#endif  // FTM_SRC_WORKER_H_
