// loadgen: a closed-loop memcached text-protocol load generator.
//
// Each of -T threads owns -C connections and keeps one request outstanding
// on each (a pipeline depth of one, as a typical client does), so the
// latency measured is the full request round trip. Every operation's latency
// is recorded; the report gives ops/s and p50/p99/p999 in microseconds as one
// line of key=value pairs, which bench/load.sh turns into ratios against
// stock memcached.
//
// Usage: loadgen -p PORT[,PORT...] [-h HOST] [-T threads] [-C conns per thread]
//                [-d seconds] [-g get fraction 0..1] [-s value bytes]
//                [-k keys] [--no-preload]
// With several ports (the servers of one cluster, bench/cluster_load.sh)
// the connections are spread over them round-robin.
// Every socket has a receive timeout, so a dead or stuck server ends the run
// with an error instead of a hang.
#include <arpa/inet.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Options {
  std::string host = "127.0.0.1";
  std::vector<int> ports;  // -p: one or more, comma-separated
  int threads = 2;
  int conns = 4;
  double seconds = 5;
  double get_fraction = 0.9;
  int value_size = 100;
  int keys = 10000;
  bool preload = true;
};

using Clock = std::chrono::steady_clock;

[[noreturn]] void die(const char* what) {
  perror(what);
  exit(2);
}

int connect_to(const Options& o, int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) die("socket");
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  if (inet_pton(AF_INET, o.host.c_str(), &sa.sin_addr) != 1) {
    fprintf(stderr, "loadgen: bad host %s (IPv4 address expected)\n", o.host.c_str());
    exit(2);
  }
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) die("connect");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  timeval tv{5, 0};  // a reply slower than this is a failure, not a sample
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  return fd;
}

void send_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n <= 0) die("send");
    off += static_cast<size_t>(n);
  }
}

// One connection: sends a request, reads until the reply's terminator.
class Conn {
 public:
  Conn(const Options& o, int port) : fd_(connect_to(o, port)) {}
  ~Conn() { close(fd_); }

  // Reads until `buf_` ends with `terminator` (the whole reply).
  void await(const char* terminator) {
    size_t tlen = strlen(terminator);
    buf_.clear();
    char chunk[16384];
    for (;;) {
      ssize_t n = recv(fd_, chunk, sizeof chunk, 0);
      if (n <= 0) die("recv (server closed or timed out)");
      buf_.append(chunk, static_cast<size_t>(n));
      if (buf_.size() >= tlen && buf_.compare(buf_.size() - tlen, tlen, terminator) == 0) return;
      if (buf_.compare(0, 5, "ERROR") == 0 || buf_.compare(0, 12, "SERVER_ERROR") == 0 ||
          buf_.compare(0, 12, "CLIENT_ERROR") == 0) {
        fprintf(stderr, "loadgen: server answered: %s\n", buf_.c_str());
        exit(2);
      }
    }
  }
  int fd() const { return fd_; }

 private:
  int fd_;
  std::string buf_;
};

std::string key_name(int i) { return "key:" + std::to_string(i); }

std::string set_request(int key, const std::string& value) {
  return "set " + key_name(key) + " 0 0 " + std::to_string(value.size()) + "\r\n" + value + "\r\n";
}

void preload(const Options& o, const std::string& value) {
  Conn c(o, o.ports[0]);
  for (int i = 0; i < o.keys; ++i) {
    send_all(c.fd(), set_request(i, value));
    c.await("STORED\r\n");
  }
}

struct ThreadResult {
  std::vector<uint32_t> latencies_ns;
  uint64_t gets = 0, sets = 0, hits = 0;
};

void run_thread(const Options& o, const std::string& value, Clock::time_point stop, unsigned seed,
                int first_conn, ThreadResult* out) {
  std::vector<Conn*> conns;
  for (int i = 0; i < o.conns; ++i)
    conns.push_back(new Conn(o, o.ports[(first_conn + i) % o.ports.size()]));
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> pick_key(0, o.keys - 1);
  std::uniform_real_distribution<double> pick_op(0, 1);
  out->latencies_ns.reserve(1 << 20);
  std::string req;
  // Round-robin over this thread's connections, one request in flight each:
  // send on all, then collect all, so the server sees o.conns concurrent
  // requests from this thread.
  std::vector<bool> is_get(conns.size());
  std::vector<Clock::time_point> start(conns.size());
  while (Clock::now() < stop) {
    for (size_t i = 0; i < conns.size(); ++i) {
      int key = pick_key(rng);
      is_get[i] = pick_op(rng) < o.get_fraction;
      req = is_get[i] ? "get " + key_name(key) + "\r\n" : set_request(key, value);
      start[i] = Clock::now();
      send_all(conns[i]->fd(), req);
    }
    for (size_t i = 0; i < conns.size(); ++i) {
      conns[i]->await(is_get[i] ? "END\r\n" : "STORED\r\n");
      auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start[i]).count();
      out->latencies_ns.push_back(static_cast<uint32_t>(std::min<int64_t>(ns, UINT32_MAX)));
      if (is_get[i]) ++out->gets; else ++out->sets;
    }
  }
  for (Conn* c : conns) delete c;
}

void usage() {
  fprintf(stderr,
          "usage: loadgen -p PORT[,PORT...] [-h HOST] [-T threads] [-C conns/thread] [-d seconds]\n"
          "               [-g get-fraction] [-s value-bytes] [-k keys] [--no-preload]\n");
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  static const option longopts[] = {{"no-preload", no_argument, nullptr, 'N'}, {nullptr, 0, nullptr, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "h:p:T:C:d:g:s:k:", longopts, nullptr)) != -1) {
    switch (c) {
      case 'h': o.host = optarg; break;
      case 'p':
        for (char* tok = strtok(optarg, ","); tok != nullptr; tok = strtok(nullptr, ","))
          o.ports.push_back(atoi(tok));
        break;
      case 'T': o.threads = atoi(optarg); break;
      case 'C': o.conns = atoi(optarg); break;
      case 'd': o.seconds = atof(optarg); break;
      case 'g': o.get_fraction = atof(optarg); break;
      case 's': o.value_size = atoi(optarg); break;
      case 'k': o.keys = atoi(optarg); break;
      case 'N': o.preload = false; break;
      default: usage(); return 64;
    }
  }
  bool ports_ok = !o.ports.empty();
  for (int p : o.ports) ports_ok = ports_ok && p > 0 && p < 65536;
  if (!ports_ok || o.threads <= 0 || o.conns <= 0 || o.keys <= 0 || o.value_size < 0 ||
      o.seconds <= 0 || o.get_fraction < 0 || o.get_fraction > 1) {
    usage();
    return 64;
  }
  std::string value(static_cast<size_t>(o.value_size), 'v');
  if (o.preload) preload(o, value);

  auto begin = Clock::now();
  auto stop = begin + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.seconds));
  std::vector<ThreadResult> results(static_cast<size_t>(o.threads));
  std::vector<std::thread> threads;
  for (int t = 0; t < o.threads; ++t)
    threads.emplace_back(run_thread, std::cref(o), std::cref(value), stop, 1234u + t, t * o.conns,
                         &results[t]);
  for (auto& t : threads) t.join();
  double elapsed = std::chrono::duration<double>(Clock::now() - begin).count();

  std::vector<uint32_t> all;
  uint64_t gets = 0, sets = 0;
  for (auto& r : results) {
    all.insert(all.end(), r.latencies_ns.begin(), r.latencies_ns.end());
    gets += r.gets;
    sets += r.sets;
  }
  if (all.empty()) {
    fprintf(stderr, "loadgen: no operations completed\n");
    return 2;
  }
  std::sort(all.begin(), all.end());
  auto pct = [&](double p) { return all[std::min(all.size() - 1, static_cast<size_t>(p * all.size()))] / 1000.0; };
  printf("ops=%zu gets=%llu sets=%llu seconds=%.2f ops_per_sec=%.0f p50_us=%.1f p99_us=%.1f p999_us=%.1f\n",
         all.size(), static_cast<unsigned long long>(gets), static_cast<unsigned long long>(sets), elapsed,
         all.size() / elapsed, pct(0.50), pct(0.99), pct(0.999));
  return 0;
}
