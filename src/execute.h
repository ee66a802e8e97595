// The execute layer: each memcached operation implemented once, on the Store,
// with memcached 1.6's semantics (memcached.c do_store_item, do_add_delta,
// proto_text.c process_*_command). The text, meta and binary front ends, and
// later requests forwarded from other servers, all call these; none of them
// touches hash chains or LRU lists itself.
//
// Every function counts its outcome in the caller's ThreadStats.
// Thread-safety: safe for concurrent use (each call takes one partition lock).
#ifndef FTM_SRC_EXECUTE_H_
#define FTM_SRC_EXECUTE_H_

#include <cstdint>
#include <string_view>

#include "src/stats.h"
#include "src/store.h"

namespace ftm::exec {

// protocol.txt "Storage commands".
enum class StoreMode { kSet, kAdd, kReplace, kAppend, kPrepend, kCas };

enum class StoreResult {
  kStored,     // "STORED"
  kNotStored,  // "NOT_STORED": add on a live key, replace/append/prepend on a missing one
  kExists,     // "EXISTS": cas unique mismatch
  kNotFound,   // "NOT_FOUND": cas on a missing key
  kNoMemory,   // "SERVER_ERROR out of memory storing object" (append/prepend growth)
  kTooLarge,   // "SERVER_ERROR object too large for cache" (append/prepend growth)
};

// Stores `item` (allocated with Store::allocate, value and trailing "\r\n"
// already filled in) under `mode`. For kCas, `cas_in` is the client's cas
// unique. For append/prepend the item's flags and exptime are ignored (the old
// item's are kept), as memcached does. On kStored, *cas_out (if non-null) is
// the stored item's new cas unique. Counts cmd_set and cas_* stats.
StoreResult store_item(Store& store, ThreadStats& stats, ItemPtr item, StoreMode mode,
                       uint64_t cas_in = 0, uint64_t* cas_out = nullptr);

// Looks `key` up for a get/gets (or, with touch, gat/gats: the exptime
// becomes `new_exptime`, relative seconds from clock::realtime). Calls
// emit(const Item&) while the partition is locked, so emit must only copy.
// Returns true on a hit. Counts cmd_get/get_hits/get_misses/get_expired/
// get_flushed (and cmd_touch/touch_hits/touch_misses when touching).
template <class Emit>
bool get(Store& store, ThreadStats& stats, std::string_view key, Emit&& emit,
         bool touch = false, rel_time_t new_exptime = 0);

// protocol.txt "Deletion". Returns true when the key existed and was removed.
// Counts delete_hits/delete_misses.
bool remove(Store& store, ThreadStats& stats, std::string_view key);

// protocol.txt "Touch": sets a live item's exptime (relative seconds).
// Returns false on a miss. Counts cmd_touch/touch_hits/touch_misses.
bool touch(Store& store, ThreadStats& stats, std::string_view key, rel_time_t new_exptime);

enum class ArithResult {
  kOk,          // *value holds the new value
  kNotFound,    // "NOT_FOUND"
  kNonNumeric,  // "CLIENT_ERROR cannot increment or decrement non-numeric value"
  kNoMemory,    // "SERVER_ERROR out of memory"
};

// protocol.txt "Increment/Decrement": unsigned 64-bit; incr wraps around,
// decr floors at 0. As memcached, a shorter result is written in place and
// padded with spaces (decr 10 by 1 leaves "9 "), a longer one gets a new item.
// On kOk, *value is the new value and *cas_out (if non-null) the item's cas.
// Counts incr_/decr_ hits and misses.
ArithResult arith(Store& store, ThreadStats& stats, std::string_view key, bool incr,
                  uint64_t delta, uint64_t* value, uint64_t* cas_out = nullptr);

// Parses an item's value as memcached's safe_strtoull does for incr/decr:
// decimal digits, optionally followed by spaces / "\r\n". Returns false for
// anything else (including overflow).
bool parse_counter(std::string_view value, uint64_t* out);

// ----- implementation of the template -----
template <class Emit>
bool get(Store& store, ThreadStats& stats, std::string_view key, Emit&& emit, bool touch,
         rel_time_t new_exptime) {
  Txn txn = store.begin(key);
  int why = 0;
  Item* it = txn.find(&why);
  if (touch) {
    stats.cmd_touch.add();
  }
  stats.cmd_get.add();
  if (it == nullptr) {
    stats.get_misses.add();
    if (why == 1) stats.get_expired.add();
    if (why == 2) stats.get_flushed.add();
    if (touch) stats.touch_misses.add();
    return false;
  }
  if (touch) {
    it->exptime = new_exptime;
    stats.touch_hits.add();
  }
  stats.get_hits.add();
  txn.bump(it, true);
  emit(static_cast<const Item&>(*it));
  return true;
}

}  // namespace ftm::exec

#endif  // FTM_SRC_EXECUTE_H_
