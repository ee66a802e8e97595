// The meta server's replacement command (replication/spawn.h): placeholder
// expansion with shell quoting, refusal of unknown placeholders, and a real
// /bin/sh child whose exit status is reaped.
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "replication/spawn.h"

namespace ftm::repl {
namespace {

SpawnVars vars() {
  SpawnVars v;
  v.node_id = 3;
  v.meta_addr = "127.0.0.1:11311";
  v.memcached_addr = "127.0.0.1:11213";
  v.fabric_addr = "127.0.0.1:40003";
  return v;
}

TEST(Spawn, PlaceholdersExpandQuoted) {
  auto r = expand_spawn_template("ftmemcached --meta %m --node-id %n -l %h -p %p # %a %f 100%%",
                                 vars());
  ASSERT_TRUE(r) << r.status().to_string();
  EXPECT_EQ(*r,
            "ftmemcached --meta '127.0.0.1:11311' --node-id 3 -l '127.0.0.1' -p '11213' "
            "# '127.0.0.1:11213' '127.0.0.1:40003' 100%");
}

TEST(Spawn, UnknownOrTrailingPercentIsRefused) {
  for (const char* bad : {"run %x", "run %", "%n %q"}) {
    auto r = expand_spawn_template(bad, vars());
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.status().code(), ClusterErrc::kInvalidArgument);
    EXPECT_NE(r.status().message().find("--spawn-cmd"), std::string::npos);
  }
}

// An address from a JOIN message cannot inject shell syntax.
TEST(Spawn, HostileAddressStaysOneWord) {
  SpawnVars v = vars();
  v.memcached_addr = "x'; touch /tmp/ftm-spawn-pwned; echo '";
  auto r = expand_spawn_template("printf '%%s\\n' %a", v);
  ASSERT_TRUE(r);
  EXPECT_EQ(shell_quote("a'b"), "'a'\\''b'");
  std::vector<std::string> lines;
  Spawner sp([&](const std::string& l) { lines.push_back(l); });
  const std::string out = testing::TempDir() + "spawn_out." + std::to_string(::getpid());
  auto pid = sp.run(*r + " > " + out, "test");
  ASSERT_TRUE(pid) << pid.status().to_string();
  for (int i = 0; i < 500 && sp.reap() > 0; i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::ifstream f(out);
  std::string got;
  std::getline(f, got);
  EXPECT_EQ(got, v.memcached_addr);
  EXPECT_NE(::access("/tmp/ftm-spawn-pwned", F_OK), 0);
  std::remove(out.c_str());
}

TEST(Spawn, ExitStatusIsReapedAndLogged) {
  std::vector<std::string> lines;
  Spawner sp([&](const std::string& l) { lines.push_back(l); });
  ASSERT_TRUE(sp.run("exit 3", "replacement for node 9"));
  ASSERT_TRUE(sp.run("kill -9 $$", "second"));
  size_t left = 2;
  for (int i = 0; i < 500 && left > 0; i++) {
    left = sp.reap();
    if (left) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(left, 0u);
  std::string all;
  for (auto& l : lines) all += l + "\n";
  EXPECT_NE(all.find("replacement for node 9: pid"), std::string::npos) << all;
  EXPECT_NE(all.find("exited 3"), std::string::npos) << all;
  EXPECT_NE(all.find("killed by signal 9"), std::string::npos) << all;
}

}  // namespace
}  // namespace ftm::repl
