// Meta commands (protocol.txt "Meta Commands"), answered as memcached 1.6.18
// answers them: same flags, same order of response flags, same error strings,
// same quirks (which error wins, which flags are applied before an error is
// noticed). Every reply byte sequence the unit tests check was first read
// off a real memcached 1.6.18.
//
// Hot path: a request allocates nothing but the growth of `out`. Tokens are
// views into `line`; a base64 key is decoded into, and a returned base64 key
// encoded through, thread-local scratch strings whose capacity is reused.
//
// One deliberate extension over 1.6.18: the E flag (see proto_meta_internal.h).
// Flag parsing and reply helpers live in proto_meta_flags.cc.
#include "src/proto_meta.h"

#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "src/clock.h"
#include "src/execute.h"
#include "src/proto_meta_internal.h"
#include "src/proto_util.h"
#include "src/store.h"

namespace ftm {
namespace {

using namespace meta;  // NOLINT: this file is the meta front end

// ---------------------------------------------------------------- mg

void meta_get(Session& s, const Tokens& t, std::string& out) {
  const size_t mark = out.size();
  if (t.n < 2) return reply(out, "ERROR");
  if (t.tok[1].size() > kKeyMaxLength) return reply(out, kErrFormat);
  if (t.n + 1 > kMaxOptTokens) return reply(out, "CLIENT_ERROR options flags are too long");
  MetaFlags f;
  std::string_view key = t.tok[1];
  if (std::string_view err = preparse(t, 2, &key, &f); !err.empty()) return reply(out, err);

  ThreadStats& st = *s.ctx->stats;
  Txn txn = s.ctx->store->begin(key);
  Item* it = lookup(txn, st);
  bool created = false;
  if (it == nullptr && f.vivify) {
    // A zero-length stub whose exptime the N flag sets below; the one client
    // that created it gets W.
    AllocError aerr;
    ItemPtr stub = txn.allocate(0, 0, 0, &aerr);
    if (stub) {
      std::memcpy(stub->value_buf(), "\r\n", 2);
      it = txn.link(std::move(stub), link_cas(f));
      created = true;
    }
  }

  if (it == nullptr) {
    st.cmd_get.add();
    st.get_misses.add();
    out.append("EN", 2);
    for (size_t i = 2; i < t.n; ++i) {
      const std::string_view tok = t.tok[i];
      if (tok[0] == 'O') {
        if (!append_opaque(out, tok)) return reply_error(out, mark, kErrOpaque);
      } else if (tok[0] == 'k') {
        append_key(out, key, f.key_binary);
      }
    }
    out.append("\r\n", 2);
    if (f.no_reply) out.resize(mark);  // q hides EN
    return;
  }

  bool won = false;
  bool ttl_set = false;
  if (f.value) {
    out.append("VA ", 3);
    append_u64(out, it->nbytes);
  } else {
    out.append("HD", 2);
  }
  // Flags act and answer in request order: "t T30" shows the old TTL.
  for (size_t i = 2; i < t.n; ++i) {
    const std::string_view tok = t.tok[i];
    switch (tok[0]) {
      case 'T':
        ttl_set = true;
        it->exptime = f.exptime;
        break;
      case 'N':
        if (created) {
          it->exptime = f.autoviv_exptime;
          won = true;
        }
        break;
      case 'R':
        if ((it->iflags & kItemTokenSent) == 0 && !created && it->exptime != 0 &&
            it->exptime < f.recache_time) {
          won = true;
        }
        break;
      case 's':
        out.append(" s", 2);
        append_u64(out, it->nbytes);
        break;
      case 't':
        out.append(" t", 2);
        append_ttl(out, it->exptime);
        break;
      case 'c':
        out.append(" c", 2);
        append_u64(out, it->cas);
        break;
      case 'f':
        out.append(" f", 2);
        append_u64(out, it->client_flags);
        break;
      case 'l':
        out.append(" l", 2);
        append_u64(out, static_cast<uint32_t>(clock::now() - it->time));
        break;
      case 'h':
        out.append((it->iflags & kItemFetched) ? " h1" : " h0", 3);
        break;
      case 'O':
        // memcached gives up here, keeping what T/N already did, and the
        // bump its plain fetch did before it looked at the flags.
        if (!append_opaque(out, tok)) {
          if (!f.locked && !f.no_update) txn.bump(it, true);
          return reply_error(out, mark, kErrOpaque);
        }
        break;
      case 'k':
        append_key(out, it->key(), (it->iflags & kItemKeyBinary) != 0);
        break;
      default:
        break;
    }
  }
  // Z before X, and never W together with Z.
  if (it->iflags & kItemTokenSent) out.append(" Z", 2);
  if (it->iflags & kItemStale) {
    out.append(" X", 2);
    if ((it->iflags & kItemTokenSent) == 0) won = true;
  }
  if (won) {
    out.append(" W", 2);
    it->iflags |= kItemTokenSent;
  }
  out.append("\r\n", 2);
  if (f.value) out.append(it->value_crlf());
  // After the reply so that h and l report the state before this access
  // (memcached's "locked" fetch; without h/l the order does not show).
  if (!f.no_update) txn.bump(it, true);
  if (ttl_set) {
    st.cmd_touch.add();
    st.touch_hits.add();
  } else {
    st.cmd_get.add();
    st.get_hits.add();
  }
}

// ---------------------------------------------------------------- ms

// Rejects an ms whose data block must still be skipped: the block is taken
// from `rest` as far as it is there, the remainder left to the connection's
// swallow state (memcached's conn_swallow).
ProtoResult reject_set(Session& s, std::string_view rest, size_t total, std::string& out,
                       size_t mark, std::string_view err) {
  reply_error(out, mark, err);
  ProtoResult r;
  r.consumed = rest.size() < total ? rest.size() : total;
  s.swallow += total - r.consumed;
  return r;
}

// memcached hides a key's old value when a set to it fails to allocate.
void drop_key(Store& store, ThreadStats& st, std::string_view key) {
  Txn txn = store.begin(key);
  if (Item* old = lookup(txn, st)) txn.unlink(old);
}

ProtoResult meta_set(Session& s, const Tokens& t, std::string_view rest, std::string& out) {
  const size_t mark = out.size();
  ProtoResult r;
  if (t.n < 2) return reply(out, "ERROR"), r;
  // Errors before the data length is known cannot skip the data block.
  if (t.tok[1].size() > kKeyMaxLength || t.n == 2) return reply(out, kErrFormat), r;
  if (t.n + 1 > kMaxOptTokens) return reply(out, "CLIENT_ERROR options flags too long"), r;
  int32_t vlen = 0;
  if (!safe_strtol(t.tok[2], &vlen) || vlen < 0 || vlen > INT_MAX - 2) {
    return reply(out, kErrFormat), r;
  }
  const size_t total = static_cast<size_t>(vlen) + 2;

  MetaFlags f;
  std::string_view key = t.tok[1];
  if (std::string_view err = preparse(t, 3, &key, &f); !err.empty()) {
    return reject_set(s, rest, total, out, mark, err);
  }
  bool opaque_too_long = false;
  for (size_t i = 3; i < t.n; ++i) {
    if (t.tok[i][0] == 'O' && t.tok[i].size() > kMaxOpaqueLength) opaque_too_long = true;
  }
  using exec::StoreMode;
  StoreMode mode = StoreMode::kSet;
  switch (f.mode) {
    case 0:
    case 'S':
      break;
    case 'E':
      mode = StoreMode::kAdd;
      break;
    case 'A':
      mode = StoreMode::kAppend;
      break;
    case 'P':
      mode = StoreMode::kPrepend;
      break;
    case 'R':
      mode = StoreMode::kReplace;
      break;
    default:
      return reject_set(s, rest, total, out, mark, "CLIENT_ERROR invalid mode for ms M token");
  }
  // memcached notices a long opaque only after a bad mode.
  if (opaque_too_long) return reject_set(s, rest, total, out, mark, kErrOpaque);
  // A cas turns set and replace into cas; append/prepend check it themselves;
  // add ignores it.
  if (f.has_cas && (mode == StoreMode::kSet || mode == StoreMode::kReplace)) mode = StoreMode::kCas;

  Store& store = *s.ctx->store;
  ThreadStats& st = *s.ctx->stats;
  // Too large is known from the line: answer now, never buffer the block.
  if (!store.fits(key.size(), static_cast<size_t>(vlen))) {
    st.store_too_large.add();
    drop_key(store, st, key);
    return reject_set(s, rest, total, out, mark, "SERVER_ERROR object too large for cache");
  }
  if (rest.size() < total) {
    r.need = total;
    return r;
  }
  r.consumed = total;

  AllocError aerr = AllocError::kNone;
  ItemPtr item = store.allocate(key, f.client_flags, f.exptime, static_cast<size_t>(vlen), &aerr);
  if (!item) {
    if (aerr == AllocError::kTooLarge) {
      st.store_too_large.add();
      reply(out, "SERVER_ERROR object too large for cache");
    } else {
      st.store_no_memory.add();
      reply(out, "SERVER_ERROR out of memory storing object");
    }
    drop_key(store, st, key);
    return r;
  }
  std::memcpy(item->value_buf(), rest.data(), total);
  if (f.key_binary) item->iflags |= kItemKeyBinary;
  if (rest[total - 2] != '\r' || rest[total - 1] != '\n') {
    // memcached reads exactly <datalen>+2 bytes and resumes parsing after
    // them; the command still counts as a set.
    st.cmd_set.add();
    reply(out, "CLIENT_ERROR bad data chunk");
    return r;
  }

  exec::StoreOptions opts;
  opts.cas_in = f.has_cas ? f.req_cas : 0;
  opts.new_cas = link_cas(f);
  opts.cas_stale = f.set_stale && mode == StoreMode::kCas;
  uint64_t cas = 0;  // "c" answers 0 unless stored, as memcached
  switch (exec::store_item_ex(store, st, std::move(item), mode, opts, &cas)) {
    case exec::StoreResult::kStored:
      if (f.no_reply) return r;  // q hides HD only
      out.append("HD", 2);
      break;
    case exec::StoreResult::kExists:
      out.append("EX", 2);
      break;
    case exec::StoreResult::kNotFound:
      out.append("NF", 2);
      break;
    default:  // kNotStored; a failed append/prepend growth is NS too
      out.append("NS", 2);
      break;
  }
  for (size_t i = 3; i < t.n; ++i) {
    const std::string_view tok = t.tok[i];
    if (tok[0] == 'O') {
      append_opaque(out, tok);
    } else if (tok[0] == 'k') {
      append_key(out, key, f.key_binary);
    } else if (tok[0] == 'c') {
      out.append(" c", 2);
      append_u64(out, cas);
    }
  }
  out.append("\r\n", 2);
  return r;
}

// ---------------------------------------------------------------- md

void meta_delete(Session& s, const Tokens& t, std::string& out) {
  const size_t mark = out.size();
  if (t.n < 2) return reply(out, "ERROR");
  if (t.tok[1].size() > kKeyMaxLength) return reply(out, kErrFormat);
  if (t.n + 1 > kMaxOptTokens) return reply(out, "CLIENT_ERROR options flags too long");
  MetaFlags f;
  std::string_view key = t.tok[1];
  if (!preparse(t, 2, &key, &f).empty()) {
    return reply(out, "CLIENT_ERROR invalid or duplicate flag");
  }
  // The return flags go after a two-byte code filled in below.
  out.append("..", 2);
  for (size_t i = 2; i < t.n; ++i) {
    const std::string_view tok = t.tok[i];
    if (tok[0] == 'O') {
      if (!append_opaque(out, tok)) return reply_error(out, mark, kErrOpaque);
    } else if (tok[0] == 'k') {
      append_key(out, key, f.key_binary);
    }
  }
  out.append("\r\n", 2);

  ThreadStats& st = *s.ctx->stats;
  Txn txn = s.ctx->store->begin(key);
  Item* it = lookup(txn, st);
  const char* code;
  bool nominal = false;
  if (it == nullptr) {
    st.delete_misses.add();
    code = "NF";
  } else if (f.has_cas && it->cas != f.req_cas) {
    st.delete_misses.add();
    code = "EX";
  } else if (f.set_stale) {
    // I: keep the item, stale, with a new cas, so the next mg wins a recache.
    if (f.new_ttl) it->exptime = f.exptime;
    it->iflags = static_cast<uint8_t>((it->iflags | kItemStale) & ~kItemTokenSent);
    it->cas = fresh_cas(txn, f);
    code = "HD";
    nominal = true;
  } else {
    st.delete_hits.add();
    txn.unlink(it);
    code = "HD";
    nominal = true;
  }
  if (nominal && f.no_reply) {
    out.resize(mark);
    return;
  }
  std::memcpy(&out[mark], code, 2);
}

// ---------------------------------------------------------------- ma

void meta_arith(Session& s, const Tokens& t, std::string& out) {
  const size_t mark = out.size();
  if (t.n < 2) return reply(out, "ERROR");
  if (t.tok[1].size() > kKeyMaxLength) return reply(out, kErrFormat);
  if (t.n + 1 > kMaxOptTokens) return reply(out, "CLIENT_ERROR options flags too long");
  MetaFlags f;
  std::string_view key = t.tok[1];
  if (!preparse(t, 2, &key, &f).empty()) {
    return reply(out, "CLIENT_ERROR invalid or duplicate flag");
  }
  bool incr = true;
  switch (f.mode) {
    case 0:
    case 'I':
    case '+':
      break;
    case 'D':
    case '-':
      incr = false;
      break;
    default:
      return reply(out, "CLIENT_ERROR invalid mode for ma M token");
  }

  ThreadStats& st = *s.ctx->stats;
  Txn txn = s.ctx->store->begin(key);
  Item* it = lookup(txn, st);
  char num[24];  // the number answered with v: the new value or J's seed
  size_t nlen = 0;
  bool created = false;
  const char* miss_code = nullptr;
  // What T and N change, and t reports: the item's TTL, except after a grown
  // counter, where memcached applies them to the replaced item, so they are
  // lost (verified on 1.6.18: "ma k T32 t" answers t32, the item keeps its
  // TTL).
  rel_time_t detached_exptime = 0;
  rel_time_t* exptime = nullptr;
  if (it == nullptr) {
    if (f.vivify) {
      nlen = static_cast<size_t>(std::snprintf(num, sizeof num, "%llu",
                                               static_cast<unsigned long long>(f.initial)));
      AllocError aerr;
      ItemPtr fresh = txn.allocate(0, 0, nlen, &aerr);
      if (!fresh) return reply(out, "SERVER_ERROR Out of memory allocating new item");
      std::memcpy(fresh->value_buf(), num, nlen);
      std::memcpy(fresh->value_buf() + nlen, "\r\n", 2);
      it = txn.link(std::move(fresh), link_cas(f));
      exptime = &it->exptime;
      created = true;
    } else {
      (incr ? st.incr_misses : st.decr_misses).add();
      miss_code = "NF";
    }
  } else if (it->nbytes == 0) {
    return reply(out, "CLIENT_ERROR cannot increment or decrement non-numeric value");
  } else if (f.req_cas != 0 && it->cas != f.req_cas) {
    miss_code = "EX";
    it = nullptr;
  } else {
    uint64_t v = 0;
    if (!exec::parse_counter(it->value(), &v)) {
      return reply(out, "CLIENT_ERROR cannot increment or decrement non-numeric value");
    }
    if (incr) {
      v += f.delta;  // wraps, as memcached
      st.incr_hits.add();
    } else {
      v = f.delta > v ? 0 : v - f.delta;
      st.decr_hits.add();
    }
    nlen = static_cast<size_t>(
        std::snprintf(num, sizeof num, "%llu", static_cast<unsigned long long>(v)));
    // memcached also takes the second branch when another reference holds
    // the item (e.g. a pipelined mg reply not yet freed), which shows in h,
    // me's fetch and a lost T; with no references here, only length decides.
    if (nlen <= it->nbytes) {
      // Fits: rewrite in place, space-padded, as do_add_delta does.
      it->cas = fresh_cas(txn, f);
      std::memcpy(it->value_buf(), num, nlen);
      std::memset(it->value_buf() + nlen, ' ', it->nbytes - nlen);
      txn.mark_changed();  // the cas may not move (-C, or E = old cas)
      txn.bump(it, false);
      exptime = &it->exptime;
    } else {
      detached_exptime = it->exptime;
      exptime = &detached_exptime;
      AllocError aerr;
      ItemPtr grown = txn.allocate(it->client_flags, it->exptime, nlen, &aerr);
      if (!grown) return reply(out, "SERVER_ERROR out of memory");
      std::memcpy(grown->value_buf(), num, nlen);
      std::memcpy(grown->value_buf() + nlen, "\r\n", 2);
      it = txn.link(std::move(grown), link_cas(f));
    }
  }

  if (it == nullptr) {
    out.append(miss_code, 2);
    for (size_t i = 2; i < t.n; ++i) {
      const std::string_view tok = t.tok[i];
      if (tok[0] == 'O') {
        if (!append_opaque(out, tok)) return reply_error(out, mark, kErrOpaque);
      } else if (tok[0] == 'k') {
        append_key(out, key, f.key_binary);
      }
    }
    out.append("\r\n", 2);
    return;
  }
  if (f.value) {
    out.append("VA ", 3);
    append_u64(out, nlen);
  } else {
    out.append("HD", 2);
  }
  for (size_t i = 2; i < t.n; ++i) {
    const std::string_view tok = t.tok[i];
    switch (tok[0]) {
      case 'c':
        out.append(" c", 2);
        append_u64(out, it->cas);
        break;
      case 't':
        out.append(" t", 2);
        append_ttl(out, *exptime);
        break;
      case 'T':
        *exptime = f.exptime;
        break;
      case 'N':
        if (created) *exptime = f.autoviv_exptime;
        break;
      case 'O':
        if (!append_opaque(out, tok)) return reply_error(out, mark, kErrOpaque);
        break;
      case 'k':
        append_key(out, key, f.key_binary);
        break;
      default:
        break;
    }
  }
  if (f.value) {
    out.append("\r\n", 2);
    out.append(num, nlen);
  }
  out.append("\r\n", 2);
  // q hides a successful update, value included, but not a creation.
  if (!created && f.no_reply) out.resize(mark);
}

// ---------------------------------------------------------------- me

// memcached's slab class for an item of `ntotal` bytes with its default
// slab settings (-n 48, -f 1.25, 1 MiB pages): the "cls" of me.
unsigned slab_class(size_t ntotal) {
  struct Classes {
    unsigned size[64];
    unsigned count = 0;
    Classes() {
      unsigned sz = 48 + 48;  // sizeof(item) + chunk_size
      const unsigned chunk_max = 512 * 1024;
      while (count < 62 && sz < chunk_max / 1.25) {
        if (sz % 8) sz += 8 - sz % 8;
        size[count++] = sz;
        sz = static_cast<unsigned>(sz * 1.25);
      }
      size[count++] = chunk_max;
    }
  };
  static const Classes classes;
  for (unsigned i = 0; i < classes.count; ++i) {
    if (ntotal <= classes.size[i]) return i + 1;
  }
  return classes.count;
}

// Debug dump, formatted as memcached prints it; sizes are memcached's item
// layout (48-byte header, key + NUL, value + CRLF, flags if nonzero, cas).
void meta_debug(Session& s, const Tokens& t, std::string& out) {
  if (t.n < 2 || t.tok[1].size() > kKeyMaxLength) return reply(out, kErrFormat);
  std::string_view key = t.tok[1];
  if (t.n >= 3 && t.tok[2] == "b") {
    if (!base64_decode(key, &key_scratch())) return reply(out, kErrFormat);
    key = key_scratch();
  }
  ThreadStats& st = *s.ctx->stats;
  Txn txn = s.ctx->store->begin(key);
  if (Item* it = lookup(txn, st)) {
    const rel_time_t now = clock::now();
    const bool use_cas = txn.store().options().use_cas;
    const size_t ntotal = 48 + size_t{it->nkey} + 1 + it->nbytes + 2 +
                          (it->client_flags != 0 ? 4 : 0) + (use_cas ? 8 : 0);
    out.append("ME ", 3);
    if (it->iflags & kItemKeyBinary) {
      std::string& enc = encode_scratch();
      base64_encode(it->key(), &enc);
      out.append(enc);
    } else {
      out.append(it->key());
    }
    char buf[160];
    const int n = std::snprintf(
        buf, sizeof buf, " exp=%d la=%llu cas=%llu fetch=%s cls=%u size=%lu\r\n",
        it->exptime == 0 ? -1 : static_cast<int>(now - it->exptime),
        static_cast<unsigned long long>(static_cast<rel_time_t>(now - it->time)),
        static_cast<unsigned long long>(it->cas), (it->iflags & kItemFetched) ? "yes" : "no",
        slab_class(ntotal), static_cast<unsigned long>(ntotal));
    out.append(buf, static_cast<size_t>(n));
  } else {
    reply(out, "EN");
  }
  st.cmd_meta.add();
}

std::string_view skip_spaces(std::string_view line) {
  size_t i = 0;
  while (i < line.size() && line[i] == ' ') ++i;
  return line.substr(i);
}

}  // namespace

bool is_meta_command(std::string_view line) {
  line = skip_spaces(line);
  if (line.size() < 2 || line[0] != 'm') return false;
  if (line.size() > 2 && line[2] != ' ') return false;
  switch (line[1]) {
    case 'g':
    case 's':
    case 'd':
    case 'a':
    case 'n':
    case 'e':
      return true;
    default:
      return false;
  }
}

ProtoResult meta_process(Session& session, std::string_view line, std::string_view rest,
                         std::string& out) {
  // memcached parses the line as a C string: a NUL ends it.
  if (const void* nul = std::memchr(line.data(), '\0', line.size())) {
    line = line.substr(0, static_cast<size_t>(static_cast<const char*>(nul) - line.data()));
  }
  Tokens t;
  t.n = tokenize(line, t.tok, kMaxTokens);
  ProtoResult r;
  if (t.n == 0 || t.tok[0].size() != 2 || t.tok[0][0] != 'm') {
    reply(out, "ERROR");
    return r;
  }
  switch (t.tok[0][1]) {
    case 'g':
      meta_get(session, t, out);
      break;
    case 's':
      return meta_set(session, t, rest, out);
    case 'd':
      meta_delete(session, t, out);
      break;
    case 'a':
      meta_arith(session, t, out);
      break;
    case 'n':
      reply(out, "MN");
      break;
    case 'e':
      meta_debug(session, t, out);
      break;
    default:
      reply(out, "ERROR");
      break;
  }
  return r;
}

}  // namespace ftm
