// Starting replacement servers for the metadata server (--spawn-cmd; issue
// 6, "Recovery onto a replacement"): the classic primary/secondary design's
// "on a fault it starts a replacement". The operator gives a command
// template; on a failure with no spare the meta server expands it and runs
// it with /bin/sh -c, without waiting: the replacement joins like any new
// server (JOIN, then secondaries to recover). The command must return once
// the server is started (daemonize it, e.g. ftmemcached -d, or end it with
// &); its exit status is logged when the meta server reaps it.
//
// Placeholders (each value is shell-quoted, so an address taken from a
// JOIN message cannot inject shell syntax):
//   %n  the failed server's node id (a replacement may rejoin under it:
//       a failed id comes back only empty, as a new server)
//   %m  the meta server's address, host:port (for --meta)
//   %a  the failed server's memcached address, host:port
//   %h  its host, %p its memcached port
//   %f  its fabric address, host:port
//   %%  a literal %
// Any other % sequence is refused when the meta server starts.
//
// Thread-safety: expand_spawn_template is a pure function; Spawner is safe
// for concurrent use.
#ifndef FTM_REPLICATION_SPAWN_H_
#define FTM_REPLICATION_SPAWN_H_

#include <sys/types.h>

#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "replication/partition_map.h"

namespace ftm::repl {

// The values for the placeholders above.
struct SpawnVars {
  uint32_t node_id = 0;
  std::string meta_addr;       // host:port
  std::string memcached_addr;  // host:port
  std::string fabric_addr;     // host:port
};

// Expands `tmpl` (see the file comment). Errors: kInvalidArgument naming
// the unknown placeholder (or a trailing lone %).
ClusterResult<std::string> expand_spawn_template(std::string_view tmpl, const SpawnVars& v);

// `s` in single quotes for /bin/sh ('\'' for each quote inside).
std::string shell_quote(std::string_view s);

class Spawner {
 public:
  // log: one line per start and exit.
  explicit Spawner(std::function<void(const std::string&)> log) : log_(std::move(log)) {}
  // Runs `command` with /bin/sh -c in a child (own process group, stdin
  // from /dev/null, stdout/stderr inherited); `what` names it in logs.
  // Returns the child's pid. Errors: kUnavailable (fork failed; errno text).
  ClusterResult<pid_t> run(const std::string& command, const std::string& what);
  // Reaps finished children without blocking and logs each exit status
  // ("exited 0", "exited 127", "killed by signal 9"). Returns how many are
  // still running. The meta server calls it every accept timeout (100 ms).
  size_t reap();

 private:
  std::function<void(const std::string&)> log_;
  std::mutex mu_;
  std::map<pid_t, std::string> running_;  // pid -> what
};

}  // namespace ftm::repl

#endif  // FTM_REPLICATION_SPAWN_H_
