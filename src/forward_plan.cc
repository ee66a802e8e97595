#include "src/forward_plan.h"

#include <cstring>

#include "src/proto_bin_codec.h"
#include "src/proto_util.h"

namespace ftm {
namespace {

constexpr size_t kBatch = 24;  // tokenize() batch, as the text parser walks keys

// The command line of a text request: up to "\n", without "\r", cut at a NUL
// (the parser reads it as a C string).
std::string_view first_line(std::string_view req) {
  size_t nl = req.find('\n');
  std::string_view line = req.substr(0, nl == std::string_view::npos ? req.size() : nl);
  if (line.size() > 1 && line.back() == '\r') line.remove_suffix(1);
  if (const void* nul = std::memchr(line.data(), '\0', line.size())) {
    line = line.substr(0, static_cast<size_t>(static_cast<const char*>(nul) - line.data()));
  }
  return line;
}

// memcached's set_noreply_maybe for a non-meta text command: the last token
// is "noreply".
bool text_noreply(std::string_view line) {
  while (!line.empty() && line.back() == ' ') line.remove_suffix(1);
  size_t sp = line.rfind(' ');
  std::string_view first = line.substr(0, line.find(' '));
  if (first.size() == 2 && first[0] == 'm') return false;  // meta: errors always shown
  return sp != std::string_view::npos && line.substr(sp + 1) == "noreply";
}

}  // namespace

Gather::Gather(Cluster& cluster, WireProtocol proto, const ProtoResult& r, std::string_view request)
    : proto_(proto), kind_(r.remote), request_(request) {
  if (proto_ == WireProtocol::kText) noreply_ = text_noreply(first_line(request_));
  switch (kind_) {
    case Remote::kSplitGet: plan_split_get(cluster); break;
    case Remote::kBroadcast: plan_broadcast(cluster); break;
    default: {
      GatherPart& p = parts_.emplace_back();
      p.node = r.remote_node;
      p.request = request_;
    }
  }
}

void Gather::plan_split_get(Cluster& cluster) {
  std::string_view line = first_line(request_);
  std::string_view tok[kBatch];
  size_t n = tokenize(line, tok, kBatch);
  const bool touch = tok[0] == "gat" || tok[0] == "gats";
  std::string prefix(tok[0]);
  if (touch) {
    prefix.push_back(' ');
    prefix.append(tok[1]);
  }
  size_t i = touch ? 2 : 1;
  for (;;) {
    size_t real = n == kBatch ? kBatch - 1 : n;
    for (; i < real; ++i) {
      Route r = cluster.route(tok[i]);
      uint32_t part = 0;
      while (part < parts_.size() &&
             !(parts_[part].local == r.local && (r.local || parts_[part].node == r.node))) {
        ++part;
      }
      if (part == parts_.size()) {
        GatherPart& p = parts_.emplace_back();
        p.local = r.local;
        p.node = r.node;
        p.request = prefix;
      }
      parts_[part].request.push_back(' ');
      parts_[part].request.append(tok[i]);
      keys_.emplace_back(tok[i], part);
    }
    if (n < kBatch) break;
    std::string_view remainder = tok[kBatch - 1];
    n = tokenize(remainder, tok, kBatch);
    i = 0;
  }
  for (GatherPart& p : parts_) p.request.append("\r\n");
}

void Gather::plan_broadcast(Cluster& cluster) {
  uint32_t ids[256];
  size_t n = cluster.nodes(ids, sizeof ids / sizeof ids[0]);
  const uint32_t self = cluster.self();
  // This server always flushes, in the map or not (before the first map).
  GatherPart& me = parts_.emplace_back();
  me.local = true;
  me.node = self;
  me.request = request_;
  for (size_t i = 0; i < n; ++i) {
    if (ids[i] == self) continue;
    GatherPart& p = parts_.emplace_back();
    p.node = ids[i];
    p.request = request_;
  }
}

void Gather::failure(const GatherPart& p, std::string& out) const {
  std::string_view msg = p.reply;
  if (proto_ == WireProtocol::kText) {
    if (noreply_) return;
    if (msg.empty()) msg = "SERVER_ERROR forwarding failed\r\n";
    out.append(msg);
    if (!msg.ends_with("\r\n")) out.append("\r\n");
    return;
  }
  if (msg.ends_with("\r\n")) msg.remove_suffix(2);
  if (msg.empty()) msg = "SERVER_ERROR forwarding failed";
  const uint8_t opcode = request_.size() > 1 ? static_cast<uint8_t>(request_[1]) : 0;
  char opaque[4] = {0, 0, 0, 0};
  if (request_.size() >= bin::kHeaderLen) std::memcpy(opaque, request_.data() + 12, 4);
  bin::append_response_header(out, opcode, kBinaryInternalError, 0, 0,
                              static_cast<uint32_t>(msg.size()), opaque, 0);
  out.append(msg);
}

void Gather::compose(std::string& out) const {
  switch (kind_) {
    case Remote::kSplitGet: return compose_split_get(out);
    case Remote::kBroadcast: return compose_broadcast(out);
    default: {
      const GatherPart& p = parts_.front();
      if (p.ok) {
        out.append(p.reply);
      } else {
        failure(p, out);
      }
    }
  }
}

void Gather::compose_split_get(std::string& out) const {
  for (const GatherPart& p : parts_) {
    if (!p.ok) return failure(p, out);
    if (!std::string_view(p.reply).ends_with("END\r\n")) {
      out.append(p.reply);  // an error line answers for the whole get
      return;
    }
  }
  // Each owner answered its keys in the client's relative order, a miss
  // leaving no block: walk every owner's reply with its own cursor.
  std::vector<size_t> cursor(parts_.size(), 0);
  for (const auto& [key, part] : keys_) {
    const std::string& rep = parts_[part].reply;
    size_t& cur = cursor[part];
    if (rep.compare(cur, 6, "VALUE ") != 0) continue;
    size_t eol = rep.find("\r\n", cur);
    if (eol == std::string::npos) continue;
    std::string_view head(rep.data() + cur + 6, eol - cur - 6);
    std::string_view t[5];
    uint64_t bytes = 0;
    if (tokenize(head, t, 5) < 3 || t[0] != key || !safe_strtoull(t[2], &bytes)) continue;
    size_t end = eol + 2 + bytes + 2;
    if (end > rep.size()) continue;
    out.append(rep, cur, end - cur);
    cur = end;
  }
  out.append("END\r\n");
}

void Gather::compose_broadcast(std::string& out) const {
  for (const GatherPart& p : parts_) {
    if (!p.ok) {
      // Under noreply the client reads nothing, errors included.
      if (proto_ == WireProtocol::kText && noreply_) return;
      return failure(p, out);
    }
    bool error = proto_ == WireProtocol::kText
                     ? !p.reply.empty() && p.reply != "OK\r\n"
                     : p.reply.size() >= bin::kHeaderLen && bin::load_be16(p.reply.data() + 6) != 0;
    if (error) {
      out.append(p.reply);
      return;
    }
  }
  out.append(parts_.front().reply);  // this server's own answer
}

}  // namespace ftm
