// Cyrus SASL glue for the binary protocol's SASL opcodes. See sasl.h.
#include "src/sasl.h"

#include <sasl/sasl.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace ftm::sasl {
namespace {

std::atomic<int> g_verbose{0};
std::atomic<bool> g_initialized{false};
// $MEMCACHED_SASL_PWDB, read once by init().
std::string g_pwdb;

// Longest "user:password" line memcached's sasl pwdb reads.
constexpr size_t kMaxPwdbLine = 256;

// Compares without an early exit, so timing does not reveal how much of a
// password matched.
bool same_bytes(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

// SASL_CB_SERVER_USERDB_CHECKPASS: the MEMCACHED_SASL_PWDB file. Returning
// anything but SASL_OK lets Cyrus fall back to its own pwcheck (sasldb).
int pwdb_checkpass(sasl_conn_t*, void*, const char* user, const char* pass, unsigned passlen,
                   struct propctx*) {
  std::string_view u(user);
  if (u.size() + passlen > kMaxPwdbLine - 4) return SASL_NOAUTHZ;
  FILE* f = std::fopen(g_pwdb.c_str(), "r");
  if (f == nullptr) {
    if (g_verbose.load(std::memory_order_relaxed) > 0) {
      std::fprintf(stderr, "WARNING: Failed to open sasl database\n");
    }
    return SASL_NOAUTHZ;
  }
  char line[kMaxPwdbLine];
  bool ok = false;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    std::string_view l(line);
    while (!l.empty() && (l.back() == '\n' || l.back() == '\r')) l.remove_suffix(1);
    size_t colon = l.find(':');
    if (colon == std::string_view::npos || l.substr(0, colon) != u) continue;
    std::string_view stored = l.substr(colon + 1);
    // Further ':'-separated fields after the password are allowed.
    stored = stored.substr(0, stored.find(':'));
    ok = same_bytes(stored, std::string_view(pass, passlen));
    break;
  }
  std::fclose(f);
  std::memset(line, 0, sizeof line);
  return ok ? SASL_OK : SASL_NOAUTHZ;
}

// SASL_CB_LOG. PASS, TRACE and DEBUG messages may carry credentials or
// exchange bytes: never printed. NOTE needs -vv, WARN and FAIL need -v.
int log_cb(void*, int level, const char* message) {
  int v = g_verbose.load(std::memory_order_relaxed);
  bool print = false;
  switch (level) {
    case SASL_LOG_NONE:
    case SASL_LOG_PASS:
    case SASL_LOG_TRACE:
    case SASL_LOG_DEBUG:
      print = false;
      break;
    case SASL_LOG_NOTE:
      print = v >= 2;
      break;
    case SASL_LOG_WARN:
    case SASL_LOG_FAIL:
      print = v >= 1;
      break;
    default:
      print = true;
  }
  if (print) std::fprintf(stderr, "SASL (severity %d): %s\n", level, message);
  return SASL_OK;
}

// SASL_CB_GETCONFPATH: where memcached.conf lives, as memcached looks for it.
int getconfpath_cb(void*, const char** path) {
  static const char* const kDirs[] = {"/etc/sasl", "/etc/sasl2"};
  *path = std::getenv("SASL_CONF_PATH");
  if (*path == nullptr) {
    for (const char* dir : kDirs) {
      std::string file = std::string(dir) + "/memcached.conf";
      if (access(file.c_str(), F_OK) == 0) {
        *path = dir;
        break;
      }
    }
  }
  if (g_verbose.load(std::memory_order_relaxed) > 0) {
    if (*path != nullptr) {
      std::fprintf(stderr, "Reading configuration from: <%s>\n", *path);
    } else {
      std::fprintf(stderr, "Failed to locate a config path\n");
    }
  }
  return *path != nullptr ? SASL_OK : SASL_FAIL;
}

using CallbackFn = int (*)();
sasl_callback_t g_callbacks[4];

// sasl_callback_t stores every callback as int (*)(); the cast goes through
// void (*)(), the type -Wcast-function-type accepts as generic.
template <class F>
CallbackFn as_callback(F* fn) {
  return reinterpret_cast<CallbackFn>(reinterpret_cast<void (*)()>(fn));
}

void dispose(void* conn) {
  auto* c = static_cast<sasl_conn_t*>(conn);
  sasl_dispose(&c);
}

// The Session's sasl_conn_t, created on first use (memcached's init_sasl_conn).
sasl_conn_t* conn_of(Session& session) {
  if (session.sasl_conn == nullptr) {
    sasl_conn_t* c = nullptr;
    if (sasl_server_new("memcached", nullptr, nullptr, nullptr, nullptr, nullptr, 0, &c) !=
        SASL_OK) {
      if (g_verbose.load(std::memory_order_relaxed) > 0) {
        std::fprintf(stderr, "Failed to initialize SASL conn.\n");
      }
      return nullptr;
    }
    session.sasl_conn = std::unique_ptr<void, void (*)(void*)>(c, &dispose);
  }
  return static_cast<sasl_conn_t*>(session.sasl_conn.get());
}

Result finish(int rc, const char* out, unsigned outlen, std::string* reply) {
  reply->clear();
  if (rc == SASL_OK) return Result::kOk;
  if (rc == SASL_CONTINUE) {
    if (out != nullptr) reply->assign(out, outlen);
    return Result::kContinue;
  }
  if (g_verbose.load(std::memory_order_relaxed) > 0) {
    std::fprintf(stderr, "Unknown sasl response:  %d\n", rc);
  }
  return Result::kFail;
}

}  // namespace

bool init(int verbose, std::string* error) {
  g_verbose.store(verbose, std::memory_order_relaxed);
  size_t n = 0;
  if (const char* pwdb = std::getenv("MEMCACHED_SASL_PWDB"); pwdb != nullptr) {
    g_pwdb = pwdb;
    g_callbacks[n++] = {SASL_CB_SERVER_USERDB_CHECKPASS,
                        as_callback(&pwdb_checkpass), nullptr};
  } else if (verbose > 0) {
    std::fprintf(stderr,
                 "INFO: MEMCACHED_SASL_PWDB not specified. Internal passwd database disabled\n");
  }
  g_callbacks[n++] = {SASL_CB_LOG, as_callback(&log_cb), nullptr};
  g_callbacks[n++] = {SASL_CB_GETCONFPATH, as_callback(&getconfpath_cb),
                      nullptr};
  g_callbacks[n++] = {SASL_CB_LIST_END, nullptr, nullptr};
  if (sasl_server_init(g_callbacks, "memcached") != SASL_OK) {
    *error = "Error initializing sasl.";
    return false;
  }
  if (verbose > 0) std::fprintf(stderr, "Initialized SASL.\n");
  g_initialized.store(true, std::memory_order_release);
  return true;
}

bool initialized() { return g_initialized.load(std::memory_order_acquire); }

bool list_mechs(Session& session, std::string* out) {
  sasl_conn_t* c = initialized() ? conn_of(session) : nullptr;
  const char* list = nullptr;
  unsigned len = 0;
  if (c == nullptr || sasl_listmech(c, nullptr, "", " ", "", &list, &len, nullptr) != SASL_OK) {
    if (g_verbose.load(std::memory_order_relaxed) > 0) {
      std::fprintf(stderr, "Failed to list SASL mechanisms.\n");
    }
    return false;
  }
  out->assign(list, len);
  return true;
}

Result start(Session& session, std::string_view mech, std::string_view data, std::string* out) {
  sasl_conn_t* c = initialized() ? conn_of(session) : nullptr;
  if (c == nullptr) return Result::kFail;
  std::string mech_z(mech);  // sasl_server_start wants a C string
  const char* reply = nullptr;
  unsigned reply_len = 0;
  int rc = sasl_server_start(c, mech_z.c_str(), data.empty() ? nullptr : data.data(),
                             static_cast<unsigned>(data.size()), &reply, &reply_len);
  session.sasl_started = (rc == SASL_OK || rc == SASL_CONTINUE);
  return finish(rc, reply, reply_len, out);
}

Result step(Session& session, std::string_view data, std::string* out) {
  out->clear();
  if (!session.sasl_started) {
    if (g_verbose.load(std::memory_order_relaxed) > 0) {
      std::fprintf(stderr, "SASL_STEP called but sasl_server_start not called for this connection!\n");
    }
    return Result::kFail;
  }
  sasl_conn_t* c = initialized() ? conn_of(session) : nullptr;
  if (c == nullptr) return Result::kFail;
  const char* reply = nullptr;
  unsigned reply_len = 0;
  int rc = sasl_server_step(c, data.empty() ? nullptr : data.data(),
                            static_cast<unsigned>(data.size()), &reply, &reply_len);
  return finish(rc, reply, reply_len, out);
}

}  // namespace ftm::sasl
