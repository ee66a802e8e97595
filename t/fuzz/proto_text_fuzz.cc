// libFuzzer target for the text and meta protocol parser (ftm::text_process).
// Drives it the way the connection layer does: input arrives in chunks,
// consumed bytes are dropped, `need` is honoured, a yield or a pause at the
// output limit is resumed (with the output taken each time), a close
// stops. Checks that nothing crashes (AddressSanitizer catches any read past
// the buffer), that `consumed` never exceeds the input, that `need` always
// asks for more than is there, and that the output is a sequence of whole
// replies. Standalone mode: WorkerContext::cluster stays null.
//
// Build and run: t/fuzz/run.sh [seconds]
#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "src/clock.h"
#include "src/proto_text.h"
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
    // ctx.cluster stays null: standalone mode, nothing is routed.
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

[[noreturn]] void fail() { __builtin_trap(); }

// Parses the n-th space-separated token of `line` (0-based) as a length.
bool token_len(std::string_view line, int n, size_t* len) {
  size_t pos = 0;
  for (int i = 0; i < n; ++i) {
    pos = line.find(' ', pos);
    if (pos == std::string_view::npos) return false;
    ++pos;
  }
  size_t end = line.find(' ', pos);
  if (end == std::string_view::npos) end = line.size();
  auto [p, ec] = std::from_chars(line.data() + pos, line.data() + end, *len);
  return ec == std::errc() && p == line.data() + end;
}

// `out` must be whole replies: "\r\n"-terminated lines, where a "VALUE k f n"
// (text get) or "VA n" (meta get) line is followed by n data bytes and "\r\n".
void check_output(std::string_view out) {
  size_t pos = 0;
  while (pos < out.size()) {
    size_t eol = out.find("\r\n", pos);
    if (eol == std::string_view::npos) fail();  // a reply cut short
    std::string_view line = out.substr(pos, eol - pos);
    pos = eol + 2;
    size_t len = 0;
    bool block = false;
    if (line.starts_with("VALUE ")) {
      if (!token_len(line, 3, &len)) fail();
      block = true;
    } else if (line.starts_with("VA ")) {
      if (!token_len(line, 1, &len)) fail();
      block = true;
    }
    if (block) {
      if (out.size() - pos < len + 2) fail();
      if (out.substr(pos + len, 2) != "\r\n") fail();
      pos += len + 2;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  World& w = world();
  // Byte 0: chunk size of the simulated reads (low 4 bits) and -R, the
  // requests handled per call (high 4 bits); with -R even, the output limit
  // (Session::out_pause_at) is 64 bytes, so gets pause between keys.
  const size_t chunk = 1 + (data[0] & 15);
  const int max_requests = 1 + (data[0] >> 4);
  const size_t pause_at = max_requests % 2 == 0 ? 64 : SIZE_MAX;
  ++data;
  --size;

  ftm::Session session;
  session.ctx = &w.ctx;
  session.out_pause_at = pause_at;
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
    ftm::ProtoResult r = ftm::text_process(session, in, out, max_requests);
    if (r.consumed > buf.size()) fail();
    if (r.remote != ftm::Remote::kNone) fail();  // no cluster: never routed
    check_output(out);  // a paused get stops between whole VALUE blocks
    if (r.paused && out.size() < pause_at) fail();
    buf.erase(0, r.consumed);
    if (r.close) break;
    // `need` asks for bytes not yet there; otherwise it would never progress.
    if (r.need > 0 && r.need <= buf.size()) fail();
    if (fed >= size && r.consumed == 0 && !r.yielded && !r.paused) {
      if (session.paused_get.offset != 0) fail();  // only a paused call leaves one
      break;
    }
  }
  return 0;
}
