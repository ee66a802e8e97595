// Google Benchmark of the store's hot paths through the execute layer:
// get hit, set of a 100-byte value, a 90% get / 10% set mix, and set under
// eviction pressure; each single- and multi-threaded on one shared Store.
//
//   make bench/store_bench && ./bench/store_bench
#include <benchmark/benchmark.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "src/execute.h"

namespace ftm {
namespace {

constexpr int kKeys = 100000;
constexpr size_t kValueSize = 100;

const std::vector<std::string>& Keys() {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> k;
    k.reserve(kKeys);
    for (int i = 0; i < kKeys; ++i) k.push_back("memtier-" + std::to_string(i));
    return k;
  }();
  return keys;
}

void Set(Store& store, ThreadStats& stats, std::string_view key, const std::string& value) {
  AllocError err;
  ItemPtr it = store.allocate(key, 0, 0, value.size(), &err);
  if (!it) return;
  memcpy(it->value_buf(), value.data(), value.size());
  exec::store_item(store, stats, std::move(it), exec::StoreMode::kSet);
}

// One store for all benchmarks (and all their threads), filled once.
Store& SharedStore() {
  static Store* store = [] {
    clock::init();
    Store::Options o;
    o.mem_limit = 1u << 30;
    auto* s = new Store(o);
    ThreadStats stats;
    std::string value(kValueSize, 'v');
    for (const auto& k : Keys()) Set(*s, stats, k, value);
    return s;
  }();
  return *store;
}

// A store too small for its key space: every set evicts.
Store& SmallStore() {
  static Store* store = [] {
    clock::init();
    Store::Options o;
    o.mem_limit = 4u << 20;
    return new Store(o);
  }();
  return *store;
}

// xorshift: a key index per iteration without touching shared state.
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint32_t next(uint32_t n) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return static_cast<uint32_t>(s % n);
  }
};

void BM_GetHit(benchmark::State& state) {
  Store& store = SharedStore();
  const auto& keys = Keys();
  ThreadStats stats;
  Rng rng(state.thread_index() + 1);
  std::string out;
  out.reserve(4096);
  for (auto _ : state) {
    out.clear();
    bool hit = exec::get(store, stats, keys[rng.next(kKeys)],
                         [&](const Item& it) { out.append(it.value_crlf()); });
    benchmark::DoNotOptimize(hit);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_Set100(benchmark::State& state) {
  Store& store = SharedStore();
  const auto& keys = Keys();
  ThreadStats stats;
  Rng rng(state.thread_index() + 101);
  std::string value(kValueSize, 's');
  for (auto _ : state) Set(store, stats, keys[rng.next(kKeys)], value);
  state.SetItemsProcessed(state.iterations());
}

void BM_Mixed90Get10Set(benchmark::State& state) {
  Store& store = SharedStore();
  const auto& keys = Keys();
  ThreadStats stats;
  Rng rng(state.thread_index() + 201);
  std::string value(kValueSize, 'm');
  std::string out;
  out.reserve(4096);
  for (auto _ : state) {
    const std::string& key = keys[rng.next(kKeys)];
    if (rng.next(10) == 0) {
      Set(store, stats, key, value);
    } else {
      out.clear();
      exec::get(store, stats, key, [&](const Item& it) { out.append(it.value_crlf()); });
    }
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_SetEvicting(benchmark::State& state) {
  Store& store = SmallStore();
  const auto& keys = Keys();
  ThreadStats stats;
  Rng rng(state.thread_index() + 301);
  std::string value(kValueSize, 'e');
  for (auto _ : state) Set(store, stats, keys[rng.next(kKeys)], value);
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) state.counters["evictions"] = static_cast<double>(store.stats().evictions);
}

BENCHMARK(BM_GetHit)->ThreadRange(1, 4)->UseRealTime();
BENCHMARK(BM_Set100)->ThreadRange(1, 4)->UseRealTime();
BENCHMARK(BM_Mixed90Get10Set)->ThreadRange(1, 4)->UseRealTime();
BENCHMARK(BM_SetEvicting)->ThreadRange(1, 4)->UseRealTime();

}  // namespace
}  // namespace ftm

BENCHMARK_MAIN();
