#include "rdma/region_descriptor.h"

#include <string>

namespace ftm::rdma {
namespace {

void put(std::byte* p, uint64_t v, int n) {
  for (int i = 0; i < n; i++) p[i] = std::byte((v >> (8 * i)) & 0xff);
}
uint64_t get(const std::byte* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v |= uint64_t(p[i]) << (8 * i);
  return v;
}
uint32_t fnv1a(const std::byte* p, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) {
    h ^= uint32_t(p[i]);
    h *= 16777619u;
  }
  return h;
}
constexpr size_t kBody = RegionDescriptor::kWireSize - 4;

}  // namespace

Status RegionDescriptor::check_bounds(uint64_t offset, uint64_t len,
                                      const char* op) const {
  if (offset > length || len > length - offset) {
    return Status(Code::kOutOfBounds, "", op,
                  "bytes [" + std::to_string(offset) + ", " +
                      std::to_string(offset + len) + ") past the end of a " +
                      std::to_string(length) + "-byte remote region");
  }
  return Status::ok();
}

std::array<std::byte, RegionDescriptor::kWireSize> RegionDescriptor::serialize()
    const {
  std::array<std::byte, kWireSize> out{};
  std::byte* p = out.data();
  put(p + 0, kMagic, 4);
  put(p + 4, kVersion, 2);
  put(p + 6, flags, 2);
  put(p + 8, addr, 8);
  put(p + 16, length, 8);
  put(p + 24, key, 8);
  put(p + 32, 0, 4);  // reserved, must be zero
  put(p + kBody, fnv1a(p, kBody), 4);
  return out;
}

Result<RegionDescriptor> RegionDescriptor::parse(
    std::span<const std::byte> bytes) {
  auto bad = [](std::string why) {
    return Status(Code::kCorruptDescriptor, "", "import descriptor",
                  std::move(why));
  };
  if (bytes.size() != kWireSize)
    return bad("expected " + std::to_string(kWireSize) + " bytes, got " +
               std::to_string(bytes.size()));
  const std::byte* p = bytes.data();
  if (get(p, 4) != kMagic) return bad("bad magic");
  if (get(p + 4, 2) != kVersion)
    return bad("unsupported version " + std::to_string(get(p + 4, 2)));
  if (get(p + kBody, 4) != fnv1a(p, kBody)) return bad("checksum mismatch");
  RegionDescriptor d;
  d.flags = uint16_t(get(p + 6, 2));
  d.addr = get(p + 8, 8);
  d.length = get(p + 16, 8);
  d.key = get(p + 24, 8);
  if (d.flags & ~kVirtAddr) return bad("unknown flags");
  if (get(p + 32, 4) != 0) return bad("reserved bytes set");
  if (d.length == 0) return bad("zero-length region");
  if (d.addr + d.length < d.addr) return bad("address range overflows");
  return d;
}

}  // namespace ftm::rdma
