// `ftmemcached --fabric-info`: what each candidate provider answers to the
// layer's request (fi_getinfo(3)), and what --fabric=auto would pick.
#include "rdma/fabric_info.h"

#include <set>
#include <string>

#include "rdma/domain_internal.h"

namespace ftm::rdma {

int print_fabric_info(FILE* out) {
  const char* candidates[] = {"verbs", "tcp", "shm"};
  std::string auto_pick;
  int usable = 0;
  for (const char* p : candidates) {
    fi_info* list = nullptr;
    bool dc = false, ordered = false;
    int ret = detail::get_info(p, nullptr, &list, &dc, &ordered);
    if (ret) {
      std::fprintf(out, "%-6s unusable: %s\n", p,
                   detail::fi_error_string(ret).c_str());
      continue;
    }
    std::set<std::string> seen;  // one line per fabric/domain pair
    for (fi_info* fi = list; fi; fi = fi->next) {
      std::string line = detail::describe_info(fi, dc, ordered);
      if (!seen.insert(line).second) continue;
      std::fprintf(out, "%-6s usable: %s\n", p, line.c_str());
    }
    fi_freeinfo(list);
    usable++;
    if (auto_pick.empty() && std::string(p) != "shm") auto_pick = p;
  }
  if (auto_pick.empty()) {
    std::fprintf(out, "auto: none (no provider offers FI_EP_MSG with "
                      "FI_MSG|FI_RMA; install libfabric's tcp provider)\n");
    return 1;
  }
  std::fprintf(out, "auto: %s\n", auto_pick.c_str());
  return usable ? 0 : 1;
}

}  // namespace ftm::rdma
