// libFuzzer target for the binary protocol parser (and the -Y text
// authentication, which also parses untrusted bytes before anything else).
// Drives the parsers the way the connection layer does: input arrives in
// chunks, consumed bytes are dropped, `need` is honoured, a close stops.
// AddressSanitizer catches any read past the buffer.
//
// Build and run: t/fuzz/run.sh [seconds]
#include <cstddef>
#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "src/auth_file.h"
#include "src/clock.h"
#include "src/proto_bin.h"
#include "src/session.h"

namespace {

class NullServer : public ftm::ServerControl {
 public:
  bool collect_stats(std::string_view group, ftm::StatsSink& sink) override {
    if (!group.empty() && group != "settings" && group != "items") return false;
    sink.add("pid", "1");
    return true;
  }
  void reset_stats() override {}
  void set_verbosity(int) override {}
  void shutdown() override {}
};

struct World {
  World() {
    ftm::clock::init();
    ftm::Store::Options o;
    o.sweeper = false;
    o.mem_limit = 8u << 20;
    o.item_size_max = 64u << 10;
    store = std::make_unique<ftm::Store>(o);
    ctx.store = store.get();
    ctx.stats = &stats;
    ctx.settings = &settings;
    ctx.server = &server;
  }
  std::unique_ptr<ftm::Store> store;
  ftm::ThreadStats stats;
  ftm::Settings settings;
  NullServer server;
  ftm::WorkerContext ctx;
};

World& world() {
  static World w;
  return w;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  World& w = world();
  // Byte 0: options; byte 1: chunk size for the simulated reads.
  const uint8_t opts = data[0];
  const size_t chunk = 1 + data[1];
  data += 2;
  size -= 2;
  w.settings.sasl = (opts & 1) != 0;
  w.settings.flush_enabled = (opts & 2) == 0;
  const bool text_auth = (opts & 4) != 0;
  const int max_requests = 1 + ((opts >> 3) & 7);

  ftm::Session session;
  session.ctx = &w.ctx;
  session.authenticated = (opts & 0x40) != 0;
  std::string buf;
  std::string out;
  size_t fed = 0;
  for (int rounds = 0; rounds < 100000; ++rounds) {
    if (fed < size) {
      size_t n = std::min(chunk, size - fed);
      buf.append(reinterpret_cast<const char*>(data) + fed, n);
      fed += n;
    }
    // An exact-size copy, so ASan sees any read past the end.
    std::unique_ptr<char[]> exact(new char[buf.size() + 1]);
    std::copy(buf.begin(), buf.end(), exact.get());
    std::string_view in(exact.get(), buf.size());
    out.clear();
    ftm::ProtoResult r = text_auth && !session.authenticated
                             ? ftm::text_auth_process(session, in, out)
                             : ftm::bin_process(session, in, out, max_requests);
    if (r.consumed > buf.size()) __builtin_trap();
    buf.erase(0, r.consumed);
    if (r.close) break;
    if (fed >= size && r.consumed == 0 && !r.yielded) break;
  }
  return 0;
}
