// memcached's text-protocol authentication (-Y FILE, memcached's authfile.c
// and try_read_command_asciiauth): FILE holds "user:password" lines; until a
// text connection has authenticated, every request line is refused with
// "CLIENT_ERROR unauthenticated" except
//     set <any key> <any flags> <any exptime> <len>\r\n<user> <password>\r\n
// which answers "STORED" (then the connection is an ordinary one),
// "CLIENT_ERROR authentication failure", "CLIENT_ERROR bad authentication
// token format" or "CLIENT_ERROR bad command line termination".
//
// Credentials are never logged.
//
// Thread-safety: auth_file_load() once at start-up, before worker threads;
// the rest is safe for concurrent use on different Sessions.
#ifndef FTM_SRC_AUTH_FILE_H_
#define FTM_SRC_AUTH_FILE_H_

#include <string>
#include <string_view>

#include "src/proto_text.h"
#include "src/session.h"

namespace ftm {

// Reads the -Y file. On failure returns false with memcached's message, e.g.
// "Authfile [PATH] has a malformed entry. Should be 'user:password'";
// memcached then exits with status 1.
bool auth_file_load(const std::string& path, std::string* error);

// Is (user, password) one of the loaded entries? Constant time in the
// password's bytes.
bool auth_file_check(std::string_view user, std::string_view password);

// Handles requests of a not yet authenticated text connection (call it
// instead of text_process while settings->auth_file is set and
// !session.authenticated). Stops right after the request that
// authenticates: the caller hands in.substr(result.consumed) to text_process
// (it may be empty). Counts auth_cmds / auth_errors. Never reads past `in`;
// an endless line (over 2048 bytes, no newline) or a token too large for
// memcached's read buffer closes the connection, as memcached does.
ProtoResult text_auth_process(Session& session, std::string_view in, std::string& out);

}  // namespace ftm

#endif  // FTM_SRC_AUTH_FILE_H_
