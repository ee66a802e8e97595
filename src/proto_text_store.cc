// Text protocol storage and retrieval commands: set, add, replace, append,
// prepend, cas (with their value blocks) and get, gets, gat, gats. Answers
// follow memcached 1.6.18's process_update_command, complete_nread_ascii and
// process_get_command, checked against the real server.
//
// Hot path: no heap allocation besides the item itself (Store::allocate) and
// the growth of the connection's reused output string.
#include <algorithm>
#include <climits>
#include <cstring>

#include "src/clock.h"
#include "src/execute.h"
#include "src/proto_text_internal.h"
#include "src/proto_util.h"
#include "src/store.h"

namespace ftm::text {
namespace {

// memcached's EXPTIME_TO_POSITIVE_TIME + realtime(): negative means "already
// expired", which clock::realtime() already maps to 1.
rel_time_t exptime_of(int32_t exptime) { return clock::realtime(exptime); }

// A failed allocation for "set" removes the old value, so a client never reads
// stale data it just tried to overwrite (memcached does the same; no stats).
void unlink_key(Store& store, std::string_view key) {
  Txn txn = store.begin(key);
  if (Item* it = txn.find()) txn.unlink(it);
}

exec::StoreMode mode_of(StoreCmd cmd) {
  switch (cmd) {
    case StoreCmd::kSet: return exec::StoreMode::kSet;
    case StoreCmd::kAdd: return exec::StoreMode::kAdd;
    case StoreCmd::kReplace: return exec::StoreMode::kReplace;
    case StoreCmd::kAppend: return exec::StoreMode::kAppend;
    case StoreCmd::kPrepend: return exec::StoreMode::kPrepend;
    case StoreCmd::kCas: return exec::StoreMode::kCas;
  }
  return exec::StoreMode::kSet;
}

}  // namespace

Outcome process_update(Command& c, StoreCmd cmd, std::string_view rest) {
  Outcome o;
  WorkerContext& ctx = *c.session.ctx;
  set_noreply_maybe(c);

  std::string_view key = c.token(kKeyToken);
  if (key.size() > kKeyMaxLength) {
    reply(c, "CLIENT_ERROR bad command line format\r\n");
    return o;
  }
  uint32_t flags = 0;
  int32_t exptime = 0;
  int32_t vlen = 0;
  if (!(safe_strtoul(c.token(2), &flags) && safe_strtol(c.token(3), &exptime) &&
        safe_strtol(c.token(4), &vlen))) {
    reply(c, "CLIENT_ERROR bad command line format\r\n");
    return o;
  }
  uint64_t req_cas = 0;
  if (cmd == StoreCmd::kCas && !safe_strtoull(c.token(5), &req_cas)) {
    reply(c, "CLIENT_ERROR bad command line format\r\n");
    return o;
  }
  if (vlen < 0 || vlen > INT_MAX - 2) {
    reply(c, "CLIENT_ERROR bad command line format\r\n");
    return o;
  }
  const size_t total = static_cast<size_t>(vlen) + 2;  // value + "\r\n"
  Store& store = *ctx.store;

  if (!store.fits(key.size(), static_cast<size_t>(vlen))) {
    // memcached answers at once and swallows the value block; the connection
    // stays usable.
    ctx.stats->store_too_large.add();
    reply(c, "SERVER_ERROR object too large for cache\r\n");
    if (cmd == StoreCmd::kSet) unlink_key(store, key);
    o.data = total < rest.size() ? total : rest.size();
    c.session.swallow = total - o.data;
    return o;
  }
  if (rest.size() < total) {
    // Wait for the whole block: the line is parsed again then. Nothing has
    // been emitted or counted yet.
    o.need = total;
    return o;
  }
  o.data = total;

  AllocError err = AllocError::kNone;
  ItemPtr item = store.allocate(key, flags, exptime_of(exptime), static_cast<size_t>(vlen), &err);
  if (!item) {
    if (err == AllocError::kTooLarge) {
      ctx.stats->store_too_large.add();
      reply(c, "SERVER_ERROR object too large for cache\r\n");
    } else {
      ctx.stats->store_no_memory.add();
      reply(c, "SERVER_ERROR out of memory storing object\r\n");
    }
    if (cmd == StoreCmd::kSet) unlink_key(store, key);
    return o;
  }
  // memcached reads vlen + 2 bytes into the item, then checks the last two.
  if (rest[total - 2] != '\r' || rest[total - 1] != '\n') {
    ctx.stats->cmd_set.add();  // memcached counts the attempt
    reply(c, "CLIENT_ERROR bad data chunk\r\n");
    return o;
  }
  std::memcpy(item->value_buf(), rest.data(), total);

  exec::StoreResult res =
      exec::store_item(store, *ctx.stats, std::move(item), mode_of(cmd), req_cas);
  switch (res) {
    case exec::StoreResult::kStored: reply(c, "STORED\r\n"); break;
    case exec::StoreResult::kExists: reply(c, "EXISTS\r\n"); break;
    case exec::StoreResult::kNotFound: reply(c, "NOT_FOUND\r\n"); break;
    // memcached 1.6.18 answers NOT_STORED when append/prepend cannot allocate
    // the combined item (too large or out of memory): verified.
    case exec::StoreResult::kNotStored:
    case exec::StoreResult::kNoMemory:
    case exec::StoreResult::kTooLarge: reply(c, "NOT_STORED\r\n"); break;
  }
  return o;
}

void process_get(Command& c, bool return_cas, bool touch) {
  size_t key_index = kKeyToken;
  rel_time_t new_exptime = 0;
  if (touch) {
    int32_t exptime = 0;
    if (!safe_strtol(c.token(1), &exptime)) {
      reply(c, "CLIENT_ERROR invalid exptime argument\r\n");
      return;
    }
    new_exptime = exptime_of(exptime);
    ++key_index;
  }
  get_keys(c, key_index, Session::PausedGet{0, return_cas, touch, new_exptime});
}

bool get_keys(Command& c, size_t first, const Session::PausedGet& how) {
  WorkerContext& ctx = *c.session.ctx;
  std::string& out = c.out;
  const bool return_cas = how.return_cas;
  auto emit = [&out, return_cas](const Item& it) {
    out.append("VALUE ");
    out.append(it.key());
    out.push_back(' ');
    append_u64(out, it.client_flags);
    out.push_back(' ');
    append_u64(out, it.nbytes);
    if (return_cas) {
      out.push_back(' ');
      append_u64(out, it.cas);
    }
    out.append("\r\n");
    out.append(it.value_crlf());
  };

  // Walk the keys in tokenizer batches of 23, as memcached does.
  std::string_view* tok = c.tok;
  size_t n = c.n;
  size_t i = first;
  for (;;) {
    size_t real = n == kMaxTokens ? kMaxTokens - 1 : n;
    for (; i < real; ++i) {
      std::string_view key = tok[i];
      if (key.size() > kKeyMaxLength) {
        // memcached (conn_release_items) drops every reply not yet sent,
        // including those of earlier pipelined commands: so do we.
        out.resize(c.sent);
        out.append("CLIENT_ERROR bad command line format\r\n");
        c.session.paused_get.offset = 0;
        return true;
      }
      exec::get(*ctx.store, *ctx.stats, key, emit, how.touch, how.exptime);
      if (out.size() < c.session.out_pause_at) continue;
      // Enough reply for now: stop before the next key, if there is one.
      std::string_view next;
      if (i + 1 < real) {
        next = tok[i + 1];
      } else if (n == kMaxTokens) {
        next = tok[kMaxTokens - 1];
      }
      if (next.empty()) continue;
      c.session.paused_get = how;
      c.session.paused_get.offset = static_cast<size_t>(next.data() - c.line.data());
      return false;
    }
    if (n < kMaxTokens) break;
    std::string_view remainder = tok[kMaxTokens - 1];
    n = tokenize(remainder, tok, kMaxTokens);
    i = 0;
  }
  out.append("END\r\n");
  c.flushed = true;
  c.session.paused_get.offset = 0;
  return true;
}

void resume_get(Command& c) {
  const Session::PausedGet how = c.session.paused_get;
  std::string_view keys = c.line.substr(std::min(how.offset, c.line.size()));
  c.n = tokenize(keys, c.tok, kMaxTokens);
  c.ntokens = c.n < kMaxTokens ? c.n + 1 : kMaxTokens;
  get_keys(c, 0, how);
}

}  // namespace ftm::text
