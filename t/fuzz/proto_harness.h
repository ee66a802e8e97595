// What the protocol fuzz targets (proto_text_fuzz.cc, proto_bin_fuzz.cc)
// share: a standalone worker context around a real Store, and a driver that
// feeds a parser the way the connection layer (src/conn.cc) does: input
// arrives in chunks, consumed bytes are dropped, a yield or a pause at the
// output limit is resumed (the output taken each time), a close
// stops, and every call sees an exact-size copy of the buffered bytes so
// AddressSanitizer catches any read past the end.
//
// Header-only: each target is one translation unit (t/fuzz/run.sh).
#ifndef FTM_T_FUZZ_PROTO_HARNESS_H_
#define FTM_T_FUZZ_PROTO_HARNESS_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "src/clock.h"
#include "src/proto_text.h"
#include "src/session.h"

namespace ftm::fuzz {

// A failed check: libFuzzer reports the input as a crash.
[[noreturn]] inline void fail() { __builtin_trap(); }

// `stats` answers like a server with nothing to report; the rest are no-ops.
class NullServer : public ServerControl {
 public:
  bool collect_stats(std::string_view group, StatsSink& sink) override {
    if (!group.empty() && group != "settings" && group != "items") return false;
    sink.add("pid", "1");
    return true;
  }
  void reset_stats() override {}
  void set_verbosity(int) override {}
  void shutdown() override {}
};

// One store for the whole run (as one server has), 8 MiB so eviction runs,
// no sweeper thread. ctx.cluster stays null: standalone mode, nothing is
// routed.
struct World {
  World() {
    clock::init();
    Store::Options o;
    o.sweeper = false;
    o.mem_limit = 8u << 20;
    o.item_size_max = 64u << 10;
    store = std::make_unique<Store>(o);
    ctx.store = store.get();
    ctx.stats = &stats;
    ctx.settings = &settings;
    ctx.server = &server;
  }
  std::unique_ptr<Store> store;
  ThreadStats stats;
  Settings settings;
  NullServer server;
  WorkerContext ctx;
};

inline World& world() {
  static World w;
  return w;
}

// Feeds data[0, size) to `process(in, out)` in reads of `chunk` bytes until
// the parser closes the connection or, with everything fed, stops making
// progress. After each call, `check(result, out, left)` sees the reply and
// the bytes still buffered. Checks common to every parser: `consumed` never
// exceeds the input; `need`, when set, asks for bytes not yet there (else
// the connection would wait forever).
template <class Process, class Check>
void drive(const uint8_t* data, size_t size, size_t chunk, Process process,
           Check check) {
  std::string buf;
  std::string out;
  size_t fed = 0;
  for (int rounds = 0; rounds < 100000; ++rounds) {
    if (fed < size) {
      const size_t n = std::min(chunk, size - fed);
      buf.append(reinterpret_cast<const char*>(data) + fed, n);
      fed += n;
    }
    std::unique_ptr<char[]> exact(new char[buf.size()]);
    std::copy(buf.begin(), buf.end(), exact.get());
    out.clear();
    const ProtoResult r = process(std::string_view(exact.get(), buf.size()), out);
    if (r.consumed > buf.size()) fail();
    buf.erase(0, r.consumed);
    check(r, std::string_view(out), std::string_view(buf));
    if (r.close) break;
    if (r.need > 0 && r.need <= buf.size()) fail();
    if (fed >= size && r.consumed == 0 && !r.yielded && !r.paused) break;
  }
}

}  // namespace ftm::fuzz

#endif  // FTM_T_FUZZ_PROTO_HARNESS_H_
