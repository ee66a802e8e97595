// memcached's binary protocol front end. Follows memcached 1.6.18's
// proto_bin.c request by request, including what it does with malformed
// frames (which errors close the connection, which bytes it swallows), so a
// client cannot tell the two apart. Operations go through the execute layer.
#include "src/proto_bin.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>

#include "src/clock.h"
#include "src/cluster.h"
#include "src/execute.h"
#include "src/proto_bin_codec.h"
#include "src/sasl.h"
#include "src/settings.h"

namespace ftm {
namespace {

using bin::RequestHeader;

// What one request did to the input: bytes consumed (header, extras, key and,
// for commands that carry one, the value), or how many bytes the whole
// request needs before it can run.
struct Step {
  size_t consumed = 0;
  size_t need = 0;
  bool close = false;
  bool flush = false;  // memcached writes out every pending reply here
};

// One request being answered.
class Request {
 public:
  Request(Session& s, const RequestHeader& h, std::string_view frame, std::string& out)
      : s_(s), h_(h), frame_(frame), out_(out) {}

  Step run();

 private:
  Step dispatch();
  std::string_view extras() const { return frame_.substr(bin::kHeaderLen, h_.extlen); }
  std::string_view key() const { return frame_.substr(bin::kHeaderLen + h_.extlen, h_.keylen); }
  size_t fixed_len() const { return bin::kHeaderLen + h_.extlen + h_.keylen; }
  uint32_t value_len() const { return h_.bodylen - h_.keylen - h_.extlen; }
  Store& store() { return *s_.ctx->store; }
  ThreadStats& stats() { return *s_.ctx->stats; }
  const Settings* settings() const { return s_.ctx->settings; }
  bool sasl_on() const { return settings() != nullptr && settings()->sasl; }

  void header(uint16_t status, uint8_t extlen, uint16_t keylen, uint32_t bodylen, uint64_t cas) {
    bin::append_response_header(out_, h_.opcode, status, extlen, keylen, bodylen, h_.opaque, cas);
  }
  // memcached's write_bin_response: suppressed for quiet variants.
  void respond(std::string_view body = {}, uint64_t cas = 0) {
    if (quiet_) return;
    header(bin::kSuccess, 0, 0, static_cast<uint32_t>(body.size()), cas);
    out_.append(body);
  }
  // memcached's write_bin_error: always sent, quiet or not, and a point
  // where memcached writes out the replies it holds (conn_mwrite).
  void error(uint16_t status, std::string_view text = {}) {
    if (text.empty()) text = bin::status_text(status);
    header(status, 0, 0, static_cast<uint32_t>(text.size()), 0);
    out_.append(text);
    flush_ = true;
  }
  // Reply, consume header+extras+key, then discard `n` more bytes. memcached
  // goes straight to swallowing, without writing its replies out first.
  Step error_swallow(uint16_t status, uint64_t n, std::string_view text = {}) {
    error(status, text);
    flush_ = n == 0;
    s_.swallow = n;
    return {fixed_len(), 0, false};
  }
  Step protocol_error() {  // handle_binary_protocol_error
    error(bin::kInvalidArgs);
    return {fixed_len(), 0, true};
  }
  Step done() { return {fixed_len(), 0, false}; }
  // For commands carrying a value: run only once all of it is here.
  bool have_value(Step* st) const {
    if (frame_.size() < fixed_len() + value_len()) {
      st->need = fixed_len() + value_len();
      return false;
    }
    st->consumed = fixed_len() + value_len();
    return true;
  }

  // Copies the frame's value, then "\r\n", into a freshly allocated item.
  void fill_value(Item* item) const {
    const uint32_t vlen = value_len();
    std::memcpy(item->value_buf(), frame_.data() + fixed_len(), vlen);
    std::memcpy(item->value_buf() + vlen, "\r\n", 2);
  }
  // Answers a failed Store::allocate as memcached's process_bin_update does.
  void alloc_error(AllocError err) {
    if (err == AllocError::kTooLarge) {
      error(bin::kTooBig);
    } else {
      error(bin::kOutOfMemory, "Out of memory allocating item");
    }
  }
  // Answers a store outcome; `otherwise` is the status of the remaining
  // outcomes (not stored), which depends on the command.
  void store_reply(exec::StoreResult r, uint64_t cas_out, uint16_t otherwise) {
    switch (r) {
      case exec::StoreResult::kStored:
        respond({}, cas_out);
        break;
      case exec::StoreResult::kExists:
        error(bin::kKeyExists);
        break;
      case exec::StoreResult::kNotFound:
        error(bin::kKeyNotFound);
        break;
      default:
        error(otherwise);
    }
  }

  Step get_or_touch();
  Step update();
  Step append_prepend();
  Step remove();
  Step arith();
  Step flush();
  Step stat();
  Step sasl_list();
  Step sasl_auth();

  Session& s_;
  const RequestHeader& h_;
  std::string_view frame_;  // from this request's header to the end of input
  std::string& out_;
  uint8_t cmd_ = 0;         // opcode with the quiet variant folded in
  bool quiet_ = false;
  bool flush_ = false;      // memcached would write out its replies now
};

// Sends each `stats` line as one Stat response (key = name, body = value).
class BinStatsSink : public StatsSink {
 public:
  BinStatsSink(std::string& out, const char opaque[4]) : out_(out), opaque_(opaque) {}
  void add(std::string_view name, std::string_view value) override {
    bin::append_response_header(out_, bin::kStat, bin::kSuccess, 0,
                                static_cast<uint16_t>(name.size()),
                                static_cast<uint32_t>(name.size() + value.size()), opaque_, 0);
    out_.append(name);
    out_.append(value);
  }
  void terminate() { add({}, {}); }

 private:
  std::string& out_;
  const char* opaque_;
};

uint8_t fold_quiet(uint8_t op, bool* quiet) {
  *quiet = true;
  switch (op) {
    case bin::kSetQ: return bin::kSet;
    case bin::kAddQ: return bin::kAdd;
    case bin::kReplaceQ: return bin::kReplace;
    case bin::kDeleteQ: return bin::kDelete;
    case bin::kIncrementQ: return bin::kIncrement;
    case bin::kDecrementQ: return bin::kDecrement;
    case bin::kQuitQ: return bin::kQuit;
    case bin::kFlushQ: return bin::kFlush;
    case bin::kAppendQ: return bin::kAppend;
    case bin::kPrependQ: return bin::kPrepend;
    case bin::kGetQ: return bin::kGet;
    case bin::kGetKQ: return bin::kGetK;
    case bin::kGatQ: return bin::kGat;
    case bin::kGatKQ: return bin::kGatK;
    default:
      *quiet = false;
      return op;
  }
}

// Opcodes an unauthenticated SASL connection may send (memcached's
// authenticated()).
bool allowed_before_auth(uint8_t op) {
  return op == bin::kSaslListMechs || op == bin::kSaslAuth || op == bin::kSaslStep ||
         op == bin::kVersion;
}

Step Request::run() {
  Step st = dispatch();
  st.flush = flush_;
  return st;
}

Step Request::dispatch() {
  const uint8_t ext = h_.extlen;
  const uint16_t kl = h_.keylen;
  const uint32_t bl = h_.bodylen;
  if (kl > bl || uint64_t{kl} + ext > bl) {
    error(bin::kUnknownCommand);
    return {fixed_len(), 0, true};
  }
  if (sasl_on() && !s_.authenticated && !allowed_before_auth(h_.opcode)) {
    error(bin::kAuthError);
    return {fixed_len(), 0, true};
  }
  if (kl > kKeyMaxLength) return protocol_error();  // binprot allows 16-bit keys, we don't

  cmd_ = fold_quiet(h_.opcode, &quiet_);
  switch (cmd_) {
    case bin::kVersion:
      if (ext != 0 || kl != 0 || bl != 0) return protocol_error();
      respond(kMemcachedCompatVersion);
      return done();
    case bin::kFlush:
      if (kl != 0 || bl != ext || (ext != 0 && ext != 4)) return protocol_error();
      return flush();
    case bin::kNoop:
      if (ext != 0 || kl != 0 || bl != 0) return protocol_error();
      respond();
      flush_ = true;  // NoOp exists to flush quiet replies
      return done();
    case bin::kSet:
    case bin::kAdd:
    case bin::kReplace:
      if (ext != 8 || kl == 0 || bl < uint64_t{kl} + 8) return protocol_error();
      return update();
    case bin::kGet:
    case bin::kGetK:
      if (ext != 0 || bl != kl || kl == 0) return protocol_error();
      return get_or_touch();
    case bin::kDelete:
      if (kl == 0 || ext != 0 || bl != kl) return protocol_error();
      return remove();
    case bin::kIncrement:
    case bin::kDecrement:
      if (kl == 0 || ext != 20 || bl != uint64_t{kl} + ext) return protocol_error();
      return arith();
    case bin::kAppend:
    case bin::kPrepend:
      if (kl == 0 || ext != 0) return protocol_error();
      return append_prepend();
    case bin::kStat:
      if (ext != 0) return protocol_error();
      return stat();
    case bin::kQuit:
      if (kl != 0 || ext != 0 || bl != 0) return protocol_error();
      respond();
      return {fixed_len(), 0, true};
    case bin::kSaslListMechs:
      if (ext != 0 || kl != 0 || bl != 0) return protocol_error();
      return sasl_list();
    case bin::kSaslAuth:
    case bin::kSaslStep:
      if (ext != 0 || kl == 0) return protocol_error();
      return sasl_auth();
    case bin::kTouch:
    case bin::kGat:
    case bin::kGatK:
      if (ext != 4 || kl == 0) return protocol_error();
      return get_or_touch();
    default:
      // memcached 1.6.18 answers every other opcode (Verbosity included)
      // "Unknown command" and then discards bodylen bytes past the key.
      return error_swallow(bin::kUnknownCommand, bl);
  }
}

Step Request::get_or_touch() {
  const bool touch = cmd_ == bin::kTouch || cmd_ == bin::kGat || cmd_ == bin::kGatK;
  const bool want_key = cmd_ == bin::kGetK || cmd_ == bin::kGatK;
  const bool want_value = cmd_ != bin::kTouch;
  rel_time_t exptime = 0;
  if (touch) exptime = clock::realtime(bin::load_be32(extras().data()));
  std::string_view k = key();
  bool hit = exec::get(
      store(), stats(), k,
      [&](const Item& it) {
        // Copies under the partition lock: the reply owns its bytes.
        uint32_t body = 4 + (want_key ? k.size() : 0) + (want_value ? it.nbytes : 0);
        header(bin::kSuccess, 4, want_key ? static_cast<uint16_t>(k.size()) : 0, body, it.cas);
        bin::append_be32(out_, it.client_flags);
        if (want_key) out_.append(k);
        if (want_value) out_.append(it.value());
      },
      touch, exptime);
  if (!hit && !quiet_) {
    if (want_key) {
      header(bin::kKeyNotFound, 0, static_cast<uint16_t>(k.size()),
             static_cast<uint32_t>(k.size()), 0);
      out_.append(k);
    } else {
      error(bin::kKeyNotFound);
    }
  }
  return done();
}

Step Request::update() {
  const uint32_t vlen = value_len();
  std::string_view k = key();
  if (!store().fits(k.size(), vlen)) {
    // A set that cannot be stored must not leave the old value readable.
    if (cmd_ == bin::kSet) {
      Txn txn = store().begin(k);
      if (Item* old = txn.find()) txn.unlink(old);
    }
    return error_swallow(bin::kTooBig, vlen);
  }
  Step st;
  if (!have_value(&st)) return st;
  const uint32_t flags = bin::load_be32(extras().data());
  const rel_time_t exptime = clock::realtime(bin::load_be32(extras().data() + 4));
  AllocError err = AllocError::kNone;
  ItemPtr item = store().allocate(k, flags, exptime, vlen, &err);
  if (!item) {
    if (cmd_ == bin::kSet) {
      Txn txn = store().begin(k);
      if (Item* old = txn.find()) txn.unlink(old);
    }
    alloc_error(err);
    return st;
  }
  fill_value(item.get());

  // memcached: a non-zero cas turns set, add and replace alike into a cas.
  const uint64_t cas_in = store().options().use_cas ? h_.cas : 0;
  exec::StoreMode mode = cmd_ == bin::kAdd       ? exec::StoreMode::kAdd
                         : cmd_ == bin::kReplace ? exec::StoreMode::kReplace
                                                 : exec::StoreMode::kSet;
  if (cas_in != 0) mode = exec::StoreMode::kCas;
  uint64_t cas_out = 0;
  exec::StoreResult r = exec::store_item(store(), stats(), std::move(item), mode, cas_in, &cas_out);
  store_reply(r, cas_out,
              mode == exec::StoreMode::kAdd       ? bin::kKeyExists
              : mode == exec::StoreMode::kReplace ? bin::kKeyNotFound
                                                  : bin::kNotStored);
  return st;
}

Step Request::append_prepend() {
  const uint32_t vlen = value_len();
  std::string_view k = key();
  if (!store().fits(k.size(), vlen)) return error_swallow(bin::kTooBig, vlen);
  Step st;
  if (!have_value(&st)) return st;
  AllocError err = AllocError::kNone;
  ItemPtr item = store().allocate(k, 0, 0, vlen, &err);
  if (!item) {
    alloc_error(err);
    return st;
  }
  fill_value(item.get());
  exec::StoreOptions opts;
  opts.cas_in = store().options().use_cas ? h_.cas : 0;
  exec::StoreMode mode = cmd_ == bin::kAppend ? exec::StoreMode::kAppend : exec::StoreMode::kPrepend;
  uint64_t cas_out = 0;
  exec::StoreResult r = exec::store_item_ex(store(), stats(), std::move(item), mode, opts, &cas_out);
  store_reply(r, cas_out, bin::kNotStored);
  return st;
}

Step Request::remove() {
  std::string_view k = key();
  if (h_.cas == 0) {
    if (exec::remove(store(), stats(), k)) {
      respond();
    } else {
      error(bin::kKeyNotFound);
    }
    return done();
  }
  // Delete with a cas: only if the item's cas still matches.
  Txn txn = store().begin(k);
  Item* it = txn.find();
  if (it == nullptr) {
    stats().delete_misses.add();
    error(bin::kKeyNotFound);
  } else if (it->cas != h_.cas) {
    error(bin::kKeyExists);
  } else {
    stats().delete_hits.add();
    txn.unlink(it);
    respond();
  }
  return done();
}

Step Request::arith() {
  const char* e = extras().data();
  const uint64_t delta = bin::load_be64(e);
  const uint64_t initial = bin::load_be64(e + 8);
  const uint32_t expiration = bin::load_be32(e + 16);
  exec::ArithOptions opts;
  opts.cas_in = h_.cas;
  // 0xffffffff: fail on a miss instead of creating the counter.
  opts.vivify = expiration != 0xffffffffu;
  opts.initial = initial;
  opts.vivify_exptime = opts.vivify ? clock::realtime(expiration) : 0;
  exec::ArithOutput res;
  switch (exec::arith_ex(store(), stats(), key(), cmd_ == bin::kIncrement, delta, opts, &res)) {
    case exec::ArithResult::kOk: {
      std::string body;
      bin::append_be64(body, res.value);
      respond(body, res.cas);
      break;
    }
    case exec::ArithResult::kNonNumeric:
      error(bin::kDeltaBadValue);
      break;
    case exec::ArithResult::kNoMemory:
      error(bin::kOutOfMemory, "Out of memory incrementing value");
      break;
    case exec::ArithResult::kNotFound:
      error(bin::kKeyNotFound);
      break;
    case exec::ArithResult::kExists:
      error(bin::kKeyExists);
      break;
  }
  return done();
}

Step Request::flush() {
  if (settings() != nullptr && !settings()->flush_enabled) {
    error(bin::kAuthError);
    return done();
  }
  uint32_t exptime = h_.extlen == 4 ? bin::load_be32(extras().data()) : 0;
  store().flush_all(exptime > 0 ? clock::realtime(exptime) : 0);
  stats().cmd_flush.add();
  respond();
  return done();
}

Step Request::stat() {
  // Only the group key is read; bytes past it (bodylen > keylen) are left
  // in the stream, as memcached leaves them.
  std::string_view group = key();
  ServerControl* server = s_.ctx->server;
  BinStatsSink sink(out_, h_.opaque);
  if (server == nullptr) {
    error(bin::kKeyNotFound);
  } else if (group.empty()) {
    server->collect_stats("", sink);
    sink.terminate();
  } else if (group.starts_with("reset")) {
    server->reset_stats();
    sink.terminate();
  } else if (group.starts_with("settings")) {
    server->collect_stats("settings", sink);
    sink.terminate();
  } else if (group.starts_with("detail")) {
    // Per-prefix detail stats are not kept: "dump" is always empty.
    std::string_view sub = group.substr(6);
    if (sub.starts_with(" dump")) {
      sink.add("detailed", "END\r\n");
      sink.terminate();
    } else if (sub.starts_with(" on") || sub.starts_with(" off")) {
      sink.terminate();
    } else {
      error(bin::kKeyNotFound);
    }
  } else if ((group == "items" || group == "slabs" || group == "sizes") &&
             server->collect_stats(group, sink)) {
    sink.terminate();
  } else {
    error(bin::kKeyNotFound);
  }
  return done();
}

Step Request::sasl_list() {
  if (!sasl_on()) return error_swallow(bin::kUnknownCommand, h_.bodylen - h_.keylen);
  std::string mechs;
  if (!sasl::list_mechs(s_, &mechs)) {
    error(bin::kAuthError);
  } else {
    respond(mechs);
  }
  return done();
}

Step Request::sasl_auth() {
  const uint32_t vlen = value_len();
  if (!sasl_on()) return error_swallow(bin::kUnknownCommand, vlen);
  if (h_.keylen > bin::kMaxSaslMechLen) return error_swallow(bin::kInvalidArgs, vlen);
  if (!store().fits(h_.keylen, vlen)) return error_swallow(bin::kOutOfMemory, vlen);
  Step st;
  if (!have_value(&st)) return st;
  std::string_view data = frame_.substr(fixed_len(), vlen);
  std::string challenge;
  sasl::Result r = cmd_ == bin::kSaslAuth ? sasl::start(s_, key(), data, &challenge)
                                          : sasl::step(s_, data, &challenge);
  switch (r) {
    case sasl::Result::kOk:
      s_.authenticated = true;
      respond("Authenticated");
      stats().auth_cmds.add();
      break;
    case sasl::Result::kContinue:
      header(bin::kAuthContinue, 0, 0, static_cast<uint32_t>(challenge.size()), 0);
      out_.append(challenge);
      flush_ = true;
      break;
    case sasl::Result::kFail:
      error(bin::kAuthError);
      stats().auth_cmds.add();
      stats().auth_errors.add();
      break;
  }
  return st;
}

// Cluster mode: does this frame run elsewhere? Only a well-formed request
// leaves; a malformed one (and anything before SASL authentication) runs
// here, so its error and any close or swallow are the standalone ones. The
// checks mirror Request::dispatch.
Remote route(Session& s, const RequestHeader& h, std::string_view frame, uint32_t* node) {
  const uint8_t ext = h.extlen;
  const uint16_t kl = h.keylen;
  const uint32_t bl = h.bodylen;
  if (kl > bl || uint64_t{kl} + ext > bl || kl > kKeyMaxLength) return Remote::kNone;
  const Settings* settings = s.ctx->settings;
  if (settings != nullptr && settings->sasl && !s.authenticated) return Remote::kNone;
  bool quiet = false;
  bool valid = false;
  bool has_value = false;
  switch (fold_quiet(h.opcode, &quiet)) {
    case bin::kFlush:
      if (kl != 0 || bl != ext || (ext != 0 && ext != 4)) return Remote::kNone;
      if (settings != nullptr && !settings->flush_enabled) return Remote::kNone;
      return Remote::kBroadcast;
    case bin::kSet:
    case bin::kAdd:
    case bin::kReplace:
      valid = ext == 8 && kl != 0;
      has_value = true;
      break;
    case bin::kAppend:
    case bin::kPrepend:
      valid = ext == 0 && kl != 0;
      has_value = true;
      break;
    case bin::kGet:
    case bin::kGetK:
    case bin::kDelete:
      valid = ext == 0 && bl == kl && kl != 0;
      break;
    case bin::kIncrement:
    case bin::kDecrement:
      valid = kl != 0 && ext == 20 && bl == uint64_t{kl} + ext;
      break;
    case bin::kTouch:
    case bin::kGat:
    case bin::kGatK:
      valid = ext == 4 && kl != 0;
      break;
    default:
      return Remote::kNone;
  }
  if (!valid) return Remote::kNone;
  // Too large is refused here, swallowing the value, as standalone does.
  if (has_value && !s.ctx->store->fits(kl, bl - kl - ext)) return Remote::kNone;
  Route r = s.ctx->cluster->route(frame.substr(bin::kHeaderLen + ext, kl));
  if (r.local) return Remote::kNone;
  *node = r.node;
  return Remote::kForward;
}

}  // namespace

ProtoResult bin_process(Session& session, std::string_view in, std::string& out, int max_requests) {
  ProtoResult r;
  int handled = 0;
  // Replies memcached would have written out by now. A bad magic byte makes
  // it close at once, dropping the replies it still held (successes batched
  // since its last write); we drop the same ones.
  size_t flushed = out.size();
  for (;;) {
    if (session.swallow > 0) {
      // memcached's conn_swallow: drop the rest of a refused request's body.
      size_t n = static_cast<size_t>(std::min<uint64_t>(session.swallow, in.size() - r.consumed));
      r.consumed += n;
      session.swallow -= n;
      if (session.swallow > 0) return r;
    }
    std::string_view rest = in.substr(r.consumed);
    if (rest.size() < bin::kHeaderLen) {
      if (!rest.empty()) r.need = r.consumed + bin::kHeaderLen;
      return r;
    }
    if (out.size() >= session.out_pause_at) {
      r.paused = true;  // the client reads first (see text_process)
      return r;
    }
    if (handled >= max_requests) {
      r.yielded = true;
      return r;
    }
    RequestHeader h = bin::decode_request(rest.data());
    if (h.magic != bin::kMagicRequest) {
      // memcached closes on a bad magic byte without answering.
      out.resize(flushed);
      r.close = true;
      return r;
    }
    size_t fixed = bin::kHeaderLen + h.extlen + h.keylen;
    if (rest.size() < fixed) {
      r.need = r.consumed + fixed;
      return r;
    }
    if (session.ctx->cluster != nullptr && !session.forwarded) {
      uint32_t node = 0;
      if (Remote remote = route(session, h, rest, &node); remote != Remote::kNone) {
        // Stop before it, whole: the connection layer sends it to its owner(s).
        const size_t frame = bin::kHeaderLen + size_t{h.bodylen};
        if (rest.size() < frame) {
          r.need = r.consumed + frame;
        } else {
          r.remote = remote;
          r.remote_node = node;
          r.remote_len = frame;
        }
        return r;
      }
    }
    Step st = Request(session, h, rest, out).run();
    if (st.need > 0) {
      r.need = r.consumed + st.need;
      return r;
    }
    r.consumed += st.consumed;
    ++handled;
    if (st.flush) flushed = out.size();
    if (st.close) {
      r.close = true;
      return r;
    }
  }
}

}  // namespace ftm
