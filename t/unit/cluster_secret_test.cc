// The cluster secret (rdma/cluster_secret.h): loading the file, the proofs,
// and the connection handshake over the tcp provider: the right secret
// connects; a wrong or missing secret is refused on both sides; a replayed
// proof is refused; requested memory region keys are random.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "rdma/cluster_secret.h"
#include "rdma/connection.h"
#include "rdma/domain_internal.h"
#include "rdma/fabric_domain.h"
#include "rdma/listener.h"
#include "rdma/memory_region.h"

namespace ftm::rdma {
namespace {

using std::chrono::milliseconds;

// A file under a fresh temporary directory, removed with it.
class TempFile {
 public:
  TempFile(const std::string& content, mode_t mode) {
    char tmpl[] = "/tmp/ftm-secret-XXXXXX";
    dir_ = mkdtemp(tmpl);
    path_ = dir_ + "/secret";
    FILE* f = std::fopen(path_.c_str(), "w");
    std::fwrite(content.data(), 1, content.size(), f);
    std::fclose(f);
    chmod(path_.c_str(), mode);
  }
  ~TempFile() {
    unlink(path_.c_str());
    rmdir(dir_.c_str());
  }
  const std::string& path() const { return path_; }

 private:
  std::string dir_, path_;
};

TEST(ClusterSecretFile, LoadsAndStripsOneTrailingNewline) {
  TempFile f("s3cret value\n", 0600);
  auto s = load_cluster_secret(f.path());
  ASSERT_TRUE(s) << s.status().to_string();
  EXPECT_EQ(*s, "s3cret value");
  TempFile crlf("abc\r\n", 0400);
  auto c = load_cluster_secret(crlf.path());
  ASSERT_TRUE(c) << c.status().to_string();
  EXPECT_EQ(*c, "abc");
}

TEST(ClusterSecretFile, RefusesMissingEmptyAndOpenFiles) {
  auto missing = load_cluster_secret("/nonexistent/ftm-secret");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.status().message().find("No such file"), std::string::npos)
      << missing.status().to_string();

  TempFile empty("\n", 0600);
  auto e = load_cluster_secret(empty.path());
  ASSERT_FALSE(e);
  EXPECT_NE(e.status().message().find("empty"), std::string::npos)
      << e.status().to_string();

  for (mode_t mode : {0640, 0604, 0660, 0644}) {
    TempFile open_file("secret", mode);
    auto o = load_cluster_secret(open_file.path());
    ASSERT_FALSE(o) << "mode " << std::oct << mode;
    EXPECT_NE(o.status().message().find("too open"), std::string::npos)
        << o.status().to_string();
  }
  auto dir = load_cluster_secret("/tmp");
  ASSERT_FALSE(dir);
  EXPECT_NE(dir.status().message().find("not a regular file"),
            std::string::npos)
      << dir.status().to_string();
}

TEST(ClusterSecretProof, BoundToSecretRoleNoncesAndIdentities) {
  std::string nc(kNonceSize, 'c'), na(kNonceSize, 'a');
  std::string p = handshake_proof("k", HandshakeRole::kConnector, nc, na, "x", "y");
  ASSERT_EQ(p.size(), kProofSize);
  EXPECT_TRUE(proof_matches(
      p, handshake_proof("k", HandshakeRole::kConnector, nc, na, "x", "y")));
  EXPECT_FALSE(proof_matches(
      p, handshake_proof("k2", HandshakeRole::kConnector, nc, na, "x", "y")));
  EXPECT_FALSE(proof_matches(
      p, handshake_proof("k", HandshakeRole::kAcceptor, nc, na, "x", "y")));
  std::string na2 = na;
  na2[5] ^= 1;
  EXPECT_FALSE(proof_matches(
      p, handshake_proof("k", HandshakeRole::kConnector, nc, na2, "x", "y")));
  EXPECT_FALSE(proof_matches(
      p, handshake_proof("k", HandshakeRole::kConnector, nc, na, "xy", "")));
  EXPECT_FALSE(proof_matches(p.substr(0, 31), p.substr(0, 31)));
  EXPECT_FALSE(proof_matches("", ""));
}

FabricOptions options(const std::string& id, const std::string& secret) {
  FabricOptions o;
  o.provider = ProviderChoice::kTcp;
  o.local_addr = "127.0.0.1";
  o.identity = id;
  o.cluster_secret = secret;
  o.log = [](std::string_view) {};
  // Refusals below wait for a proof that never comes: keep that short, but
  // long enough for a loaded 2-core machine to finish an honest handshake.
  o.connect_timeout = milliseconds(3000);
  return o;
}

struct Attempt {
  Status connected;  // the connector's result
  Status accepted;   // the listener's result
  std::unique_ptr<Connection> out, in;
};

// One connection attempt from `a` to `b`'s listener; accept waits `wait`.
Attempt attempt(Fabric& a, Listener& l, milliseconds wait = milliseconds(5000)) {
  Attempt r;
  std::thread t([&] {
    auto c = l.accept(wait);
    if (c)
      r.in = std::move(*c);
    else
      r.accepted = c.status();
  });
  auto c = a.connect("127.0.0.1", l.port());
  t.join();
  if (c)
    r.out = std::move(*c);
  else
    r.connected = c.status();
  return r;
}

class HandshakeTest : public ::testing::Test {
 protected:
  void Open(const std::string& client_secret, const std::string& server_secret) {
    auto a = Fabric::open(options("client", client_secret));
    ASSERT_TRUE(a) << a.status().to_string();
    a_ = std::move(*a);
    auto b = Fabric::open(options("server", server_secret));
    ASSERT_TRUE(b) << b.status().to_string();
    b_ = std::move(*b);
    auto l = b_->listen("127.0.0.1", 0);
    ASSERT_TRUE(l) << l.status().to_string();
    l_ = std::move(*l);
  }

  // An honest client (right secret) still gets in after a refusal, and
  // its connection carries messages both ways.
  void ExpectServerStillServes() {
    auto good = Fabric::open(options("good-client", "the secret"));
    ASSERT_TRUE(good) << good.status().to_string();
    Attempt r = attempt(**good, *l_);
    ASSERT_TRUE(r.out && r.in) << r.connected.to_string() << " / "
                               << r.accepted.to_string();
    std::vector<std::byte> sm(8, std::byte{7}), rm(8);
    auto smr = (*good)->register_memory(sm, false, false);
    auto rmr = b_->register_memory(rm, false, false);
    ASSERT_TRUE(smr && rmr);
    Op recv = r.in->recv(**rmr, 0, 8, milliseconds(5000));
    ASSERT_TRUE(r.out->send(**smr, 0, 8).wait());
    ASSERT_TRUE(recv.wait());
    EXPECT_EQ(rm[3], std::byte{7});
  }

  std::unique_ptr<Fabric> a_, b_;
  std::unique_ptr<Listener> l_;
};

TEST_F(HandshakeTest, RightSecretConnects) {
  Open("the secret", "the secret");
  Attempt r = attempt(*a_, *l_);
  ASSERT_TRUE(r.out) << r.connected.to_string();
  ASSERT_TRUE(r.in) << r.accepted.to_string();
  EXPECT_EQ(r.out->peer_identity(), "server");
  EXPECT_EQ(r.in->peer_identity(), "client");
  EXPECT_TRUE(r.out->status());
  EXPECT_TRUE(r.in->status());
  ExpectServerStillServes();
}

TEST_F(HandshakeTest, WrongSecretRefusedOnBothSides) {
  Open("a guess", "the secret");
  Attempt r = attempt(*a_, *l_, milliseconds(4000));
  EXPECT_FALSE(r.out);
  // The listener's proof fails the connector's check; the listener may
  // also have torn the connection down (seen first as kPeerLost).
  EXPECT_TRUE(r.connected.code() == Code::kAuthFailed ||
              r.connected.code() == Code::kPeerLost)
      << r.connected.to_string();
  EXPECT_FALSE(r.in);
  EXPECT_EQ(r.accepted.code(), Code::kAuthFailed) << r.accepted.to_string();
  EXPECT_NE(r.accepted.message().find("wrong proof"), std::string::npos)
      << r.accepted.to_string();
  ExpectServerStillServes();
}

TEST_F(HandshakeTest, ConnectorWithoutSecretRejectedBeforeAnEndpoint) {
  Open("", "the secret");
  Attempt r = attempt(*a_, *l_, milliseconds(1500));
  EXPECT_FALSE(r.out);
  EXPECT_NE(r.connected.code(), Code::kOk);
  // The request was rejected by the listener's progress thread: accept()
  // never saw it.
  EXPECT_FALSE(r.in);
  EXPECT_EQ(r.accepted.code(), Code::kTimeout) << r.accepted.to_string();
  ExpectServerStillServes();
}

TEST_F(HandshakeTest, ListenerWithoutSecretIsRefusedByTheConnector) {
  Open("the secret", "");
  Attempt r = attempt(*a_, *l_);
  EXPECT_FALSE(r.out);
  EXPECT_EQ(r.connected.code(), Code::kAuthFailed) << r.connected.to_string();
  EXPECT_NE(r.connected.message().find("without --cluster-secret-file"),
            std::string::npos)
      << r.connected.to_string();
}

// A rogue that recorded an honest connector's proof sends it on a new
// connection: the listener's fresh nonce makes it worthless.
std::atomic<int> g_mode{0};  // 1: record, 2: replay
std::string g_recorded;
void record_or_replay(HandshakeRole role, std::string* proof) {
  if (role != HandshakeRole::kConnector) return;
  if (g_mode == 1) g_recorded = *proof;
  if (g_mode == 2) *proof = g_recorded;
}

TEST_F(HandshakeTest, ReplayedProofRefused) {
  Open("the secret", "the secret");
  detail::proof_hook = record_or_replay;
  g_mode = 1;
  Attempt first = attempt(*a_, *l_);
  ASSERT_TRUE(first.out && first.in) << first.connected.to_string();
  ASSERT_EQ(g_recorded.size(), kProofSize);
  g_mode = 2;
  Attempt replay = attempt(*a_, *l_, milliseconds(4000));
  detail::proof_hook = nullptr;
  g_mode = 0;
  EXPECT_FALSE(replay.in);
  EXPECT_EQ(replay.accepted.code(), Code::kAuthFailed)
      << replay.accepted.to_string();
  // The connector's own check passed (the listener is honest), but the
  // listener drops the connection: it is unusable at once or soon after.
  if (replay.out) {
    std::vector<std::byte> m(8);
    auto mr = a_->register_memory(m, false, false);
    ASSERT_TRUE(mr);
    Status st = Status::ok();
    for (int i = 0; i < 50 && st; i++) {
      st = replay.out->send(**mr, 0, 8, milliseconds(1000)).wait();
      if (st) std::this_thread::sleep_for(milliseconds(20));
    }
    EXPECT_FALSE(st) << "the listener kept a connection whose proof was replayed";
  }
  ExpectServerStillServes();
}

TEST(MemoryRegionKeys, RequestedKeysAreRandomNotSequential) {
  auto f = Fabric::open(options("keys", ""));
  ASSERT_TRUE(f) << f.status().to_string();
  std::vector<std::vector<std::byte>> mem(16, std::vector<std::byte>(64));
  std::vector<std::unique_ptr<MemoryRegion>> mrs;
  std::vector<uint64_t> keys;
  for (auto& m : mem) {
    auto r = (*f)->register_memory(m, true, true);
    ASSERT_TRUE(r) << r.status().to_string();
    keys.push_back((*r)->key());
    mrs.push_back(std::move(*r));
  }
  if ((*f)->describe().find("FI_MR_PROV_KEY") != std::string::npos)
    GTEST_SKIP() << "provider keys: the provider chooses them";
  // Sequential (or nearly) keys would let a peer guess one region's key
  // from another's. 16 random 64-bit keys are 2^-40 likely to come within
  // 2^20 of each other.
  for (size_t i = 0; i < keys.size(); i++)
    for (size_t j = i + 1; j < keys.size(); j++) {
      uint64_t d = keys[i] > keys[j] ? keys[i] - keys[j] : keys[j] - keys[i];
      EXPECT_GT(d, uint64_t(1) << 20) << "keys " << keys[i] << " and " << keys[j];
    }
  // revoke() draws a fresh random key too.
  uint64_t before = mrs[0]->key();
  ASSERT_TRUE(mrs[0]->revoke());
  uint64_t after = mrs[0]->key();
  uint64_t d = before > after ? before - after : after - before;
  EXPECT_GT(d, uint64_t(1) << 20);
}

}  // namespace
}  // namespace ftm::rdma

namespace ftm::rdma {
namespace {

// Random keys use all 64 bits: every one of them must work for one-sided
// writes and reads (a provider that mangled high bits would fail some).
TEST(MemoryRegionKeys, EveryRandomKeyWorksForWriteAndRead) {
  auto a = Fabric::open(options("writer", ""));
  auto b = Fabric::open(options("target", ""));
  ASSERT_TRUE(a && b);
  auto l = (*b)->listen("127.0.0.1", 0);
  ASSERT_TRUE(l);
  Attempt r = attempt(**a, **l);
  ASSERT_TRUE(r.out && r.in) << r.connected.to_string();
  std::vector<std::byte> src(64, std::byte{9}), back(64);
  auto smr = (*a)->register_memory(src, false, false);
  auto bmr = (*a)->register_memory(back, false, false);
  ASSERT_TRUE(smr && bmr);
  int high_bit = 0;
  for (int i = 0; i < 64; i++) {
    std::vector<std::byte> mem(64);
    auto t = (*b)->register_memory(mem, true, true);
    ASSERT_TRUE(t);
    uint64_t key = (*t)->key();
    high_bit += key >> 63;
    RegionDescriptor d = (*t)->descriptor();
    ASSERT_TRUE(r.out->write_sync(**smr, 0, d, 0, 64)) << "key " << key;
    ASSERT_TRUE(r.out->read_sync(**bmr, 0, d, 0, 64)) << "key " << key;
    EXPECT_EQ(mem[10], std::byte{9});
  }
  EXPECT_GT(high_bit, 0) << "no key with the top bit set in 64 draws";
}

}  // namespace
}  // namespace ftm::rdma

namespace ftm::rdma {
namespace {

// verbs carries little private data: the identity is cut, never the nonce,
// and the side that cut it proves with the identity as sent.
TEST(ClusterSecretPrivateData, IdentityIsCutToFitNonceKeptWhole) {
  std::string nonce(kNonceSize, '\x7f'), sent, id, got_nonce;
  std::string longid(80, 'i');
  auto v = detail::encode_identity(longid, nonce, 52, &sent);
  EXPECT_EQ(v.size(), 52u);
  EXPECT_EQ(sent, longid.substr(0, 52 - 6 - 4 - kNonceSize));
  ASSERT_TRUE(detail::decode_identity(v.data(), v.size(), &id, &got_nonce));
  EXPECT_EQ(id, sent);
  EXPECT_EQ(got_nonce, nonce);
  // Without a nonce (no secret) and room to spare: unchanged.
  auto w = detail::encode_identity("short", "", 52, &sent);
  ASSERT_TRUE(detail::decode_identity(w.data(), w.size(), &id, &got_nonce));
  EXPECT_EQ(id, "short");
  EXPECT_TRUE(got_nonce.empty());
}

}  // namespace
}  // namespace ftm::rdma
