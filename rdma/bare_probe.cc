// Bare libfabric baseline for the benchmark: see bare_probe.h.
#include "rdma/bare_probe.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "rdma/domain_internal.h"

namespace ftm::rdma::bare {
namespace {

fi_info* probe_hints() {
  // The same request as the layer, so the comparison is like for like.
  return detail::make_hints("tcp", true, false);
}

struct Common {
  fi_info* fi = nullptr;
  fid_fabric* fab = nullptr;
  fid_domain* dom = nullptr;
  fid_eq* eq = nullptr;
  fid_cq* cq = nullptr;
  fid_ep* ep = nullptr;
  bool open(const char* node, const char* svc, uint64_t flags) {
    fi_info* h = probe_hints();
    int r = fi_getinfo(detail::kApiVersion, node, svc, flags, h, &fi);
    fi_freeinfo(h);
    if (r) return false;
    fi_eq_attr ea{};
    ea.wait_obj = FI_WAIT_UNSPEC;
    fi_cq_attr ca{};
    ca.format = FI_CQ_FORMAT_CONTEXT;
    ca.size = 1024;
    return !fi_fabric(fi->fabric_attr, &fab, nullptr) &&
           !fi_domain(fab, fi, &dom, nullptr) &&
           !fi_eq_open(fab, &ea, &eq, nullptr) &&
           !fi_cq_open(dom, &ca, &cq, nullptr);
  }
  bool make_ep(fi_info* info) {
    return !fi_endpoint(dom, info, &ep, nullptr) &&
           !fi_ep_bind(ep, &eq->fid, 0) &&
           !fi_ep_bind(ep, &cq->fid, FI_TRANSMIT | FI_RECV) && !fi_enable(ep);
  }
  // Waits for `want` on the EQ (the tcp provider progresses connection
  // setup only while its EQ is read). Copies event data to `data`.
  bool wait_event(uint32_t want, fi_eq_cm_entry* e, size_t len) {
    uint32_t ev = 0;
    ssize_t n = fi_eq_sread(eq, &ev, e, len, 5000, 0);
    return n >= ssize_t(sizeof(fi_eq_cm_entry)) && ev == want;
  }
};

struct RemoteInfo {
  uint64_t addr;
  uint64_t key;
};

}  // namespace

uint16_t start_target(size_t region_bytes) {
  auto* c = new Common;  // lives as long as the process
  if (!c->open("127.0.0.1", "0", FI_SOURCE)) return 0;
  fid_pep* pep = nullptr;
  if (fi_passive_ep(c->fab, c->fi, &pep, nullptr) ||
      fi_pep_bind(pep, &c->eq->fid, 0) || fi_listen(pep))
    return 0;
  sockaddr_in sa{};
  size_t sl = sizeof sa;
  if (fi_getname(&pep->fid, &sa, &sl)) return 0;
  auto* mem = new std::vector<char>(region_bytes);
  fid_mr* mr = nullptr;
  bool virt = c->fi->domain_attr->mr_mode & FI_MR_VIRT_ADDR;
  if (fi_mr_reg(c->dom, mem->data(), mem->size(),
                FI_REMOTE_WRITE | FI_REMOTE_READ, 0, 0xb0b, 0, &mr, nullptr))
    return 0;
  RemoteInfo ri{virt ? reinterpret_cast<uint64_t>(mem->data()) : 0,
                fi_mr_key(mr)};
  std::thread([c, pep, ri] {
    alignas(fi_eq_cm_entry) char buf[sizeof(fi_eq_cm_entry) + 256];
    auto* e = reinterpret_cast<fi_eq_cm_entry*>(buf);
    while (!c->wait_event(FI_CONNREQ, e, sizeof buf)) {
    }
    if (!c->make_ep(e->info)) return;
    fi_freeinfo(e->info);
    if (fi_accept(c->ep, &ri, sizeof ri)) return;
    if (!c->wait_event(FI_CONNECTED, e, sizeof buf)) return;
    (void)pep;
    fi_cq_entry ce[16];
    for (;;) fi_cq_read(c->cq, ce, 16);  // the probe's target: always polling
  }).detach();
  return ntohs(sa.sin_port);
}

struct BareInitiator::Impl {
  Common c;
  RemoteInfo remote{};
  std::vector<char> local;
  fid_mr* mr = nullptr;
  void* desc = nullptr;

  ssize_t post(bool write, size_t loff, size_t roff, size_t len) {
    iovec iov{local.data() + loff, len};
    fi_rma_iov r{remote.addr + roff, len, remote.key};
    fi_msg_rma m{&iov, &desc, 1, 0, &r, 1, nullptr, 0};
    return write ? fi_writemsg(c.ep, &m, FI_COMPLETION | FI_DELIVERY_COMPLETE)
                 : fi_readmsg(c.ep, &m, FI_COMPLETION);
  }
  // Polls until `n` completions arrived; false on a CQ error.
  bool reap(uint64_t n, uint64_t* done) {
    fi_cq_entry ce[16];
    uint64_t target = *done + n;
    while (*done < target) {
      ssize_t k = fi_cq_read(c.cq, ce, 16);
      if (k > 0) *done += uint64_t(k);
      if (k == -FI_EAVAIL) return false;
    }
    return true;
  }
};

BareInitiator::BareInitiator(std::unique_ptr<Impl> i) : i_(std::move(i)) {}
BareInitiator::~BareInitiator() {
  if (!i_) return;
  if (i_->c.ep) fi_close(&i_->c.ep->fid);
  if (i_->mr) fi_close(&i_->mr->fid);
  if (i_->c.cq) fi_close(&i_->c.cq->fid);
  if (i_->c.eq) fi_close(&i_->c.eq->fid);
  if (i_->c.dom) fi_close(&i_->c.dom->fid);
  if (i_->c.fab) fi_close(&i_->c.fab->fid);
  if (i_->c.fi) fi_freeinfo(i_->c.fi);
}

std::unique_ptr<BareInitiator> BareInitiator::connect(uint16_t port) {
  auto i = std::make_unique<Impl>();
  std::string svc = std::to_string(port);
  alignas(fi_eq_cm_entry) char buf[sizeof(fi_eq_cm_entry) + 256];
  auto* e = reinterpret_cast<fi_eq_cm_entry*>(buf);
  i->local.resize(64u << 20);
  if (!i->c.open("127.0.0.1", svc.c_str(), 0) || !i->c.make_ep(i->c.fi) ||
      fi_connect(i->c.ep, i->c.fi->dest_addr, nullptr, 0) ||
      !i->c.wait_event(FI_CONNECTED, e, sizeof buf) ||
      fi_mr_reg(i->c.dom, i->local.data(), i->local.size(), FI_WRITE | FI_READ,
                0, 1, 0, &i->mr, nullptr)) {
    std::fprintf(stderr, "bare probe: connect/setup failed\n");
    return nullptr;
  }
  std::memcpy(&i->remote, e->data, sizeof i->remote);
  i->desc = fi_mr_desc(i->mr);
  return std::unique_ptr<BareInitiator>(new BareInitiator(std::move(i)));
}

bool BareInitiator::write(size_t off, size_t len) {
  uint64_t done = 0;
  while (i_->post(true, 0, off, len) == -FI_EAGAIN) fi_cq_read(i_->c.cq, nullptr, 0);
  return i_->reap(1, &done);
}

bool BareInitiator::read(size_t off, size_t len) {
  uint64_t done = 0;
  while (i_->post(false, 0, off, len) == -FI_EAGAIN) fi_cq_read(i_->c.cq, nullptr, 0);
  return i_->reap(1, &done);
}

bool BareInitiator::stream(size_t len, int inflight, uint64_t count) {
  uint64_t posted = 0, done = 0;
  size_t slots = i_->local.size() / len;
  while (done < count) {
    while (posted < count && posted - done < uint64_t(inflight)) {
      size_t off = (posted % slots) * len;
      ssize_t r = i_->post(true, off, off, len);
      if (r == -FI_EAGAIN) break;
      if (r) return false;
      posted++;
    }
    if (!i_->reap(1, &done)) return false;
  }
  return true;
}

}  // namespace ftm::rdma::bare
