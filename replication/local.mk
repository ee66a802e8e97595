# replication/: effect records and the primary -> secondary replication log
# (ring in the secondary's registered memory, writer, applier). See
# replication/README.md. Never includes libfabric headers: it uses rdma/.
noinst_LIBRARIES += libftm_replication.a
libftm_replication_a_SOURCES = \
	replication/effect.cc replication/effect.h replication/wire_bytes.h \
	replication/log_ring.cc replication/log_ring.h \
	replication/log_writer.cc replication/log_writer.h \
	replication/log_applier.cc replication/log_applier.h \
	replication/replica_ops.cc replication/replica_ops.h \
	replication/snapshot.cc replication/snapshot.h
libftm_replication_a_CPPFLAGS = $(AM_CPPFLAGS) $(XXHASH_CFLAGS)
EXTRA_DIST += replication/README.md

check_PROGRAMS += t/unit_replication
t_unit_replication_SOURCES = t/unit/replication_log_test.cc
t_unit_replication_CPPFLAGS = $(AM_CPPFLAGS) $(GTEST_CFLAGS)
t_unit_replication_LDADD = libftm_replication.a libftm_rdma.a libftm_store.a \
	$(LIBFABRIC_LIBS) $(JEMALLOC_LIBS) $(XXHASH_LIBS) $(GTEST_LIBS) -lpthread
TESTS += t/unit_replication

# Membership: the partition map, control messages, the metadata server and
# the data server's membership client (replication/README.md, "Membership
# and the partition map"). A library of its own so ftmemcached-meta and
# ftmemcached-ctl link without the store or the log.
noinst_LIBRARIES += libftm_cluster.a
libftm_cluster_a_SOURCES = \
	replication/partition_map.cc replication/partition_map.h \
	replication/control_msg.cc replication/control_msg.h \
	replication/meta_server.cc replication/meta_server.h \
	replication/spawn.cc replication/spawn.h \
	replication/membership.cc replication/membership.h \
	replication/peer_mesh.cc replication/peer_mesh.h replication/peer_frame.h \
	replication/peer_lease.cc replication/peer_lease.h \
	replication/cluster_node.cc replication/cluster_node.h \
	replication/inspect.cc replication/inspect.h \
	replication/replication_manager.cc replication/replication_manager.h \
	replication/recovery.cc replication/recovery.h \
	replication/heartbeat.cc replication/heartbeat.h replication/lease.h \
	replication/failure_detector.cc replication/failure_detector.h \
	replication/failure_monitor.cc replication/failure_monitor.h
libftm_cluster_a_CPPFLAGS = $(AM_CPPFLAGS) $(XXHASH_CFLAGS)
FTM_CLUSTER_LIBS = libftm_cluster.a libftm_rdma.a $(LIBFABRIC_LIBS) $(XXHASH_LIBS) -lpthread

bin_PROGRAMS += ftmemcached-meta ftmemcached-ctl
ftmemcached_meta_SOURCES = src/meta_main.cc
ftmemcached_meta_LDADD = $(FTM_CLUSTER_LIBS)
ftmemcached_ctl_SOURCES = src/ctl_main.cc
ftmemcached_ctl_LDADD = $(FTM_CLUSTER_LIBS)
dist_man_MANS += man/ftmemcached-meta.1 man/ftmemcached-ctl.1

check_PROGRAMS += t/unit_cluster
t_unit_cluster_SOURCES = t/unit/partition_map_test.cc \
	t/unit/control_msg_test.cc t/unit/meta_server_test.cc \
	t/unit/meta_server_fixture.h t/unit/meta_holds_test.cc t/unit/test_fabric.h \
	t/unit/failure_detector_test.cc t/unit/spawn_test.cc t/unit/peer_lease_test.cc
t_unit_cluster_CPPFLAGS = $(AM_CPPFLAGS) $(GTEST_CFLAGS)
t_unit_cluster_LDADD = $(FTM_CLUSTER_LIBS) $(GTEST_LIBS)
TESTS += t/unit_cluster
EXTRA_DIST += t/test_meta_server.py

# The replication manager (effects -> LogWriters, kRingOpen -> LogApplier):
# primary and secondaries in one process, tcp provider.
check_PROGRAMS += t/unit_replication_manager
t_unit_replication_manager_SOURCES = t/unit/replication_manager_test.cc \
	t/unit/test_fabric.h
t_unit_replication_manager_CPPFLAGS = $(AM_CPPFLAGS) $(GTEST_CFLAGS)
t_unit_replication_manager_LDADD = libftm_cluster.a libftm_replication.a libftm_store.a \
	libftm_rdma.a $(LIBFABRIC_LIBS) $(JEMALLOC_LIBS) $(XXHASH_LIBS) $(GTEST_LIBS) -lpthread
TESTS += t/unit_replication_manager

# The peer mesh (RPCs between data servers) with in-process nodes and a
# real metadata server over the tcp provider.
check_PROGRAMS += t/unit_mesh
t_unit_mesh_SOURCES = t/unit/peer_mesh_test.cc t/unit/test_fabric.h
t_unit_mesh_CPPFLAGS = $(AM_CPPFLAGS) $(GTEST_CFLAGS)
t_unit_mesh_LDADD = $(FTM_CLUSTER_LIBS) $(GTEST_LIBS)
TESTS += t/unit_mesh

# ClusterNode (routing, forwarding, the kForward server) with in-process
# nodes, stores and metadata server.
check_PROGRAMS += t/unit_cluster_node
t_unit_cluster_node_SOURCES = t/unit/cluster_node_test.cc
t_unit_cluster_node_CPPFLAGS = $(AM_CPPFLAGS) $(GTEST_CFLAGS)
t_unit_cluster_node_LDADD = libftm_cluster.a libftm_replication.a libftm_cluster.a \
	libftm_proto.a libftm_store.a libftm_rdma.a $(SASL_LIBS) $(LIBFABRIC_LIBS) \
	$(JEMALLOC_LIBS) $(XXHASH_LIBS) $(GTEST_LIBS) -lpthread
TESTS += t/unit_cluster_node

# Recovery onto a new secondary: snapshots (encode, validate, install) and
# the LogApplier's hold/release, alone and over a log on the tcp provider.
check_PROGRAMS += t/unit_snapshot
t_unit_snapshot_SOURCES = t/unit/snapshot_test.cc
t_unit_snapshot_CPPFLAGS = $(AM_CPPFLAGS) $(GTEST_CFLAGS) $(XXHASH_CFLAGS)
t_unit_snapshot_LDADD = libftm_cluster.a libftm_replication.a libftm_store.a libftm_rdma.a \
	$(LIBFABRIC_LIBS) $(JEMALLOC_LIBS) $(XXHASH_LIBS) $(GTEST_LIBS) -lpthread
TESTS += t/unit_snapshot
