// Text-protocol authentication (-Y). See auth_file.h.
#include "src/auth_file.h"

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "src/proto_util.h"

namespace ftm {
namespace {

struct Entry {
  std::string user;
  std::string password;
};

// Written once by auth_file_load() before workers start; read-only after.
std::vector<Entry> g_entries;

// memcached's limits: a command line is given up on past 2048 bytes without
// a newline; the token must fit its 16 KiB read buffer with the line.
constexpr size_t kMaxAuthLine = 2048;
constexpr size_t kReadBufferSize = 16384;
constexpr size_t kMaxTokens = 24;  // memcached's MAX_TOKENS
// Longest line memcached's authfile_load reads with fgets.
constexpr size_t kMaxEntryLen = 256;

bool same_bytes(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

// memcached's util.c safe_strtoul on a token that may end in '\r' (it is the
// last token of a line whose '\n' was cut off): strtoul, then the number must
// be followed by whitespace or the end, and "-N" is refused.
bool token_strtoul(std::string_view token, uint32_t* out) {
  std::string s(token);  // strtoul wants a NUL-terminated string
  errno = 0;
  char* end = nullptr;
  unsigned long v = std::strtoul(s.c_str(), &end, 10);
  if (errno == ERANGE || end == s.c_str()) return false;
  if (std::isspace(static_cast<unsigned char>(*end)) || *end == '\0') {
    if (static_cast<long>(v) < 0 && s.find('-') != std::string::npos) return false;
    *out = static_cast<uint32_t>(v);  // memcached truncates the same way
    return true;
  }
  return false;
}

// memcached tokenizes NUL-terminated strings: a NUL ends the text.
std::string_view until_nul(std::string_view s) {
  size_t nul = s.find('\0');
  return nul == std::string_view::npos ? s : s.substr(0, nul);
}

void reply(std::string& out, std::string_view line) {
  out.append(line);
  out.append("\r\n");
}

}  // namespace

bool auth_file_load(const std::string& path, std::string* error) {
  if (path.empty()) {
    *error = "Could not open authfile [] for reading";
    return false;
  }
  FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) {
    *error = "Could not open authfile [" + path + "] for reading, error " + std::strerror(errno);
    return false;
  }
  std::vector<Entry> entries;
  char buf[kMaxEntryLen];
  bool ok = true;
  while (std::fgets(buf, sizeof buf, f) != nullptr) {
    std::string_view line(buf);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      ok = false;
      break;
    }
    std::string_view pass = line.substr(colon + 1);
    size_t end = pass.find_first_of("\r\n");
    if (end != std::string_view::npos) pass = pass.substr(0, end);
    entries.push_back({std::string(line.substr(0, colon)), std::string(pass)});
  }
  std::memset(buf, 0, sizeof buf);
  std::fclose(f);
  if (!ok) {
    *error = "Authfile [" + path + "] has a malformed entry. Should be 'user:password'";
    return false;
  }
  g_entries = std::move(entries);
  return true;
}

bool auth_file_check(std::string_view user, std::string_view password) {
  bool ok = false;
  for (const Entry& e : g_entries) {
    // No early exit: every entry is compared.
    if (same_bytes(user, e.user) & same_bytes(password, e.password)) ok = true;
  }
  return ok;
}

ProtoResult text_auth_process(Session& session, std::string_view in, std::string& out) {
  ProtoResult r;
  ThreadStats* stats = session.ctx != nullptr ? session.ctx->stats : nullptr;
  while (!session.authenticated) {
    std::string_view rest = in.substr(r.consumed);
    if (rest.size() < 2) {  // no auth command is this short
      if (!rest.empty()) r.need = r.consumed + 2;
      return r;
    }
    size_t nl = rest.find('\n');
    if (nl == std::string_view::npos) {
      if (rest.size() > kMaxAuthLine) {
        r.close = true;
      } else {
        r.need = in.size() + 1;
      }
      return r;
    }
    std::string_view line = until_nul(rest.substr(0, nl));
    std::string_view tok[kMaxTokens];
    size_t n = tokenize(line, tok, kMaxTokens);
    uint32_t size = 0;
    if (n < 5 || tok[0] != "set" || !token_strtoul(tok[4], &size)) {
      r.consumed += nl + 1;
      reply(out, "CLIENT_ERROR unauthenticated");
      continue;
    }
    // memcached reads the token into its fixed read buffer; one that cannot
    // fit makes its read fail and the connection close.
    uint64_t total = uint64_t{nl} + 1 + size + 2;
    if (total > kReadBufferSize) {
      r.close = true;
      return r;
    }
    if (rest.size() < total) {
      r.need = r.consumed + total;
      return r;
    }
    std::string_view data = rest.substr(nl + 1, size_t{size} + 2);
    r.consumed += total;
    if (data.substr(size) != "\r\n") {
      reply(out, "CLIENT_ERROR bad command line termination");
      continue;
    }
    std::string_view cred[3];
    size_t ncred = tokenize(until_nul(data.substr(0, size)), cred, 3);
    if (ncred < 2) {
      reply(out, "CLIENT_ERROR bad authentication token format");
      continue;
    }
    // With three slots, cred[0] and cred[1] are whole tokens (any remainder
    // lands in cred[2] and is ignored, as memcached ignores extra tokens).
    std::string_view password = cred[1];
    if (stats != nullptr) stats->auth_cmds.add();
    if (auth_file_check(cred[0], password)) {
      session.authenticated = true;
      reply(out, "STORED");
    } else {
      if (stats != nullptr) stats->auth_errors.add();
      reply(out, "CLIENT_ERROR authentication failure");
    }
  }
  return r;
}

}  // namespace ftm
