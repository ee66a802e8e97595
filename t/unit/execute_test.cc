// Unit tests for the execute layer (src/execute.h): memcached 1.6's storage
// command semantics, get/gat/touch/delete, incr/decr, and their stats.
// The clock is started by the global environment in store_test.cc.
#include "src/execute.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace ftm::exec {
namespace {

class ExecTest : public ::testing::Test {
 protected:
  static ftm::Store::Options Opts() {
    ftm::Store::Options o;
    o.sweeper = false;
    return o;
  }
  ExecTest() : store_(Opts()) {}

  ItemPtr Make(std::string_view key, std::string_view value, uint32_t flags = 0, rel_time_t exptime = 0) {
    AllocError err;
    ItemPtr it = store_.allocate(key, flags, exptime, value.size(), &err);
    EXPECT_TRUE(it);
    memcpy(it->value_buf(), value.data(), value.size());
    return it;
  }

  StoreResult Put(StoreMode mode, std::string_view key, std::string_view value, uint64_t cas_in = 0,
                    uint32_t flags = 0, rel_time_t exptime = 0, uint64_t* cas_out = nullptr) {
    return store_item(store_, stats_, Make(key, value, flags, exptime), mode, cas_in, cas_out);
  }

  struct Got {
    bool hit = false;
    std::string value;
    uint32_t flags = 0;
    uint64_t cas = 0;
    rel_time_t exptime = 0;
  };
  Got Get(std::string_view key, bool touch = false, rel_time_t exptime = 0) {
    Got g;
    g.hit = get(
        store_, stats_, key,
        [&](const Item& it) {
          g.value = std::string(it.value());
          g.flags = it.client_flags;
          g.cas = it.cas;
          g.exptime = it.exptime;
        },
        touch, exptime);
    return g;
  }
  std::string Value(std::string_view key) {
    Got g = Get(key);
    return g.hit ? g.value : "<miss>";
  }

  ftm::Store store_;
  ThreadStats stats_;
};

TEST_F(ExecTest, SetGet) {
  uint64_t cas = 0;
  EXPECT_EQ(Put(StoreMode::kSet, "k", "v1", 0, 42, 0, &cas), StoreResult::kStored);
  Got g = Get("k");
  EXPECT_TRUE(g.hit);
  EXPECT_EQ(g.value, "v1");
  EXPECT_EQ(g.flags, 42u);
  EXPECT_EQ(g.cas, cas);
  EXPECT_FALSE(Get("nope").hit);
  EXPECT_EQ(stats_.cmd_set.load(), 1u);
  EXPECT_EQ(stats_.cmd_get.load(), 2u);
  EXPECT_EQ(stats_.get_hits.load(), 1u);
  EXPECT_EQ(stats_.get_misses.load(), 1u);
}

TEST_F(ExecTest, AddReplace) {
  EXPECT_EQ(Put(StoreMode::kReplace, "k", "r"), StoreResult::kNotStored);
  EXPECT_EQ(Put(StoreMode::kAdd, "k", "a"), StoreResult::kStored);
  EXPECT_EQ(Put(StoreMode::kAdd, "k", "b"), StoreResult::kNotStored);
  EXPECT_EQ(Value("k"), "a");
  EXPECT_EQ(Put(StoreMode::kReplace, "k", "r"), StoreResult::kStored);
  EXPECT_EQ(Value("k"), "r");
  EXPECT_EQ(stats_.cmd_set.load(), 4u);
}

TEST_F(ExecTest, AddOnExpiredKeyStores) {
  EXPECT_EQ(Put(StoreMode::kSet, "k", "old", 0, 0, clock::now() + 1), StoreResult::kStored);
  clock::set_offset_for_test(1);
  EXPECT_EQ(Put(StoreMode::kAdd, "k", "new"), StoreResult::kStored);
  EXPECT_EQ(Value("k"), "new");
  EXPECT_EQ(stats_.get_expired.load(), 1u);
}

TEST_F(ExecTest, AppendPrependKeepFlagsAndExptime) {
  EXPECT_EQ(Put(StoreMode::kAppend, "k", "x"), StoreResult::kNotStored);
  EXPECT_EQ(Put(StoreMode::kPrepend, "k", "x"), StoreResult::kNotStored);
  rel_time_t exp = clock::now() + 1000;
  Put(StoreMode::kSet, "k", "mid", 0, 5, exp);
  EXPECT_EQ(Put(StoreMode::kAppend, "k", "-end", 0, 99, 0), StoreResult::kStored);
  EXPECT_EQ(Put(StoreMode::kPrepend, "k", "start-", 0, 99, 0), StoreResult::kStored);
  Got g = Get("k");
  EXPECT_EQ(g.value, "start-mid-end");
  EXPECT_EQ(g.flags, 5u);
  EXPECT_EQ(g.exptime, exp);
  // Empty appends work too.
  EXPECT_EQ(Put(StoreMode::kAppend, "k", ""), StoreResult::kStored);
  EXPECT_EQ(Value("k"), "start-mid-end");
}

TEST_F(ExecTest, AppendWithCas) {
  uint64_t cas = 0;
  Put(StoreMode::kSet, "k", "a", 0, 0, 0, &cas);
  EXPECT_EQ(Put(StoreMode::kAppend, "k", "b", cas + 100), StoreResult::kExists);
  EXPECT_EQ(Put(StoreMode::kAppend, "k", "b", cas, 0, 0, &cas), StoreResult::kStored);
  EXPECT_EQ(Value("k"), "ab");
  EXPECT_EQ(Put(StoreMode::kPrepend, "k", "c", cas), StoreResult::kStored);
  EXPECT_EQ(Value("k"), "cab");
}

TEST_F(ExecTest, AppendTooLargeIsNotStored) {
  std::string half(600 * 1024, 'h');
  EXPECT_EQ(Put(StoreMode::kSet, "k", half), StoreResult::kStored);
  EXPECT_EQ(Put(StoreMode::kAppend, "k", half), StoreResult::kNotStored);
  EXPECT_EQ(Value("k"), half);
}

TEST_F(ExecTest, Cas) {
  EXPECT_EQ(Put(StoreMode::kCas, "k", "v", 1), StoreResult::kNotFound);
  EXPECT_EQ(stats_.cas_misses.load(), 1u);
  uint64_t cas = 0;
  Put(StoreMode::kSet, "k", "v1", 0, 0, 0, &cas);
  EXPECT_EQ(Get("k").cas, cas);
  EXPECT_EQ(Put(StoreMode::kCas, "k", "v2", cas + 1), StoreResult::kExists);
  EXPECT_EQ(Put(StoreMode::kCas, "k", "v2", 0), StoreResult::kExists);
  EXPECT_EQ(stats_.cas_badval.load(), 2u);
  uint64_t cas2 = 0;
  EXPECT_EQ(Put(StoreMode::kCas, "k", "v2", cas, 0, 0, &cas2), StoreResult::kStored);
  EXPECT_GT(cas2, cas);
  EXPECT_EQ(stats_.cas_hits.load(), 1u);
  EXPECT_EQ(Value("k"), "v2");
  // The old unique is spent.
  EXPECT_EQ(Put(StoreMode::kCas, "k", "v3", cas), StoreResult::kExists);
  // Every store gets a new, larger unique.
  uint64_t cas3 = 0;
  Put(StoreMode::kSet, "k", "v4", 0, 0, 0, &cas3);
  EXPECT_GT(cas3, cas2);
}

TEST_F(ExecTest, CasStaleAndExplicitCas) {
  uint64_t cas = 0;
  rel_time_t exp = clock::now() + 500;
  Put(StoreMode::kSet, "other", "v0");  // so that cas - 1 is a real, older unique
  Put(StoreMode::kSet, "k", "v1", 0, 0, exp, &cas);
  StoreOptions o;
  o.cas_in = cas - 1;
  o.cas_stale = true;
  uint64_t out = 0;
  EXPECT_EQ(store_item_ex(store_, stats_, Make("k", "late"), StoreMode::kCas, o, &out), StoreResult::kStored);
  {
    Txn txn = store_.begin("k");
    Item* it = txn.find();
    ASSERT_NE(it, nullptr);
    EXPECT_TRUE(it->iflags & kItemStale);
    EXPECT_EQ(it->exptime, exp);
    EXPECT_EQ(it->cas, out);
  }
  StoreOptions e;
  e.new_cas = 777777;
  EXPECT_EQ(store_item_ex(store_, stats_, Make("k", "e"), StoreMode::kSet, e, &out), StoreResult::kStored);
  EXPECT_EQ(out, 777777u);
  StoreOptions viv;
  viv.vivify = true;
  EXPECT_EQ(store_item_ex(store_, stats_, Make("v", "new"), StoreMode::kAppend, viv), StoreResult::kStored);
  EXPECT_EQ(Value("v"), "new");
}

TEST_F(ExecTest, DeleteAndTouch) {
  EXPECT_FALSE(remove(store_, stats_, "k"));
  Put(StoreMode::kSet, "k", "v");
  EXPECT_TRUE(touch(store_, stats_, "k", clock::now() + 2));
  EXPECT_FALSE(touch(store_, stats_, "missing", 0));
  EXPECT_EQ(stats_.cmd_touch.load(), 2u);
  EXPECT_EQ(stats_.touch_hits.load(), 1u);
  EXPECT_EQ(stats_.touch_misses.load(), 1u);
  clock::set_offset_for_test(2);
  EXPECT_FALSE(remove(store_, stats_, "k"));  // expired by the touch
  Put(StoreMode::kSet, "k", "v");
  EXPECT_TRUE(remove(store_, stats_, "k"));
  EXPECT_EQ(Value("k"), "<miss>");
  EXPECT_EQ(stats_.delete_hits.load(), 1u);
  EXPECT_EQ(stats_.delete_misses.load(), 2u);
  EXPECT_EQ(stats_.get_expired.load(), 1u);
}

TEST_F(ExecTest, GatCountsLikeMemcached) {
  Put(StoreMode::kSet, "k", "v");
  Got g = Get("k", /*touch=*/true, clock::now() + 100);
  EXPECT_TRUE(g.hit);
  EXPECT_EQ(g.exptime, clock::now() + 100);
  EXPECT_FALSE(Get("missing", true, 5).hit);
  // process_get_command: gat counts touch_cmds and touch hits/misses only.
  EXPECT_EQ(stats_.cmd_touch.load(), 2u);
  EXPECT_EQ(stats_.touch_hits.load(), 1u);
  EXPECT_EQ(stats_.touch_misses.load(), 1u);
  EXPECT_EQ(stats_.cmd_get.load(), 0u);
  EXPECT_EQ(stats_.get_hits.load(), 0u);
  EXPECT_EQ(stats_.get_misses.load(), 0u);
}

TEST_F(ExecTest, GetCountsExpiredAndFlushed) {
  Put(StoreMode::kSet, "e", "v", 0, 0, clock::now() + 1);
  Put(StoreMode::kSet, "f", "v");
  clock::set_offset_for_test(1);
  store_.flush_all(0);
  EXPECT_FALSE(Get("e").hit);
  EXPECT_FALSE(Get("f").hit);
  EXPECT_EQ(stats_.get_flushed.load(), 2u);  // flush is checked first
  EXPECT_EQ(stats_.get_misses.load(), 2u);
}

uint64_t Num(std::string_view s) {
  uint64_t v = 0;
  EXPECT_TRUE(parse_counter(s, &v)) << s;
  return v;
}

TEST(ParseCounter, MatchesSafeStrtoull) {
  EXPECT_EQ(Num("0"), 0u);
  EXPECT_EQ(Num("42"), 42u);
  EXPECT_EQ(Num("18446744073709551615"), UINT64_MAX);
  EXPECT_EQ(Num("9 "), 9u);
  EXPECT_EQ(Num("12 34"), 12u);
  EXPECT_EQ(Num(" 7"), 7u);
  EXPECT_EQ(Num("+5"), 5u);
  EXPECT_EQ(Num("0000000000000000000000001"), 1u);
  uint64_t v;
  EXPECT_FALSE(parse_counter("", &v));
  EXPECT_FALSE(parse_counter("   ", &v));
  EXPECT_FALSE(parse_counter("abc", &v));
  EXPECT_FALSE(parse_counter("12abc", &v));
  EXPECT_FALSE(parse_counter("18446744073709551616", &v));
  EXPECT_FALSE(parse_counter("-1", &v));
  EXPECT_FALSE(parse_counter("0x10", &v));
}

TEST_F(ExecTest, IncrDecr) {
  uint64_t v = 0, cas = 0;
  EXPECT_EQ(arith(store_, stats_, "n", true, 1, &v), ArithResult::kNotFound);
  EXPECT_EQ(arith(store_, stats_, "n", false, 1, &v), ArithResult::kNotFound);
  EXPECT_EQ(stats_.incr_misses.load(), 1u);
  EXPECT_EQ(stats_.decr_misses.load(), 1u);
  uint64_t set_cas = 0;
  Put(StoreMode::kSet, "n", "5", 0, 3, 0, &set_cas);
  EXPECT_EQ(arith(store_, stats_, "n", true, 4, &v, &cas), ArithResult::kOk);
  EXPECT_EQ(v, 9u);
  EXPECT_GT(cas, set_cas);
  EXPECT_EQ(Value("n"), "9");
  // Grows past the old length: a new item with the same flags.
  EXPECT_EQ(arith(store_, stats_, "n", true, 991, &v), ArithResult::kOk);
  EXPECT_EQ(v, 1000u);
  Got g = Get("n");
  EXPECT_EQ(g.value, "1000");
  EXPECT_EQ(g.flags, 3u);
  EXPECT_EQ(stats_.incr_hits.load(), 2u);
}

TEST_F(ExecTest, IncrWrapsDecrFloors) {
  uint64_t v = 0;
  Put(StoreMode::kSet, "n", "18446744073709551615");
  EXPECT_EQ(arith(store_, stats_, "n", true, 1, &v), ArithResult::kOk);
  EXPECT_EQ(v, 0u);
  EXPECT_EQ(Value("n"), "0                   ");  // in place, space padded
  EXPECT_EQ(arith(store_, stats_, "n", false, 5, &v), ArithResult::kOk);
  EXPECT_EQ(v, 0u);
  Put(StoreMode::kSet, "m", "3");
  EXPECT_EQ(arith(store_, stats_, "m", false, UINT64_MAX, &v), ArithResult::kOk);
  EXPECT_EQ(v, 0u);
  EXPECT_EQ(arith(store_, stats_, "m", true, UINT64_MAX, &v), ArithResult::kOk);
  EXPECT_EQ(v, UINT64_MAX);
  EXPECT_EQ(stats_.decr_hits.load(), 2u);
}

TEST_F(ExecTest, DecrPadsInPlace) {
  uint64_t v = 0;
  Put(StoreMode::kSet, "n", "10");
  EXPECT_EQ(arith(store_, stats_, "n", false, 1, &v), ArithResult::kOk);
  EXPECT_EQ(v, 9u);
  EXPECT_EQ(Value("n"), "9 ");
  // The padded value still counts.
  EXPECT_EQ(arith(store_, stats_, "n", true, 1, &v), ArithResult::kOk);
  EXPECT_EQ(v, 10u);
  EXPECT_EQ(Value("n"), "10");
}

TEST_F(ExecTest, NonNumeric) {
  uint64_t v = 0;
  for (const char* bad : {"abc", "", "12abc", "-1", " "}) {
    Put(StoreMode::kSet, "n", bad);
    EXPECT_EQ(arith(store_, stats_, "n", true, 1, &v), ArithResult::kNonNumeric) << bad;
    EXPECT_EQ(Value("n"), bad);
  }
  EXPECT_EQ(stats_.incr_hits.load(), 0u);
  EXPECT_EQ(stats_.incr_misses.load(), 0u);
}

TEST_F(ExecTest, ArithEx) {
  ArithOptions o;
  ArithOutput out;
  o.vivify = true;
  o.initial = 100;
  o.vivify_exptime = clock::now() + 50;
  EXPECT_EQ(arith_ex(store_, stats_, "c", true, 1, o, &out), ArithResult::kOk);
  EXPECT_TRUE(out.created);
  EXPECT_EQ(out.value, 100u);
  EXPECT_EQ(out.exptime, o.vivify_exptime);
  EXPECT_EQ(Value("c"), "100");
  EXPECT_EQ(stats_.incr_misses.load(), 0u);
  ArithOptions c;
  c.cas_in = out.cas + 1;
  EXPECT_EQ(arith_ex(store_, stats_, "c", true, 1, c, &out), ArithResult::kExists);
  c.cas_in = out.cas;
  c.new_cas = 5555555;
  EXPECT_EQ(arith_ex(store_, stats_, "c", false, 1, c, &out), ArithResult::kOk);
  EXPECT_FALSE(out.created);
  EXPECT_EQ(out.value, 99u);
  EXPECT_EQ(out.cas, 5555555u);
  EXPECT_EQ(Value("c"), "99 ");
}

TEST_F(ExecTest, ConcurrentIncrIsExact) {
  Put(StoreMode::kSet, "ctr", "0");
  const int threads = 4, per = 20000;
  std::vector<std::thread> ts;
  std::vector<ThreadStats> st(threads);
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      uint64_t v;
      for (int i = 0; i < per; ++i) ASSERT_EQ(arith(store_, st[t], "ctr", true, 1, &v), ArithResult::kOk);
    });
  }
  for (auto& th : ts) th.join();
  uint64_t v = 0;
  ASSERT_EQ(arith(store_, stats_, "ctr", true, 0, &v), ArithResult::kOk);
  EXPECT_EQ(v, static_cast<uint64_t>(threads * per));
}

}  // namespace
}  // namespace ftm::exec
