// Private to the text protocol (proto_text*.cc): one parsed command line and
// the handlers the dispatcher in proto_text.cc calls. Token counts follow
// memcached's proto_text.c, where `ntokens` includes a terminal token, so the
// arity checks below read exactly as memcached's do.
#ifndef FTM_SRC_PROTO_TEXT_INTERNAL_H_
#define FTM_SRC_PROTO_TEXT_INTERNAL_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "src/proto_text.h"
#include "src/session.h"

namespace ftm::text {

// memcached's MAX_TOKENS: at most 23 tokens per tokenizer pass, the 24th slot
// holds the unparsed remainder of the line (get/gets walk it in batches).
inline constexpr size_t kMaxTokens = 24;
inline constexpr size_t kKeyToken = 1;

struct Command {
  Session& session;
  std::string& out;
  std::string_view line;            // without "\r\n", cut at the first NUL
  std::string_view tok[kMaxTokens]; // from tokenize(); tok[kMaxTokens-1] may be a remainder
  size_t n = 0;                     // entries used in tok
  size_t ntokens = 0;               // memcached's count: real tokens + terminal
  bool noreply = false;             // memcached's c->noreply for this command
  // memcached sends its queued replies after every get/gets/gat/gats and
  // "mn" (conn_mwrite), and drops the unsent ones when a get names a key too
  // long or the connection closes on bad input. `sent` is the size `out` had
  // at the last such flush point; a handler sets `flushed` to make one.
  size_t sent = 0;
  bool flushed = false;

  Command(Session& s, std::string& o) : session(s), out(o) {}

  // The token memcached calls tokens[i].value, or "" past the real tokens.
  std::string_view token(size_t i) const {
    size_t real = n == kMaxTokens ? kMaxTokens - 1 : n;
    return i < real ? tok[i] : std::string_view();
  }
};

// memcached's out_string(): suppressed (once) after "noreply". `s` already
// ends in "\r\n".
inline void reply(Command& c, std::string_view s) {
  if (c.noreply) {
    c.noreply = false;
    return;
  }
  c.out.append(s);
}

// memcached's set_noreply_maybe(): the last real token is "noreply".
inline bool set_noreply_maybe(Command& c) {
  if (c.token(c.ntokens - 2) == "noreply") c.noreply = true;
  return c.noreply;
}

// What a handler did with the bytes after the command line.
struct Outcome {
  size_t data = 0;     // bytes consumed after the line (a value block)
  size_t need = 0;     // > 0: the value block is incomplete; need this many bytes after the line
  bool close = false;  // close the connection (drop unsent replies, as memcached's conn_closing)
  bool quit = false;   // close after the replies are written (memcached's "quit")
  // Cluster mode: the command runs elsewhere (see ProtoResult::remote); `data`
  // then counts the data block that travels with the line.
  Remote remote = Remote::kNone;
  uint32_t node = 0;
};

enum class StoreCmd { kSet, kAdd, kReplace, kAppend, kPrepend, kCas };

// proto_text_store.cc: set/add/replace/append/prepend/cas, reading the value
// block from `rest` (the bytes after the command line).
Outcome process_update(Command& c, StoreCmd cmd, std::string_view rest);
// proto_text_store.cc: get/gets/gat/gats (and memcached's legacy "bget").
// May pause part-way (see get_keys).
void process_get(Command& c, bool return_cas, bool touch);
// proto_text_store.cc: answers the keys c.tok[first..] (and the untokenized
// remainder in c.tok's last slot), as `how` says. Returns true when the get
// is finished (END or an error appended). Returns false when it paused
// because `out` reached session.out_pause_at with keys left: then
// session.paused_get records `how` and where in c.line the next key starts,
// and the line must stay unconsumed until resume_get finishes it.
bool get_keys(Command& c, size_t first, const Session::PausedGet& how);
// proto_text_store.cc: goes on with the get session.paused_get records; c.line
// is its whole command line again. May pause again.
void resume_get(Command& c);
// proto_text_route.cc, cluster mode only: true if the tokenized command must
// not run here, with *o telling where it goes (or what it still needs).
bool route(Command& c, std::string_view rest, Outcome* o);

}  // namespace ftm::text

#endif  // FTM_SRC_PROTO_TEXT_INTERNAL_H_
