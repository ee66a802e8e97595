// One client connection over TCP or a UNIX socket: a non-blocking socket, a
// read buffer that grows as the parser asks (ProtoResult::need), an output
// buffer written with partial-write handling, and the protocol Session.
// Requests are handed to text_process in arrival order, so pipelined
// requests are answered in order. While more than kOutHighWater bytes of
// replies are unsent the connection stops reading and parsing (backpressure).
//
// Thread-safety: a Conn lives on its worker's thread; only info() may be
// called from another thread (it reads atomics and immutable fields).
#ifndef FTM_SRC_CONN_H_
#define FTM_SRC_CONN_H_

#include <atomic>
#include <cstddef>
#include <memory>
#include <string>

#include "src/clock.h"
#include "src/proto_text.h"
#include "src/session.h"
#include "src/worker.h"

struct event;

namespace ftm {

class Conn {
 public:
  // Unsent reply bytes above which the connection stops parsing new requests.
  static constexpr size_t kOutHighWater = 1u << 20;
  // Read buffer size a connection starts with and shrinks back to.
  static constexpr size_t kReadChunk = 16u << 10;

  // Takes ownership of c.fd. Call start() next.
  Conn(Worker* worker, NewConn c);
  ~Conn();
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  // Registers the socket with the worker's loop. False: the caller deletes.
  bool start();
  // For `stats conns` (any thread).
  ConnInfo info() const;
  // Idle-timeout check (worker thread): closes the connection (deleting
  // this) when it has seen no command for `secs` and has nothing to send.
  // Returns true when closed.
  bool close_if_idle(rel_time_t now, int secs);
  // Closes the socket and deletes this (worker thread).
  void close();

 private:
  static void on_event(int fd, short what, void* arg);
  static void on_resume(int fd, short what, void* arg);
  // Reads, parses, writes, then re-arms the events; may delete this.
  void drive(bool readable, bool writable);
  bool read_some();   // false: hard error
  bool flush();       // false: hard error
  void process();
  ProtoResult process_logged(std::string_view in, int max_requests);
  void update_events();
  bool ensure_room(size_t bytes);
  size_t pending() const { return out_.size() - wpos_; }

  Worker* worker_;
  int fd_;
  bool unix_;
  std::string peer_;
  std::string listen_addr_;
  Session session_;

  std::unique_ptr<char[]> rbuf_;
  size_t rcap_ = 0;
  size_t rstart_ = 0;  // first unconsumed byte
  size_t rend_ = 0;    // one past the last byte read
  size_t need_ = 0;    // parser wants this many unconsumed bytes first
  size_t rmax_;        // largest the read buffer may grow

  std::string out_;
  size_t wpos_ = 0;

  enum class Proto { kUnknown, kText, kBinary };
  Proto proto_ = Proto::kUnknown;  // chosen on the first bytes (-B)

  struct event* ev_ = nullptr;
  struct event* resume_ev_ = nullptr;
  short ev_flags_ = 0;
  bool closing_ = false;  // close once out_ is written
  bool eof_ = false;      // peer closed its side
  bool resume_pending_ = false;

  std::atomic<const char*> state_{"conn_new_cmd"};
  std::atomic<rel_time_t> last_cmd_{0};
};

}  // namespace ftm

#endif  // FTM_SRC_CONN_H_
