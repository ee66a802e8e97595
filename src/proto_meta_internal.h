// Internals of the meta command front end, shared by its two files:
// proto_meta_flags.cc (the flag parser, memcached's _meta_flag_preparse, and
// the reply helpers) and proto_meta.cc (the commands). Not for other modules.
//
// Thread-safety: as proto_text; the scratch buffers are per thread.
#ifndef FTM_SRC_PROTO_META_INTERNAL_H_
#define FTM_SRC_PROTO_META_INTERNAL_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "src/clock.h"
#include "src/proto_util.h"
#include "src/stats.h"
#include "src/store.h"

namespace ftm::meta {

// The E(token) flag (explicit new cas) of memcached releases after 1.6.18,
// which issue 2 asks for. 1.6.18 itself answers "CLIENT_ERROR invalid flag";
// false restores that answer.
inline constexpr bool kMetaExplicitCas = true;

// memcached's tokenize_command limit (MAX_TOKENS, counting the terminal
// token), and proto_text.c's MFLAG_MAX_OPT_LENGTH / MFLAG_MAX_OPAQUE_LENGTH.
inline constexpr size_t kMaxTokens = 24;
inline constexpr size_t kMaxOptTokens = 20;
inline constexpr size_t kMaxOpaqueLength = 32;

inline constexpr std::string_view kErrFormat = "CLIENT_ERROR bad command line format";
inline constexpr std::string_view kErrBadToken = "CLIENT_ERROR bad token in command line format";

// Tokens of one command line: tok[0] the command, tok[1] the key, then flags
// (ms: tok[2] is the data length). n counts real tokens; memcached's ntokens
// is n + 1 (its terminal token).
struct Tokens {
  std::string_view tok[kMaxTokens];
  size_t n = 0;
};

// proto_text.c's struct _meta_flags.
struct MetaFlags {
  bool has_error = false;
  bool no_update = false;   // u
  bool vivify = false;      // N
  bool value = false;       // v
  bool set_stale = false;   // I
  bool no_reply = false;    // q
  bool has_cas = false;     // C
  bool new_ttl = false;     // T
  bool key_binary = false;  // b
  bool has_new_cas = false; // E (extension)
  bool locked = false;      // h, l, N, R, T: memcached bumps after replying
  char mode = 0;            // M
  rel_time_t exptime = 0;
  rel_time_t autoviv_exptime = 0;
  rel_time_t recache_time = 0;
  uint32_t client_flags = 0;
  uint64_t req_cas = 0;
  uint64_t new_cas = 0;
  uint64_t delta = 1;
  uint64_t initial = 0;
};

// Validates every flag token from `start` on (memcached's
// _meta_flag_preparse), fills *f, and for "b" decodes the key into the
// thread's key scratch buffer and points *key at it. Returns the error line,
// or an empty view when the flags are fine.
std::string_view preparse(const Tokens& t, size_t start, std::string_view* key, MetaFlags* f);

// Per-thread buffers whose capacity is reused, so base64 keys cost no
// allocation per request once warm.
std::string& key_scratch();
std::string& encode_scratch();

// " k<key>", base64-encoded and followed by " b" for a binary key.
void append_key(std::string& out, std::string_view key, bool binary);

inline void reply(std::string& out, std::string_view line) {
  out.append(line);
  out.append("\r\n", 2);
}

// An error replaces whatever part of this command's reply was built.
inline void reply_error(std::string& out, size_t mark, std::string_view line) {
  out.resize(mark);
  reply(out, line);
}

// Remaining TTL as memcached prints it: -1 for none, else exptime - now as an
// unsigned 32-bit number (a TTL set to the past in the same command wraps).
inline void append_ttl(std::string& out, rel_time_t exptime) {
  if (exptime == 0) {
    out.append("-1", 2);
  } else {
    append_u64(out, static_cast<uint32_t>(exptime - clock::now()));
  }
}

// Echoes an O token; false (the caller answers with the error) if too long.
inline bool append_opaque(std::string& out, std::string_view tok) {
  if (tok.size() > kMaxOpaqueLength) return false;
  out.push_back(' ');
  out.append(tok);
  return true;
}

inline constexpr std::string_view kErrOpaque = "CLIENT_ERROR opaque token too long";

// Txn::find, counting what memcached's do_item_get counts on every lookup,
// whatever the command.
inline Item* lookup(Txn& txn, ThreadStats& st) {
  int why = 0;
  Item* it = txn.find(&why);
  if (why == 1) st.get_expired.add();
  if (why == 2) st.get_flushed.add();
  return it;
}

// A new cas for an item changed in place (md I, ma): E's, or the next one.
inline uint64_t fresh_cas(Txn& txn, const MetaFlags& f) {
  if (!txn.store().options().use_cas) return 0;
  return f.has_new_cas ? f.new_cas : txn.next_cas();
}

// The cas to hand Txn::link: 0 lets the store pick a fresh one.
inline uint64_t link_cas(const MetaFlags& f) { return f.has_new_cas ? f.new_cas : 0; }

}  // namespace ftm::meta

#endif  // FTM_SRC_PROTO_META_INTERNAL_H_
