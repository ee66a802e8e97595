// libFuzzer target for the text and meta protocol parser (ftm::text_process;
// the meta commands mg/ms/md/ma/mn/me are dispatched from it to
// src/proto_meta.cc). Driven through t/fuzz/proto_harness.h (chunked reads,
// `consumed` and `need` checked); also checks that no request is routed
// (standalone mode) and that the output is a sequence of whole replies; with
// a small output limit (Session::out_pause_at), that gets pause only past
// the limit, between whole VALUE blocks, and leave no paused get behind.
//
// Build and run: t/fuzz/run.sh [seconds]
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "t/fuzz/proto_harness.h"

namespace {

using ftm::fuzz::fail;

// Parses the n-th space-separated token of `line` (0-based) as a length.
bool token_len(std::string_view line, int n, size_t* len) {
  size_t pos = 0;
  for (int i = 0; i < n; ++i) {
    pos = line.find(' ', pos);
    if (pos == std::string_view::npos) return false;
    ++pos;
  }
  size_t end = line.find(' ', pos);
  if (end == std::string_view::npos) end = line.size();
  auto [p, ec] = std::from_chars(line.data() + pos, line.data() + end, *len);
  return ec == std::errc() && p == line.data() + end;
}

// `out` must be whole replies: "\r\n"-terminated lines, where a "VALUE k f n"
// (text get) or "VA n" (meta get) line is followed by n data bytes and "\r\n".
void check_output(std::string_view out) {
  size_t pos = 0;
  while (pos < out.size()) {
    size_t eol = out.find("\r\n", pos);
    if (eol == std::string_view::npos) fail();  // a reply cut short
    std::string_view line = out.substr(pos, eol - pos);
    pos = eol + 2;
    size_t len = 0;
    bool block = false;
    if (line.starts_with("VALUE ")) {
      if (!token_len(line, 3, &len)) fail();
      block = true;
    } else if (line.starts_with("VA ")) {
      if (!token_len(line, 1, &len)) fail();
      block = true;
    }
    if (block) {
      if (out.size() - pos < len + 2) fail();
      if (out.substr(pos + len, 2) != "\r\n") fail();
      pos += len + 2;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  ftm::fuzz::World& w = ftm::fuzz::world();
  // Byte 0: chunk size of the simulated reads (low 4 bits) and -R, the
  // requests handled per call (high 4 bits); with -R even, the output limit
  // (Session::out_pause_at) is 64 bytes, so gets pause between keys.
  const size_t chunk = 1 + (data[0] & 15);
  const int max_requests = 1 + (data[0] >> 4);
  const size_t pause_at = max_requests % 2 == 0 ? 64 : SIZE_MAX;
  ftm::Session session;
  session.ctx = &w.ctx;
  session.out_pause_at = pause_at;
  ftm::ProtoResult last;
  ftm::fuzz::drive(
      data + 1, size - 1, chunk,
      [&](std::string_view in, std::string& out) {
        return ftm::text_process(session, in, out, max_requests);
      },
      [&](const ftm::ProtoResult& r, std::string_view out, std::string_view) {
        if (r.remote != ftm::Remote::kNone) fail();  // no cluster: never routed
        check_output(out);  // a paused get stops between whole VALUE blocks
        if (r.paused && out.size() < pause_at) fail();
        last = r;
      });
  // Everything answered: only a paused call may leave a get to resume.
  if (!last.close && !last.paused && session.paused_get.offset != 0) fail();
  return 0;
}
