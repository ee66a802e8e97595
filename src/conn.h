// One client connection over TCP or a UNIX socket: a non-blocking socket, a
// read buffer that grows as the parser asks (ProtoResult::need), an output
// buffer written with partial-write handling, and the protocol Session.
// Requests are handed to text_process in arrival order, so pipelined
// requests are answered in order. While more than kOutHighWater bytes of
// replies are unsent the connection stops reading and parsing (backpressure);
// the parser itself stops at that mark (Session::out_pause_at), between
// requests or between two keys of a get, so a connection's output stays
// under kOutHighWater plus one item however much the client asks for and
// however slowly it reads (standalone mode; cluster mode builds gathered
// replies whole).
//
// Cluster mode (WorkerContext::cluster set): a request the parser reports as
// remote (ProtoResult::remote) is sent to its owner(s) through a Gather
// (forward_plan.h) and the connection is parked: no reading, no parsing, the
// worker free for others, until every part answered; the reply then takes
// the request's place in the output, so replies stay in request order. After
// each batch run here, Cluster::barrier() holds the batch's replies back until
// its writes are in every live secondary; if that fails the held replies are
// dropped, a text client gets "SERVER_ERROR replication failed" and the
// connection is closed, so no client ever sees STORED for an unreplicated
// write. Cluster callbacks reach the connection through Worker::post().
//
// Thread-safety: a Conn lives on its worker's thread; only info() may be
// called from another thread (it reads atomics and immutable fields).
#ifndef FTM_SRC_CONN_H_
#define FTM_SRC_CONN_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "src/clock.h"
#include "src/forward_plan.h"
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
  // Closes the socket and deletes this (worker thread); with Cluster
  // callbacks outstanding, the deletion waits for the last of them.
  void close();
  // A Cluster callback's outcome, delivered by Worker (worker thread). May
  // delete this.
  void complete(uint32_t slot, bool ok, std::string&& reply);

 private:
  static void on_event(int fd, short what, void* arg);
  static void on_resume(int fd, short what, void* arg);
  // Reads, parses, writes, then re-arms the events; may delete this.
  void drive(bool readable, bool writable);
  bool read_some();   // false: hard error
  bool flush();       // false: hard error
  void process();
  void schedule_resume();  // runs drive() once more from the event loop
  ProtoResult process_logged(std::string_view in, int max_requests);
  void update_events();
  bool ensure_room(size_t bytes);
  size_t pending() const { return out_.size() - wpos_; }
  // Cluster mode.
  bool parked() const { return gather_ != nullptr || barrier_pending_; }
  size_t sendable() const { return (barrier_pending_ ? hold_ : out_.size()) - wpos_; }
  void after_batch(const ProtoResult& r, std::string_view in, size_t out_before);
  // Returns true if part of the request ran here (its effects then need the
  // barrier too).
  bool start_gather(const ProtoResult& r, std::string_view request);
  void finish_gather();
  static void on_forward_done(void* ctx, bool ok, std::string_view reply);
  static void on_barrier_done(void* ctx, bool ok);

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
  // Input is waiting behind the output high-water mark (process() returned
  // at once, or a get paused). Once a flush brings the output below the
  // mark, drive() must resume it: no write event comes for an empty buffer.
  bool output_blocked_ = false;

  // Cluster mode. What a Cluster callback's ctx points to: stable while the
  // call is out (tokens_ is resized only with no Gather outstanding).
  struct Token {
    Worker* worker;
    Conn* conn;
    uint32_t slot;
  };
  static constexpr uint32_t kBarrierSlot = UINT32_MAX;
  std::unique_ptr<Gather> gather_;  // the request out at other nodes
  size_t gather_left_ = 0;          // its parts not answered yet
  std::vector<Token> tokens_;
  Token barrier_token_{nullptr, nullptr, kBarrierSlot};
  bool barrier_pending_ = false;
  size_t hold_ = 0;        // while barrier_pending_: out_ from here on is held
  uint32_t inflight_ = 0;  // Cluster callbacks still to come
  bool dead_ = false;      // closed with callbacks outstanding

  std::atomic<const char*> state_{"conn_new_cmd"};
  std::atomic<rel_time_t> last_cmd_{0};
};

}  // namespace ftm

#endif  // FTM_SRC_CONN_H_
