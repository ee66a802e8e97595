// Parsing helpers that accept and refuse exactly what memcached's util.c,
// base64.c and proto_text.c accept and refuse. The number parsers run the C
// library's strto* on a NUL-terminated copy of the token so that every corner
// (leading whitespace, '+', trailing whitespace, 64-bit `long` truncation to
// 32 bits) behaves as in memcached on 64-bit Linux.
#include "src/proto_util.h"

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace ftm {
namespace {

// A NUL-terminated copy of a token. Tokens are short (a command line is at
// most a few KiB), so the copy lives on the stack; a longer token (only
// possible in a get line, never a number memcached would accept anyway) falls
// back to the heap: cold path.
class CString {
 public:
  explicit CString(std::string_view s) {
    if (s.size() < sizeof(buf_)) {
      std::memcpy(buf_, s.data(), s.size());
      buf_[s.size()] = '\0';
      p_ = buf_;
    } else {
      heap_.assign(s);
      p_ = heap_.c_str();
    }
  }
  const char* c_str() const { return p_; }

 private:
  char buf_[128];
  std::string heap_;
  const char* p_;
};

bool is_space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

// util.c: the number must be followed by whitespace or the end of the string,
// and at least one character must have been consumed.
bool ends_ok(const char* str, const char* end) {
  return is_space(*end) || (*end == '\0' && end != str);
}

}  // namespace

bool safe_strtoull(std::string_view s, uint64_t* out) {
  *out = 0;
  CString c(s);
  const char* str = c.c_str();
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(str, &end, 10);
  if (errno == ERANGE || end == str) return false;
  if (!ends_ok(str, end)) return false;
  // A "negative" huge value is only refused when the text had a '-'.
  if (static_cast<long long>(v) < 0 && std::strchr(str, '-') != nullptr) return false;
  *out = v;
  return true;
}

bool safe_strtoul(std::string_view s, uint32_t* out) {
  *out = 0;
  CString c(s);
  const char* str = c.c_str();
  char* end = nullptr;
  errno = 0;
  unsigned long v = std::strtoul(str, &end, 10);
  if (errno == ERANGE || end == str) return false;
  if (!ends_ok(str, end)) return false;
  if (static_cast<long>(v) < 0 && std::strchr(str, '-') != nullptr) return false;
  // memcached stores an unsigned long into a uint32_t: values above 2^32-1
  // are truncated, not refused. Kept for byte-for-byte compatibility.
  *out = static_cast<uint32_t>(v);
  return true;
}

bool safe_strtol(std::string_view s, int32_t* out) {
  *out = 0;
  CString c(s);
  const char* str = c.c_str();
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(str, &end, 10);
  if (errno == ERANGE || end == str) return false;
  if (!ends_ok(str, end)) return false;
  // As memcached: a 64-bit long stored into an int32_t (truncated).
  *out = static_cast<int32_t>(v);
  return true;
}

bool safe_strtoll(std::string_view s, int64_t* out) {
  *out = 0;
  CString c(s);
  const char* str = c.c_str();
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(str, &end, 10);
  if (errno == ERANGE || end == str) return false;
  if (!ends_ok(str, end)) return false;
  *out = v;
  return true;
}

size_t tokenize(std::string_view line, std::string_view* tokens, size_t max) {
  if (max == 0) return 0;
  size_t n = 0;
  size_t i = 0;
  const size_t len = line.size();
  while (i < len) {
    while (i < len && line[i] == ' ') ++i;
    if (i == len) break;
    if (n == max - 1) {
      // Everything from here on is the remainder (memcached's terminal token
      // with a non-NULL value): the caller re-tokenizes it if it wants more.
      tokens[n++] = line.substr(i);
      return n;
    }
    size_t start = i;
    while (i < len && line[i] != ' ') ++i;
    tokens[n++] = line.substr(start, i - start);
  }
  return n;
}

bool valid_key(std::string_view key) {
  if (key.empty() || key.size() > 250) return false;
  for (char ch : key) {
    unsigned char u = static_cast<unsigned char>(ch);
    if (u <= 32 || u == 127) return false;
  }
  return true;
}

namespace {
constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// Decode table: 0..63 for alphabet characters, 0 for '=', 0x80 otherwise
// (memcached's base64.c dtable).
struct DecodeTable {
  unsigned char v[256];
  constexpr DecodeTable() : v() {
    for (int i = 0; i < 256; ++i) v[i] = 0x80;
    for (int i = 0; i < 64; ++i) v[static_cast<unsigned char>(kB64[i])] = static_cast<unsigned char>(i);
    v[static_cast<unsigned char>('=')] = 0;
  }
};
constexpr DecodeTable kDecode;
}  // namespace

bool base64_decode(std::string_view in, std::string* out) {
  out->clear();
  // As memcached's base64.c: characters outside the alphabet are skipped, the
  // rest must come in whole 4-character blocks; decoding stops after the
  // first padded block; an empty result is a failure.
  size_t count = 0;
  for (char ch : in) {
    if (kDecode.v[static_cast<unsigned char>(ch)] != 0x80) ++count;
  }
  if (count == 0 || count % 4 != 0) return false;
  out->reserve(count / 4 * 3);
  unsigned char block[4];
  size_t k = 0;
  int pad = 0;
  for (char ch : in) {
    unsigned char t = kDecode.v[static_cast<unsigned char>(ch)];
    if (t == 0x80) continue;
    if (ch == '=') ++pad;
    block[k++] = t;
    if (k == 4) {
      char b[3] = {static_cast<char>((block[0] << 2) | (block[1] >> 4)),
                   static_cast<char>((block[1] << 4) | (block[2] >> 2)),
                   static_cast<char>((block[2] << 6) | block[3])};
      k = 0;
      if (pad == 0) {
        out->append(b, 3);
        continue;
      }
      if (pad == 1) {
        out->append(b, 2);
      } else if (pad == 2) {
        out->append(b, 1);
      } else {
        out->clear();
        return false;
      }
      break;
    }
  }
  return !out->empty();
}

void base64_encode(std::string_view in, std::string* out) {
  out->clear();
  out->reserve((in.size() + 2) / 3 * 4);
  const auto* p = reinterpret_cast<const unsigned char*>(in.data());
  size_t n = in.size();
  size_t i = 0;
  for (; n - i >= 3; i += 3) {
    out->push_back(kB64[p[i] >> 2]);
    out->push_back(kB64[((p[i] & 0x03) << 4) | (p[i + 1] >> 4)]);
    out->push_back(kB64[((p[i + 1] & 0x0f) << 2) | (p[i + 2] >> 6)]);
    out->push_back(kB64[p[i + 2] & 0x3f]);
  }
  if (n - i == 1) {
    out->push_back(kB64[p[i] >> 2]);
    out->push_back(kB64[(p[i] & 0x03) << 4]);
    out->append("==");
  } else if (n - i == 2) {
    out->push_back(kB64[p[i] >> 2]);
    out->push_back(kB64[((p[i] & 0x03) << 4) | (p[i + 1] >> 4)]);
    out->push_back(kB64[(p[i + 1] & 0x0f) << 2]);
    out->push_back('=');
  }
}

void append_u64(std::string& out, uint64_t v) {
  char buf[20];
  char* e = buf + sizeof(buf);
  char* p = e;
  do {
    *--p = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  out.append(p, static_cast<size_t>(e - p));
}

}  // namespace ftm
