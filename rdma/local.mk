# rdma/: the fabric layer over libfabric. The only directory that includes
# <rdma/fabric.h>. See rdma/README.md.
noinst_LIBRARIES += libftm_rdma.a
libftm_rdma_a_SOURCES = \
	rdma/status.cc rdma/status.h \
	rdma/region_descriptor.cc rdma/region_descriptor.h \
	rdma/fabric_domain.cc rdma/fabric_domain.h \
	rdma/progress.cc rdma/domain_internal.h rdma/peer_identity.cc \
	rdma/memory_region.cc rdma/memory_region.h \
	rdma/connection.cc rdma/connection.h \
	rdma/listener.cc rdma/listener.h \
	rdma/fabric_info.cc rdma/fabric_info.h \
	rdma/bare_probe.cc rdma/bare_probe.h \
	rdma/cluster_secret.cc rdma/cluster_secret.h rdma/handshake.cc rdma/secret_option.h
libftm_rdma_a_CPPFLAGS = $(AM_CPPFLAGS) $(LIBFABRIC_CFLAGS) $(LIBCRYPTO_CFLAGS)
EXTRA_DIST += rdma/README.md
