# rdma/: the fabric layer over libfabric. The only directory that includes
# <rdma/fabric.h>.
noinst_LIBRARIES += libftm_rdma.a
libftm_rdma_a_SOURCES = \
	rdma/fabric_info.cc rdma/fabric_info.h
libftm_rdma_a_CPPFLAGS = $(AM_CPPFLAGS) $(LIBFABRIC_CFLAGS)
