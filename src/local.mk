# src/: the memcached server core.

# The item store and the execute layer (no sockets, no protocol text).
noinst_LIBRARIES += libftm_store.a
libftm_store_a_SOURCES = \
	src/clock.cc src/clock.h \
	src/stats.h \
	src/store.cc src/store.h \
	src/execute.cc src/execute.h
libftm_store_a_CPPFLAGS = $(AM_CPPFLAGS) $(JEMALLOC_CFLAGS) $(XXHASH_CFLAGS)

# Protocol front ends: parse bytes, compose replies (no sockets).
noinst_LIBRARIES += libftm_proto.a
libftm_proto_a_SOURCES = \
	src/session.h \
	src/proto_util.cc src/proto_util.h \
	src/proto_text.cc src/proto_text.h \
	src/proto_text_store.cc src/proto_text_internal.h \
	src/proto_text_route.cc src/forward_plan.cc src/forward_plan.h src/cluster.h \
	src/proto_meta.cc src/proto_meta.h \
	src/proto_meta_flags.cc src/proto_meta_internal.h \
	src/proto_bin.cc src/proto_bin.h src/proto_bin_codec.h \
	src/sasl.cc src/sasl.h \
	src/auth_file.cc src/auth_file.h

# Server core: settings, listeners, libevent worker threads, connections.
noinst_LIBRARIES += libftm_server.a
libftm_server_a_SOURCES = \
	src/settings.cc src/settings.h \
	src/server.cc src/server.h \
	src/stats_render.cc \
	src/worker.cc src/worker.h \
	src/conn.cc src/conn.h \
	src/udp_conn.cc src/udp_conn.h \
	src/traffic_log.cc src/traffic_log.h
libftm_server_a_CPPFLAGS = $(AM_CPPFLAGS) $(LIBEVENT_CFLAGS)

FTM_LIBS = libftm_server.a libftm_proto.a libftm_store.a libftm_rdma.a
FTM_EXTERNAL_LIBS = $(SASL_LIBS) $(LIBEVENT_LIBS) $(JEMALLOC_LIBS) $(XXHASH_LIBS) $(LIBFABRIC_LIBS) -lpthread

bin_PROGRAMS += ftmemcached
ftmemcached_SOURCES = src/main.cc
# Cluster mode (replication/cluster_node.h and what it pulls in). The
# cluster library is named twice: it and the replication library call
# each other (ClusterNode -> ReplicationManager -> PeerMesh).
ftmemcached_LDADD = libftm_server.a libftm_cluster.a libftm_replication.a libftm_cluster.a \
	libftm_proto.a libftm_store.a libftm_rdma.a $(FTM_EXTERNAL_LIBS)

dist_man_MANS += man/ftmemcached.1
