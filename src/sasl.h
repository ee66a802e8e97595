// Binary-protocol SASL authentication (-S) through Cyrus SASL (libsasl2), as
// memcached's sasl_defs.c does it: application name "memcached", so an
// existing memcached SASL set-up (memcached.conf naming mech_list and a
// sasldb) works unchanged.
//
// Configuration: the directory in $SASL_CONF_PATH, else /etc/sasl or
// /etc/sasl2, must hold memcached.conf (as memcached requires). If
// $MEMCACHED_SASL_PWDB names a file of "user:password" lines, PLAIN passwords
// are checked against it first (memcached's --enable-sasl-pwdb).
//
// Credentials are never logged: Cyrus messages at its PASS/TRACE/DEBUG levels
// are dropped whatever the verbosity, and nothing here prints a user, a
// password or the bytes of an exchange.
//
// Thread-safety: init() once at start-up, before worker threads; the other
// functions are safe for concurrent use on different Sessions.
#ifndef FTM_SRC_SASL_H_
#define FTM_SRC_SASL_H_

#include <string>
#include <string_view>

#include "src/session.h"

namespace ftm::sasl {

// sasl_server_init. Returns false (and a message for stderr) on failure;
// memcached then exits with status 1 ("Error initializing sasl.").
bool init(int verbose, std::string* error);

// True once init() has succeeded.
bool initialized();

enum class Result {
  kOk,        // authenticated
  kContinue,  // the mechanism wants another step; `out` holds its challenge
  kFail,      // refused (bad mechanism, bad password, no SASL connection)
};

// Space-separated mechanism list (sasl_listmech). False on failure.
bool list_mechs(Session& session, std::string* out);

// SASL auth (sasl_server_start) with mechanism `mech` and the client's first
// response `data`. Sets session.sasl_started when the mechanism was accepted.
Result start(Session& session, std::string_view mech, std::string_view data, std::string* out);

// SASL step (sasl_server_step). kFail if start() did not begin an exchange.
Result step(Session& session, std::string_view data, std::string* out);

}  // namespace ftm::sasl

#endif  // FTM_SRC_SASL_H_
