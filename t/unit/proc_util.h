// Small /proc helpers shared by the tests that stop child processes.
#ifndef FTM_T_UNIT_PROC_UTIL_H_
#define FTM_T_UNIT_PROC_UTIL_H_

#include <sys/types.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

namespace ftm::testing {

// SIGSTOP is asynchronous: kill(2) returns before the target has stopped,
// and a test that assumes otherwise races the target (it may still complete
// work). Polls /proc/PID/stat until the state is 'T' or 't'; false after
// about one second.
inline bool wait_stopped(pid_t pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/stat";
  for (int i = 0; i < 1000; i++) {
    if (FILE* f = std::fopen(path.c_str(), "r")) {
      char state = 0;
      int n = std::fscanf(f, "%*d (%*[^)]) %c", &state);
      std::fclose(f);
      if (n == 1 && (state == 'T' || state == 't')) return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

}  // namespace ftm::testing

#endif  // FTM_T_UNIT_PROC_UTIL_H_
