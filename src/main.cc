// ftmemcached's entry point: flags, daemonizing, limits, privileges, then the
// store and the server, until SIGINT/SIGTERM or `shutdown`.
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>
#include <fcntl.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "rdma/cluster_secret.h"
#include "rdma/fabric_info.h"
#include "replication/cluster_node.h"
#include "src/auth_file.h"
#include "src/clock.h"
#include "src/sasl.h"
#include "src/server.h"
#include "src/settings.h"
#include "src/store.h"

namespace {

// Write end of the pipe on which a daemonized child tells its waiting parent
// that start-up succeeded ('0'); -1 when not daemonizing.
int g_ready_fd = -1;

// Forks; the parent waits until the child reports start-up (then exits 0) or
// dies (then exits with the child's status), so `ftmemcached -d` fails
// visibly when the port is taken. Returns in the child only.
void daemonize_begin() {
  int fds[2];
  if (pipe(fds) != 0) {
    perror("pipe");
    exit(EX_OSERR);
  }
  pid_t pid = fork();
  if (pid < 0) {
    perror("fork");
    exit(EX_OSERR);
  }
  if (pid > 0) {
    close(fds[1]);
    char c;
    ssize_t n;
    do {
      n = read(fds[0], &c, 1);
    } while (n < 0 && errno == EINTR);
    if (n == 1 && c == '0') _exit(0);
    int status = 0;
    if (waitpid(pid, &status, 0) == pid && WIFEXITED(status)) _exit(WEXITSTATUS(status));
    _exit(EX_OSERR);
  }
  close(fds[0]);
  g_ready_fd = fds[1];
  if (setsid() == -1) {
    perror("setsid");
    exit(EX_OSERR);
  }
}

// The child is serving: detach from the terminal and release the parent.
void daemonize_done(bool keep_stdio, bool keep_cwd) {
  if (!keep_cwd && chdir("/") != 0) perror("chdir");
  if (!keep_stdio) {
    int fd = open("/dev/null", O_RDWR);
    if (fd >= 0) {
      dup2(fd, STDIN_FILENO);
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
      if (fd > STDERR_FILENO) close(fd);
    }
  }
  ssize_t n = write(g_ready_fd, "0", 1);
  (void)n;
  close(g_ready_fd);
  g_ready_fd = -1;
}

// Absolute form of a path (relative to the current directory), so it still
// names the same file after daemonizing's chdir("/").
std::string absolute(const std::string& path) {
  if (path.empty() || path[0] == '/') return path;
  char cwd[PATH_MAX];
  if (getcwd(cwd, sizeof cwd) == nullptr) return path;
  return std::string(cwd) + "/" + path;
}

bool save_pid(const std::string& path) {
  FILE* f = fopen(path.c_str(), "w");
  if (f == nullptr) {
    fprintf(stderr, "Could not open the pid file %s for writing: %s\n", path.c_str(),
            strerror(errno));
    return false;
  }
  fprintf(f, "%ld\n", static_cast<long>(getpid()));
  if (fclose(f) != 0) {
    fprintf(stderr, "Could not close the pid file %s: %s\n", path.c_str(), strerror(errno));
    return false;
  }
  return true;
}

// memcached raises the open-file limit to what -c needs; so do we (with room
// for listeners, worker wake-up fds and the process's own files).
void raise_nofile(const ftm::Settings& s) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  rlim_t want = static_cast<rlim_t>(s.max_conns) + 2 * static_cast<rlim_t>(s.num_threads) + 64;
  if (rl.rlim_cur >= want) return;
  if (rl.rlim_max < want) rl.rlim_max = want;  // succeeds only as root
  rl.rlim_cur = want;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    fprintf(stderr,
            "WARNING: could not raise the open-file limit to %llu (now %llu); connections "
            "beyond it will be refused\n",
            static_cast<unsigned long long>(want), static_cast<unsigned long long>(rl.rlim_cur));
  }
}

// -u: assume the user's identity when started as root (memcached does this
// before binding; we bind first so that ports below 1024 work).
int drop_privileges(const ftm::Settings& s) {
  if (geteuid() != 0) return 0;  // -u only matters for root, as in memcached
  if (s.username.empty()) return 0;  // checked at start-up
  struct passwd* pw = getpwnam(s.username.c_str());
  if (pw == nullptr) {
    fprintf(stderr, "can't find the user %s to switch to\n", s.username.c_str());
    return EX_NOUSER;
  }
  if (pw->pw_uid == 0) return 0;  // -u root: nothing to drop
  if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
      setuid(pw->pw_uid) != 0) {
    fprintf(stderr, "failed to assume identity of user %s: %s\n", s.username.c_str(),
            strerror(errno));
    return EX_OSERR;
  }
  return 0;
}

// Cluster mode (--meta): the node that joins the metadata server's cluster
// and gives every worker routing, forwarding and the replication barrier.
std::unique_ptr<ftm::repl::ClusterNode> start_cluster(const ftm::Settings& s, ftm::Store& store,
                                                      ftm::Server& server, std::string* err) {
  ftm::repl::ClusterNode::Options o;
  o.meta_host = s.meta_host;
  o.meta_port = static_cast<uint16_t>(s.meta_port);
  o.node_id = s.node_id;
  auto provider = ftm::rdma::parse_provider(s.fabric);
  if (!provider) {
    *err = provider.status().to_string();
    return nullptr;
  }
  o.provider = *provider;
  o.progress = s.fabric_progress == "poll"    ? ftm::rdma::ProgressMode::kAdaptive
               : s.fabric_progress == "block" ? ftm::rdma::ProgressMode::kBlocking
                                              : ftm::rdma::ProgressMode::kAuto;
  o.fabric_host = s.fabric_host;
  if (!s.cluster_secret_file.empty()) {
    auto secret = ftm::rdma::load_cluster_secret(s.cluster_secret_file);
    if (!secret) {
      *err = "cluster: " + secret.status().to_string();
      return nullptr;
    }
    o.cluster_secret = std::move(*secret);
  }
  o.fabric_port = static_cast<uint16_t>(s.fabric_port);
  o.ring_size = s.replication_ring_size;
  o.failover_wait = std::chrono::milliseconds(s.failover_wait_ms);
  o.spare = s.spare;
  o.recovery_rate_mbps = s.recovery_rate_mb;
  std::vector<ftm::ListenAddr> addrs;
  ftm::split_listen(s.listen, s.port, &addrs);
  std::string host = addrs.empty() ? std::string() : addrs[0].host;
  if (host.empty() || host == "*" || host == "0.0.0.0" || host == "::") host = s.fabric_host;
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  o.memcached_addr = host + ":" + std::to_string(server.tcp_port());
  o.settings = &server.settings();
  o.server = &server;
  o.register_stats = [&server](ftm::ThreadStats* ts) { server.add_thread_stats(ts); };
  return ftm::repl::ClusterNode::start(o, store, err);
}

}  // namespace

int main(int argc, char** argv) {
  ftm::Settings settings;
  ftm::ParseOutcome parsed = ftm::parse_settings(argc, argv, &settings);
  if (parsed.exit) return parsed.exit_code;
  if (settings.fabric_info) return ftm::rdma::print_fabric_info(stdout);

  if (geteuid() == 0 && settings.username.empty()) {
    // As memcached: running as root must be asked for (-u root).
    fprintf(stderr, "can't run as root without the -u switch\n");
    return EX_USAGE;
  }

  signal(SIGPIPE, SIG_IGN);
  signal(SIGHUP, SIG_IGN);  // memcached ignores SIGHUP too

  if (settings.core_dumps) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_CORE, &rl) == 0) {
      rl.rlim_cur = rl.rlim_max;
      setrlimit(RLIMIT_CORE, &rl);
    }
  }
  raise_nofile(settings);

  std::string pid_file = absolute(settings.pid_file);
  if (settings.daemonize) {
    if (!settings.socket_path.empty()) settings.socket_path = absolute(settings.socket_path);
    daemonize_begin();
  }

  ftm::clock::init();

  if (!settings.auth_file.empty()) {
    std::string error;
    if (!ftm::auth_file_load(settings.auth_file, &error)) {
      fprintf(stderr, "%s\n", error.c_str());
      return EXIT_FAILURE;  // memcached exits with 1 here
    }
  }
  if (settings.sasl) {
    std::string error;
    if (!ftm::sasl::init(settings.verbose, &error)) {
      fprintf(stderr, "%s\n", error.empty() ? "Error initializing sasl." : error.c_str());
      return EXIT_FAILURE;
    }
  }

  ftm::Store::Options opts;
  opts.mem_limit = settings.max_bytes;
  opts.item_size_max = settings.item_size_max;
  opts.use_cas = settings.use_cas;
  opts.evict = settings.evict_to_free;
  opts.sweeper = settings.lru_crawler;
  auto store = std::make_unique<ftm::Store>(opts);

  auto server = std::make_unique<ftm::Server>(settings, store.get());
  std::string err;
  if (!server->bind(&err)) {
    fprintf(stderr, "%s\n", err.c_str());
    return EX_OSERR;
  }
  if (!pid_file.empty() && !save_pid(pid_file)) return EX_CANTCREAT;
  if (int rc = drop_privileges(settings); rc != 0) {
    if (!pid_file.empty()) unlink(pid_file.c_str());
    return rc;
  }
  if (settings.lock_memory && mlockall(MCL_CURRENT | MCL_FUTURE) != 0) {
    fprintf(stderr, "warning: -k invalid, mlockall() failed: %s\n", strerror(errno));
  }
  std::unique_ptr<ftm::repl::ClusterNode> cluster;
  if (settings.cluster()) {
    cluster = start_cluster(settings, *store, *server, &err);
    if (!cluster) {
      fprintf(stderr, "%s\n", err.c_str());
      if (!pid_file.empty()) unlink(pid_file.c_str());
      return EX_UNAVAILABLE;
    }
    server->set_cluster(cluster.get());
  }
  if (!server->start(&err)) {
    fprintf(stderr, "%s\n", err.c_str());
    if (!pid_file.empty()) unlink(pid_file.c_str());
    return EX_OSERR;
  }
  if (settings.daemonize) daemonize_done(settings.verbose > 0, settings.core_dumps);

  int rc = server->run();
  // The workers are stopped: leave the cluster (peers' calls in flight
  // fail, replication stops) before the store goes.
  if (cluster) cluster->stop();
  server.reset();
  cluster.reset();
  store.reset();
  if (!pid_file.empty()) unlink(pid_file.c_str());
  return rc;
}
