// rdma/ layer micro-benchmarks (Google Benchmark), tcp provider, two
// processes on loopback: this process posts, a target process (this binary
// re-executed with FTM_RDMA_BENCH_TARGET set) only runs the layer's progress
// thread. Measures one-sided write and read latency at 64 B (median, p99),
// write bandwidth at 4 KiB and 64 KiB with 16 in flight, and the same sizes
// over a plain TCP socket on loopback (ping-pong for latency; a 1-byte ack
// per message with 16 in flight for bandwidth), then prints ratios against
// TCP and against the bare libfabric probe in DESIGN.md (7 us, 4 GB/s).
//
// The target runs in two progress modes: kBusyPoll (what the probe measured:
// a thread always in fi_cq_read) and kAdaptive (the default: naps in poll()
// when nothing of its own is outstanding).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <benchmark/benchmark.h>

#include "rdma/bare_probe.h"
#include "rdma/connection.h"
#include "rdma/fabric_domain.h"
#include "rdma/listener.h"
#include "rdma/memory_region.h"

using namespace ftm::rdma;
using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kRegion = 64u << 20;
constexpr int kInFlight = 16;

// ---- plain TCP helpers -------------------------------------------------

bool read_full(int fd, void* p, size_t n) {
  auto* b = static_cast<char*>(p);
  while (n) {
    ssize_t r = ::read(fd, b, n);
    if (r <= 0) return false;
    b += r;
    n -= size_t(r);
  }
  return true;
}
bool write_full(int fd, const void* p, size_t n) {
  auto* b = static_cast<const char*>(p);
  while (n) {
    ssize_t r = ::write(fd, b, n);
    if (r <= 0) return false;
    b += r;
    n -= size_t(r);
  }
  return true;
}

// Per connection: u32 message size, u32 mode (0: echo each message, 1:
// answer each message with one byte).
void tcp_serve(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  uint32_t hdr[2];
  if (!read_full(fd, hdr, sizeof hdr)) return;
  std::vector<char> buf(hdr[0]);
  for (;;) {
    if (!read_full(fd, buf.data(), buf.size())) break;
    bool ok = hdr[1] == 0 ? write_full(fd, buf.data(), buf.size())
                          : write_full(fd, buf.data(), 1);
    if (!ok) break;
  }
  close(fd);
}

// ---- the target process ------------------------------------------------

[[noreturn]] void run_target(const char* mode) {
  FabricOptions o;
  o.provider = ProviderChoice::kTcp;
  o.local_addr = "127.0.0.1";
  o.identity = "bench-target";
  o.progress = std::string(mode) == "busy" ? ProgressMode::kBusyPoll
                                           : ProgressMode::kAdaptive;
  o.log = [](std::string_view) {};
  auto f = Fabric::open(o);
  if (!f) _exit(2);
  static std::vector<std::byte> mem(kRegion);
  auto region = (*f)->register_memory(mem, true, true);
  static std::vector<std::byte> ctl(RegionDescriptor::kWireSize);
  auto ctl_mr = (*f)->register_memory(ctl, false, false);
  auto l = (*f)->listen("127.0.0.1", 0);
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t sl = sizeof sa;
  if (!region || !ctl_mr || !l || bind(ls, (sockaddr*)&sa, sizeof sa) ||
      listen(ls, 16) || getsockname(ls, (sockaddr*)&sa, &sl))
    _exit(3);
  std::thread([ls] {
    for (;;) {
      int fd = accept(ls, nullptr, nullptr);
      if (fd < 0) continue;
      std::thread(tcp_serve, fd).detach();
    }
  }).detach();
  // The bare-libfabric baseline busy-polls once connected, so only the
  // busy-mode target offers it.
  uint16_t bare_port = o.progress == ProgressMode::kBusyPoll
                           ? bare::start_target(kRegion)
                           : 0;
  std::printf("PORT %u %u %u\n", unsigned((*l)->port()),
              unsigned(ntohs(sa.sin_port)), unsigned(bare_port));
  std::fflush(stdout);
  auto wire = (*region)->descriptor().serialize();
  std::memcpy(ctl.data(), wire.data(), wire.size());
  std::vector<std::unique_ptr<Connection>> conns;
  for (;;) {  // the main thread only accepts; the data path never needs it
    auto c = (*l)->accept(std::chrono::hours(1));
    if (!c) continue;
    if ((*c)->send(**ctl_mr, 0, wire.size()).wait()) conns.push_back(std::move(*c));
  }
}

[[maybe_unused]] const int kTargetHook = [] {
  if (const char* m = std::getenv("FTM_RDMA_BENCH_TARGET")) run_target(m);
  return 0;
}();

// ---- the initiator side ------------------------------------------------

struct Target {
  pid_t pid = -1;
  uint16_t fab_port = 0, tcp_port = 0, bare_port = 0;
};

Target spawn(const char* mode) {
  Target t;
  int fds[2];
  if (pipe(fds)) return t;
  std::string var = std::string("FTM_RDMA_BENCH_TARGET=") + mode;
  std::vector<char*> env;
  for (char** e = environ; *e; e++) env.push_back(*e);
  env.push_back(var.data());
  env.push_back(nullptr);
  char a0[] = "rdma_bench_target";
  char* argv[] = {a0, nullptr};
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    close(fds[1]);
    execve("/proc/self/exe", argv, env.data());
    _exit(127);
  }
  close(fds[1]);
  FILE* in = fdopen(fds[0], "r");
  unsigned a = 0, b = 0, c = 0;
  if (in && std::fscanf(in, "PORT %u %u %u", &a, &b, &c) == 3) {
    t.pid = pid;
    t.fab_port = uint16_t(a);
    t.tcp_port = uint16_t(b);
    t.bare_port = uint16_t(c);
  }
  if (in) fclose(in);
  return t;
}

// One target at a time, so a busy-polling target never steals a core from
// the other mode's measurements.
struct Session {
  std::string mode;
  Target target;
  std::unique_ptr<Fabric> fabric;
  std::unique_ptr<Connection> conn;
  RegionDescriptor remote;
  std::vector<std::byte> local;
  std::unique_ptr<MemoryRegion> local_mr;
  std::unique_ptr<bare::BareInitiator> bare;

  ~Session() {
    bare.reset();
    conn.reset();
    local_mr.reset();
    fabric.reset();
    if (target.pid > 0) {
      kill(target.pid, SIGKILL);
      waitpid(target.pid, nullptr, 0);
    }
  }
};
std::unique_ptr<Session> g_session;

Session* session(const std::string& mode) {
  if (g_session && g_session->mode == mode) return g_session.get();
  g_session.reset();
  auto s = std::make_unique<Session>();
  s->mode = mode;
  s->target = spawn(mode.c_str());
  if (s->target.pid <= 0) return nullptr;
  FabricOptions o;
  o.provider = ProviderChoice::kTcp;
  o.local_addr = "127.0.0.1";
  o.identity = "bench-initiator";
  o.log = [](std::string_view) {};
  if (const char* v = std::getenv("FTM_RDMA_WAIT_SPIN_US"))  // experiments
    o.wait_spin = std::chrono::microseconds(std::atoll(v));
  auto f = Fabric::open(o);
  if (!f) return nullptr;
  s->fabric = std::move(*f);
  auto c = s->fabric->connect("127.0.0.1", s->target.fab_port);
  if (!c) return nullptr;
  s->conn = std::move(*c);
  s->local.resize(kRegion);
  auto mr = s->fabric->register_memory(s->local, false, false);
  if (!mr) return nullptr;
  s->local_mr = std::move(*mr);
  Op r = s->conn->recv(*s->local_mr, 0, RegionDescriptor::kWireSize);
  if (!r.wait()) return nullptr;
  auto d = RegionDescriptor::parse(
      std::span(s->local).first(RegionDescriptor::kWireSize));
  if (!d) return nullptr;
  s->remote = *d;
  g_session = std::move(s);
  return g_session.get();
}

int tcp_connect(uint16_t port, uint32_t size, uint32_t mode) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons(port);
  if (connect(fd, (sockaddr*)&sa, sizeof sa)) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  uint32_t hdr[2] = {size, mode};
  write_full(fd, hdr, sizeof hdr);
  return fd;
}

// Results kept for the summary: name -> value.
std::map<std::string, double> g_results;

void report_latency(benchmark::State& state, std::vector<double>& us,
                    const std::string& key) {
  if (us.empty()) return;
  std::sort(us.begin(), us.end());
  double med = us[us.size() / 2];
  double p99 = us[std::min(us.size() - 1, us.size() * 99 / 100)];
  state.counters["median_us"] = med;
  state.counters["p99_us"] = p99;
  g_results[key + " median"] = med;
  g_results[key + " p99"] = p99;
}

void BM_RdmaWriteLatency(benchmark::State& state, const char* mode) {
  Session* s = session(mode);
  if (!s) return state.SkipWithError("target setup failed");
  std::vector<double> us;
  for (auto _ : state) {
    auto t0 = Clock::now();
    Status st = s->conn->write(*s->local_mr, 0, s->remote, 64, 64).wait();
    double d = std::chrono::duration<double>(Clock::now() - t0).count();
    if (!st) return state.SkipWithError(st.to_string().c_str());
    state.SetIterationTime(d);
    us.push_back(d * 1e6);
  }
  report_latency(state, us, std::string("write64/") + mode);
}

void BM_RdmaReadLatency(benchmark::State& state, const char* mode) {
  Session* s = session(mode);
  if (!s) return state.SkipWithError("target setup failed");
  std::vector<double> us;
  for (auto _ : state) {
    auto t0 = Clock::now();
    Status st = s->conn->read(*s->local_mr, 4096, s->remote, 64, 64).wait();
    double d = std::chrono::duration<double>(Clock::now() - t0).count();
    if (!st) return state.SkipWithError(st.to_string().c_str());
    state.SetIterationTime(d);
    us.push_back(d * 1e6);
  }
  report_latency(state, us, std::string("read64/") + mode);
}

void BM_TcpPingPongLatency(benchmark::State& state) {
  Session* s = session("adaptive");
  if (!s) return state.SkipWithError("target setup failed");
  int fd = tcp_connect(s->target.tcp_port, 64, 0);
  if (fd < 0) return state.SkipWithError("tcp connect failed");
  char buf[64] = {};
  std::vector<double> us;
  for (auto _ : state) {
    auto t0 = Clock::now();
    if (!write_full(fd, buf, 64) || !read_full(fd, buf, 64))
      return state.SkipWithError("tcp io failed");
    double d = std::chrono::duration<double>(Clock::now() - t0).count();
    state.SetIterationTime(d);
    us.push_back(d * 1e6);
  }
  close(fd);
  report_latency(state, us, "tcp64");
}

void BM_RdmaWriteBandwidth(benchmark::State& state, const char* mode) {
  Session* s = session(mode);
  if (!s) return state.SkipWithError("target setup failed");
  size_t len = size_t(state.range(0));
  std::vector<Op> ring(kInFlight);
  size_t slots = kRegion / len;
  uint64_t n = 0;
  auto t0 = Clock::now();
  for (auto _ : state) {
    Op& slot = ring[n % kInFlight];
    if (n >= kInFlight) {
      Status st = slot.wait();
      if (!st) return state.SkipWithError(st.to_string().c_str());
    }
    size_t off = (n % slots) * len;
    slot = s->conn->write(*s->local_mr, off, s->remote, off, len);
    n++;
  }
  for (auto& op : ring) (void)op.wait();
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  state.SetBytesProcessed(int64_t(n * len));
  double gbs = double(n * len) / secs / 1e9;
  state.counters["GB/s"] = gbs;
  g_results["write" + std::to_string(len) + "/" + mode + " GB/s"] = gbs;
}

void BM_TcpBandwidth(benchmark::State& state) {
  Session* s = session("adaptive");
  if (!s) return state.SkipWithError("target setup failed");
  size_t len = size_t(state.range(0));
  int fd = tcp_connect(s->target.tcp_port, uint32_t(len), 1);
  if (fd < 0) return state.SkipWithError("tcp connect failed");
  std::vector<char> buf(len);
  uint64_t n = 0, acked = 0;
  char ack[kInFlight];
  auto t0 = Clock::now();
  for (auto _ : state) {
    if (n - acked >= kInFlight) {
      if (!read_full(fd, ack, 1)) return state.SkipWithError("tcp io failed");
      acked++;
    }
    if (!write_full(fd, buf.data(), len))
      return state.SkipWithError("tcp io failed");
    n++;
  }
  while (acked < n) {
    if (!read_full(fd, ack, 1)) break;
    acked++;
  }
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  close(fd);
  state.SetBytesProcessed(int64_t(n * len));
  double gbs = double(n * len) / secs / 1e9;
  state.counters["GB/s"] = gbs;
  g_results["tcp" + std::to_string(len) + " GB/s"] = gbs;
}

bare::BareInitiator* bare_session() {
  Session* s = session("busy");
  if (!s || !s->target.bare_port) return nullptr;
  if (!s->bare) s->bare = bare::BareInitiator::connect(s->target.bare_port);
  return s->bare.get();
}

void BM_BareLatency(benchmark::State& state, bool write) {
  bare::BareInitiator* b = bare_session();
  if (!b) return state.SkipWithError("bare probe setup failed");
  std::vector<double> us;
  for (auto _ : state) {
    auto t0 = Clock::now();
    bool ok = write ? b->write(64, 64) : b->read(64, 64);
    double d = std::chrono::duration<double>(Clock::now() - t0).count();
    if (!ok) return state.SkipWithError("bare op failed");
    state.SetIterationTime(d);
    us.push_back(d * 1e6);
  }
  report_latency(state, us, write ? "bare_write64" : "bare_read64");
}

void BM_BareWriteBandwidth(benchmark::State& state) {
  bare::BareInitiator* b = bare_session();
  if (!b) return state.SkipWithError("bare probe setup failed");
  size_t len = size_t(state.range(0));
  constexpr uint64_t kBatch = 64;
  uint64_t n = 0;
  auto t0 = Clock::now();
  for (auto _ : state) {
    if (!b->stream(len, kInFlight, kBatch))
      return state.SkipWithError("bare stream failed");
    n += kBatch;
  }
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  double gbs = double(n * len) / secs / 1e9;
  state.counters["GB/s"] = gbs;
  g_results["bare_write" + std::to_string(len) + " GB/s"] = gbs;
}

// Adaptive target first (and the TCP baselines, which use its process),
// then the busy-polling target.
BENCHMARK_CAPTURE(BM_RdmaWriteLatency, adaptive_target, "adaptive")
    ->UseManualTime()->Iterations(5000);
BENCHMARK_CAPTURE(BM_RdmaReadLatency, adaptive_target, "adaptive")
    ->UseManualTime()->Iterations(5000);
BENCHMARK(BM_TcpPingPongLatency)->UseManualTime()->Iterations(5000);
BENCHMARK_CAPTURE(BM_RdmaWriteBandwidth, adaptive_target, "adaptive")
    ->Arg(4096)->Arg(65536)->MinTime(1.0);
BENCHMARK(BM_TcpBandwidth)->Arg(4096)->Arg(65536)->MinTime(1.0);
BENCHMARK_CAPTURE(BM_RdmaWriteLatency, busy_target, "busy")
    ->UseManualTime()->Iterations(5000);
BENCHMARK_CAPTURE(BM_RdmaReadLatency, busy_target, "busy")
    ->UseManualTime()->Iterations(5000);
BENCHMARK_CAPTURE(BM_RdmaWriteBandwidth, busy_target, "busy")
    ->Arg(4096)->Arg(65536)->MinTime(1.0);
BENCHMARK_CAPTURE(BM_BareLatency, write, true)
    ->UseManualTime()->Iterations(5000);
BENCHMARK_CAPTURE(BM_BareLatency, read, false)
    ->UseManualTime()->Iterations(5000);
BENCHMARK(BM_BareWriteBandwidth)->Arg(4096)->Arg(65536)->MinTime(1.0);

// One summary line: the layer's value, then ratios against plain TCP, the
// bare libfabric probe run in this same process (`bare`), and the probe
// figure written in DESIGN.md (`design`).
void print_ratio(const char* what, const std::string& a, const std::string& tcp,
                 const std::string& bare, double design = 0) {
  auto ia = g_results.find(a);
  if (ia == g_results.end()) return;
  std::printf("%-34s %9.2f", what, ia->second);
  auto it = g_results.find(tcp);
  if (it != g_results.end())
    std::printf(" | tcp %8.2f (%5.2fx)", it->second, ia->second / it->second);
  auto ib = g_results.find(bare);
  if (ib != g_results.end())
    std::printf(" | bare now %8.2f (%5.2fx)", ib->second,
                ia->second / ib->second);
  if (design > 0)
    std::printf(" | DESIGN.md %5.2f (%5.2fx)", design, ia->second / design);
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  g_session.reset();
  std::printf("\nSummary (latency in us; lower is better. bandwidth in GB/s; "
              "higher is better)\n");
  for (const char* m : {"adaptive", "busy"}) {
    std::string M = m;
    std::string bare = M == "busy" ? "bare_" : "none_";
    std::printf("-- target progress: %s  (ratios: layer/baseline; latency "
                "<1 is better, bandwidth >1 is better)\n", m);
    print_ratio("write 64 B median (us)", "write64/" + M + " median",
                "tcp64 median", bare + "write64 median", 7.0);
    print_ratio("write 64 B p99 (us)", "write64/" + M + " p99", "tcp64 p99",
                bare + "write64 p99");
    print_ratio("read 64 B median (us)", "read64/" + M + " median",
                "tcp64 median", bare + "read64 median", 7.5);
    print_ratio("read 64 B p99 (us)", "read64/" + M + " p99", "tcp64 p99",
                bare + "read64 p99");
    print_ratio("write 4 KiB x16 (GB/s)", "write4096/" + M + " GB/s",
                "tcp4096 GB/s", bare + "write4096 GB/s");
    print_ratio("write 64 KiB x16 (GB/s)", "write65536/" + M + " GB/s",
                "tcp65536 GB/s", bare + "write65536 GB/s", 4.0);
  }
  double load[3] = {};
  if (getloadavg(load, 3) == 3)
    std::printf("load average at the end: %.2f %.2f %.2f on %u cores\n",
                load[0], load[1], load[2], std::thread::hardware_concurrency());
  return 0;
}
