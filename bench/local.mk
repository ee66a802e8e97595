# bench/: Google Benchmark micro-benchmarks and load runs against stock
# memcached. Built by `make bench` only (never part of `make` or `make check`).
BENCH_FLAGS = $(AM_CPPFLAGS) $(BENCHMARK_CFLAGS)

EXTRA_PROGRAMS += bench/store_bench
bench_store_bench_SOURCES = bench/store_bench.cc
bench_store_bench_CPPFLAGS = $(BENCH_FLAGS)
bench_store_bench_LDADD = libftm_store.a $(JEMALLOC_LIBS) $(XXHASH_LIBS) $(BENCHMARK_LIBS) -lpthread

EXTRA_PROGRAMS += bench/proto_bench
bench_proto_bench_SOURCES = bench/proto_bench.cc
bench_proto_bench_CPPFLAGS = $(BENCH_FLAGS)
bench_proto_bench_LDADD = libftm_proto.a libftm_store.a $(JEMALLOC_LIBS) $(XXHASH_LIBS) $(BENCHMARK_LIBS) -lpthread

EXTRA_PROGRAMS += bench/rdma_bench
bench_rdma_bench_SOURCES = bench/rdma_bench.cc
bench_rdma_bench_CPPFLAGS = $(BENCH_FLAGS) $(LIBFABRIC_CFLAGS)
bench_rdma_bench_LDADD = libftm_rdma.a $(LIBFABRIC_LIBS) $(BENCHMARK_LIBS) -lpthread

# Closed-loop load generator (text protocol), used by bench/load.sh against
# stock memcached and ftmemcached side by side.
EXTRA_PROGRAMS += bench/loadgen
bench_loadgen_SOURCES = bench/loadgen.cc

FTM_BENCHES = bench/store_bench bench/proto_bench bench/rdma_bench bench/loadgen
CLEANFILES += $(FTM_BENCHES)
.PHONY: bench
bench: $(FTM_BENCHES)

# Replication log (replication/): append latency per 100-byte effect, single
# and batched. Extra prerequisite of `bench` (FTM_BENCHES is already expanded
# in the rule above).
EXTRA_PROGRAMS += bench/replication_bench
bench_replication_bench_SOURCES = bench/replication_bench.cc
bench_replication_bench_CPPFLAGS = $(BENCH_FLAGS)
bench_replication_bench_LDADD = libftm_replication.a libftm_rdma.a libftm_store.a \
	$(LIBFABRIC_LIBS) $(JEMALLOC_LIBS) $(XXHASH_LIBS) $(BENCHMARK_LIBS) -lpthread
CLEANFILES += bench/replication_bench
bench: bench/replication_bench
