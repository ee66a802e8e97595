# t/: GoogleTest unit tests and the pytest suites. `make check` runs them all.
GTEST_FLAGS = $(GTEST_CFLAGS)
GTEST_LINK = $(GTEST_LIBS) -lpthread

check_PROGRAMS += t/unit_store
t_unit_store_SOURCES = t/unit/store_test.cc t/unit/execute_test.cc t/unit/store_effect_test.cc
t_unit_store_CPPFLAGS = $(AM_CPPFLAGS) $(GTEST_FLAGS)
t_unit_store_LDADD = libftm_proto.a libftm_store.a $(JEMALLOC_LIBS) $(XXHASH_LIBS) $(GTEST_LINK)

check_PROGRAMS += t/unit_proto
t_unit_proto_SOURCES = t/unit/proto_util_test.cc t/unit/proto_text_test.cc t/unit/proto_meta_test.cc
t_unit_proto_CPPFLAGS = $(AM_CPPFLAGS) $(GTEST_FLAGS)
t_unit_proto_LDADD = libftm_proto.a libftm_store.a $(JEMALLOC_LIBS) $(XXHASH_LIBS) $(GTEST_LINK)

TESTS += t/unit_store t/unit_proto

# The pytest suites drive the built binaries over sockets.
TESTS += t/run-pytest.sh
EXTRA_DIST += t/run-pytest.sh

# rdma/ layer tests (tcp provider; verbs when a device exists).
check_PROGRAMS += t/unit_rdma
t_unit_rdma_SOURCES = t/unit/rdma_test.cc t/unit/rdma_helper.cc t/unit/rdma_helper.h \
	t/unit/proc_util.h t/unit/cluster_secret_test.cc
t_unit_rdma_CPPFLAGS = $(AM_CPPFLAGS) $(GTEST_FLAGS)
t_unit_rdma_LDADD = libftm_rdma.a $(LIBFABRIC_LIBS) $(GTEST_LINK)
TESTS += t/unit_rdma

# Binary protocol and authentication (issue 3).
check_PROGRAMS += t/unit_bin
t_unit_bin_SOURCES = t/unit/proto_bin_test.cc
t_unit_bin_CPPFLAGS = $(AM_CPPFLAGS) $(GTEST_FLAGS)
t_unit_bin_LDADD = libftm_proto.a libftm_store.a $(SASL_LIBS) $(JEMALLOC_LIBS) $(XXHASH_LIBS) $(GTEST_LINK)
TESTS += t/unit_bin
EXTRA_DIST += t/fuzz/proto_bin_fuzz.cc t/fuzz/run.sh

# Bounded fuzz runs (clang's libFuzzer); skipped without clang.
TESTS += t/run-fuzz.sh
EXTRA_DIST += t/run-fuzz.sh

# Cluster front end: routing, forwarding, split gets, flush_all broadcast and
# the replication barrier through a real Server against a fake Cluster.
check_PROGRAMS += t/unit_frontend
t_unit_frontend_SOURCES = t/unit/cluster_frontend_test.cc
t_unit_frontend_CPPFLAGS = $(AM_CPPFLAGS) $(GTEST_FLAGS) $(LIBEVENT_CFLAGS)
t_unit_frontend_LDADD = libftm_server.a libftm_proto.a libftm_store.a $(SASL_LIBS) $(LIBEVENT_LIBS) $(JEMALLOC_LIBS) $(XXHASH_LIBS) $(GTEST_LINK)
TESTS += t/unit_frontend

# Shipped by `make dist`: the pytest suites and their helpers (t/test_meta_server.py
# is listed in replication/local.mk), and the other fuzz targets, their shared
# harness and seed corpora (the first target and t/fuzz/run.sh are listed above).
EXTRA_DIST += t/conftest.py t/mc.py t/cluster.py t/loadgen.py t/chaos.py t/netns.py t/failover_common.py t/README.md
EXTRA_DIST += t/test_binary.py
EXTRA_DIST += t/test_chaos.py
EXTRA_DIST += t/test_cas.py
EXTRA_DIST += t/test_cluster.py
EXTRA_DIST += t/test_concurrency.py
EXTRA_DIST += t/test_detector.py
EXTRA_DIST += t/test_differential.py
EXTRA_DIST += t/test_errors.py
EXTRA_DIST += t/test_expire.py
EXTRA_DIST += t/test_failover.py
EXTRA_DIST += t/test_flags.py
EXTRA_DIST += t/test_flush.py
EXTRA_DIST += t/test_getset.py
EXTRA_DIST += t/test_incrdecr.py
EXTRA_DIST += t/test_memccapable.py
EXTRA_DIST += t/test_meta_arith.py
EXTRA_DIST += t/test_meta_delete.py
EXTRA_DIST += t/test_meta_get.py
EXTRA_DIST += t/test_meta_set.py
EXTRA_DIST += t/test_noreply.py
EXTRA_DIST += t/test_overload.py
EXTRA_DIST += t/test_partition.py
EXTRA_DIST += t/test_pipeline.py
EXTRA_DIST += t/test_pylibmc.py
EXTRA_DIST += t/test_pymemcache.py
EXTRA_DIST += t/test_sasl_auth.py
EXTRA_DIST += t/test_start_script.py
EXTRA_DIST += t/test_stats.py
EXTRA_DIST += t/test_touch_gat.py
EXTRA_DIST += t/test_udp.py
EXTRA_DIST += t/fuzz/proto_text_fuzz.cc t/fuzz/proto_harness.h t/fuzz/repl_log_fuzz.cc \
	t/fuzz/control_msg_fuzz.cc t/fuzz/make_seeds.cc t/fuzz/corpus

# Cluster security (issue 7): a rogue fabric peer that t/test_security.py
# points at the meta server and the data servers.
check_PROGRAMS += t/rogue_peer
t_rogue_peer_SOURCES = t/rogue_peer.cc
t_rogue_peer_CPPFLAGS = $(AM_CPPFLAGS) $(LIBFABRIC_CFLAGS)
t_rogue_peer_LDADD = libftm_rdma.a $(LIBFABRIC_LIBS) -lpthread
EXTRA_DIST += t/test_security.py
# The ThreadSanitizer suppressions (scripts/test.sh stage 3).
EXTRA_DIST += t/sanitizers/tsan.supp
