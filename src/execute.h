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
  kNoMemory,   // "SERVER_ERROR out of memory storing object"
  kTooLarge,   // "SERVER_ERROR object too large for cache"
  // (store_item never returns the last two today: memcached 1.6's
  // do_store_item answers NOT_STORED when an append/prepend result cannot be
  // allocated, and allocation failures of the new item itself happen earlier,
  // in Store::allocate. Front ends map them anyway.)
};

// Stores `item` (allocated with Store::allocate, value and trailing "\r\n"
// already filled in) under `mode`. For kCas, `cas_in` is the client's cas
// unique. For append/prepend the item's flags and exptime are ignored (the old
// item's are kept), as memcached does. On kStored, *cas_out (if non-null) is
// the stored item's new cas unique. Counts cmd_set and cas_* stats.
StoreResult store_item(Store& store, ThreadStats& stats, ItemPtr item, StoreMode mode,
                       uint64_t cas_in = 0, uint64_t* cas_out = nullptr);

// What the meta protocol adds to a store (ms flags); the defaults give
// store_item's behaviour.
struct StoreOptions {
  uint64_t cas_in = 0;     // C: compare for kCas; for append/prepend a
                           // non-zero cas must match too (else kExists)
  uint64_t new_cas = 0;    // E: cas to give the stored item (0: next unique)
  bool cas_stale = false;  // I with kCas: a cas older than the item's still
                           // stores, keeps the old TTL and marks the item
                           // stale (memcached's CAS_STALE)
  bool vivify = false;     // N with append/prepend: a miss stores the item
                           // as given (memcached NREAD_APPENDVIV)
};

// store_item with the meta options above. Same counting.
StoreResult store_item_ex(Store& store, ThreadStats& stats, ItemPtr item, StoreMode mode,
                          const StoreOptions& opts, uint64_t* cas_out = nullptr);

// Looks `key` up for a get/gets (or, with touch, gat/gats: the exptime
// becomes `new_exptime`, relative seconds from clock::realtime). Calls
// emit(const Item&) while the partition is locked, so emit must only copy.
// Returns true on a hit. Counts as memcached 1.6's process_get_command:
// get/gets count cmd_get and get_hits/get_misses; gat/gats count cmd_touch
// and touch_hits/touch_misses instead (not cmd_get). Either way an expired or
// flushed item found on the way counts get_expired/get_flushed (memcached
// counts those in do_item_get, whatever the command).
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
  kExists,      // arith_ex only: cas_in given and not the item's cas (meta "EX")
};

// protocol.txt "Increment/Decrement": unsigned 64-bit; incr wraps around,
// decr floors at 0. As memcached, a shorter result is written in place and
// padded with spaces (decr 10 by 1 leaves "9 "), a longer one gets a new item.
// On kOk, *value is the new value and *cas_out (if non-null) the item's cas.
// Counts incr_/decr_ hits and misses.
ArithResult arith(Store& store, ThreadStats& stats, std::string_view key, bool incr,
                  uint64_t delta, uint64_t* value, uint64_t* cas_out = nullptr);

// What the meta "ma" command adds to incr/decr.
struct ArithOptions {
  uint64_t cas_in = 0;           // C: only apply if the item's cas matches
  uint64_t new_cas = 0;          // E: cas to give the item (0: next unique)
  bool vivify = false;           // N: on a miss, create the item with `initial`
  uint64_t initial = 0;          // J: the value created on a miss
  rel_time_t vivify_exptime = 0; // N's TTL (relative time) for the created item
};
struct ArithOutput {
  uint64_t value = 0;            // the counter after the operation
  uint64_t cas = 0;              // the item's cas afterwards
  uint32_t client_flags = 0;     // the item's flags and exptime afterwards
  rel_time_t exptime = 0;        // (for ma's "f" and "t" return flags)
  bool created = false;          // the item was created by vivify
};

// arith with the meta options above. kNotFound only without vivify (then it
// counts incr_/decr_misses; a vivified miss counts nothing, as memcached).
// kNoMemory also when vivify could not allocate. Counts as arith.
ArithResult arith_ex(Store& store, ThreadStats& stats, std::string_view key, bool incr,
                     uint64_t delta, const ArithOptions& opts, ArithOutput* out);

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
  if (why == 1) stats.get_expired.add();
  if (why == 2) stats.get_flushed.add();
  if (touch) {
    stats.cmd_touch.add();
  } else {
    stats.cmd_get.add();
  }
  if (it == nullptr) {
    if (touch) {
      stats.touch_misses.add();
    } else {
      stats.get_misses.add();
    }
    return false;
  }
  txn.bump(it, true);
  if (touch) {
    it->exptime = new_exptime;
    stats.touch_hits.add();
  } else {
    stats.get_hits.add();
  }
  emit(static_cast<const Item&>(*it));
  return true;
}

}  // namespace ftm::exec

#endif  // FTM_SRC_EXECUTE_H_
