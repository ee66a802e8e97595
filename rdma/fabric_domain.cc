// Opening a fabric: provider selection (fi_getinfo(3)), domain, queues, and
// the factory methods. The progress engine is in progress.cc.
#include "rdma/fabric_domain.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "rdma/connection.h"
#include "rdma/domain_internal.h"
#include "rdma/listener.h"
#include "rdma/memory_region.h"

namespace ftm::rdma {

using detail::Domain;

Result<ProviderChoice> parse_provider(std::string_view name) {
  if (name == "auto") return ProviderChoice::kAuto;
  if (name == "verbs") return ProviderChoice::kVerbs;
  if (name == "tcp") return ProviderChoice::kTcp;
  if (name == "shm") return ProviderChoice::kShm;
  return Status(Code::kInvalidArgument, "", "parse --fabric",
                "unknown provider '" + std::string(name) +
                    "' (expected auto, verbs, tcp or shm)");
}

namespace detail {

// The strictest request we can serve; the provider's answer tells us which
// of the mr_mode bits it actually needs.
fi_info* make_hints(const char* prov, bool delivery_complete, bool ordered) {
  fi_info* h = fi_allocinfo();
  if (!h) return nullptr;
  h->ep_attr->type = FI_EP_MSG;
  h->caps = FI_MSG | FI_RMA;
  h->mode = FI_CONTEXT | FI_CONTEXT2;  // we give every op an fi_context2
  h->domain_attr->mr_mode =
      FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY;
  h->domain_attr->threading = FI_THREAD_SAFE;
  if (delivery_complete) h->tx_attr->op_flags = FI_DELIVERY_COMPLETE;
  if (ordered)
    h->tx_attr->msg_order = h->rx_attr->msg_order =
        FI_ORDER_RAW | FI_ORDER_WAW | FI_ORDER_SAW | FI_ORDER_SAS;
  h->fabric_attr->prov_name = strdup(prov);
  return h;
}

// fi_getinfo for `prov`, relaxing delivery-complete and ordering if refused.
// Returns 0 or a negative fi error; *dc/*ordered say what was granted.
int get_info(const char* prov, const char* node, fi_info** out, bool* dc,
             bool* ordered) {
  int ret = -FI_ENODATA;
  for (int attempt = 0; attempt < 4; attempt++) {
    *dc = !(attempt & 2);
    *ordered = !(attempt & 1);
    fi_info* hints = make_hints(prov, *dc, *ordered);
    if (!hints) return -FI_ENOMEM;
    ret = fi_getinfo(kApiVersion, node, nullptr, node ? FI_SOURCE : 0, hints,
                     out);
    fi_freeinfo(hints);
    if (ret == 0) return 0;
  }
  return ret;
}

// fi_tostr returns a static buffer: copy it out immediately, one call each.
std::string tostr(const void* v, enum fi_type t) {
  std::string s = fi_tostr(v, t);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string describe_info(const fi_info* fi, bool dc, bool ordered) {
  std::string s = "provider=" + std::string(fi->fabric_attr->prov_name);
  s += " fabric=" + std::string(fi->fabric_attr->name ? fi->fabric_attr->name
                                                       : "?");
  s += " domain=" + std::string(fi->domain_attr->name ? fi->domain_attr->name
                                                       : "?");
  s += " data_progress=" + tostr(&fi->domain_attr->data_progress,
                                 FI_TYPE_PROGRESS);
  s += " control_progress=" + tostr(&fi->domain_attr->control_progress,
                                    FI_TYPE_PROGRESS);
  s += " (driven by our progress thread either way)";
  s += " mr_mode=[" + tostr(&fi->domain_attr->mr_mode, FI_TYPE_MR_MODE) + "]";
  s += dc ? " completion=delivery" : " completion=provider-default";
  s += ordered ? " order=RAW|WAW|SAW|SAS" : " order=provider-default";
  s += " max_msg=" + std::to_string(fi->ep_attr->max_msg_size);
  s += " tx_depth=" + std::to_string(fi->tx_attr->size);
  s += " rx_depth=" + std::to_string(fi->rx_attr->size);
  s += " mr_key_size=" + std::to_string(fi->domain_attr->mr_key_size);
  s += " cq_cnt=" + std::to_string(fi->domain_attr->cq_cnt);
  s += " ep_cnt=" + std::to_string(fi->domain_attr->ep_cnt);
  return s;
}

}  // namespace detail

namespace {

using detail::describe_info;
using detail::get_info;
using detail::kApiVersion;
using detail::make_hints;

std::string default_identity() {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  return std::string(host) + ":" + std::to_string(getpid());
}

Status fab_err(const char* what, int ret) {
  return Status(Code::kFabricError, "", what, detail::fi_error_string(ret));
}

}  // namespace

Result<std::unique_ptr<Fabric>> Fabric::open(const FabricOptions& options) {
  auto d = std::make_shared<Domain>();
  d->opts = options;
  d->identity = options.identity.empty() ? default_identity()
                                         : options.identity;
  if (d->identity.size() > 100) d->identity.resize(100);
  const char* node =
      options.local_addr.empty() ? nullptr : options.local_addr.c_str();

  std::vector<const char*> tries;
  switch (options.provider) {
    case ProviderChoice::kAuto: tries = {"verbs", "tcp"}; break;
    case ProviderChoice::kVerbs: tries = {"verbs"}; break;
    case ProviderChoice::kTcp: tries = {"tcp"}; break;
    case ProviderChoice::kShm: tries = {"shm"}; break;
  }
  bool dc = false, ordered = false;
  std::string tried;
  int ret = -FI_ENODATA;
  for (const char* p : tries) {
    ret = get_info(p, node, &d->info, &dc, &ordered);
    if (ret == 0) break;
    tried += std::string(tried.empty() ? "" : "; ") + p + ": " +
             detail::fi_error_string(ret);
  }
  if (ret != 0)
    return Status(Code::kNoProvider, "", "open fabric",
                  "no provider offers FI_EP_MSG with FI_MSG|FI_RMA (" + tried +
                      ")");

  fi_info* fi = d->info;
  d->provider = fi->fabric_attr->prov_name;
  d->virt_addr = fi->domain_attr->mr_mode & FI_MR_VIRT_ADDR;
  d->prov_key = fi->domain_attr->mr_mode & FI_MR_PROV_KEY;
  d->delivery_complete = dc;
  d->max_msg_size = fi->ep_attr->max_msg_size;
  d->description = describe_info(fi, dc, ordered);
  if (d->opts.progress == ProgressMode::kAuto)
    d->opts.progress = d->provider == "verbs" ? ProgressMode::kAdaptive
                                              : ProgressMode::kBlocking;
  d->description += d->opts.progress == ProgressMode::kBlocking  ? " waits=block"
                    : d->opts.progress == ProgressMode::kBusyPoll ? " waits=busy-poll"
                                                                   : " waits=poll";

  if ((ret = fi_fabric(fi->fabric_attr, &d->fabric, nullptr)))
    return fab_err("fi_fabric", ret);
  if ((ret = fi_domain(d->fabric, fi, &d->domain, nullptr)))
    return fab_err("fi_domain", ret);
  fi_eq_attr eq_attr{};
  eq_attr.size = 1024;
  eq_attr.wait_obj = FI_WAIT_FD;  // so the idle progress thread can poll it
  if ((ret = fi_eq_open(d->fabric, &eq_attr, &d->eq, nullptr)))
    return fab_err("fi_eq_open", ret);
  fi_cq_attr cq_attr{};
  // One CQ for every endpoint of the domain: deep enough for many
  // connections each with a full transmit queue.
  cq_attr.size = 16384;
  cq_attr.format = FI_CQ_FORMAT_DATA;
  cq_attr.wait_obj = FI_WAIT_FD;  // so the idle progress thread can poll it
  if ((ret = fi_cq_open(d->domain, &cq_attr, &d->cq, nullptr)))
    return fab_err("fi_cq_open", ret);

  // Requested keys are drawn at random (memory_region.cc): never
  // sequential, so knowing one region's key says nothing about another's.
  if (fi->domain_attr->mr_key_size && fi->domain_attr->mr_key_size < 8)
    d->key_mask = (1ull << (8 * fi->domain_attr->mr_key_size)) - 1;
  d->secret = options.cluster_secret;

  if (Status st = d->init_wait(); !st) return st;
  d->start();
  std::string line = "rdma: " + d->description + " identity=" + d->identity +
                     (d->secret.empty() ? " auth=none (open to any process "
                                          "that reaches the fabric address)"
                                        : " auth=cluster-secret");
  if (options.log)
    options.log(line);
  else
    std::fprintf(stderr, "%s\n", line.c_str());
  return std::unique_ptr<Fabric>(new Fabric(std::move(d)));
}

Fabric::~Fabric() = default;

const std::string& Fabric::provider() const { return d_->provider; }
ProgressMode Fabric::progress() const { return d_->opts.progress; }
std::string Fabric::describe() const { return d_->description; }
const std::string& Fabric::identity() const { return d_->identity; }

Result<std::unique_ptr<MemoryRegion>> Fabric::register_memory(
    std::span<std::byte> memory, bool remote_read, bool remote_write) {
  if (memory.empty())
    return Status(Code::kInvalidArgument, "", "register memory",
                  "empty buffer");
  uint64_t access = FI_READ | FI_WRITE | FI_SEND | FI_RECV;
  if (remote_read) access |= FI_REMOTE_READ;
  if (remote_write) access |= FI_REMOTE_WRITE;
  std::unique_ptr<MemoryRegion> mr(new MemoryRegion(d_, memory, access));
  Status st = mr->register_now();
  if (!st) return st;
  return mr;
}

Result<std::unique_ptr<Listener>> Fabric::listen(std::string_view host,
                                                 uint16_t port) {
  std::string h(host), svc = std::to_string(port);
  std::string where = h + ":" + svc;
  fi_info* hints = make_hints(d_->provider.c_str(), false, false);
  fi_info* fi = nullptr;
  // Same provider, and the request form the domain was opened with.
  hints->domain_attr->mr_mode = d_->info->domain_attr->mr_mode;
  hints->tx_attr->op_flags = d_->info->tx_attr->op_flags;
  hints->tx_attr->msg_order = d_->info->tx_attr->msg_order;
  hints->rx_attr->msg_order = d_->info->rx_attr->msg_order;
  int ret = fi_getinfo(kApiVersion, h.c_str(), svc.c_str(), FI_SOURCE, hints,
                       &fi);
  fi_freeinfo(hints);
  if (ret)
    return Status(Code::kFabricError, where, "listen",
                  "fi_getinfo: " + detail::fi_error_string(ret));
  auto l = std::make_shared<detail::ListenerState>();
  l->dom = d_.get();
  l->host = h;
  ret = fi_passive_ep(d_->fabric, fi, &l->pep, nullptr);
  fi_freeinfo(fi);
  if (ret)
    return Status(Code::kFabricError, where, "listen",
                  "fi_passive_ep: " + detail::fi_error_string(ret));
  auto fail = [&](const char* what, int r) {
    fi_close(&l->pep->fid);
    l->pep = nullptr;
    return Status(Code::kFabricError, where, "listen",
                  std::string(what) + ": " + detail::fi_error_string(r));
  };
  if ((ret = fi_pep_bind(l->pep, &d_->eq->fid, 0))) return fail("fi_pep_bind", ret);
  {
    std::lock_guard g(d_->map_mu);
    d_->peps[&l->pep->fid] = l;
  }
  if ((ret = fi_listen(l->pep))) {
    std::lock_guard g(d_->map_mu);
    d_->peps.erase(&l->pep->fid);
    return fail("fi_listen", ret);
  }
  sockaddr_storage ss{};
  size_t len = sizeof ss;
  if (fi_getname(&l->pep->fid, &ss, &len) == 0) {
    if (ss.ss_family == AF_INET)
      l->port = ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    else if (ss.ss_family == AF_INET6)
      l->port = ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  }
  if (l->port == 0) l->port = port;
  return std::unique_ptr<Listener>(new Listener(d_, std::move(l)));
}

Result<std::unique_ptr<Connection>> Fabric::connect(
    std::string_view host, uint16_t port, std::chrono::milliseconds timeout) {
  if (timeout.count() <= 0) timeout = d_->opts.connect_timeout;
  std::string h(host), svc = std::to_string(port);
  std::string where = h + ":" + svc;
  fi_info* hints = make_hints(d_->provider.c_str(), false, false);
  hints->domain_attr->mr_mode = d_->info->domain_attr->mr_mode;
  hints->tx_attr->op_flags = d_->info->tx_attr->op_flags;
  hints->tx_attr->msg_order = d_->info->tx_attr->msg_order;
  hints->rx_attr->msg_order = d_->info->rx_attr->msg_order;
  fi_info* fi = nullptr;
  int ret = fi_getinfo(kApiVersion, h.c_str(), svc.c_str(), 0, hints, &fi);
  fi_freeinfo(hints);
  if (ret)
    return Status(Code::kFabricError, where, "connect",
                  "fi_getinfo: " + detail::fi_error_string(ret));

  auto c = std::make_shared<detail::ConnState>();
  c->dom = d_.get();
  c->addr = where;
  c->peer = "'?' at " + where;
  d_->active++;  // busy-poll the EQ while the handshake runs
  // Destroyed after `conn` (declared first): its receive points into it.
  detail::Handshake hs;
  std::unique_ptr<Connection> conn;
  Status st = d_->make_endpoint(fi, c, "connect");
  if (st) {
    conn.reset(new Connection(d_, c));
    if (!d_->secret.empty()) {
      st = hs.start(d_, *conn);
      if (!st) d_->teardown(c, st, detail::Phase::kBroken);
    }
  }
  if (st) {
    std::vector<uint8_t> cm = detail::encode_identity(
        d_->identity, hs.nonce, detail::cm_data_limit(c->ep), &hs.identity);
    ret = fi_connect(c->ep, fi->dest_addr, cm.data(), cm.size());
    if (ret) {
      st = Status(Code::kFabricError, where, "connect",
                  "fi_connect: " + detail::fi_error_string(ret));
      d_->teardown(c, st, detail::Phase::kBroken);
    }
  }
  fi_freeinfo(fi);
  if (st) {
    std::unique_lock lk(c->mu);
    if (!c->cv.wait_for(lk, timeout,
                        [&] { return c->phase != detail::Phase::kConnecting; })) {
      lk.unlock();
      st = Status(Code::kTimeout, where, "connect",
                  "no answer within " + std::to_string(timeout.count()) +
                      " ms");
      d_->teardown(c, st, detail::Phase::kBroken);
    } else if (c->phase != detail::Phase::kConnected) {
      st = c->why;
    }
  }
  if (st && !d_->secret.empty()) {
    st = hs.finish(*conn, c, HandshakeRole::kConnector);
    if (!st) d_->teardown(c, st, detail::Phase::kBroken);
  }
  d_->active--;
  if (!st) return st;
  return conn;
}

}  // namespace ftm::rdma
