# t/: GoogleTest unit tests and the pytest suites. `make check` runs them all.
GTEST_FLAGS = $(GTEST_CFLAGS)
GTEST_LINK = $(GTEST_LIBS) -lpthread

check_PROGRAMS += t/unit_store
t_unit_store_SOURCES = t/unit/store_test.cc t/unit/execute_test.cc
t_unit_store_CPPFLAGS = $(AM_CPPFLAGS) $(GTEST_FLAGS)
t_unit_store_LDADD = libftm_store.a $(JEMALLOC_LIBS) $(XXHASH_LIBS) $(GTEST_LINK)

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
t_unit_rdma_SOURCES = t/unit/rdma_test.cc
t_unit_rdma_CPPFLAGS = $(AM_CPPFLAGS) $(GTEST_FLAGS)
t_unit_rdma_LDADD = libftm_rdma.a $(LIBFABRIC_LIBS) $(GTEST_LINK)
TESTS += t/unit_rdma
