// `stats`, `stats settings`, `stats items`, `stats slabs`, `stats sizes`,
// `stats conns` and `stats reset`: names and order follow memcached 1.6.18
// (memcached.c server_stats, process_stat_settings; items.c; slabs.c).
// ftmemcached has no slab classes: `stats items` shows all items as one
// class (1) when there are any, `stats slabs` shows only the totals.
#include <event2/event.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <string>
#include <vector>

#include "src/clock.h"
#include "src/server.h"
#include "src/worker.h"

namespace ftm {
namespace {

class Emitter {
 public:
  explicit Emitter(StatsSink& sink) : sink_(sink) {}
  void u(std::string_view name, uint64_t v) { sink_.add(name, std::to_string(v)); }
  void i(std::string_view name, int64_t v) { sink_.add(name, std::to_string(v)); }
  void s(std::string_view name, std::string_view v) { sink_.add(name, v); }
  void yn(std::string_view name, bool v) { sink_.add(name, v ? "yes" : "no"); }
  void f(std::string_view name, const char* fmt, double v) {
    char buf[64];
    snprintf(buf, sizeof buf, fmt, v);
    sink_.add(name, buf);
  }

 private:
  StatsSink& sink_;
};

std::string timeval_text(const struct timeval& tv) {
  char buf[64];
  snprintf(buf, sizeof buf, "%ld.%06ld", static_cast<long>(tv.tv_sec),
           static_cast<long>(tv.tv_usec));
  return buf;
}

}  // namespace

bool Server::collect_stats(std::string_view group, StatsSink& sink) {
  Emitter e(sink);
  const Settings& st = settings_;
  size_t listener_conns = 0;
  for (const Listener& l : listeners_) {
    listener_conns += l.kind == Listener::kUdp ? workers_.size() : 1;
  }

  if (group.empty()) {
    rel_time_t now = clock::now();
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    e.i("pid", getpid());
    e.u("uptime", now > 60 ? now - 60 : 0);  // memcached: current_time - ITEM_UPDATE_INTERVAL
    e.i("time", static_cast<int64_t>(clock::to_unix(now)));
    e.s("version", kMemcachedCompatVersion);
    e.s("libevent", event_get_version());
    e.u("pointer_size", 8 * sizeof(void*));
    e.s("rusage_user", timeval_text(usage.ru_utime));
    e.s("rusage_system", timeval_text(usage.ru_stime));
    e.i("max_connections", st.max_conns);
    // memcached counts its listening sockets as connections and prints one
    // fewer than it holds.
    int64_t curr = counters_.curr_clients.load(std::memory_order_relaxed) +
                   static_cast<int64_t>(listener_conns) - 1;
    e.i("curr_connections", std::max<int64_t>(curr, 0));
    e.u("total_connections", counters_.total_conns.load(std::memory_order_relaxed));
    e.u("rejected_connections", counters_.rejected_conns.load(std::memory_order_relaxed));
    e.u("connection_structures",
        counters_.conn_structures.load(std::memory_order_relaxed) + listener_conns);
    // Per-thread counters, summed; conn_yields is printed later, as memcached does.
    std::vector<std::pair<std::string_view, uint64_t>> sums;
    auto add = [&](const ThreadStats& ts) {
      size_t k = 0;
      ts.for_each([&](std::string_view name, uint64_t v) {
        if (k == sums.size()) sums.emplace_back(name, 0);
        sums[k++].second += v;
      });
    };
    for (const auto& w : workers_) add(w->stats());
    {
      std::lock_guard g(extra_stats_mu_);
      for (const ThreadStats* ts : extra_stats_) add(*ts);
    }
    if (workers_.empty()) {
      ThreadStats zero;
      zero.for_each([&](std::string_view name, uint64_t) { sums.emplace_back(name, 0); });
    }
    uint64_t conn_yields = 0;
    for (const auto& [name, v] : sums) {
      if (name == "conn_yields") {
        conn_yields = v;
      } else {
        e.u(name, v);
      }
    }
    StoreStats ss = store_->stats();
    e.u("limit_maxbytes", ss.limit_maxbytes != 0 ? ss.limit_maxbytes : st.max_bytes);
    e.u("accepting_conns", accepting_.load(std::memory_order_relaxed) ? 1 : 0);
    e.u("listen_disabled_num", counters_.listen_disabled_num.load(std::memory_order_relaxed));
    e.u("time_in_listen_disabled_us", 0);
    e.i("threads", st.num_threads);
    e.u("conn_yields", conn_yields);
    e.u("bytes", ss.bytes);
    e.u("curr_items", ss.curr_items);
    e.u("total_items", ss.total_items);
    e.u("expired_unfetched", ss.expired_unfetched);
    e.u("evicted_unfetched", ss.evicted_unfetched);
    e.u("evicted_active", ss.evicted_active);
    e.u("evictions", ss.evictions);
    e.u("reclaimed", ss.reclaimed);
    e.u("crawler_reclaimed", ss.crawler_reclaimed);
    return true;
  }

  if (group == "settings") {
    e.u("maxbytes", st.max_bytes);
    e.i("maxconns", st.max_conns);
    e.i("tcpport", st.port);
    e.i("udpport", st.udp_port);
    e.s("inter", st.listen.empty() ? "NULL" : st.listen);
    e.i("verbosity", verbosity());
    e.u("oldest", 0);
    e.s("evictions", st.evict_to_free ? "on" : "off");
    e.s("domain_socket", st.socket_path.empty() ? "NULL" : st.socket_path);
    char umask_text[16];
    snprintf(umask_text, sizeof umask_text, "%o", st.socket_access);
    e.s("umask", umask_text);
    e.yn("shutdown_command", st.shutdown_command);
    e.f("growth_factor", "%.2f", st.growth_factor);
    e.i("chunk_size", st.chunk_size);
    e.i("num_threads", st.num_threads);
    e.i("num_threads_per_udp", st.num_threads);
    e.s("stat_key_prefix", std::string(1, st.prefix_delimiter));
    e.yn("detail_enabled", st.detail_enabled);
    e.i("reqs_per_event", st.reqs_per_event);
    e.yn("cas_enabled", st.use_cas);
    e.i("tcp_backlog", st.backlog);
    e.s("binding_protocol", st.protocol == BindingProtocol::kAscii    ? "ascii"
                            : st.protocol == BindingProtocol::kBinary ? "binary"
                                                                      : "auto-negotiate");
    e.yn("auth_enabled_sasl", st.sasl);
    e.yn("auth_enabled_ascii", !st.auth_file.empty());
    e.u("item_size_max", st.item_size_max);
    e.yn("maxconns_fast", st.maxconns_fast);
    e.i("hashpower_init", st.hashpower_init);
    e.yn("slab_reassign", false);
    e.i("slab_automove", 0);
    e.yn("lru_crawler", st.lru_crawler);
    e.i("lru_crawler_sleep", st.lru_crawler_sleep);
    e.i("lru_crawler_tocrawl", st.lru_crawler_tocrawl);
    e.i("tail_repair_time", st.tail_repair_time);
    e.yn("flush_enabled", st.flush_enabled);
    e.yn("dump_enabled", st.dump_enabled);
    e.s("hash_algorithm", "xxh3");
    e.yn("lru_maintainer_thread", false);
    e.yn("lru_segmented", false);
    e.i("idle_timeout", st.idle_timeout);
    e.u("read_buf_mem_limit", st.read_buf_limit);
    e.yn("track_sizes", false);
    e.yn("inline_ascii_response", false);
    e.yn("ssl_enabled", false);
    e.s("memory_file", "(null)");
    return true;
  }

  if (group == "items") {
    StoreStats ss = store_->stats();
    if (ss.curr_items == 0) return true;
    e.u("items:1:number", ss.curr_items);
    e.u("items:1:number_hot", 0);
    e.u("items:1:number_warm", 0);
    e.u("items:1:number_cold", ss.curr_items);
    e.u("items:1:age_hot", 0);
    e.u("items:1:age_warm", 0);
    e.u("items:1:age", 0);
    e.u("items:1:mem_requested", ss.bytes);
    e.u("items:1:evicted", ss.evictions);
    e.u("items:1:evicted_nonzero", 0);
    e.u("items:1:evicted_time", 0);
    uint64_t oom = 0;
    for (const auto& w : workers_) oom += w->stats().store_no_memory.load();
    {
      std::lock_guard g(extra_stats_mu_);
      for (const ThreadStats* ts : extra_stats_) oom += ts->store_no_memory.load();
    }
    e.u("items:1:outofmemory", oom);
    e.u("items:1:tailrepairs", 0);
    e.u("items:1:reclaimed", ss.reclaimed);
    e.u("items:1:expired_unfetched", ss.expired_unfetched);
    e.u("items:1:evicted_unfetched", ss.evicted_unfetched);
    e.u("items:1:evicted_active", ss.evicted_active);
    e.u("items:1:crawler_reclaimed", ss.crawler_reclaimed);
    return true;
  }

  if (group == "slabs") {
    StoreStats ss = store_->stats();
    e.u("active_slabs", 0);
    e.u("total_malloced", ss.malloced);
    return true;
  }

  if (group == "sizes") {
    e.s("sizes_status", "disabled");
    return true;
  }

  if (group == "conns") {
    std::vector<ConnInfo> all;
    for (const Listener& l : listeners_) {
      all.push_back(ConnInfo{l.fd, l.addr, std::string(),
                             l.kind == Listener::kUdp ? "conn_read" : "conn_listening", 0});
    }
    for (const auto& w : workers_) {
      w->for_each_conn([&](const ConnInfo& c) { all.push_back(c); });
    }
    std::sort(all.begin(), all.end(),
              [](const ConnInfo& a, const ConnInfo& b) { return a.fd < b.fd; });
    for (const ConnInfo& c : all) {
      std::string p = std::to_string(c.fd) + ":";
      e.s(p + "addr", c.addr);
      if (!c.listen_addr.empty()) e.s(p + "listen_addr", c.listen_addr);
      e.s(p + "state", c.state);
      e.u(p + "secs_since_last_cmd", c.secs_since_last_cmd);
    }
    return true;
  }
  return false;
}

void Server::reset_stats() {
  for (const auto& w : workers_) w->stats().reset();
  {
    std::lock_guard g(extra_stats_mu_);
    for (ThreadStats* ts : extra_stats_) ts->reset();
  }
  store_->reset_stats();
  counters_.total_conns.store(0, std::memory_order_relaxed);
  counters_.rejected_conns.store(0, std::memory_order_relaxed);
  counters_.listen_disabled_num.store(0, std::memory_order_relaxed);
}

}  // namespace ftm
