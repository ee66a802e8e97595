#include "t/unit/rdma_helper.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "rdma/connection.h"
#include "rdma/fabric_domain.h"
#include "rdma/listener.h"
#include "rdma/memory_region.h"

namespace ftm::rdma::testing {
namespace {

// Runs in the child. Protocol on stdout (a pipe): "PORT <n>\n".
[[noreturn]] void run_target(size_t bytes) {
  FabricOptions o;
  o.provider = ProviderChoice::kTcp;
  o.local_addr = "127.0.0.1";
  o.identity = "target-" + std::to_string(getpid());
  o.log = [](std::string_view) {};
  o.connect_timeout = std::chrono::milliseconds(15000);  // loaded CI machines
  auto f = Fabric::open(o);
  if (!f) {
    std::fprintf(stderr, "helper: %s\n", f.status().to_string().c_str());
    _exit(2);
  }
  std::vector<std::byte> mem(bytes);
  auto region = (*f)->register_memory(mem, true, true);
  std::vector<std::byte> ctl(RegionDescriptor::kWireSize);
  auto ctl_mr = (*f)->register_memory(ctl, false, false);
  auto l = (*f)->listen("127.0.0.1", 0);
  if (!region || !ctl_mr || !l) _exit(3);
  std::printf("PORT %u\n", unsigned((*l)->port()));
  std::fflush(stdout);
  auto c = (*l)->accept(std::chrono::seconds(20));
  if (!c) _exit(4);
  auto wire = (*region)->descriptor().serialize();
  std::memcpy(ctl.data(), wire.data(), wire.size());
  if (!(*c)->send(**ctl_mr, 0, wire.size()).wait()) _exit(5);
  // The application thread does nothing from here on.
  for (;;) pause();
}

int maybe_run_helper() {
  const char* v = std::getenv("FTM_RDMA_HELPER");
  if (v && *v) run_target(std::strtoull(v, nullptr, 10));
  return 0;
}

[[maybe_unused]] const int kHelperHook = maybe_run_helper();

}  // namespace

Helper spawn_target(size_t region_bytes) {
  Helper h;
  int fds[2];
  if (pipe(fds) != 0) return h;
  // Built before fork: the child of a threaded parent may only call
  // async-signal-safe functions until exec.
  std::string var = "FTM_RDMA_HELPER=" + std::to_string(region_bytes);
  std::vector<char*> env;
  for (char** e = environ; *e; e++)
    if (std::strncmp(*e, "FTM_RDMA_HELPER=", 16) != 0) env.push_back(*e);
  env.push_back(var.data());
  env.push_back(nullptr);
  char arg0[] = "rdma_helper";
  char* argv[] = {arg0, nullptr};
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
  unsigned port = 0;
  if (pid > 0 && in && std::fscanf(in, "PORT %u", &port) == 1) {
    h.pid = pid;
    h.port = uint16_t(port);
    h.identity = "target-" + std::to_string(pid);
  } else {
    std::fprintf(stderr, "spawn_target: helper did not report a port\n");
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
  if (in) fclose(in);
  return h;
}

void reap(Helper& h) {
  if (h.pid <= 0) return;
  kill(h.pid, SIGKILL);
  waitpid(h.pid, nullptr, 0);
  h.pid = -1;
}

}  // namespace ftm::rdma::testing
