// Small parsing helpers shared by the protocol front ends, each matching the
// memcached function it names so numbers and keys are accepted or refused
// exactly as memcached does (memcached util.c, proto_text.c).
#ifndef FTM_SRC_PROTO_UTIL_H_
#define FTM_SRC_PROTO_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ftm {

// util.c safe_strtoull: whole token must be a decimal number (a leading '-'
// is refused when the value would be "negative"); false on overflow/garbage.
bool safe_strtoull(std::string_view s, uint64_t* out);
// util.c safe_strtoul (32-bit unsigned).
bool safe_strtoul(std::string_view s, uint32_t* out);
// util.c safe_strtol (32-bit signed).
bool safe_strtol(std::string_view s, int32_t* out);
// 64-bit signed, used for exptime parsing in meta commands.
bool safe_strtoll(std::string_view s, int64_t* out);

// Splits `line` on spaces into at most `max` tokens (memcached's
// tokenize_command, which also collapses repeated spaces). Returns the count;
// if there were more tokens than `max`, the last token holds the remainder.
size_t tokenize(std::string_view line, std::string_view* tokens, size_t max);

// Is `key` a valid text-protocol key: 1..250 bytes, no control characters or
// spaces? (protocol.txt "Keys".)
bool valid_key(std::string_view key);

// Base64 (RFC 4648, standard alphabet, with padding) for meta "b" keys.
// Returns false on malformed input.
bool base64_decode(std::string_view in, std::string* out);
void base64_encode(std::string_view in, std::string* out);

// Appends the decimal form of v to out (no allocation beyond out's growth).
void append_u64(std::string& out, uint64_t v);

}  // namespace ftm

#endif  // FTM_SRC_PROTO_UTIL_H_
