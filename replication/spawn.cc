// Replacement servers started by the meta server (see spawn.h).
#include "replication/spawn.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "replication/control_msg.h"

namespace ftm::repl {

std::string shell_quote(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

ClusterResult<std::string> expand_spawn_template(std::string_view tmpl, const SpawnVars& v) {
  std::string out;
  for (size_t i = 0; i < tmpl.size(); i++) {
    if (tmpl[i] != '%') {
      out += tmpl[i];
      continue;
    }
    if (i + 1 == tmpl.size())
      return ClusterStatus(ClusterErrc::kInvalidArgument,
                           "--spawn-cmd: a lone % at the end (write %% for a literal %)");
    const char c = tmpl[++i];
    std::string host, port;
    if (c == 'h' || c == 'p') {
      auto hp = parse_host_port(v.memcached_addr);
      if (hp) {
        host = hp->first;
        port = std::to_string(hp->second);
      }
    }
    switch (c) {
      case '%': out += '%'; break;
      case 'n': out += std::to_string(v.node_id); break;
      case 'm': out += shell_quote(v.meta_addr); break;
      case 'a': out += shell_quote(v.memcached_addr); break;
      case 'f': out += shell_quote(v.fabric_addr); break;
      case 'h': out += shell_quote(host); break;
      case 'p': out += shell_quote(port); break;
      default:
        return ClusterStatus(ClusterErrc::kInvalidArgument,
                             std::string("--spawn-cmd: unknown placeholder %") + c +
                                 " (known: %n %m %a %h %p %f %%)");
    }
  }
  return out;
}

ClusterResult<pid_t> Spawner::run(const std::string& command, const std::string& what) {
  std::lock_guard g(mu_);
  const pid_t pid = ::fork();
  if (pid < 0)
    return ClusterStatus(ClusterErrc::kUnavailable,
                         "fork for " + what + ": " + std::strerror(errno));
  if (pid == 0) {
    // Child: only async-signal-safe calls until exec.
    ::setpgid(0, 0);  // a signal to the meta server's group spares it
    int null = ::open("/dev/null", O_RDONLY);
    if (null >= 0) {
      ::dup2(null, 0);
      if (null > 2) ::close(null);
    }
    // Nothing of the meta server's (listener, connections, state dir lock)
    // may live on in a long-running replacement.
    if (::close_range(3, ~0u, 0) != 0)
      for (int fd = 3; fd < 65536; fd++) ::close(fd);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  running_[pid] = what;
  log_(what + ": started /bin/sh -c " + shell_quote(command) + " (pid " +
       std::to_string(pid) + ")");
  return pid;
}

size_t Spawner::reap() {
  std::lock_guard g(mu_);
  for (auto it = running_.begin(); it != running_.end();) {
    int status = 0;
    pid_t r = ::waitpid(it->first, &status, WNOHANG);
    if (r == 0 || (r < 0 && errno == EINTR)) {
      ++it;
      continue;
    }
    std::string how = r < 0                 ? std::string("lost (") + std::strerror(errno) + ")"
                      : WIFEXITED(status)   ? "exited " + std::to_string(WEXITSTATUS(status))
                      : WIFSIGNALED(status) ? "killed by signal " + std::to_string(WTERMSIG(status))
                                            : "ended (status " + std::to_string(status) + ")";
    log_(it->second + ": pid " + std::to_string(it->first) + " " + how);
    it = running_.erase(it);
  }
  return running_.size();
}

}  // namespace ftm::repl
