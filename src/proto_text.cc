// memcached's text protocol: line framing, the command dispatcher and the
// commands without a value block. Storage and retrieval commands live in
// proto_text_store.cc, meta commands in proto_meta.cc.
//
// Every answer, including the odd ones (token-count checks answering "ERROR",
// "noreply" silencing error replies too, the legacy "delete <key> 0", closing
// on an HTTP request line), follows memcached 1.6.18's proto_text.c and was
// checked against the real server.
//
// Known differences, all deliberate: memcached's slab and LRU admin commands
// (slabs, lru, lru_crawler, cache_memlimit, watch, extstore) answer "ERROR",
// there being no slabs or log watchers here; "stats cachedump" and "stats
// detail dump" are always empty; a get line without its newline is closed
// past kMaxGetLine (memcached grows without bound); memcached processes one
// request more than -R in the first batch after a read, we exactly -R, which
// only shows in which unsent replies the long-key-get quirk drops.
//
// Hot path: no heap allocation per request beyond appending to `out` (a
// string the connection reuses); tokens are views into `in`.
#include "src/proto_text.h"

#include <cstring>

#include "src/clock.h"
#include "src/execute.h"
#include "src/proto_meta.h"
#include "src/proto_text_internal.h"
#include "src/proto_util.h"

namespace ftm {
namespace text {
namespace {

constexpr int kMaxVerbosityLevel = 2;  // memcached.h MAX_VERBOSITY_LEVEL

// WANT_TOKENS / WANT_TOKENS_OR / WANT_TOKENS_MIN: a wrong count is "ERROR".
bool want_range(Command& c, size_t lo, size_t hi) {
  if (c.ntokens < lo || c.ntokens > hi) {
    reply(c, "ERROR\r\n");
    return false;
  }
  return true;
}
bool want_either(Command& c, size_t a, size_t b) {
  if (c.ntokens != a && c.ntokens != b) {
    reply(c, "ERROR\r\n");
    return false;
  }
  return true;
}
bool want_min(Command& c, size_t lo) { return want_range(c, lo, SIZE_MAX); }

void process_delete(Command& c) {
  if (c.ntokens > 3) {
    // The legacy "delete <key> 0" form; any other time is refused.
    bool hold_is_zero = c.token(kKeyToken + 1) == "0";
    bool sets_noreply = set_noreply_maybe(c);
    bool valid = (c.ntokens == 4 && (hold_is_zero || sets_noreply)) ||
                 (c.ntokens == 5 && hold_is_zero && sets_noreply);
    if (!valid) {
      reply(c, "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n");
      return;
    }
  }
  std::string_view key = c.token(kKeyToken);
  if (key.size() > kKeyMaxLength) {
    reply(c, "CLIENT_ERROR bad command line format\r\n");
    return;
  }
  WorkerContext& ctx = *c.session.ctx;
  if (exec::remove(*ctx.store, *ctx.stats, key)) {
    reply(c, "DELETED\r\n");
  } else {
    reply(c, "NOT_FOUND\r\n");
  }
}

void process_arithmetic(Command& c, bool incr) {
  set_noreply_maybe(c);
  std::string_view key = c.token(kKeyToken);
  if (key.size() > kKeyMaxLength) {
    reply(c, "CLIENT_ERROR bad command line format\r\n");
    return;
  }
  uint64_t delta = 0;
  if (!safe_strtoull(c.token(2), &delta)) {
    reply(c, "CLIENT_ERROR invalid numeric delta argument\r\n");
    return;
  }
  WorkerContext& ctx = *c.session.ctx;
  uint64_t value = 0;
  switch (exec::arith(*ctx.store, *ctx.stats, key, incr, delta, &value)) {
    case exec::ArithResult::kOk:
      if (c.noreply) {
        c.noreply = false;
      } else {
        append_u64(c.out, value);
        c.out.append("\r\n");
      }
      break;
    case exec::ArithResult::kNotFound: reply(c, "NOT_FOUND\r\n"); break;
    case exec::ArithResult::kNonNumeric:
      reply(c, "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n");
      break;
    case exec::ArithResult::kNoMemory: reply(c, "SERVER_ERROR out of memory\r\n"); break;
    case exec::ArithResult::kExists: reply(c, "EXISTS\r\n"); break;  // meta only
  }
}

void process_touch(Command& c) {
  set_noreply_maybe(c);
  std::string_view key = c.token(kKeyToken);
  if (key.size() > kKeyMaxLength) {
    reply(c, "CLIENT_ERROR bad command line format\r\n");
    return;
  }
  int32_t exptime = 0;
  if (!safe_strtol(c.token(2), &exptime)) {
    reply(c, "CLIENT_ERROR invalid exptime argument\r\n");
    return;
  }
  WorkerContext& ctx = *c.session.ctx;
  if (exec::touch(*ctx.store, *ctx.stats, key, clock::realtime(exptime))) {
    reply(c, "TOUCHED\r\n");
  } else {
    reply(c, "NOT_FOUND\r\n");
  }
}

void process_flush_all(Command& c) {
  set_noreply_maybe(c);
  WorkerContext& ctx = *c.session.ctx;
  ctx.stats->cmd_flush.add();  // counted even when -F refuses it, as memcached
  if (!ctx.settings->flush_enabled) {
    reply(c, "CLIENT_ERROR flush_all not allowed\r\n");
    return;
  }
  int32_t exptime = 0;
  if (c.ntokens != (c.noreply ? 3u : 2u)) {
    if (!safe_strtol(c.token(1), &exptime)) {
      reply(c, "CLIENT_ERROR invalid exptime argument\r\n");
      return;
    }
  }
  // A delay of 0 or less means "now".
  ctx.store->flush_all(exptime > 0 ? clock::realtime(exptime) : 0);
  reply(c, "OK\r\n");
}

void process_verbosity(Command& c) {
  set_noreply_maybe(c);
  uint32_t level = 0;
  if (!safe_strtoul(c.token(1), &level)) {
    reply(c, "CLIENT_ERROR bad command line format\r\n");
    return;
  }
  int v = level > kMaxVerbosityLevel ? kMaxVerbosityLevel : static_cast<int>(level);
  if (c.session.ctx->server != nullptr) c.session.ctx->server->set_verbosity(v);
  reply(c, "OK\r\n");
}

// Formats `stats` lines straight into the output buffer.
class LineSink final : public StatsSink {
 public:
  explicit LineSink(std::string& out) : out_(out) {}
  void add(std::string_view name, std::string_view value) override {
    out_.append("STAT ");
    out_.append(name);
    out_.push_back(' ');
    out_.append(value);
    out_.append("\r\n");
  }

 private:
  std::string& out_;
};

void process_stats_detail(Command& c, std::string_view arg) {
  // Per-prefix stats are not kept (settings.h): on/off are accepted and the
  // dump is empty, which is what memcached prints before any traffic.
  if (arg == "on" || arg == "off") {
    reply(c, "OK\r\n");
  } else if (arg == "dump") {
    c.out.append("END\r\n");
  } else {
    reply(c, "CLIENT_ERROR usage: stats detail on|off|dump\r\n");
  }
}

void process_stats(Command& c) {
  WorkerContext& ctx = *c.session.ctx;
  std::string_view group = c.token(1);
  if (c.ntokens == 2) {
    group = "";
  } else if (group == "reset") {
    if (ctx.server != nullptr) ctx.server->reset_stats();
    reply(c, "RESET\r\n");
    return;
  } else if (group == "detail") {
    process_stats_detail(c, c.ntokens < 4 ? std::string_view() : c.token(2));
    return;
  } else if (group == "cachedump") {
    // There are no slab classes to dump: the checks are memcached's, a valid
    // request gets an empty dump.
    if (!ctx.settings->dump_enabled) {
      reply(c, "CLIENT_ERROR stats cachedump not allowed\r\n");
      return;
    }
    if (c.ntokens < 5) {
      reply(c, "CLIENT_ERROR bad command line\r\n");
      return;
    }
    uint32_t id = 0;
    uint32_t limit = 0;
    if (!safe_strtoul(c.token(2), &id) || !safe_strtoul(c.token(3), &limit)) {
      reply(c, "CLIENT_ERROR bad command line format\r\n");
      return;
    }
    if (id >= 64) {  // MAX_NUMBER_OF_SLAB_CLASSES
      reply(c, "CLIENT_ERROR Illegal slab id\r\n");
      return;
    }
    c.out.append("END\r\n");
    return;
  }
  const size_t start = c.out.size();
  LineSink sink(c.out);
  if (ctx.server == nullptr || !ctx.server->collect_stats(group, sink)) {
    c.out.resize(start);
    reply(c, "ERROR\r\n");
    return;
  }
  c.out.append("END\r\n");
}

// Returns true when the connection must close (memcached's conn_closing).
bool process_shutdown(Command& c) {
  WorkerContext& ctx = *c.session.ctx;
  if (!ctx.settings->shutdown_command) {
    reply(c, "ERROR: shutdown not enabled\r\n");
    return false;
  }
  if (c.ntokens == 2 || (c.ntokens == 3 && c.token(1) == "graceful")) {
    if (ctx.server != nullptr) ctx.server->shutdown();
    return true;
  }
  reply(c, "CLIENT_ERROR invalid shutdown mode\r\n");
  return false;
}

// One complete command line. `rest` is what follows its "\n" in the buffer.
Outcome dispatch(Command& c, std::string_view rest) {
  Outcome o;
  c.n = tokenize(c.line, c.tok, kMaxTokens);
  c.ntokens = c.n < kMaxTokens ? c.n + 1 : kMaxTokens;
  // Every command needs a token and is at least two bytes long.
  if (c.n == 0 || c.tok[0].size() < 2) {
    reply(c, "ERROR\r\n");
    return o;
  }
  if (c.session.ctx->cluster != nullptr && !c.session.forwarded && route(c, rest, &o)) return o;
  std::string_view cmd = c.tok[0];
  const char first = cmd[0];

  if (first == 'm' && cmd.size() == 2) {
    // Meta commands see the line from their command token on.
    std::string_view line = c.line.substr(static_cast<size_t>(cmd.data() - c.line.data()));
    if (!is_meta_command(line)) {
      reply(c, "ERROR\r\n");
      return o;
    }
    ProtoResult r = meta_process(c.session, line, rest, c.out);
    c.flushed = cmd == "mn";  // memcached flushes its replies on mn
    o.data = r.consumed;
    o.need = r.need;
    o.quit = r.close;  // meta replies already written are still sent
    return o;
  }
  if (first == 'g') {
    if (!want_min(c, 3)) return o;
    if (cmd == "get") {
      process_get(c, false, false);
    } else if (cmd == "gets") {
      process_get(c, true, false);
    } else if (cmd == "gat") {
      process_get(c, false, true);
    } else if (cmd == "gats") {
      process_get(c, true, true);
    } else {
      reply(c, "ERROR\r\n");
    }
    return o;
  }
  if (first == 's') {
    if (cmd == "set") {
      if (want_either(c, 6, 7)) o = process_update(c, StoreCmd::kSet, rest);
    } else if (cmd == "stats") {
      process_stats(c);
    } else if (cmd == "shutdown") {
      o.close = process_shutdown(c);
    } else {
      reply(c, "ERROR\r\n");
    }
    return o;
  }
  if (first == 'a') {
    if (cmd == "add") {
      if (want_either(c, 6, 7)) o = process_update(c, StoreCmd::kAdd, rest);
    } else if (cmd == "append") {
      if (want_either(c, 6, 7)) o = process_update(c, StoreCmd::kAppend, rest);
    } else {
      reply(c, "ERROR\r\n");
    }
    return o;
  }
  if (first == 'c') {
    if (cmd == "cas") {
      if (want_either(c, 7, 8)) o = process_update(c, StoreCmd::kCas, rest);
    } else {
      reply(c, "ERROR\r\n");
    }
    return o;
  }
  if (first == 'i') {
    if (cmd == "incr") {
      if (want_either(c, 4, 5)) process_arithmetic(c, true);
    } else {
      reply(c, "ERROR\r\n");
    }
    return o;
  }
  if (first == 'd') {
    if (cmd == "delete") {
      if (want_range(c, 3, 5)) process_delete(c);
    } else if (cmd == "decr") {
      if (want_either(c, 4, 5)) process_arithmetic(c, false);
    } else {
      reply(c, "ERROR\r\n");
    }
    return o;
  }
  if (first == 't') {
    if (cmd == "touch") {
      if (want_either(c, 4, 5)) process_touch(c);
    } else {
      reply(c, "ERROR\r\n");
    }
    return o;
  }
  if (cmd == "replace") {
    if (want_either(c, 6, 7)) o = process_update(c, StoreCmd::kReplace, rest);
  } else if (cmd == "prepend") {
    if (want_either(c, 6, 7)) o = process_update(c, StoreCmd::kPrepend, rest);
  } else if (cmd == "bget") {
    // memcached's undocumented ancient alias of get.
    if (want_min(c, 3)) process_get(c, false, false);
  } else if (cmd == "flush_all") {
    if (want_range(c, 2, 4)) process_flush_all(c);
  } else if (cmd == "version") {
    // memcached clients parse "VERSION x.y.z": answer as the release we match.
    c.out.append("VERSION ");
    c.out.append(kMemcachedCompatVersion);
    c.out.append("\r\n");
  } else if (cmd == "quit") {
    o.quit = true;
  } else if (cmd == "verbosity") {
    if (want_either(c, 3, 4)) process_verbosity(c);
  } else if (c.token(c.ntokens - 2).starts_with("HTTP/")) {
    // Someone pointed a web browser or an HTTP client at us.
    o.close = true;
  } else {
    reply(c, "ERROR\r\n");
  }
  return o;
}

}  // namespace
}  // namespace text

ProtoResult text_process(Session& session, std::string_view in, std::string& out,
                         int max_requests) {
  ProtoResult r;
  if (max_requests < 1) max_requests = 1;  // always make progress
  size_t sent = out.size();  // see text::Command::sent
  size_t pos = 0;
  int handled = 0;
  while (pos < in.size()) {
    if (session.swallow > 0) {
      // The rest of a rejected value block (memcached's conn_swallow).
      size_t n = in.size() - pos;
      if (n > session.swallow) n = static_cast<size_t>(session.swallow);
      session.swallow -= n;
      pos += n;
      continue;
    }
    if (out.size() >= session.out_pause_at) {
      r.paused = true;  // the client reads first
      break;
    }
    if (handled >= max_requests) {
      r.yielded = true;
      break;
    }
    std::string_view rest = in.substr(pos);
    const char* nl = static_cast<const char*>(std::memchr(rest.data(), '\n', rest.size()));
    if (nl == nullptr) {
      if (rest.size() > kMaxCommandLine) {
        // No newline in 2 KiB: only a large multiget may be that long.
        size_t sp = 0;
        while (sp < rest.size() && rest[sp] == ' ') ++sp;
        std::string_view s = rest.substr(sp);
        bool get = s.starts_with("get ") || s.starts_with("gets ");
        if (sp > 100 || !get || rest.size() > kMaxGetLine) {
          r.close = true;
          out.resize(sent);  // memcached's conn_closing drops unsent replies
        }
      }
      break;
    }
    size_t line_len = static_cast<size_t>(nl - rest.data());
    const size_t consumed_line = line_len + 1;
    if (line_len > 1 && rest[line_len - 1] == '\r') --line_len;
    std::string_view line = rest.substr(0, line_len);
    // memcached parses the line as a C string: a NUL ends it.
    if (const void* nul = std::memchr(line.data(), '\0', line.size())) {
      line = line.substr(0, static_cast<size_t>(static_cast<const char*>(nul) - line.data()));
    }

    text::Command cmd(session, out);
    cmd.line = line;
    cmd.sent = sent;
    text::Outcome o;
    if (session.paused_get.offset != 0) {
      text::resume_get(cmd);
    } else {
      o = text::dispatch(cmd, rest.substr(consumed_line));
    }
    if (session.paused_get.offset != 0) {
      // A get stopped between two keys: its line stays for the next call.
      r.paused = true;
      break;
    }
    if (o.need > 0) {
      // A value block is incomplete: come back with the line and its block.
      r.need = consumed_line + o.need;
      break;
    }
    if (o.remote != Remote::kNone) {
      // Stop before it: the connection layer sends it to its owner(s).
      r.remote = o.remote;
      r.remote_node = o.node;
      r.remote_len = consumed_line + o.data;
      break;
    }
    pos += consumed_line + o.data;
    ++handled;
    if (cmd.flushed) sent = out.size();
    if (o.close) {
      r.close = true;
      out.resize(sent);  // memcached's conn_closing drops unsent replies
      break;
    }
    if (o.quit) {
      r.close = true;
      break;
    }
  }
  r.consumed = pos;
  return r;
}

}  // namespace ftm
