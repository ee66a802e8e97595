// Text protocol hot paths: parsing plus executing one request against a real
// Store, as a worker thread does for each request it reads (no sockets).
#include <benchmark/benchmark.h>

#include <string>

#include "src/clock.h"
#include "src/proto_text.h"
#include "src/session.h"
#include "src/settings.h"
#include "src/stats.h"
#include "src/store.h"

namespace ftm {
namespace {

// A store, a worker context and a session, as one worker thread owns them.
struct Fixture {
  Fixture() : store(options()) {
    clock::init();
    ctx.store = &store;
    ctx.stats = &stats;
    ctx.settings = &settings;
    session.ctx = &ctx;
  }
  static Store::Options options() {
    Store::Options o;
    o.sweeper = false;
    return o;
  }
  Store store;
  ThreadStats stats;
  Settings settings;
  WorkerContext ctx;
  Session session;
};

const std::string kValue(100, 'v');

void BM_TextGetHit(benchmark::State& state) {
  Fixture f;
  std::string out;
  const std::string set = "set key 0 0 100\r\n" + kValue + "\r\n";
  text_process(f.session, set, out, 1);
  const std::string get = "get key\r\n";
  for (auto _ : state) {
    out.clear();  // the connection reuses its output buffer
    ProtoResult r = text_process(f.session, get, out, 20);
    benchmark::DoNotOptimize(r);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TextGetHit);

void BM_TextGetMiss(benchmark::State& state) {
  Fixture f;
  std::string out;
  const std::string get = "get nokey\r\n";
  for (auto _ : state) {
    out.clear();
    ProtoResult r = text_process(f.session, get, out, 20);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TextGetMiss);

void BM_TextSet100(benchmark::State& state) {
  Fixture f;
  std::string out;
  const std::string set = "set key 0 0 100\r\n" + kValue + "\r\n";
  for (auto _ : state) {
    out.clear();
    ProtoResult r = text_process(f.session, set, out, 20);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(set.size()));
}
BENCHMARK(BM_TextSet100);

// 20 pipelined gets of distinct keys in one read (memcached's -R default).
void BM_TextPipelinedGet20(benchmark::State& state) {
  Fixture f;
  std::string out;
  std::string in;
  for (int i = 0; i < 20; ++i) {
    std::string key = "key" + std::to_string(i);
    text_process(f.session, "set " + key + " 0 0 100\r\n" + kValue + "\r\n", out, 1);
    in += "get " + key + "\r\n";
  }
  for (auto _ : state) {
    out.clear();
    ProtoResult r = text_process(f.session, in, out, 20);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations() * 20);
}
BENCHMARK(BM_TextPipelinedGet20);

// One multiget of 100 keys (several tokenizer batches).
void BM_TextMultiGet100(benchmark::State& state) {
  Fixture f;
  std::string out;
  std::string in = "get";
  for (int i = 0; i < 100; ++i) {
    std::string key = "key" + std::to_string(i);
    text_process(f.session, "set " + key + " 0 0 100\r\n" + kValue + "\r\n", out, 1);
    in += " " + key;
  }
  in += "\r\n";
  for (auto _ : state) {
    out.clear();
    ProtoResult r = text_process(f.session, in, out, 20);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations() * 100);
}
BENCHMARK(BM_TextMultiGet100);

}  // namespace
}  // namespace ftm

BENCHMARK_MAIN();
