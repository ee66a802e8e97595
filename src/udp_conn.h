// memcached's UDP transport (protocol.txt, "UDP protocol"): every datagram
// starts with an 8-byte frame header (request id, sequence number, total
// datagrams, reserved; 16-bit big-endian each). A request must fit in one
// datagram (others are dropped, as memcached 1.6 does); the reply is cut into datagrams of at most kUdpMaxPayload bytes,
// each carrying the request id, its sequence number and the total count.
// One UDP socket is shared by every worker (each reads it; the kernel hands
// each datagram to one of them), as memcached does.
//
// Thread-safety: a UdpConn lives on its worker's thread.
#ifndef FTM_SRC_UDP_CONN_H_
#define FTM_SRC_UDP_CONN_H_

#include <cstddef>
#include <string>

#include "src/worker.h"

struct event;

namespace ftm {

inline constexpr size_t kUdpHeaderSize = 8;
inline constexpr size_t kUdpMaxPayload = 1400;  // memcached's UDP_MAX_PAYLOAD_SIZE

class UdpConn {
 public:
  // Does not own fd (the server closes its listening sockets).
  UdpConn(Worker* worker, int fd);
  ~UdpConn();
  UdpConn(const UdpConn&) = delete;
  UdpConn& operator=(const UdpConn&) = delete;

  bool start();

 private:
  static void on_read(int fd, short what, void* arg);
  void handle_datagrams();

  Worker* worker_;
  int fd_;
  struct event* ev_ = nullptr;
  std::string out_;
};

}  // namespace ftm

#endif  // FTM_SRC_UDP_CONN_H_
