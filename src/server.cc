#include "src/server.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "src/clock.h"
#include "src/worker.h"

namespace ftm {
namespace {

std::atomic<int> g_verbosity{0};

const char kTooManyConns[] = "ERROR Too many open connections\r\n";

// "tcp:127.0.0.1:11211" / "tcp6:[::1]:11211", as memcached's `stats conns`.
std::string sockaddr_text(const char* proto, const struct sockaddr* sa) {
  char host[INET6_ADDRSTRLEN] = "";
  if (sa->sa_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    return std::string(proto) + ":" + host + ":" + std::to_string(ntohs(in->sin_port));
  }
  if (sa->sa_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    return std::string(proto) + "6:[" + host + "]:" + std::to_string(ntohs(in6->sin6_port));
  }
  return std::string(proto) + ":?";
}

}  // namespace

int verbosity() { return g_verbosity.load(std::memory_order_relaxed); }
void set_global_verbosity(int level) { g_verbosity.store(level, std::memory_order_relaxed); }

Server::Server(const Settings& settings, Store* store) : settings_(settings), store_(store) {
  evthread_use_pthreads();  // shutdown() and dispatch cross threads
  set_global_verbosity(settings.verbose);
  base_ = event_base_new();
}

Server::~Server() {
  for (auto& w : workers_) w->stop();
  workers_.clear();
  for (struct event* ev : events_) event_free(ev);
  for (Listener& l : listeners_) {
    if (l.ev != nullptr) event_free(l.ev);
    if (l.fd >= 0) ::close(l.fd);
  }
  if (base_ != nullptr) event_base_free(base_);
}

bool Server::bind_inet(const std::string& host, int port, bool udp, std::string* err) {
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_flags = AI_PASSIVE;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = udp ? SOCK_DGRAM : SOCK_STREAM;
  struct addrinfo* ai = nullptr;
  std::string port_str = std::to_string(port);
  const char* node = (host.empty() || host == "*") ? nullptr : host.c_str();
  int rc = getaddrinfo(node, port_str.c_str(), &hints, &ai);
  if (rc != 0) {
    *err = "getaddrinfo(" + host + "): " + gai_strerror(rc);
    return false;
  }
  bool any = false;
  std::string last_err;
  for (struct addrinfo* p = ai; p != nullptr; p = p->ai_next) {
    int fd = socket(p->ai_family, p->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, p->ai_protocol);
    if (fd < 0) {
      last_err = std::string("socket(): ") + strerror(errno);
      continue;
    }
    int one = 1;
    if (p->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (!udp) {
      setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    if (::bind(fd, p->ai_addr, p->ai_addrlen) != 0 ||
        (!udp && listen(fd, settings_.backlog) != 0)) {
      // memcached's message, word for word.
      last_err = std::string("failed to listen on ") + (udp ? "UDP" : "TCP") + " port " +
                 port_str + ": " + strerror(errno);
      ::close(fd);
      continue;
    }
    Listener l;
    l.fd = fd;
    l.kind = udp ? Listener::kUdp : Listener::kTcp;
    struct sockaddr_storage bound;
    socklen_t len = sizeof bound;
    getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
    l.addr = sockaddr_text(udp ? "udp" : "tcp", reinterpret_cast<sockaddr*>(&bound));
    listeners_.push_back(l);
    any = true;
    if (verbosity() > 1) {
      fprintf(stderr, "<%d server listening (%s)\n", fd, udp ? "udp" : "auto-negotiate");
    }
  }
  freeaddrinfo(ai);
  if (!any) *err = last_err.empty() ? "no address for " + host : last_err;
  return any;
}

bool Server::bind_unix(std::string* err) {
  const std::string& path = settings_.socket_path;
  struct sockaddr_un addr;
  if (path.size() >= sizeof addr.sun_path) {
    *err = "UNIX socket path too long: " + path;
    return false;
  }
  struct stat st;
  if (lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) unlink(path.c_str());
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *err = std::string("socket(): ") + strerror(errno);
    return false;
  }
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, path.c_str(), path.size());
  mode_t old = umask(~static_cast<mode_t>(settings_.socket_access) & 0777);
  int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  umask(old);
  if (rc != 0 || listen(fd, settings_.backlog) != 0) {
    *err = "failed to listen on UNIX socket " + path + ": " + strerror(errno);
    ::close(fd);
    return false;
  }
  Listener l;
  l.fd = fd;
  l.kind = Listener::kUnix;
  l.addr = "unix:" + path;
  listeners_.push_back(l);
  if (verbosity() > 1) fprintf(stderr, "<%d server listening (auto-negotiate)\n", fd);
  return true;
}

bool Server::bind(std::string* err) {
  if (base_ == nullptr) {
    *err = "cannot create the main event base";
    return false;
  }
  if (!settings_.socket_path.empty()) {
    if (!bind_unix(err)) return false;
  } else {
    std::vector<ListenAddr> addrs;
    if (!split_listen(settings_.listen, settings_.port, &addrs)) {
      *err = "invalid port in -l " + settings_.listen;
      return false;
    }
    for (const auto& [host, port] : addrs) {
      if (settings_.port != 0 && !bind_inet(host, port, false, err)) return false;
      if (settings_.udp_port != 0 && !bind_inet(host, settings_.udp_port, true, err)) {
        return false;
      }
    }
  }
  if (listeners_.empty()) {
    *err = "no listening sockets: -p, -U and -s are all off";
    return false;
  }
  // memcached counts each listening socket as a connection.
  counters_.total_conns.store(listeners_.size());
  return true;
}

bool Server::start(std::string* err) {
  std::vector<int> udp_fds;
  for (Listener& l : listeners_) {
    if (l.kind == Listener::kUdp) {
      udp_fds.push_back(l.fd);
      continue;
    }
    l.ev = event_new(base_, l.fd, EV_READ | EV_PERSIST, on_accept, this);
    if (l.ev == nullptr || event_add(l.ev, nullptr) != 0) {
      *err = "cannot register listener " + l.addr;
      return false;
    }
  }
  for (int i = 0; i < settings_.num_threads; ++i) {
    workers_.push_back(std::make_unique<Worker>(this, i));
    workers_.back()->context()->cluster = cluster_;
    if (!workers_.back()->start(udp_fds, err)) return false;
  }
  struct event* clock_ev = event_new(base_, -1, EV_PERSIST, on_clock, this);
  struct timeval one_second = {1, 0};
  events_.push_back(clock_ev);
  event_add(clock_ev, &one_second);
  for (int sig : {SIGINT, SIGTERM}) {
    struct event* ev = evsignal_new(base_, sig, on_signal, this);
    events_.push_back(ev);
    event_add(ev, nullptr);
  }
  reenable_ev_ = event_new(base_, -1, 0, on_reenable, this);
  events_.push_back(reenable_ev_);
  return true;
}

void Server::add_thread_stats(ThreadStats* stats) {
  std::lock_guard g(extra_stats_mu_);
  extra_stats_.push_back(stats);
}

int Server::run() {
  event_base_dispatch(base_);
  for (auto& w : workers_) w->stop();
  return 0;
}

int Server::tcp_port() const {
  for (const Listener& l : listeners_) {
    if (l.kind != Listener::kTcp) continue;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(l.fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) continue;
    if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  }
  return 0;
}

void Server::on_clock(int, short, void*) { clock::tick(); }

void Server::on_signal(int sig, short, void* arg) {
  auto* self = static_cast<Server*>(arg);
  if (verbosity() > 0) fprintf(stderr, "Signal handled: %s.\n", strsignal(sig));
  event_base_loopbreak(self->base_);
}

void Server::on_accept(int fd, short, void* arg) {
  auto* self = static_cast<Server*>(arg);
  for (Listener& l : self->listeners_) {
    if (l.fd == fd) {
      self->accept_one(l);
      return;
    }
  }
}

void Server::set_accepting(bool on) {
  if (on == accepting_) return;
  accepting_ = on;
  for (Listener& l : listeners_) {
    if (l.ev == nullptr) continue;
    if (on) {
      event_add(l.ev, nullptr);
    } else {
      event_del(l.ev);
    }
  }
  if (!on) {
    counters_.listen_disabled_num.fetch_add(1, std::memory_order_relaxed);
    struct timeval ten_ms = {0, 10000};
    event_add(reenable_ev_, &ten_ms);
  }
}

void Server::on_reenable(int, short, void* arg) {
  auto* self = static_cast<Server*>(arg);
  if (!self->settings_.maxconns_fast &&
      self->counters_.curr_clients.load(std::memory_order_relaxed) >= self->settings_.max_conns) {
    struct timeval ten_ms = {0, 10000};
    event_add(self->reenable_ev_, &ten_ms);
    return;
  }
  self->set_accepting(true);
}

void Server::reject(int fd) {
  // memcached 1.6 (maxconns_fast): accept, say why, close.
  ssize_t n = ::send(fd, kTooManyConns, sizeof kTooManyConns - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
  (void)n;
  ::close(fd);
  counters_.rejected_conns.fetch_add(1, std::memory_order_relaxed);
}

void Server::accept_one(Listener& l) {
  for (int i = 0; i < 64; ++i) {
    if (!settings_.maxconns_fast &&
        counters_.curr_clients.load(std::memory_order_relaxed) >= settings_.max_conns) {
      // memcached without maxconns_fast: stop accepting; clients beyond the
      // limit wait in the listen backlog until a connection closes.
      set_accepting(false);
      return;
    }
    struct sockaddr_storage peer;
    socklen_t len = sizeof peer;
    int fd = accept4(l.fd, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE) {
        if (verbosity() > 0) fprintf(stderr, "Too many open connections\n");
        set_accepting(false);
      } else if (errno != EAGAIN && errno != EWOULDBLOCK && verbosity() > 0) {
        fprintf(stderr, "accept(): %s\n", strerror(errno));
      }
      return;
    }
    if (counters_.curr_clients.load(std::memory_order_relaxed) >= settings_.max_conns) {
      reject(fd);
      continue;
    }
    NewConn c;
    c.fd = fd;
    c.listen_addr = l.addr;
    if (l.kind == Listener::kUnix) {
      c.unix_socket = true;
      c.peer = l.addr;
    } else {
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      c.peer = sockaddr_text("tcp", reinterpret_cast<sockaddr*>(&peer));
    }
    int64_t now_open = counters_.curr_clients.fetch_add(1, std::memory_order_relaxed) + 1;
    counters_.total_conns.fetch_add(1, std::memory_order_relaxed);
    uint64_t hw = counters_.conn_structures.load(std::memory_order_relaxed);
    if (static_cast<uint64_t>(now_open) > hw) {
      counters_.conn_structures.store(static_cast<uint64_t>(now_open), std::memory_order_relaxed);
    }
    Worker& w = *workers_[next_worker_];
    next_worker_ = (next_worker_ + 1) % workers_.size();
    w.dispatch(std::move(c));
  }
}

void Server::set_verbosity(int level) { set_global_verbosity(level); }

void Server::shutdown() {
  // Give the worker that ran the command time to flush its replies.
  struct timeval delay = {0, 100000};
  event_base_loopexit(base_, &delay);
}

}  // namespace ftm
