// The execute layer: memcached 1.6's command semantics on the Store. Each
// function takes exactly one partition lock (through a Txn) and allocates
// nothing but items (see store.h for why that is enough for correctness
// under concurrency: everything about one key happens under its partition).
#include "src/execute.h"

#include <charconv>
#include <cstring>

namespace ftm::exec {
namespace {

// Txn::find, counting what memcached's do_item_get counts for every lookup,
// whatever the command: get_expired and get_flushed.
Item* lookup(Txn& txn, ThreadStats& stats) {
  int why = 0;
  Item* it = txn.find(&why);
  if (why == 1) stats.get_expired.add();
  if (why == 2) stats.get_flushed.add();
  return it;
}

// memcached's isspace() as used by safe_strtoull (C locale).
bool is_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

// Builds old value + new value (append) or new + old (prepend) in a fresh
// item with the old item's flags and exptime. nullptr when it cannot be
// allocated (too large or out of memory).
ItemPtr join_values(Txn& txn, const Item& old, const Item& add, bool append) {
  AllocError err;
  ItemPtr joined = txn.allocate(old.client_flags, old.exptime, size_t{old.nbytes} + add.nbytes, &err);
  if (!joined) return nullptr;
  const Item& first = append ? old : add;
  const Item& second = append ? add : old;
  char* dst = joined->value_buf();
  memcpy(dst, first.value().data(), first.nbytes);
  memcpy(dst + first.nbytes, second.value().data(), second.nbytes);
  memcpy(dst + first.nbytes + second.nbytes, "\r\n", 2);
  return joined;
}

}  // namespace

bool parse_counter(std::string_view value, uint64_t* out) {
  // strtoull as memcached runs it over the item's data: leading white space,
  // an optional sign, at least one digit; the number must end at white space
  // or at the end of the value (the "\r\n" that follows it in memcached).
  size_t i = 0;
  const size_t n = value.size();
  while (i < n && is_space(value[i])) ++i;
  bool negative = false;
  if (i < n && (value[i] == '+' || value[i] == '-')) {
    negative = value[i] == '-';
    ++i;
  }
  const size_t digits_start = i;
  uint64_t v = 0;
  while (i < n && value[i] >= '0' && value[i] <= '9') {
    uint64_t d = static_cast<uint64_t>(value[i] - '0');
    if (v > (UINT64_MAX - d) / 10) return false;  // ERANGE
    v = v * 10 + d;
    ++i;
  }
  if (i == digits_start) return false;  // no conversion
  if (i < n && !is_space(value[i])) return false;
  if (negative) v = 0 - v;  // strtoull negates in unsigned arithmetic
  // safe_strtoull refuses a '-' only when the result looks negative as signed.
  if (static_cast<int64_t>(v) < 0 && negative) return false;
  *out = v;
  return true;
}

StoreResult store_item(Store& store, ThreadStats& stats, ItemPtr item, StoreMode mode, uint64_t cas_in,
                       uint64_t* cas_out) {
  StoreOptions opts;
  opts.cas_in = cas_in;
  return store_item_ex(store, stats, std::move(item), mode, opts, cas_out);
}

StoreResult store_item_ex(Store& store, ThreadStats& stats, ItemPtr item, StoreMode mode,
                          const StoreOptions& opts, uint64_t* cas_out) {
  // memcached counts set_cmds for every completed storage command.
  stats.cmd_set.add();
  // Freed at return, after the Txn has unlocked, when not linked.
  ItemPtr incoming = std::move(item);
  Txn txn = store.begin(incoming->key());
  Item* old = lookup(txn, stats);
  ItemPtr to_link;

  if (old != nullptr) {
    // memcached do_store_item: the cas test is done up front for every mode.
    enum { kCasNone, kCasMatch, kCasBadval, kCasStale } cas_res = kCasNone;
    if (opts.cas_in == 0) {
      cas_res = kCasNone;
    } else if (opts.cas_in == old->cas) {
      cas_res = kCasMatch;
    } else if (opts.cas_stale && opts.cas_in < old->cas) {
      cas_res = kCasStale;
    } else {
      cas_res = kCasBadval;
    }
    switch (mode) {
      case StoreMode::kAdd:
        // add fails on a live key but still promotes it in the LRU.
        txn.bump(old, false);
        return StoreResult::kNotStored;
      case StoreMode::kCas:
        if (cas_res == kCasMatch) {
          stats.cas_hits.add();
        } else if (cas_res == kCasStale) {
          // A late writer with an old cas: keep the value but mark it stale,
          // with the old TTL and recache token state.
          incoming->exptime = old->exptime;
          incoming->iflags |= kItemStale;
          if (old->iflags & kItemTokenSent) incoming->iflags |= kItemTokenSent;
          stats.cas_hits.add();
        } else {
          stats.cas_badval.add();
          return StoreResult::kExists;
        }
        to_link = std::move(incoming);
        break;
      case StoreMode::kAppend:
      case StoreMode::kPrepend:
        if (cas_res != kCasNone && cas_res != kCasMatch) return StoreResult::kExists;
        to_link = join_values(txn, *old, *incoming, mode == StoreMode::kAppend);
        // memcached 1.6 answers NOT_STORED when the joined item cannot be
        // allocated (too large or out of memory), not SERVER_ERROR.
        if (!to_link) return StoreResult::kNotStored;
        break;
      case StoreMode::kSet:
      case StoreMode::kReplace:
        to_link = std::move(incoming);
        break;
    }
  } else {
    switch (mode) {
      case StoreMode::kAdd:
      case StoreMode::kSet:
        to_link = std::move(incoming);
        break;
      case StoreMode::kCas:
        stats.cas_misses.add();
        return StoreResult::kNotFound;
      case StoreMode::kAppend:
      case StoreMode::kPrepend:
        if (!opts.vivify) return StoreResult::kNotStored;
        to_link = std::move(incoming);
        break;
      case StoreMode::kReplace:
        return StoreResult::kNotStored;
    }
  }

  Item* linked = txn.link(std::move(to_link), opts.new_cas);
  if (cas_out != nullptr) *cas_out = linked->cas;
  return StoreResult::kStored;
}

bool remove(Store& store, ThreadStats& stats, std::string_view key) {
  Txn txn = store.begin(key);
  Item* it = lookup(txn, stats);
  if (it == nullptr) {
    stats.delete_misses.add();
    return false;
  }
  stats.delete_hits.add();
  txn.unlink(it);
  return true;
}

bool touch(Store& store, ThreadStats& stats, std::string_view key, rel_time_t new_exptime) {
  Txn txn = store.begin(key);
  Item* it = lookup(txn, stats);
  stats.cmd_touch.add();
  if (it == nullptr) {
    stats.touch_misses.add();
    return false;
  }
  // memcached's do_item_touch fetches with DO_UPDATE: it counts as a fetch.
  txn.bump(it, true);
  it->exptime = new_exptime;
  stats.touch_hits.add();
  return true;
}

ArithResult arith(Store& store, ThreadStats& stats, std::string_view key, bool incr, uint64_t delta,
                  uint64_t* value, uint64_t* cas_out) {
  ArithOutput out;
  ArithResult r = arith_ex(store, stats, key, incr, delta, ArithOptions{}, &out);
  if (r == ArithResult::kOk) {
    if (value != nullptr) *value = out.value;
    if (cas_out != nullptr) *cas_out = out.cas;
  }
  return r;
}

ArithResult arith_ex(Store& store, ThreadStats& stats, std::string_view key, bool incr, uint64_t delta,
                     const ArithOptions& opts, ArithOutput* out) {
  ArithOutput scratch;
  if (out == nullptr) out = &scratch;
  char buf[24];
  Txn txn = store.begin(key);
  Item* it = lookup(txn, stats);

  if (it == nullptr) {
    if (!opts.vivify) {
      if (incr) {
        stats.incr_misses.add();
      } else {
        stats.decr_misses.add();
      }
      return ArithResult::kNotFound;
    }
    // meta ma N: create the counter with the initial value, flags 0.
    auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), opts.initial);
    size_t len = static_cast<size_t>(end - buf);
    AllocError err;
    ItemPtr fresh = txn.allocate(0, opts.vivify_exptime, len, &err);
    if (!fresh) return ArithResult::kNoMemory;
    memcpy(fresh->value_buf(), buf, len);
    Item* linked = txn.link(std::move(fresh), opts.new_cas);
    out->value = opts.initial;
    out->cas = linked->cas;
    out->client_flags = linked->client_flags;
    out->exptime = linked->exptime;
    out->created = true;
    return ArithResult::kOk;
  }

  // memcached do_add_delta's order: empty value, then cas, then the number.
  if (it->nbytes == 0) return ArithResult::kNonNumeric;
  if (opts.cas_in != 0 && it->cas != opts.cas_in) return ArithResult::kExists;
  uint64_t v;
  if (!parse_counter(it->value(), &v)) return ArithResult::kNonNumeric;
  if (incr) {
    v += delta;  // wraps modulo 2^64, as memcached
  } else {
    v = delta > v ? 0 : v - delta;
  }
  if (incr) {
    stats.incr_hits.add();
  } else {
    stats.decr_hits.add();
  }

  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  size_t len = static_cast<size_t>(end - buf);
  if (len <= it->nbytes) {
    // Fits: overwrite in place and pad with spaces, as memcached does (so
    // "10" decr 1 reads back as "9 "). The value changed, so a new cas.
    memcpy(it->value_buf(), buf, len);
    memset(it->value_buf() + len, ' ', it->nbytes - len);
    it->cas = opts.new_cas != 0 && store.options().use_cas ? opts.new_cas : txn.next_cas();
    txn.mark_changed();  // the cas may not move (-C, or E = old cas)
    txn.bump(it, false);
  } else {
    AllocError err;
    ItemPtr grown = txn.allocate(it->client_flags, it->exptime, len, &err);
    if (!grown) return ArithResult::kNoMemory;
    memcpy(grown->value_buf(), buf, len);
    it = txn.link(std::move(grown), opts.new_cas);
  }
  out->value = v;
  out->cas = it->cas;
  out->client_flags = it->client_flags;
  out->exptime = it->exptime;
  out->created = false;
  return ArithResult::kOk;
}

}  // namespace ftm::exec
