// The meta flag parser (memcached's _meta_flag_preparse) and the reply
// helpers too big to inline. See proto_meta.cc for the commands.
#include <string>
#include <string_view>

#include "src/proto_meta_internal.h"
#include "src/proto_util.h"

namespace ftm::meta {
namespace {

// Meta exptime token (a signed 32-bit number) to relative time, as memcached's
// realtime(EXPTIME_TO_POSITIVE_TIME(n)): negative means already expired.
bool parse_exptime(std::string_view arg, rel_time_t* out) {
  int32_t v;
  if (!safe_strtol(arg, &v)) return false;
  *out = clock::realtime(v);
  return true;
}

}  // namespace

std::string& key_scratch() {
  thread_local std::string s;
  return s;
}
std::string& encode_scratch() {
  thread_local std::string s;
  return s;
}

// As in memcached, a later failing flag's message replaces an earlier one's,
// a bad F keeps the default message, and duplicates and unknown flags stop
// the scan at once.
std::string_view preparse(const Tokens& t, size_t start, std::string_view* key, MetaFlags* f) {
  std::string_view err = kErrFormat;
  bool seen[127] = {};
  for (size_t i = start; i < t.n; ++i) {
    const std::string_view tok = t.tok[i];
    const auto o = static_cast<unsigned char>(tok[0]);
    if (o >= 127 || seen[o]) return "CLIENT_ERROR duplicate flag";
    seen[o] = true;
    const std::string_view arg = tok.substr(1);
    switch (o) {
      case 'b':
        if (!base64_decode(*key, &key_scratch())) {
          err = "CLIENT_ERROR error decoding key";
          f->has_error = true;
          *key = {};
        } else {
          *key = key_scratch();
        }
        f->key_binary = true;
        break;
      case 'N':
        f->locked = true;
        f->vivify = true;
        if (!parse_exptime(arg, &f->autoviv_exptime)) {
          err = kErrBadToken;
          f->has_error = true;
        }
        break;
      case 'T':
        f->locked = true;
        if (!parse_exptime(arg, &f->exptime)) {
          err = kErrBadToken;
          f->has_error = true;
        } else {
          f->new_ttl = true;
        }
        break;
      case 'R':
        f->locked = true;
        if (!parse_exptime(arg, &f->recache_time)) {
          err = kErrBadToken;
          f->has_error = true;
        }
        break;
      case 'O':  // opaque; length checked where it is echoed
      case 'P':  // proxy hints, ignored
      case 'L':
      case 'k':
      case 's':
      case 't':
      case 'c':
      case 'f':
        break;
      case 'l':
      case 'h':
        f->locked = true;
        break;
      case 'v':
        f->value = true;
        break;
      case 'u':
        f->no_update = true;
        break;
      case 'q':
        f->no_reply = true;
        break;
      case 'F':
        if (!safe_strtoul(arg, &f->client_flags)) f->has_error = true;
        break;
      case 'C':
        if (!safe_strtoull(arg, &f->req_cas)) {
          err = kErrBadToken;
          f->has_error = true;
        } else {
          f->has_cas = true;
        }
        break;
      case 'E':
        if (!kMetaExplicitCas) return "CLIENT_ERROR invalid flag";
        if (!safe_strtoull(arg, &f->new_cas)) {
          err = kErrBadToken;
          f->has_error = true;
        } else {
          f->has_new_cas = true;
        }
        break;
      case 'M':
        if (tok.size() != 2) {
          err = "CLIENT_ERROR incorrect length for M token";
          f->has_error = true;
        } else {
          f->mode = tok[1];
        }
        break;
      case 'J':
        if (!safe_strtoull(arg, &f->initial)) {
          err = "CLIENT_ERROR invalid numeric initial value";
          f->has_error = true;
        }
        break;
      case 'D':
        if (!safe_strtoull(arg, &f->delta)) {
          err = "CLIENT_ERROR invalid numeric delta value";
          f->has_error = true;
        }
        break;
      case 'I':
        f->set_stale = true;
        break;
      default:
        return "CLIENT_ERROR invalid flag";
    }
  }
  return f->has_error ? err : std::string_view{};
}

// " k<key>", base64-encoded and followed by " b" for a binary key.
void append_key(std::string& out, std::string_view key, bool binary) {
  out.append(" k", 2);
  if (!binary) {
    out.append(key);
    return;
  }
  std::string& enc = encode_scratch();
  base64_encode(key, &enc);
  out.append(enc);
  out.append(" b", 2);
}

}  // namespace ftm::meta
