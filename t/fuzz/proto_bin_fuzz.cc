// libFuzzer target for the binary protocol parser (and the -Y text
// authentication, which also parses untrusted bytes before anything else),
// driven through t/fuzz/proto_harness.h: chunked reads, `consumed` and
// `need` checked, AddressSanitizer catches any read past the buffer.
//
// Build and run: t/fuzz/run.sh [seconds]
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "src/auth_file.h"
#include "src/proto_bin.h"
#include "t/fuzz/proto_harness.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  ftm::fuzz::World& w = ftm::fuzz::world();
  // Byte 0: options; byte 1: chunk size for the simulated reads.
  const uint8_t opts = data[0];
  const size_t chunk = 1 + data[1];
  w.settings.sasl = (opts & 1) != 0;
  w.settings.flush_enabled = (opts & 2) == 0;
  const bool text_auth = (opts & 4) != 0;
  const int max_requests = 1 + ((opts >> 3) & 7);

  ftm::Session session;
  session.ctx = &w.ctx;
  session.authenticated = (opts & 0x40) != 0;
  ftm::fuzz::drive(
      data + 2, size - 2, chunk,
      [&](std::string_view in, std::string& out) {
        return text_auth && !session.authenticated
                   ? ftm::text_auth_process(session, in, out)
                   : ftm::bin_process(session, in, out, max_requests);
      },
      [](const ftm::ProtoResult&, std::string_view, std::string_view) {});
  return 0;
}
