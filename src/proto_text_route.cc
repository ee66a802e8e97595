// Cluster mode: which text and meta requests this server runs itself and which
// it hands to the connection layer to forward (DESIGN.md "Data path").
//
// Rule: only a well-formed request whose key another node owns leaves this
// server. Anything malformed runs here, so its error reply (and any swallow
// or close it causes) is exactly the standalone one; a request the primary
// refuses anyway (bad number, bad data chunk) is forwarded and refused there
// with the same words.
//
// Never reached in standalone mode: dispatch() tests ctx->cluster first.
#include <climits>
#include <string>

#include "src/cluster.h"
#include "src/proto_meta.h"
#include "src/proto_text_internal.h"
#include "src/proto_util.h"
#include "src/store.h"

namespace ftm::text {
namespace {

bool forward_to(Cluster& cl, std::string_view key, Outcome* o) {
  Route r = cl.route(key);
  if (r.local) return false;
  o->remote = Remote::kForward;
  o->node = r.node;
  return true;
}

// A storage command's data block: forward it with the line once whole.
bool forward_block(Cluster& cl, std::string_view key, size_t vlen, std::string_view rest,
                   Outcome* o) {
  Route r = cl.route(key);
  if (r.local) return false;
  const size_t total = vlen + 2;
  if (rest.size() < total) {
    o->need = total;  // the line is routed again once the block is here
    return true;
  }
  o->remote = Remote::kForward;
  o->node = r.node;
  o->data = total;
  return true;
}

// get/gets/gat/gats/bget: one owner is a plain forward, several a split.
bool route_get(Command& c, Cluster& cl, bool touch, Outcome* o) {
  if (c.ntokens < 3) return false;
  size_t first = kKeyToken;
  if (touch) {
    int32_t exptime = 0;
    if (!safe_strtol(c.token(1), &exptime)) return false;
    ++first;
  }
  // Walk the keys in tokenizer batches without disturbing c.tok, which a
  // local run still needs.
  std::string_view batch[kMaxTokens];
  const std::string_view* tok = c.tok;
  size_t n = c.n;
  size_t i = first;
  bool any_local = false;
  bool any_remote = false;
  bool one_remote = true;
  uint32_t node = 0;
  for (;;) {
    size_t real = n == kMaxTokens ? kMaxTokens - 1 : n;
    for (; i < real; ++i) {
      if (tok[i].size() > kKeyMaxLength) return false;  // the error is local
      Route r = cl.route(tok[i]);
      if (r.local) {
        any_local = true;
      } else if (!any_remote) {
        any_remote = true;
        node = r.node;
      } else if (r.node != node) {
        one_remote = false;
      }
    }
    if (n < kMaxTokens) break;
    std::string_view remainder = tok[kMaxTokens - 1];
    n = tokenize(remainder, batch, kMaxTokens);
    tok = batch;
    i = 0;
  }
  if (!any_remote) return false;
  if (!any_local && one_remote) {
    o->remote = Remote::kForward;
    o->node = node;
  } else {
    o->remote = Remote::kSplitGet;
  }
  return true;
}

bool route_update(Command& c, Cluster& cl, bool cas, std::string_view rest, Outcome* o) {
  if (cas ? (c.ntokens != 7 && c.ntokens != 8) : (c.ntokens != 6 && c.ntokens != 7)) {
    return false;
  }
  std::string_view key = c.token(kKeyToken);
  uint32_t flags = 0;
  int32_t exptime = 0;
  int32_t vlen = 0;
  uint64_t req_cas = 0;
  if (key.size() > kKeyMaxLength || !safe_strtoul(c.token(2), &flags) ||
      !safe_strtol(c.token(3), &exptime) || !safe_strtol(c.token(4), &vlen) ||
      (cas && !safe_strtoull(c.token(5), &req_cas)) || vlen < 0 || vlen > INT_MAX - 2) {
    return false;
  }
  // Too large is refused here, swallowing the block, as standalone does.
  if (!c.session.ctx->store->fits(key.size(), static_cast<size_t>(vlen))) return false;
  return forward_block(cl, key, static_cast<size_t>(vlen), rest, o);
}

// The key a meta command names, base64-decoded under the "b" flag.
bool meta_key(const Command& c, size_t flags_from, std::string_view* key) {
  *key = c.tok[1];
  if (key->size() > kKeyMaxLength) return false;
  for (size_t i = flags_from; i < c.n; ++i) {
    if (c.tok[i] != "b") continue;
    thread_local std::string decoded;  // capacity reused: no allocation once warm
    if (!base64_decode(*key, &decoded) || decoded.empty() || decoded.size() > kKeyMaxLength) {
      return false;
    }
    *key = decoded;
    return true;
  }
  return true;
}

bool route_meta(Command& c, Cluster& cl, std::string_view rest, Outcome* o) {
  std::string_view cmd = c.tok[0];
  if (cmd == "mn" || c.n < 2 || c.n >= kMaxTokens) return false;
  std::string_view line = c.line.substr(static_cast<size_t>(cmd.data() - c.line.data()));
  if (!is_meta_command(line)) return false;
  std::string_view key;
  if (cmd != "ms") return meta_key(c, 2, &key) && forward_to(cl, key, o);
  int32_t vlen = 0;
  if (c.n < 3 || !safe_strtol(c.tok[2], &vlen) || vlen < 0 || vlen > INT_MAX - 2) return false;
  if (!meta_key(c, 3, &key)) return false;
  if (!c.session.ctx->store->fits(key.size(), static_cast<size_t>(vlen))) return false;
  return forward_block(cl, key, static_cast<size_t>(vlen), rest, o);
}

bool route_flush_all(Command& c, Outcome* o) {
  if (c.ntokens < 2 || c.ntokens > 4 || !c.session.ctx->settings->flush_enabled) return false;
  bool noreply = c.token(c.ntokens - 2) == "noreply";
  int32_t exptime = 0;
  if (c.ntokens != (noreply ? 3u : 2u) && !safe_strtol(c.token(1), &exptime)) return false;
  o->remote = Remote::kBroadcast;
  return true;
}

}  // namespace

bool route(Command& c, std::string_view rest, Outcome* o) {
  Cluster& cl = *c.session.ctx->cluster;
  std::string_view cmd = c.tok[0];
  if (cmd[0] == 'm' && cmd.size() == 2) return route_meta(c, cl, rest, o);
  if (cmd == "get" || cmd == "gets" || cmd == "bget") return route_get(c, cl, false, o);
  if (cmd == "gat" || cmd == "gats") return route_get(c, cl, true, o);
  if (cmd == "set" || cmd == "add" || cmd == "replace" || cmd == "append" || cmd == "prepend") {
    return route_update(c, cl, false, rest, o);
  }
  if (cmd == "cas") return route_update(c, cl, true, rest, o);
  if (cmd == "delete") {
    return c.ntokens >= 3 && c.ntokens <= 5 && c.token(kKeyToken).size() <= kKeyMaxLength &&
           forward_to(cl, c.token(kKeyToken), o);
  }
  if (cmd == "incr" || cmd == "decr" || cmd == "touch") {
    return (c.ntokens == 4 || c.ntokens == 5) && c.token(kKeyToken).size() <= kKeyMaxLength &&
           forward_to(cl, c.token(kKeyToken), o);
  }
  if (cmd == "flush_all") return route_flush_all(c, o);
  return false;
}

}  // namespace ftm::text
