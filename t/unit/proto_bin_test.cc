// Binary protocol frames through bin_process with a real Store, and the -Y
// text authentication through text_auth_process. Expected bytes come from
// memcached 1.6.18 (probed with a struct-based client).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "src/auth_file.h"
#include "src/clock.h"
#include "src/proto_bin.h"
#include "src/proto_bin_codec.h"
#include "src/sasl.h"
#include "src/session.h"

namespace ftm {
namespace {

class FakeServer : public ServerControl {
 public:
  bool collect_stats(std::string_view group, StatsSink& sink) override {
    if (group.empty()) {
      sink.add("pid", "1");
      sink.add("curr_items", "0");
      return true;
    }
    if (group == "settings") {
      sink.add("maxbytes", "67108864");
      return true;
    }
    if (group == "items" || group == "slabs" || group == "sizes") return true;
    return false;
  }
  void reset_stats() override { ++resets; }
  void set_verbosity(int) override {}
  void shutdown() override {}
  int resets = 0;
};

std::string frame(uint8_t op, std::string_view key = {}, std::string_view extras = {},
                  std::string_view value = {}, uint64_t cas = 0, uint32_t opaque = 0,
                  uint8_t magic = 0x80) {
  std::string f;
  f.push_back(static_cast<char>(magic));
  f.push_back(static_cast<char>(op));
  bin::append_be16(f, static_cast<uint16_t>(key.size()));
  f.push_back(static_cast<char>(extras.size()));
  f.push_back(0);
  bin::append_be16(f, 0);
  bin::append_be32(f, static_cast<uint32_t>(key.size() + extras.size() + value.size()));
  bin::append_be32(f, opaque);
  bin::append_be64(f, cas);
  f.append(extras);
  f.append(key);
  f.append(value);
  return f;
}

// A frame whose length fields are given explicitly (for malformed ones).
std::string raw_frame(uint8_t op, uint16_t keylen, uint8_t extlen, uint32_t bodylen,
                      std::string_view payload) {
  std::string f;
  f.push_back(static_cast<char>(0x80));
  f.push_back(static_cast<char>(op));
  bin::append_be16(f, keylen);
  f.push_back(static_cast<char>(extlen));
  f.push_back(0);
  bin::append_be16(f, 0);
  bin::append_be32(f, bodylen);
  bin::append_be32(f, 0);
  bin::append_be64(f, 0);
  f.append(payload);
  return f;
}

std::string set_extras(uint32_t flags, uint32_t exptime) {
  std::string e;
  bin::append_be32(e, flags);
  bin::append_be32(e, exptime);
  return e;
}

std::string arith_extras(uint64_t delta, uint64_t initial, uint32_t exptime) {
  std::string e;
  bin::append_be64(e, delta);
  bin::append_be64(e, initial);
  bin::append_be32(e, exptime);
  return e;
}

struct Response {
  uint8_t opcode = 0;
  uint16_t status = 0;
  std::string extras, key, value;
  uint32_t opaque = 0;
  uint64_t cas = 0;
};

std::vector<Response> parse(std::string_view out) {
  std::vector<Response> rs;
  while (out.size() >= bin::kHeaderLen) {
    EXPECT_EQ(static_cast<uint8_t>(out[0]), 0x81);
    Response r;
    r.opcode = static_cast<uint8_t>(out[1]);
    uint16_t kl = bin::load_be16(out.data() + 2);
    uint8_t el = static_cast<uint8_t>(out[4]);
    r.status = bin::load_be16(out.data() + 6);
    uint32_t bl = bin::load_be32(out.data() + 8);
    r.opaque = bin::load_be32(out.data() + 12);
    r.cas = bin::load_be64(out.data() + 16);
    EXPECT_GE(out.size(), bin::kHeaderLen + bl);
    std::string_view body = out.substr(bin::kHeaderLen, bl);
    r.extras = std::string(body.substr(0, el));
    r.key = std::string(body.substr(el, kl));
    r.value = std::string(body.substr(el + kl));
    rs.push_back(r);
    out.remove_prefix(bin::kHeaderLen + bl);
  }
  EXPECT_TRUE(out.empty());
  return rs;
}

class BinTest : public ::testing::Test {
 protected:
  void SetUp() override {
    clock::init();
    Store::Options o;
    o.sweeper = false;
    o.item_size_max = 1024;
    store_ = std::make_unique<Store>(o);
    ctx_.store = store_.get();
    ctx_.stats = &stats_;
    ctx_.settings = &settings_;
    ctx_.server = &server_;
    session_.ctx = &ctx_;
  }

  // Feeds `in` in one piece; returns the parsed responses.
  std::vector<Response> run(const std::string& in, ProtoResult* res = nullptr) {
    out_.clear();
    ProtoResult r = bin_process(session_, in, out_, 1000);
    if (res != nullptr) *res = r;
    return parse(out_);
  }

  Settings settings_;
  ThreadStats stats_;
  FakeServer server_;
  std::unique_ptr<Store> store_;
  WorkerContext ctx_;
  Session session_;
  std::string out_;
};

TEST_F(BinTest, SetGetRoundTripEchoesOpaqueAndCas) {
  auto rs = run(frame(bin::kSet, "k", set_extras(5, 0), "hello", 0, 3));
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].status, bin::kSuccess);
  EXPECT_EQ(rs[0].opaque, 3u);
  uint64_t cas = rs[0].cas;
  EXPECT_NE(cas, 0u);
  rs = run(frame(bin::kGet, "k", {}, {}, 0, 9));
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].status, bin::kSuccess);
  EXPECT_EQ(rs[0].extras, std::string("\0\0\0\5", 4));
  EXPECT_EQ(rs[0].key, "");
  EXPECT_EQ(rs[0].value, "hello");
  EXPECT_EQ(rs[0].opaque, 9u);
  EXPECT_EQ(rs[0].cas, cas);
  rs = run(frame(bin::kGetK, "k"));
  EXPECT_EQ(rs[0].key, "k");
  EXPECT_EQ(rs[0].value, "hello");
}

TEST_F(BinTest, MissesAndErrorTexts) {
  auto rs = run(frame(bin::kGet, "nope"));
  EXPECT_EQ(rs[0].status, bin::kKeyNotFound);
  EXPECT_EQ(rs[0].value, "Not found");
  rs = run(frame(bin::kGetK, "zz"));
  EXPECT_EQ(rs[0].status, bin::kKeyNotFound);
  EXPECT_EQ(rs[0].key, "zz");
  EXPECT_EQ(rs[0].value, "");
  rs = run(frame(bin::kReplace, "nope", set_extras(0, 0), "v"));
  EXPECT_EQ(rs[0].status, bin::kKeyNotFound);
  run(frame(bin::kSet, "k", set_extras(0, 0), "v"));
  rs = run(frame(bin::kAdd, "k", set_extras(0, 0), "v"));
  EXPECT_EQ(rs[0].status, bin::kKeyExists);
  EXPECT_EQ(rs[0].value, "Data exists for key.");
  EXPECT_EQ(rs[0].cas, 0u);
  rs = run(frame(bin::kAppend, "nope", {}, "v"));
  EXPECT_EQ(rs[0].status, bin::kNotStored);
  EXPECT_EQ(rs[0].value, "Not stored.");
}

TEST_F(BinTest, CasChecks) {
  auto rs = run(frame(bin::kSet, "k", set_extras(0, 0), "a"));
  uint64_t cas = rs[0].cas;
  rs = run(frame(bin::kSet, "k", set_extras(0, 0), "b", cas + 100));
  EXPECT_EQ(rs[0].status, bin::kKeyExists);
  rs = run(frame(bin::kSet, "k", set_extras(0, 0), "b", cas));
  EXPECT_EQ(rs[0].status, bin::kSuccess);
  // A cas on a missing key: not found, for add too (a cas turns add into cas).
  rs = run(frame(bin::kAdd, "missing", set_extras(0, 0), "b", 12345));
  EXPECT_EQ(rs[0].status, bin::kKeyNotFound);
  rs = run(frame(bin::kDelete, "k", {}, {}, 1));
  EXPECT_EQ(rs[0].status, bin::kKeyExists);
  rs = run(frame(bin::kGet, "k"));
  rs = run(frame(bin::kDelete, "k", {}, {}, rs[0].cas));
  EXPECT_EQ(rs[0].status, bin::kSuccess);
}

TEST_F(BinTest, IncrDecrWithInitialAndNoCreate) {
  auto rs = run(frame(bin::kIncrement, "n", arith_extras(1, 10, 0xffffffff)));
  EXPECT_EQ(rs[0].status, bin::kKeyNotFound);
  rs = run(frame(bin::kIncrement, "n", arith_extras(1, 10, 0)));
  EXPECT_EQ(rs[0].status, bin::kSuccess);
  EXPECT_EQ(bin::load_be64(rs[0].value.data()), 10u);
  rs = run(frame(bin::kDecrement, "n", arith_extras(3, 10, 0)));
  EXPECT_EQ(bin::load_be64(rs[0].value.data()), 7u);
  rs = run(frame(bin::kGet, "n"));
  EXPECT_EQ(rs[0].value, "7 ");  // shrunk in place, padded, as memcached
  rs = run(frame(bin::kIncrement, "n", arith_extras(1, 0, 0), {}, rs[0].cas + 1));
  EXPECT_EQ(rs[0].status, bin::kKeyExists);
  run(frame(bin::kSet, "s", set_extras(0, 0), "abc"));
  rs = run(frame(bin::kIncrement, "s", arith_extras(1, 0, 0)));
  EXPECT_EQ(rs[0].status, bin::kDeltaBadValue);
  EXPECT_EQ(rs[0].value, "Non-numeric server-side value for incr or decr");
}

TEST_F(BinTest, QuietVariants) {
  std::string in = frame(bin::kSetQ, "q", set_extras(1, 0), "v") + frame(bin::kGetQ, "q") +
                   frame(bin::kGetKQ, "qq") + frame(bin::kDeleteQ, "nothere") +
                   frame(bin::kAddQ, "q", set_extras(0, 0), "v") + frame(bin::kFlushQ) +
                   frame(bin::kGetQ, "q") + frame(bin::kNoop, {}, {}, {}, 0, 77);
  auto rs = run(in);
  ASSERT_EQ(rs.size(), 4u);
  EXPECT_EQ(rs[0].opcode, bin::kGetQ);  // a quiet hit answers
  EXPECT_EQ(rs[0].value, "v");
  EXPECT_EQ(rs[1].opcode, bin::kDeleteQ);  // quiet errors still answer
  EXPECT_EQ(rs[1].status, bin::kKeyNotFound);
  EXPECT_EQ(rs[2].opcode, bin::kAddQ);
  EXPECT_EQ(rs[2].status, bin::kKeyExists);
  EXPECT_EQ(rs[3].opcode, bin::kNoop);
  EXPECT_EQ(rs[3].opaque, 77u);
}

TEST_F(BinTest, TouchAndGat) {
  run(frame(bin::kSet, "k", set_extras(5, 0), "hello"));
  std::string ttl;
  bin::append_be32(ttl, 100);
  auto rs = run(frame(bin::kTouch, "k", ttl));
  EXPECT_EQ(rs[0].status, bin::kSuccess);
  EXPECT_EQ(rs[0].extras.size(), 4u);
  EXPECT_EQ(rs[0].value, "");
  rs = run(frame(bin::kGatK, "k", ttl));
  EXPECT_EQ(rs[0].key, "k");
  EXPECT_EQ(rs[0].value, "hello");
  rs = run(frame(bin::kGatKQ, "kz", ttl) + frame(bin::kNoop));
  ASSERT_EQ(rs.size(), 1u);
  rs = run(frame(bin::kTouch, "kz", ttl));
  EXPECT_EQ(rs[0].value, "Not found");
}

TEST_F(BinTest, AppendPrependKeepFlags) {
  run(frame(bin::kSet, "q", set_extras(1, 0), "v"));
  auto rs = run(frame(bin::kAppend, "q", {}, "APP") + frame(bin::kPrepend, "q", {}, "PRE") +
                frame(bin::kGet, "q"));
  ASSERT_EQ(rs.size(), 3u);
  EXPECT_EQ(rs[2].value, "PREvAPP");
  EXPECT_EQ(rs[2].extras, std::string("\0\0\0\1", 4));
}

TEST_F(BinTest, VersionNoopQuitFlushStat) {
  auto rs = run(frame(bin::kVersion));
  EXPECT_EQ(rs[0].value, kMemcachedCompatVersion);
  ProtoResult r;
  rs = run(frame(bin::kQuit, {}, {}, {}, 0, 4) + frame(bin::kNoop), &r);
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_TRUE(r.close);
  rs = run(frame(bin::kQuitQ), &r);
  EXPECT_TRUE(rs.empty());
  EXPECT_TRUE(r.close);
  run(frame(bin::kSet, "k", set_extras(0, 0), "v"));
  rs = run(frame(bin::kFlush) + frame(bin::kGet, "k"));
  EXPECT_EQ(rs[1].status, bin::kKeyNotFound);
  rs = run(frame(bin::kStat, {}, {}, {}, 0, 5));
  ASSERT_EQ(rs.size(), 3u);
  EXPECT_EQ(rs[0].key, "pid");
  EXPECT_EQ(rs[0].value, "1");
  EXPECT_EQ(rs[2].key, "");
  EXPECT_EQ(rs[2].opaque, 5u);
  rs = run(frame(bin::kStat, "nope"));
  EXPECT_EQ(rs[0].status, bin::kKeyNotFound);
  rs = run(frame(bin::kStat, "resetfoo"));
  EXPECT_EQ(server_.resets, 1);
  rs = run(frame(bin::kStat, "settings"));
  EXPECT_EQ(rs.size(), 2u);
}

TEST_F(BinTest, FlushDisabledIsAuthError) {
  settings_.flush_enabled = false;
  auto rs = run(frame(bin::kFlush));
  EXPECT_EQ(rs[0].status, bin::kAuthError);
}

TEST_F(BinTest, MalformedFrames) {
  ProtoResult r;
  // Bad magic: closed, no answer.
  auto rs = run(frame(bin::kGet, "k", {}, {}, 0, 0, 0x81), &r);
  EXPECT_TRUE(rs.empty());
  EXPECT_TRUE(r.close);
  // keylen > bodylen: unknown command, closed.
  rs = run(raw_frame(bin::kGet, 1, 0, 0, "k"), &r);
  EXPECT_EQ(rs[0].status, bin::kUnknownCommand);
  EXPECT_TRUE(r.close);
  // Extras where none belong: invalid arguments, closed.
  rs = run(frame(bin::kGet, "k", "1234"), &r);
  EXPECT_EQ(rs[0].status, bin::kInvalidArgs);
  EXPECT_EQ(rs[0].value, "Invalid arguments");
  EXPECT_TRUE(r.close);
  rs = run(frame(bin::kGet, std::string(251, 'k')), &r);
  EXPECT_EQ(rs[0].status, bin::kInvalidArgs);
  EXPECT_TRUE(r.close);
  rs = run(frame(bin::kGet, std::string(250, 'k')), &r);
  EXPECT_EQ(rs[0].status, bin::kKeyNotFound);
  EXPECT_FALSE(r.close);
  rs = run(frame(bin::kVersion, {}, {}, "x"), &r);
  EXPECT_EQ(rs[0].status, bin::kInvalidArgs);
  EXPECT_TRUE(r.close);
}

TEST_F(BinTest, BadMagicDropsRepliesMemcachedHadNotWritten) {
  // memcached batches success replies and writes them out at an error reply,
  // a NoOp or the end of its input; a bad magic byte closes before that.
  ProtoResult r;
  std::string bad = frame(bin::kNoop, {}, {}, {}, 0, 0, 0x00);
  auto rs = run(frame(bin::kSet, "k", set_extras(0, 0), "v") + bad, &r);
  EXPECT_TRUE(rs.empty());
  EXPECT_TRUE(r.close);
  rs = run(frame(bin::kSet, "k", set_extras(0, 0), "v") + frame(bin::kGet, "nope") +
               frame(bin::kSet, "k2", set_extras(0, 0), "v") + bad,
           &r);
  ASSERT_EQ(rs.size(), 2u);  // the set and the miss, not the second set
  EXPECT_EQ(rs[1].status, bin::kKeyNotFound);
  rs = run(frame(bin::kGet, "k") + frame(bin::kNoop) + bad, &r);
  EXPECT_EQ(rs.size(), 2u);
}

TEST_F(BinTest, UnknownOpcodeSwallowsBodyLength) {
  // memcached swallows bodylen bytes after the key: here the value "xyz" and
  // the first 3 bytes of the next frame, which then never completes.
  ProtoResult r;
  std::string in = frame(0x99, "abc", {}, "xyz") + frame(bin::kNoop);
  auto rs = run(in, &r);
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].status, bin::kUnknownCommand);
  EXPECT_EQ(rs[0].value, "Unknown command");
  // 27 bytes of the first frame, 6 swallowed; 21 bytes wait as a header.
  EXPECT_EQ(r.consumed, 33u);
  EXPECT_EQ(r.need, 33u + 24u);
  // Verbosity is unknown to memcached 1.6.18 as well.
  session_.swallow = 0;
  std::string v;
  bin::append_be32(v, 1);
  rs = run(frame(bin::kVerbosity, {}, v), &r);
  EXPECT_EQ(rs[0].status, bin::kUnknownCommand);
  EXPECT_EQ(session_.swallow, 4u);
}

TEST_F(BinTest, TooLargeValueIsSwallowedAndOldValueRemoved) {
  run(frame(bin::kSet, "big", set_extras(0, 0), "small"));
  std::string value(4000, 'x');
  std::string in = frame(bin::kSet, "big", set_extras(0, 0), value) + frame(bin::kGet, "big");
  // Deliver the header only: E2BIG is answered before the value arrives.
  ProtoResult r;
  auto rs = run(in.substr(0, 40), &r);
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].status, bin::kTooBig);
  EXPECT_EQ(rs[0].value, "Too large.");
  EXPECT_EQ(r.consumed, 40u);
  rs = run(in.substr(40), &r);
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].status, bin::kKeyNotFound);
}

TEST_F(BinTest, PartialFramesAskForMore) {
  std::string in = frame(bin::kSet, "k", set_extras(0, 0), "hello");
  for (size_t cut = 0; cut < in.size(); ++cut) {
    ProtoResult r;
    auto rs = run(in.substr(0, cut), &r);
    EXPECT_TRUE(rs.empty());
    EXPECT_EQ(r.consumed, 0u);
    if (cut > 0) {
      EXPECT_GT(r.need, cut);
    }
  }
  ProtoResult r;
  auto rs = run(in, &r);
  EXPECT_EQ(r.consumed, in.size());
  EXPECT_EQ(rs.size(), 1u);
}

TEST_F(BinTest, MaxRequestsYields) {
  std::string in = frame(bin::kNoop) + frame(bin::kNoop) + frame(bin::kNoop);
  out_.clear();
  ProtoResult r = bin_process(session_, in, out_, 2);
  EXPECT_TRUE(r.yielded);
  EXPECT_EQ(r.consumed, 48u);
}

TEST_F(BinTest, SaslOpcodesWithoutSaslAreUnknown) {
  auto rs = run(frame(bin::kSaslListMechs));
  EXPECT_EQ(rs[0].status, bin::kUnknownCommand);
  rs = run(frame(bin::kSaslAuth, "PLAIN", {}, std::string("\0a\0b", 4)) + frame(bin::kNoop));
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_EQ(rs[1].opcode, bin::kNoop);
}

TEST_F(BinTest, SaslRequiredRefusesCommandsBeforeAuth) {
  settings_.sasl = true;
  ProtoResult r;
  auto rs = run(frame(bin::kVersion));
  EXPECT_EQ(rs[0].status, bin::kSuccess);
  rs = run(frame(bin::kGet, "a"), &r);
  EXPECT_EQ(rs[0].status, bin::kAuthError);
  EXPECT_EQ(rs[0].value, "Auth failure.");
  EXPECT_TRUE(r.close);
  rs = run(frame(bin::kNoop), &r);
  EXPECT_EQ(rs[0].status, bin::kAuthError);
  // Without sasl::init() no mechanism is available: refused, not crashed.
  rs = run(frame(bin::kSaslAuth, "PLAIN", {}, std::string("\0a\0b", 4)), &r);
  EXPECT_EQ(rs[0].status, bin::kAuthError);
  EXPECT_FALSE(r.close);
  std::string long_mech = frame(bin::kSaslAuth, std::string(33, 'P'), {}, "xy");
  rs = run(long_mech.substr(0, long_mech.size() - 2), &r);
  EXPECT_EQ(rs[0].status, bin::kInvalidArgs);
  EXPECT_FALSE(r.close);
  EXPECT_EQ(session_.swallow, 2u);  // the value is discarded when it comes
  session_.swallow = 0;
  session_.authenticated = true;
  rs = run(frame(bin::kGet, "a"), &r);
  EXPECT_EQ(rs[0].status, bin::kKeyNotFound);
}

// Real Cyrus SASL, PLAIN checked against a MEMCACHED_SASL_PWDB file. Cyrus
// is initialised once per process: this is the only test that does it.
TEST_F(BinTest, SaslPlainAgainstPwdb) {
  char dir[] = "/tmp/ftm_saslXXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string conf = std::string(dir) + "/memcached.conf";
  std::string pwdb = std::string(dir) + "/pwdb";
  FILE* f = fopen(conf.c_str(), "w");
  ASSERT_NE(f, nullptr);
  fputs("mech_list: plain\n", f);
  fclose(f);
  f = fopen(pwdb.c_str(), "w");
  ASSERT_NE(f, nullptr);
  fputs("bob:hunter2\n", f);
  fclose(f);
  setenv("SASL_CONF_PATH", dir, 1);
  setenv("MEMCACHED_SASL_PWDB", pwdb.c_str(), 1);
  std::string err;
  ASSERT_TRUE(sasl::init(0, &err)) << err;
  settings_.sasl = true;

  auto rs = run(frame(bin::kSaslListMechs));
  EXPECT_EQ(rs[0].value, "PLAIN");
  rs = run(frame(bin::kSaslAuth, "PLAIN", {}, std::string("\0bob\0nope", 9)));
  EXPECT_EQ(rs[0].status, bin::kAuthError);
  EXPECT_FALSE(session_.authenticated);
  EXPECT_EQ(stats_.auth_errors.load(), 1u);
  // No initial response: the server asks for it, then a step completes it.
  rs = run(frame(bin::kSaslAuth, "PLAIN"));
  EXPECT_EQ(rs[0].status, bin::kAuthContinue);
  rs = run(frame(bin::kSaslStep, "PLAIN", {}, std::string("\0bob\0hunter2", 12)) +
           frame(bin::kGet, "k"));
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_EQ(rs[0].status, bin::kSuccess);
  EXPECT_EQ(rs[0].value, "Authenticated");
  EXPECT_EQ(rs[1].status, bin::kKeyNotFound);
  EXPECT_TRUE(session_.authenticated);
  EXPECT_EQ(stats_.auth_cmds.load(), 2u);

  unlink(conf.c_str());
  unlink(pwdb.c_str());
  rmdir(dir);
}

// ----- -Y text authentication -----

class AuthFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ftm_authXXXXXX";
    int fd = mkstemp(tmpl);
    ASSERT_GE(fd, 0);
    path_ = tmpl;
    std::string body = "alice:secret\nbob:pw2\n";
    ASSERT_EQ(write(fd, body.data(), body.size()), static_cast<ssize_t>(body.size()));
    close(fd);
    std::string err;
    ASSERT_TRUE(auth_file_load(path_, &err)) << err;
    ctx_.stats = &stats_;
    session_.ctx = &ctx_;
  }
  void TearDown() override { unlink(path_.c_str()); }

  std::string run(std::string_view in, ProtoResult* res = nullptr) {
    std::string out;
    ProtoResult r = text_auth_process(session_, in, out);
    if (res != nullptr) *res = r;
    return out;
  }

  std::string path_;
  ThreadStats stats_;
  WorkerContext ctx_;
  Session session_;
};

TEST_F(AuthFileTest, RefusesUntilAuthenticated) {
  EXPECT_EQ(run("get foo\r\n"), "CLIENT_ERROR unauthenticated\r\n");
  EXPECT_EQ(run("set x 0 0 10\r\nalice nope\r\n"), "CLIENT_ERROR authentication failure\r\n");
  EXPECT_EQ(stats_.auth_errors.load(), 1u);
  EXPECT_FALSE(session_.authenticated);
  ProtoResult r;
  std::string in = "set x 0 0 12\r\nalice secret\r\nget x\r\n";
  EXPECT_EQ(run(in, &r), "STORED\r\n");
  EXPECT_TRUE(session_.authenticated);
  EXPECT_EQ(r.consumed, in.size() - 7);  // "get x" is left for text_process
  EXPECT_EQ(stats_.auth_cmds.load(), 2u);
}

TEST_F(AuthFileTest, MemcachedErrorTexts) {
  EXPECT_EQ(run("set x 0 0 5\r\nalice\r\n"), "CLIENT_ERROR bad authentication token format\r\n");
  EXPECT_EQ(run("set x 0 0 7\r\nbob pw2XY"), "CLIENT_ERROR bad command line termination\r\n");
  EXPECT_EQ(run("set x 0 0 abc\r\n"), "CLIENT_ERROR unauthenticated\r\n");
  EXPECT_EQ(run("set x 0\r\n"), "CLIENT_ERROR unauthenticated\r\n");
  EXPECT_EQ(run("set x 0 0 11\r\nalice secre\r\n"), "CLIENT_ERROR authentication failure\r\n");
  EXPECT_EQ(run("set foo 5 5 9\nbob pw2 x\r\n"), "STORED\r\n");  // extra tokens ignored
}

TEST_F(AuthFileTest, PartialInputWaits) {
  ProtoResult r;
  EXPECT_EQ(run("set x 0 0 12\r\nali", &r), "");
  EXPECT_EQ(r.consumed, 0u);
  EXPECT_EQ(r.need, 14u + 14u);
  EXPECT_EQ(run(std::string(100, 'x'), &r), "");
  EXPECT_FALSE(r.close);
  run(std::string(3000, 'x'), &r);
  EXPECT_TRUE(r.close);
}

TEST_F(AuthFileTest, MalformedFileIsRefused) {
  char tmpl[] = "/tmp/ftm_authXXXXXX";
  int fd = mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "nocolon\n", 8), 8);
  close(fd);
  std::string err;
  EXPECT_FALSE(auth_file_load(tmpl, &err));
  EXPECT_NE(err.find("malformed entry"), std::string::npos);
  unlink(tmpl);
  EXPECT_FALSE(auth_file_load("/nonexistent/file", &err));
  EXPECT_NE(err.find("Could not open authfile"), std::string::npos);
}

}  // namespace
}  // namespace ftm
