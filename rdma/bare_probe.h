// A baseline for bench/rdma_bench only: the same one-sided writes and reads
// done with bare libfabric calls (fi_writemsg/fi_readmsg + fi_cq_read, no
// deadlines, no progress thread, no locks of ours), as in the probe behind
// DESIGN.md's numbers. Running it in the same benchmark run lets the layer's
// overhead be reported as a ratio on the same, possibly busy, machine.
// Lives in rdma/ because only rdma/ includes libfabric. Not for production.
//
// Thread-safety: BareTarget and BareInitiator REQUIRE external
// synchronization (one thread each).
#ifndef FTM_RDMA_BARE_PROBE_H_
#define FTM_RDMA_BARE_PROBE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace ftm::rdma::bare {

// Listens on 127.0.0.1:`port` (0 = any), accepts one connection in a
// background thread that then busy-polls its CQ forever (the target side of
// the probe). Returns the bound port, or 0 on failure. Never stops: meant
// for a benchmark's target process.
uint16_t start_target(size_t region_bytes);

class BareInitiator {
 public:
  // Connects to a start_target() on 127.0.0.1:`port`. Returns null on
  // failure (message on stderr).
  static std::unique_ptr<BareInitiator> connect(uint16_t port);
  ~BareInitiator();

  // One delivery-complete write (or read) of `len` bytes at remote offset
  // `off`, polled to completion. Returns false on error.
  bool write(size_t off, size_t len);
  bool read(size_t off, size_t len);
  // Streams `count` writes of `len` bytes with `inflight` outstanding.
  // Returns false on error.
  bool stream(size_t len, int inflight, uint64_t count);

 private:
  struct Impl;
  explicit BareInitiator(std::unique_ptr<Impl> i);
  std::unique_ptr<Impl> i_;
};

}  // namespace ftm::rdma::bare

#endif  // FTM_RDMA_BARE_PROBE_H_
