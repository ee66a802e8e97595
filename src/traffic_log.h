// -vv logging of client traffic in memcached's style: "<fd command line" for
// each request and ">fd reply line" for each reply line, value data blocks
// left out ("sending key <key>" instead, as memcached prints).
//
// Thread-safety: safe for concurrent use (each line is one fprintf).
#ifndef FTM_SRC_TRAFFIC_LOG_H_
#define FTM_SRC_TRAFFIC_LOG_H_

#include <string_view>

namespace ftm {

// `consumed`: request bytes the parser just handled (command lines and data).
void log_requests(int fd, std::string_view consumed);
// `replies`: reply bytes the parser just appended.
void log_replies(int fd, std::string_view replies);

}  // namespace ftm

#endif  // FTM_SRC_TRAFFIC_LOG_H_
