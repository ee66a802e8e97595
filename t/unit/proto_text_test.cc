// text_process against a real Store and execute layer, with a fake
// ServerControl. Every expected byte string below was first observed on a
// real memcached 1.6.18 (memcached -p PORT -U 0), then written down here.
#include "src/proto_text.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <string_view>

#include "src/clock.h"
#include "src/session.h"
#include "src/settings.h"
#include "src/stats.h"
#include "src/store.h"

namespace ftm {
namespace {

class FakeControl final : public ServerControl {
 public:
  bool collect_stats(std::string_view group, StatsSink& sink) override {
    last_group = std::string(group);
    if (group.empty()) {
      sink.add("pid", "42");
      sink.add("cmd_get", "7");
      return true;
    }
    if (group == "settings") {
      sink.add("maxbytes", "67108864");
      return true;
    }
    if (group == "sizes") {
      sink.add("sizes_status", "disabled");
      return true;
    }
    return group == "items" || group == "slabs" || group == "conns";
  }
  void reset_stats() override { ++resets; }
  void set_verbosity(int level) override { verbosity = level; }
  void shutdown() override { ++shutdowns; }

  std::string last_group;
  int resets = 0;
  int verbosity = -1;
  int shutdowns = 0;
};

Store::Options StoreOptions() {
  Store::Options o;
  o.sweeper = false;
  return o;
}

class TextTest : public ::testing::Test {
 protected:
  TextTest() : store_(StoreOptions()) {
    clock::init();
    ctx_.store = &store_;
    ctx_.stats = &stats_;
    ctx_.settings = &settings_;
    ctx_.server = &control_;
    session_.ctx = &ctx_;
  }

  // Feeds `input` as a connection would: everything at once, calling again
  // after a yield, keeping unconsumed bytes. Sets closed_ and pending_.
  std::string Run(std::string_view input, int max_requests = 1000) {
    buf_.append(input);
    std::string out;
    for (;;) {
      ProtoResult r = text_process(session_, buf_, out, max_requests);
      EXPECT_LE(r.consumed, buf_.size());
      buf_.erase(0, r.consumed);
      last_ = r;
      if (r.close) {
        closed_ = true;
        break;
      }
      if (!r.yielded) break;
      ++yields_;
    }
    return out;
  }

  // The same, one byte at a time (worst-case fragmentation).
  std::string RunBytewise(std::string_view input) {
    std::string out;
    for (char ch : input) {
      out += Run(std::string_view(&ch, 1));
      if (closed_) break;
    }
    return out;
  }

  // Replaces the cas unique of every "VALUE key flags bytes cas" line with
  // "CAS" (its value is the store's business, not the parser's).
  static std::string MaskCas(const std::string& s) {
    std::string out;
    size_t pos = 0;
    while (pos < s.size()) {
      size_t eol = s.find("\r\n", pos);
      if (eol == std::string::npos) eol = s.size();
      std::string line = s.substr(pos, eol - pos);
      if (line.rfind("VALUE ", 0) == 0 && std::count(line.begin(), line.end(), ' ') == 4) {
        line = line.substr(0, line.rfind(' ')) + " CAS";
      }
      out += line;
      pos = eol;
      if (pos < s.size()) {
        out += "\r\n";
        pos += 2;
      }
    }
    return out;
  }

  // The cas unique in a "gets" reply for one key.
  static std::string CasOf(const std::string& reply) {
    size_t eol = reply.find("\r\n");
    std::string line = reply.substr(0, eol);
    return line.substr(line.rfind(' ') + 1);
  }

  Store store_;
  ThreadStats stats_;
  Settings settings_;
  FakeControl control_;
  WorkerContext ctx_;
  Session session_;
  std::string buf_;
  ProtoResult last_;
  bool closed_ = false;
  int yields_ = 0;
};

TEST_F(TextTest, SetGetGets) {
  EXPECT_EQ(Run("set k 0 0 3\r\nabc\r\nget k\r\n"), "STORED\r\nVALUE k 0 3\r\nabc\r\nEND\r\n");
  EXPECT_EQ(MaskCas(Run("gets k\r\n")), "VALUE k 0 3 CAS\r\nabc\r\nEND\r\n");
  EXPECT_EQ(Run("set f 123 0 0\r\n\r\nget f k nope\r\n"),
            "STORED\r\nVALUE f 123 0\r\n\r\nVALUE k 0 3\r\nabc\r\nEND\r\n");
  EXPECT_EQ(Run("get nope\r\n"), "END\r\n");
  EXPECT_FALSE(closed_);
  EXPECT_TRUE(buf_.empty());
}

TEST_F(TextTest, GetsReturnsTheCasThatCasAccepts) {
  Run("set k 0 0 1\r\nx\r\n");
  std::string cas = CasOf(Run("gets k\r\n"));
  ASSERT_FALSE(cas.empty());
  EXPECT_EQ(Run("cas k 0 0 1 " + cas + "1\r\ny\r\n"), "EXISTS\r\n");
  EXPECT_EQ(Run("cas k 0 0 1 " + cas + "\r\ny\r\n"), "STORED\r\n");
  EXPECT_EQ(Run("cas k 0 0 1 " + cas + "\r\nz\r\n"), "EXISTS\r\n");
  EXPECT_EQ(Run("cas nope 0 0 1 5\r\nx\r\n"), "NOT_FOUND\r\n");
  EXPECT_EQ(Run("get k\r\n"), "VALUE k 0 1\r\ny\r\nEND\r\n");
}

TEST_F(TextTest, AddReplaceAppendPrepend) {
  EXPECT_EQ(Run("append nope 0 0 1\r\nx\r\nprepend nope 0 0 1\r\nx\r\n"
                "replace nope 0 0 1\r\nx\r\nadd nope 0 0 1\r\nx\r\nadd nope 0 0 1\r\nx\r\n"),
            "NOT_STORED\r\nNOT_STORED\r\nNOT_STORED\r\nSTORED\r\nNOT_STORED\r\n");
  EXPECT_EQ(Run("append nope 5 0 2\r\nyz\r\nprepend nope 6 0 2\r\nab\r\nget nope\r\n"),
            "STORED\r\nSTORED\r\nVALUE nope 0 5\r\nabxyz\r\nEND\r\n");
  EXPECT_EQ(Run("replace nope 9 0 1\r\nr\r\nget nope\r\n"),
            "STORED\r\nVALUE nope 9 1\r\nr\r\nEND\r\n");
}

TEST_F(TextTest, NoreplySilencesRepliesAndErrors) {
  EXPECT_EQ(Run("set k 0 0 3 noreply\r\nabc\r\nget k\r\n"), "VALUE k 0 3\r\nabc\r\nEND\r\n");
  // Errors after "noreply" was seen are silent too (memcached's out_string).
  EXPECT_EQ(Run("set k 0 0 -1 noreply\r\nget k\r\n"), "VALUE k 0 3\r\nabc\r\nEND\r\n");
  EXPECT_EQ(Run("set k 0 0 3 noreply\r\nabcde\r\n"), "ERROR\r\n");
  EXPECT_EQ(Run("incr k 1 noreply\r\nversion\r\n"), "VERSION 1.6.18\r\n");
  EXPECT_EQ(Run("delete k 1 noreply\r\nversion\r\n"), "VERSION 1.6.18\r\n");
  EXPECT_EQ(Run("verbosity noreply\r\nversion\r\n"), "VERSION 1.6.18\r\n");
  EXPECT_EQ(Run("touch k 10 noreply\r\ntouch k 10 x\r\n"), "TOUCHED\r\n");
  EXPECT_EQ(Run("cas k 0 0 1 1 noreply\r\nx\r\nversion\r\n"), "VERSION 1.6.18\r\n");
  // A misplaced noreply is just one token too many.
  EXPECT_EQ(Run("set k 0 0 1 noreply extra\r\nx\r\n"), "ERROR\r\nERROR\r\n");
  EXPECT_EQ(Run("set k 0 0 1 extra\r\nx\r\n"), "STORED\r\n");
}

TEST_F(TextTest, BadCommandLines) {
  EXPECT_EQ(Run("set k 0 0 -1\r\n"), "CLIENT_ERROR bad command line format\r\n");
  EXPECT_EQ(Run("set k 0 0 abc\r\n"), "CLIENT_ERROR bad command line format\r\n");
  // No swallow: the data line is read as a command.
  EXPECT_EQ(Run("set k abc 0 1\r\nx\r\n"), "CLIENT_ERROR bad command line format\r\nERROR\r\n");
  EXPECT_EQ(Run("set k -1 0 1\r\nx\r\n"), "CLIENT_ERROR bad command line format\r\nERROR\r\n");
  EXPECT_EQ(Run("set k 0 0 2147483646\r\n"), "CLIENT_ERROR bad command line format\r\n");
  EXPECT_EQ(Run("set " + std::string(251, 'a') + " 0 0 1\r\nx\r\n"),
            "CLIENT_ERROR bad command line format\r\nERROR\r\n");
  EXPECT_EQ(Run("cas k 0 0 1 abc\r\n"), "CLIENT_ERROR bad command line format\r\n");
  EXPECT_EQ(Run("set k 0 0\r\nset\r\ncas k 0 0 1\r\nx\r\n"), "ERROR\r\nERROR\r\nERROR\r\nERROR\r\n");
  // memcached truncates: flags 2^32 are 0, length 2^32+1 is 1.
  EXPECT_EQ(Run("set k 4294967296 0 1\r\nx\r\nget k\r\n"), "STORED\r\nVALUE k 0 1\r\nx\r\nEND\r\n");
  EXPECT_EQ(Run("set k 0 0 4294967297\r\nx\r\n"), "STORED\r\n");
  EXPECT_EQ(Run("set k 0 0 +1\r\nx\r\n"), "STORED\r\n");
  EXPECT_FALSE(closed_);
}

TEST_F(TextTest, BadDataChunk) {
  EXPECT_EQ(Run("set k 0 0 3\r\nabcde\r\n"), "CLIENT_ERROR bad data chunk\r\nERROR\r\n");
  EXPECT_EQ(Run("set k 0 0 3\r\nabc\nget k\r\n"), "CLIENT_ERROR bad data chunk\r\nERROR\r\n");
  EXPECT_EQ(Run("set k 0 0 1\r\nx\r\r\n"), "CLIENT_ERROR bad data chunk\r\nERROR\r\n");
  EXPECT_EQ(Run("set k 0 0 3\r\nabc\r\n"), "STORED\r\n");
  // The old value survives a bad chunk; exactly vlen+2 bytes are eaten.
  EXPECT_EQ(Run("set k 0 0 3\r\nxyzXYget k\r\n"),
            "CLIENT_ERROR bad data chunk\r\nVALUE k 0 3\r\nabc\r\nEND\r\n");
}

TEST_F(TextTest, TooLargeIsSwallowedAndRemovesTheOldValue) {
  const std::string big(2000000, 'x');
  Run("set k 0 0 1\r\nx\r\n");
  EXPECT_EQ(Run("set k 0 0 2000000\r\n" + big + "\r\nget k\r\n"),
            "SERVER_ERROR object too large for cache\r\nEND\r\n");
  EXPECT_EQ(stats_.store_too_large.load(), 1u);
  Run("set k 0 0 1\r\nx\r\n");
  EXPECT_EQ(Run("set k 0 0 2000000 noreply\r\n" + big + "\r\nget k\r\n"), "END\r\n");
  // Arriving in pieces: the swallow spans calls.
  EXPECT_EQ(Run("add k 0 0 2000000\r\n" + big.substr(0, 1000)),
            "SERVER_ERROR object too large for cache\r\n");
  EXPECT_GT(session_.swallow, 0u);
  EXPECT_EQ(Run(big.substr(1000)), "");
  EXPECT_EQ(Run("\r\nversion\r\n"), "VERSION 1.6.18\r\n");
  EXPECT_EQ(session_.swallow, 0u);
}

TEST_F(TextTest, IncompleteDataBlockAsksForMore) {
  EXPECT_EQ(Run("version\r\nset k 0 0 10\r\nabc"), "VERSION 1.6.18\r\n");
  EXPECT_EQ(buf_, "set k 0 0 10\r\nabc");
  EXPECT_EQ(last_.need, std::string("set k 0 0 10\r\n").size() + 12);
  EXPECT_EQ(Run("defghij\r"), "");
  EXPECT_EQ(Run("\nget k\r\n"), "STORED\r\nVALUE k 0 10\r\nabcdefghij\r\nEND\r\n");
}

TEST_F(TextTest, LineEndingsAndEmptyLines) {
  EXPECT_EQ(Run("set k 0 0 3\nabc\r\nget k\n"), "STORED\r\nVALUE k 0 3\r\nabc\r\nEND\r\n");
  EXPECT_EQ(Run("\r\n\nx\r\nfoo bar\r\nget\r\nGET k\r\nm\r\n"),
            "ERROR\r\nERROR\r\nERROR\r\nERROR\r\nERROR\r\nERROR\r\nERROR\r\n");
  EXPECT_EQ(Run("version\r"), "");  // waits for "\n"
  EXPECT_EQ(Run("\n"), "VERSION 1.6.18\r\n");
  // A NUL ends the line, as memcached reads it as a C string.
  EXPECT_EQ(Run(std::string("get k\0junk\r\n", 12)), "VALUE k 0 3\r\nabc\r\nEND\r\n");
  EXPECT_EQ(Run("  get   k  \r\n"), "VALUE k 0 3\r\nabc\r\nEND\r\n");
  // Only spaces separate tokens: "k\t" is another key.
  EXPECT_EQ(Run("get k\t\r\n"), "END\r\n");
}

TEST_F(TextTest, LongLines) {
  // With its newline, a long line is still a command.
  EXPECT_EQ(Run(std::string(3000, 'x') + "\r\n"), "ERROR\r\n");
  EXPECT_FALSE(closed_);
  // A get line may grow past 2 KiB while it waits for its newline.
  std::string get = "get";
  for (int i = 0; i < 1500; ++i) get += " k";
  EXPECT_EQ(Run(get), "");
  EXPECT_FALSE(closed_);
  buf_.clear();
  // Anything else without a newline after 2 KiB closes the connection, and
  // replies not yet sent are dropped (memcached's conn_closing).
  EXPECT_EQ(Run("version\r\n" + std::string(3000, 'x')), "");
  EXPECT_TRUE(closed_);
}

TEST_F(TextTest, LongLineWithLeadingSpacesCloses) {
  std::string get = std::string(101, ' ') + "get";
  for (int i = 0; i < 1500; ++i) get += " k";
  Run(get);
  EXPECT_TRUE(closed_);
}

TEST_F(TextTest, LongGatLineCloses) {
  std::string gat = "gat 0";
  for (int i = 0; i < 1500; ++i) gat += " k";
  Run(gat);
  EXPECT_TRUE(closed_);
}

TEST_F(TextTest, HttpRequestCloses) {
  EXPECT_EQ(Run("version\r\nGET / HTTP/1.1\r\n"), "");
  EXPECT_TRUE(closed_);
}

TEST_F(TextTest, HttpCheckOnlyForUnknownFirstLetters) {
  EXPECT_EQ(Run("a HTTP/1.1\r\nsa HTTP/1.1\r\n"), "ERROR\r\nERROR\r\n");
  EXPECT_FALSE(closed_);
}

TEST_F(TextTest, QuitSendsEarlierReplies) {
  EXPECT_EQ(Run("version\r\nquit\r\nversion\r\n"), "VERSION 1.6.18\r\n");
  EXPECT_TRUE(closed_);
}

TEST_F(TextTest, MultiGetAcrossTokenBatches) {
  Run("set k 0 0 1\r\nx\r\n");
  std::string line = "get";
  std::string want;
  for (int i = 0; i < 30; ++i) {
    line += " k";
    want += "VALUE k 0 1\r\nx\r\n";
  }
  EXPECT_EQ(Run(line + "\r\n"), want + "END\r\n");
}

// As a connection whose client reads slowly: `out` may hold `budget` bytes
// (session.out_pause_at) before the parser stops; the "client" then takes
// everything and the parser is called again on the same input.
std::string RunWithBudget(Session& session, std::string& buf, size_t budget, int* pauses) {
  std::string all;
  for (int guard = 0; guard < 100000; ++guard) {
    std::string out;
    session.out_pause_at = budget;
    ProtoResult r = text_process(session, buf, out, 1000);
    EXPECT_LE(r.consumed, buf.size());
    buf.erase(0, r.consumed);
    all += out;
    if (r.paused) ++*pauses;
    if (r.close || (!r.paused && !r.yielded)) break;
  }
  session.out_pause_at = SIZE_MAX;
  return all;
}

TEST_F(TextTest, GetPausedAtOutputLimitResumesWithTheSameReply) {
  std::string sets;
  std::string keys;
  for (int i = 0; i < 60; ++i) {
    sets += "set k" + std::to_string(i) + " 7 0 10\r\n0123456789\r\n";
    keys += " k" + std::to_string(i) + (i % 7 == 0 ? " missing" : "");
  }
  Run(sets);
  const std::string input = "get" + keys + "\r\ngets" + keys + "\r\ngat 0" + keys +
                            "\r\nversion\r\nmn\r\n";
  const std::string whole = MaskCas(Run(input));
  ASSERT_NE(whole.find("MN\r\n"), std::string::npos);
  for (size_t budget : {1, 30, 100, 1000}) {
    std::string buf = input;
    int pauses = 0;
    EXPECT_EQ(MaskCas(RunWithBudget(session_, buf, budget, &pauses)), whole) << budget;
    EXPECT_TRUE(buf.empty()) << budget;
    // About 5 KiB of replies: a pause per key at budget 1, a few at 1000.
    EXPECT_GE(pauses, budget == 1 ? 180 : 4) << budget;
    EXPECT_EQ(session_.paused_get.offset, 0u);
  }
}

TEST_F(TextTest, LongKeyAfterAPausedGetStillAnswersTheError) {
  Run("set a 0 0 1\r\nx\r\n");
  std::string buf = "get a a a " + std::string(251, 'y') + " a\r\nversion\r\n";
  int pauses = 0;
  std::string got = RunWithBudget(session_, buf, 1, &pauses);
  EXPECT_EQ(got.substr(0, 3 * 16), "VALUE a 0 1\r\nx\r\nVALUE a 0 1\r\nx\r\nVALUE a 0 1\r\nx\r\n");
  EXPECT_EQ(got.substr(3 * 16, 38), "CLIENT_ERROR bad command line format\r\n");
  EXPECT_EQ(got.substr(3 * 16 + 38, 8), "VERSION ");
  EXPECT_EQ(pauses, 4);  // before each of the last three keys, before version
}

TEST_F(TextTest, LongKeyInGetDropsUnsentReplies) {
  const std::string longkey(251, 'y');
  EXPECT_EQ(Run("get " + longkey + "\r\n"), "CLIENT_ERROR bad command line format\r\n");
  EXPECT_EQ(Run("get a " + longkey + " b\r\n"), "CLIENT_ERROR bad command line format\r\n");
  // memcached culls every reply not yet written...
  EXPECT_EQ(Run("version\r\nflush_all\r\nget " + longkey + "\r\n"),
            "CLIENT_ERROR bad command line format\r\n");
  // ...but a get flushes its replies, so they survive.
  EXPECT_EQ(Run("get b\r\nget " + longkey + "\r\n"), "END\r\nCLIENT_ERROR bad command line format\r\n");
  std::string line = "gets";
  for (int i = 0; i < 23; ++i) line += " k";
  EXPECT_EQ(Run(line + " " + longkey + "\r\n"), "CLIENT_ERROR bad command line format\r\n");
}

TEST_F(TextTest, Delete) {
  EXPECT_EQ(Run("delete k 0\r\n"), "NOT_FOUND\r\n");
  EXPECT_EQ(Run("delete k 1\r\n"),
            "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n");
  EXPECT_EQ(Run("delete k 0 0\r\n"),
            "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n");
  EXPECT_EQ(Run("delete k noreply 0\r\nversion\r\n"),
            "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"
            "VERSION 1.6.18\r\n");
  EXPECT_EQ(Run("delete k noreply\r\ndelete k 0 noreply\r\n"), "");
  EXPECT_EQ(Run("delete k x y z\r\ndelete\r\n"), "ERROR\r\nERROR\r\n");
  EXPECT_EQ(Run("set k 0 0 1\r\nx\r\ndelete k 0\r\ndelete k\r\n"),
            "STORED\r\nDELETED\r\nNOT_FOUND\r\n");
  EXPECT_EQ(Run("delete " + std::string(251, 'a') + "\r\n"),
            "CLIENT_ERROR bad command line format\r\n");
}

TEST_F(TextTest, IncrDecr) {
  EXPECT_EQ(Run("incr n 1\r\n"), "NOT_FOUND\r\n");
  EXPECT_EQ(Run("set n 0 0 2\r\n10\r\nincr n 5\r\ndecr n 100\r\nincr n abc\r\nincr n -1\r\n"),
            "STORED\r\n15\r\n0\r\nCLIENT_ERROR invalid numeric delta argument\r\n"
            "CLIENT_ERROR invalid numeric delta argument\r\n");
  EXPECT_EQ(Run("set n 0 0 2\r\nab\r\nincr n 5\r\n"),
            "STORED\r\nCLIENT_ERROR cannot increment or decrement non-numeric value\r\n");
  EXPECT_EQ(Run("set n 0 0 20\r\n18446744073709551615\r\nincr n 1\r\n"), "STORED\r\n0\r\n");
  EXPECT_EQ(Run("set n 0 0 2\r\n10\r\ndecr n 1\r\nget n\r\n"),
            "STORED\r\n9\r\nVALUE n 0 2\r\n9 \r\nEND\r\n");
  EXPECT_EQ(Run("incr\r\nincr k\r\ndecr k 1 2 3\r\n"), "ERROR\r\nERROR\r\nERROR\r\n");
}

TEST_F(TextTest, TouchAndGat) {
  EXPECT_EQ(Run("touch k 10\r\ntouch k abc\r\ntouch k\r\n"),
            "NOT_FOUND\r\nCLIENT_ERROR invalid exptime argument\r\nERROR\r\n");
  EXPECT_EQ(Run("gat 10 k\r\ngat abc k\r\ngats\r\ngat 10\r\n"),
            "END\r\nCLIENT_ERROR invalid exptime argument\r\nERROR\r\nEND\r\n");
  EXPECT_EQ(Run("set k 0 0 1\r\nx\r\ntouch k 100\r\ngat 100 k\r\n"),
            "STORED\r\nTOUCHED\r\nVALUE k 0 1\r\nx\r\nEND\r\n");
  EXPECT_EQ(MaskCas(Run("gats 0 k\r\n")), "VALUE k 0 1 CAS\r\nx\r\nEND\r\n");
  // A negative exptime expires the item at once.
  EXPECT_EQ(Run("gat -1 k\r\n"), "VALUE k 0 1\r\nx\r\nEND\r\n");
  EXPECT_EQ(Run("get k\r\n"), "END\r\n");
  EXPECT_EQ(Run("set k 0 -1 1\r\nx\r\nget k\r\n"), "STORED\r\nEND\r\n");
}

TEST_F(TextTest, FlushAll) {
  EXPECT_EQ(Run("set k 0 0 1\r\nx\r\nflush_all\r\nget k\r\n"), "STORED\r\nOK\r\nEND\r\n");
  EXPECT_EQ(Run("flush_all 0\r\nflush_all noreply\r\nflush_all 0 noreply\r\nflush_all abc\r\n"
                "flush_all 0 2\r\nflush_all 1 2 3\r\nflush_all -1\r\n"),
            "OK\r\nCLIENT_ERROR invalid exptime argument\r\nOK\r\nERROR\r\nOK\r\n");
  EXPECT_EQ(stats_.cmd_flush.load(), 7u);
}

TEST_F(TextTest, FlushAllDisabled) {
  settings_.flush_enabled = false;
  EXPECT_EQ(Run("set k 0 0 1\r\nx\r\nflush_all\r\nflush_all noreply\r\nget k\r\n"),
            "STORED\r\nCLIENT_ERROR flush_all not allowed\r\nVALUE k 0 1\r\nx\r\nEND\r\n");
  EXPECT_EQ(stats_.cmd_flush.load(), 2u);
}

TEST_F(TextTest, VerbosityVersionQuit) {
  EXPECT_EQ(Run("verbosity\r\nverbosity 1\r\nverbosity abc\r\nverbosity 1 noreply\r\n"
                "verbosity 1 2 3\r\nverbosity 5 2\r\n"),
            "ERROR\r\nOK\r\nCLIENT_ERROR bad command line format\r\nERROR\r\nOK\r\n");
  EXPECT_EQ(control_.verbosity, 2);  // capped like memcached's MAX_VERBOSITY_LEVEL
  EXPECT_EQ(Run("version extra\r\n"), "VERSION 1.6.18\r\n");
  EXPECT_EQ(Run("quit extra\r\n"), "");
  EXPECT_TRUE(closed_);
}

TEST_F(TextTest, ShutdownDisabled) {
  EXPECT_EQ(Run("shutdown\r\n"), "ERROR: shutdown not enabled\r\n");
  EXPECT_EQ(control_.shutdowns, 0);
  EXPECT_FALSE(closed_);
}

TEST_F(TextTest, ShutdownEnabled) {
  settings_.shutdown_command = true;
  EXPECT_EQ(Run("shutdown now\r\n"), "CLIENT_ERROR invalid shutdown mode\r\n");
  EXPECT_FALSE(closed_);
  Run("shutdown graceful\r\n");
  EXPECT_EQ(control_.shutdowns, 1);
  EXPECT_TRUE(closed_);
}

TEST_F(TextTest, Stats) {
  EXPECT_EQ(Run("stats\r\n"), "STAT pid 42\r\nSTAT cmd_get 7\r\nEND\r\n");
  EXPECT_EQ(control_.last_group, "");
  EXPECT_EQ(Run("stats settings\r\n"), "STAT maxbytes 67108864\r\nEND\r\n");
  EXPECT_EQ(Run("stats sizes\r\n"), "STAT sizes_status disabled\r\nEND\r\n");
  EXPECT_EQ(Run("stats items x\r\n"), "END\r\n");
  EXPECT_EQ(control_.last_group, "items");
  EXPECT_EQ(Run("stats reset\r\nstats foo\r\nstats detail\r\nstats detail on\r\n"),
            "RESET\r\nERROR\r\nCLIENT_ERROR usage: stats detail on|off|dump\r\nOK\r\n");
  EXPECT_EQ(control_.resets, 1);
  EXPECT_EQ(Run("stats detail dump\r\nstats detail off\r\nstats cachedump\r\n"
                "stats cachedump a b\r\nstats cachedump 100 1\r\n"),
            "END\r\nOK\r\nCLIENT_ERROR bad command line\r\nCLIENT_ERROR bad command line format\r\n"
            "CLIENT_ERROR Illegal slab id\r\n");
}

TEST_F(TextTest, PipeliningYieldsAfterMaxRequests) {
  std::string in;
  std::string want;
  for (int i = 0; i < 50; ++i) {
    in += "version\r\n";
    want += "VERSION 1.6.18\r\n";
  }
  EXPECT_EQ(Run(in, 20), want);
  EXPECT_EQ(yields_, 2);
}

TEST_F(TextTest, BytewiseEqualsWhole) {
  const std::string script =
      "set a 1 0 3\r\nabc\r\nadd a 0 0 1\r\nx\r\nappend a 0 0 2\r\nde\r\nget a b\r\n"
      "incr a 1\r\nset n 0 0 1\r\n7\r\nincr n 3\r\ndecr n 20\r\ntouch a 0\r\n"
      "set k 0 0 3\r\nabcde\r\nset big 0 0 2000000 noreply\r\n" +
      std::string(2000002, 'z') + "delete a\r\nget a n\r\nbogus\r\nversion\r\n";
  std::string whole = Run(script);
  // A fresh store for the byte-wise run.
  Store other(StoreOptions());
  ThreadStats other_stats;
  WorkerContext ctx = ctx_;
  ctx.store = &other;
  ctx.stats = &other_stats;
  session_.ctx = &ctx;
  buf_.clear();
  std::string bytewise = RunBytewise(script);
  EXPECT_EQ(whole, bytewise);
  EXPECT_EQ(whole,
            "STORED\r\nNOT_STORED\r\nSTORED\r\nVALUE a 1 5\r\nabcde\r\nEND\r\n"
            "CLIENT_ERROR cannot increment or decrement non-numeric value\r\nSTORED\r\n10\r\n0\r\n"
            "TOUCHED\r\nCLIENT_ERROR bad data chunk\r\nERROR\r\nDELETED\r\n"
            "VALUE n 0 2\r\n0 \r\nEND\r\nERROR\r\nVERSION 1.6.18\r\n");
  session_.ctx = &ctx_;
}

TEST_F(TextTest, MetaCommandsAreHandedOver) {
  // The meta module answers "mn" with "MN" (memcached 1.6.18); unknown
  // two-letter m* commands are plain errors.
  EXPECT_EQ(Run("mn\r\nmz foo\r\n"), "MN\r\nERROR\r\n");
}

}  // namespace
}  // namespace ftm
