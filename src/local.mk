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
	src/proto_meta.cc src/proto_meta.h

# Server core: settings, listeners, libevent worker threads, connections.
noinst_LIBRARIES += libftm_server.a
libftm_server_a_SOURCES = \
	src/settings.cc src/settings.h \
	src/server.cc src/server.h \
	src/worker.cc src/worker.h \
	src/conn.cc src/conn.h
libftm_server_a_CPPFLAGS = $(AM_CPPFLAGS) $(LIBEVENT_CFLAGS)

FTM_LIBS = libftm_server.a libftm_proto.a libftm_store.a libftm_rdma.a
FTM_EXTERNAL_LIBS = $(LIBEVENT_LIBS) $(JEMALLOC_LIBS) $(XXHASH_LIBS) $(LIBFABRIC_LIBS) -lpthread

bin_PROGRAMS += ftmemcached
ftmemcached_SOURCES = src/main.cc
ftmemcached_LDADD = $(FTM_LIBS) $(FTM_EXTERNAL_LIBS)

dist_man_MANS += man/ftmemcached.1
